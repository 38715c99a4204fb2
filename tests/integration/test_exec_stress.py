"""Output of a fast exec is never lost, whatever the timing between the
hijacked stream, the start and the process's exit: 1,000 execs through
docker-py and the docker CLI while other containers start and stop."""

import subprocess
import threading

import docker


def churn(daemon, stop, errors):
    """Containers starting and stopping beside the execs."""
    i = 0
    while not stop.is_set():
        rc, out, err = daemon.docker("run", "--rm", "busybox", "sh", "-c", f"echo churn{i}")
        if rc != 0 or out.strip() != f"churn{i}":
            errors.append(("churn", rc, out, err))
        i += 1


def test_a_thousand_fast_execs_lose_no_output(daemon, name):
    rc, out, err = daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "600")
    assert rc == 0, err
    stop = threading.Event()
    churn_errors = []
    churner = threading.Thread(target=churn, args=(daemon, stop, churn_errors))
    churner.start()
    lost = []
    try:
        client = docker.DockerClient(base_url="unix://" + daemon.sock, version="1.45")
        c = client.containers.get(name)

        def py_execs(worker, n):
            for i in range(n):
                word = f"w{worker}-{i}"
                r = c.exec_run(["echo", word])
                if r != (0, (word + "\n").encode()):
                    lost.append(("docker-py", word, r))
                r = c.exec_run(["sh", "-c", f"echo {word} >&2"], demux=True)
                if r.exit_code != 0 or r.output != (None, (word + "\n").encode()):
                    lost.append(("docker-py stderr", word, r))

        workers = [threading.Thread(target=py_execs, args=(w, 200)) for w in range(2)]
        for w in workers:
            w.start()
        for i in range(200):
            word = f"cli-{i}"
            p = subprocess.run(["docker", "exec", name, "echo", word], env=daemon.env,
                               capture_output=True, timeout=60)
            if p.returncode != 0 or p.stdout != (word + "\n").encode():
                lost.append(("docker", word, p.returncode, p.stdout, p.stderr))
        for w in workers:
            w.join()
        client.close()
    finally:
        stop.set()
        churner.join()
        daemon.docker("rm", "-f", name)
    # 2 × 200 × 2 docker-py execs and 200 docker CLI execs.
    assert lost == [], f"{len(lost)} of 1000 execs lost output: {lost[:5]}"
    assert churn_errors == [], churn_errors[:5]
