"""docker-py against berthd: stats, events, archives, export and update as
the SDK calls them."""

import io
import tarfile
import time

docker = __import__("pytest").importorskip("docker")


def test_docker_py_stats_events_archive_update(daemon, name):
    client = docker.DockerClient(base_url="unix://" + daemon.sock, version="1.45")
    since = time.time() - 1
    c = client.containers.run("busybox", ["sh", "-c", "echo sdk > /f; exec sleep 60"], name=name,
                              detach=True, mem_limit="64m")
    try:
        deadline = time.time() + 10
        while c.exec_run(["test", "-f", "/f"]).exit_code != 0:
            assert time.time() < deadline
            time.sleep(0.1)
        s = c.stats(stream=False)
        assert s["memory_stats"]["limit"] == 64 << 20 and s["pids_stats"]["current"] >= 1
        stream = c.stats(stream=True, decode=True)
        first, second = next(stream), next(stream)
        assert second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"]
        stream.close()
        bits, stat = c.get_archive("/f")
        assert stat["name"] == "f" and stat["size"] == 4
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as t:
            assert t.extractfile("f").read() == b"sdk\n"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("put.txt")
            info.size = 3
            t.addfile(info, io.BytesIO(b"put"))
        assert c.put_archive("/tmp", buf.getvalue())
        assert c.exec_run(["cat", "/tmp/put.txt"]).output == b"put"
        exported = b"".join(c.export())
        with tarfile.open(fileobj=io.BytesIO(exported)) as t:
            assert "f" in t.getnames() or "./f" in t.getnames()
        c.update(mem_limit="96m", memswap_limit="192m")
        c.reload()
        assert c.attrs["HostConfig"]["Memory"] == 96 << 20
        c.stop(timeout=0)
        events = list(client.events(since=since, until=time.time(), decode=True,
                                    filters={"container": name}))
        actions = [e["Action"] for e in events]
        assert actions[:2] == ["create", "start"] and "die" in actions and "stop" in actions, actions
        assert all(e["Actor"]["Attributes"]["name"] == name for e in events)
    finally:
        c.remove(force=True)
