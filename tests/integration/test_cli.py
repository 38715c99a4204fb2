"""Every engine command through `berth` (and a few through docker)."""

import json
import os
import time


def test_create_start_wait_logs_inspect(daemon, name):
    rc, cid, err = daemon.berth("create", "--name", name, "-e", "A=1", "-w", "/tmp",
                                "-l", "team=core", "busybox", "sh", "-c", "pwd; echo $A; echo oops >&2; exit 2")
    assert rc == 0, err
    cid = cid.strip()
    assert len(cid) == 64
    rc, out, _ = daemon.berth("ps", "-a", "--filter", "label=team=core", "--format", "{{.Names}} {{.State}}")
    assert out.strip() == f"{name} created"
    assert daemon.berth("start", name)[0] == 0
    rc, out, _ = daemon.berth("wait", name)
    assert out.strip() == "2"
    rc, out, err = daemon.berth("logs", name)
    assert out == "/tmp\n1\n" and err == "oops\n"
    rc, out, err = daemon.berth("logs", "--tail", "1", name)
    assert len((out + err).splitlines()) == 1
    rc, out, _ = daemon.berth("logs", "-t", name)
    assert out.split()[0].endswith("Z")
    rc, out, _ = daemon.berth("inspect", "--format", "{{.State.ExitCode}} {{.Config.WorkingDir}} {{.Name}}", name)
    assert out.strip() == f"2 /tmp /{name}"
    info = json.loads(daemon.berth("inspect", name)[1])[0]
    assert info["Id"] == cid and info["Config"]["Labels"]["team"] == "core"
    rc, out, _ = daemon.berth("ps", "-a", "--filter", "exited=2", "-q", "--no-trunc")
    assert cid in out.split()
    assert daemon.berth("rm", name)[0] == 0


def test_ps_table_and_filters(daemon, name):
    rc, cid, err = daemon.berth("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert rc == 0, err
    try:
        rc, out, _ = daemon.berth("ps")
        header, *rows = out.splitlines()
        assert header.split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        row = next(r for r in rows if r.endswith(name))
        assert row.startswith(cid[:12]) and '"sleep 60"' in row and "Up " in row
        assert daemon.berth("ps", "-q", "--filter", f"name={name}")[1].strip() == cid.strip()[:12]
        assert daemon.berth("ps", "-q", "--filter", "status=exited", "--filter", f"name={name}")[1] == ""
        assert daemon.berth("ps", "-q", "--filter", "ancestor=busybox", "--filter", f"id={cid[:10]}")[1].strip()
        rc, out, _ = daemon.berth("ps", "-n", "1", "--format", "{{json .}}")
        assert json.loads(out.splitlines()[0])["Names"]
        rc, out, _ = daemon.berth("ps", "-s", "--filter", f"name={name}")
        assert "virtual" in out
        rc, out, _ = daemon.berth("ps", "--format", "table {{.ID}}\\t{{.Names}}", "--filter", f"name={name}")
        assert out.splitlines()[0].split() == ["CONTAINER", "ID", "NAMES"]
    finally:
        daemon.berth("rm", "-f", name)


def test_stop_kill_restart_pause_rename(daemon, name):
    rc, cid, err = daemon.berth("run", "-d", "--name", name, "busybox", "sh", "-c",
                                "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done")
    assert rc == 0, err
    try:
        assert daemon.berth("pause", name)[0] == 0
        st = json.loads(daemon.berth("inspect", name)[1])[0]["State"]
        assert st["Status"] == "paused" and st["Paused"]
        assert daemon.berth("unpause", name)[0] == 0
        assert daemon.berth("stop", "-t", "5", name)[0] == 0
        st = json.loads(daemon.berth("inspect", name)[1])[0]["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == 0
        assert "got-term" in daemon.berth("logs", name)[1]
        assert daemon.berth("restart", name)[0] == 0
        assert json.loads(daemon.berth("inspect", name)[1])[0]["State"]["Running"]
        assert daemon.berth("kill", "-s", "KILL", name)[0] == 0
        st = json.loads(daemon.berth("inspect", name)[1])[0]["State"]
        assert st["ExitCode"] == 137
        assert daemon.berth("rename", name, name + "-new")[0] == 0
        assert daemon.berth("inspect", name + "-new")[0] == 0
        assert daemon.berth("inspect", name)[0] == 1
    finally:
        daemon.berth("rm", "-f", name, name + "-new")


def test_top_and_exec_options(daemon, name):
    rc, cid, err = daemon.berth("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert rc == 0, err
    try:
        rc, out, _ = daemon.berth("top", name)
        assert "sleep 60" in out
        rc, out, _ = daemon.berth("top", name, "-o", "pid,comm")
        assert out.splitlines()[0].split() == ["PID", "COMMAND"]
        rc, out, _ = daemon.berth("exec", "-e", "X=y", "-w", "/etc", "-u", "nobody", name,
                                  "sh", "-c", "echo $X $(pwd) $(id -u)")
        assert out.strip() == "y /etc 65534"
        rc, out, _ = daemon.berth("exec", "-i", name, "cat", input=b"from-stdin")
        assert out == "from-stdin"
        assert daemon.berth("exec", name, "sh", "-c", "exit 6")[0] == 6
        assert daemon.berth("exec", "-d", name, "sh", "-c", "echo bg > /tmp/bg")[0] == 0
        time.sleep(0.3)
        assert daemon.berth("exec", name, "cat", "/tmp/bg")[1] == "bg\n"
    finally:
        daemon.berth("rm", "-f", name)


def test_run_interactive_stdin_and_user(daemon):
    rc, out, err = daemon.berth("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo; id -u",
                                input=b"piped")
    assert out == "piped\n0\n", err
    rc, out, _ = daemon.berth("run", "--rm", "-u", "65534:65534", "--hostname", "box1",
                              "--entrypoint", "sh", "busybox", "-c", "id -u; id -g; hostname")
    assert out.split() == ["65534", "65534", "box1"]


def test_restart_policy_on_failure(daemon, name):
    rc, _, err = daemon.berth("run", "-d", "--name", name, "--restart", "on-failure:2",
                              "busybox", "sh", "-c", "echo run; exit 1")
    assert rc == 0, err
    try:
        for _ in range(100):
            st = json.loads(daemon.berth("inspect", name)[1])[0]
            if st["RestartCount"] == 2 and st["State"]["Status"] == "exited":
                break
            time.sleep(0.1)
        assert st["RestartCount"] == 2, st["State"]
        assert daemon.berth("logs", name)[1].count("run") == 3
    finally:
        daemon.berth("rm", "-f", name)


def test_log_rotation_caps_disk(daemon, name):
    rc, _, err = daemon.berth("run", "--name", name, "--log-opt", "max-size=2k", "--log-opt", "max-file=2",
                              "busybox", "sh", "-c", "for i in $(seq 1 400); do echo line-$i; done")
    assert rc == 0, err
    info = json.loads(daemon.berth("inspect", name)[1])[0]
    log = info["LogPath"]
    assert os.path.getsize(log) <= 2048
    assert os.path.exists(log + ".1") and not os.path.exists(log + ".2")
    out = daemon.berth("logs", name)[1].split()
    assert out[-1] == "line-400" and "line-1" not in out
    daemon.berth("rm", name)


def test_container_prune(daemon):
    daemon.berth("run", "--name", "prune-me", "busybox", "true")
    rc, out, _ = daemon.berth("container", "prune", "-f")
    assert rc == 0 and "Total reclaimed space" in out
    assert daemon.berth("ps", "-aq", "--filter", "name=prune-me")[1] == ""


def test_images_import_tag_save_load_rmi(daemon, tmp_path):
    rc, out, err = daemon.berth("import", "-c", 'CMD ["echo", "from-cmd"]', "-c", "ENV GREETING=hi",
                                "-m", "test import", daemon.busybox_tar, "local/bb:v1")
    assert rc == 0, err
    rc, out, _ = daemon.berth("run", "--rm", "local/bb:v1")
    assert out == "from-cmd\n"
    assert daemon.berth("run", "--rm", "local/bb:v1", "sh", "-c", "echo $GREETING")[1] == "hi\n"
    assert daemon.berth("tag", "local/bb:v1", "local/bb:v2")[0] == 0
    rc, out, _ = daemon.berth("images", "--format", "{{.Repository}}:{{.Tag}}", "local/bb")
    assert sorted(out.split()) == ["local/bb:v1", "local/bb:v2"]
    rc, out, _ = daemon.berth("images")
    assert out.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    ids = daemon.berth("images", "-q", "local/bb")[1].split()
    assert len(ids) == 1
    tar = tmp_path / "bb.tar"
    assert daemon.berth("save", "-o", str(tar), "local/bb:v1")[0] == 0
    assert daemon.berth("rmi", "local/bb:v1")[1].strip() == "Untagged: local/bb:v1"
    out = daemon.berth("rmi", "local/bb:v2")[1]
    assert "Untagged: local/bb:v2" in out and "Deleted: sha256:" in out
    rc, out, err = daemon.berth("load", "-i", str(tar))
    assert out.strip() == "Loaded image: local/bb:v1", err
    assert daemon.berth("images", "-q", "local/bb")[1].split() == ids
    # A container using the image protects it.
    daemon.berth("create", "--name", "holder", "local/bb:v1")
    rc, _, err = daemon.berth("rmi", ids[0])
    assert rc == 1 and "stopped container" in err
    daemon.berth("rm", "holder")
    assert daemon.berth("rmi", "local/bb:v1")[0] == 0


def test_docker_save_load_roundtrip(daemon, tmp_path):
    tar = tmp_path / "x.tar"
    assert daemon.docker("save", "-o", str(tar), "busybox")[0] == 0
    names = os.popen(f"tar -tf {tar}").read().split()
    assert "manifest.json" in names and "index.json" in names and "oci-layout" in names
    rc, out, err = daemon.docker("load", "-i", str(tar))
    assert "Loaded image: busybox:latest" in out, err
    rc, out, err = daemon.docker("image", "inspect", "--format", "{{.Os}}", "busybox")
    assert out.strip() == "linux"


def test_hostile_import_is_refused(daemon, tmp_path):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("../../escape")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    rc, out, err = daemon.berth("import", "-", "evil:1", input=buf.getvalue())
    assert rc != 0 and "unsafe tar entry" in err
    assert daemon.berth("images", "-q", "evil")[1] == ""


def test_rm_refuses_restarting_and_paused_containers(daemon, name):
    daemon.docker("run", "-d", "--name", name, "--restart", "always", "busybox", "sh", "-c", "exit 1",
                  check=True)
    try:
        deadline = time.time() + 10
        while True:
            st = json.loads(daemon.docker("inspect", name)[1])[0]["State"]
            if st["Restarting"]:
                break
            assert time.time() < deadline, "never seen restarting"
            time.sleep(0.01)
        rc, out, err = daemon.docker("rm", name)
        # Caught while restarting or just restarted: never removed without force.
        assert rc != 0 and ("container is restarting" in err or "container is running" in err), err
        rc, out, err = daemon.docker("rm", "-f", name)
        assert rc == 0, err
        daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
        daemon.docker("pause", name, check=True)
        rc, out, err = daemon.docker("rm", name)
        assert rc != 0 and "container is paused and must be unpaused first" in err, err
        # Forced, a paused container is thawed to take its SIGKILL.
        rc, out, err = daemon.docker("rm", "-f", name)
        assert rc == 0, err
    finally:
        daemon.docker("rm", "-f", name)
