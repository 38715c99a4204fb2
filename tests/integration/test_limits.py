"""Resource limits and host settings as dockerd checks them at create and
update (status and wording), the defaults it fills in, and the limits that
must reach the container's cgroup."""

import json
import os

import pytest

UNIFIED = os.path.exists("/sys/fs/cgroup/cgroup.controllers")

BAD_HOST_CONFIG = [
    ({"Memory": -1}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": -1000000000}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 1}, "Minimum memory limit allowed is 6MB"),
    ({"NanoCpus": -5}, "range of CPUs is from 0.01 to"),
    ({"NanoCpus": 10**15}, "range of CPUs is from 0.01 to"),
    ({"NanoCpus": 10**9, "CpuQuota": 50000}, "Nano CPUs and CPU Quota cannot both be set"),
    ({"CpuShares": -1}, "invalid CPU shares (-1)"),
    ({"CpuPeriod": 500}, "CPU cfs period can not be less than 1ms"),
    ({"CpuPeriod": -1}, "CPU cfs period can not be less than 1ms"),
    ({"CpuQuota": 10}, "CPU cfs quota can not be less than 1ms"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "Minimum memoryswap limit should be larger"),
    ({"MemorySwap": 64 << 20}, "You should always set the Memory limit when using Memoryswap limit"),
    ({"MemorySwappiness": 200}, "valid memory swappiness range is 0-100"),
    ({"MemoryReservation": 1024}, "Minimum memory reservation allowed is 6MB"),
    ({"Memory": 8 << 20, "MemoryReservation": 16 << 20}, "can not be less than memory reservation"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"IOMaximumIOps": 5}, "does not support Maximum IO Bandwidth or Maximum IO IOps"),
    ({"OomScoreAdj": 5000}, "range for oom score adj is [-1000, 1000]"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"CpusetCpus": "1-0"}, "Invalid value 1-0 for cpuset cpus: invalid format: 1-0"),
    ({"CpusetCpus": "0-9223372036854775807"}, "for cpuset cpus: value of out range"),
    ({"CpusetCpus": "4000"}, "Requested CPUs are not available - requested 4000"),
    ({"CpusetMems": "77"}, "Requested memory nodes are not available"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}},
     "invalid restart policy: maximum retry count cannot be negative"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}},
     "maximum retry count can only be used with 'on-failure'"),
    ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}},
     "can't create 'AutoRemove' container with restart policy"),
    ({"Runtime": "kata"}, "unknown or invalid runtime name: kata"),
    ({"CgroupnsMode": "bogus"}, "invalid cgroup namespace mode: bogus"),
    ({"DeviceCgroupRules": ["z 1:1 rwm"]}, "invalid device cgroup format 'z 1:1 rwm'"),
    ({"Isolation": "hyperv"}, "invalid isolation 'hyperv' on linux"),
    ({"Annotations": {"": "x"}}, "the empty string is not permitted as an annotation key"),
]

BAD_CONFIG = [
    ({"WorkingDir": "relative/dir"}, "the working directory 'relative/dir' is invalid, it needs to be an absolute path"),
    ({"Env": ["=x"]}, "invalid environment variable: =x"),
    ({"StopSignal": "SIGNOPE"}, "Invalid signal: SIGNOPE"),
    ({"Hostname": "h" * 65}, "is too long (maximum 64 bytes)"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5}}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}}, "Retries in Healthcheck cannot be negative"),
]


def count(daemon):
    return len(json.loads(daemon.api("GET", "/containers/json?all=1")[1]))


@pytest.mark.parametrize("host_config,message", BAD_HOST_CONFIG, ids=[m for _, m in BAD_HOST_CONFIG])
def test_create_refuses_what_dockerd_refuses(daemon, host_config, message):
    before = count(daemon)
    body = {"Image": "busybox", "Cmd": ["true"], "HostConfig": host_config}
    st, raw, _ = daemon.api("POST", "/containers/create", body)
    assert st == 400, (st, raw)
    assert message in json.loads(raw)["message"], raw
    assert count(daemon) == before


@pytest.mark.parametrize("config,message", BAD_CONFIG, ids=[m for _, m in BAD_CONFIG])
def test_create_refuses_a_bad_config(daemon, config, message):
    before = count(daemon)
    st, raw, _ = daemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], **config})
    assert st == 400, (st, raw)
    assert message in json.loads(raw)["message"], raw
    assert count(daemon) == before


def test_docker_cli_shows_dockerds_errors_and_warnings(daemon):
    rc, out, err = daemon.docker("run", "--rm", "--memory", "1", "busybox", "true")
    assert rc != 0 and "Minimum memory limit allowed is 6MB" in err, err
    rc, out, err = daemon.docker("run", "--rm", "--oom-score-adj", "2000", "busybox", "true")
    assert rc != 0 and "range for oom score adj is [-1000, 1000]" in err, err
    rc, out, err = daemon.docker("run", "--rm", "--cpuset-cpus", "4000", "busybox", "true")
    assert rc != 0 and "Requested CPUs are not available" in err, err
    # What a host cannot do is a warning, and the container is made.
    st, raw, _ = daemon.api("POST", "/containers/create",
                            {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"CpuPercent": 50}})
    assert st == 201, raw
    r = json.loads(raw)
    assert r["Warnings"] == ["linux does not support CPU percent. Percent discarded."], r
    daemon.api("DELETE", f"/containers/{r['Id']}")


def test_inspect_shows_dockerds_defaults(daemon, name):
    rc, out, err = daemon.docker("create", "--name", name, "--memory", "64m", "busybox", "true")
    assert rc == 0, err
    try:
        hc = json.loads(daemon.docker("inspect", name)[1])[0]["HostConfig"]
        assert hc["MemorySwap"] == 128 << 20  # twice the memory, as dockerd
        assert hc["ShmSize"] == 64 << 20
        assert hc["IpcMode"] == "private"
        assert hc["CgroupnsMode"] == "private"
        assert hc["Runtime"] == "runc"
        assert hc["MemorySwappiness"] is None  # -1 from the CLI: unset
        assert hc["PidsLimit"] is None  # 0 from the CLI: unset
        assert hc["LogConfig"] == {"Type": "json-file", "Config": {}}
        assert "/proc/kcore" in hc["MaskedPaths"] and "/proc/sys" in hc["ReadonlyPaths"]
        for key, want in [("CpusetCpus", ""), ("CpusetMems", ""), ("Isolation", ""),
                          ("VolumeDriver", ""), ("CgroupParent", ""), ("ConsoleSize", [0, 0]),
                          ("BlkioWeight", 0), ("OomScoreAdj", 0), ("CpuRealtimePeriod", 0),
                          ("MemoryReservation", 0), ("Links", None), ("UsernsMode", "")]:
            assert hc[key] == want, (key, hc[key])
        if not UNIFIED:
            assert hc["OomKillDisable"] is False
        for key in ["DeviceCgroupRules", "Devices", "DeviceRequests", "BlkioWeightDevice",
                    "BlkioDeviceReadBps", "ContainerIDFile", "Cgroup", "IOMaximumIOps"]:
            assert key in hc, key
        # A privileged container masks nothing.
        rc, out, err = daemon.docker("create", "--name", name + "-p", "--privileged", "busybox", "true")
        assert rc == 0, err
        phc = json.loads(daemon.docker("inspect", name + "-p")[1])[0]["HostConfig"]
        assert phc["MaskedPaths"] is None and phc["ReadonlyPaths"] is None
    finally:
        daemon.docker("rm", "-f", name, name + "-p")


def cgroup_file(controller, v1_file, v2_file):
    if UNIFIED:
        return f"/sys/fs/cgroup/{v2_file}"
    return f"/sys/fs/cgroup/{controller}/{v1_file}"


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_new_limits_reach_the_cgroup(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    args = ["--cpuset-cpus", "0", "--memory", "64m", "--memory-reservation", "32m",
            "--oom-score-adj", "500", "--device-cgroup-rule", "c 1:11 r"]
    if not UNIFIED:
        args += ["--memory-swappiness", "10"]
    rc, out, err = run("run", "-d", "--name", name, *args, "busybox", "sleep", "60")
    assert rc == 0, err
    try:
        def cat(path):
            rc, out, err = run("exec", name, "cat", path)
            assert rc == 0, err
            return out.strip()

        assert cat(cgroup_file("cpuset", "cpuset.cpus", "cpuset.cpus")) == "0"
        assert cat(cgroup_file("memory", "memory.soft_limit_in_bytes", "memory.low")) == str(32 << 20)
        assert cat("/proc/self/oom_score_adj") == "500"
        if not UNIFIED:
            assert cat("/sys/fs/cgroup/memory/memory.swappiness") == "10"
            assert "c 1:11 r" in cat("/sys/fs/cgroup/devices/devices.list").splitlines()
        hc = json.loads(run("inspect", name)[1])[0]["HostConfig"]
        assert (hc["CpusetCpus"], hc["MemoryReservation"], hc["OomScoreAdj"]) == ("0", 32 << 20, 500)
        assert hc["DeviceCgroupRules"] == ["c 1:11 r"]
        # docker update moves a running container to other cpus.
        rc, out, err = run("update", "--cpuset-cpus", "0-1", name)
        assert rc == 0, err
        assert cat(cgroup_file("cpuset", "cpuset.cpus", "cpuset.cpus")) == "0-1"
        rc, out, err = run("update", "--cpuset-cpus", "4000", name)
        assert rc != 0 and "Requested CPUs are not available" in err, err
        rc, out, err = run("update", "--blkio-weight", "5", name)
        assert rc != 0 and "Range of blkio weight is from 10 to 1000" in err, err
    finally:
        run("rm", "-f", name)


def test_cgroup_namespace_modes(daemon):
    def cgroup(*args):
        rc, out, err = daemon.docker("run", "--rm", *args, "busybox", "cat", "/proc/self/cgroup")
        assert rc == 0, err
        return out

    private = cgroup()
    host = cgroup("--cgroupns", "host")
    # A private namespace makes the container's cgroup its root; the host's
    # shows the full path.
    assert all(l.endswith(":/") for l in private.splitlines()), private
    assert any("/berth" in l for l in host.splitlines()), host


@pytest.mark.parametrize("tool", ["docker", "berth"])
def test_devices_are_made_and_allowed(daemon, tool, name):
    run = daemon.docker if tool == "docker" else daemon.berth
    # /dev/loop0 (b 7:0) is not among Docker's default devices.
    rc, out, err = run("run", "--rm", "busybox", "ls", "/dev/loop0")
    assert rc != 0
    # Made under another name, readable but not writable as the rule says.
    rc, out, err = run("run", "--rm", "--device", "/dev/loop0:/dev/sub/myloop:r", "busybox", "sh", "-c",
                       "ls -l /dev/sub/myloop; head -c1 /dev/sub/myloop >/dev/null && echo readable; "
                       "echo x > /dev/sub/myloop || echo not-writable")
    assert rc == 0, err
    assert out.startswith("b") and "7,   0" in out, out
    assert "readable" in out and "not-writable" in out, out
    # A directory brings the devices below it.
    rc, out, err = run("run", "--rm", "--device", "/dev/net:/dev/n", "busybox", "ls", "/dev/n")
    assert rc == 0 and out.split() == sorted(os.listdir("/dev/net")), out + err
    # A missing one is refused before anything starts.
    rc, out, err = run("run", "--rm", "--device", "/dev/nope", "busybox", "true")
    assert rc != 0 and 'error gathering device information while adding custom device "/dev/nope"' in err, err
