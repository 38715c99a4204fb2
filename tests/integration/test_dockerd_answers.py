"""Where berthd must answer as dockerd does: status codes and messages that
clients read to tell one failure from another."""

import json

import pytest

NOT_MANAGER = 'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join"'


@pytest.mark.parametrize("method,path", [
    ("GET", "/swarm"), ("GET", "/nodes"), ("GET", "/nodes/x"), ("GET", "/services"),
    ("POST", "/services/create"), ("GET", "/services/x"), ("GET", "/tasks"), ("GET", "/secrets"),
    ("POST", "/secrets/create"), ("GET", "/configs"), ("POST", "/swarm/update"),
    ("GET", "/swarm/unlockkey"), ("GET", "/v1.45/services"),
])
def test_swarm_endpoints_answer_503_until_swarm_mode_exists(daemon, method, path):
    st, raw, _ = daemon.api(method, path, body={} if method == "POST" else None)
    assert st == 503, (st, raw)
    assert json.loads(raw)["message"].startswith(NOT_MANAGER), raw


def test_docker_cli_swarm_commands_show_dockerds_words(daemon):
    for args in (["node", "ls"], ["service", "ls"], ["secret", "ls"], ["config", "ls"],
                 ["service", "ps", "x"], ["stack", "ls"]):
        rc, out, err = daemon.docker(*args)
        assert rc != 0 and "This node is not a swarm manager" in err, (args, err)
        assert "page not found" not in err
    rc, out, err = daemon.docker("swarm", "leave")
    assert rc != 0 and "This node is not part of a swarm" in err, err
    st, raw, _ = daemon.api("POST", "/swarm/init", body={"ListenAddr": "127.0.0.1"})
    assert st == 503 and "not available" in json.loads(raw)["message"], raw
