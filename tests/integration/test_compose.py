"""docker-compose (Debian's 1.29, on docker-py) against berthd, unchanged: a
web service and a client on a project network, a named volume, a published
port, environment, exec, logs, stop/start and `down -v`."""

import json
import shutil
import subprocess
import time

import pytest

COMPOSE = """
version: "3.8"
services:
  web:
    image: busybox:latest
    command: sh -c 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www'
    ports:
      - "127.0.0.1:{port}:80"
    volumes:
      - data:/data
    networks: [back]
    stop_grace_period: 1s
  client:
    image: busybox:latest
    command: sh -c 'echo client-started; until wget -qO /data/got http://web/; do sleep 0.2; done; exec sleep 3600'
    depends_on: [web]
    stop_grace_period: 1s
    environment:
      FOO: bar
    volumes:
      - data:/data
    networks:
      back:
        aliases: [fetcher]
  tool:
    build: ./tool
    image: berthct-tool:1
    profiles: [tools]
    networks: [back]
volumes:
  data:
networks:
  back:
"""


def test_compose_project_lifecycle(daemon, tmp_path):
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed (scripts/deps --test installs it)")
    port = 18510
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(port=port))
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "Dockerfile").write_text(
        "FROM busybox:latest\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n")
    project = "berthct"

    def compose(*args, timeout=90):
        p = subprocess.run([exe, "-p", project, *args], cwd=tmp_path, env=daemon.env,
                           capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    try:
        rc, out, err = compose("up", "-d")
        assert rc == 0, out + err
        rc, out, err = compose("ps")
        assert rc == 0 and out.count(" Up ") == 2, out + err
        assert f"127.0.0.1:{port}->80/tcp" in out, out
        deadline = time.time() + 10
        while True:  # httpd starts a moment after the container does
            curl = subprocess.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{port}/"],
                                  capture_output=True, text=True)
            if curl.stdout.strip() == "hello-from-web" or time.time() > deadline:
                break
            time.sleep(0.1)
        assert curl.stdout.strip() == "hello-from-web", curl.stdout + curl.stderr
        # The client found `web` by its service name and wrote into the shared volume.
        deadline = time.time() + 15
        while True:
            rc, out, err = compose("exec", "-T", "web", "cat", "/data/got")
            if rc == 0 and "hello-from-web" in out:
                break
            assert time.time() < deadline, out + err
            time.sleep(0.3)
        rc, out, err = compose("exec", "-T", "client", "sh", "-c", "echo $FOO; nslookup fetcher 127.0.0.11 >/dev/null && echo alias-ok")
        assert out.split() == ["bar", "alias-ok"], out + err
        rc, out, err = compose("logs", "client")
        assert "client-started" in out, out + err
        info = json.loads(daemon.docker("inspect", f"{project}_client_1")[1])[0]
        nets = info["NetworkSettings"]["Networks"]
        assert list(nets) == [f"{project}_back"], nets
        assert "fetcher" in nets[f"{project}_back"]["Aliases"] and nets[f"{project}_back"]["IPAddress"]
        assert info["Config"]["Labels"]["com.docker.compose.project"] == project
        # A one-off container on the project network, and a service built
        # from a Dockerfile (the classic builder through docker-py).
        rc, out, err = compose("run", "--rm", "-T", "client", "wget", "-qO-", "http://web/")
        assert rc == 0 and "hello-from-web" in out, out + err
        rc, out, err = compose("--profile", "tools", "build", "tool", timeout=120)
        assert rc == 0, out + err
        rc, out, err = compose("--profile", "tools", "run", "--rm", "-T", "tool")
        assert rc == 0 and out.strip() == "built", out + err
        # A changed service is recreated: compose renames the old container,
        # reads its image's ContainerConfig (API < 1.45), creates, removes.
        (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(port=port).replace("FOO: bar", "FOO: baz"))
        rc, out, err = compose("up", "-d")
        assert rc == 0 and "Recreating" in out + err, out + err
        rc, out, err = compose("exec", "-T", "client", "sh", "-c", "echo $FOO")
        assert out.strip() == "baz", out + err
        names = daemon.docker("ps", "-a", "--format", "{{.Names}}", "--filter", f"label=com.docker.compose.project={project}")[1].split()
        assert sorted(names) == [f"{project}_client_1", f"{project}_web_1"], names
        rc, out, err = compose("stop", "web")
        assert rc == 0, out + err
        rc, out, err = compose("start", "web")
        assert rc == 0, out + err
        rc, out, err = compose("ps", "web")
        assert " Up " in out, out + err
    finally:
        rc, out, err = compose("--profile", "tools", "down", "-v", "--rmi", "local")
        daemon.docker("rmi", "-f", "berthct-tool:1")
    assert rc == 0, out + err
    left = daemon.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")[1]
    assert left.strip() == ""
    assert f"{project}_back" not in daemon.docker("network", "ls", "--format", "{{.Name}}")[1]
    assert f"{project}_data" not in daemon.docker("volume", "ls", "--format", "{{.Name}}")[1]


FOREGROUND = """
version: "3.8"
services:
  one:
    image: busybox:latest
    command: sh -c 'echo hello-one; sleep 1; echo bye-one'
  two:
    image: busybox:latest
    command: sh -c 'echo hello-two; exit 3'
"""


def test_compose_up_in_the_foreground(daemon, tmp_path):
    """`up` without -d attaches to every service, follows their logs and the
    daemon's events, and returns once all have exited."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed (scripts/deps --test installs it)")
    (tmp_path / "docker-compose.yml").write_text(FOREGROUND)
    project = "berthfg"
    try:
        p = subprocess.run([exe, "-p", project, "up", "--no-color"], cwd=tmp_path, env=daemon.env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        for line in ("hello-one", "bye-one", "hello-two", "exited with code 3", "exited with code 0"):
            assert line in p.stdout, p.stdout + p.stderr
    finally:
        subprocess.run([exe, "-p", project, "down"], cwd=tmp_path, env=daemon.env, capture_output=True)
