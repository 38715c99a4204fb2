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
        log = open(daemon.log).read()
        assert "corrupt" not in log.lower() and "panicked" not in log
    finally:
        stop.set()
        ids = daemon.berth("ps", "-aq")[1].split()
        if ids:
            daemon.berth("rm", "-f", *ids)
