//! A [`RunSpec`] → the OCI runtime spec (`config.json`) as `oci-spec` types.
//!
//! oci-spec's `Default` impls (and so its builders' unset fields) are runc's
//! example config — `sh`, an rlimit of 1024 files, no-new-privileges, a set
//! of capabilities. A container must get only what Docker gives it, so the
//! structs with such defaults start from [`absent`]: the JSON object with
//! nothing in it, read through serde, where a missing member is `None`.

use super::*;
use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxBlockIo, LinuxCapabilities, LinuxCpu, LinuxDevice,
    LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids,
    LinuxResources, LinuxThrottleDevice, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    Mount, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec,
};
use serde::de::DeserializeOwned;

fn absent<T: DeserializeOwned>(required: Value) -> Result<T, RuntimeError> {
    Ok(serde_json::from_value(required)?)
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.into());
    m.set_typ(Some(kind.into()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// The OCI runtime spec for `spec`.
pub fn build(spec: &RunSpec) -> Result<Spec, RuntimeError> {
    let caps = capabilities(spec)?;
    let mut oci: Spec = absent(json!({"ociVersion": "1.0.2"}))?;
    let mut root = Root::default();
    root.set_path(spec.rootfs.clone());
    root.set_readonly(Some(spec.readonly_rootfs));
    oci.set_root(Some(root));
    oci.set_mounts(Some(mounts(spec)));
    let mut process = exec_process(&ExecProcess {
        args: &spec.args,
        env: &spec.env,
        cwd: &spec.cwd,
        uid: spec.uid,
        gid: spec.gid,
        tty: spec.tty,
        caps: &caps,
        no_new_privileges: spec.no_new_privileges,
        oom_score_adj: spec.oom_score_adj,
    })?;
    if !spec.additional_gids.is_empty() {
        process
            .user_mut()
            .set_additional_gids(Some(spec.additional_gids.clone()));
    }
    if !spec.rlimits.is_empty() {
        let rlimits = spec
            .rlimits
            .iter()
            .map(|(t, soft, hard)| {
                let typ: PosixRlimitType = serde_json::from_value(json!(t))?;
                Ok(PosixRlimitBuilder::default()
                    .typ(typ)
                    .soft(*soft)
                    .hard(*hard)
                    .build()?)
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        process.set_rlimits(Some(rlimits));
    }
    oci.set_process(Some(process));
    if !spec.host_uts {
        oci.set_hostname(Some(spec.hostname.clone()));
    }
    oci.set_linux(Some(linux(spec, &caps)?));
    Ok(oci)
}

/// Docker's mounts, then the container's own files and the user's mounts.
fn mounts(spec: &RunSpec) -> Vec<Mount> {
    let rw = |on: bool| if on { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", rw(spec.privileged)],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", rw(spec.privileged)],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    let shm_size = format!(
        "size={}k",
        if spec.shm_size > 0 {
            spec.shm_size / 1024
        } else {
            65536
        }
    );
    mounts.push(if spec.host_ipc {
        mount("/dev/shm", "bind", "/dev/shm", &["rbind", "rprivate", "rw"])
    } else {
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        )
    });
    for (src, dst) in &spec.etc_binds {
        mounts.push(mount(
            dst,
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate"],
        ));
    }
    // Parents before children: `/data` must be mounted before `/data/sub`.
    let mut user: Vec<&UserMount> = spec.mounts.iter().collect();
    user.sort_by_key(|m| m.destination.matches('/').count());
    for m in user {
        let rw = rw(!m.readonly);
        match &m.source {
            Some(src) => mounts.push(mount(
                &m.destination,
                "bind",
                &src.to_string_lossy(),
                &["rbind", "rprivate", rw],
            )),
            None => {
                let mut opts: Vec<&str> = vec!["nosuid", "nodev", "noexec", rw];
                opts.extend(m.tmpfs_options.iter().map(String::as_str));
                mounts.push(mount(&m.destination, "tmpfs", "tmpfs", &opts));
            }
        }
    }
    mounts
}

fn namespace(typ: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path.map(PathBuf::from));
    n
}

fn namespaces(spec: &RunSpec) -> Vec<LinuxNamespace> {
    let mut out = Vec::new();
    for (typ, host) in [
        (LinuxNamespaceType::Pid, spec.host_pid),
        (LinuxNamespaceType::Ipc, spec.host_ipc),
        (LinuxNamespaceType::Uts, spec.host_uts),
    ] {
        if !host {
            out.push(namespace(typ, None));
        }
    }
    out.push(namespace(LinuxNamespaceType::Mount, None));
    if !spec.host_cgroupns {
        out.push(namespace(LinuxNamespaceType::Cgroup, None));
    }
    match &spec.net {
        NetMode::None => out.push(namespace(LinuxNamespaceType::Network, None)),
        NetMode::Path(p) => out.push(namespace(LinuxNamespaceType::Network, Some(p))),
        NetMode::Host => {}
    }
    out
}

fn device_type(kind: char) -> LinuxDeviceType {
    match kind {
        'b' => LinuxDeviceType::B,
        'c' => LinuxDeviceType::C,
        'u' => LinuxDeviceType::U,
        'p' => LinuxDeviceType::P,
        _ => LinuxDeviceType::A,
    }
}

fn allow(
    typ: Option<char>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(true);
    d.set_typ(typ.map(device_type));
    d.set_major(major);
    d.set_minor(minor);
    d.set_access(Some(access.into()));
    d
}

/// Docker's device cgroup rules: nothing but the usual character devices,
/// and mknod of any; everything for a privileged container.
fn device_rules(spec: &RunSpec) -> Vec<LinuxDeviceCgroup> {
    let mut rules = if spec.privileged {
        vec![allow(None, None, None, "rwm")]
    } else {
        let mut deny = allow(None, None, None, "rwm");
        deny.set_allow(false);
        let mut r = vec![deny];
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
        ] {
            r.push(allow(Some('c'), Some(major), Some(minor), "rwm"));
        }
        r.push(allow(Some('c'), Some(136), None, "rwm"));
        r.push(allow(Some('c'), Some(10), Some(200), "rwm"));
        r.push(allow(Some('c'), None, None, "m"));
        r.push(allow(Some('b'), None, None, "m"));
        r
    };
    for d in &spec.devices {
        rules.push(allow(
            Some(d.kind),
            Some(d.major as i64),
            Some(d.minor as i64),
            &d.access,
        ));
    }
    for d in &spec.device_allow {
        rules.push(allow(
            (d.kind != 'a').then_some(d.kind),
            d.major,
            d.minor,
            &d.access,
        ));
    }
    rules
}

fn memory(spec: &RunSpec) -> Option<LinuxMemory> {
    let mut m = LinuxMemory::default();
    if spec.memory > 0 {
        m.set_limit(Some(spec.memory));
        if spec.memory_swap != 0 {
            m.set_swap(Some(spec.memory_swap));
        }
    }
    if spec.memory_reservation > 0 {
        m.set_reservation(Some(spec.memory_reservation));
    }
    m.set_swappiness(spec.memory_swappiness.map(|s| s as u64));
    if spec.oom_kill_disable {
        m.set_disable_oom_killer(Some(true));
    }
    (m != LinuxMemory::default()).then_some(m)
}

fn block_io(spec: &RunSpec) -> Result<Option<LinuxBlockIo>, RuntimeError> {
    let mut b = LinuxBlockIo::default();
    if spec.blkio_weight > 0 {
        b.set_weight(Some(spec.blkio_weight));
    }
    let throttles = |l: &[BlkioDevice]| -> Result<Option<Vec<LinuxThrottleDevice>>, RuntimeError> {
        let v = l
            .iter()
            .map(|d| {
                LinuxThrottleDeviceBuilder::default()
                    .major(d.major as i64)
                    .minor(d.minor as i64)
                    .rate(d.value)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!v.is_empty()).then_some(v))
    };
    if !spec.blkio_weight_device.is_empty() {
        let weights = spec
            .blkio_weight_device
            .iter()
            .map(|d| {
                LinuxWeightDeviceBuilder::default()
                    .major(d.major as i64)
                    .minor(d.minor as i64)
                    .weight(d.value as u16)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        b.set_weight_device(Some(weights));
    }
    b.set_throttle_read_bps_device(throttles(&spec.read_bps)?);
    b.set_throttle_write_bps_device(throttles(&spec.write_bps)?);
    b.set_throttle_read_iops_device(throttles(&spec.read_iops)?);
    b.set_throttle_write_iops_device(throttles(&spec.write_iops)?);
    Ok((b != LinuxBlockIo::default()).then_some(b))
}

fn cpu(spec: &RunSpec) -> Option<LinuxCpu> {
    let mut c = LinuxCpu::default();
    if spec.nano_cpus > 0 {
        let period = 100_000i64;
        c.set_period(Some(period as u64));
        c.set_quota(Some(spec.nano_cpus * period / 1_000_000_000));
    } else if spec.cpu_quota > 0 {
        c.set_quota(Some(spec.cpu_quota));
        c.set_period(Some(if spec.cpu_period > 0 {
            spec.cpu_period as u64
        } else {
            100_000
        }));
    }
    if spec.cpu_shares > 0 {
        c.set_shares(Some(spec.cpu_shares as u64));
    }
    if !spec.cpuset_cpus.is_empty() {
        c.set_cpus(Some(spec.cpuset_cpus.clone()));
    }
    if !spec.cpuset_mems.is_empty() {
        c.set_mems(Some(spec.cpuset_mems.clone()));
    }
    (c != LinuxCpu::default()).then_some(c)
}

fn resources(spec: &RunSpec) -> Result<LinuxResources, RuntimeError> {
    let mut r = LinuxResources::default();
    r.set_devices(Some(device_rules(spec)));
    r.set_memory(memory(spec));
    r.set_block_io(block_io(spec)?);
    r.set_cpu(cpu(spec));
    if spec.pids_limit > 0 {
        let mut p = LinuxPids::default();
        p.set_limit(spec.pids_limit);
        r.set_pids(Some(p));
    }
    Ok(r)
}

fn linux(spec: &RunSpec, caps: &[String]) -> Result<Linux, RuntimeError> {
    let mut linux: Linux = absent(json!({}))?;
    linux.set_namespaces(Some(namespaces(spec)));
    linux.set_cgroups_path(Some(spec.cgroup_path.clone().into()));
    linux.set_resources(Some(resources(spec)?));
    if !spec.sysctls.is_empty() {
        linux.set_sysctl(Some(spec.sysctls.clone().into_iter().collect()));
    }
    if !spec.devices.is_empty() {
        let devices = spec
            .devices
            .iter()
            .map(|d| {
                let mut n = LinuxDevice::default();
                n.set_path(d.path.clone().into());
                n.set_typ(device_type(d.kind));
                n.set_major(d.major as i64);
                n.set_minor(d.minor as i64);
                n.set_file_mode(Some(d.mode));
                n.set_uid(Some(d.uid));
                n.set_gid(Some(d.gid));
                n
            })
            .collect();
        linux.set_devices(Some(devices));
    }
    let masked = match &spec.masked_paths {
        Some(p) => p.clone(),
        None if spec.privileged => vec![],
        None => default_masked_paths(),
    };
    let readonly = match &spec.readonly_paths {
        Some(p) => p.clone(),
        None if spec.privileged => vec![],
        None => READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
    };
    linux.set_masked_paths((!masked.is_empty()).then_some(masked));
    linux.set_readonly_paths((!readonly.is_empty()).then_some(readonly));
    if !spec.privileged && !spec.seccomp_unconfined {
        linux.set_seccomp(Some(crate::seccomp::default_profile(caps)));
    }
    Ok(linux)
}

/// The kernel's capabilities by their `CAP_…` names.
fn capability_set(caps: &[String]) -> Result<Capabilities, RuntimeError> {
    caps.iter()
        .map(|c| {
            serde_json::from_value::<Capability>(json!(c))
                .map_err(|_| RuntimeError::InvalidCapability(c.clone()))
        })
        .collect()
}

/// What an exec inside a running container runs, and as whom.
#[derive(Debug, Clone, Default)]
pub struct ExecProcess<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub tty: bool,
    pub caps: &'a [String],
    pub no_new_privileges: bool,
    /// The container's, as runc gives every exec.
    pub oom_score_adj: i64,
}

/// The `process` of a container's init (from [`build`]) or of an exec
/// inside a running container.
pub fn exec_process(e: &ExecProcess) -> Result<Process, RuntimeError> {
    let mut p: Process = absent(json!({"user": {"uid": e.uid, "gid": e.gid}, "cwd": "/"}))?;
    p.set_terminal(Some(e.tty));
    p.set_args(Some(e.args.to_vec()));
    p.set_env(Some(e.env.to_vec()));
    if !e.cwd.is_empty() {
        p.set_cwd(e.cwd.into());
    }
    let set = capability_set(e.caps)?;
    let mut caps: LinuxCapabilities = absent(json!({}))?;
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    p.set_capabilities(Some(caps));
    p.set_oom_score_adj(Some(e.oom_score_adj as i32));
    // Written only when set, as Docker writes it.
    p.set_no_new_privileges(e.no_new_privileges.then_some(true));
    Ok(p)
}
