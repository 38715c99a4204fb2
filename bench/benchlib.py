"""Shared helpers for the benchmarks: a private berthd on temporary roots, a
busybox image built offline, timing statistics and side-by-side tables."""

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BERTH_BIN", os.path.join(REPO, "target", "x86_64-unknown-linux-gnu", "release"))


def build():
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=REPO, check=True)


class Daemon:
    """berthd on a temporary socket and roots; stop() removes everything."""

    def __init__(self, *extra, tag_offset=0):
        self.root = tempfile.mkdtemp(prefix="berth-bench-")
        self.sock = os.path.join(self.root, "b.sock")
        self.env = dict(os.environ, BERTH_HOST="unix://" + self.sock,
                        DOCKER_HOST="unix://" + self.sock)
        log = open(os.path.join(self.root, "berthd.log"), "ab")
        tag = (os.getpid() + tag_offset) % 100000
        self.bridge, self.nft_table = f"bb{tag}", f"berth_b{tag}"
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "berthd"), "-H", "unix://" + self.sock,
             "--data-root", os.path.join(self.root, "data"),
             "--exec-root", os.path.join(self.root, "exec"),
             "--bridge", self.bridge, "--bip", f"10.96.{tag % 250}.1/24",
             "--nft-table", self.nft_table, *extra],
            stdout=log, stderr=log, start_new_session=True)
        for _ in range(200):
            if self.berth("version", check=False).returncode == 0:
                break
            time.sleep(0.02)
        tar = subprocess.run([os.path.join(REPO, "scripts", "busybox-rootfs")],
                             capture_output=True, check=True).stdout
        self.berth("import", "-", "busybox:latest", input=tar)

    def berth(self, *args, check=True, input=None):
        return subprocess.run([os.path.join(BIN, "berth"), *args], env=self.env,
                              capture_output=True, check=check, input=input)

    def stop(self):
        ids = self.berth("ps", "-aq", "--no-trunc", check=False).stdout.split()
        if ids:
            self.berth("rm", "-f", *[i.decode() for i in ids], check=False)
        self.berth("network", "prune", "-f", check=False)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", self.nft_table], capture_output=True)
        mounts = [l.split()[4] for l in open("/proc/self/mountinfo")]
        for m in sorted((m for m in mounts if m.startswith(self.root)), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def time_cmd(argv, runs, env=None, warmup=3):
    """Wall-clock milliseconds of each of `runs` runs of argv (after warmups)."""
    out = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = (time.perf_counter() - t) * 1000
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {p.stderr.decode()[-500:]}")
        if i >= warmup:
            out.append(dt)
    return out


def summary(ms):
    q = statistics.quantiles(ms, n=10)
    return {"median": statistics.median(ms), "p10": q[0], "p90": q[-1], "n": len(ms)}


def table(rows, base):
    """rows: [(name, summary)]; prints medians, spread and ratio to `base`."""
    ref = dict(rows)[base]["median"]
    print(f"{'':34} {'median':>9} {'p10':>9} {'p90':>9} {'runs':>5} {'ratio':>7}")
    for name, s in rows:
        print(f"{name:34} {s['median']:8.1f}ms {s['p10']:8.1f}ms {s['p90']:8.1f}ms "
              f"{s['n']:5d} {s['median'] / ref:6.2f}x")


def anchor_available(cli):
    """True when `cli` (docker/podman) reaches a working engine."""
    if shutil.which(cli) is None:
        return False
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    return subprocess.run([cli, "info"], env=env, capture_output=True).returncode == 0
