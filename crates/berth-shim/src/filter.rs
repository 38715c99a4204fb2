//! Seccomp without recompiling it for every container.
//!
//! Compiling Docker's profile (three architectures, ~370 rules) with
//! libseccomp costs 10–20 ms. Like crun, we compile a profile once, keep the
//! BPF in a cache named by the profile's sha256, and load the cached program
//! in each new process just before exec (see linux/process.rs for the order).

use berth_runtime::oci::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
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
pub fn program(
    profile: Option<&LinuxSeccomp>,
    cache_dir: &Path,
) -> Result<Option<(Vec<u8>, u32)>, FilterError> {
    let Some(profile) = profile else {
        return Ok(None);
    };
    let bpf = cached_program(profile, cache_dir)?;
    Ok(Some((bpf, filter_flags(profile))))
}

/// Cache entries are `sha256(program) ‖ program`, so a torn or altered file
/// is recompiled rather than installed as a weaker filter.
fn cached_program(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Vec<u8>, FilterError> {
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

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, FilterError> {
    use LinuxSeccompAction as A;
    let errno = errno.map_or(libc::EPERM, |e| e as i32);
    Ok(match a {
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActErrno => ScmpAction::Errno(errno),
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActTrace => ScmpAction::Trace(errno as u16),
        A::ScmpActNotify => {
            return Err(FilterError::Profile(
                "unsupported action SCMP_ACT_NOTIFY".into(),
            ))
        }
    })
}

fn arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        _ => return None,
    })
}

/// Compiles an OCI seccomp profile, with runc's reading of its fields:
/// for SCMP_CMP_MASKED_EQ `value` is the mask and `valueTwo` the datum.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<u8>, FilterError> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default)?;
    for a in profile.architectures().iter().flatten() {
        if let Some(a) = arch(*a) {
            ctx.add_arch(a)?;
        }
    }
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let mut cmps = Vec::new();
        let mut seen = HashSet::new();
        let mut split = false;
        for a in rule.args().iter().flatten() {
            use LinuxSeccompOperator as O;
            let index = a.index() as u32;
            let value = a.value();
            let (op, datum) = match a.op() {
                O::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
                O::ScmpCmpLt => (ScmpCompareOp::Less, value),
                O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
                O::ScmpCmpEq => (ScmpCompareOp::Equal, value),
                O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
                O::ScmpCmpGt => (ScmpCompareOp::Greater, value),
                O::ScmpCmpMaskedEq => (
                    ScmpCompareOp::MaskedEqual(value),
                    a.value_two().unwrap_or(0),
                ),
            };
            // libseccomp compares each argument at most once per rule; several
            // conditions on one argument become separate rules, as runc does.
            split |= !seen.insert(index);
            cmps.push(ScmpArgCompare::new(index, op, datum));
        }
        for name in rule.names() {
            // Names this libseccomp does not know are syscalls this kernel lacks.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
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

fn filter_flags(profile: &LinuxSeccomp) -> u32 {
    use LinuxSeccompFilterFlag as F;
    let mut flags = 0;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            F::SeccompFilterFlagWaitKillableRecv => libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        } as u32;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    fn profile() -> LinuxSeccomp {
        parse(profile_json())
    }

    fn profile_json() -> Value {
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
        let mut other = profile_json();
        other["defaultErrnoRet"] = json!(38);
        assert_ne!(cached_program(&parse(other), dir.path()).unwrap(), bpf);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn unknown_and_unsupported_actions_are_errors() {
        let mut p = profile_json();
        p["syscalls"][0]["action"] = json!("SCMP_ACT_BOGUS");
        assert!(serde_json::from_value::<LinuxSeccomp>(p.clone()).is_err());
        p["syscalls"][0]["action"] = json!("SCMP_ACT_NOTIFY");
        assert!(compile(&parse(p)).is_err());
    }

    #[test]
    fn no_profile_no_program() {
        let dir = tempfile::tempdir().unwrap();
        assert!(program(None, dir.path()).unwrap().is_none());
        let mut p = profile_json();
        p["flags"] = json!(["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]);
        let (bpf, flags) = program(Some(&parse(p)), dir.path()).unwrap().unwrap();
        assert!(!bpf.is_empty());
        assert_eq!(flags, libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32);
    }
}
