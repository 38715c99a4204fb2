"""A real berthd on a temporary socket, data root and exec root, for the whole
session; everything it started is cleaned up even when tests fail."""

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import apischema

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("BERTH_BIN", os.path.join(REPO, "target", "x86_64-unknown-linux-gnu", "debug"))


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("berth", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Daemon:
    def __init__(self, root, tag_offset=0):
        self.root = root
        self.sock = os.path.join(root, "berth.sock")
        self.data = os.path.join(root, "data")
        self.exec_root = os.path.join(root, "exec")
        self.pidfile = os.path.join(root, "berthd.pid")
        self.log = os.path.join(root, "berthd.log")
        self.proc = None
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock,
                        BERTH_HOST="unix://" + self.sock)
        self.env.pop("DOCKER_CONTEXT", None)
        # Networking of our own: a bridge, a subnet and an nftables table no
        # other berthd on this machine uses.
        tag = (os.getpid() + tag_offset) % 100000
        self.bridge = f"bt{tag}"
        self.bip = f"10.97.{tag % 250}.1/24"
        self.nft_table = f"berth_t{tag}"
        # More berthd flags, for tests of daemon options.
        self.extra_args = []

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "berthd"), "-H", "unix://" + self.sock,
             "--data-root", self.data, "--exec-root", self.exec_root,
             "--pidfile", self.pidfile, "--bridge", self.bridge, "--bip", self.bip,
             "--nft-table", self.nft_table,
             # Shims re-execute themselves once idle (3 s by default); soon
             # here, so that every test also runs against re-executed shims.
             "--shim-slim-after", "150",
             # Pulls reach only registries the tests start: never the internet.
             "--allow-registry", "loopback", *self.extra_args],
            stdout=logf, stderr=logf, start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.api("GET", "/_ping")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("berthd exited: " + open(self.log).read()[-2000:])
            time.sleep(0.02)
        raise RuntimeError("berthd did not come up")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def api(self, method, path, body=None, headers=None, timeout=30):
        c = UnixHTTP(self.sock, timeout=timeout)
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, raw, {k.lower(): v for k, v in r.getheaders()}

    def run(self, tool, *args, input=None, timeout=60, check=False):
        exe = "docker" if tool == "docker" else os.path.join(BIN, "berth")
        p = subprocess.run([exe, *args], input=input, capture_output=True,
                           env=self.env, timeout=timeout)
        out = p.stdout.decode(errors="replace")
        err = p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} -> {p.returncode}\n{out}\n{err}")
        return p.returncode, out, err

    def cli_path(self, tool):
        return "docker" if tool == "docker" else os.path.join(BIN, "berth")

    def docker(self, *args, **kw):
        return self.run("docker", *args, **kw)

    def berth(self, *args, **kw):
        return self.run("berth", *args, **kw)


class ReferenceDaemon(Daemon):
    """A dockerd (or any Engine API daemon) started by hand, for
    `scripts/test --reference unix:///…`: the same docker-CLI-facing tests
    against the reference, to learn where our assertions differ from it.
    Tests that look at berthd's own internals are skipped."""

    def __init__(self, url):
        if not url.startswith("unix://"):
            raise RuntimeError(f"--reference takes unix:///path, not {url}")
        self.root = tempfile.mkdtemp(prefix="berth-ref-")
        self.sock = url[len("unix://"):]
        self.env = dict(os.environ, DOCKER_HOST=url, BERTH_HOST=url)
        self.env.pop("DOCKER_CONTEXT", None)

    def _internal(self, what):
        pytest.skip(f"looks at berthd's {what}: not applicable to the reference daemon")

    def start(self):
        self._internal("restart")

    def stop(self, sig=signal.SIGTERM):
        self._internal("restart")

    for _name in ("data", "exec_root", "log", "proc", "pidfile", "bridge", "bip", "nft_table"):
        locals()[_name] = property(lambda self, _n=_name: self._internal(_n))
    del _name


def make_busybox_tar(dest):
    """A tiny rootfs from Debian's busybox-static: no registry needed."""
    with open(dest, "wb") as f:
        subprocess.run([os.path.join(REPO, "scripts", "busybox-rootfs")], stdout=f, check=True)


def cleanup_leftovers(d):
    """Ends shims the daemon left (by their pid files) and unmounts what is ours."""
    containers = os.path.join(d.exec_root, "containers")
    if os.path.isdir(containers):
        for cid in os.listdir(containers):
            pidf = os.path.join(containers, cid, "init.pid")
            shimf = os.path.join(containers, cid, "shim.pid")
            for f in (pidf, shimf):
                try:
                    pid = int(open(f).read().strip() or 0)
                    if pid > 0:
                        os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError):
                    pass
    # Shims whose pid files went with their containers: found by their state
    # directory, which lies under this daemon's temporary root.
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "berth-shim" in cmd and d.root in cmd:
            try:
                os.kill(int(p), signal.SIGKILL)
            except OSError:
                pass
    time.sleep(0.2)
    mounts = [l.split()[4] for l in open("/proc/self/mountinfo")]
    for m in sorted((m for m in mounts if m.startswith(d.root)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    # Bridges and veths of the networks this daemon made, and its nft table.
    links = [d.bridge]
    try:
        nets = json.load(open(os.path.join(d.data, "network", "networks.json")))
        links += [n["bridge"] for n in nets.values() if n.get("bridge")]
    except (OSError, ValueError):
        pass
    if os.path.isdir(containers):
        present = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        names = [l.split(":")[1].strip().split("@")[0] for l in present.splitlines() if ":" in l]
        for cid in os.listdir(containers):
            links += [n for n in names if n.startswith("vb" + cid[:7])]
    # Anything still enslaved to our bridges is ours too.
    for br in list(links):
        try:
            links = os.listdir(f"/sys/class/net/{br}/brif") + links
        except OSError:
            pass
    for link in links:
        subprocess.run(["ip", "link", "del", link], capture_output=True)
    for family in ("ip", "ip6"):
        subprocess.run(["nft", "delete", "table", family, d.nft_table], capture_output=True)
    for ctrl in os.listdir("/sys/fs/cgroup"):
        base = os.path.join("/sys/fs/cgroup", ctrl, "berth")
        if os.path.isdir(base) and os.path.isdir(containers):
            for cid in os.listdir(containers):
                try:
                    os.rmdir(os.path.join(base, cid))
                except OSError:
                    pass


@contextlib.contextmanager
def private_daemon(prefix, tag_offset, data_mount=None):
    """A berthd of a test's own (to kill, or to starve of disk), with
    busybox imported; `data_mount(d)` runs before it starts and returns
    what undoes it. Removed with its containers and leftovers, whatever
    happens."""
    root = tempfile.mkdtemp(prefix=prefix)
    d = Daemon(root, tag_offset=tag_offset)
    os.makedirs(d.data)
    undo = data_mount(d) if data_mount else None
    try:
        d.start()
        tar = os.path.join(root, "busybox.tar")
        make_busybox_tar(tar)
        d.berth("import", tar, "busybox:latest", check=True)
        yield d
    finally:
        try:
            ids = d.berth("ps", "-aq", "--no-trunc")[1].split()
            if ids:
                d.berth("rm", "-f", *ids)
            d.stop()
        finally:
            cleanup_leftovers(d)
            if undo:
                undo()
            subprocess.run(["rm", "-rf", root])


@pytest.fixture(scope="session")
def daemon():
    reference = os.environ.get("BERTH_REFERENCE")
    if reference:
        yield from reference_daemon(reference)
        return
    root = tempfile.mkdtemp(prefix="berth-it-")
    d = Daemon(root)
    try:
        d.start()
        tar = os.path.join(root, "busybox.tar")
        make_busybox_tar(tar)
        with open(tar, "rb") as f:
            rc, out, err = d.berth("import", "-", "busybox:latest", input=f.read())
        assert rc == 0, err
        d.busybox_tar = tar
        yield d
    finally:
        try:
            if d.proc and d.proc.poll() is None:
                st, raw, _ = d.api("GET", "/containers/json?all=1")
                for c in json.loads(raw):
                    d.api("DELETE", f"/containers/{c['Id']}?force=1")
        except Exception:
            pass
        d.stop()
        cleanup_leftovers(d)
        shutil.rmtree(root, ignore_errors=True)


def reference_daemon(url):
    d = ReferenceDaemon(url)
    tar = os.path.join(d.root, "busybox.tar")
    make_busybox_tar(tar)
    with open(tar, "rb") as f:
        rc, out, err = d.docker("import", "-", "busybox:latest", input=f.read())
    assert rc == 0, err
    d.busybox_tar = tar
    before = {c["Id"] for c in json.loads(d.api("GET", "/containers/json?all=1")[1])}
    try:
        yield d
    finally:
        # Only what the tests made goes.
        for c in json.loads(d.api("GET", "/containers/json?all=1")[1]):
            if c["Id"] not in before:
                d.api("DELETE", f"/containers/{c['Id']}?force=1")
        shutil.rmtree(d.root, ignore_errors=True)


# Every berthd the tests start (the session's and tests' own) records its
# whole JSON answers here; each test's answers are checked against Docker's
# API schema when it ends.
# BERTH_API_RECORD_DIR set by hand keeps the record for a look afterwards.
_OWN_RECORD = not os.environ.get("BERTH_REFERENCE") and "BERTH_API_RECORD_DIR" not in os.environ
if _OWN_RECORD:
    os.environ["BERTH_API_RECORD_DIR"] = tempfile.mkdtemp(prefix="berth-api-record-")


@pytest.fixture(scope="session")
def _api_recorder():
    d = os.environ.get("BERTH_API_RECORD_DIR")
    if not d or os.environ.get("BERTH_REFERENCE"):
        yield None
        return
    yield apischema.Recorder(d)
    if _OWN_RECORD:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def api_schema_check(_api_recorder):
    """Fails the test whose requests got an answer that does not fit Docker's
    schema (see apischema.py)."""
    yield
    if _api_recorder is None:
        return
    problems = _api_recorder.new_problems()
    if problems:
        shown = "\n".join(sorted(set(problems))[:20])
        pytest.fail(f"{len(problems)} answers do not fit Docker's API schema:\n{shown}",
                    pytrace=False)


@pytest.fixture
def name(request):
    """A container name unique to the test."""
    base = request.node.name.replace("_", "-").replace("[", "-").replace("]", "")
    tag = hashlib.sha1(request.node.name.encode()).hexdigest()[:6]
    return f"t-{base[:32]}-{tag}"
