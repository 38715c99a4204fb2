"""The flags issue 2 names that the other files do not reach, through both the
berth CLI and the real docker CLI, plus docker-py as a third client."""

import json
import os
import time

import pexpect
import pytest

CLIS = ["berth", "docker"]


def cli(daemon, tool):
    return daemon.berth if tool == "berth" else daemon.docker


@pytest.mark.parametrize("tool", CLIS)
def test_run_env_file_labels_entrypoint_hostname_workdir(daemon, tool, tmp_path, name):
    run = cli(daemon, tool)
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROM_FILE=yes\nOVERRIDDEN=file\n\n")
    rc, out, err = run("run", "--name", name, "--env-file", str(env_file), "-e", "OVERRIDDEN=flag",
                       "-l", "tier=web", "--label", "team=core", "--hostname", "box-1",
                       "-w", "/tmp/work", "--entrypoint", "/bin/sh", "busybox",
                       "-c", 'echo "$FROM_FILE $OVERRIDDEN $(hostname) $(pwd)"')
    assert rc == 0, err
    assert out.strip() == "yes flag box-1 /tmp/work"
    rc, out, _ = run("inspect", "--format", "{{.Config.Labels.tier}} {{.Config.Labels.team}} "
                     "{{.Config.Hostname}} {{.Config.WorkingDir}} {{json .Config.Entrypoint}}", name)
    assert out.strip() == 'web core box-1 /tmp/work ["/bin/sh"]'
    rc, out, _ = run("ps", "-a", "--filter", "label=tier=web", "--format", "{{.Names}}")
    assert out.split() == [name]
    run("rm", name, check=True)


@pytest.mark.parametrize("tool", CLIS)
def test_logs_since_until_timestamps_tail_follow(daemon, tool, name):
    run = cli(daemon, tool)
    run("run", "-d", "--name", name, "busybox", "sh", "-c",
        "echo first; sleep 2; echo second; sleep 30", check=True)
    try:
        deadline = time.time() + 10
        while "second" not in run("logs", name)[1] and time.time() < deadline:
            time.sleep(0.1)
        rc, out, _ = run("logs", "-t", name)
        lines = out.splitlines()
        assert [l.split(" ", 1)[1] for l in lines] == ["first", "second"]
        t_first = lines[0].split(" ", 1)[0]
        t_second = lines[1].split(" ", 1)[0]
        assert t_first.endswith("Z") and t_first < t_second
        # --since/--until take RFC 3339 times; the boundary lies between the lines.
        mid = t_first[:19] + "." + "9" * 9 + "Z"
        assert run("logs", "--since", mid, name)[1].split() == ["second"]
        assert run("logs", "--until", mid, name)[1].split() == ["first"]
        assert run("logs", "--tail", "1", name)[1].split() == ["second"]
        assert run("logs", "--tail", "0", name)[1] == ""
        # -f keeps streaming until the container ends.
        child = pexpect.spawn(daemon.cli_path(tool), ["logs", "-f", "--tail", "1", name],
                              env=daemon.env, timeout=20, encoding="utf-8")
        child.expect("second")
        run("kill", name, check=True)
        child.expect(pexpect.EOF)
        child.close()
    finally:
        run("rm", "-f", name)


@pytest.mark.parametrize("tool", CLIS)
def test_attach_no_stdin_and_custom_detach_keys(daemon, tool, name):
    run = cli(daemon, tool)
    run("run", "-dit", "--name", name, "busybox", "sh", check=True)
    try:
        child = pexpect.spawn(daemon.cli_path(tool), ["attach", "--detach-keys", "ctrl-a,x", name],
                              env=daemon.env, timeout=20, encoding="utf-8")
        child.sendline("echo in-$((2+3))")
        child.expect("in-5")
        child.sendcontrol("a")
        child.send("x")
        child.expect(pexpect.EOF)
        child.close()
        assert json.loads(run("inspect", name)[1])[0]["State"]["Running"]
        # With --no-stdin what we type never reaches the shell; its output still arrives.
        child = pexpect.spawn(daemon.cli_path(tool), ["attach", "--no-stdin", name],
                              env=daemon.env, timeout=5, encoding="utf-8")
        child.sendline("exit 3")
        time.sleep(1)
        assert json.loads(run("inspect", name)[1])[0]["State"]["Running"]
        run("exec", name, "sh", "-c", "echo via-exec > /proc/1/fd/1", check=True)
        child.expect("via-exec")
        child.terminate(force=True)
        child.close()
    finally:
        run("rm", "-f", name)


@pytest.mark.parametrize("tool", CLIS)
def test_exec_detached_privileged_env_user_workdir(daemon, tool, name):
    run = cli(daemon, tool)
    run("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
    try:
        rc, out, err = run("exec", "-e", "GREETING=hi", "-u", "nobody", "-w", "/tmp", name,
                           "sh", "-c", 'echo "$GREETING $(id -u) $(pwd)"')
        assert rc == 0, err
        assert out.strip() == "hi 65534 /tmp"
        run("exec", "-d", name, "sh", "-c", "sleep 0.2; echo done > /tmp/flag", check=True)
        deadline = time.time() + 10
        while run("exec", name, "cat", "/tmp/flag")[1].strip() != "done":
            assert time.time() < deadline, "detached exec never ran"
            time.sleep(0.1)
        rc, out, _ = run("exec", name, "grep", "CapEff", "/proc/self/status")
        assert not int(out.split()[1], 16) & (1 << 21)
        rc, out, _ = run("exec", "--privileged", name, "grep", "CapEff", "/proc/self/status")
        assert int(out.split()[1], 16) & (1 << 21), "a privileged exec has CAP_SYS_ADMIN"
    finally:
        run("rm", "-f", name)


def test_tty_size_follows_the_client_window(daemon):
    """`run -it` starts at the client's size and follows SIGWINCH."""
    child = pexpect.spawn("docker", ["run", "-it", "--rm", "busybox", "sh"], env=daemon.env,
                          dimensions=(24, 80), timeout=20, encoding="utf-8")
    try:
        child.expect("# ")
        child.sendline("stty size; echo E-$((1+1))")
        child.expect("E-2\r\n")
        assert "24 80" in child.before
        child.setwinsize(41, 123)  # the kernel sends SIGWINCH to the docker CLI
        deadline = time.time() + 10
        while True:
            child.sendline("stty size; echo E-$((2+2))")
            child.expect("E-4\r\n")
            if "41 123" in child.before:
                break
            assert time.time() < deadline, child.before
            time.sleep(0.2)
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()


@pytest.mark.parametrize("tool", CLIS)
def test_start_attach_interactive_and_rm_volumes(daemon, tool, name):
    run = cli(daemon, tool)
    run("create", "-i", "--name", name, "busybox", "sh", "-c", "read x; echo got-$x; exit 4",
        check=True)
    rc, out, err = run("start", "-a", "-i", name, input=b"abc\n")
    assert rc == 4, err
    assert out.strip() == "got-abc"
    rc, _, err = run("rm", "-v", name)
    assert rc == 0, err
    assert run("inspect", name)[0] != 0


@pytest.mark.parametrize("tool", CLIS)
def test_images_digests_filters_and_rmi_force(daemon, tool, name):
    run = cli(daemon, tool)
    rc, out, err = run("images", "--digests", "busybox")
    assert rc == 0, err
    header = out.splitlines()[0].split()
    assert header[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    tag = f"{name}:v1"
    run("tag", "busybox", tag, check=True)
    rc, out, _ = run("images", "--filter", f"reference={name}", "--format", "{{.Repository}}:{{.Tag}}")
    assert out.split() == [tag]
    run("create", "--name", name, tag, "true", check=True)
    image_id = run("image", "inspect", "--format", "{{.Id}}", tag)[1].strip()
    # A tag that a container uses is only a name: untagging it is allowed.
    rc, out, err = run("rmi", tag)
    assert rc == 0 and f"Untagged: {tag}" in out, err
    assert run("image", "inspect", image_id)[0] == 0, "busybox still names it"
    run("rm", name, check=True)


def test_rmi_refuses_an_image_a_container_uses_unless_forced(daemon, name):
    tar = daemon.busybox_tar
    with open(tar, "rb") as f:
        rc, out, err = daemon.berth("import", "-c", "LABEL only=me", "-", f"{name}:solo", input=f.read())
    assert rc == 0, err
    daemon.berth("create", "--name", name, f"{name}:solo", "echo", "still-here", check=True)
    image_id = daemon.berth("image", "inspect", "--format", "{{.Id}}", f"{name}:solo")[1].strip()
    rc, out, err = daemon.docker("rmi", image_id)
    assert rc != 0 and "(must be forced) - image is being used by stopped container" in err, err
    rc, out, err = daemon.docker("rmi", "-f", image_id)
    assert rc == 0, err
    assert daemon.docker("image", "inspect", image_id)[0] != 0
    # The container keeps its layers and still runs.
    rc, out, err = daemon.docker("start", "-a", name)
    assert (rc, out.strip()) == (0, "still-here"), err
    daemon.docker("rm", name, check=True)


def test_docker_py_client(daemon, name):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url="unix://" + daemon.sock, version="1.45")
    try:
        assert client.ping()
        out = client.containers.run("busybox", ["sh", "-c", "echo from-py"], remove=True)
        assert out == b"from-py\n"
        c = client.containers.run("busybox", ["sleep", "60"], detach=True, name=name,
                                  environment={"K": "v"}, labels={"via": "py"})
        try:
            c.reload()
            assert c.status == "running" and c.labels["via"] == "py"
            code, out = c.exec_run(["sh", "-c", "echo $K"])
            assert (code, out) == (0, b"v\n")
            assert [x.name for x in client.containers.list(filters={"label": "via=py"})] == [name]
            tags = [t for i in client.images.list() for t in i.tags]
            assert "busybox:latest" in tags
        finally:
            c.remove(force=True)
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(name)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("no-such-image:latest")
    finally:
        client.close()


def test_env_file_errors_are_clear(daemon, tmp_path):
    missing = os.path.join(str(tmp_path), "nope")
    rc, _, err = daemon.berth("run", "--rm", "--env-file", missing, "busybox", "true")
    assert rc != 0 and "nope" in err


def test_exec_failures_report_dockers_codes(daemon, name):
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
    try:
        rc, out, err = daemon.docker("exec", name, "no-such-command")
        assert rc == 127 and "executable file not found" in out + err, (rc, out, err)
        rc, out, err = daemon.docker("exec", name, "/etc")
        assert rc == 126, (rc, out, err)
        # docker-py reads the stream right after the 101: a fast command's output arrives whole.
        docker = pytest.importorskip("docker")
        client = docker.DockerClient(base_url="unix://" + daemon.sock, version="1.45")
        try:
            c = client.containers.get(name)
            for _ in range(20):
                assert c.exec_run(["echo", "quick"]) == (0, b"quick\n")
        finally:
            client.close()
    finally:
        daemon.docker("rm", "-f", name)


def test_attach_with_logs_and_no_stream_returns_the_logs_and_ends(daemon, name):
    import docker as dockerpy
    rc, out, err = daemon.docker("run", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2")
    assert rc == 0, err
    client = dockerpy.DockerClient(base_url="unix://" + daemon.sock, version="1.45", timeout=10)
    try:
        c = client.containers.get(name)
        # An exited container: the logs, then the end (this used to hang).
        assert c.attach(stdout=True, stderr=True, logs=True, stream=False) == b"out\nerr\n"
        assert c.attach(stdout=True, stderr=False, logs=True, stream=False) == b"out\n"
        # On a running one, logs=1 replays what came before the live output.
        daemon.docker("run", "-d", "--name", name + "-r", "busybox", "sh", "-c",
                      "echo before; sleep 1; echo after", check=True)
        time.sleep(0.5)
        r = client.containers.get(name + "-r")
        assert r.attach(stdout=True, stderr=True, logs=True, stream=False) == b"before\n"
        got = b"".join(r.attach(stdout=True, stderr=True, logs=True, stream=True))
        assert got in (b"before\nafter\n", b"before\n"), got
        # Paused: dockerd's 409.
        daemon.docker("run", "-d", "--name", name + "-p", "busybox", "sleep", "60", check=True)
        daemon.docker("pause", name + "-p", check=True)
        with pytest.raises(dockerpy.errors.APIError) as e:
            client.containers.get(name + "-p").attach(stream=False, logs=True)
        assert e.value.status_code == 409 and "is paused, unpause the container before attach" in str(e.value)
    finally:
        client.close()
        daemon.docker("rm", "-f", name, name + "-r", name + "-p")


def test_exec_start_framing_detach_and_detach_keys_as_dockerd(daemon, name):
    import docker as dockerpy
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
    client = dockerpy.APIClient(base_url="unix://" + daemon.sock, version="1.45", timeout=20)
    try:
        script = "echo out; sleep 0.2; echo err >&2"
        # Created without a terminal, started with Tty: raw output, no frames.
        e = client.exec_create(name, ["sh", "-c", script], tty=False)
        assert client.exec_start(e["Id"], tty=True) == b"out\nerr\n"
        # Created with a terminal, started without: the terminal's output in
        # stdout frames (docker-py demultiplexes them).
        e = client.exec_create(name, ["sh", "-c", "echo tty"], tty=True)
        assert client.exec_start(e["Id"], tty=False, demux=True) == (b"tty\r\n", None)
        # Detach: the start answers at once and the process runs on.
        e = client.exec_create(name, ["sh", "-c", "sleep 0.3; echo done > /tmp/detached"])
        assert client.exec_start(e["Id"], detach=True) == ""
        deadline = time.time() + 10
        while client.exec_inspect(e["Id"])["Running"] or client.exec_inspect(e["Id"])["ExitCode"] is None:
            assert time.time() < deadline
            time.sleep(0.05)
        assert client.exec_inspect(e["Id"])["ExitCode"] == 0
        assert daemon.docker("exec", name, "cat", "/tmp/detached")[1] == "done\n"
    finally:
        client.close()
    # The exec's own detach keys end the client's stream; the process goes on.
    child = pexpect.spawn("docker", ["exec", "-it", "--detach-keys", "ctrl-a,x", name, "sh"],
                          env=daemon.env, timeout=20, encoding="utf-8")
    try:
        child.sendline("echo in-$((2+3))")
        child.expect("in-5")
        child.sendcontrol("a")
        child.send("x")
        child.expect(pexpect.EOF)
        child.close()
        rc, out, _ = daemon.docker("top", name)
        assert out.count("sh") >= 1, out
    finally:
        daemon.docker("rm", "-f", name)
