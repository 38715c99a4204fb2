"""Bridge networks (issue 4, first part): the predefined networks, user
bridges with their own subnets, addresses and routes inside containers,
isolation between networks, cleanup, and survival of a berthd kill -9."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest


def ip_of(daemon, name, net):
    info = json.loads(daemon.docker("inspect", name)[1])[0]
    return info["NetworkSettings"]["Networks"][net]["IPAddress"]


def links():
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def test_predefined_networks_and_the_default_bridge(daemon, name):
    rc, out, err = daemon.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert {"bridge bridge", "host host", "none null"} <= set(out.splitlines()), out + err
    rc, out, _ = daemon.berth("network", "ls", "--format", "{{.Name}}")
    assert {"bridge", "host", "none"} <= set(out.split())
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
    try:
        ip = ip_of(daemon, name, "bridge")
        assert ip.startswith(daemon.bip.rsplit(".", 2)[0]), ip
        info = json.loads(daemon.docker("network", "inspect", "bridge")[1])[0]
        assert info["IPAM"]["Config"][0]["Subnet"].endswith("/24")
        cid = json.loads(daemon.docker("inspect", name)[1])[0]["Id"]
        assert info["Containers"][cid]["IPv4Address"] == ip + "/24"
        rc, out, err = daemon.docker("exec", name, "sh", "-c", "ip -4 addr show eth0; ip route")
        assert f"inet {ip}/24" in out and f"default via {daemon.bip.split('/')[0]}" in out, out + err
        # The host reaches the container over the bridge, and /etc/hosts names it.
        assert subprocess.run(["/bin/busybox", "ping", "-c", "1", "-W", "2", ip], capture_output=True).returncode == 0
        assert ip in daemon.docker("exec", name, "cat", "/etc/hosts")[1]
        assert "vb" + cid[:7] in links()
    finally:
        daemon.docker("rm", "-f", name)
    # The veth goes in the background, off the removal's path.
    deadline = time.time() + 10
    while "vb" + cid[:7] in links():
        assert time.time() < deadline, "rm -f left a veth behind"
        time.sleep(0.1)


def test_user_networks_connect_and_isolate(daemon, name):
    rc, out, err = daemon.docker("network", "create", "--subnet", "10.98.7.0/24", "--label", "app=x", f"{name}-a")
    assert rc == 0, err
    daemon.berth("network", "create", f"{name}-b", check=True)
    try:
        rc, _, err = daemon.docker("network", "create", "--subnet", "10.98.7.128/25", f"{name}-c")
        assert rc != 0 and "overlaps" in err, err
        for i in (1, 2):
            daemon.docker("run", "-d", "--name", f"{name}-{i}", "--network", f"{name}-a", "busybox", "sleep", "60", check=True)
        daemon.docker("run", "-d", "--name", f"{name}-3", "--network", f"{name}-b", "busybox", "sleep", "60", check=True)
        ip1 = ip_of(daemon, f"{name}-1", f"{name}-a")
        assert ip1.startswith("10.98.7.")
        assert ip_of(daemon, f"{name}-2", f"{name}-a") != ip1, "never the same address twice"
        rc, out, err = daemon.docker("exec", f"{name}-2", "ping", "-c", "1", "-W", "2", ip1)
        assert rc == 0, out + err
        rc, out, err = daemon.docker("exec", f"{name}-3", "ping", "-c", "1", "-W", "1", ip1)
        assert rc != 0, "another network cannot reach it"
        info = json.loads(daemon.docker("network", "inspect", f"{name}-a")[1])[0]
        assert len(info["Containers"]) == 2 and info["Labels"] == {"app": "x"}
        rc, _, err = daemon.docker("network", "rm", f"{name}-a")
        assert rc != 0 and "has active endpoints" in err
        rc, _, err = daemon.docker("network", "rm", "bridge")
        assert rc != 0 and "pre-defined" in err
        rc, _, err = daemon.docker("run", "--rm", "--network", "no-such-net", "busybox", "true")
        assert rc != 0 and "network no-such-net not found" in err
    finally:
        daemon.docker("rm", "-f", f"{name}-1", f"{name}-2", f"{name}-3")
        daemon.docker("network", "rm", f"{name}-a", f"{name}-b")
    assert daemon.docker("network", "ls", "-q", "--filter", f"name={name}")[1].strip() == ""


def test_internal_network_has_no_way_out_and_nft_rules(daemon, name):
    daemon.docker("network", "create", "--internal", f"{name}-int", check=True)
    try:
        rc, out, _ = daemon.docker("run", "--rm", "--network", f"{name}-int", "busybox", "ip", "route")
        assert "default" not in out
        rules = subprocess.run(["nft", "list", "table", "ip", daemon.nft_table], capture_output=True, text=True).stdout
        assert "masquerade" in rules and "drop" in rules, rules
    finally:
        daemon.docker("network", "rm", f"{name}-int")


def test_networking_survives_a_daemon_kill9(daemon, name):
    daemon.docker("network", "create", f"{name}-k", check=True)
    try:
        for i in (1, 2):
            daemon.docker("run", "-d", "--name", f"{name}-{i}", "--network", f"{name}-k", "busybox", "sleep", "120", check=True)
        ip1 = ip_of(daemon, f"{name}-1", f"{name}-k")
        daemon.stop(signal.SIGKILL)
        daemon.start()
        rc, out, err = daemon.docker("exec", f"{name}-2", "ping", "-c", "1", "-W", "2", ip1)
        assert rc == 0, out + err
        assert ip_of(daemon, f"{name}-1", f"{name}-k") == ip1
        # A new container never gets an address that is still in use.
        daemon.docker("run", "-d", "--name", f"{name}-3", "--network", f"{name}-k", "busybox", "sleep", "60", check=True)
        ips = {ip_of(daemon, f"{name}-{i}", f"{name}-k") for i in (1, 2, 3)}
        assert len(ips) == 3
    finally:
        daemon.docker("rm", "-f", f"{name}-1", f"{name}-2", f"{name}-3")
        daemon.docker("network", "rm", f"{name}-k")


HTTPD = "mkdir -p /www && echo served-by-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"


def fetch(port, host="127.0.0.1"):
    p = subprocess.run(["curl", "-s", "-m", "5", f"http://{host}:{port}/"], capture_output=True, text=True)
    return p.returncode, p.stdout


def wait_fetch(port, host="127.0.0.1"):
    deadline = time.time() + 10
    while True:
        rc, out = fetch(port, host)
        if rc == 0 or time.time() > deadline:
            return rc, out
        time.sleep(0.1)


def nft_rules(daemon):
    return subprocess.run(["nft", "list", "table", "ip", daemon.nft_table], capture_output=True, text=True).stdout


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_published_port_in_the_kernel(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    port = 18080 if tool == "docker" else 18081
    run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD, check=True)
    try:
        rc, out = wait_fetch(port)
        assert rc == 0 and out.startswith("served-by-"), out
        rc, out, _ = run("ps", "--filter", f"name={name}", "--format", "{{.Ports}}")
        assert out.strip() == f"127.0.0.1:{port}->80/tcp"
        rc, out, _ = run("port", name)
        assert out.strip() == f"80/tcp -> 127.0.0.1:{port}"
        assert f"dport {port} dnat to" in nft_rules(daemon)
        # No proxy process holds the port: it is a kernel rule.
        ss = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
        assert f":{port} " not in ss
        # The host's own connection goes straight to the container (berthd's
        # connect-time redirect), and still shows the address it dialled.
        cip = json.loads(run("inspect", name)[1])[0]["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            assert conn.getpeername() == ("127.0.0.1", port)
            me = "%s:%d" % conn.getsockname()
            ss = subprocess.run(["ss", "-tnH", "state", "established"], capture_output=True, text=True).stdout
            assert any(me in l and f"{cip}:80" in l for l in ss.splitlines()), (me, cip, ss)
        # A container's 127.0.0.1 is its own: nothing listens there on that port.
        rc, out, err = run("exec", name, "wget", "-q", "-O-", "-T", "2", f"http://127.0.0.1:{port}/")
        assert rc != 0, out
        # A second container cannot take the same port.
        rc, out, err = run("run", "-d", "--name", f"{name}-2", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "30")
        assert rc != 0 and "port is already allocated" in err, err
    finally:
        run("rm", "-f", name, f"{name}-2")
    assert f"dport {port} " not in nft_rules(daemon), "rm -f leaves no rule"
    assert fetch(port)[0] != 0


def test_random_ports_publish_all_and_restart_survival(daemon, name):
    daemon.berth("run", "-d", "--name", name, "-p", "80", "--expose", "81", "-P", "busybox", "sh", "-c", HTTPD, check=True)
    try:
        info = json.loads(daemon.docker("inspect", name)[1])[0]
        ports = info["NetworkSettings"]["Ports"]
        host_port = int(ports["80/tcp"][0]["HostPort"])
        assert host_port > 1024 and ports["80/tcp"][0]["HostIp"] == "0.0.0.0"
        assert ports["81/tcp"] and int(ports["81/tcp"][0]["HostPort"]) != host_port, "-P publishes every exposed port"
        rc, out = wait_fetch(host_port)
        assert rc == 0, out
        # kill -9 of berthd: the rule stays in the kernel, and is kept after the restart.
        daemon.stop(signal.SIGKILL)
        assert fetch(host_port)[0] == 0
        daemon.start()
        assert f"dport {host_port} dnat" in nft_rules(daemon)
        assert fetch(host_port)[0] == 0
        # A container that dies while berthd is away loses its rule at the restart.
        daemon.stop(signal.SIGKILL)
        pid = info["State"]["Pid"]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        daemon.start()
        deadline = time.time() + 10
        while f"dport {host_port} dnat" in nft_rules(daemon):
            assert time.time() < deadline, nft_rules(daemon)
            time.sleep(0.1)
    finally:
        daemon.docker("rm", "-f", name)


def test_names_resolve_on_user_networks_only(daemon, name):
    net, other = f"{name}-dns", f"{name}-oth"
    daemon.docker("network", "create", "--subnet", "10.95.7.0/24", net, check=True)
    daemon.docker("network", "create", other, check=True)
    try:
        daemon.docker("run", "-d", "--name", f"{name}-web", "--hostname", "webhost", "--network", net,
                      "--network-alias", "frontend", "busybox", "sh", "-c", HTTPD, check=True)
        daemon.berth("run", "-d", "--name", f"{name}-cli", "--network", net, "busybox", "sleep", "60", check=True)
        web_ip = ip_of(daemon, f"{name}-web", net)
        rc, out, err = daemon.docker("exec", f"{name}-cli", "cat", "/etc/resolv.conf")
        assert "nameserver 127.0.0.11" in out
        for n in (f"{name}-web", "webhost", "frontend"):
            rc, out, err = daemon.docker("exec", f"{name}-cli", "nslookup", n)
            assert rc == 0 and web_ip in out, (n, out, err)
        rc, out, err = daemon.docker("exec", f"{name}-cli", "wget", "-qO-", f"http://{name}-web/")
        assert rc == 0 and out.startswith("served-by-webhost"), out + err
        rc, out, err = daemon.docker("exec", f"{name}-cli", "ping", "-c", "1", "-W", "2", "frontend")
        assert rc == 0, out + err
        # A container on another network resolves none of them.
        daemon.docker("run", "-d", "--name", f"{name}-far", "--network", other, "busybox", "sleep", "60", check=True)
        rc, out, err = daemon.docker("exec", f"{name}-far", "nslookup", f"{name}-web")
        assert web_ip not in out
        # --ip takes the address asked for.
        daemon.docker("run", "-d", "--name", f"{name}-fixed", "--network", net, "--ip", "10.95.7.77",
                      "busybox", "sleep", "60", check=True)
        assert ip_of(daemon, f"{name}-fixed", net) == "10.95.7.77"
        rc, _, err = daemon.docker("run", "--rm", "--network", net, "--ip", "10.95.7.77", "busybox", "true")
        assert rc != 0 and "Address already in use" in err, err
        # Names still resolve after berthd is killed and restarted.
        daemon.stop(signal.SIGKILL)
        daemon.start()
        rc, out, err = daemon.docker("exec", f"{name}-cli", "nslookup", "frontend")
        assert rc == 0 and web_ip in out, out + err
    finally:
        daemon.docker("rm", "-f", f"{name}-web", f"{name}-cli", f"{name}-far", f"{name}-fixed")
        daemon.docker("network", "rm", net, other)


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_connect_and_disconnect(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    net = f"{name}-n"
    run("network", "create", net, check=True)
    try:
        run("run", "-d", "--name", f"{name}-srv", "--network", net, "busybox", "sh", "-c", HTTPD, check=True)
        run("run", "-d", "--name", f"{name}-c", "busybox", "sleep", "60", check=True)
        srv_ip = ip_of(daemon, f"{name}-srv", net)
        assert run("exec", f"{name}-c", "ping", "-c", "1", "-W", "1", srv_ip)[0] != 0
        rc, _, err = run("network", "connect", "--alias", "joined", net, f"{name}-c")
        assert rc == 0, err
        c_ip = ip_of(daemon, f"{name}-c", net)
        rc, out, err = run("exec", f"{name}-c", "ip", "-4", "addr", "show", "eth1")
        assert c_ip in out, out + err
        assert run("exec", f"{name}-c", "ping", "-c", "1", "-W", "2", srv_ip)[0] == 0
        # The server finds it by its alias.
        rc, out, err = run("exec", f"{name}-srv", "nslookup", "joined")
        assert rc == 0 and c_ip in out, out + err
        info = json.loads(run("network", "inspect", net)[1])[0]
        assert len(info["Containers"]) == 2
        rc, _, err = run("network", "connect", net, f"{name}-c")
        assert rc != 0 and "already exists" in err
        run("network", "disconnect", net, f"{name}-c", check=True)
        assert run("exec", f"{name}-c", "ping", "-c", "1", "-W", "1", srv_ip)[0] != 0
        info = json.loads(run("network", "inspect", net)[1])[0]
        assert len(info["Containers"]) == 1
        rc, _, err = run("network", "disconnect", net, f"{name}-c")
        assert rc != 0 and "is not connected" in err
    finally:
        run("rm", "-f", f"{name}-srv", f"{name}-c")
        run("network", "rm", net)


def test_mac_addresses(daemon, name):
    daemon.docker("run", "-d", "--name", name, "--mac-address", "92:d0:c6:0a:29:33", "busybox", "sleep", "30", check=True)
    daemon.berth("run", "-d", "--name", f"{name}-2", "busybox", "sleep", "30", check=True)
    try:
        rc, out, err = daemon.docker("exec", name, "cat", "/sys/class/net/eth0/address")
        assert out.strip() == "92:d0:c6:0a:29:33", out + err
        info = json.loads(daemon.docker("inspect", name)[1])[0]
        assert info["NetworkSettings"]["Networks"]["bridge"]["MacAddress"] == "92:d0:c6:0a:29:33"
        # Without one, dockerd's rule: 02:42 and the address.
        ip = ip_of(daemon, f"{name}-2", "bridge")
        want = "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
        assert daemon.docker("exec", f"{name}-2", "cat", "/sys/class/net/eth0/address")[1].strip() == want
        rc, _, err = daemon.docker("run", "--rm", "--mac-address", "01:00:00:00:00:01", "busybox", "true")
        assert rc != 0 and "invalid MAC address" in err
    finally:
        daemon.docker("rm", "-f", name, f"{name}-2")


def test_publish_udp_and_ranges(daemon, name):
    daemon.berth("run", "-d", "--name", name, "-p", "127.0.0.1:18400-18402:80", "-p", "127.0.0.1:18410:5353/udp",
                 "-p", "127.0.0.1:18420-18421:90-91", "busybox", "sh", "-c", HTTPD, check=True)
    try:
        rc, out, _ = daemon.berth("port", name)
        lines = out.splitlines()
        assert "80/tcp -> 127.0.0.1:18400" in lines, lines
        assert "5353/udp -> 127.0.0.1:18410" in lines
        assert "90/tcp -> 127.0.0.1:18420" in lines and "91/tcp -> 127.0.0.1:18421" in lines
        rules = nft_rules(daemon)
        assert "udp dport 18410 dnat to" in rules
        assert wait_fetch(18400)[0] == 0
        # The range's next free port goes to the next container.
        daemon.berth("run", "-d", "--name", f"{name}-2", "-p", "127.0.0.1:18400-18402:80", "busybox", "sh", "-c", HTTPD, check=True)
        assert daemon.berth("port", f"{name}-2", "80")[1].strip() == "127.0.0.1:18401"
    finally:
        daemon.berth("rm", "-f", name, f"{name}-2")



def test_bridges_drop_packets_for_host_loopback(daemon):
    """route_localnet (for -p on 127.0.0.1) would let packets for 127/8 that
    arrive on a bridge reach host loopback services; a raw-priority rule drops
    them. (A container cannot forge such a packet through its own stack, so the
    rule itself is what is checked.)"""
    rules = nft_rules(daemon)
    guard = rules[rules.index("chain guard"):]
    assert "hook prerouting priority raw" in guard
    assert f'"{daemon.bridge}"' in guard.split("}")[0] and "ip daddr 127.0.0.0/8 drop" in guard


TCP_QUERY = r"""
import socket, struct, sys
name = sys.argv[1]
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00\x00\x01\x00\x01"
s = socket.create_connection(("127.0.0.11", 53), timeout=5)
for _ in range(2):  # two queries on one connection
    s.sendall(struct.pack(">H", len(q)) + q)
    n = struct.unpack(">H", s.recv(2, socket.MSG_WAITALL))[0]
    r = s.recv(n, socket.MSG_WAITALL)
    assert r[:2] == b"\x12\x34" and struct.unpack(">H", r[6:8])[0] >= 1, r
    print(".".join(map(str, r[-4:])))
"""


def _stub_answer(q, ip):
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    end += 5
    hdr = q[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    import struct
    return hdr + q[12:end] + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes(ip)


def test_other_names_go_to_the_dns_upstream(daemon, name):
    """Names that are not containers' are relayed to the container's --dns
    servers: here a stub resolver of the test's own on the host's loopback,
    over UDP and over TCP (which answers differently, to tell them apart)."""
    import socket as pysocket
    import struct
    import threading
    stub = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_DGRAM)
    tstub = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM)
    tstub.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)
    try:
        stub.bind(("127.0.0.1", 53))
        tstub.bind(("127.0.0.1", 53))
    except OSError:
        stub.close()
        tstub.close()
        pytest.skip("127.0.0.1:53 is taken on this machine")
    tstub.listen(8)
    stop = threading.Event()

    def serve():
        stub.settimeout(0.2)
        while not stop.is_set():
            try:
                q, addr = stub.recvfrom(512)
            except OSError:
                continue
            stub.sendto(_stub_answer(q, [10, 11, 12, 13]), addr)

    def serve_tcp():
        tstub.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = tstub.accept()
            except OSError:
                continue
            with c:
                c.settimeout(2)
                n = struct.unpack(">H", c.recv(2, pysocket.MSG_WAITALL))[0]
                a = _stub_answer(c.recv(n, pysocket.MSG_WAITALL), [10, 11, 12, 14])
                c.sendall(struct.pack(">H", len(a)) + a)

    threads = [threading.Thread(target=serve), threading.Thread(target=serve_tcp)]
    for t in threads:
        t.start()
    net = f"{name}-up"
    daemon.docker("network", "create", net, check=True)
    try:
        daemon.docker("run", "-d", "--name", name, "--network", net, "--dns", "127.0.0.1",
                      "busybox", "sleep", "60", check=True)
        rc, out, err = daemon.docker("exec", name, "cat", "/etc/resolv.conf")
        assert "nameserver 127.0.0.11" in out and "127.0.0.1\n" not in out
        rc, out, err = daemon.docker("exec", name, "nslookup", "outside.test")
        assert "10.11.12.13" in out, out + err
        # DNS over TCP inside the container's namespace: its own name, then a
        # relayed one (the stub's TCP side answers .14).
        info = json.loads(daemon.docker("inspect", name)[1])[0]
        pid, ip = info["State"]["Pid"], info["NetworkSettings"]["Networks"][net]["IPAddress"]
        tcp = lambda n: subprocess.run(["nsenter", "-t", str(pid), "-n", "python3", "-c", TCP_QUERY, n],
                                       capture_output=True, text=True, timeout=30)
        p = tcp(name)
        assert p.returncode == 0 and p.stdout.split() == [ip, ip], p.stdout + p.stderr
        p = tcp("outside.test")
        assert p.returncode == 0 and p.stdout.split()[0] == "10.11.12.14", p.stdout + p.stderr
    finally:
        stop.set()
        for t in threads:
            t.join()
        stub.close()
        tstub.close()
        daemon.docker("rm", "-f", name)
        daemon.docker("network", "rm", net)


def test_prune_filters(daemon, name):
    """`until` and `label`/`label!` scope every prune; bad filters are refused."""
    daemon.docker("network", "create", "--label", f"{name}=drop", f"{name}-drop", check=True)
    daemon.docker("network", "create", "--label", f"{name}=keep", f"{name}-keep", check=True)
    try:
        # Both were created just now, so nothing is older than an hour.
        rc, out, err = daemon.docker("network", "prune", "-f", "--filter", "until=1h", "--filter", f"label={name}")
        assert rc == 0 and f"{name}-" not in out, out + err
        rc, out, err = daemon.docker("network", "prune", "-f", "--filter", f"label={name}", "--filter", f"label!={name}=keep")
        assert rc == 0 and f"{name}-drop" in out and f"{name}-keep" not in out, out + err
        names = daemon.docker("network", "ls", "--format", "{{.Name}}")[1].split()
        assert f"{name}-keep" in names and f"{name}-drop" not in names
        rc, out, err = daemon.berth("network", "prune", "-f", "--filter", f"label={name}=keep", "--filter", "until=2099-01-01T00:00:00Z")
        assert rc == 0 and f"{name}-keep" in out, out + err
        rc, out, err = daemon.docker("network", "prune", "-f", "--filter", "until=someday")
        assert rc != 0 and "until" in err, out + err
        rc, out, err = daemon.docker("network", "prune", "-f", "--filter", "dangling=true")
        assert rc != 0 and "invalid filter 'dangling'" in err, out + err
        # Containers take the same filters.
        daemon.docker("run", "--name", f"{name}-c1", "--label", f"{name}=drop", "busybox", "true", check=True)
        daemon.docker("run", "--name", f"{name}-c2", "busybox", "true", check=True)
        rc, out, err = daemon.docker("container", "prune", "-f", "--filter", f"label={name}")
        assert rc == 0, err
        left = daemon.docker("ps", "-a", "--format", "{{.Names}}")[1].split()
        assert f"{name}-c1" not in left and f"{name}-c2" in left
    finally:
        for n in ("drop", "keep"):
            daemon.docker("network", "rm", f"{name}-{n}")
        daemon.docker("rm", "-f", f"{name}-c1", f"{name}-c2")


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_ip_range_attachable_and_add_host(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    net = f"{name}-r"
    rc, out, err = run("network", "create", "--attachable", "--subnet", "10.98.40.0/24",
                       "--ip-range", "10.98.40.128/25", net)
    assert rc == 0, err
    try:
        info = json.loads(run("network", "inspect", net)[1])[0]
        assert info["Attachable"] is True and info["IPAM"]["Config"][0]["IPRange"] == "10.98.40.128/25"
        run("run", "-d", "--name", name, "--network", net, "--add-host", "db.test:192.0.2.10",
            "--add-host", "gw.test:host-gateway", "--add-host", "v6.test:[2001:db8::1]",
            "busybox", "sleep", "60", check=True)
        ip = ip_of(daemon, name, net)
        assert int(ip.rsplit(".", 1)[1]) >= 128, ip
        rc, hosts, err = run("exec", name, "cat", "/etc/hosts")
        gw = daemon.bip.split("/")[0]
        assert "192.0.2.10\tdb.test" in hosts and f"{gw}\tgw.test" in hosts, hosts
        assert "2001:db8::1\tv6.test" in hosts and f"{ip}\t" in hosts, hosts
        # The host network's /etc/hosts is the host's, plus the extra entries.
        rc, out, err = run("run", "--rm", "--network", "host", "--add-host", "db.test:192.0.2.10",
                           "busybox", "cat", "/etc/hosts")
        assert rc == 0 and "192.0.2.10\tdb.test" in out and "localhost" in out, out + err
    finally:
        run("rm", "-f", name)
        run("network", "rm", net)


def netns_mounts(daemon):
    """Container ids whose network namespace is mounted under the exec root."""
    base = os.path.join(daemon.exec_root, "netns") + "/"
    return {l.split()[4][len(base):] for l in open("/proc/self/mountinfo") if l.split()[4].startswith(base)}


def full_id(daemon, name):
    return json.loads(daemon.docker("inspect", name)[1])[0]["Id"]


def test_no_network_namespace_outlives_its_container(daemon, name):
    """Namespaces leaked when every network was disconnected from a running
    container, and when a removal raced a start."""
    daemon.docker("network", "create", name + "-n", check=True)
    try:
        # Every network disconnected while it runs, then stopped.
        daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
        cid = full_id(daemon, name)
        assert cid in netns_mounts(daemon)
        daemon.docker("network", "connect", name + "-n", name, check=True)
        daemon.docker("network", "disconnect", name + "-n", name, check=True)
        daemon.docker("network", "disconnect", "bridge", name, check=True)
        daemon.docker("stop", "-t", "0", name, check=True)
        assert cid not in netns_mounts(daemon)
        daemon.docker("rm", name, check=True)

        # Removals racing starts, on the default and a user network.
        import threading
        ids = []
        for i in range(20):
            n = f"{name}-r{i}"
            args = ["--network", name + "-n"] if i % 2 else []
            daemon.docker("create", "--name", n, *args, "busybox", "sleep", "60", check=True)
            ids.append(full_id(daemon, n))
            t = threading.Thread(target=daemon.docker, args=("start", n))
            t.start()
            time.sleep(0.002 * (i % 5))
            daemon.docker("rm", "-f", n)
            t.join()
            daemon.docker("rm", "-f", n)
        deadline = time.time() + 5
        while set(ids) & netns_mounts(daemon) and time.time() < deadline:
            time.sleep(0.1)
        assert not set(ids) & netns_mounts(daemon)
        rc, out, _ = daemon.docker("ps", "-aq", "--filter", f"name={name}-r")
        assert out.split() == []
    finally:
        daemon.docker("rm", "-f", name)
        daemon.docker("network", "rm", name + "-n")


def test_disconnecting_what_is_not_connected_is_an_error(daemon, name):
    daemon.docker("create", "--name", name, "--network", "none", "busybox", "true", check=True)
    try:
        for force in ([], ["--force"]):
            rc, out, err = daemon.docker("network", "disconnect", *force, "bridge", name)
            assert rc != 0 and "is not connected to the network bridge" in err, err
    finally:
        daemon.docker("rm", "-f", name)


def test_endpoints_config_joins_every_network_and_keeps_settings_as_given(daemon, name):
    a, b = name + "-a", name + " b"  # dockerd allows spaces in network names
    rc, out, err = daemon.docker("network", "create", "--subnet", "10.98.60.0/24",
                                 "--aux-address", "router=10.98.60.2", a)
    assert rc == 0, err
    daemon.docker("network", "create", "--subnet", "10.98.61.0/24", b, check=True)
    try:
        ipam = json.loads(daemon.docker("network", "inspect", a)[1])[0]["IPAM"]["Config"][0]
        assert ipam["AuxiliaryAddresses"] == {"router": "10.98.60.2"}, ipam
        body = {"Image": "busybox", "Cmd": ["sleep", "60"], "HostConfig": {"NetworkMode": a},
                "NetworkingConfig": {"EndpointsConfig": {
                    a: {"IPAMConfig": {"IPv4Address": "10.98.60.9"}, "Aliases": ["one"],
                        "DriverOpts": {"k": "v"}, "Links": None},
                    b: {"Aliases": ["two"], "MacAddress": "02:42:0a:62:3d:09"}}}}
        st, raw, _ = daemon.api("POST", f"/containers/create?name={name}", body)
        assert st == 201, raw
        daemon.docker("start", name, check=True)
        nets = json.loads(daemon.docker("inspect", name)[1])[0]["NetworkSettings"]["Networks"]
        assert set(nets) == {a, b}, nets
        assert nets[a]["IPAddress"] == "10.98.60.9" and nets[a]["Aliases"] == ["one"]
        assert nets[a]["IPAMConfig"] == {"IPv4Address": "10.98.60.9"} and nets[a]["DriverOpts"] == {"k": "v"}
        assert nets[b]["Aliases"] == ["two"] and nets[b]["IPAddress"].startswith("10.98.61.")
        assert nets[b]["MacAddress"] == "02:42:0a:62:3d:09"
        rc, out, err = daemon.docker("exec", name, "ip", "-o", "-4", "addr")
        assert "10.98.60.9/24" in out and "10.98.61." in out, out
        # The auxiliary address is never given to a container.
        rc, out, err = daemon.docker("run", "--rm", "--network", a, "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
        assert rc == 0 and "10.98.60.2/" not in out, out
        # A network that does not exist fails the start with dockerd's 404.
        body["NetworkingConfig"]["EndpointsConfig"] = {a: {}, "no-such-net": {}}
        st, raw, _ = daemon.api("POST", f"/containers/create?name={name}-x", body)
        assert st == 201, raw
        st, raw, _ = daemon.api("POST", f"/containers/{name}-x/start")
        assert st == 404 and "network no-such-net not found" in json.loads(raw)["message"], raw
    finally:
        daemon.docker("rm", "-f", name, name + "-x")
        daemon.docker("network", "rm", a, b)


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_legacy_links_on_the_default_bridge(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    db, web = name + "-db", name + "-web"
    run("run", "-d", "--name", db, "--expose", "5432", "-e", "SECRET=s3", "busybox", "sleep", "60", check=True)
    try:
        rc, out, err = run("run", "--name", web, "--link", f"{db}:data", "busybox", "sh", "-c",
                           "env | sort; cat /etc/hosts")
        assert rc == 0, err
        db_ip = ip_of(daemon, db, "bridge")
        assert f"DATA_PORT=tcp://{db_ip}:5432" in out and f"DATA_PORT_5432_TCP_ADDR={db_ip}" in out, out
        assert f"DATA_NAME=/{web}/data" in out and "DATA_ENV_SECRET=s3" in out, out
        db_id = json.loads(daemon.docker("inspect", db)[1])[0]["Id"]
        assert f"{db_ip}\tdata {db_id[:12]} {db}" in out, out
        hc = json.loads(daemon.docker("inspect", web)[1])[0]["HostConfig"]
        assert hc["Links"] == [f"/{db}:/{web}/data"], hc["Links"]
        rc, out, _ = daemon.docker("ps", "--no-trunc", "--filter", f"name={db}", "--format", "{{.Names}}")
        assert set(out.strip().split(",")) == {db, f"{web}/data"}, out
        # A link to a container that is not running fails the start.
        daemon.docker("stop", "-t", "0", db, check=True)
        rc, out, err = run("start", web)
        assert rc != 0 and "Cannot link to a non running container" in err, err
        # rm --link drops the link; both containers stay.
        rc, out, err = daemon.docker("rm", "--link", f"/{web}/data")
        assert rc == 0, err
        assert json.loads(daemon.docker("inspect", web)[1])[0]["HostConfig"]["Links"] is None
        assert daemon.docker("inspect", db)[0] == 0
        rc, out, err = run("create", "--link", "no-such-container:x", "busybox", "true")
        assert rc != 0 and "could not get container for no-such-container" in err, err
    finally:
        daemon.docker("rm", "-f", web, db)


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_dual_stack_user_bridge(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    net = name + "-v6"
    sub6 = "fd00:db8:71::/64" if tool == "docker" else "fd00:db8:72::/64"
    sub4 = "10.98.71.0/24" if tool == "docker" else "10.98.72.0/24"
    rc, out, err = run("network", "create", "--ipv6", "--subnet", sub4, "--subnet", sub6, net)
    assert rc == 0, err
    try:
        info = json.loads(daemon.docker("network", "inspect", net)[1])[0]
        assert info["EnableIPv6"] is True
        assert {c["Subnet"] for c in info["IPAM"]["Config"]} == {sub4, sub6}, info["IPAM"]
        prefix6 = sub6.split("::")[0]
        run("run", "-d", "--name", name, "--network", net, "--ip6", f"{prefix6}::10",
            "busybox", "sleep", "60", check=True)
        nets = json.loads(daemon.docker("inspect", name)[1])[0]["NetworkSettings"]["Networks"]
        ep = nets[net]
        assert ep["GlobalIPv6Address"] == f"{prefix6}::10" and ep["GlobalIPv6PrefixLen"] == 64, ep
        assert ep["IPv6Gateway"] == f"{prefix6}::1" and ep["IPAddress"].startswith(sub4[:8]), ep
        # Both stacks, by address and by name (AAAA from the embedded DNS),
        # with no wait for duplicate address detection.
        rc, out, err = run("run", "--rm", "--network", net, "busybox", "sh", "-c",
                           f"ping -6 -c1 -W2 {prefix6}::10 && ping -4 -c1 -W2 {name} && "
                           f"nslookup -type=AAAA {name} 127.0.0.11 && ip -6 route")
        assert rc == 0, out + err
        assert f"{prefix6}::10" in out and f"default via {prefix6}::1" in out, out
        # An address outside the subnet is refused.
        rc, out, err = run("run", "--rm", "--network", net, "--ip6", "fd00:dead::5", "busybox", "true")
        assert rc != 0 and "fd00:dead::5" in err, err
        # An IPv6 subnet without --ipv6 is refused with a clear error.
        rc, out, err = run("network", "create", "--subnet", "fd00:db8:79::/64", net + "-x")
        assert rc != 0 and "IPv6" in err, err
    finally:
        daemon.docker("rm", "-f", name)
        daemon.docker("network", "rm", net)


def test_default_bridge_dual_stack_from_daemon_flags(tmp_path):
    from conftest import Daemon, cleanup_leftovers, make_busybox_tar
    root = str(tmp_path / "d")
    os.makedirs(root)
    d = Daemon(root, tag_offset=2)
    d.extra_args = ["--ipv6", "--fixed-cidr-v6", "fd00:db8:99::/64"]
    try:
        d.start()
        tar = os.path.join(root, "busybox.tar")
        make_busybox_tar(tar)
        d.berth("import", tar, "busybox:latest", check=True)
        info = json.loads(d.docker("network", "inspect", "bridge")[1])[0]
        assert info["EnableIPv6"] is True and "fd00:db8:99::/64" in [c["Subnet"] for c in info["IPAM"]["Config"]]
        rc, out, err = d.docker("run", "--rm", "busybox", "sh", "-c",
                                "ip -6 -o addr show eth0 scope global; ping -6 -c1 -W2 fd00:db8:99::1")
        assert rc == 0 and "fd00:db8:99::2/64" in out, out + err
        # Restarted without the flags: IPv4 only again.
        d.stop()
        d.extra_args = []
        d.start()
        assert json.loads(d.docker("network", "inspect", "bridge")[1])[0]["EnableIPv6"] is False
        rc, out, err = d.docker("run", "--rm", "busybox", "ip", "-6", "-o", "addr", "show", "eth0", "scope", "global")
        assert rc == 0 and "fd00" not in out, out + err
    finally:
        d.stop()
        cleanup_leftovers(d)


def test_links_on_user_networks_are_names_for_their_container(daemon, name):
    net = name + "-n"
    daemon.docker("network", "create", net, check=True)
    try:
        daemon.docker("run", "-d", "--name", name + "-db", "--network", net, "busybox", "sleep", "60", check=True)
        db_ip = ip_of(daemon, name + "-db", net)
        rc, out, err = daemon.docker("run", "--rm", "--network", net, "--link", f"{name}-db:data",
                                     "busybox", "nslookup", "data", "127.0.0.11")
        assert rc == 0 and db_ip in out, out + err
        # Only the linking container knows the alias.
        rc, out, err = daemon.docker("run", "--rm", "--network", net, "busybox", "nslookup", "data", "127.0.0.11")
        assert db_ip not in out, out
    finally:
        daemon.docker("rm", "-f", name + "-db")
        daemon.docker("network", "rm", net)
