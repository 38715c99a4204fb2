"""A full disk: a berthd whose data root is a small tmpfs refuses what does not
fit with the kernel's "no space left on device", loses nothing it had, leaves
no partial files, and works again once space is freed."""

import os
import subprocess

import pytest

from conftest import private_daemon


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


@pytest.fixture
def small_daemon():
    def tmpfs(d):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", d.data], check=True)
        return lambda: subprocess.run(["umount", "-l", d.data], capture_output=True)

    with private_daemon("berth-it-disk-", 1, data_mount=tmpfs) as d:
        yield d


def test_full_disk_loses_nothing(small_daemon, tmp_path):
    d = small_daemon
    images_before = d.docker("images", "-q", "--no-trunc")[1]
    # A 40 MiB layer cannot fit in 24 MiB.
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "blob", "wb") as f:
        f.write(os.urandom(40 << 20))
    tar = tmp_path / "big.tar"
    subprocess.run(["tar", "-C", str(big), "-cf", str(tar), "."], check=True)
    baseline = du(d.data)
    rc, out, err = d.docker("import", str(tar), "big:1")
    assert rc != 0 and "no space left on device" in err, (out, err)
    # Nothing half-written stays behind, and what was there is intact.
    assert du(d.data) <= baseline + (1 << 20), (baseline, du(d.data))
    assert d.docker("images", "-q", "--no-trunc")[1] == images_before
    assert d.docker("image", "inspect", "big:1")[0] != 0
    # A container that fills its writable layer gets ENOSPC itself; the
    # daemon carries on, and commit of a layer that no longer fits fails.
    rc, out, err = d.docker("run", "--name", "filler", "busybox", "sh", "-c",
                            "dd if=/dev/zero of=/f bs=1M count=64 2>&1; echo rc=$?")
    assert "No space left on device" in out and "rc=1" in out, (out, err)
    rc, out, err = d.docker("commit", "filler", "filled:1")
    assert rc != 0 and "no space left on device" in err, (out, err)
    assert d.docker("image", "inspect", "filled:1")[0] != 0
    d.docker("rm", "filler", check=True)
    # With the space back, everything works as before.
    rc, out, err = d.docker("run", "--rm", "busybox", "echo", "still-fine")
    assert (rc, out) == (0, "still-fine\n"), err
    assert d.docker("images", "-q", "--no-trunc")[1] == images_before
