"""Many clients on the same containers at once: starts, exits (restart
policies), stops, renames, inspects, lists, image removals (which ask who
uses an image), removals. Nothing may deadlock: every call answers."""

import json
import threading
import time


def test_hammering_the_same_containers_never_hangs(daemon, name):
    names = [f"{name}-{i}" for i in range(4)]
    for n in names:
        daemon.docker("create", "--name", n, "--restart", "on-failure:1000", "busybox", "sh", "-c", "exit 1",
                      check=True)
    stop = threading.Event()
    calls = {"n": 0}
    errors = []

    def loop(fn):
        while not stop.is_set():
            try:
                fn()
                calls["n"] += 1
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
                return

    def api(method, path, body=None):
        st, raw, _ = daemon.api(method, path, body, timeout=20)
        assert st < 500, (method, path, st, raw)

    def starts():
        for n in names:
            api("POST", f"/containers/{n}/start")

    def stops():
        for n in names:
            api("POST", f"/containers/{n}/stop?t=0")

    def renames():
        for i, n in enumerate(names):
            api("POST", f"/containers/{n}/rename?name={n}-x")
            api("POST", f"/containers/{n}-x/rename?name={n}")

    def views():
        for n in names:
            api("GET", f"/containers/{n}/json")
        api("GET", "/containers/json?all=1")
        # Asks which containers use the image (it is in use: a conflict).
        st, _, _ = daemon.api("DELETE", "/images/busybox", timeout=20)
        assert st in (409, 404, 200), st

    threads = [threading.Thread(target=loop, args=(f,)) for f in (starts, stops, renames, views, views)]
    for t in threads:
        t.start()
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(60)
    try:
        assert not any(t.is_alive() for t in threads), "a client never got its answer"
        assert errors == [], errors[:3]
        assert calls["n"] > 50, calls
        for n in names:
            st, raw, _ = daemon.api("DELETE", f"/containers/{n}?force=1", timeout=20)
            assert st in (204, 404), (st, raw)
    finally:
        for n in names:
            daemon.api("DELETE", f"/containers/{n}?force=1")
            daemon.api("DELETE", f"/containers/{n}-x?force=1")
