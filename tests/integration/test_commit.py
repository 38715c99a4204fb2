"""Images from containers: `container diff`, `commit`, `history` (issue 3's
tutorial flow), through the docker CLI and berth."""

import json

import pytest

PROGRAM = 'mkdir -p /usr/local/bin && printf "#!/bin/sh\\necho FIGLET: \\$*\\n" > /usr/local/bin/figlet ' \
          '&& chmod +x /usr/local/bin/figlet && rm /etc/group && cat /etc/hostname > /dev/null'


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_diff_commit_tag_run(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    image = f"ourfiglet-{tool}"
    run("container", "run", "--name", name, "busybox", "sh", "-c", PROGRAM, check=True)
    try:
        rc, out, err = run("container", "diff", name)
        assert rc == 0, err
        # The mount points the engine binds (/etc/hostname …) are not changes.
        assert out.splitlines() == [
            "C /etc", "D /etc/group", "C /usr", "A /usr/local", "A /usr/local/bin",
            "A /usr/local/bin/figlet",
        ]
        rc, image_id, err = run("container", "commit", "-m", "add figlet", "-a", "tester",
                                "-c", 'CMD ["figlet", "hi"]', name)
        assert rc == 0, err
        image_id = image_id.strip()
        assert image_id.startswith("sha256:")
        run("image", "tag", image_id, image, check=True)
        rc, out, _ = run("image", "ls", "--format", "{{.Repository}}")
        assert image in out.split()
        rc, out, err = run("container", "run", "--rm", image, "figlet", "hello")
        assert (rc, out) == (0, "FIGLET: hello\n"), err
        assert run("run", "--rm", image)[1] == "FIGLET: hi\n"
        # The deleted file stays deleted in the new image.
        assert run("run", "--rm", image, "ls", "/etc/group")[0] != 0
        info = json.loads(run("image", "inspect", image)[1])[0]
        assert info["Author"] == "tester" and info["Comment"] == "add figlet"
        base = json.loads(run("image", "inspect", "busybox")[1])[0]
        layers = info["RootFS"]["Layers"]
        assert len(layers) == 2 and layers[0] == base["RootFS"]["Layers"][0]
        rc, out, err = run("image", "history", "--format", "{{.ID}}|{{.Comment}}", image)
        assert rc == 0, err
        rows = [l.split("|") for l in out.splitlines()]
        assert rows[0] == [image_id[7:19], "add figlet"]
        assert rows[1][0] == base["Id"][7:19], "the parent image is known locally"
    finally:
        run("rm", "-f", name)
        run("rmi", image)


def test_commit_of_running_container_pauses_and_keeps_config(daemon, name):
    daemon.docker("run", "-d", "--name", name, "-e", "KEEP=1", "-w", "/srv", "busybox", "sh", "-c",
                  "echo data > /srv/file; sleep 60", check=True)
    try:
        for _ in range(50):
            if daemon.docker("exec", name, "cat", "/srv/file")[1] == "data\n":
                break
        rc, image_id, err = daemon.docker("commit", name, f"{name}:snap")
        assert rc == 0, err
        assert json.loads(daemon.docker("inspect", name)[1])[0]["State"]["Status"] == "running"
        rc, out, err = daemon.docker("run", "--rm", f"{name}:snap", "sh", "-c",
                                     'echo "$KEEP $(pwd) $(cat file)"')
        assert out == "1 /srv data\n", err
    finally:
        daemon.docker("rm", "-f", name)
        daemon.docker("rmi", f"{name}:snap")


def test_commit_errors(daemon):
    rc, _, err = daemon.docker("commit", "no-such-container")
    assert rc != 0 and "No such container: no-such-container" in err
    st, body, _ = daemon.api("POST", "/commit?container=")
    assert st == 400
    assert daemon.api("GET", "/containers/nope/changes")[0] == 404


def test_history_flags(daemon):
    rc, out, err = daemon.berth("image", "history", "-H=false", "--format", "{{.Size}}|{{.CreatedSince}}", "busybox")
    assert rc == 0, err
    size, created = out.strip().split("|")
    assert size.isdigit() and int(size) > 1_000_000
    assert created[:4].isdigit() and "T" in created
    rc, out, _ = daemon.berth("image", "history", "-q", "busybox")
    assert out.strip() == json.loads(daemon.berth("image", "inspect", "busybox")[1])[0]["Id"][7:19]
    rc, out, _ = daemon.berth("image", "history", "--no-trunc", "busybox")
    assert json.loads(daemon.berth("image", "inspect", "busybox")[1])[0]["Id"] in out
