"""The Engine API's contract: ping headers, versions, errors and status codes."""

import json


def test_ping_headers(daemon):
    for method in ("GET", "HEAD"):
        st, body, h = daemon.api(method, "/_ping")
        assert st == 200
        assert h["api-version"] == "1.45"
        assert h["ostype"] == "linux"
        assert h["builder-version"] == "1"
        assert h["swarm"] == "inactive"
    assert daemon.api("GET", "/v1.24/_ping")[0] == 200


def test_versions_outside_range_are_refused(daemon):
    st, body, _ = daemon.api("GET", "/v1.99/version")
    assert st == 400 and b"too new" in body
    st, body, _ = daemon.api("GET", "/v1.12/version")
    assert st == 400
    st, body, _ = daemon.api("GET", "/v1.41/version")
    assert st == 200 and json.loads(body)["ApiVersion"] == "1.45"


def test_errors_use_dockers_codes_and_words(daemon):
    st, body, _ = daemon.api("GET", "/containers/nope/json")
    assert st == 404 and json.loads(body)["message"] == "No such container: nope"
    st, body, _ = daemon.api("POST", "/containers/create", body=b"{not json")
    assert st == 400 and "message" in json.loads(body)
    st, body, _ = daemon.api("POST", "/containers/create", body={"Image": "nope:9"})
    assert st == 404 and json.loads(body)["message"] == "No such image: nope:9"
    st, body, _ = daemon.api("POST", "/containers/create?name=dup", body={"Image": "busybox", "Cmd": ["true"]})
    assert st == 201
    first = json.loads(body)["Id"]
    st, body, _ = daemon.api("POST", "/containers/create?name=dup", body={"Image": "busybox", "Cmd": ["true"]})
    assert st == 409
    assert json.loads(body)["message"].startswith(
        f'Conflict. The container name "/dup" is already in use by container "{first}"')
    assert daemon.api("DELETE", "/containers/dup")[0] == 204
    st, body, _ = daemon.api("GET", "/containers/json?filters=%7Bbad")
    assert st == 400
    st, body, _ = daemon.api("GET", "/images/nope/json")
    assert st == 404 and json.loads(body)["message"] == "No such image: nope"


def test_start_twice_is_not_modified_and_stop_stopped(daemon):
    st, body, _ = daemon.api("POST", "/containers/create?name=twice", body={"Image": "busybox", "Cmd": ["sleep", "30"]})
    cid = json.loads(body)["Id"]
    try:
        assert daemon.api("POST", f"/containers/{cid}/start")[0] == 204
        assert daemon.api("POST", f"/containers/{cid}/start")[0] == 304
        st, body, _ = daemon.api("DELETE", f"/containers/{cid}")
        assert st == 409 and b"container is running" in body
        assert daemon.api("POST", f"/containers/{cid}/stop?t=1")[0] == 204
        assert daemon.api("POST", f"/containers/{cid}/stop")[0] == 304
    finally:
        daemon.api("DELETE", f"/containers/{cid}?force=1")


def test_wait_conditions(daemon):
    st, body, _ = daemon.api("POST", "/containers/create", body={"Image": "busybox", "Cmd": ["sh", "-c", "exit 4"]})
    cid = json.loads(body)["Id"]
    assert daemon.api("POST", f"/containers/{cid}/start")[0] == 204
    st, body, _ = daemon.api("POST", f"/containers/{cid}/wait")
    assert json.loads(body)["StatusCode"] == 4
    daemon.api("DELETE", f"/containers/{cid}")


def test_image_inspect_shape(daemon):
    st, body, _ = daemon.api("GET", "/images/busybox/json")
    img = json.loads(body)
    assert img["Id"].startswith("sha256:")
    assert img["RepoTags"] == ["busybox:latest"]
    assert img["RootFS"]["Type"] == "layers"
    assert len(img["RootFS"]["Layers"]) == 1
    assert img["Os"] == "linux"
