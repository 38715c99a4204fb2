//! What a container runs with: its OCI spec inputs (`RunSpec`) from the
//! record, the /etc files it gets, and the host devices and block-device
//! limits resolved by number.

use crate::*;

impl Engine {
    /// An `--add-host` entry as (name, address): `name:ip` or `name=ip`,
    /// IPv6 in brackets or not, `host-gateway` for the default bridge's
    /// gateway (Docker's `--host-gateway-ip` default).
    pub(crate) fn extra_host(&self, e: &str) -> Option<(String, String)> {
        let (name, ip) = match (e.split_once('='), e.split_once(':')) {
            (Some(kv), _) => kv,
            (None, Some(kv)) => kv,
            (None, None) => return None,
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let ip = if ip == "host-gateway" {
            self.cfg.bip.split('/').next().unwrap_or_default()
        } else {
            ip
        };
        Some((name.to_string(), ip.to_string()))
    }

    pub(crate) fn write_etc_files(
        &self,
        rec: &Record,
        eps: &BTreeMap<String, endpoints::EndpointState>,
        link_hosts: &[String],
    ) -> Result<Vec<(PathBuf, String)>> {
        let dir = self.cdir(&rec.id);
        let host_net = rec.host_config.network_mode == "host";
        let hostname = &rec.config.hostname;
        std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        let mut hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            String::from(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            )
        };
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        for e in rec.host_config.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = self.extra_host(e) {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        for l in link_hosts {
            hosts.push_str(&format!("{l}\n"));
        }
        if !host_net {
            for ep in eps.values() {
                hosts.push_str(&format!("{}\t{}\n", ep.ip, hostname));
            }
        }
        std::fs::write(dir.join("hosts"), hosts)?;
        let resolv = match &rec.host_config.dns {
            // On user-defined networks the embedded server answers, as
            // dockerd's; `--dns` servers become its upstreams.
            _ if self.on_user_network(eps) => {
                let search: String = std::fs::read_to_string("/etc/resolv.conf")
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.starts_with("search"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                format!("{search}nameserver 127.0.0.11\noptions ndots:0\n")
            }
            Some(d) if !d.is_empty() => d.iter().map(|s| format!("nameserver {s}\n")).collect(),
            // A loopback resolver of the host is not reachable from a
            // container's own network namespace: leave such lines out.
            _ if !host_net => std::fs::read_to_string("/etc/resolv.conf")
                .unwrap_or_default()
                .lines()
                .filter(|l| !(l.starts_with("nameserver") && l.contains(" 127.")))
                .map(|l| format!("{l}\n"))
                .collect(),
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let resolv = with_dns_overrides(
            &resolv,
            rec.host_config.dns_search.as_deref().unwrap_or_default(),
            rec.host_config.dns_options.as_deref().unwrap_or_default(),
        );
        std::fs::write(dir.join("resolv.conf"), resolv)?;
        Ok(vec![
            (dir.join("hostname"), "/etc/hostname".into()),
            (dir.join("hosts"), "/etc/hosts".into()),
            (dir.join("resolv.conf"), "/etc/resolv.conf".into()),
        ])
    }

    pub(crate) fn run_spec(
        &self,
        rec: &Record,
        rootfs: &Path,
        netns: Option<&str>,
        eps: &BTreeMap<String, endpoints::EndpointState>,
    ) -> Result<RunSpec> {
        let hc = &rec.host_config;
        let user = user::resolve(rootfs, &rec.config.user).map_err(EngineError::BadRequest)?;
        let (link_env, link_hosts) = self.link_setup(rec)?;
        let env = process_env(rec, &link_env, &user.home);
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        let sec = hc.security_opt.clone().unwrap_or_default();
        let mut additional_gids = user.additional_gids;
        for g in hc.group_add.iter().flatten() {
            let gid = user::group_id(rootfs, g).map_err(EngineError::BadRequest)?;
            if !additional_gids.contains(&gid) {
                additional_gids.push(gid);
            }
        }
        Ok(RunSpec {
            shm_size: hc.shm_size,
            rlimits: rlimits(hc),
            sysctls: hc.sysctls.clone().unwrap_or_default().into_iter().collect(),
            host_pid: hc.pid_mode == "host",
            host_ipc: hc.ipc_mode == "host",
            host_uts: hc.uts_mode == "host",
            rootfs: rootfs.to_path_buf(),
            args,
            env,
            cwd: if rec.config.working_dir.is_empty() {
                "/".into()
            } else {
                rec.config.working_dir.clone()
            },
            uid: user.uid,
            gid: user.gid,
            additional_gids,
            tty: rec.config.tty,
            hostname: rec.config.hostname.clone(),
            readonly_rootfs: hc.readonly_rootfs,
            privileged: hc.privileged,
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
            no_new_privileges: sec.iter().any(|s| {
                s == "no-new-privileges"
                    || s == "no-new-privileges:true"
                    || s == "no-new-privileges=true"
            }),
            seccomp_unconfined: sec
                .iter()
                .any(|s| s == "seccomp=unconfined" || s == "seccomp:unconfined"),
            memory: hc.memory,
            memory_swap: hc.memory_swap,
            nano_cpus: hc.nano_cpus,
            cpu_quota: hc.cpu_quota,
            cpu_period: hc.cpu_period,
            cpu_shares: hc.cpu_shares,
            pids_limit: hc.pids_limit.unwrap_or(0),
            net: match (hc.network_mode.as_str(), netns) {
                ("host", _) => NetMode::Host,
                (_, Some(p)) => NetMode::Path(p.to_string()),
                _ => NetMode::None,
            },
            cgroup_path: self.cgroup_path(&rec.id),
            etc_binds: self.write_etc_files(rec, eps, &link_hosts)?,
            mounts: self.prepare_mounts(rec, rootfs)?,
            host_cgroupns: hc.cgroupns_mode == "host",
            memory_reservation: hc.memory_reservation,
            memory_swappiness: hc.memory_swappiness,
            oom_kill_disable: hc.oom_kill_disable == Some(true),
            oom_score_adj: hc.oom_score_adj,
            cpuset_cpus: hc.cpuset_cpus.clone(),
            cpuset_mems: hc.cpuset_mems.clone(),
            blkio_weight: hc.blkio_weight,
            blkio_weight_device: block_devices(
                hc.blkio_weight_device
                    .iter()
                    .flatten()
                    .map(|d| (d.path.as_str(), d.weight as u64)),
            )?,
            read_bps: throttles(&hc.blkio_device_read_bps)?,
            write_bps: throttles(&hc.blkio_device_write_bps)?,
            read_iops: throttles(&hc.blkio_device_read_iops)?,
            write_iops: throttles(&hc.blkio_device_write_iops)?,
            device_allow: hc
                .device_cgroup_rules
                .iter()
                .flatten()
                .map(|r| validate::parse_device_rule(r).map_err(EngineError::BadRequest))
                .collect::<Result<_>>()?,
            masked_paths: hc.masked_paths.clone(),
            readonly_paths: hc.readonly_paths.clone(),
            devices: host_devices(hc.devices.as_deref().unwrap_or_default())?,
        })
    }
}

/// The process's environment: its links', then its own, then what Docker
/// adds when missing (PATH, HOSTNAME, TERM with a TTY, HOME).
fn process_env(rec: &Record, link_env: &[String], home: &str) -> Vec<String> {
    // The container's own variables win over its links'.
    let mut env = merge_env(link_env, rec.config.env.as_deref().unwrap_or_default());
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env = merge_env(&[format!("HOSTNAME={}", rec.config.hostname)], &env);
    if rec.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// `--ulimit nofile=…` as the spec's `RLIMIT_NOFILE`.
fn rlimits(hc: &berth_api::HostConfig) -> Vec<(String, u64, u64)> {
    hc.ulimits
        .iter()
        .flatten()
        .map(|u| {
            (
                format!("RLIMIT_{}", u.name.to_ascii_uppercase()),
                u.soft as u64,
                u.hard as u64,
            )
        })
        .collect()
}

/// `--device HOST[:CONTAINER[:PERMS]]` as device nodes: a device file is
/// made as the host has it (number, mode, owner); a directory brings every
/// device below it, as dockerd does.
pub(crate) fn host_devices(list: &[berth_api::DeviceMapping]) -> Result<Vec<spec::DeviceNode>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for d in list {
        let host = Path::new(&d.path_on_host);
        let inside = match d.path_in_container.as_str() {
            "" => d.path_on_host.clone(),
            p => p.to_string(),
        };
        let access = match d.cgroup_permissions.as_str() {
            "" => "rwm".to_string(),
            p => p.to_string(),
        };
        let md = std::fs::metadata(host).map_err(|e| {
            EngineError::BadRequest(format!(
                "error gathering device information while adding custom device \"{}\": {e}",
                d.path_on_host
            ))
        })?;
        let mut found: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
        if md.is_dir() {
            let mut stack = vec![host.to_path_buf()];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(&dir)?.flatten() {
                    let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                        continue;
                    };
                    if m.is_dir() {
                        stack.push(e.path());
                    } else {
                        found.push((e.path(), m));
                    }
                }
            }
        } else {
            found.push((host.to_path_buf(), md));
        }
        for (p, m) in found {
            let kind = match m.file_type() {
                t if t.is_char_device() => 'c',
                t if t.is_block_device() => 'b',
                _ if p == host => {
                    return Err(EngineError::BadRequest(format!(
                        "error gathering device information while adding custom device \"{}\": not a device node",
                        d.path_on_host
                    )))
                }
                _ => continue,
            };
            let rel = p.strip_prefix(host).unwrap_or(Path::new(""));
            let path = if rel.as_os_str().is_empty() {
                inside.clone()
            } else {
                format!("{}/{}", inside.trim_end_matches('/'), rel.display())
            };
            out.push(spec::DeviceNode {
                path,
                kind,
                major: nix::sys::stat::major(m.rdev()),
                minor: nix::sys::stat::minor(m.rdev()),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                access: access.clone(),
            });
        }
    }
    Ok(out)
}

/// Block devices named by path, with their weight or rate, by number.
pub(crate) fn block_devices<'a>(
    devs: impl Iterator<Item = (&'a str, u64)>,
) -> Result<Vec<spec::BlkioDevice>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    devs.map(|(path, value)| {
        let md = std::fs::metadata(path)
            .map_err(|e| EngineError::BadRequest(format!("invalid block device {path}: {e}")))?;
        if !md.file_type().is_block_device() {
            return Err(EngineError::BadRequest(format!(
                "invalid block device {path}: not a block device"
            )));
        }
        let rdev = md.rdev();
        Ok(spec::BlkioDevice {
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            value,
        })
    })
    .collect()
}

pub(crate) fn throttles(
    l: &Option<Vec<berth_api::ThrottleDevice>>,
) -> Result<Vec<spec::BlkioDevice>> {
    block_devices(l.iter().flatten().map(|d| (d.path.as_str(), d.rate)))
}

/// A resolv.conf with `--dns-search` and `--dns-option` replacing its own
/// `search` and `options` lines.
pub(crate) fn with_dns_overrides(resolv: &str, search: &[String], options: &[String]) -> String {
    let mut out: String = resolv
        .lines()
        .filter(|l| {
            let replaced = |key: &str, by: &[String]| !by.is_empty() && l.starts_with(key);
            !replaced("search", search) && !replaced("options", options)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}
