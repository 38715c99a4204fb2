//! Docker's default seccomp profile, narrowed to this architecture and the
//! container's capabilities, in OCI `linux.seccomp` form.

use serde_json::{json, Value};

const DEFAULT_PROFILE: &str = include_str!("seccomp-default.json");

fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm",
        other => other,
    }
}

fn matches(cond: &Value, arch: &str, caps: &[String]) -> (bool, bool) {
    let arch_hit = cond["arches"]
        .as_array()
        .map(|a| a.iter().any(|x| x == arch));
    let caps_hit = cond["caps"]
        .as_array()
        .map(|a| a.iter().any(|x| caps.iter().any(|c| x == c.as_str())));
    (arch_hit.unwrap_or(true), caps_hit.unwrap_or(true))
}

/// Builds the filter for a container holding `caps` (full `CAP_…` names).
pub fn default_profile(caps: &[String]) -> Value {
    let profile: Value = serde_json::from_str(DEFAULT_PROFILE).expect("embedded profile is JSON");
    let arch = docker_arch();
    let mut archs = Vec::new();
    let native = match arch {
        "amd64" => "SCMP_ARCH_X86_64",
        "arm64" => "SCMP_ARCH_AARCH64",
        _ => "",
    };
    for m in profile["archMap"].as_array().into_iter().flatten() {
        if m["architecture"] == native {
            archs.push(m["architecture"].clone());
            archs.extend(
                m["subArchitectures"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    let mut syscalls = Vec::new();
    for s in profile["syscalls"].as_array().into_iter().flatten() {
        let inc = &s["includes"];
        let (a, c) = matches(inc, arch, caps);
        if !(inc.is_null() || a && c) {
            continue;
        }
        let exc = &s["excludes"];
        if exc.is_object() {
            let excluded_by_arch = exc["arches"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == arch));
            let excluded_by_cap = exc["caps"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| caps.iter().any(|c| x == c.as_str())));
            if excluded_by_arch || excluded_by_cap {
                continue;
            }
        }
        let mut rule = json!({"names": s["names"], "action": s["action"]});
        if let Some(e) = s.get("errnoRet") {
            rule["errnoRet"] = e.clone();
        }
        if let Some(args) = s.get("args").and_then(Value::as_array) {
            if !args.is_empty() {
                rule["args"] = Value::Array(
                    args.iter()
                        .map(|a| {
                            let mut arg =
                                json!({"index": a["index"], "value": a["value"], "op": a["op"]});
                            if let Some(two) = a.get("valueTwo").filter(|v| !v.is_null()) {
                                arg["valueTwo"] = two.clone();
                            }
                            arg
                        })
                        .collect(),
                );
            }
        }
        syscalls.push(rule);
    }
    json!({
        "defaultAction": profile["defaultAction"],
        "defaultErrnoRet": profile["defaultErrnoRet"],
        "architectures": archs,
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &Value, name: &str) -> bool {
        p["syscalls"].as_array().unwrap().iter().any(|s| {
            s["action"] == "SCMP_ACT_ALLOW"
                && s["args"].is_null()
                && s["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    #[test]
    fn default_caps_do_not_get_mount_or_ptrace_of_the_kernel() {
        let p = default_profile(&["CAP_CHOWN".to_string()]);
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
        let p = default_profile(&[]);
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
