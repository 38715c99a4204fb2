"""Where berthd must answer as dockerd does: status codes and messages that
clients read to tell one failure from another."""

import json
import subprocess

import pytest

NOT_MANAGER = 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join"'


@pytest.mark.parametrize("method,path", [
    ("GET", "/swarm"), ("GET", "/nodes"), ("GET", "/nodes/x"), ("GET", "/services"),
    ("POST", "/services/create"), ("GET", "/services/x"), ("GET", "/tasks"), ("GET", "/secrets"),
    ("POST", "/secrets/create"), ("GET", "/configs"), ("POST", "/swarm/update"),
    ("GET", "/swarm/unlockkey"), ("GET", "/v1.45/services"),
])
def test_swarm_endpoints_answer_503_until_swarm_mode_exists(daemon, method, path):
    st, raw, _ = daemon.api(method, path, body={} if method == "POST" else None)
    assert st == 503, (st, raw)
    assert json.loads(raw)["message"].startswith(NOT_MANAGER), raw


def test_docker_cli_swarm_commands_show_dockerds_words(daemon):
    for args in (["node", "ls"], ["service", "ls"], ["secret", "ls"], ["config", "ls"],
                 ["service", "ps", "x"], ["stack", "ls"]):
        rc, out, err = daemon.docker(*args)
        assert rc != 0 and "This node is not a swarm manager" in err, (args, err)
        assert "page not found" not in err
    rc, out, err = daemon.docker("swarm", "leave")
    assert rc != 0 and "This node is not part of a swarm" in err, err
    st, raw, _ = daemon.api("POST", "/swarm/init", body={"ListenAddr": "127.0.0.1"})
    assert st == 503 and "not available" in json.loads(raw)["message"], raw


def test_image_load_answers_a_stream_docker_py_reads_and_errors_inside_it(daemon, name):
    import docker as dockerpy
    rc, out, err = daemon.docker("tag", "busybox", f"{name}:saved")
    assert rc == 0, err
    client = dockerpy.DockerClient(base_url="unix://" + daemon.sock, version="1.45", timeout=30)
    try:
        tar = b"".join(client.api.get_image(f"{name}:saved"))
        daemon.docker("rmi", f"{name}:saved", check=True)
        # quiet=0: message by message (a sized body made docker-py fail with 'Extra data').
        msgs = list(client.api.load_image(tar, quiet=False))
        assert {"stream": f"Loaded image: {name}:saved\n"} in msgs, msgs
        assert [f"{name}:saved" in i.tags for i in client.images.load(tar)] == [True]
        # Garbage: a 200 whose stream carries the error, as dockerd sends it.
        st, raw, hdrs = daemon.api("POST", "/images/load?quiet=0", body=b"\x00garbage" * 100,
                                   headers={"Content-Type": "application/x-tar"})
        assert st == 200 and hdrs.get("transfer-encoding") == "chunked", (st, hdrs)
        msg = json.loads(raw.splitlines()[-1])
        assert msg["error"] and msg["errorDetail"]["message"] == msg["error"], raw
        with pytest.raises(dockerpy.errors.ImageLoadError):
            client.images.load(b"\x00garbage" * 100)
        rc, out, err = daemon.docker("load", input=b"\x00garbage" * 100)
        assert rc != 0 and msg["error"] in err, err
    finally:
        client.close()
        daemon.docker("rmi", f"{name}:saved")


def test_log_drivers_none_and_local(daemon, name):
    # none: the attached client still sees the output; nothing is kept.
    rc, out, err = daemon.docker("run", "--name", name, "--log-driver", "none", "busybox", "echo", "seen")
    assert rc == 0 and out == "seen\n", err
    try:
        info = json.loads(daemon.docker("inspect", name)[1])[0]
        assert info["HostConfig"]["LogConfig"]["Type"] == "none" and info["LogPath"] == ""
        rc, out, err = daemon.docker("logs", name)
        assert rc != 0 and "configured logging driver does not support reading" in err, err
        st, raw, _ = daemon.api("GET", f"/containers/{name}/logs?stdout=1")
        assert st == 501, (st, raw)
        import glob
        assert not glob.glob(f"{daemon.data}/containers/{info['Id']}/*.log*")
        # local: kept and read back.
        rc, out, err = daemon.docker("run", "--name", name + "-l", "--log-driver", "local", "busybox",
                                     "sh", "-c", "echo kept; echo also >&2")
        assert rc == 0, err
        rc, out, err = daemon.docker("logs", name + "-l")
        assert (out, err) == ("kept\n", "also\n")
        hc = json.loads(daemon.docker("inspect", name + "-l")[1])[0]["HostConfig"]
        assert hc["LogConfig"]["Type"] == "local"
        rc, out, err = daemon.docker("run", "--rm", "--log-driver", "syslog2", "busybox", "true")
        assert rc != 0 and "no log driver named 'syslog2'" in err, err
    finally:
        daemon.docker("rm", "-f", name, name + "-l")


def test_image_parent_is_the_local_image_it_came_from(daemon, name, tmp_path):
    base = json.loads(daemon.docker("image", "inspect", "busybox")[1])[0]["Id"]
    daemon.docker("run", "--name", name, "busybox", "touch", "/made", check=True)
    try:
        daemon.docker("commit", name, f"{name}:c", check=True)
        img = json.loads(daemon.docker("image", "inspect", f"{name}:c")[1])[0]
        assert img["Parent"] == base, img["Parent"]
        # A build's image descends from its last step's image, back to its base.
        (tmp_path / "Dockerfile").write_text(f"FROM {name}:c\nENV A=1\nRUN touch /b\n")
        env = dict(daemon.env, DOCKER_BUILDKIT="0")
        import subprocess
        p = subprocess.run(["docker", "build", "-q", "-t", f"{name}:b", str(tmp_path)], env=env,
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        built = json.loads(daemon.docker("image", "inspect", f"{name}:b")[1])[0]
        chain, cur = [], built["Parent"]
        while cur:
            chain.append(cur)
            cur = json.loads(daemon.docker("image", "inspect", cur)[1])[0]["Parent"]
        # RUN's image ← ENV's image ← the committed image ← busybox.
        assert len(chain) == 3 and chain[1:] == [img["Id"], base], chain
        # Imported images have none.
        assert json.loads(daemon.docker("image", "inspect", "busybox")[1])[0]["Parent"] == ""
    finally:
        daemon.docker("rm", "-f", name)
        daemon.docker("rmi", f"{name}:b", f"{name}:c")


def test_commit_racing_an_exit_or_a_removal_answers_cleanly(daemon, name):
    import threading
    import time
    seen = {}
    for i in range(30):
        n = f"{name}-{i}"
        daemon.docker("run", "-d", "--name", n, "busybox", "sh", "-c",
                      f"echo x > /f; sleep 0.0{i % 10}", check=True)
        if i % 3 == 2:
            t = threading.Thread(target=daemon.docker, args=("rm", "-f", n))
            t.start()
        else:
            t = None
        st, raw, _ = daemon.api("POST", f"/commit?container={n}&pause=1")
        seen[st] = raw
        assert st in (201, 404, 409), (st, raw)
        if st == 201:
            daemon.api("DELETE", f"/images/{json.loads(raw)['Id']}")
        if t:
            t.join()
        daemon.docker("rm", "-f", n)
    assert 201 in seen, seen
    assert daemon.api("GET", "/_ping")[0] == 200


def test_berth_cli_honours_docker_api_version(daemon):
    env = dict(daemon.env, DOCKER_API_VERSION="1.99")
    p = subprocess.run([daemon.cli_path("berth"), "ps"], env=env, capture_output=True)
    assert p.returncode != 0 and b"client version 1.99 is too new" in p.stderr, p.stderr
    env["DOCKER_API_VERSION"] = "1.41"
    p = subprocess.run([daemon.cli_path("berth"), "ps"], env=env, capture_output=True)
    assert p.returncode == 0, p.stderr


def test_a_failed_build_step_carries_its_exit_code(daemon):
    """The build stream's last message names the step's exit code in
    errorDetail.code, as dockerd's classic builder sends it."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        df = b"FROM busybox\nRUN exit 3\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(df)
        t.addfile(info, io.BytesIO(df))
    st, raw, _ = daemon.api("POST", "/build?rm=1", body=buf.getvalue(),
                            headers={"Content-Type": "application/x-tar"}, timeout=60)
    assert st == 200, raw
    last = json.loads(raw.strip().splitlines()[-1])
    assert last["errorDetail"]["code"] == 3, last
    assert "returned a non-zero code: 3" in last["error"], last
