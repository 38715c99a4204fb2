"""Volumes and mounts (issue 4): named and anonymous volumes, binds, tmpfs,
--volumes-from, copy-up, ro, rm -v, and the /volumes endpoints, through the
docker CLI and berth."""

import json
import os

import pytest


def cli(daemon, tool):
    return daemon.docker if tool == "docker" else daemon.berth


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_a_volume_outlives_its_container_and_ro_is_read_only(daemon, tool, name):
    run = cli(daemon, tool)
    vol = f"{name}-data"
    rc, out, err = run("volume", "create", "--label", "team=core", vol)
    assert (rc, out.strip()) == (0, vol), err
    run("run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo kept > /data/f", check=True)
    rc, out, err = run("run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "sh", "-c",
                       "cat /data/f; echo x > /data/g")
    assert out.startswith("kept") and "Read-only file system" in err, (out, err)
    rc, out, _ = run("volume", "ls", "--filter", "label=team=core", "--format", "{{.Name}} {{.Driver}}")
    assert out.split("\n")[0] == f"{vol} local"
    info = json.loads(run("volume", "inspect", vol)[1])[0]
    assert info["Name"] == vol and info["Labels"] == {"team": "core"} and info["Scope"] == "local"
    assert os.path.isfile(os.path.join(info["Mountpoint"], "f"))
    # In use (even by a stopped container): refused with Docker's error.
    run("create", "--name", name, "-v", f"{vol}:/data", "busybox", "true", check=True)
    rc, _, err = run("volume", "rm", vol)
    assert rc != 0 and f"remove {vol}: volume is in use - [" in err, err
    run("rm", name, check=True)
    assert run("volume", "rm", vol)[0] == 0
    rc, _, err = run("volume", "inspect", vol)
    assert rc != 0 and f"no such volume" in err


def test_copy_up_anonymous_volumes_and_rm_v(daemon, name):
    # A new volume over a populated image path is filled with it first.
    vol = f"{name}-etc"
    rc, out, err = daemon.docker("run", "--rm", "-v", f"{vol}:/etc", "busybox", "cat", "/etc/passwd")
    assert rc == 0 and out.startswith("root:"), err
    before = set(daemon.docker("volume", "ls", "-q")[1].split())
    daemon.docker("run", "--name", name, "-v", "/srv/anon", "busybox", "sh", "-c", "echo a > /srv/anon/x", check=True)
    info = json.loads(daemon.docker("inspect", name)[1])[0]
    anon = [m for m in info["Mounts"] if m["Destination"] == "/srv/anon"][0]
    assert anon["Type"] == "volume" and len(anon["Name"]) == 64 and anon["RW"]
    assert anon["Name"] in set(daemon.docker("volume", "ls", "-q")[1].split()) - before
    daemon.docker("rm", "-v", name, check=True)
    assert anon["Name"] not in daemon.docker("volume", "ls", "-q")[1].split(), "rm -v takes it"
    # --rm takes anonymous volumes too, but never named ones.
    daemon.docker("run", "--rm", "-v", "/scratch", "busybox", "true", check=True)
    after = set(daemon.docker("volume", "ls", "-q")[1].split())
    assert after - before == set() and vol in after
    daemon.docker("volume", "rm", vol, check=True)


def test_binds_tmpfs_mount_syntax_and_volumes_from(daemon, tmp_path, name):
    (tmp_path / "h.txt").write_text("from host")
    rc, out, err = daemon.berth(
        "run", "--rm", "-v", f"{tmp_path}:/host:ro", "--tmpfs", "/scratch:size=1m",
        "--mount", f"type=bind,source={tmp_path},target=/host2",
        "--mount", "type=tmpfs,target=/t2,tmpfs-size=2m",
        "busybox", "sh", "-c",
        "cat /host/h.txt; echo; echo w > /host2/w.txt; grep -E ' /(scratch|t2) ' /proc/mounts; touch /host/no")
    assert out.startswith("from host\n"), (out, err)
    assert "size=1024k" in out and "size=2048k" in out
    assert (tmp_path / "w.txt").read_text() == "w\n", "a bind mount writes through"
    assert "Read-only file system" in err
    rc, _, err = daemon.docker("run", "--rm", "--mount", "type=bind,source=/no/such/dir,target=/x", "busybox", "true")
    assert rc != 0 and "bind source path does not exist" in err
    # --volumes-from shares another container's volumes.
    daemon.docker("run", "--name", name, "-v", f"{name}-shared:/shared", "busybox",
                  "sh", "-c", "echo shared > /shared/s", check=True)
    rc, out, err = daemon.docker("run", "--rm", "--volumes-from", f"{name}:ro", "busybox",
                                 "sh", "-c", "cat /shared/s; touch /shared/t")
    assert out == "shared\n" and "Read-only" in err, (out, err)
    daemon.docker("rm", name, check=True)
    daemon.docker("volume", "rm", f"{name}-shared", check=True)


def test_volume_options_prune_and_api_errors(daemon, name):
    # dockerd's local driver wants type, device and o together.
    rc, out, err = daemon.docker("volume", "create", "-o", "type=tmpfs", "-o", "o=size=3m", f"{name}-tmp")
    assert rc != 0 and 'missing required option: "device"' in err, err
    rc, out, err = daemon.docker("volume", "create", "-o", "size=3m", f"{name}-tmp")
    assert rc != 0 and "quota size requested but no quota support" in err, err
    rc, out, err = daemon.docker("volume", "create", "-o", "bogus=1", f"{name}-tmp")
    assert rc != 0 and 'invalid option: "bogus"' in err, err
    rc, out, err = daemon.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs",
                                 "-o", "o=size=3m", f"{name}-tmp")
    assert rc == 0, err
    rc, out, err = daemon.docker("run", "--rm", "-v", f"{name}-tmp:/t", "busybox", "sh", "-c",
                                 "grep ' /t ' /proc/mounts")
    assert "tmpfs" in out and "size=3072k" in out, (out, err)
    daemon.docker("volume", "rm", f"{name}-tmp", check=True)
    st, body, _ = daemon.api("POST", "/volumes/create", {"Name": "../escape"})
    assert st == 400 and b"invalid characters" in body
    st, body, _ = daemon.api("POST", "/volumes/create", body=b"{not json")
    assert st == 400
    assert daemon.api("GET", "/volumes/no-such-volume")[0] == 404
    assert daemon.api("DELETE", "/volumes/no-such-volume")[0] == 404
    # prune: anonymous unused volumes by default, every unused one with -a.
    daemon.docker("volume", "create", f"{name}-named", check=True)
    daemon.docker("create", "-v", "/anon", "busybox", "true", check=True)
    ids = daemon.docker("ps", "-aq", "--no-trunc")[1].split()
    for cid in ids:
        daemon.docker("rm", cid)
    # Made through the API without a name: anonymous too, as dockerd's.
    st, body, _ = daemon.api("POST", "/volumes/create", {})
    api_anon = json.loads(body)["Name"]
    assert json.loads(body)["Labels"] == {"com.docker.volume.anonymous": ""}, body
    rc, out, err = daemon.docker("volume", "prune", "-f")
    assert rc == 0 and "Total reclaimed space" in out, err
    assert api_anon in out, out
    left = daemon.docker("volume", "ls", "-q")[1].split()
    assert f"{name}-named" in left and api_anon not in left
    rc, out, err = daemon.berth("volume", "prune", "-a", "-f")
    assert rc == 0 and f"{name}-named" in out, (out, err)
    assert daemon.docker("volume", "ls", "-q")[1].strip() == ""


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_mount_a_volume_subpath(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    run("volume", "create", name, check=True)
    try:
        run("run", "--rm", "-v", f"{name}:/v", "busybox", "sh", "-c",
            "mkdir -p /v/sub/dir && echo inside > /v/sub/dir/f && ln -s /etc /v/sub/out", check=True)
        rc, out, err = run("run", "--rm", "--mount", f"type=volume,source={name},target=/m,volume-subpath=sub/dir",
                           "busybox", "ls", "/m")
        assert rc == 0 and out.split() == ["f"], out + err
        # Read-only subpath mounts stay read-only.
        rc, out, err = run("run", "--rm", "--mount",
                           f"type=volume,source={name},target=/m,volume-subpath=sub,readonly",
                           "busybox", "touch", "/m/x")
        assert rc != 0, out
        # Out of the volume: refused at create, or held inside the volume.
        rc, out, err = run("run", "--rm", "--mount", f"type=volume,source={name},target=/m,volume-subpath=../x",
                           "busybox", "true")
        assert rc != 0 and "subpath must be a relative path within the volume" in err, err
        rc, out, err = run("run", "--rm", "--mount", f"type=volume,source={name},target=/m,volume-subpath=sub/out",
                           "busybox", "ls", "/m")
        assert "passwd" not in out, out
        rc, out, err = run("run", "--rm", "--mount", f"type=volume,source={name},target=/m,volume-subpath=nope",
                           "busybox", "true")
        assert rc != 0 and "cannot access path nope" in err, err
        rc, out, err = run("run", "--rm", "--mount", "type=volume,target=/m,volume-subpath=sub", "busybox", "true")
        assert rc != 0 and "must not set Subpath when using anonymous volumes" in err, err
    finally:
        run("volume", "rm", "-f", name)
