//! The build cache: image ids by step key in `<data-root>/build/cache.json`,
//! or, with `--cache-from`, the history of the named images.

use super::ImageState;
use crate::{EngineError, Result};
use berth_api::History;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The build cache: step key → image id, kept across daemon restarts.
pub(super) struct Cache {
    pub(super) path: PathBuf,
    pub(super) map: BTreeMap<String, String>,
    /// `--cache-from` images. When there are any, they are the cache: a
    /// step hits when one of them was built from the same image by the same
    /// step (its history says so), as the classic builder does.
    pub(super) sources: Vec<berth_store::Image>,
}

/// A step found in a `--cache-from` image: its history entry and, for a
/// step with a layer, that layer's diff id.
pub(super) struct SourceHit {
    pub(super) entry: History,
    pub(super) diff_id: Option<String>,
}

impl Cache {
    pub(super) fn load(data_root: &Path) -> Cache {
        let path = data_root.join("build/cache.json");
        let map = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Cache {
            path,
            map,
            sources: Vec::new(),
        }
    }

    /// The local cache entry for `key`, unless `--cache-from` images stand
    /// in for the local cache.
    pub(super) fn local(
        &self,
        store: &berth_store::Store,
        key: &str,
    ) -> Option<berth_store::Image> {
        if !self.sources.is_empty() {
            return None;
        }
        self.map.get(key).and_then(|id| store.get(id).ok())
    }

    pub(super) fn source_hit(
        &self,
        parent: &ImageState,
        created_by: &str,
        empty: bool,
    ) -> Option<SourceHit> {
        let (ph, pd) = (&parent.config.history, &parent.config.rootfs.diff_ids);
        self.sources.iter().find_map(|s| {
            let (h, d) = (&s.config.history, &s.config.rootfs.diff_ids);
            let e = h.get(ph.len())?;
            let fits = h.starts_with(ph)
                && d.starts_with(pd)
                && e.created_by.as_deref() == Some(created_by)
                && e.empty_layer == empty;
            if !fits {
                return None;
            }
            let diff_id = match empty {
                true => None,
                false => Some(d.get(pd.len())?.clone()),
            };
            Some(SourceHit {
                entry: e.clone(),
                diff_id,
            })
        })
    }
    pub(super) fn put(&mut self, key: String, id: &str) -> Result<()> {
        self.map.insert(key, id.to_string());
        let bytes =
            serde_json::to_vec(&self.map).map_err(|e| EngineError::Internal(e.to_string()))?;
        berth_store::fsutil::write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}
