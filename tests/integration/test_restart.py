"""berthd can die at any moment; containers and their logs do not."""

import json
import signal
import time


def test_kill9_daemon_keeps_containers_and_logs(daemon):
    rc, cid, err = daemon.berth("run", "-d", "--name", "survivor", "busybox", "sh", "-c",
                                "i=0; while true; do echo n=$i; i=$((i+1)); sleep 0.05; done")
    assert rc == 0, err
    rc, _, _ = daemon.berth("run", "--name", "finished", "busybox", "sh", "-c", "exit 3")
    daemon.berth("run", "-d", "--name", "dies-while-down", "busybox", "sh", "-c", "sleep 0.5; exit 5")
    pid = json.loads(daemon.berth("inspect", "survivor")[1])[0]["State"]["Pid"]
    try:
        time.sleep(0.3)
        daemon.stop(signal.SIGKILL)
        time.sleep(1.0)
        daemon.start()
        st = json.loads(daemon.berth("inspect", "survivor")[1])[0]["State"]
        assert st["Running"] and st["Pid"] == pid
        assert json.loads(daemon.berth("inspect", "finished")[1])[0]["State"]["ExitCode"] == 3
        st = json.loads(daemon.berth("inspect", "dies-while-down")[1])[0]["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == 5
        nums = [int(l.split("=")[1]) for l in daemon.berth("logs", "survivor")[1].split()]
        assert nums == list(range(len(nums))) and len(nums) > 20, "logs are whole"
        rc, out, _ = daemon.berth("exec", "survivor", "echo", "still-here")
        assert out == "still-here\n"
        assert daemon.berth("stop", "-t", "1", "survivor")[0] == 0
        st = json.loads(daemon.berth("inspect", "survivor")[1])[0]["State"]
        assert not st["Running"]
    finally:
        daemon.berth("rm", "-f", "survivor", "finished", "dies-while-down")


def test_sigterm_leaves_containers_running(daemon):
    rc, cid, err = daemon.berth("run", "-d", "--name", "calm", "busybox", "sleep", "60")
    assert rc == 0, err
    try:
        daemon.stop(signal.SIGTERM)
        daemon.start()
        assert json.loads(daemon.berth("inspect", "calm")[1])[0]["State"]["Running"]
    finally:
        daemon.berth("rm", "-f", "calm")


def test_restart_always_comes_back_after_daemon_restart(daemon):
    rc, _, err = daemon.berth("run", "-d", "--name", "always", "--restart", "always",
                              "busybox", "sh", "-c", "sleep 0.3; exit 1")
    assert rc == 0, err
    try:
        time.sleep(0.5)
        daemon.stop(signal.SIGKILL)
        time.sleep(0.5)
        daemon.start()
        for _ in range(100):
            st = json.loads(daemon.berth("inspect", "always")[1])[0]
            if st["RestartCount"] >= 2:
                break
            time.sleep(0.1)
        assert st["RestartCount"] >= 2
    finally:
        daemon.berth("rm", "-f", "always")


def test_attach_and_follow_work_again_after_kill9(daemon):
    import pexpect
    daemon.docker("run", "-dit", "--name", "talker", "busybox", "sh", check=True)
    daemon.docker("run", "-d", "--name", "counter", "busybox", "sh", "-c",
                  "i=0; while true; do echo c=$i; i=$((i+1)); sleep 0.1; done", check=True)
    try:
        daemon.stop(signal.SIGKILL)
        daemon.start()
        child = pexpect.spawn("docker", ["attach", "talker"], env=daemon.env, timeout=20,
                              encoding="utf-8")
        child.sendline("echo back-$((6*7))")
        child.expect("back-42")
        child.sendcontrol("p")
        child.sendcontrol("q")
        child.expect(pexpect.EOF)
        child.close()
        seen = len(daemon.docker("logs", "counter")[1].split())
        child = pexpect.spawn("docker", ["logs", "-f", "counter"], env=daemon.env, timeout=20,
                              encoding="utf-8")
        child.expect(f"c={seen + 5}\r\n")
        child.terminate(force=True)
        child.close()
    finally:
        daemon.docker("rm", "-f", "talker", "counter")


def test_kill9_during_a_burst_of_creates_loses_nothing(daemon):
    """SIGKILL while containers are being created, started and removed: every
    record that survives loads, and every container it lists is whole."""
    import subprocess
    import threading
    stop = threading.Event()

    def burst():
        i = 0
        while not stop.is_set():
            daemon.berth("run", "-d", "--name", f"burst-{i}", "busybox", "sleep", "30")
            daemon.berth("rm", "-f", f"burst-{i - 3}")
            i += 1

    t = threading.Thread(target=burst)
    t.start()
    try:
        time.sleep(1.5)
        daemon.stop(signal.SIGKILL)
        stop.set()
        t.join(60)
        daemon.start()
        rc, out, err = daemon.berth("ps", "-a", "--format", "{{.ID}} {{.State}}")
        assert rc == 0, err
        rows = [l.split() for l in out.splitlines()]
        assert rows, "the burst made containers"
        for cid, state in rows:
            st = json.loads(daemon.berth("inspect", cid)[1])[0]["State"]
            if state == "running":
                assert st["Pid"] > 0
                assert subprocess.run(["kill", "-0", str(st["Pid"])]).returncode == 0
            else:
                # A launch the kill cut short leaves no cgroup and no
                # network namespace behind.
                full = json.loads(daemon.berth("inspect", cid)[1])[0]["Id"]
                import os
                assert not os.path.exists(f"/sys/fs/cgroup/pids/berth/{full}"), (cid, state)
                ns = os.path.join(daemon.exec_root, "netns", full)
                assert not any(l.split()[4] == ns for l in open("/proc/self/mountinfo")), (cid, state)
        log = open(daemon.log).read()
        assert "corrupt" not in log.lower() and "panicked" not in log
    finally:
        stop.set()
        ids = daemon.berth("ps", "-aq")[1].split()
        if ids:
            daemon.berth("rm", "-f", *ids)


def _shim_cmdline(daemon, cid):
    import os
    pid = open(os.path.join(daemon.exec_root, "containers", cid, "shim.pid")).read().strip()
    return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")


def _generation(daemon, cid):
    """How many times the container's shim has re-executed itself."""
    argv = _shim_cmdline(daemon, cid)
    return int(argv[3]) if len(argv) > 3 and argv[2] == b"--resume" else 0


def _wait_reexec(daemon, cid, after=0):
    deadline = time.time() + 10
    while _generation(daemon, cid) <= after:
        assert time.time() < deadline, "the idle shim never re-executed itself"
        time.sleep(0.05)
    return _generation(daemon, cid)


def test_idle_shim_reexecs_and_keeps_everything(daemon, name):
    """An idle shim re-executes itself (150 ms here) and carries over the
    container's stdio, an attached client, berthd's waiter and a half-written
    log line; logs, exec, pause, attach and the exit status all still work."""
    import subprocess
    script = ("printf partial-; sleep 1; echo line; trap 'echo got-term; exit 7' TERM; "
              "while true; do sleep 0.1; done")
    cid = daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c", script, check=True)[1].strip()
    try:
        gen = _wait_reexec(daemon, cid)
        deadline = time.time() + 10
        while "line" not in daemon.docker("logs", name)[1]:
            assert time.time() < deadline
            time.sleep(0.1)
        # The line begun before the re-exec and ended after it is one entry.
        assert daemon.docker("logs", name)[1] == "partial-line\n"
        # Each exec loads libcontainer again; the shim sheds it again after.
        for i in range(3):
            rc, out, err = daemon.docker("exec", name, "echo", f"from-exec-{i}")
            assert (rc, out) == (0, f"from-exec-{i}\n"), err
            gen = _wait_reexec(daemon, cid, after=gen)
        assert daemon.docker("pause", name)[0] == 0
        assert daemon.docker("inspect", "-f", "{{.State.Status}}", name)[1].strip() == "paused"
        assert daemon.docker("unpause", name)[0] == 0
        # An attached client rides through the next re-exec.
        attach = subprocess.Popen(["docker", "attach", name], env=daemon.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        time.sleep(0.5)
        _wait_reexec(daemon, cid, after=gen)
        rc, out, err = daemon.docker("stop", "-t", "5", name)
        assert rc == 0, err
        out, err = attach.communicate(timeout=20)
        assert b"got-term" in out, (out, err)
        assert attach.returncode == 7
        assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", name)[1].strip() == "7"
        assert "got-term" in daemon.docker("logs", name)[1]
    finally:
        daemon.docker("rm", "-f", name)


def test_shims_stay_idle_after_their_daemon_goes(daemon, name):
    """berthd's waiter connections hang up when it dies; the shims must drop
    them, not spin on the hangup (they did, at ~13% CPU each, until the
    container ended)."""
    import os
    cid = daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "120", check=True)[1].strip()
    try:
        pid = open(os.path.join(daemon.exec_root, "containers", cid, "shim.pid")).read().strip()

        def cpu_ticks():
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime

        daemon.stop(signal.SIGKILL)
        time.sleep(0.3)
        before = cpu_ticks()
        time.sleep(2)
        burnt = cpu_ticks() - before
        daemon.start()
        assert burnt <= 10, f"the shim used {burnt} clock ticks in 2 s while idle"
        rc, out, err = daemon.docker("exec", name, "echo", "ok")
        assert out == "ok\n", err
    finally:
        daemon.docker("rm", "-f", name)


def _shim_image(daemon, cid):
    import os
    pid = open(os.path.join(daemon.exec_root, "containers", cid, "shim.pid")).read().strip()
    return os.path.basename(os.readlink(f"/proc/{pid}/exe"))


def test_idle_container_is_supervised_by_the_monitor(daemon, name):
    """An idle shim becomes berth-monitor, which logs the container's output
    and serves an attached client's input and output without the full shim;
    requests bring the shim back, and it slims down again."""
    import subprocess
    script = "while true; do echo tick; sleep 0.05; done & exec cat"
    cid = daemon.docker("run", "-d", "-i", "--name", name, "busybox", "sh", "-c", script,
                        check=True)[1].strip()
    attach = None
    try:
        gen = _wait_reexec(daemon, cid)
        assert _shim_image(daemon, cid) == "berth-monitor"
        ticks = daemon.docker("logs", name)[1].count("tick\n")
        time.sleep(0.6)
        # Output kept flowing into the log while the monitor alone watched it.
        assert _generation(daemon, cid) == gen and _shim_image(daemon, cid) == "berth-monitor"
        logs = daemon.docker("logs", name)[1]
        assert logs.count("tick\n") >= ticks + 5 and set(logs.split("\n")) == {"tick", ""}
        attach = subprocess.Popen(["docker", "attach", name], env=daemon.env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # The attach request went to the shim, which then went back to the monitor.
        _wait_reexec(daemon, cid, after=gen + 1)
        time.sleep(0.3)
        deadline = time.time() + 10
        while _shim_image(daemon, cid) != "berth-monitor":
            assert time.time() < deadline
            time.sleep(0.05)
        # Input from the attached client reaches the container through the
        # monitor, and the container's answer comes back the same way.
        attach.stdin.write(b"through-the-monitor\n")
        attach.stdin.flush()
        deadline = time.time() + 10
        while "through-the-monitor" not in daemon.docker("logs", name)[1]:
            assert time.time() < deadline, "the attached client's input never arrived"
            time.sleep(0.1)
        assert _shim_image(daemon, cid) == "berth-monitor"
        rc, out, err = daemon.docker("exec", name, "echo", "exec-ok")
        assert (rc, out) == (0, "exec-ok\n"), err
        assert daemon.docker("kill", name)[0] == 0
        out, _ = attach.communicate(timeout=20)
        assert b"through-the-monitor\n" in out and b"tick\n" in out
        assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", name)[1].strip() == "137"
    finally:
        if attach and attach.poll() is None:
            attach.kill()
            attach.wait()
        daemon.docker("rm", "-f", name)


def test_a_start_not_yet_on_disk_survives_a_kill9(daemon, name):
    """`start` answers before its `running` state reaches the disk. A crash in
    between leaves the record `created` while the container runs: the next
    berthd must find it running (asking its shim), never kill it as a launch
    cut short."""
    import os
    import subprocess
    cid = daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)[1].strip()
    try:
        pid = json.loads(daemon.berth("inspect", name)[1])[0]["State"]["Pid"]
        daemon.stop(signal.SIGKILL)
        path = os.path.join(daemon.data, "containers", cid, "state.json")
        st = json.load(open(path))
        st["status"] = "created"
        json.dump(st, open(path, "w"))
        daemon.start()
        got = json.loads(daemon.berth("inspect", name)[1])[0]["State"]
        assert got["Status"] == "running" and got["Pid"] == pid, got
        assert subprocess.run(["kill", "-0", str(pid)]).returncode == 0
        assert daemon.docker("exec", name, "true")[0] == 0
    finally:
        daemon.docker("rm", "-f", name)
