//! Docker's default seccomp profile, narrowed to this architecture and the
//! container's capabilities, in OCI `linux.seccomp` form.

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};
use serde::Deserialize;

const DEFAULT_PROFILE: &str = include_str!("seccomp-default.json");

/// Docker's profile format: OCI's rules plus the conditions on
/// architecture and capabilities that choose among them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    arch_map: Vec<ArchMap>,
    syscalls: Vec<DockerSyscall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    includes: Option<Condition>,
    excludes: Option<Condition>,
}

/// `minKernel` is not read: this kernel is newer than any the profile names.
#[derive(Deserialize, Default)]
struct Condition {
    arches: Option<Vec<String>>,
    caps: Option<Vec<String>>,
}

fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm",
        other => other,
    }
}

impl Condition {
    /// Whether its architectures, and its capabilities, name ours; a list
    /// it does not have matches.
    fn hits(&self, arch: &str, caps: &[String]) -> (bool, bool) {
        let arch_hit = self.arches.as_ref().map(|a| a.iter().any(|x| x == arch));
        let caps_hit = self
            .caps
            .as_ref()
            .map(|a| a.iter().any(|x| caps.contains(x)));
        (arch_hit.unwrap_or(true), caps_hit.unwrap_or(true))
    }
}

/// Builds the filter for a container holding `caps` (full `CAP_…` names).
pub fn default_profile(caps: &[String]) -> LinuxSeccomp {
    // Read once: every container start asks for it.
    static PROFILE: std::sync::OnceLock<DockerProfile> = std::sync::OnceLock::new();
    let profile = PROFILE.get_or_init(|| {
        serde_json::from_str(DEFAULT_PROFILE).expect("the embedded profile is Docker's format")
    });
    let arch = docker_arch();
    let native = match arch {
        "amd64" => Some(Arch::ScmpArchX86_64),
        "arm64" => Some(Arch::ScmpArchAarch64),
        _ => None,
    };
    let mut archs = Vec::new();
    for m in &profile.arch_map {
        if Some(m.architecture) == native {
            archs.push(m.architecture);
            archs.extend(m.sub_architectures.iter().flatten());
        }
    }
    let mut syscalls = Vec::new();
    for s in &profile.syscalls {
        if let Some(inc) = &s.includes {
            if inc.hits(arch, caps) != (true, true) {
                continue;
            }
        }
        if let Some(exc) = &s.excludes {
            let by_arch = exc
                .arches
                .as_ref()
                .is_some_and(|a| a.iter().any(|x| x == arch));
            let by_cap = exc
                .caps
                .as_ref()
                .is_some_and(|a| a.iter().any(|x| caps.contains(x)));
            if by_arch || by_cap {
                continue;
            }
        }
        let mut rule = LinuxSyscall::default();
        rule.set_names(s.names.clone());
        rule.set_action(s.action);
        rule.set_errno_ret(s.errno_ret);
        rule.set_args(s.args.clone().filter(|a| !a.is_empty()));
        syscalls.push(rule);
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(profile.default_action);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_architectures(Some(archs));
    out.set_syscalls(Some(syscalls));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The profile as the shim reads it from `config.json`.
    fn profile(caps: &[String]) -> Value {
        serde_json::to_value(default_profile(caps)).unwrap()
    }

    fn allowed(p: &Value, name: &str) -> bool {
        p["syscalls"].as_array().unwrap().iter().any(|s| {
            s["action"] == "SCMP_ACT_ALLOW"
                && s["args"].is_null()
                && s["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    #[test]
    fn default_caps_do_not_get_mount_or_ptrace_of_the_kernel() {
        let p = profile(&["CAP_CHOWN".to_string()]);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(allowed(&p, "read"));
        assert!(!allowed(&p, "mount"), "mount needs CAP_SYS_ADMIN");
        assert!(!allowed(&p, "reboot"));
        assert!(
            !allowed(&p, "unshare"),
            "unshare is excluded without CAP_SYS_ADMIN"
        );
    }

    #[test]
    fn clone_mask_keeps_runcs_order() {
        let p = profile(&[]);
        let clone = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"][0] == "clone" && s["args"].is_array())
            .unwrap();
        // `value` is the mask, `valueTwo` the datum, as runc and berth-shim read them.
        assert_eq!(clone["args"][0]["value"], 2114060288u64);
        assert_eq!(clone["args"][0]["valueTwo"].as_u64().unwrap_or(0), 0);
    }
}
