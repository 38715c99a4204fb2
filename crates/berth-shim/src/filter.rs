//! Seccomp without recompiling it for every container.
//!
//! Compiling Docker's profile (three architectures, ~370 rules) with
//! libseccomp costs 10–20 ms. Like crun, we compile a profile once, keep the
//! BPF in a cache named by the profile's sha256, and load the cached program
//! in each new process just before exec (see linux/process.rs for the order).

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("seccomp profile: {0}")]
    Profile(String),
    #[error("seccomp: {0}")]
    Seccomp(#[from] libseccomp::error::SeccompError),
    #[error("seccomp cache: {0}")]
    Io(#[from] io::Error),
}

/// The compiled program (and its flags) of an OCI seccomp profile, from
/// `cache_dir` when it is there; None without a profile.
pub fn program(profile: &Value, cache_dir: &Path) -> Result<Option<(Vec<u8>, u32)>, FilterError> {
    if profile.is_null() {
        return Ok(None);
    }
    let bpf = cached_program(profile, cache_dir)?;
    Ok(Some((bpf, filter_flags(profile)?)))
}

/// Cache entries are `sha256(program) ‖ program`, so a torn or altered file
/// is recompiled rather than installed as a weaker filter.
fn cached_program(profile: &Value, cache_dir: &Path) -> Result<Vec<u8>, FilterError> {
    let canonical = serde_json::to_vec(profile).map_err(|e| FilterError::Profile(e.to_string()))?;
    let key = hex::encode(Sha256::digest(&canonical));
    let path = cache_dir.join(format!("{key}.bpf"));
    if let Ok(entry) = fs::read(&path) {
        if entry.len() > 32 {
            let (sum, bpf) = entry.split_at(32);
            if bpf.len().is_multiple_of(8) && Sha256::digest(bpf).as_slice() == sum {
                return Ok(bpf.to_vec());
            }
        }
    }
    let bpf = compile(profile)?;
    fs::create_dir_all(cache_dir)?;
    // Another shim may be writing the same entry: a private temp name, then rename.
    let tmp = cache_dir.join(format!(".{key}.{}", std::process::id()));
    let mut entry = Sha256::digest(&bpf).to_vec();
    entry.extend_from_slice(&bpf);
    let mut f = fs::File::create(&tmp)?;
    io::Write::write_all(&mut f, &entry)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok(bpf)
}

fn action(name: &str, errno: Option<i32>) -> Result<ScmpAction, FilterError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.unwrap_or(libc::EPERM)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.unwrap_or(libc::EPERM) as u16),
        other => return Err(FilterError::Profile(format!("unsupported action {other}"))),
    })
}

fn arch(name: &str) -> Option<ScmpArch> {
    Some(match name {
        "SCMP_ARCH_X86_64" => ScmpArch::X8664,
        "SCMP_ARCH_X86" => ScmpArch::X86,
        "SCMP_ARCH_X32" => ScmpArch::X32,
        "SCMP_ARCH_AARCH64" => ScmpArch::Aarch64,
        "SCMP_ARCH_ARM" => ScmpArch::Arm,
        "SCMP_ARCH_RISCV64" => ScmpArch::Riscv64,
        "SCMP_ARCH_PPC64LE" => ScmpArch::Ppc64Le,
        "SCMP_ARCH_S390X" => ScmpArch::S390X,
        _ => return None,
    })
}

/// Compiles an OCI seccomp profile, with runc's reading of its fields:
/// for SCMP_CMP_MASKED_EQ `value` is the mask and `valueTwo` the datum.
pub fn compile(profile: &Value) -> Result<Vec<u8>, FilterError> {
    let errno = |v: &Value| v.as_i64().map(|e| e as i32);
    let default = action(
        profile["defaultAction"]
            .as_str()
            .unwrap_or("SCMP_ACT_ALLOW"),
        errno(&profile["defaultErrnoRet"]),
    )?;
    let mut ctx = ScmpFilterContext::new(default)?;
    for a in profile["architectures"].as_array().into_iter().flatten() {
        if let Some(a) = a.as_str().and_then(arch) {
            ctx.add_arch(a)?;
        }
    }
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        let act = action(
            rule["action"].as_str().unwrap_or(""),
            errno(&rule["errnoRet"]),
        )?;
        if act == default {
            continue;
        }
        let mut cmps = Vec::new();
        let mut seen = HashSet::new();
        let mut split = false;
        for a in rule["args"].as_array().into_iter().flatten() {
            let index = a["index"].as_u64().unwrap_or(0) as u32;
            let value = a["value"].as_u64().unwrap_or(0);
            let two = a["valueTwo"].as_u64().unwrap_or(0);
            let (op, datum) = match a["op"].as_str().unwrap_or("") {
                "SCMP_CMP_NE" => (ScmpCompareOp::NotEqual, value),
                "SCMP_CMP_LT" => (ScmpCompareOp::Less, value),
                "SCMP_CMP_LE" => (ScmpCompareOp::LessOrEqual, value),
                "SCMP_CMP_EQ" => (ScmpCompareOp::Equal, value),
                "SCMP_CMP_GE" => (ScmpCompareOp::GreaterEqual, value),
                "SCMP_CMP_GT" => (ScmpCompareOp::Greater, value),
                "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(value), two),
                other => {
                    return Err(FilterError::Profile(format!(
                        "unsupported operator {other}"
                    )))
                }
            };
            // libseccomp compares each argument at most once per rule; several
            // conditions on one argument become separate rules, as runc does.
            split |= !seen.insert(index);
            cmps.push(ScmpArgCompare::new(index, op, datum));
        }
        for name in rule["names"].as_array().into_iter().flatten() {
            // Names this libseccomp does not know are syscalls this kernel lacks.
            let Ok(sc) = ScmpSyscall::from_name(name.as_str().unwrap_or("")) else {
                continue;
            };
            if cmps.is_empty() {
                ctx.add_rule(act, sc)?;
            } else if split {
                for c in &cmps {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))?;
                }
            } else {
                ctx.add_rule_conditional(act, sc, &cmps)?;
            }
        }
    }
    let mut out = tempfile::tempfile()?;
    ctx.export_bpf(&out)?;
    let mut bpf = Vec::new();
    use std::io::{Read, Seek};
    out.seek(io::SeekFrom::Start(0))?;
    out.read_to_end(&mut bpf)?;
    Ok(bpf)
}

fn filter_flags(profile: &Value) -> Result<u32, FilterError> {
    let mut flags = 0;
    for f in profile["flags"].as_array().into_iter().flatten() {
        flags |= match f.as_str().unwrap_or("") {
            "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
            "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            other => return Err(FilterError::Profile(format!("unsupported flag {other}"))),
        } as u32;
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile() -> Value {
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["read", "write", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_LT"},
                          {"index": 0, "value": 40, "op": "SCMP_CMP_GT"}]}
            ]
        })
    }

    #[test]
    fn compiles_to_whole_bpf_instructions_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let bpf = cached_program(&profile(), dir.path()).unwrap();
        assert!(!bpf.is_empty() && bpf.len().is_multiple_of(8));
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "one cache entry, no temp files left");
        assert_eq!(cached_program(&profile(), dir.path()).unwrap(), bpf);
        // A damaged entry is recompiled, never installed.
        let entry = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = fs::read(&entry).unwrap();
        bytes.truncate(bytes.len() - 8);
        fs::write(&entry, &bytes).unwrap();
        assert_eq!(cached_program(&profile(), dir.path()).unwrap(), bpf);
        assert_eq!(fs::read(&entry).unwrap().len(), 32 + bpf.len());
        let mut other = profile();
        other["defaultErrnoRet"] = json!(38);
        assert_ne!(cached_program(&other, dir.path()).unwrap(), bpf);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn unknown_action_is_an_error() {
        let mut p = profile();
        p["syscalls"][0]["action"] = json!("SCMP_ACT_BOGUS");
        assert!(compile(&p).is_err());
    }

    #[test]
    fn no_profile_no_program() {
        let dir = tempfile::tempdir().unwrap();
        assert!(program(&Value::Null, dir.path()).unwrap().is_none());
        let mut p = profile();
        p["flags"] = json!(["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]);
        let (bpf, flags) = program(&p, dir.path()).unwrap().unwrap();
        assert!(!bpf.is_empty());
        assert_eq!(flags, libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32);
    }
}
