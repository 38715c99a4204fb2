//! What the engine does to its containers' cgroups once a shim has made
//! them, behind [`CgroupHost`]: [`Linux`] reads and writes the host's
//! hierarchies, [`Recording`] keeps a model of the limits and records every
//! call, for tests without root. The same conformance check runs against
//! both (below).

use super::{CgroupStats, Limits};
use std::collections::BTreeMap;
use std::sync::Mutex;

pub trait CgroupHost: Send + Sync {
    fn stats(&self, cgroup_path: &str) -> CgroupStats;
    /// The processes in the cgroup, sorted.
    fn pids(&self, cgroup_path: &str) -> Vec<i32>;
    fn update(&self, cgroup_path: &str, limits: &Limits) -> std::io::Result<()>;
    /// Kills what is left in the cgroup and removes it.
    fn destroy(&self, cgroup_path: &str);
}

/// The host's cgroup hierarchies (v1, hybrid or v2).
pub struct Linux;

impl CgroupHost for Linux {
    fn stats(&self, cgroup_path: &str) -> CgroupStats {
        super::stats(cgroup_path)
    }
    fn pids(&self, cgroup_path: &str) -> Vec<i32> {
        super::pids(cgroup_path)
    }
    fn update(&self, cgroup_path: &str, limits: &Limits) -> std::io::Result<()> {
        super::update(cgroup_path, limits)
    }
    fn destroy(&self, cgroup_path: &str) {
        super::destroy(cgroup_path)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CgroupCall {
    Stats(String),
    Pids(String),
    Update(String, Box<Limits>),
    Destroy(String),
}

/// A fake that remembers each cgroup's memory limit, so that what an update
/// set shows in the next stats.
#[derive(Default)]
pub struct Recording {
    calls: Mutex<Vec<CgroupCall>>,
    memory: Mutex<BTreeMap<String, i64>>,
}

impl Recording {
    pub fn calls(&self) -> Vec<CgroupCall> {
        self.calls.lock().expect("calls").clone()
    }
    fn record(&self, c: CgroupCall) {
        self.calls.lock().expect("calls").push(c);
    }
}

impl CgroupHost for Recording {
    fn stats(&self, cgroup_path: &str) -> CgroupStats {
        self.record(CgroupCall::Stats(cgroup_path.into()));
        CgroupStats {
            mem_limit: self
                .memory
                .lock()
                .expect("memory")
                .get(cgroup_path)
                .map(|m| *m as u64),
            ..CgroupStats::default()
        }
    }
    fn pids(&self, cgroup_path: &str) -> Vec<i32> {
        self.record(CgroupCall::Pids(cgroup_path.into()));
        Vec::new()
    }
    fn update(&self, cgroup_path: &str, limits: &Limits) -> std::io::Result<()> {
        self.record(CgroupCall::Update(
            cgroup_path.into(),
            Box::new(limits.clone()),
        ));
        if let Some(m) = limits.memory {
            self.memory
                .lock()
                .expect("memory")
                .insert(cgroup_path.into(), m);
        }
        Ok(())
    }
    fn destroy(&self, cgroup_path: &str) {
        self.record(CgroupCall::Destroy(cgroup_path.into()));
        self.memory.lock().expect("memory").remove(cgroup_path);
    }
}

/// What both implementations must do with an existing, empty cgroup.
#[cfg(test)]
pub(crate) fn conformance(h: &dyn CgroupHost, cgroup_path: &str) {
    assert!(h.pids(cgroup_path).is_empty());
    let limits = Limits {
        memory: Some(64 << 20),
        ..Limits::default()
    };
    h.update(cgroup_path, &limits).expect("update");
    assert_eq!(h.stats(cgroup_path).mem_limit, Some(64 << 20));
    h.destroy(cgroup_path);
    assert_eq!(h.stats(cgroup_path).mem_limit, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_conforms() {
        let r = Recording::default();
        conformance(&r, "/berth/conf");
        let calls = r.calls();
        assert_eq!(calls.len(), 5);
        assert!(
            matches!(&calls[1], CgroupCall::Update(p, l) if p == "/berth/conf" && l.memory == Some(64 << 20))
        );
        assert_eq!(calls[3], CgroupCall::Destroy("/berth/conf".into()));
    }

    /// The host's hierarchies, as root: a cgroup made as the shim makes it.
    #[test]
    fn linux_conforms() {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let path = format!("/berth-conformance-{}", std::process::id());
        for c in ["memory", "pids", "cpu"] {
            let _ = std::fs::create_dir_all(super::super::dir(c, &path));
        }
        conformance(&Linux, &path);
        for c in ["memory", "pids", "cpu"] {
            assert!(!super::super::dir(c, &path).exists(), "{c} left behind");
        }
    }
}
