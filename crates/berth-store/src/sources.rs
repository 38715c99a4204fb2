//! Where layers live at registries: for each layer (diff id), the
//! compressed blobs it was pulled as or pushed as, and the repositories
//! that hold them, so that a push can skip or mount what a registry has
//! (dockerd's v2 metadata).

use crate::fsutil::write_atomic;
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSource {
    /// The blob's digest at the registry (compressed).
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// `domain/repo`, as the registry names the repository holding it.
    pub repo: String,
}

/// The most sources kept per layer: enough for a few registries.
const KEEP: usize = 8;

pub struct Sources {
    path: PathBuf,
    map: Mutex<BTreeMap<String, Vec<LayerSource>>>,
}

impl Sources {
    pub(crate) fn open(path: PathBuf) -> Result<Sources, StoreError> {
        let map = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Sources {
            path,
            map: Mutex::new(map),
        })
    }

    /// Where layer `diff_id` is known to be, newest first.
    pub fn of(&self, diff_id: &str) -> Vec<LayerSource> {
        self.map
            .lock()
            .expect("sources lock")
            .get(diff_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn add(&self, diff_id: &str, src: LayerSource) -> Result<(), StoreError> {
        let mut map = self.map.lock().expect("sources lock");
        let v = map.entry(diff_id.to_string()).or_default();
        v.retain(|s| !(s.digest == src.digest && s.repo == src.repo));
        v.insert(0, src);
        v.truncate(KEEP);
        write_atomic(&self.path, &serde_json::to_vec(&*map)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_deduplicated_and_kept_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sources.json");
        let s = Sources::open(p.clone()).unwrap();
        let src = |d: &str, r: &str| LayerSource {
            digest: d.into(),
            size: 1,
            media_type: "m".into(),
            repo: r.into(),
        };
        s.add("sha256:l", src("sha256:a", "reg/x")).unwrap();
        s.add("sha256:l", src("sha256:b", "reg/y")).unwrap();
        s.add("sha256:l", src("sha256:a", "reg/x")).unwrap();
        let got: Vec<String> = s.of("sha256:l").into_iter().map(|s| s.repo).collect();
        assert_eq!(got, vec!["reg/x", "reg/y"]);
        assert_eq!(Sources::open(p).unwrap().of("sha256:l").len(), 2);
    }
}
