"""docker stats: CPU, memory against the limit, PIDs, network and block I/O
from the container's cgroup and namespace, one-shot and streamed."""

import json

import pytest


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_stats(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    run("run", "-d", "--name", f"{name}-busy", "--memory", "64m", "busybox", "sh", "-c",
        "while :; do :; done", check=True)
    run("run", "-d", "--name", f"{name}-idle", "busybox", "sleep", "60", check=True)
    try:
        rc, out, err = run("stats", "--no-stream", "--format",
                           "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}|{{.NetIO}}",
                           f"{name}-busy", f"{name}-idle")
        assert rc == 0, err
        rows = {l.split("|")[0]: l.split("|") for l in out.splitlines()}
        busy, idle = rows[f"{name}-busy"], rows[f"{name}-idle"]
        assert float(busy[1].rstrip("%")) > 20, busy
        assert float(idle[1].rstrip("%")) < 5, idle
        assert busy[2].endswith("/ 64MiB"), busy
        assert busy[3] == "1" and idle[3] == "1", (busy, idle)
        assert "/" in busy[4], busy
        rc, out, err = run("stats", "--no-stream", f"{name}-idle")
        header = out.splitlines()[0].split()
        assert header[:4] == ["CONTAINER", "ID", "NAME", "CPU"], out
    finally:
        run("rm", "-f", f"{name}-busy", f"{name}-idle")


def test_stats_api_stream_and_stopped(daemon, name):
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
    try:
        status, body, _ = daemon.api("GET", f"/containers/{name}/stats?stream=false")
        s = json.loads(body)
        assert status == 200 and s["name"] == f"/{name}"
        assert s["cpu_stats"]["system_cpu_usage"] > s["precpu_stats"]["system_cpu_usage"] > 0
        assert s["memory_stats"]["usage"] > 0 and s["pids_stats"]["current"] == 1
        assert "eth0" in s["networks"]
        status, body, _ = daemon.api("GET", f"/containers/{name}/stats?stream=false&one-shot=true")
        # No previous sample: dockerd's zero CPUStats (Go emits the nested
        # structs; the omitempty counters are left out).
        pre = json.loads(body)["precpu_stats"]
        assert pre["cpu_usage"]["total_usage"] == 0 and "system_cpu_usage" not in pre
        daemon.docker("stop", "-t", "0", name, check=True)
        status, body, _ = daemon.api("GET", f"/containers/{name}/stats?stream=false")
        s = json.loads(body)
        assert status == 200 and s["read"] == "0001-01-01T00:00:00Z" and s["memory_stats"] == {}
        status, body, _ = daemon.api("GET", "/containers/nope/stats?stream=false")
        assert status == 404
    finally:
        daemon.docker("rm", "-f", name)
