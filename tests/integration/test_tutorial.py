"""The first steps of Docker's tutorial, through the real docker CLI."""

import json

import pexpect
import pytest


def test_run_hostname_then_ls_all(daemon):
    rc, out, err = daemon.docker("container", "run", "busybox", "hostname")
    assert rc == 0, err
    host = out.strip()
    assert len(host) == 12
    rc, out, _ = daemon.docker("container", "ls", "--all", "--no-trunc")
    line = next(l for l in out.splitlines() if l.startswith(host))
    assert "Exited (0)" in line
    assert '"hostname"' in line


def test_interactive_tty_shell(daemon):
    child = pexpect.spawn("docker", ["container", "run", "--interactive", "--tty", "--rm",
                                     "--name", "tut-it", "busybox", "sh"],
                          env=daemon.env, dimensions=(33, 101), timeout=20, encoding="utf-8")
    try:
        child.expect(r"# ")
        child.sendline("ls /; echo END-$((40+2))")
        child.expect("END-42\r\n")
        assert "bin" in child.before and "etc" in child.before
        child.sendline("ps aux; echo END-$((40+3))")
        child.expect("END-43\r\n")
        rows = [l.split() for l in child.before.splitlines() if l.strip() and l.split()[0].isdigit()]
        # Only the container's processes: its shell as PID 1, and ps.
        assert rows[0][0] == "1" and rows[0][-1] == "sh", rows
        assert all(int(r[0]) < 100 for r in rows), rows
        child.sendline("cat /etc/hostname; stty size; echo END-$((40+4))")
        child.expect("END-44\r\n")
        assert "33 101" in child.before
        host = child.before.split("\r\n")[-3].strip()
        assert len(host) == 12
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    rc, out, _ = daemon.docker("container", "ls", "--all", "--filter", "name=tut-it", "-q")
    assert out.strip() == "", "--rm removed the container"


def test_detached_database_flow(daemon):
    rc, out, err = daemon.docker("container", "run", "--detach", "--name", "mydb",
                                 "-e", "MYSQL_ROOT_PASSWORD=my-secret-pw", "busybox",
                                 "sh", "-c", "echo db ready; exec sleep 3600")
    assert rc == 0, err
    try:
        for _ in range(50):
            rc, out, _ = daemon.docker("container", "logs", "mydb")
            if "db ready" in out:
                break
        assert "db ready" in out
        rc, out, err = daemon.docker("container", "top", "mydb")
        assert rc == 0, err
        assert "PID" in out.splitlines()[0]
        assert "sleep 3600" in out
        rc, out, err = daemon.docker("exec", "mydb", "sh", "-c", "echo $MYSQL_ROOT_PASSWORD")
        assert (rc, out) == (0, "my-secret-pw\n"), err
        child = pexpect.spawn("docker", ["exec", "-it", "mydb", "sh"], env=daemon.env,
                              timeout=20, encoding="utf-8")
        child.expect(r"# ")
        child.sendline("echo $MYSQL_ROOT_PASSWORD-$((6*7))")
        child.expect("my-secret-pw-42")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 5
    finally:
        rc, out, err = daemon.docker("container", "rm", "--force", "mydb")
    assert rc == 0, err
    rc, out, _ = daemon.docker("ps", "-a", "--filter", "name=mydb", "-q")
    assert out.strip() == ""


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_exit_statuses_match_docker(daemon, tool, name):
    run = lambda *a: daemon.run(tool, "run", *a)
    assert run("--rm", "busybox", "sh", "-c", "exit 3")[0] == 3
    rc, _, err = run("--rm", "busybox", "no-such-command")
    assert rc == 127, err
    assert "executable file not found" in err
    rc, _, err = run("--rm", "busybox", "/etc")
    assert rc == 126, err
    rc, _, err = run("--rm", "no-such-image:1", "true")
    assert rc == 125
    # dockerd tries Docker Hub ("pull access denied"); the tests' berthd may
    # reach loopback registries only, and says so.
    assert "Unable to find image 'no-such-image:1' locally" in err
    assert "pull access denied" in err or "--allow-registry" in err, err
    # Detached, the status comes from the container the daemon ended.
    try:
        rc, _, err = run("-d", "--name", name, "busybox", "no-such-command")
        assert rc == 127, err
        st = json.loads(daemon.api("GET", f"/containers/{name}/json")[1])["State"]
        assert st["ExitCode"] == 127 and "executable file not found" in st["Error"], st
    finally:
        daemon.api("DELETE", f"/containers/{name}?force=1")


def test_attach_and_detach_keys(daemon):
    rc, cid, err = daemon.docker("run", "-dit", "--name", "tut-attach", "busybox", "sh")
    assert rc == 0, err
    try:
        child = pexpect.spawn("docker", ["attach", "tut-attach"], env=daemon.env,
                              timeout=20, encoding="utf-8")
        child.sendline("echo attached-$((1+1))")
        child.expect("attached-2")
        child.sendcontrol("p")
        child.sendcontrol("q")
        child.expect(pexpect.EOF)
        child.close()
        st = json.loads(daemon.docker("inspect", "tut-attach")[1])[0]["State"]
        assert st["Running"], "detaching leaves the container running"
        child = pexpect.spawn("docker", ["attach", "tut-attach"], env=daemon.env,
                              timeout=20, encoding="utf-8")
        child.sendline("echo again; exit 9")
        child.expect("again")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 9
    finally:
        daemon.docker("rm", "-f", "tut-attach")
