"""Dockerfile builds through the docker CLI (classic builder, DOCKER_BUILDKIT=0)
and berth: the tutorial's hello app, the cache, history, multi-stage,
.dockerignore, hostile contexts and failures."""

import io
import json
import os
import signal
import subprocess
import tarfile
import time

import pytest

DOCKERFILE = """\
FROM busybox
RUN mkdir -p /opt/node && printf '#!/bin/sh\\ncat "$1"\\n' > /opt/node/node && chmod +x /opt/node/node
COPY . /app
WORKDIR /app
CMD ["/opt/node/node", "index.js"]
"""


def build(daemon, tool, *args, input=None):
    env = dict(daemon.env, DOCKER_BUILDKIT="0")
    exe = daemon.cli_path(tool)
    p = subprocess.run([exe, "build", *args], env=env, capture_output=True, input=input, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@pytest.fixture
def app(tmp_path):
    (tmp_path / "index.js").write_text('console.log("hello world")\n')
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    return tmp_path


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_tutorial_build_cache_and_history(daemon, tool, app):
    run = daemon.docker if tool == "docker" else daemon.berth
    tag1, tag2 = f"hello-{tool}:v0.1", f"hello-{tool}:v0.2"
    rc, out, err = build(daemon, tool, "-t", tag1, str(app))
    assert rc == 0, out + err
    assert "Step 1/5 : FROM busybox" in out and "Step 5/5 : CMD" in out
    assert f"Successfully tagged {tag1}" in out
    assert "Successfully built" in out
    rc, out, err = run("run", "--rm", tag1)
    assert out == 'console.log("hello world")\n', err
    # One changed source file: the steps before COPY come from the cache.
    with open(app / "index.js", "a") as f:
        f.write(f'console.log("v0.2 by {tool}")\n')
    rc, out2, err = build(daemon, tool, "-t", tag2, str(app))
    assert rc == 0, out2 + err
    steps = out2.split("Step ")[1:]
    assert " ---> Using cache" in steps[1], "RUN is cached"
    assert " ---> Using cache" not in steps[2], "COPY sees the change"
    assert run("run", "--rm", tag2)[1].endswith(f'console.log("v0.2 by {tool}")\n')
    # A fully cached rebuild gives the same image.
    rc, out3, _ = build(daemon, tool, "-q", str(app))
    id2 = json.loads(run("image", "inspect", tag2)[1])[0]["Id"]
    assert out3.strip() == id2
    # history: one row per instruction, the base layer at the bottom.
    rc, out, err = run("image", "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", tag2)
    rows = [l.split("|") for l in out.splitlines()]
    assert len(rows) == 5, rows  # busybox's one entry, then RUN, COPY, WORKDIR, CMD
    assert "CMD" in rows[0][0] and "WORKDIR /app" in rows[1][0]
    assert "COPY" in rows[2][0] and "mkdir -p /opt/node" in rows[3][0]
    assert rows[1][1] in ("0B", "0 B")
    # The layers: the base image's first, then RUN's and COPY's.
    rc, out, _ = run("image", "inspect", "--format", "{{json .RootFS.Layers}}", tag2)
    layers = json.loads(out)
    base = json.loads(run("image", "inspect", "busybox")[1])[0]["RootFS"]["Layers"]
    assert layers[0] == base[0] and len(layers) == 3
    v1_layers = json.loads(run("image", "inspect", tag1)[1])[0]["RootFS"]["Layers"]
    assert v1_layers[:2] == layers[:2], "v0.2 shares the unchanged layers"
    # Intermediate images are hidden from `images` but listed with -a.
    assert "<none>" not in run("images")[1]
    assert "<none>" in run("images", "-a")[1]
    run("rmi", tag1, tag2)


def test_multi_stage_builds_only_what_the_target_needs(daemon, tmp_path):
    (tmp_path / "Dockerfile").write_text("""\
ARG GREETING=hi
FROM busybox AS unused
RUN echo never > /never
FROM busybox AS build
ARG GREETING
ENV WHO=world
RUN echo "$GREETING $WHO" > /out.txt
FROM busybox
COPY --from=build /out.txt /result/
RUN cat /result/out.txt
""")
    rc, out, err = build(daemon, "docker", "--build-arg", "GREETING=hello", "-t", "ms:1", str(tmp_path))
    assert rc == 0, out + err
    assert "echo never" not in out, "a stage nobody needs is skipped"
    assert "hello world" in out
    assert daemon.docker("run", "--rm", "ms:1", "cat", "/result/out.txt")[1] == "hello world\n"
    rc, out, err = build(daemon, "berth", "--target", "build", "-t", "ms:build", str(tmp_path))
    assert rc == 0, out + err
    assert daemon.berth("run", "--rm", "ms:build", "sh", "-c", "echo $WHO")[1] == "world\n"
    daemon.docker("rmi", "ms:1", "ms:build")


def test_instructions_and_substitution(daemon, tmp_path):
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "b.txt").write_text("B")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("C")
    tf = io.BytesIO()
    with tarfile.open(fileobj=tf, mode="w") as t:
        data = b"from-tar"
        info = tarfile.TarInfo("unpacked/inside.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    (tmp_path / "pkg.tar").write_bytes(tf.getvalue())
    (tmp_path / "Dockerfile").write_text("""\
FROM busybox
ENV BASE=/srv DIR=data
WORKDIR ${BASE}/${DIR:-none}
COPY *.txt ./
COPY --chown=65534:65534 --chmod=600 sub /owned/
ADD pkg.tar /opt/
LABEL version="1.0" tier=web
EXPOSE 8080 53/udp
USER nobody
VOLUME ["/cache"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD true
RUN <<EOF
echo heredoc > /tmp/h
EOF
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo $BASE"]
""")
    rc, out, err = build(daemon, "docker", "-t", "inst:1", str(tmp_path))
    assert rc == 0, out + err
    info = json.loads(daemon.docker("image", "inspect", "inst:1")[1])[0]["Config"]
    assert info["WorkingDir"] == "/srv/data"
    assert info["Labels"] == {"version": "1.0", "tier": "web"}
    assert set(info["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert info["User"] == "nobody" and info["StopSignal"] == "SIGINT"
    assert "/cache" in info["Volumes"]
    assert info["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert info["Healthcheck"]["Interval"] == 5_000_000_000
    assert info["Entrypoint"] == ["/bin/sh", "-c"] and info["Cmd"] == ["echo $BASE"]
    rc, out, err = daemon.docker("run", "--rm", "--user", "root", "--entrypoint", "sh", "inst:1", "-c",
                                 "cat a.txt b.txt; echo; stat -c '%u:%g %a' /owned/c.txt; "
                                 "cat /opt/unpacked/inside.txt; echo; cat /tmp/h")
    assert out.split("\n")[:4] == ["AB", "65534:65534 600", "from-tar", "heredoc"], out + err
    assert daemon.docker("run", "--rm", "inst:1")[1] == "/srv\n"
    daemon.docker("rmi", "inst:1")


def test_dockerignore_and_hostile_contexts(daemon, tmp_path):
    (tmp_path / "keep.txt").write_text("keep")
    (tmp_path / "secret.key").write_text("secret")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("log")
    (tmp_path / "logs" / "important.log").write_text("important")
    (tmp_path / ".dockerignore").write_text("*.key\nlogs\n!logs/important.log\n")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY . /ctx\nRUN find /ctx -type f | sort\n")
    for tool in ("docker", "berth"):
        rc, out, err = build(daemon, tool, "--no-cache", str(tmp_path))
        assert rc == 0, out + err
        assert "/ctx/keep.txt" in out and "/ctx/logs/important.log" in out
        assert "secret.key" not in out and "a.log" not in out
    # COPY of a path outside the context, or through a link that leads out.
    os.symlink("/etc", tmp_path / "hostetc")
    for df in ("FROM busybox\nCOPY ../outside /x\n", "FROM busybox\nCOPY hostetc/passwd /x\n"):
        (tmp_path / "Dockerfile").write_text(df)
        rc, out, err = build(daemon, "berth", str(tmp_path))
        assert rc != 0 and "outside the build context" in out + err, out + err
    # A context tar with `..` entries is refused before anything runs.
    tf = io.BytesIO()
    with tarfile.open(fileobj=tf, mode="w") as t:
        for name, data in (("Dockerfile", b"FROM busybox\n"), ("../../escape", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    rc, out, err = build(daemon, "berth", "-", input=tf.getvalue())
    assert rc != 0 and "outside the build context" in out + err, out + err


def test_errors_name_lines_and_failures_leave_no_image(daemon, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n\nRUNN echo\n")
    rc, out, err = build(daemon, "docker", str(tmp_path))
    assert rc != 0 and "Dockerfile:3: unknown instruction: RUNN" in out + err
    before = daemon.docker("images", "-aq")[1].split()
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo partial > /p && false\n")
    rc, out, err = build(daemon, "docker", "-t", "broken:1", str(tmp_path))
    assert rc == 1
    assert "The command '/bin/sh -c echo partial > /p && false' returned a non-zero code: 1" in out + err
    assert daemon.docker("image", "inspect", "broken:1")[0] != 0
    assert daemon.docker("images", "-aq")[1].split() == before, "no half-made image"
    (tmp_path / "Dockerfile").write_text("FROM no-such-base\n")
    rc, out, err = build(daemon, "berth", str(tmp_path))
    assert rc != 0 and "no-such-base" in out + err
    (tmp_path / "Dockerfile").write_text("FROM busybox\nADD http://example.invalid/x /x\n")
    rc, out, err = build(daemon, "berth", str(tmp_path))
    assert rc != 0 and "network is not reachable" in out + err


def test_cache_survives_a_daemon_restart(daemon, app):
    rc, out, err = build(daemon, "berth", "-t", "restart-cache:1", str(app))
    assert rc == 0, out + err
    daemon.stop(signal.SIGKILL)
    daemon.start()
    rc, out, err = build(daemon, "berth", "-t", "restart-cache:1", str(app))
    assert rc == 0, out + err
    assert out.count(" ---> Using cache") == 4, out
    daemon.berth("rmi", "restart-cache:1")


def test_cancelled_build_leaves_nothing_behind(daemon, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 60\n")
    env = dict(daemon.env, DOCKER_BUILDKIT="0")
    before = set(daemon.berth("ps", "-aq")[1].split())
    p = subprocess.Popen([daemon.cli_path("berth"), "build", str(tmp_path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    deadline = time.time() + 30
    # The step line names "started" too; wait for the container's own output.
    while seen.count(b"started") < 2 and time.time() < deadline:
        seen += p.stdout.read1(4096)
    assert seen.count(b"started") == 2, seen
    assert set(daemon.berth("ps", "-q")[1].split()) - before, "the RUN step runs in a container"
    p.kill()
    p.wait()
    deadline = time.time() + 20
    while set(daemon.berth("ps", "-aq")[1].split()) - before:
        assert time.time() < deadline, "the build's container was not cleaned up"
        time.sleep(0.2)


def layers_size(daemon):
    st, raw, _ = daemon.api("GET", "/system/df")
    assert st == 200
    return json.loads(raw)["LayersSize"]


def test_prune_returns_disk_to_where_it_was(daemon, tmp_path, name):
    # A running container keeps busybox in use, so `-a` leaves it.
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "120", check=True)
    try:
        daemon.docker("system", "prune", "-af")
        baseline = layers_size(daemon)
        (tmp_path / "blob").write_bytes(os.urandom(1 << 20))
        (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo one > /one\nCOPY blob /blob\nCMD [\"true\"]\n")
        rc, out, err = build(daemon, "docker", "-t", "prune-me:1", str(tmp_path))
        assert rc == 0, out + err
        daemon.docker("run", "--name", f"{name}-x", "prune-me:1", check=True)
        # A rebuild under the same tag leaves the old image dangling.
        (tmp_path / "blob").write_bytes(os.urandom(1 << 20))
        rc, out, err = build(daemon, "docker", "-t", "prune-me:1", str(tmp_path))
        assert rc == 0, out + err
        assert layers_size(daemon) > baseline + (2 << 20)
        rc, out, err = daemon.docker("system", "df")
        assert rc == 0 and out.splitlines()[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], out + err
        rc, out, err = daemon.berth("system", "df")
        assert rc == 0 and "Images" in out, err
        rc, out, err = daemon.docker("image", "prune", "-f")
        assert rc == 0, err
        assert "deleted: sha256:" not in out, "the dangling image still has its container"
        rc, out, err = daemon.docker("system", "prune", "-af")
        assert rc == 0, err
        assert "untagged: prune-me:1" in out and "Total reclaimed space" in out
        assert daemon.docker("image", "inspect", "prune-me:1")[0] != 0
        assert daemon.docker("image", "inspect", "busybox")[0] == 0
        assert layers_size(daemon) == baseline
        assert daemon.docker("images", "-aq")[1].split() == daemon.docker("images", "-q", "busybox")[1].split()
    finally:
        daemon.docker("rm", "-f", name, f"{name}-x")



def test_scratch_shell_onbuild_predefined_args_and_flags(daemon, tmp_path):
    import shutil
    shutil.copy("/bin/busybox", tmp_path / "busybox")
    (tmp_path / "Dockerfile").write_text("""\
FROM scratch
COPY busybox /bin/busybox
SHELL ["/bin/busybox", "sh", "-c"]
ARG http_proxy
RUN /bin/busybox mkdir -p /etc && /bin/busybox echo "proxy=$http_proxy" > /etc/proxy
COPY <<EOF /etc/motd
hello from a heredoc
EOF
ONBUILD RUN /bin/busybox echo triggered > /etc/child
CMD ["/bin/busybox", "cat", "/etc/proxy", "/etc/motd"]
""")
    iid = tmp_path / "iid"
    rc, out, err = build(daemon, "berth", "-t", "scratchy:1", "--iidfile", str(iid),
                         "--build-arg", "http_proxy=http://proxy.invalid:3128",
                         "--label", "built.by=test", "--network", "none", "--pull",
                         "--platform", "linux/amd64", str(tmp_path))
    assert rc == 0, out + err
    info = json.loads(daemon.berth("image", "inspect", "scratchy:1")[1])[0]
    assert iid.read_text() == info["Id"]
    assert info["Config"]["Labels"]["built.by"] == "test"
    assert info["Config"]["OnBuild"] == ["RUN /bin/busybox echo triggered > /etc/child"]
    assert len(info["RootFS"]["Layers"]) == 3, "scratch has no base layer"
    rc, out, err = daemon.berth("run", "--rm", "scratchy:1")
    assert out == "proxy=http://proxy.invalid:3128\nhello from a heredoc\n", err
    # ONBUILD triggers run in a child build.
    child = tmp_path / "child"
    child.mkdir()
    (child / "Dockerfile").write_text("FROM scratchy:1\n")
    rc, out, err = build(daemon, "docker", "-t", "scratchy:child", str(child))
    assert rc == 0 and "Executing 1 build trigger" in out, out + err
    assert daemon.docker("run", "--rm", "scratchy:child", "/bin/busybox", "cat", "/etc/child")[1] == "triggered\n"
    # -f names a Dockerfile outside the context.
    other = tmp_path / "elsewhere.Dockerfile"
    other.write_text("FROM busybox\nCMD [\"echo\", \"from elsewhere\"]\n")
    rc, out, err = build(daemon, "berth", "-f", str(other), "-t", "scratchy:f", str(child))
    assert rc == 0, out + err
    assert daemon.berth("run", "--rm", "scratchy:f")[1] == "from elsewhere\n"
    daemon.berth("rmi", "scratchy:1", "scratchy:child", "scratchy:f")


@pytest.mark.parametrize("dockerfile,message", [
    ("FROM busybox\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
    ("FROM busybox\nSHELL /bin/sh -c\n", "SHELL requires the arguments to be in JSON form"),
    ("FROM busybox\nCOPY --nope=1 a /b\n", "Dockerfile:2: unknown flag: --nope"),
    ("FROM busybox\nONBUILD ONBUILD RUN x\n", "ONBUILD isn't allowed as an ONBUILD trigger"),
    ("FROM busybox AS\n", "FROM requires either one or three arguments"),
    ("FROM busybox\nCOPY onlyone\n", "COPY requires at least two arguments"),
    ("FROM busybox\nEXPOSE 80/icmp\n", "invalid containerPort: 80/icmp"),
    ("RUN echo\n", "no build stage in current context"),
    ("FROM busybox\nCOPY a b c\n", "the destination must be a directory and end with a /"),
    ("FROM busybox\nWORKDIR ${X\n", "missing '}'"),
])
def test_bad_dockerfiles_are_refused_with_the_line(daemon, tmp_path, dockerfile, message):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    (tmp_path / "Dockerfile").write_text(dockerfile)
    rc, out, err = build(daemon, "berth", str(tmp_path))
    assert rc != 0 and message in out + err, out + err


def test_deep_images_build_and_run_up_to_dockers_layer_limit(daemon, tmp_path):
    """100 steps build and run (a container's overlay then names more lower
    layers than one page of mount options holds by path); 125 layers is the
    most an image may have, as in dockerd, and one more fails clearly."""
    (tmp_path / "f").write_text("layer\n")
    steps = "".join(f"COPY f /f{i}\n" for i in range(1, 99))
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\n" + steps + "RUN cat /f1 /f98 > /out\nCMD [\"cat\", \"/out\"]\n")
    rc, out, err = build(daemon, "docker", "-q", "-t", "deep:100", str(tmp_path))
    assert rc == 0, out[-2000:] + err
    layers = json.loads(daemon.docker("image", "inspect", "deep:100")[1])[0]["RootFS"]["Layers"]
    assert len(layers) == 100
    rc, out, err = daemon.docker("run", "--rm", "deep:100")
    assert rc == 0 and out == "layer\nlayer\n", err
    # Up to 125 layers: builds and runs.
    more = "".join(f"COPY f /g{i}\n" for i in range(24))
    (tmp_path / "Dockerfile").write_text(f"FROM deep:100\n{more}RUN cat /g23\n")
    rc, out, err = build(daemon, "docker", "-q", "-t", "deep:125", str(tmp_path))
    assert rc == 0, out[-2000:] + err
    layers = json.loads(daemon.docker("image", "inspect", "deep:125")[1])[0]["RootFS"]["Layers"]
    assert len(layers) == 125
    rc, out, err = daemon.docker("run", "--rm", "deep:125", "cat", "/g0", "/f1")
    assert rc == 0 and out == "layer\nlayer\n", err
    # One more layer, by COPY, by RUN or by commit: a clear error, and the
    # raw build stream ends.
    for step in ("COPY f /h", "RUN true"):
        (tmp_path / "Dockerfile").write_text(f"FROM deep:125\n{step}\n")
        ctx = io.BytesIO()
        with tarfile.open(fileobj=ctx, mode="w") as t:
            t.add(tmp_path / "Dockerfile", "Dockerfile")
            t.add(tmp_path / "f", "f")
        st, raw, _ = daemon.api("POST", "/build", body=ctx.getvalue(),
                                headers={"Content-Type": "application/x-tar"}, timeout=30)
        last = json.loads(raw.decode().splitlines()[-1])
        assert "max depth exceeded" in last.get("error", ""), raw[-500:]
    rc, out, err = daemon.docker("run", "--name", "deep-commit", "deep:125", "true")
    assert rc == 0, err
    rc, out, err = daemon.docker("commit", "deep-commit", "deep:126")
    assert rc != 0 and "max depth exceeded" in err, err
    daemon.docker("rm", "deep-commit")
    daemon.docker("rmi", "deep:125", "deep:100")


def test_a_failed_run_step_ends_the_raw_build_stream(daemon):
    ctx = io.BytesIO()
    data = b'FROM busybox\nRUN ["/nonexistent"]\n'
    with tarfile.open(fileobj=ctx, mode="w") as t:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    # The response must end by itself (the timeout would raise).
    st, raw, _ = daemon.api("POST", "/build", body=ctx.getvalue(),
                            headers={"Content-Type": "application/x-tar"}, timeout=15)
    last = json.loads(raw.decode().splitlines()[-1])
    assert "/nonexistent" in last["error"], raw


def test_build_context_files_hosts_stderr_and_cache_from(daemon, tmp_path, name):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.txt").write_text("app")
    (ctx / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY . /ctx\nRUN ls -a /ctx | sort | tr '\\n' ' '\n")
    for tool in ("docker", "berth"):
        rc, out, err = build(daemon, tool, "--no-cache", str(ctx))
        assert rc == 0, out + err
        # Named by .dockerignore: read by the builder, not copied.
        assert ". .. app.txt" in out, out
    # A Dockerfile from outside the context: the docker CLI sends it under a
    # generated name that COPY must not copy either.
    (ctx / ".dockerignore").unlink()
    outside = tmp_path / "Outside.dockerfile"
    outside.write_text("FROM busybox\nCOPY . /ctx\nRUN ls -a /ctx | sort | tr '\\n' ' '\n")
    rc, out, err = build(daemon, "docker", "--no-cache", "-f", str(outside), str(ctx))
    assert rc == 0, out + err
    assert ". .. Dockerfile app.txt" in out and ".dockerfile." not in out, out
    # --add-host reaches RUN's /etc/hosts; RUN's stderr comes in red, as the
    # classic builder sends it.
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN grep myhost /etc/hosts && echo oops >&2\n")
    rc, out, err = build(daemon, "docker", "--no-cache", "--add-host", "myhost:10.1.2.3", str(ctx))
    assert rc == 0 and "10.1.2.3" in out, out + err
    st, raw, _ = daemon.api("POST", "/build?nocache=1&extrahosts=myhost:10.1.2.3", body=_ctx_tar(ctx),
                            headers={"Content-Type": "application/x-tar"})
    msgs = [json.loads(l) for l in raw.decode().splitlines() if l.strip()]
    assert {"stream": "\x1b[91moops\n\x1b[0m"} in msgs, msgs
    # --cache-from: an image's history is the cache, not the local one.
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=1\nCOPY app.txt /app.txt\nRUN echo ran > /ran\n")
    rc, out, err = build(daemon, "docker", "--no-cache", "-t", f"{name}:src", str(ctx))
    assert rc == 0, out + err
    src = json.loads(daemon.docker("image", "inspect", f"{name}:src")[1])[0]
    rc, out, err = build(daemon, "docker", "--cache-from", f"{name}:src", "-t", f"{name}:again", str(ctx))
    assert rc == 0, out + err
    assert out.count("Using cache") == 3 and "Running in" not in out, out
    again = json.loads(daemon.docker("image", "inspect", f"{name}:again")[1])[0]
    assert again["Id"] == src["Id"], (again["Id"], src["Id"])
    rc, out, err = build(daemon, "berth", "--cache-from", f"{name}:src", "--add-host", "h:10.9.9.9", str(ctx))
    assert rc == 0 and out.count("Using cache") == 3 and src["Id"][7:19] in out, out + err
    # A changed file misses from its step on.
    (ctx / "app.txt").write_text("changed")
    rc, out, err = build(daemon, "docker", "--cache-from", f"{name}:src", str(ctx))
    assert rc == 0 and out.count("Using cache") == 1 and "Running in" in out, out
    daemon.docker("rmi", f"{name}:src", f"{name}:again")


def _ctx_tar(d):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for f in sorted(os.listdir(d)):
            t.add(os.path.join(d, f), arcname=f)
    return buf.getvalue()
