"""/events: the container lifecycle, networks and volumes, replayed with
--since/--until, filtered, and live, through the docker CLI and berth."""

import subprocess
import time

import pytest


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_events_history_filters_and_live(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    t0 = f"{time.time() - 1:.3f}"
    run("run", "--name", name, "--label", "tier=events", "busybox", "sh", "-c", "exit 3")
    run("rm", name, check=True)
    run("volume", "create", f"{name}-v", check=True)
    run("volume", "rm", f"{name}-v", check=True)
    time.sleep(0.2)
    until = f"{time.time():.3f}"
    rc, out, err = run("events", "--since", t0, "--until", until, "--filter", f"container={name}",
                       "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.exitCode}}")
    assert rc == 0, err
    lines = [l.strip() for l in out.splitlines()]
    actions = [l.split()[1] for l in lines]
    for a in ("create", "start", "die", "destroy"):
        assert a in actions, lines
    assert actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
    assert "container die 3" in lines, lines
    rc, out, err = run("events", "--since", t0, "--until", until, "--filter", "type=volume",
                       "--filter", f"volume={name}-v", "--format", "{{.Action}} {{.Actor.ID}}")
    assert out.splitlines() == [f"create {name}-v", f"destroy {name}-v"], out + err
    rc, out, err = run("events", "--since", t0, "--until", until, "--filter", "label=tier=events",
                       "--filter", f"container={name}", "--format", "{{.Action}}")
    assert "die" in out.split() and "destroy" in out.split(), out
    rc, out, err = run("events", "--since", t0, "--until", until, "--filter", "label=tier=other")
    assert rc == 0 and out == "", out
    # Live: a follower sees what happens after it connected.
    exe = "docker" if tool == "docker" else daemon.cli_path("berth")
    follower = subprocess.Popen([exe, "events", "--filter", "type=network", "--format",
                                 "{{.Action}} {{.Actor.Attributes.name}}"],
                                env=daemon.env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        run("network", "create", f"{name}-n", check=True)
        run("network", "rm", f"{name}-n", check=True)
        deadline = time.time() + 10
        seen = []
        while len(seen) < 2 and time.time() < deadline:
            seen.append(follower.stdout.readline().strip())
        assert seen == [f"create {name}-n", f"destroy {name}-n"], seen
    finally:
        follower.kill()
        follower.wait()
