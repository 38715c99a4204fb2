"""HEALTHCHECK: probes run as execs on a timer; State.Health, the `(healthy)`
of ps, `--filter health=`, start periods, retries, timeouts, images'
HEALTHCHECK and --no-healthcheck, through the docker CLI and berth."""

import json
import time

import pytest

from test_build import build


def health(daemon, name):
    out = daemon.docker("inspect", name)[1]
    return json.loads(out)[0]["State"].get("Health")


def wait_status(daemon, name, want, timeout=15):
    deadline = time.time() + timeout
    while True:
        h = health(daemon, name)
        if h and h["Status"] == want:
            return h
        assert time.time() < deadline, f"never {want}: {h}"
        time.sleep(0.1)


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_health_goes_unhealthy_then_healthy(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    run("run", "-d", "--name", name, "--health-cmd", "echo probing; test -f /tmp/ok",
        "--health-interval", "200ms", "--health-retries", "2",
        "busybox", "sh", "-c", "sleep 2; touch /tmp/ok; exec sleep 60", check=True)
    try:
        assert health(daemon, name)["Status"] in ("starting", "unhealthy")
        h = wait_status(daemon, name, "unhealthy")
        assert h["FailingStreak"] >= 2
        last = h["Log"][-1]
        assert last["ExitCode"] == 1 and last["Output"] == "probing\n", last
        assert "(unhealthy)" in run("ps", "--filter", f"name={name}", "--format", "{{.Status}}")[1]
        h = wait_status(daemon, name, "healthy")
        assert h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0 and len(h["Log"]) <= 5
        assert "(healthy)" in run("ps", "--filter", f"name={name}", "--format", "{{.Status}}")[1]
        assert run("ps", "-q", "--filter", "health=healthy", "--filter", f"name={name}")[1].strip()
        assert not run("ps", "-q", "--filter", "health=unhealthy", "--filter", f"name={name}")[1].strip()
        cfg = json.loads(run("inspect", name)[1])[0]["Config"]["Healthcheck"]
        assert cfg["Test"] == ["CMD-SHELL", "echo probing; test -f /tmp/ok"] and cfg["Interval"] == 200_000_000
    finally:
        run("rm", "-f", name)


def test_start_period_timeout_and_image_healthcheck(daemon, tmp_path, name):
    # Failures inside the start period do not count.
    daemon.docker("run", "-d", "--name", f"{name}-sp", "--health-cmd", "false", "--health-interval", "200ms",
                  "--health-retries", "1", "--health-start-period", "60s", "--health-start-interval", "100ms",
                  "busybox", "sleep", "60", check=True)
    # A probe that outlives its timeout fails, and is ended.
    daemon.docker("run", "-d", "--name", f"{name}-to", "--health-cmd", "sleep 30", "--health-interval", "200ms",
                  "--health-timeout", "300ms", "--health-retries", "1", "busybox", "sleep", "60", check=True)
    try:
        h = wait_status(daemon, f"{name}-to", "unhealthy")
        assert "exceeded timeout" in h["Log"][-1]["Output"] and h["Log"][-1]["ExitCode"] == -1, h
        time.sleep(0.5)
        top = daemon.docker("top", f"{name}-to")[1]
        assert "sleep 30" not in top, top
        h = health(daemon, f"{name}-sp")
        assert h["Status"] == "starting" and h["FailingStreak"] == 0 and h["Log"], h
        assert "(health: starting)" in daemon.docker("ps", "--filter", f"name={name}-sp", "--format", "{{.Status}}")[1]
    finally:
        daemon.docker("rm", "-f", f"{name}-sp", f"{name}-to")
    # An image's HEALTHCHECK applies; --no-healthcheck turns it off.
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox:latest\nHEALTHCHECK --interval=200ms CMD echo from-image\nCMD [\"sleep\", \"60\"]\n")
    tag = f"{name}-img:1"
    rc, out, err = build(daemon, "docker", "-t", tag, str(tmp_path))
    assert rc == 0, out + err
    try:
        daemon.docker("run", "-d", "--name", f"{name}-img", tag, check=True)
        daemon.docker("run", "-d", "--name", f"{name}-off", "--no-healthcheck", tag, check=True)
        h = wait_status(daemon, f"{name}-img", "healthy")
        assert h["Log"][-1]["Output"] == "from-image\n"
        assert health(daemon, f"{name}-off") is None
        assert daemon.docker("ps", "-q", "--filter", "health=none", "--filter", f"name={name}-off")[1].strip()
    finally:
        daemon.docker("rm", "-f", f"{name}-img", f"{name}-off")
        daemon.docker("rmi", tag)
