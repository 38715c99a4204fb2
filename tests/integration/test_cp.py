"""docker cp (/containers/{id}/archive): out of and into running and stopped
containers, through symlinks, volumes, and refusing tars that would land
outside the target."""

import base64
import io
import json
import os
import tarfile
import time


import pytest


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_cp_out_of_and_into_a_container(daemon, tool, tmp_path, name):
    cp = (lambda *a: daemon.run(tool, "cp", *a))
    script = ("mkdir -p /etc/app && echo conf > /etc/app/c.conf && ln -s /etc/app /applink "
              "&& echo v > /data/v && exec sleep 60")
    daemon.docker("run", "-d", "--name", name, "-v", f"{name}-vol:/data", "busybox", "sh", "-c", script, check=True)
    try:
        import time
        deadline = time.time() + 10
        while daemon.docker("exec", name, "test", "-f", "/data/v")[0] != 0:
            assert time.time() < deadline
            time.sleep(0.1)
        out = tmp_path / "out"
        out.mkdir()
        # Files, directories, a link as a link, a link's target's contents, a volume.
        rc, o, err = cp(f"{name}:/etc/app/c.conf", str(out / "c.conf"))
        assert rc == 0 and (out / "c.conf").read_text() == "conf\n", err
        rc, o, err = cp(f"{name}:/etc/app", str(out / "appdir"))
        assert rc == 0 and (out / "appdir" / "c.conf").read_text() == "conf\n", err
        rc, o, err = cp(f"{name}:/applink", str(out / "ln"))
        assert rc == 0 and os.readlink(out / "ln") == "/etc/app", err
        rc, o, err = cp(f"{name}:/applink/.", str(out / "lncontents"))
        assert rc == 0 and (out / "lncontents" / "c.conf").read_text() == "conf\n", err
        rc, o, err = cp(f"{name}:/data/v", str(out / "v"))
        assert rc == 0 and (out / "v").read_text() == "v\n", err
        # The stat header the CLI relies on.
        status, _, hdrs = daemon.api("HEAD", f"/containers/{name}/archive?path=/etc/app")
        st = json.loads(base64.b64decode(hdrs["x-docker-container-path-stat"]))
        assert status == 200 and st["name"] == "app" and st["mode"] & (1 << 31), st
        rc, o, err = cp(f"{name}:/nope", str(out / "x"))
        assert rc != 0 and "Could not find the file /nope in container" in err, err
        # Into the container: a file, a directory, into a volume.
        (tmp_path / "local.txt").write_text("local\n")
        (tmp_path / "dir").mkdir()
        (tmp_path / "dir" / "inner").write_text("inner\n")
        assert cp(str(tmp_path / "local.txt"), f"{name}:/tmp/")[0] == 0
        # A directory to a path that does not exist becomes that path.
        assert cp(str(tmp_path / "dir"), f"{name}:/opt/")[0] == 0
        assert cp(str(tmp_path / "dir"), f"{name}:/tmp")[0] == 0
        assert cp(str(tmp_path / "local.txt"), f"{name}:/data/")[0] == 0
        rc, o, err = daemon.docker("exec", name, "cat", "/tmp/local.txt", "/opt/inner", "/tmp/dir/inner", "/data/local.txt")
        assert o == "local\ninner\ninner\nlocal\n", o + err
        # Stopped: copies still work both ways.
        daemon.docker("stop", "-t", "0", name, check=True)
        (tmp_path / "later.txt").write_text("later\n")
        rc, o, err = cp(str(tmp_path / "later.txt"), f"{name}:/etc/app/")
        assert rc == 0, err
        rc, o, err = cp(f"{name}:/etc/app/later.txt", str(out / "later.txt"))
        assert rc == 0 and (out / "later.txt").read_text() == "later\n", err
        rc, o, err = cp(f"{name}:/tmp/dir/inner", "-")
        assert rc == 0 and "inner" in o, err
    finally:
        daemon.docker("rm", "-f", "-v", name)
        daemon.docker("volume", "rm", f"{name}-vol")


def tar_of(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for n, data in entries:
            info = tarfile.TarInfo(n)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cp_refuses_tars_that_escape(daemon, name):
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "ln -s / /tmp/esc; ln -s ../../../../../../ /tmp/rel; exec sleep 60", check=True)
    marker = f"/berth-cp-escape-{name}"
    try:
        import time
        deadline = time.time() + 10
        while daemon.docker("exec", name, "test", "-L", "/tmp/rel")[0] != 0:
            assert time.time() < deadline
            time.sleep(0.1)
        for entries in ([("../" + marker.lstrip("/"), b"x")],
                        [("esc" + marker, b"x")],
                        [("rel" + marker, b"x")]):
            status, body, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/tmp", body=tar_of(entries),
                                         headers={"Content-Type": "application/x-tar"})
            assert status >= 400, (entries, status, body)
            assert not os.path.exists(marker), "a cp tar wrote outside the container"
        # The container is not left frozen by the failed copies.
        assert daemon.docker("exec", name, "true")[0] == 0
        status, body, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/etc/hostname",
                                     body=tar_of([("f", b"x")]))
        assert status == 400 and b"not a directory" in body, body
    finally:
        daemon.docker("rm", "-f", name)


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_export_then_import(daemon, tool, tmp_path, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    run("run", "--name", name, "busybox", "sh", "-c", "echo exported > /marker", check=True)
    tag = f"{name}-img:1"
    try:
        out = tmp_path / "fs.tar"
        rc, o, err = run("export", "-o", str(out), name)
        assert rc == 0, err
        with tarfile.open(out) as t:
            names = t.getnames()
        assert "marker" in names or "./marker" in names, names[:20]
        assert any(n.rstrip("/").endswith("bin/busybox") for n in names)
        rc, o, err = run("import", str(out), tag)
        assert rc == 0, err
        rc, o, err = run("run", "--rm", tag, "cat", "/marker")
        assert (rc, o) == (0, "exported\n"), err
        t0 = f"{time.time() - 60:.0f}"
        rc, o, err = run("events", "--since", t0, "--until", f"{time.time():.3f}", "--filter", "type=image",
                         "--filter", "event=import", "--format", "{{.Action}}")
        assert "import" in o.split(), o + err
    finally:
        run("rm", "-f", name)
        run("rmi", tag)


def test_cp_respects_read_only_mounts(daemon, tmp_path, name):
    host = tmp_path / "ro"
    host.mkdir()
    (tmp_path / "f.txt").write_text("x")
    daemon.docker("run", "-d", "--name", name, "-v", f"{host}:/ro:ro", "busybox", "sleep", "60", check=True)
    daemon.docker("run", "-d", "--name", f"{name}-rofs", "--read-only", "busybox", "sleep", "60", check=True)
    try:
        rc, out, err = daemon.docker("cp", str(tmp_path / "f.txt"), f"{name}:/ro/")
        assert rc != 0 and "read-only" in err, err
        assert os.listdir(host) == [], "a cp wrote through a read-only bind"
        rc, out, err = daemon.docker("cp", str(tmp_path / "f.txt"), f"{name}-rofs:/tmp/")
        assert rc != 0 and "read-only" in err, err
        # Reading from them is fine.
        (host / "r.txt").write_text("readable\n")
        rc, out, err = daemon.docker("cp", f"{name}:/ro/r.txt", str(tmp_path / "r.txt"))
        assert rc == 0 and (tmp_path / "r.txt").read_text() == "readable\n", err
    finally:
        daemon.docker("rm", "-f", name, f"{name}-rofs")
