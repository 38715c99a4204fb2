"""N "hosts" on one machine, for cluster tests and benchmarks.

Each host is a network namespace with its own berthd (socket, data root,
exec root, cgroup subtree); the hosts' `eth0`s meet on an underlay bridge
that lives in a namespace of its own (10.99.0.0/24), so no packet ever
leaves namespaces the harness made. berthd itself stays in the machine's
mount namespace (`nsenter --net`, not `ip netns exec`, which would remount
/sys and hide the cgroup hierarchies).

Faults: kill -9 a host's berthd; kill a whole host (berthd, shims, monitors
and containers: everything in the host's cgroup2 subtree, through
`cgroup.kill`) and bring it back as a rebooted machine; cut and restore a
host's link; partition the underlay into two sides; slow a link. This
kernel has no netem, so "slow" is a token-bucket rate limit (tbf), which
also queues: latency grows with load.

`Cluster` tears everything down even when a test fails (use it as a context
manager), and writes its state to `<root>/cluster.json` so that
`scripts/cluster down` can clean up after a harness started by hand.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("BERTH_BIN", os.path.join(REPO, "target", "x86_64-unknown-linux-gnu", "debug"))
CGROUP2 = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
UNDERLAY = "10.99.0"


def run(*argv, check=True, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=check, **kw)


def ns_run(ns, *argv, check=True, **kw):
    """A command in network namespace `ns` only (same mounts as ours)."""
    return run("nsenter", f"--net=/run/netns/{ns}", *argv, check=check, **kw)


class Host:
    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = f"host{index}"
        self.ns = f"{cluster.tag}-h{index}"
        self.addr = f"{UNDERLAY}.{10 + index}"
        self.root = os.path.join(cluster.root, self.name)
        self.sock = os.path.join(self.root, "berthd.sock")
        self.data = os.path.join(self.root, "data")
        self.exec_root = os.path.join(self.root, "exec")
        self.log = os.path.join(self.root, "berthd.log")
        # The host's cgroup: berthd (and so its shims) in daemon/, the
        # containers' cgroups under containers/ in every hierarchy.
        self.cgroup = f"/{cluster.tag}/{self.name}"
        self.proc = None
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock,
                        BERTH_HOST="unix://" + self.sock)
        self.env.pop("DOCKER_CONTEXT", None)
        self.extra_args = []

    # ---------------------------------------------------------------- network

    def make_netns(self):
        c = self.cluster
        run("ip", "netns", "add", self.ns)
        ns_run(self.ns, "ip", "link", "set", "lo", "up")
        # The veth is made in the underlay namespace, its eth0 end moved here.
        # A fixed address, as a machine's NIC keeps after a reboot (the other
        # hosts' neighbour entries stay right).
        run("ip", "-n", c.underlay, "link", "add", self.veth, "type", "veth",
            "peer", "name", "eth0", "address", f"02:99:00:00:00:{self.index:02x}",
            "netns", self.ns)
        run("ip", "-n", c.underlay, "link", "set", self.veth, "master", "br0", "up")
        ns_run(self.ns, "ip", "addr", "add", f"{self.addr}/24", "dev", "eth0")
        ns_run(self.ns, "ip", "link", "set", "eth0", "up")

    @property
    def veth(self):
        return f"u{self.index}"

    # ----------------------------------------------------------------- daemon

    def start(self):
        os.makedirs(self.root, exist_ok=True)
        cg = os.path.join(CGROUP2, self.cgroup.lstrip("/"), "daemon")
        os.makedirs(cg, exist_ok=True)
        logf = open(self.log, "ab")

        def into_cgroup():
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write("0")

        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.ns}", os.path.join(BIN, "berthd"),
             "-H", "unix://" + self.sock, "--data-root", self.data,
             "--exec-root", self.exec_root, "--pidfile", os.path.join(self.root, "berthd.pid"),
             "--cgroup-parent", self.cgroup + "/containers",
             # The connect-time redirect hooks the machine's cgroup root,
             # which every host shares: DNAT alone here.
             "--socket-redirect=false",
             "--allow-registry", "loopback", "--shim-slim-after", "150", *self.extra_args],
            stdout=logf, stderr=logf, start_new_session=True, preexec_fn=into_cgroup)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: berthd exited: " + open(self.log).read()[-2000:])
            if os.path.exists(self.sock) and self.berth("version")[0] == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: berthd did not come up")

    def kill9(self):
        """kill -9 of berthd alone: its containers keep running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def kill_host(self):
        """Everything of this host dies at once, as when its power goes:
        berthd, shims, monitors and containers."""
        kill_cgroup(os.path.join(CGROUP2, self.cgroup.lstrip("/")))
        if self.proc:
            self.proc.wait()
        # What a reboot would clear: mounts, network state.
        unmount_under(self.exec_root)
        run("ip", "netns", "del", self.ns, check=False)
        # The kernel destroys a namespace (and so its veth) in the background.
        deadline = time.monotonic() + 10
        while run("ip", "-n", self.cluster.underlay, "link", "show", self.veth,
                  check=False).returncode == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: its network outlived it")
            time.sleep(0.02)

    def reboot(self):
        """Brings a killed host back: fresh network, same disk."""
        if not os.path.exists(f"/run/netns/{self.ns}"):
            self.make_netns()
        self.start()

    def docker(self, *args, input=None, timeout=60):
        return self._cli("docker", *args, input=input, timeout=timeout)

    def berth(self, *args, input=None, timeout=60):
        return self._cli(os.path.join(BIN, "berth"), *args, input=input, timeout=timeout)

    def _cli(self, exe, *args, input=None, timeout=60):
        p = subprocess.run([exe, *args], env=self.env, capture_output=True, input=input,
                           timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def sh(self, *argv, check=False):
        """A command in this host's network namespace."""
        return ns_run(self.ns, *argv, check=check)

    def reaches(self, other, within=5.0):
        """Does this host reach `other` within `within` seconds? A neighbour
        entry that failed while a link was down takes the kernel a moment
        to try again, so one lost ping says little."""
        deadline = time.monotonic() + within
        while True:
            if self.can_reach(other):
                return True
            if time.monotonic() > deadline:
                return False

    def can_reach(self, other, port=None, timeout=1.0):
        """Can this host reach `other` over the underlay (ping, or a TCP
        connect when `port` is given)?"""
        if port is None:
            r = self.sh("busybox", "ping", "-c", "1", "-W", str(max(1, int(timeout))), other.addr)
            return r.returncode == 0
        r = self.sh("python3", "-c",
                    "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), "
                    "timeout=float(sys.argv[3]))", other.addr, str(port), str(timeout))
        return r.returncode == 0


class Cluster:
    def __init__(self, n, tag=None, root=None):
        self.tag = tag or f"bc{os.getpid() % 100000}"
        self.root = root or tempfile.mkdtemp(prefix=f"berth-cluster-{self.tag}-")
        self.underlay = f"{self.tag}-u"
        self.hosts = [Host(self, i) for i in range(1, n + 1)]
        self.busybox = None

    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        self.down()

    def up(self, busybox=True):
        self.save_state()
        run("ip", "netns", "add", self.underlay)
        run("ip", "-n", self.underlay, "link", "set", "lo", "up")
        run("ip", "-n", self.underlay, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        run("ip", "-n", self.underlay, "link", "set", "br0", "up")
        for h in self.hosts:
            h.make_netns()
        self.save_state()
        for h in self.hosts:
            h.start()
        if busybox:
            tar = subprocess.run([os.path.join(REPO, "scripts", "busybox-rootfs")],
                                 capture_output=True, check=True).stdout
            for h in self.hosts:
                rc, _, err = h.berth("import", "-", "busybox:latest", input=tar)
                if rc != 0:
                    raise RuntimeError(f"{h.name}: import: {err}")

    def save_state(self):
        state = {"tag": self.tag, "root": self.root, "underlay": self.underlay,
                 "hosts": [{"name": h.name, "ns": h.ns, "addr": h.addr, "sock": h.sock,
                            "cgroup": h.cgroup} for h in self.hosts]}
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, "cluster.json"), "w") as f:
            json.dump(state, f, indent=1)

    # ------------------------------------------------------------------ faults

    def cut(self, host):
        run("ip", "-n", self.underlay, "link", "set", host.veth, "down")

    def restore(self, host):
        run("ip", "-n", self.underlay, "link", "set", host.veth, "up")

    def partition(self, side_a, side_b):
        """Two sides that reach each other's members but not the other side:
        side_b's links move to a second bridge."""
        if run("ip", "-n", self.underlay, "link", "show", "br1", check=False).returncode != 0:
            run("ip", "-n", self.underlay, "link", "add", "br1", "type", "bridge", "forward_delay", "0")
            run("ip", "-n", self.underlay, "link", "set", "br1", "up")
        for h in side_a:
            run("ip", "-n", self.underlay, "link", "set", h.veth, "master", "br0")
        for h in side_b:
            run("ip", "-n", self.underlay, "link", "set", h.veth, "master", "br1")
        self._forwarding()

    def heal(self):
        for h in self.hosts:
            run("ip", "-n", self.underlay, "link", "set", h.veth, "master", "br0", check=False)
        self._forwarding()

    def _forwarding(self):
        """Waits until every bridge port forwards again after a move."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = run("ip", "-n", self.underlay, "-d", "link", "show", check=False).stdout
            ports = [l for l in out.splitlines() if "bridge_slave" in l]
            if ports and all("state forwarding" in l for l in ports):
                return
            time.sleep(0.02)
        raise RuntimeError("underlay ports never forwarded")

    def slow(self, host, rate="1mbit"):
        """Limits what `host` sends to `rate` (a token bucket; this kernel
        has no netem)."""
        host.sh("tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate,
                "burst", "32kbit", "latency", "400ms", check=True)

    def unslow(self, host):
        host.sh("tc", "qdisc", "del", "dev", "eth0", "root")

    # --------------------------------------------------------------- teardown

    def down(self):
        teardown({"tag": self.tag, "root": self.root, "underlay": self.underlay,
                  "hosts": [{"name": h.name, "ns": h.ns, "cgroup": h.cgroup} for h in self.hosts]})


def kill_cgroup(path):
    """Kills every process in a cgroup2 subtree and waits until it is empty."""
    if not os.path.isdir(path):
        return
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    except OSError:
        # Kernels before 5.14: by pid, until none are left.
        for d, _, _ in os.walk(path):
            for pid in open(os.path.join(d, "cgroup.procs")).read().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if "populated 0" in open(os.path.join(path, "cgroup.events")).read():
                return
        except OSError:
            return
        time.sleep(0.02)
    raise RuntimeError(f"processes remain in {path}")


def unmount_under(root):
    mounts = [l.split()[4] for l in open("/proc/self/mountinfo")]
    for m in sorted((m for m in mounts if m == root or m.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def cgroup_bases(rel):
    """Where cgroup `rel` is in every hierarchy mounted under /sys/fs/cgroup."""
    if CGROUP2 == "/sys/fs/cgroup":
        return [os.path.join(CGROUP2, rel.lstrip("/"))]
    return [os.path.join("/sys/fs/cgroup", ctrl, rel.lstrip("/"))
            for ctrl in os.listdir("/sys/fs/cgroup")
            if not os.path.islink(os.path.join("/sys/fs/cgroup", ctrl))]


def remove_cgroup_tree(rel):
    """The cgroup `rel` (and below) in every hierarchy, deepest first."""
    for base in cgroup_bases(rel):
        if not os.path.isdir(base):
            continue
        for d, _, _ in sorted(os.walk(base), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


def teardown(state):
    """Everything a cluster made, from its state: processes (by cgroup),
    mounts, namespaces, cgroups, files. Safe to run twice."""
    for h in state["hosts"]:
        try:
            kill_cgroup(os.path.join(CGROUP2, h["cgroup"].lstrip("/")))
        except RuntimeError:
            pass
    unmount_under(state["root"])
    for h in state["hosts"]:
        subprocess.run(["ip", "netns", "del", h["ns"]], capture_output=True)
    subprocess.run(["ip", "netns", "del", state["underlay"]], capture_output=True)
    remove_cgroup_tree("/" + state["tag"])
    shutil.rmtree(state["root"], ignore_errors=True)


def leftovers(state):
    """What of a cluster is still on the machine (for tests of teardown)."""
    found = []
    names = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    for ns in [state["underlay"]] + [h["ns"] for h in state["hosts"]]:
        if ns in names:
            found.append(f"netns {ns}")
    for l in open("/proc/self/mountinfo"):
        if state["root"] in l.split()[4]:
            found.append(f"mount {l.split()[4]}")
    found += [f"cgroup {p}" for p in cgroup_bases("/" + state["tag"]) if os.path.isdir(p)]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmd = open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if state["root"] in cmd:
                found.append(f"process {p}: {cmd[:80]}")
    if os.path.exists(state["root"]):
        found.append(f"dir {state['root']}")
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
