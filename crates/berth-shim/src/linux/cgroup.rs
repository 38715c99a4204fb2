//! The container's cgroup: made, joined, frozen, signalled and removed, on
//! v1 (one directory per controller hierarchy) and v2 (one directory, with
//! the device rules as a BPF program).

use super::*;

/// A v1 hierarchy as the host mounts it: where, and its mount data
/// (controllers, or `name=…`).
#[derive(Debug, Clone, PartialEq)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    pub data: String,
}

/// The cgroup v1 hierarchies in a mountinfo, under /sys/fs/cgroup.
pub fn v1_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for l in mountinfo.lines() {
        let Some((pre, post)) = l.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let Some(point) = pre.split(' ').nth(4) else {
            continue;
        };
        if !point.starts_with("/sys/fs/cgroup/") {
            continue;
        }
        let data: Vec<&str> = post
            .nth(1)
            .unwrap_or("")
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .collect();
        out.push(Hierarchy {
            mountpoint: PathBuf::from(point),
            data: data.join(","),
        });
    }
    out
}

/// The controllers a container's cgroup is made in on a v1 host; the other
/// hierarchies' counters are not read and their limits not set.
pub(super) const V1_CONTROLLERS: [&str; 8] = [
    "memory", "cpu", "cpuacct", "pids", "devices", "freezer", "blkio", "cpuset",
];

/// The cgroup directories a container's processes join.
pub fn cgroup_dirs(cgroup_path: &str, unified: bool, hierarchies: &[Hierarchy]) -> Vec<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    if unified {
        return vec![Path::new("/sys/fs/cgroup").join(rel)];
    }
    hierarchies
        .iter()
        .filter(|h| h.data.split(',').any(|c| V1_CONTROLLERS.contains(&c)))
        .map(|h| h.mountpoint.join(rel))
        .collect()
}

/// Makes the container's cgroup and writes its limits and device rules.
pub(super) fn make_cgroup(
    resources: &Option<LinuxResources>,
    cgroup_path: &str,
    dirs: &[PathBuf],
    unified: bool,
) -> Res<()> {
    if unified {
        berth_runtime::cgroups::enable_controllers_at(Path::new("/sys/fs/cgroup"), cgroup_path)
            .map_err(os("enabling cgroup controllers"))?;
    }
    for d in dirs {
        fs::create_dir_all(d).map_err(os(format!("creating cgroup {}", d.display())))?;
    }
    if !unified && dirs.iter().any(|d| d.starts_with("/sys/fs/cgroup/cpuset")) {
        berth_runtime::cgroups::init_cpuset_v1(Path::new("/sys/fs/cgroup"), cgroup_path)
            .map_err(os("filling the cpuset cgroup"))?;
    }
    let none = LinuxResources::default();
    let r = resources.as_ref().unwrap_or(&none);
    let limits = limits_of(r);
    berth_runtime::cgroups::update_at(Path::new("/sys/fs/cgroup"), unified, cgroup_path, &limits)
        .map_err(os("setting cgroup limits"))?;
    let rules: Vec<DeviceRule> = r
        .devices()
        .iter()
        .flatten()
        .map(DeviceRule::from_spec)
        .collect();
    if unified {
        if let Some(dir) = dirs.first() {
            berth_runtime::cgroups::attach_device_rules(dir, &rules)
                .map_err(os("attaching the device filter"))?;
        }
        return Ok(());
    }
    if let Some(dev) = dirs
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/devices"))
    {
        for rule in &rules {
            let file = if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write_file(&dev.join(file), &rule.v1_line())?;
        }
    }
    Ok(())
}

/// The cgroup limits in a runtime spec's `linux.resources`.
fn limits_of(r: &LinuxResources) -> berth_runtime::cgroups::Limits {
    let num = |v: Option<i64>| v.filter(|n| *n != 0);
    let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let dev = |major: i64, minor: i64| format!("{major}:{minor}");
    let throttles = |l: &Option<Vec<LinuxThrottleDevice>>| -> Vec<(String, u64)> {
        l.iter()
            .flatten()
            .map(|d| (dev(d.major(), d.minor()), d.rate()))
            .collect()
    };
    let (mem, cpu, io) = (r.memory().as_ref(), r.cpu().as_ref(), r.block_io().as_ref());
    let mut limits = berth_runtime::cgroups::Limits {
        memory: num(mem.and_then(|m| m.limit())),
        memory_swap: num(mem.and_then(|m| m.swap())),
        memory_reservation: num(mem.and_then(|m| m.reservation())),
        swappiness: mem.and_then(|m| m.swappiness()).map(|s| s as i64),
        oom_kill_disable: mem.and_then(|m| m.disable_oom_killer()).filter(|b| *b),
        cpu_shares: num(cpu.and_then(|c| c.shares()).map(|s| s as i64)),
        cpuset_cpus: cpu.and_then(|c| text(c.cpus())),
        cpuset_mems: cpu.and_then(|c| text(c.mems())),
        pids: num(r.pids().as_ref().map(|p| p.limit())),
        blkio_weight: io.and_then(|b| b.weight()),
        blkio_weight_device: io
            .and_then(|b| b.weight_device().clone())
            .into_iter()
            .flatten()
            .map(|d| (dev(d.major(), d.minor()), d.weight().unwrap_or(0)))
            .collect(),
        read_bps: throttles(&io.and_then(|b| b.throttle_read_bps_device().clone())),
        write_bps: throttles(&io.and_then(|b| b.throttle_write_bps_device().clone())),
        read_iops: throttles(&io.and_then(|b| b.throttle_read_iops_device().clone())),
        write_iops: throttles(&io.and_then(|b| b.throttle_write_iops_device().clone())),
        ..Default::default()
    };
    if let Some(q) = num(cpu.and_then(|c| c.quota())) {
        let period = cpu.and_then(|c| c.period()).filter(|p| *p != 0);
        limits.cpu_quota = Some((q, period.map_or(100_000, |p| p as i64)));
    }
    limits
}

pub(super) fn join_cgroups(procs: &[PathBuf]) -> Res<()> {
    for p in procs {
        write_file(p, "0")?;
    }
    Ok(())
}

pub(super) fn freezer(cgroup_path: &str) -> (PathBuf, &'static str, &'static str) {
    let rel = cgroup_path.trim_start_matches('/');
    if berth_runtime::cgroups::is_unified() {
        (
            Path::new("/sys/fs/cgroup").join(rel).join("cgroup.freeze"),
            "1",
            "0",
        )
    } else {
        (
            Path::new("/sys/fs/cgroup/freezer")
                .join(rel)
                .join("freezer.state"),
            "FROZEN",
            "THAWED",
        )
    }
}

/// Freezes (or thaws) every process of the container, returning once the
/// cgroup says it is done.
pub fn freeze(cgroup_path: &str, on: bool) -> Res<()> {
    let (file, frozen, thawed) = freezer(cgroup_path);
    let want = if on { frozen } else { thawed };
    write_file(&file, want)?;
    let done = || {
        if file.ends_with("cgroup.freeze") {
            let events =
                fs::read_to_string(file.with_file_name("cgroup.events")).unwrap_or_default();
            events.lines().any(|l| l == "frozen 1") == on
        } else {
            fs::read_to_string(&file).is_ok_and(|s| s.trim() == want)
        }
    };
    for _ in 0..1000 {
        if done() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(RuntimeError::Spec(format!(
        "the container's cgroup did not become {want}"
    )))
}

/// Signals the init, or with `all` every process in the container's cgroup.
pub fn kill(init_pid: i32, cgroup_path: &str, signal: i32, all: bool) -> Res<()> {
    let pids = if all {
        berth_runtime::cgroups::pids(cgroup_path)
    } else {
        vec![init_pid]
    };
    let mut sent = false;
    for p in pids {
        // SAFETY: kill(2) of a pid of this container.
        if unsafe { libc::kill(p, signal) } == 0 {
            sent = true;
        }
    }
    if sent {
        Ok(())
    } else {
        Err(RuntimeError::Spec("container not running".into()))
    }
}

/// Removes what is left of a container once its init has exited.
pub fn delete(cgroup_path: &str) {
    let (file, _, thawed) = freezer(cgroup_path);
    // A frozen process cannot die: thaw what is left before killing it.
    let _ = fs::write(file, thawed);
    berth_runtime::cgroups::destroy(cgroup_path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_hierarchies_and_the_dirs_to_join() {
        let mi = "\
30 1 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/net_cls rw shared:16 - cgroup cgroup rw,net_cls
";
        let h = v1_hierarchies(mi);
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].data, "xattr,name=systemd");
        assert_eq!(h[1].mountpoint, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        let dirs = cgroup_dirs("/berth/abc", false, &h);
        assert_eq!(
            dirs,
            [
                Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/abc"),
                Path::new("/sys/fs/cgroup/memory/berth/abc")
            ]
        );
        assert_eq!(
            cgroup_dirs("/berth/abc", true, &h),
            [Path::new("/sys/fs/cgroup/berth/abc")]
        );
    }
}
