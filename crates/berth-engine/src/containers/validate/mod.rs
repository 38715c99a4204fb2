//! What dockerd checks in a create (and update) request before anything is
//! made, with its wording, and the defaults it fills in. Pure functions over
//! the request and a probed [`SysInfo`], so every rule is unit-tested.

use berth_api::{ContainerConfig, HostConfig};
use berth_runtime::spec::DeviceAllow;
mod resources;
pub use resources::*;

/// Docker's default /dev/shm size.
pub const DEFAULT_SHM: i64 = 64 * 1024 * 1024;

/// The rest of dockerd's create checks on the host config
/// (`validateHostConfig` and `verifyPlatformContainerSettings`).
pub fn host_config(hc: &HostConfig) -> Checked {
    let mut warn = Vec::new();
    let rp = &hc.restart_policy;
    let none = matches!(rp.name.as_str(), "" | "no");
    if hc.auto_remove && !none {
        return Err("can't create 'AutoRemove' container with restart policy".into());
    }
    restart_policy(&rp.name, rp.maximum_retry_count)?;
    if !matches!(hc.isolation.as_str(), "" | "default") {
        return Err(format!("invalid isolation '{}' on linux", hc.isolation));
    }
    if hc.annotations.iter().flatten().any(|(k, _)| k.is_empty()) {
        return Err(
            "invalid Annotations: the empty string is not permitted as an annotation key".into(),
        );
    }
    if hc.shm_size < 0 {
        return Err("SHM size can not be less than 0".into());
    }
    if !(-1000..=1000).contains(&hc.oom_score_adj) {
        return Err(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            hc.oom_score_adj
        ));
    }
    if !matches!(hc.cgroupns_mode.as_str(), "" | "host" | "private") {
        return Err(format!(
            "invalid cgroup namespace mode: {}",
            hc.cgroupns_mode
        ));
    }
    if !matches!(hc.runtime.as_str(), "" | "runc" | "berth") {
        return Err(format!("unknown or invalid runtime name: {}", hc.runtime));
    }
    if !matches!(hc.userns_mode.as_str(), "" | "host") {
        return Err(format!(
            "invalid user namespace mode: {} (user namespace remapping is not enabled in this daemon)",
            hc.userns_mode
        ));
    }
    if !hc.cgroup.is_empty() {
        return Err(format!(
            "invalid cgroup mode: {} (joining another container's cgroup is not supported)",
            hc.cgroup
        ));
    }
    if !matches!(hc.volume_driver.as_str(), "" | "local") {
        return Err(format!(
            "error looking up volume plugin {}: plugin \"{}\" not found",
            hc.volume_driver, hc.volume_driver
        ));
    }
    if hc.storage_opt.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
                .into(),
        );
    }
    if hc.device_requests.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err("could not select device driver \"\" with capabilities: [[gpu]]".into());
    }
    for r in hc.device_cgroup_rules.iter().flatten() {
        parse_device_rule(r)?;
    }
    for d in hc.devices.iter().flatten() {
        if !d.cgroup_permissions.is_empty()
            && !d.cgroup_permissions.chars().all(|c| "rwm".contains(c))
        {
            return Err(format!("invalid device mode: {}", d.cgroup_permissions));
        }
    }
    if hc.network_mode == "host" && hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) {
        warn.push("Published ports are discarded when using host network mode".into());
    }
    Ok(warn)
}

/// Refuses `--pid`/`--ipc`/`--uts` modes, ulimits and sysctls Docker would
/// refuse (or that Berth cannot honour), before anything is created.
pub fn check_host_options(hc: &HostConfig) -> crate::Result<()> {
    let bad = |m: String| Err(crate::EngineError::BadRequest(m));
    if !matches!(hc.pid_mode.as_str(), "" | "host") {
        return bad(format!(
            "invalid PID mode: {} (only host is supported)",
            hc.pid_mode
        ));
    }
    if !matches!(hc.ipc_mode.as_str(), "" | "private" | "shareable" | "host") {
        return bad(format!("invalid IPC mode: {}", hc.ipc_mode));
    }
    if !matches!(hc.uts_mode.as_str(), "" | "host") {
        return bad(format!("invalid UTS mode: {}", hc.uts_mode));
    }
    const ULIMITS: [&str; 15] = [
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
    ];
    for u in hc.ulimits.iter().flatten() {
        if !ULIMITS.contains(&u.name.as_str()) && u.name != "stack" {
            return bad(format!("invalid ulimit type: {}", u.name));
        }
        if u.soft > u.hard {
            return bad(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            ));
        }
    }
    for k in hc.sysctls.iter().flatten().map(|(k, _)| k) {
        let namespaced = k.starts_with("fs.mqueue.")
            || k.starts_with("net.")
            || matches!(
                k.as_str(),
                "kernel.msgmax"
                    | "kernel.msgmnb"
                    | "kernel.msgmni"
                    | "kernel.sem"
                    | "kernel.shmall"
                    | "kernel.shmmax"
                    | "kernel.shmmni"
                    | "kernel.shm_rmid_forced"
                    | "kernel.domainname"
                    | "kernel.hostname"
            );
        if !namespaced {
            return bad(format!("sysctl '{k}' is not allowed"));
        }
        if k.starts_with("net.") && hc.network_mode == "host" {
            return bad(format!(
                "sysctl '{k}' is not allowed in host network namespace"
            ));
        }
    }
    Ok(())
}

/// Docker's `ValidateRestartPolicy`, shared by create and update.
pub fn restart_policy(name: &str, count: i64) -> Result<(), String> {
    match name {
        "always" | "unless-stopped" | "no" if count != 0 => {
            let mut m = String::from(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            );
            if count < 0 {
                m.push_str(" and cannot be negative");
            }
            Err(m)
        }
        "on-failure" if count < 0 => {
            Err("invalid restart policy: maximum retry count cannot be negative".into())
        }
        "" | "always" | "unless-stopped" | "no" | "on-failure" => Ok(()),
        other => Err(format!(
            "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )),
    }
}

/// A `--device-cgroup-rule`: `TYPE MAJOR:MINOR ACCESS` with `*` for any
/// number, as runc's cgroup device rules.
pub fn parse_device_rule(rule: &str) -> Result<DeviceAllow, String> {
    let invalid = || format!("invalid device cgroup format '{rule}'");
    let parts: Vec<&str> = rule.split_whitespace().collect();
    let [kind, nums, access] = parts[..] else {
        return Err(invalid());
    };
    let kind = match kind {
        "a" | "b" | "c" => kind.chars().next().unwrap_or('a'),
        _ => return Err(invalid()),
    };
    let num = |s: &str| match s {
        "*" => Ok(None),
        n => n.parse::<i64>().map(Some).map_err(|_| invalid()),
    };
    let (major, minor) = nums.split_once(':').ok_or_else(invalid)?;
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(invalid());
    }
    Ok(DeviceAllow {
        kind,
        major: num(major)?,
        minor: num(minor)?,
        access: access.to_string(),
    })
}

/// dockerd's `validateContainerConfig`: working directory, stop signal,
/// environment and healthcheck timings. Cleans the working directory.
pub fn config(c: &mut ContainerConfig) -> Result<(), String> {
    if !c.working_dir.is_empty() {
        if !c.working_dir.starts_with('/') {
            return Err(format!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                c.working_dir
            ));
        }
        c.working_dir = clean_path(&c.working_dir);
    }
    if let Some(s) = c.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        crate::parse_signal(s).map_err(|e| e.to_string())?;
    }
    for e in c.env.iter().flatten() {
        if e.split('=').next().is_none_or(str::is_empty) {
            return Err(format!("invalid environment variable: {e}"));
        }
    }
    if c.hostname.len() > 64 {
        return Err(format!(
            "hostname \"{}\" is too long (maximum 64 bytes)",
            c.hostname
        ));
    }
    if let Some(h) = &c.healthcheck {
        for (v, name) in [
            (h.interval, "Interval"),
            (h.timeout, "Timeout"),
            (h.start_period, "StartPeriod"),
            (h.start_interval, "StartInterval"),
        ] {
            if v != 0 && v < 1_000_000 {
                return Err(format!("{name} in Healthcheck cannot be less than 1ms"));
            }
        }
        if h.retries < 0 {
            return Err("Retries in Healthcheck cannot be negative".into());
        }
    }
    Ok(())
}

/// Lexical clean of an absolute path, as Go's `filepath.Clean`.
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// What dockerd writes into a new container's host config when the client
/// left it out, so inspect shows the values in force.
pub fn apply_defaults(hc: &mut HostConfig, sys: &SysInfo) {
    if hc.memory > 0 && hc.memory_swap == 0 {
        hc.memory_swap = hc.memory * 2;
    }
    if hc.shm_size == 0 {
        hc.shm_size = DEFAULT_SHM;
    }
    if hc.ipc_mode.is_empty() {
        hc.ipc_mode = "private".into();
    }
    if hc.cgroupns_mode.is_empty() {
        // dockerd shares the host's cgroup namespace on v1 hosts; Berth
        // gives every container its own on both, as dockerd does on v2.
        hc.cgroupns_mode = "private".into();
    }
    if hc.oom_kill_disable.is_none() && sys.oom_kill_disable {
        hc.oom_kill_disable = Some(false);
    }
    if hc.runtime.is_empty() {
        hc.runtime = "runc".into();
    }
    if hc.log_config.config.is_none() {
        hc.log_config.config = Some(Default::default());
    }
    if !hc.privileged {
        if hc.masked_paths.is_none() {
            hc.masked_paths = Some(berth_runtime::spec::default_masked_paths());
        }
        if hc.readonly_paths.is_none() {
            hc.readonly_paths = Some(
                berth_runtime::spec::READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resources::tests::sys;
    use super::*;
    #[test]
    fn host_config_rules() {
        let hc = |f: &dyn Fn(&mut HostConfig)| {
            let mut h = HostConfig::default();
            f(&mut h);
            host_config(&h)
        };
        assert_eq!(
            hc(&|h| {
                h.auto_remove = true;
                h.restart_policy.name = "always".into();
            })
            .unwrap_err(),
            "can't create 'AutoRemove' container with restart policy"
        );
        assert_eq!(
            hc(&|h| {
                h.restart_policy.name = "on-failure".into();
                h.restart_policy.maximum_retry_count = -1;
            })
            .unwrap_err(),
            "invalid restart policy: maximum retry count cannot be negative"
        );
        assert!(hc(&|h| {
            h.restart_policy.name = "always".into();
            h.restart_policy.maximum_retry_count = 3;
        })
        .unwrap_err()
        .ends_with("only be used with 'on-failure'"));
        assert!(hc(&|h| h.oom_score_adj = 1001).is_err());
        assert!(hc(&|h| h.oom_score_adj = -1000).is_ok());
        assert!(hc(&|h| h.shm_size = -1).is_err());
        assert!(hc(&|h| h.cgroupns_mode = "shared".into()).is_err());
        assert_eq!(
            hc(&|h| h.runtime = "kata".into()).unwrap_err(),
            "unknown or invalid runtime name: kata"
        );
        assert!(hc(&|h| h.runtime = "runc".into()).is_ok());
        assert!(hc(&|h| h.isolation = "hyperv".into()).is_err());
        assert!(hc(&|h| h.device_cgroup_rules = Some(vec!["c 1:3 rwm".into()])).is_ok());
        assert!(hc(&|h| h.device_cgroup_rules = Some(vec!["x 1:3 rwm".into()])).is_err());
        assert!(hc(&|h| h.device_cgroup_rules = Some(vec!["c 1:3 rwz".into()])).is_err());
    }

    #[test]
    fn device_rules_parse_stars() {
        assert_eq!(
            parse_device_rule("c *:* m").unwrap(),
            DeviceAllow {
                kind: 'c',
                major: None,
                minor: None,
                access: "m".into()
            }
        );
        assert_eq!(parse_device_rule("b 8:0 rw").unwrap().major, Some(8));
        assert!(parse_device_rule("c 8 rw").is_err());
    }

    #[test]
    fn config_rules() {
        let cfg = |f: &dyn Fn(&mut ContainerConfig)| {
            let mut c = ContainerConfig::default();
            f(&mut c);
            config(&mut c).map(|_| c)
        };
        assert!(cfg(&|c| c.working_dir = "rel".into()).is_err());
        assert_eq!(
            cfg(&|c| c.working_dir = "/a/../b/./c/".into())
                .unwrap()
                .working_dir,
            "/b/c"
        );
        assert!(cfg(&|c| c.stop_signal = Some("SIGNOPE".into())).is_err());
        assert_eq!(
            cfg(&|c| c.env = Some(vec!["=x".into()])).unwrap_err(),
            "invalid environment variable: =x"
        );
        assert!(cfg(&|c| c.hostname = "h".repeat(65)).is_err());
        assert!(cfg(&|c| c.healthcheck = Some(berth_api::HealthConfig {
            interval: 10,
            ..Default::default()
        }))
        .unwrap_err()
        .starts_with("Interval in Healthcheck"));
        assert!(cfg(&|c| c.healthcheck = Some(berth_api::HealthConfig {
            retries: -1,
            ..Default::default()
        }))
        .is_err());
    }

    #[test]
    fn defaults_as_dockerd() {
        let mut hc = HostConfig {
            memory: 64 << 20,
            ..Default::default()
        };
        apply_defaults(&mut hc, &sys());
        assert_eq!(hc.memory_swap, 128 << 20);
        assert_eq!(hc.shm_size, DEFAULT_SHM);
        assert_eq!(hc.ipc_mode, "private");
        assert_eq!(hc.runtime, "runc");
        assert_eq!(hc.oom_kill_disable, Some(false));
        assert!(hc
            .masked_paths
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        let mut p = HostConfig {
            privileged: true,
            ..Default::default()
        };
        apply_defaults(&mut p, &sys());
        assert_eq!(p.masked_paths, None);
        assert_eq!(p.cgroupns_mode, "private");
    }
}
