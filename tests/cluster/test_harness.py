"""The cluster harness itself: hosts that reach each other over the
underlay only, each with a working berthd, and every fault it injects seen
from the hosts; then a teardown that leaves nothing behind."""

import subprocess
import time

import pytest

from harness import Cluster, leftovers

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(3) as c:
        yield c


def test_hosts_reach_each_other_over_the_underlay_only(cluster):
    h1, h2, h3 = cluster.hosts
    assert h1.reaches(h2) and h2.reaches(h3) and h3.reaches(h1)
    # A host's namespace has its loopback and eth0 (and berthd's bridge,
    # once a container needs it): no route off the machine.
    routes = h1.sh("ip", "route").stdout
    assert "default" not in routes, routes
    # Each host is a berthd of its own.
    ids = {h.docker("info", "--format", "{{.ID}}")[1].strip() for h in cluster.hosts}
    assert len(ids) == 3


def test_containers_run_in_the_hosts_cgroup(cluster):
    h = cluster.hosts[0]
    rc, cid, err = h.docker("run", "-d", "busybox", "sleep", "300")
    assert rc == 0, err
    cid = cid.strip()
    try:
        pid = h.docker("inspect", "-f", "{{.State.Pid}}", cid)[1].strip()
        cg = open(f"/proc/{pid}/cgroup").read()
        assert f"/{cluster.tag}/host1/containers/{cid}" in cg, cg
        # What reads the container's cgroup finds it there (--cgroup-parent).
        assert "sleep 300" in h.docker("top", cid)[1]
        assert h.docker("update", "--memory", "64m", cid)[0] == 0
        limit = f"/sys/fs/cgroup/memory/{cluster.tag}/host1/containers/{cid}/memory.limit_in_bytes"
        assert open(limit).read().strip() == str(64 << 20)
        # Its network is the host's: the container reaches another host.
        rc, out, _ = h.docker("exec", cid, "ping", "-c", "1", "-W", "2", cluster.hosts[1].addr)
        assert rc == 0, out
    finally:
        h.docker("rm", "-f", cid)


def test_cut_restore_and_partition(cluster):
    h1, h2, h3 = cluster.hosts
    cluster.cut(h2)
    try:
        assert not h1.can_reach(h2) and not h2.can_reach(h3)
        assert h1.reaches(h3)
    finally:
        cluster.restore(h2)
    assert h1.reaches(h2)
    cluster.partition([h1], [h2, h3])
    try:
        assert h2.reaches(h3)
        assert not h1.can_reach(h2) and not h1.can_reach(h3)
    finally:
        cluster.heal()
    assert h1.reaches(h3)


SINK = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept()
while c.recv(65536):
    pass
c.sendall(b"done"); c.close()
"""

SEND = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
t = time.monotonic(); c.sendall(b"x" * 300000); c.shutdown(socket.SHUT_WR)
assert c.recv(4) == b"done"
print(time.monotonic() - t)
"""


def _transfer_seconds(cluster, sender, receiver, port):
    """Seconds to send 300 kB from `sender` to `receiver`, until it has all."""
    sink = subprocess.Popen(["nsenter", f"--net=/run/netns/{receiver.ns}", "python3", "-c", SINK,
                             str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout.readline().strip() == "ready"
        r = sender.sh("python3", "-c", SEND, receiver.addr, str(port))
        assert r.returncode == 0, r.stderr
        return float(r.stdout)
    finally:
        sink.kill()
        sink.wait()


def test_a_slowed_link_is_slow(cluster):
    h1, h2 = cluster.hosts[:2]
    assert _transfer_seconds(cluster, h1, h2, 7070) < 1.0
    cluster.slow(h1, "800kbit")
    try:
        # 300 kB at 800 kbit/s is 3 s.
        assert _transfer_seconds(cluster, h1, h2, 7071) > 2.0
    finally:
        cluster.unslow(h1)
    assert _transfer_seconds(cluster, h1, h2, 7072) < 1.0


def test_kill9_daemon_keeps_containers_and_kill_host_ends_everything(cluster):
    h = cluster.hosts[2]
    rc, cid, err = h.docker("run", "-d", "busybox", "sleep", "300")
    assert rc == 0, err
    cid = cid.strip()
    h.kill9()
    h.start()
    assert h.docker("inspect", "-f", "{{.State.Running}}", cid)[1].strip() == "true"
    pid = h.docker("inspect", "-f", "{{.State.Pid}}", cid)[1].strip()
    h.kill_host()
    assert not _alive(pid), "the container died with its host"
    assert not cluster.hosts[0].can_reach(h)
    h.reboot()
    assert cluster.hosts[0].reaches(h)
    # After the "reboot" the container is there, stopped, as after a power cut.
    assert h.docker("inspect", "-f", "{{.State.Running}}", cid)[1].strip() == "false"
    h.docker("rm", "-f", cid)


def _alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


def test_teardown_leaves_nothing():
    c = Cluster(2, tag=f"bt{int(time.time()) % 100000}")
    with c:
        rc, _, err = c.hosts[0].docker("run", "-d", "busybox", "sleep", "300")
        assert rc == 0, err
        state = {"tag": c.tag, "root": c.root, "underlay": c.underlay,
                 "hosts": [{"ns": h.ns} for h in c.hosts]}
        assert leftovers(state), "the cluster is up"
    assert leftovers(state) == []
