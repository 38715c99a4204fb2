"""The sandbox is real: limits, namespaces, capabilities and seccomp."""

import json
import os
import socket

import pytest


def inspect(daemon, name):
    return json.loads(daemon.docker("inspect", name)[1])[0]


def test_memory_limit_oom_kills(daemon, name):
    rc, out, err = daemon.docker("run", "--name", name, "--memory", "32m", "busybox", "sh", "-c",
                                 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived')
    assert rc == 137, (out, err)
    assert "survived" not in out
    st = inspect(daemon, name)["State"]
    assert st["OOMKilled"] is True and st["ExitCode"] == 137
    daemon.docker("rm", name)


def test_pids_limit_stops_fork_bomb(daemon):
    rc, out, err = daemon.docker("run", "--rm", "--pids-limit", "12", "busybox", "sh", "-c",
                                 "for i in $(seq 1 40); do sleep 3 & done; wait; echo done")
    assert "can't fork" in out + err


def test_cgroup_limits_are_written(daemon, name):
    rc, cid, err = daemon.docker("run", "-d", "--name", name, "--memory", "64m", "--cpus", "0.5",
                                 "--pids-limit", "33", "busybox", "sleep", "60")
    assert rc == 0, err
    cid = cid.strip()
    try:
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            base = f"/sys/fs/cgroup/berth/{cid}"
            assert open(f"{base}/memory.max").read().strip() == str(64 << 20)
            assert open(f"{base}/pids.max").read().strip() == "33"
            assert open(f"{base}/cpu.max").read().split()[0] == "50000"
        else:
            mem = f"/sys/fs/cgroup/memory/berth/{cid}/memory.limit_in_bytes"
            assert open(mem).read().strip() == str(64 << 20)
            assert open(f"/sys/fs/cgroup/pids/berth/{cid}/pids.max").read().strip() == "33"
            assert open(f"/sys/fs/cgroup/cpu/berth/{cid}/cpu.cfs_quota_us").read().strip() == "50000"
    finally:
        daemon.docker("rm", "-f", name)


def test_cannot_see_host_processes_hostname_or_files(daemon, tmp_path):
    marker = tmp_path / "host-only-marker"
    marker.write_text("secret")
    rc, out, err = daemon.docker("run", "--rm", "busybox", "sh", "-c",
                                 f"ps -o pid,comm; echo HOST=$(hostname); "
                                 f"ls {marker} 2>&1; ls /proc | grep -c '^[0-9]'")
    assert rc == 0, err
    pids = [l.split()[0] for l in out.splitlines()[1:] if l.split() and l.split()[0].isdigit()]
    assert pids[0] == "1"
    assert all(int(p) < 50 for p in pids)
    assert f"HOST={socket.gethostname()}" not in out
    assert "No such file" in out
    assert int(out.strip().splitlines()[-1]) < 10


def test_cap_sys_admin_is_dropped_by_default(daemon):
    rc, out, err = daemon.docker("run", "--rm", "busybox", "sh", "-c",
                                 "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m && echo MOUNTED; "
                                 "grep CapEff /proc/self/status")
    assert "MOUNTED" not in out
    capeff = int(out.split("CapEff:")[1].split()[0], 16)
    assert not capeff & (1 << 21), "CAP_SYS_ADMIN is bit 21"
    assert capeff & (1 << 0), "CAP_CHOWN stays"
    rc, out, err = daemon.docker("run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c",
                                 "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m && echo MOUNTED")
    assert "MOUNTED" in out, err
    rc, out, err = daemon.docker("run", "--rm", "--cap-drop", "CHOWN", "busybox", "sh", "-c",
                                 "chown 65534 /tmp && echo CHOWNED")
    assert "CHOWNED" not in out


def caps_of(out):
    return {l.split(":")[0]: l.split()[1] for l in out.splitlines() if l.startswith("Cap")}


DOCKER_DEFAULT_CAPS = "00000000a80425fb"


def test_capability_sets_are_dockers_after_the_seccomp_filter_is_in(daemon, name):
    """berth-shim lends CAP_SYS_ADMIN/CAP_SETPCAP to install the cached seccomp
    filter; none of it may be left once the process runs."""
    rc, out, err = daemon.docker("run", "--rm", "busybox", "cat", "/proc/self/status")
    assert rc == 0, err
    c = caps_of(out)
    assert c["CapBnd"] == c["CapPrm"] == c["CapEff"] == DOCKER_DEFAULT_CAPS, c
    assert c["CapInh"] == c["CapAmb"] == "0000000000000000"
    assert "Seccomp:\t2" in out
    rc, out, err = daemon.docker("run", "--rm", "-u", "nobody", "busybox", "cat", "/proc/self/status")
    c = caps_of(out)
    assert c["CapEff"] == c["CapPrm"] == "0000000000000000" and c["CapBnd"] == DOCKER_DEFAULT_CAPS, c
    rc, out, err = daemon.docker("run", "--rm", "--cap-drop", "SETPCAP", "busybox", "cat", "/proc/self/status")
    c = caps_of(out)
    assert c["CapBnd"] == c["CapEff"] == "00000000a80424fb", c
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
    rc, out, err = daemon.docker("exec", name, "cat", "/proc/self/status")
    c = caps_of(out)
    assert c["CapBnd"] == c["CapEff"] == DOCKER_DEFAULT_CAPS and "Seccomp:\t2" in out, (c, err)
    rc, out, err = daemon.docker("exec", "-u", "nobody", name, "cat", "/proc/self/status")
    assert caps_of(out)["CapEff"] == "0000000000000000"
    rc, out, err = daemon.docker("exec", name, "unshare", "-r", "true")
    assert rc != 0 and "Operation not permitted" in err + out
    daemon.docker("rm", "-f", name)


def test_seccomp_blocks_syscalls_with_eperm(daemon):
    # unshare(CLONE_NEWUSER) needs no capability, so only seccomp can refuse it.
    rc, out, err = daemon.docker("run", "--rm", "busybox", "sh", "-c",
                                 "grep Seccomp: /proc/self/status; unshare -r true")
    assert rc != 0
    assert "Operation not permitted" in out + err
    assert "Seccomp:\t2" in out
    rc, out, err = daemon.docker("run", "--rm", "--security-opt", "seccomp=unconfined",
                                 "busybox", "unshare", "-r", "true")
    assert rc == 0, err


def test_privileged_and_read_only_and_no_new_privileges(daemon):
    rc, out, err = daemon.docker("run", "--rm", "--privileged", "busybox", "sh", "-c",
                                 "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m && echo MOUNTED")
    assert "MOUNTED" in out, err
    rc, out, err = daemon.docker("run", "--rm", "--read-only", "busybox", "sh", "-c",
                                 "touch /x 2>&1; touch /tmp/x 2>&1; echo rc=$?")
    assert "Read-only file system" in out
    rc, out, err = daemon.docker("run", "--rm", "--security-opt", "no-new-privileges",
                                 "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert out.split()[-1] == "1", out + err


def test_masked_paths_and_readonly_proc(daemon):
    rc, out, err = daemon.docker("run", "--rm", "busybox", "sh", "-c",
                                 "wc -c < /proc/keys; echo 1 > /proc/sys/kernel/domainname 2>&1; echo rc=$?")
    assert out.splitlines()[0].strip() == "0"
    assert "rc=1" in out or "Read-only" in out


def test_network_none_and_host(daemon):
    rc, out, _ = daemon.docker("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert out.split() == ["lo"]
    # The default is the bridge network: loopback and one veth.
    rc, out, _ = daemon.docker("run", "--rm", "busybox", "ls", "/sys/class/net")
    assert out.split() == ["eth0", "lo"]
    # Containers' veths (vb…) come and go in the background meanwhile (an
    # exit deletes its veth asynchronously): the host's own interfaces must
    # all be there.
    steady = lambda names: sorted(n for n in names if not n.startswith("vb"))
    host_ifaces = steady(os.listdir("/sys/class/net"))
    rc, out, _ = daemon.docker("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net")
    assert steady(out.split()) == host_ifaces
    rc, out, _ = daemon.docker("run", "--rm", "--network", "host", "busybox", "hostname")
    assert out.strip() == socket.gethostname()


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_update_changes_limits_of_a_running_container(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    run("run", "-d", "--name", name, "--memory", "64m", "--pids-limit", "50", "busybox", "sleep", "60", check=True)
    try:
        rc, out, err = run("update", "--memory", "128m", "--memory-swap", "256m", "--pids-limit", "20",
                           "--cpus", "0.5", "--restart", "on-failure:3", name)
        assert rc == 0, err
        hc = json.loads(run("inspect", name)[1])[0]["HostConfig"]
        assert (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"], hc["NanoCpus"]) == (128 << 20, 256 << 20, 20, 500_000_000)
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        # The running container's own cgroup has the new limits.
        rc, out, err = run("exec", name, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                           "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        assert out.split() == [str(128 << 20), "20", "50000"], out + err
        rc, out, err = run("update", "--memory", "1m", name)
        assert rc != 0 and "Minimum memory limit allowed is 6MB" in err, err
        rc, out, err = run("update", "--memory", "512m", name)
        assert rc != 0 and "memoryswap" in err, err
        # Kept for the next start.
        run("restart", "-t", "0", name, check=True)
        rc, out, err = run("exec", name, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
        assert out.strip() == str(128 << 20), out + err
    finally:
        run("rm", "-f", name)


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_namespace_and_process_options(daemon, tool, tmp_path):
    run = daemon.docker if tool == "docker" else daemon.berth

    def out(*args):
        rc, o, err = run("run", "--rm", *args)
        assert rc == 0, err
        return o

    assert out("--shm-size", "128m", "busybox", "df", "-k", "/dev/shm").split("\n")[1].split()[1] == "131072"
    assert out("--ulimit", "nofile=512:1024", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn").split() == ["512", "1024"]
    assert out("--sysctl", "kernel.shmmax=123456789", "busybox", "cat", "/proc/sys/kernel/shmmax").strip() == "123456789"
    assert out("--group-add", "123", "--group-add", "4321", "busybox", "id", "-G").split()[1:] == ["123", "4321"]
    resolv = out("--dns-search", "example.test", "--dns-option", "ndots:3", "busybox", "cat", "/etc/resolv.conf")
    assert "search example.test" in resolv and "options ndots:3" in resolv, resolv
    # The host's namespaces, when asked for.
    with open("/proc/1/comm") as f:
        host_init = f.read().strip()
    assert out("--pid", "host", "busybox", "cat", "/proc/1/comm").strip() == host_init
    assert out("busybox", "cat", "/proc/1/comm").strip() == "cat"
    assert out("--uts", "host", "busybox", "hostname").strip() == socket.gethostname()
    marker = f"/dev/shm/berth-ipc-{os.getpid()}-{tool}"
    with open(marker, "w") as f:
        f.write("shared")
    try:
        assert out("--ipc", "host", "busybox", "cat", marker) == "shared"
        assert run("run", "--rm", "busybox", "cat", marker)[0] != 0
    finally:
        os.unlink(marker)
    # What Docker refuses.
    rc, o, err = run("run", "--rm", "--sysctl", "kernel.pid_max=100000", "busybox", "true")
    assert rc != 0 and "not allowed" in err, err
    rc, o, err = run("run", "--rm", "--ulimit", "nofile=2048:1024", "busybox", "true")
    assert rc != 0 and "soft limit" in err, err
    rc, o, err = run("run", "--rm", "--pid", "container:x", "busybox", "true")
    assert rc != 0, err


def test_image_symlinks_cannot_send_mounts_outside_the_rootfs(daemon, tmp_path, name):
    """Mount destinations are resolved inside the rootfs: an image whose
    /etc/hosts and a volume's parent are absolute symlinks to host paths gets
    them created under its own root, and nothing appears on the host."""
    import io
    import subprocess
    import tarfile
    host_dir = f"/tmp/berth-escape-{os.getpid()}-{name}"
    base = subprocess.run([os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "busybox-rootfs")],
                          capture_output=True, check=True).stdout
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(base)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            if m.name.lstrip("./") != "etc/hosts":
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        for path, target in (("etc/hosts", f"{host_dir}/hosts"), ("mnt/v", f"{host_dir}/vol")):
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            dst.addfile(info)
    (tmp_path / "img.tar").write_bytes(out.getvalue())
    image = f"escape-{name}:1"
    assert daemon.docker("import", str(tmp_path / "img.tar"), image)[0] == 0
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("from-volume")
    try:
        rc, out, err = daemon.docker("run", "--rm", "-v", f"{vol}:/mnt/v/data", image, "sh", "-c",
                                     f"cat /etc/hosts /mnt/v/data/f; ls -d {host_dir}/vol/data")
        assert rc == 0, err
        assert "localhost" in out and "from-volume" in out, out
        assert not os.path.exists(host_dir), "a mount followed an image's symlink onto the host"
    finally:
        daemon.docker("rmi", image)


def test_device_cgroup_allows_only_dockers_devices(daemon):
    """A node for a device Docker does not allow (/dev/kmsg, c 1:11) can be
    made (mknod is allowed) but not opened: the devices cgroup refuses it,
    unless --privileged."""
    script = "mknod /tmp/kmsg c 1 11 && head -c 0 /tmp/kmsg; echo rc=$?"
    rc, out, err = daemon.docker("run", "--rm", "busybox", "sh", "-c", script)
    assert "rc=1" in out and "Operation not permitted" in out + err, (out, err)
    rc, out, err = daemon.docker("run", "--rm", "--privileged", "busybox", "sh", "-c", script)
    assert "rc=0" in out, (out, err)


def test_processes_start_with_default_signal_handling(daemon, name):
    """Nothing ignored or blocked leaks from the supervisor into the
    container's processes (an ignored SIGPIPE survives execve)."""
    rc, out, err = daemon.docker("run", "--rm", "busybox", "grep", "-E", "Sig(Ign|Blk)", "/proc/self/status")
    assert rc == 0, err
    assert out.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"], out
    cid = daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)[1].strip()
    try:
        rc, out, err = daemon.docker("exec", name, "grep", "-E", "Sig(Ign|Blk)", "/proc/self/status")
        assert out.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"], (out, err)
    finally:
        daemon.docker("rm", "-f", cid)


def test_network_none_has_a_working_loopback(daemon):
    """As Docker's: `lo` is up with 127.0.0.1, and nothing else is there."""
    # Connect once the listener is up (no fixed sleep: a loaded machine is
    # slower than any), then wait for it to have written what it got.
    script = ("ip addr; nc -l -p 7777 > /tmp/got & i=0; "
              "until echo over-lo | nc 127.0.0.1 7777 2>/dev/null; do "
              "i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.05; done; wait; cat /tmp/got")
    rc, out, err = daemon.docker("run", "--rm", "--network", "none", "busybox", "sh", "-c", script)
    assert "inet 127.0.0.1/8" in out and "LOOPBACK,UP" in out, out
    assert out.strip().endswith("over-lo"), (out, err)
    assert "eth0" not in out



def test_execs_run_under_the_containers_rlimits(daemon, name):
    """An exec gets the container's --ulimit, as its init does, including
    after the shim has handed the container to the monitor and back."""
    cid = daemon.docker("run", "-d", "--name", name, "--ulimit", "nofile=512:1024", "busybox",
                        "sleep", "60", check=True)[1].strip()
    try:
        for _ in range(2):
            rc, out, err = daemon.docker("exec", name, "sh", "-c", "ulimit -n; ulimit -Hn")
            assert (rc, out.split()) == (0, ["512", "1024"]), err
            import time
            time.sleep(0.4)  # idle: the next exec comes through a resumed shim
    finally:
        daemon.docker("rm", "-f", cid)
