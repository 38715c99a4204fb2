"""`berth registry serve` against a real registry client (skopeo): push and
pull by tag and by digest, an index of two platforms, and the spec's errors
seen from the wire. The images are OCI layouts the test writes itself."""

import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path, *extra):
    port = _free_port()
    root = tmp_path / "registry"
    log = open(tmp_path / "registry.log", "wb")
    p = subprocess.Popen([os.path.join(BIN, "berth"), "registry", "serve",
                          "--addr", f"127.0.0.1:{port}", "--root", str(root), *extra],
                         stdout=log, stderr=log, start_new_session=True)
    url = f"127.0.0.1:{port}"
    # Listening is enough: with auth or TLS a plain GET would not be answered.
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert p.poll() is None, (tmp_path / "registry.log").read_text()
        assert time.monotonic() < deadline, "the registry never listened"
        time.sleep(0.02)
    return p, log, url, root


@pytest.fixture
def registry(tmp_path):
    p, log, url, root = _start(tmp_path)
    try:
        yield url, root
    finally:
        _stop(p, log)


def _stop(p, log):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    log.close()


@pytest.fixture
def private_registry(tmp_path):
    """A registry for user alice (password s3cret) only."""
    import warnings
    with warnings.catch_warnings():
        # Deprecated, but the standard library's only bcrypt (Debian 12's 3.11 has it).
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    hashed = crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{hashed}\n")
    p, log, url, _ = _start(tmp_path, "--htpasswd", str(htpasswd))
    try:
        yield url
    finally:
        _stop(p, log)


def _blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / d).write_bytes(data)
    return {"digest": f"sha256:{d}", "size": len(data)}


def _layer(text):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        body = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(body)
        t.addfile(info, io.BytesIO(body))
    return gzip.compress(raw.getvalue(), mtime=0), hashlib.sha256(raw.getvalue()).hexdigest()


def _image(layout, text, arch="amd64"):
    """An image manifest (and its blobs) in an OCI layout; its descriptor."""
    layer, diff = _layer(text)
    config = json.dumps({"architecture": arch, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff}"]},
                         "config": {"Cmd": ["/hello"]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(layout, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, layer)}],
    }).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(layout, manifest),
            "platform": {"architecture": arch, "os": "linux"}}


def _layout(path, manifests, tag="v1"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for m in manifests:
        m.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = tag
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def _skopeo(*args):
    r = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _get(url, method="GET", data=None, headers=None):
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_skopeo_pushes_and_pulls_by_tag_and_digest(registry, tmp_path):
    registry, _ = registry
    src = tmp_path / "src"
    desc = _image(src, "hello from berth")
    _layout(src, [desc])
    _skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"docker://{registry}/team/hello:v1")
    info = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{registry}/team/hello:v1"))
    assert info["Digest"] == desc["digest"]
    assert info["Architecture"] == "amd64"

    for ref in ["team/hello:v1", f"team/hello@{desc['digest']}"]:
        out = tmp_path / ("out-" + ref.replace("/", "_").replace(":", "_").replace("@", "_"))
        _skopeo("copy", "--src-tls-verify=false", f"docker://{registry}/{ref}", f"oci:{out}:got")
        index = json.loads((out / "index.json").read_text())
        got = index["manifests"][0]["digest"]
        assert got == desc["digest"]
        # Every blob came back whole: the layer unpacks to what was pushed.
        man = json.loads((out / "blobs" / "sha256" / got.split(":")[1]).read_bytes())
        layer = (out / "blobs" / "sha256" / man["layers"][0]["digest"].split(":")[1]).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as t:
            assert t.extractfile("hello.txt").read() == b"hello from berth"

    status, _, body = _get(f"http://{registry}/v2/team/hello/tags/list")
    assert status == 200 and json.loads(body) == {"name": "team/hello", "tags": ["v1"]}
    status, _, body = _get(f"http://{registry}/v2/_catalog")
    assert json.loads(body)["repositories"] == ["team/hello"]


def test_an_index_of_two_platforms(registry, tmp_path):
    registry, _ = registry
    src = tmp_path / "multi"
    amd, arm = _image(src, "amd64 build"), _image(src, "arm64 build", arch="arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [amd, arm]}).encode()
    desc = {"mediaType": "application/vnd.oci.image.index.v1+json", **_blob(src, index)}
    _layout(src, [desc], tag="multi")
    _skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{src}:multi",
            f"docker://{registry}/app:multi")
    raw = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry}/app:multi"))
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(m["platform"]["architecture"] for m in raw["manifests"]) == ["amd64", "arm64"]
    # A client picking its platform: skopeo resolves arm64 through the index.
    info = json.loads(_skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64",
                              f"docker://{registry}/app:multi"))
    assert info["Digest"] == desc["digest"] and info["Architecture"] == "arm64"
    for m in (amd, arm):
        status, headers, _ = _get(f"http://{registry}/v2/app/manifests/{m['digest']}", method="HEAD")
        assert status == 200 and headers["Docker-Content-Digest"] == m["digest"]


def test_errors_on_the_wire(registry):
    registry, _ = registry
    base = f"http://{registry}/v2"
    def code(resp):
        return json.loads(resp[2])["errors"][0]["code"]
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    r = _get(f"{base}/app/blobs/uploads/?digest={wrong}", method="POST", data=b"content")
    assert r[0] == 400 and code(r) == "DIGEST_INVALID"
    r = _get(f"{base}/app/blobs/{wrong}")
    assert r[0] == 404 and code(r) == "BLOB_UNKNOWN"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": wrong, "size": 5}, "layers": []}).encode()
    r = _get(f"{base}/app/manifests/v1", method="PUT", data=manifest,
             headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r[0] == 400 and code(r) == "MANIFEST_BLOB_UNKNOWN"
    r = _get(f"{base}/Bad/manifests/v1")
    assert r[0] == 400 and code(r) == "NAME_INVALID"
    r = _get(f"{base}/app/manifests/nope")
    assert r[0] == 404 and code(r) == "MANIFEST_UNKNOWN"


def test_gc_deletes_only_what_nothing_links(registry, tmp_path):
    url, root = registry
    src = tmp_path / "src"
    desc = _image(src, "kept")
    _layout(src, [desc])
    _skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"docker://{url}/keep:v1")
    orphan = b"an unlinked blob"
    d = "sha256:" + hashlib.sha256(orphan).hexdigest()
    assert _get(f"http://{url}/v2/tmp/blobs/uploads/?digest={d}", method="POST", data=orphan)[0] == 201
    assert _get(f"http://{url}/v2/tmp/blobs/{d}", method="DELETE")[0] == 202
    r = subprocess.run([os.path.join(BIN, "berth"), "registry", "gc", "--root", str(root), "--grace", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("deleted 1 blobs"), r.stdout
    assert not (root / "blobs" / "sha256" / d.split(":")[1]).exists()
    out = tmp_path / "out"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{url}/keep:v1", f"oci:{out}:v1")
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == desc["digest"]


def test_basic_auth_from_an_htpasswd_file(private_registry, tmp_path):
    url = private_registry
    src = tmp_path / "src"
    _layout(src, [_image(src, "private")])
    r = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong",
                        f"oci:{src}:v1", f"docker://{url}/secret:v1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "unauthorized" in r.stderr.lower(), r.stderr
    _skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret",
            f"oci:{src}:v1", f"docker://{url}/secret:v1")
    status, headers, _ = _get(f"http://{url}/v2/secret/tags/list")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    info = json.loads(_skopeo("inspect", "--tls-verify=false", "--creds", "alice:s3cret",
                              f"docker://{url}/secret:v1"))
    assert info["Architecture"] == "amd64"


def test_https_with_a_certificate(tmp_path):
    """--tls-cert/--tls-key: skopeo pushes over TLS and trusts the certificate
    given as its CA (a self-signed one the test makes with openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    certs = tmp_path / "certs.d"
    certs.mkdir()
    shutil.copy(cert, certs / "ca.crt")
    p, log, url, _ = _start(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        src = tmp_path / "src"
        desc = _image(src, "over tls")
        _layout(src, [desc])
        _skopeo("copy", "--dest-cert-dir", str(certs), f"oci:{src}:v1", f"docker://{url}/tls:v1")
        info = json.loads(_skopeo("inspect", "--cert-dir", str(certs), f"docker://{url}/tls:v1"))
        assert info["Digest"] == desc["digest"]
        # Plain HTTP to a TLS port gets nothing served.
        try:
            urllib.request.urlopen(f"http://{url}/v2/", timeout=2).read()
            assert False, "plain HTTP was answered"
        except (OSError, http.client.HTTPException):
            pass
    finally:
        _stop(p, log)


def test_oras_artifacts_chunked_uploads_and_referrers(registry, tmp_path, monkeypatch):
    """oras (PyPI's oras-py): an artifact pushed in small chunks and pulled
    back, then a second one whose subject is the first, found through the
    referrers API with and without an artifactType filter."""
    oras_client = pytest.importorskip("oras.client")
    import oras.oci
    url, _ = registry
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_bytes(os.urandom(200_000))
    client = oras_client.OrasClient(hostname=url, insecure=True)
    client.push(target=f"{url}/art/app:v1", files=["notes.txt"], do_chunked=True,
                chunk_size=64 * 1024, quiet=True)
    out = tmp_path / "pulled"
    got = client.pull(target=f"{url}/art/app:v1", outdir=str(out))
    assert [os.path.basename(p) for p in got] == ["notes.txt"]
    assert (out / "notes.txt").read_bytes() == (tmp_path / "notes.txt").read_bytes()

    st, headers, body = _get(f"http://{url}/v2/art/app/manifests/v1",
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 200
    subject_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json",
                               digest=subject_digest, size=len(body))
    (tmp_path / "sbom.json").write_text('{"packages": []}')
    (tmp_path / "sbom-config.json").write_text("{}")
    client.push(target=f"{url}/art/app:sbom", files=["sbom.json"], subject=subject,
                manifest_config="sbom-config.json:application/vnd.example.sbom.v1", quiet=True)
    st, _, body = _get(f"http://{url}/v2/art/app/referrers/{subject_digest}")
    assert st == 200, body
    found = json.loads(body)["manifests"]
    assert len(found) == 1 and found[0]["artifactType"] == "application/vnd.example.sbom.v1", found
    st, _, body = _get(f"http://{url}/v2/art/app/referrers/{subject_digest}"
                       "?artifactType=application/vnd.example.sbom.v1")
    assert len(json.loads(body)["manifests"]) == 1
    st, _, body = _get(f"http://{url}/v2/art/app/referrers/{subject_digest}?artifactType=other/type")
    assert json.loads(body)["manifests"] == []
    sbom = client.pull(target=f"{url}/art/app:sbom", outdir=str(tmp_path / "sbom-out"))
    assert [os.path.basename(p) for p in sbom] == ["sbom.json"]
