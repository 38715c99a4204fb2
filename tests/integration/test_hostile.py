"""Input that once could abort berthd or leave it inconsistent: nesting deeper
than a stack, trees deeper than PATH_MAX, patterns that backtrack. Each case
ends by checking that the daemon still answers."""

import io
import json
import os
import subprocess
import tarfile
import urllib.parse

import pytest


def context_tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_raw(daemon, files, query="", timeout=60):
    return daemon.api("POST", "/build?" + query, body=context_tar(files),
                      headers={"Content-Type": "application/x-tar"}, timeout=timeout)


def alive(daemon):
    assert daemon.api("GET", "/_ping")[0] == 200
    assert daemon.proc.poll() is None, "berthd exited"


def stream_messages(raw):
    return [json.loads(l) for l in raw.decode().splitlines() if l.strip()]


def test_deeply_nested_variable_in_a_dockerfile_is_an_error(daemon, tmp_path):
    deep = "${a:-" * 3000 + "x" + "}" * 3000
    dockerfile = f"FROM busybox\nENV a={deep}\n"
    st, raw, _ = build_raw(daemon, {"Dockerfile": dockerfile})
    msgs = stream_messages(raw)
    errors = [m for m in msgs if "error" in m]
    assert errors and "nested more than" in errors[-1]["error"], msgs
    alive(daemon)
    # The docker CLI shows the same error and fails.
    (tmp_path / "Dockerfile").write_text(dockerfile)
    env = dict(daemon.env, DOCKER_BUILDKIT="0")
    p = subprocess.run(["docker", "build", str(tmp_path)], env=env, capture_output=True, timeout=60)
    assert p.returncode != 0 and b"nested more than" in p.stderr, p.stderr
    # Nesting that a person would write still works.
    ok = "${a:-${b:-${c:-deep}}}"
    st, raw, _ = build_raw(daemon, {"Dockerfile": f"FROM busybox\nENV a={ok}\n"}, "t=nested-ok")
    assert "Successfully tagged nested-ok:latest" in raw.decode(), raw
    st, raw, _ = daemon.api("GET", "/images/nested-ok/json")
    assert "a=deep" in json.loads(raw)["Config"]["Env"]
    daemon.api("DELETE", "/images/nested-ok")
    alive(daemon)


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_a_tree_deeper_than_path_max_cannot_take_the_daemon_down(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    # 2,500 levels of 2-byte names: 7.5 KB of path, twice PATH_MAX, made
    # level by level from inside.
    script = 'i=0; while [ $i -lt 2500 ]; do mkdir d && cd -P d || exit 1; i=$((i+1)); done; echo made'
    rc, out, err = run("run", "--name", name, "busybox", "sh", "-c", script)
    assert rc == 0 and "made" in out, err
    # diff, commit, export and cp of it fail cleanly or succeed; none may crash.
    run("diff", name)
    alive(daemon)
    run("commit", name, f"{name}-img")
    alive(daemon)
    p = subprocess.run([daemon.cli_path(tool), "export", name], env=daemon.env,
                       capture_output=True, timeout=60)
    alive(daemon)
    st, _, _ = daemon.api("GET", f"/containers/{name}/archive?path=/d")
    assert st in (200, 400, 500), st
    alive(daemon)
    rc, out, err = run("system", "df")
    assert rc == 0, err
    # And it can always be removed: nothing is left in the data root.
    rc, out, err = run("rm", name)
    assert rc == 0, err
    run("rmi", f"{name}-img")
    st, raw, _ = daemon.api("GET", "/containers/json?all=1")
    assert name not in raw.decode()
    alive(daemon)


def test_image_reference_filter_with_many_stars_answers(daemon):
    pattern = "*" * 5000 + "nomatch"
    q = urllib.parse.quote(json.dumps({"reference": {pattern: True}}))
    st, raw, _ = daemon.api("GET", f"/images/json?filters={q}", timeout=10)
    assert st == 200 and json.loads(raw) == []
    q = urllib.parse.quote(json.dumps({"reference": {"busy*": True}}))
    st, raw, _ = daemon.api("GET", f"/images/json?filters={q}")
    assert any("busybox:latest" in (i["RepoTags"] or []) for i in json.loads(raw))
    alive(daemon)


def test_deeply_nested_json_bodies_are_refused(daemon):
    body = '{"Image":"busybox","Labels":' + "[" * 100000 + "]" * 100000 + "}"
    st, raw, _ = daemon.api("POST", "/containers/create", body=body)
    assert st == 400, raw
    alive(daemon)


def test_deeply_nested_format_template_is_an_error(daemon):
    fmt = "{{if .Id}}" * 7000 + "x" + "{{end}}" * 7000
    rc, out, err = daemon.berth("ps", "-a", "--format", fmt)
    assert rc != 0 and "nested more than" in err, err[-500:]


def tar_of(entries):
    """entries: (name, kind, data_or_target) with kind file, dir, symlink, hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for n, kind, extra in entries:
            info = tarfile.TarInfo(n)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, extra
                t.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, extra
                t.addfile(info)
            else:
                data = extra.encode()
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def entries_then(entries, junk):
    """The entries' tar without its end blocks, then `junk` and end blocks."""
    buf = io.BytesIO()
    t = tarfile.open(fileobj=buf, mode="w")
    for n, kind, extra in entries:
        info = tarfile.TarInfo(n)
        if kind == "dir":
            info.type = tarfile.DIRTYPE
            t.addfile(info)
        else:
            info.size = len(extra)
            t.addfile(info, io.BytesIO(extra.encode()))
    return buf.getvalue() + junk + b"\0" * 1024


def test_a_rejected_copy_into_a_container_writes_nothing(daemon, name):
    rc, out, err = daemon.docker("create", "--name", name, "busybox", "true")
    assert rc == 0, err
    good = [("new", "dir", None), ("new/a.txt", "file", "a" * 10000), ("new/b.txt", "file", "b")]
    whole = tar_of(good + [("new/c.txt", "file", "c" * 20000)])
    cases = {
        "parent escape": tar_of(good + [("../escape.txt", "file", "x")]),
        "through a symlink it made": tar_of(good + [("lnk", "symlink", "/etc"), ("lnk/passwd", "file", "x")]),
        "hard link to nothing": tar_of(good + [("h", "hardlink", "missing/file")]),
        # A tar cut short in the middle of the last file's content.
        "truncated": whole[: len(whole) - 1024 - 10000],
        "a corrupt header after good entries": entries_then(good, b"\x01" * 512),
    }
    try:
        for label, body in cases.items():
            st, raw, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/tmp", body=body,
                                    headers={"Content-Type": "application/x-tar"})
            assert st == 400, (label, st, raw)
            st, raw, _ = daemon.api("GET", f"/containers/{name}/archive?path=/tmp/new")
            assert st == 404, (label, "half-extracted", st)
            st, raw, _ = daemon.api("GET", f"/containers/{name}/archive?path=/tmp/lnk")
            assert st == 404, (label, "half-extracted", st)
        # With noOverwriteDirNonDir, a conflict late in the tar writes nothing either.
        daemon.api("PUT", f"/containers/{name}/archive?path=/tmp", body=tar_of([("f", "file", "x")]),
                   headers={"Content-Type": "application/x-tar"})
        conflict = tar_of(good + [("f", "dir", None)])
        st, raw, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/tmp&noOverwriteDirNonDir=1",
                                body=conflict, headers={"Content-Type": "application/x-tar"})
        assert st == 400 and b"cannot overwrite non-directory" in raw, raw
        assert daemon.api("GET", f"/containers/{name}/archive?path=/tmp/new")[0] == 404
        # The whole tar goes in.
        st, raw, _ = daemon.api("PUT", f"/containers/{name}/archive?path=/tmp", body=whole,
                                headers={"Content-Type": "application/x-tar"})
        assert st == 200, raw
        rc, out, err = daemon.docker("cp", f"{name}:/tmp/new/c.txt", "-")
        assert rc == 0 and "c" * 100 in out, err
    finally:
        daemon.docker("rm", "-f", name)
    alive(daemon)
