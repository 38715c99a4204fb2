"""Pull, push and login through berthd, with the real docker CLI and berth's
own: against `berth registry serve` and Debian's docker-registry (2.8), with
basic auth, indexes of two platforms, uncompressed and zstd layers, a
connection cut mid-layer (the pull resumes), corrupted bytes (refused) and
berthd killed mid-pull (nothing half-made is visible; the next pull
completes). Every registry listens on loopback; berthd may reach nothing else."""

import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time

import pytest

from conftest import private_daemon
from test_registry import _free_port, _start, _stop, registry  # noqa: F401 (a fixture)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def distribution_registry(tmp_path):
    """Debian's docker-registry (the reference server), on loopback."""
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.skip("docker-registry is not installed")
    port = _free_port()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {tmp_path}/dist-root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    log = open(tmp_path / "dist.log", "wb")
    p = subprocess.Popen([exe, "serve", str(cfg)], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 15
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert p.poll() is None, (tmp_path / "dist.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop(p, log)


@pytest.fixture
def docker_config(daemon, tmp_path, monkeypatch):
    """A config.json of this test's own for both CLIs."""
    d = tmp_path / "docker-config"
    d.mkdir()
    old = daemon.env.get("DOCKER_CONFIG")
    daemon.env["DOCKER_CONFIG"] = str(d)
    yield d
    if old is None:
        daemon.env.pop("DOCKER_CONFIG", None)
    else:
        daemon.env["DOCKER_CONFIG"] = old


def _build(daemon, tag, text, tmp_path):
    ctx = tmp_path / f"ctx-{hashlib.sha1(tag.encode()).hexdigest()[:8]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nRUN echo {text} > /msg && head -c 300000 /dev/urandom > /noise\n"
        'CMD ["cat", "/msg"]\n')
    daemon.docker("build", "-q", "-t", tag, str(ctx), check=True)


def _rmi(daemon, *names):
    daemon.docker("rmi", *names)


@pytest.mark.parametrize("server", ["berth", "distribution"])
def test_docker_push_rmi_pull_run(daemon, tmp_path, docker_config, server, request):
    url = (request.getfixturevalue("registry")[0] if server == "berth"
           else request.getfixturevalue("distribution_registry"))
    img = f"{url}/team/app:v1"
    _build(daemon, img, f"hello-{server}", tmp_path)
    image_id = json.loads(daemon.docker("image", "inspect", img, check=True)[1])[0]["Id"]

    rc, out, err = daemon.docker("push", img)
    assert rc == 0, out + err
    assert f"The push refers to repository [{url}/team/app]" in out
    assert "Pushed" in out
    pushed = [l for l in out.splitlines() if l.startswith("v1: digest: sha256:")]
    assert pushed, out
    digest = pushed[0].split()[2]

    # Again: the registry has every layer.
    rc, out, _ = daemon.docker("push", img, check=True)
    assert "Layer already exists" in out and "Pushed" not in out, out
    # Another repository at the same registry: linked, not sent.
    daemon.docker("tag", img, f"{url}/other/app:v1", check=True)
    rc, out, _ = daemon.docker("push", f"{url}/other/app:v1", check=True)
    assert "Mounted from team/app" in out or "Layer already exists" in out, out
    _rmi(daemon, f"{url}/other/app:v1")

    _rmi(daemon, img)
    assert daemon.docker("image", "inspect", img)[0] != 0
    rc, out, err = daemon.docker("pull", img)
    assert rc == 0, out + err
    assert "v1: Pulling from team/app" in out
    assert "Pull complete" in out and f"Digest: {digest}" in out
    assert f"Status: Downloaded newer image for {img}" in out
    info = json.loads(daemon.docker("image", "inspect", img, check=True)[1])[0]
    assert info["Id"] == image_id, "the image keeps its id through a registry"
    assert info["RepoDigests"] == [f"{url}/team/app@{digest}"]
    assert daemon.docker("run", "--rm", img)[1].strip() == f"hello-{server}"
    rc, out, _ = daemon.docker("pull", img, check=True)
    assert f"Status: Image is up to date for {img}" in out
    # By digest.
    _rmi(daemon, img)
    rc, out, err = daemon.docker("pull", f"{url}/team/app@{digest}")
    assert rc == 0, out + err
    assert daemon.docker("run", "--rm", f"{url}/team/app@{digest}")[1].strip() == f"hello-{server}"
    _rmi(daemon, f"{url}/team/app@{digest}")


def test_run_pulls_an_absent_image_and_berth_does_too(daemon, registry, tmp_path, docker_config):
    url, _ = registry
    img = f"{url}/runme:latest"
    _build(daemon, img, "pulled-by-run", tmp_path)
    daemon.docker("push", img, check=True)
    for tool in ("docker", "berth"):
        _rmi(daemon, img)
        rc, out, err = daemon.run(tool, "run", "--rm", f"{url}/runme")
        assert rc == 0, out + err
        assert out.strip() == "pulled-by-run"
        assert f"Unable to find image '{url}/runme" in err, err
        assert "Pull complete" in err
    # --pull never does not.
    _rmi(daemon, img)
    rc, _, err = daemon.berth("run", "--rm", "--pull", "never", img)
    assert rc != 0 and "No such image" in err


def test_berth_pull_push_and_digests(daemon, registry, tmp_path, docker_config):
    url, _ = registry
    img = f"{url}/berthcli:v2"
    _build(daemon, img, "berth-cli", tmp_path)
    rc, out, err = daemon.berth("push", img)
    assert rc == 0, out + err
    assert "Pushed" in out and "v2: digest: sha256:" in out
    digest = [l for l in out.splitlines() if l.startswith("v2: digest:")][0].split()[2]
    _rmi(daemon, img)
    rc, out, err = daemon.berth("pull", img)
    assert rc == 0, out + err
    assert out.strip().endswith(img), out
    rows = daemon.berth("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}")[1]
    assert f"{url}/berthcli v2 {digest}" in rows
    rc, out, _ = daemon.berth("pull", "-q", img)
    assert rc == 0 and out.strip() == img
    # A pulled layer is kept as its compressed blob; save makes its tar.
    image_id = json.loads(daemon.berth("image", "inspect", img, check=True)[1])[0]["Id"]
    saved = tmp_path / "saved.tar"
    daemon.berth("save", "-o", str(saved), img, check=True)
    _rmi(daemon, img)
    rc, out, err = daemon.berth("load", "-i", str(saved))
    assert rc == 0, err
    assert json.loads(daemon.berth("image", "inspect", img, check=True)[1])[0]["Id"] == image_id
    assert daemon.berth("run", "--rm", img)[1].strip() == "berth-cli"
    rc, _, err = daemon.berth("pull", f"{url}/berthcli:nope")
    assert rc != 0 and f"manifest for {url}/berthcli:nope not found" in err
    # The API's own view of a reference at the registry.
    st, raw, _ = daemon.api("GET", f"/distribution/{img}/json")
    assert st == 200, raw
    d = json.loads(raw)
    assert d["Descriptor"]["digest"] == digest
    assert d["Platforms"][0]["os"] == "linux"
    _rmi(daemon, img)


def test_login_with_basic_auth(daemon, tmp_path, docker_config):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    (tmp_path / "htpasswd").write_text(
        "alice:" + crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)) + "\n")
    p, log, url, _ = _start(tmp_path, "--htpasswd", str(tmp_path / "htpasswd"))
    try:
        img = f"{url}/private:v1"
        _build(daemon, img, "secret", tmp_path)
        rc, out, err = daemon.docker("push", img)
        assert rc != 0 and "unauthorized" in (out + err), out + err
        rc, out, err = daemon.docker("login", "-u", "alice", "--password-stdin", url, input=b"wrong\n")
        assert rc != 0
        assert f"login attempt to http://{url}/v2/ failed with status: 401 Unauthorized" in err
        rc, out, err = daemon.docker("login", "-u", "alice", "--password-stdin", url, input=b"s3cret\n")
        assert rc == 0 and "Login Succeeded" in out, out + err
        daemon.docker("push", img, check=True)
        _rmi(daemon, img)
        daemon.docker("pull", img, check=True)
        # berth reads the same config.json, and writes one docker reads.
        rc, out, _ = daemon.berth("logout", url)
        assert rc == 0 and f"Removing login credentials for {url}" in out
        _rmi(daemon, img)
        rc, _, err = daemon.docker("pull", img)
        assert rc != 0 and "pull access denied" in err, err
        rc, out, err = daemon.berth("login", "-u", "alice", "--password-stdin", url, input=b"s3cret\n")
        assert rc == 0 and "Login Succeeded" in out, err
        cfg = json.loads((docker_config / "config.json").read_text())
        assert url in cfg["auths"]
        daemon.docker("pull", img, check=True)
        rc, _, err = daemon.berth("login", "-u", "alice", "-p", "nope", url)
        assert rc != 0 and "401 Unauthorized" in err
        _rmi(daemon, img)
    finally:
        _stop(p, log)


# An OCI image written straight to a registry over HTTP, for what the CLIs
# cannot make: two platforms, uncompressed and zstd layers.

def _upload(url, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    c = http.client.HTTPConnection(url, timeout=10)
    c.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", body=data,
              headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    return {"digest": digest, "size": len(data)}


def _put_manifest(url, repo, ref, body, media_type):
    c = http.client.HTTPConnection(url, timeout=10)
    c.request("PUT", f"/v2/{repo}/manifests/{ref}", body=body, headers={"Content-Type": media_type})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _oci_image(url, repo, arch, text, compression="gzip"):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        for name, data in (("msg", text.encode()),):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    if compression == "gzip":
        blob, mt = gzip.compress(plain, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
    elif compression == "zstd":
        blob = subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True, check=True).stdout
        mt = "application/vnd.oci.image.layer.v1.tar+zstd"
    else:
        blob, mt = plain, "application/vnd.oci.image.layer.v1.tar"
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/msg"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(plain).hexdigest()]},
    }).encode()
    m = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_upload(url, repo, config)},
        "layers": [{"mediaType": mt, **_upload(url, repo, blob)}],
    }).encode()
    d = _put_manifest(url, repo, f"{arch}-{compression}", m, "application/vnd.oci.image.manifest.v1+json")
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(m),
            "platform": {"architecture": arch, "os": "linux"}}


def test_index_platforms_and_layer_compressions(daemon, registry, docker_config):
    url, _ = registry
    amd = _oci_image(url, "multi", "amd64", "amd64-build")
    arm = _oci_image(url, "multi", "arm64", "arm64-build")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [arm, amd]}).encode()
    index_digest = _put_manifest(url, "multi", "v1", index, "application/vnd.oci.image.index.v1+json")

    rc, out, err = daemon.docker("pull", f"{url}/multi:v1")
    assert rc == 0, out + err
    info = json.loads(daemon.docker("image", "inspect", f"{url}/multi:v1", check=True)[1])[0]
    assert info["Architecture"] == "amd64"
    assert info["RepoDigests"] == [f"{url}/multi@{index_digest}"], "the index's digest, as dockerd"
    _rmi(daemon, f"{url}/multi:v1")
    rc, out, err = daemon.docker("pull", "--platform", "linux/arm64", f"{url}/multi:v1")
    assert rc == 0, out + err
    info = json.loads(daemon.docker("image", "inspect", f"{url}/multi:v1", check=True)[1])[0]
    assert info["Architecture"] == "arm64"
    _rmi(daemon, f"{url}/multi:v1")
    rc, _, err = daemon.docker("pull", "--platform", "linux/s390x", f"{url}/multi:v1")
    assert rc != 0 and "no matching manifest for linux/s390x" in err, err

    for comp in ("none", "zstd"):
        if comp == "zstd" and shutil.which("zstd") is None:
            continue
        desc = _oci_image(url, "packed", "amd64", f"packed-{comp}", compression=comp)
        ref = f"{url}/packed@{desc['digest']}"
        rc, out, err = daemon.docker("pull", ref)
        assert rc == 0, out + err
        st, raw, _ = daemon.api("GET", f"/images/{ref}/json")
        assert st == 200, raw
        layers = json.loads(raw)["RootFS"]["Layers"]
        assert len(layers) == 1
        _rmi(daemon, ref)


class _Proxy(http.server.ThreadingHTTPServer):
    """Forwards to a registry. Blob answers can be cut after `cut_after`
    bytes (the first `cuts` times), slowed, or have a byte flipped."""

    daemon_threads = True

    def __init__(self, upstream, cut_after=None, cuts=0, delay=0.0, corrupt=False):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts = cuts
        self.delay = delay
        self.corrupt = corrupt
        self.ranges = []
        self.blob_bytes = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _forward(self):
        s = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        c = http.client.HTTPConnection(s.upstream, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        blob = "/blobs/sha256:" in self.path and self.command == "GET" and r.status in (200, 206)
        if blob:
            with s.lock:
                s.ranges.append(self.headers.get("Range"))
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        while True:
            chunk = r.read(16384)
            if not chunk:
                break
            # Layers only (the config is small): the check that matters.
            big = int(r.getheader("Content-Length") or 0) > 100_000
            if blob and big and s.corrupt and sent == 0:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            if blob and s.cut_after is not None and s.cuts > 0 and sent + len(chunk) > s.cut_after:
                with s.lock:
                    s.cuts -= 1
                self.wfile.write(chunk[: s.cut_after - sent])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(chunk)
            sent += len(chunk)
            if blob:
                with s.lock:
                    s.blob_bytes += len(chunk)
                if s.delay:
                    time.sleep(s.delay)
        self.close_connection = True

    def _quietly(self):
        try:
            self._forward()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _quietly


def _big_image(daemon, url, tmp_path, name):
    ctx = tmp_path / "big"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN head -c 3000000 /dev/urandom > /big\n")
    img = f"{url}/{name}:v1"
    daemon.docker("build", "-q", "-t", img, str(ctx), check=True)
    daemon.docker("push", img, check=True)
    size = json.loads(daemon.docker("image", "inspect", img, check=True)[1])[0]["Size"]
    _rmi(daemon, img)
    return size


def test_a_cut_connection_resumes_and_corrupted_bytes_are_refused(daemon, registry, tmp_path, docker_config):
    url, _ = registry
    _big_image(daemon, url, tmp_path, "big")
    cutting = _Proxy(url, cut_after=1_000_000, cuts=2)
    try:
        img = f"{cutting.url}/big:v1"
        rc, out, err = daemon.docker("pull", img)
        assert rc == 0, out + err
        assert cutting.cuts == 0, "the proxy cut the layer twice"
        assert any(r and r.startswith("bytes=") for r in cutting.ranges), cutting.ranges
        rc, out, _ = daemon.docker("run", "--rm", img, "sh", "-c", "wc -c < /big")
        assert out.strip() == "3000000"
        _rmi(daemon, img)
    finally:
        cutting.shutdown()

    flipping = _Proxy(url, corrupt=True)
    try:
        img = f"{flipping.url}/big:v1"
        rc, out, err = daemon.docker("pull", img)
        assert rc != 0
        assert "filesystem layer verification failed for digest sha256:" in out + err, out + err
        assert daemon.docker("image", "inspect", img)[0] != 0
        st, raw, _ = daemon.api("GET", "/images/json")
        assert img not in raw.decode()
        flipping.corrupt = False
        daemon.docker("pull", img, check=True)
        _rmi(daemon, img)
    finally:
        flipping.shutdown()


@pytest.fixture
def own_daemon():
    """A berthd of this test's own, to kill."""
    with private_daemon("berth-it-pull-", 7) as d:
        yield d


def test_kill9_during_a_pull_leaves_nothing_half_made(own_daemon, tmp_path):
    d = own_daemon
    d.env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    p, log, url, _ = _start(tmp_path)
    slow = None
    try:
        _big_image(d, url, tmp_path, "slow")
        slow = _Proxy(url, delay=0.02)
        img = f"{slow.url}/slow:v1"
        puller = subprocess.Popen(["docker", "pull", img], env=d.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        # Past what berthd buffers before writing (256 KiB).
        while slow.blob_bytes < 1_200_000:
            assert time.monotonic() < deadline and puller.poll() is None, "the pull never got going"
            time.sleep(0.05)
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait()
        puller.wait(timeout=30)
        d.start()
        assert d.docker("image", "inspect", img)[0] != 0, "no image from a cut pull"
        slow.delay = 0
        before = len(slow.ranges)
        rc, out, err = d.docker("pull", img)
        assert rc == 0, out + err
        assert any(slow.ranges[before:]), "the next pull resumed from the kept bytes"
        rc, out, _ = d.docker("run", "--rm", img, "sh", "-c", "wc -c < /big")
        assert out.strip() == "3000000"
    finally:
        if slow:
            slow.shutdown()
        _stop(p, log)
