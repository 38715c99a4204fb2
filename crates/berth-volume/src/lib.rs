//! Local volumes: `<data-root>/volumes/<name>/_data`, with their options and
//! labels in `<name>/meta.json`. Driver options follow Docker's `local`
//! driver: `type=tmpfs` (a tmpfs mounted while containers use it) or
//! `type=none,o=bind,device=/path` (a host directory).

use berth_util::fs::{remove_tree, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The label dockerd puts on volumes made without a name.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub name: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// Made for one container (`-v /path`, an image's VOLUME).
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub meta: Meta,
    /// Where containers bind it from.
    pub mountpoint: PathBuf,
}

pub struct VolumeStore {
    root: PathBuf,
    /// Serialises create/remove so that a name is made once.
    lock: Mutex<()>,
}

/// Docker's rule for volume names.
pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && n.len() >= 2
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl VolumeStore {
    pub fn open(data_root: &Path) -> Result<Self, VolumeError> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            lock: Mutex::new(()),
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates a volume, or returns the existing one of that name (as Docker).
    /// Makes a volume (an unnamed one gets a random name and is anonymous).
    pub fn create(
        &self,
        name: Option<&str>,
        options: HashMap<String, String>,
        labels: HashMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume, VolumeError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) if !valid_name(n) => {
                return Err(VolumeError::Invalid(format!(
                    "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                )))
            }
            Some(n) => n.to_string(),
            None => hex::encode(rand::random::<[u8; 32]>()),
        };
        // dockerd's local driver rules: known keys, and type, device and o
        // only together (o needs both, each of type and device the other).
        let bad = |why: String| Err(VolumeError::Invalid(format!("create {name}: {why}")));
        for k in options.keys() {
            if !matches!(k.as_str(), "type" | "o" | "device" | "size") {
                return bad(format!("invalid option: {k:?}"));
            }
        }
        for (opt, needs) in [
            ("device", &["type"][..]),
            ("type", &["device"][..]),
            ("o", &["device", "type"][..]),
        ] {
            if options.contains_key(opt) {
                if let Some(missing) = needs.iter().find(|n| !options.contains_key(**n)) {
                    return bad(format!("missing required option: {missing:?}"));
                }
            }
        }
        // Sizes are quotas to dockerd; here a tmpfs volume's size is the
        // only kind there is.
        if options.contains_key("size") && options.get("type").map(String::as_str) != Some("tmpfs")
        {
            return bad("quota size requested but no quota support".into());
        }
        if let Some(t) = options.get("type") {
            match t.as_str() {
                "tmpfs" => {}
                "none" => {
                    let dev = options.get("device").map(String::as_str).unwrap_or("");
                    if !options
                        .get("o")
                        .is_some_and(|o| o.split(',').any(|x| x == "bind"))
                        || !Path::new(dev).is_dir()
                    {
                        return Err(VolumeError::Invalid(format!(
                            "invalid volume options: type=none needs o=bind and an existing device directory ({dev})"
                        )));
                    }
                }
                other => {
                    return Err(VolumeError::Invalid(format!(
                        "unsupported volume type {other:?}: use tmpfs or none"
                    )))
                }
            }
        }
        let _g = self.lock.lock().expect("volume lock");
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let dir = self.dir(&name);
        std::fs::create_dir_all(dir.join("_data"))?;
        let mut labels = labels;
        if anonymous {
            // dockerd's mark, which `volume prune` and clients filter on.
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        let meta = Meta {
            name: name.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels: labels.into_iter().collect(),
            options: options.into_iter().collect(),
            anonymous,
        };
        write_atomic(
            &dir.join("meta.json"),
            &serde_json::to_vec(&meta).map_err(|e| VolumeError::Invalid(e.to_string()))?,
        )?;
        self.get(&name)
    }

    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let dir = self.dir(name);
        let meta: Meta = std::fs::read(dir.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
        let mountpoint = match (
            meta.options.get("type").map(String::as_str),
            meta.options.get("device"),
        ) {
            (Some("none"), Some(dev)) => PathBuf::from(dev),
            _ => dir.join("_data"),
        };
        Ok(Volume { meta, mountpoint })
    }

    pub fn list(&self) -> Vec<Volume> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return vec![];
        };
        let mut v: Vec<Volume> = rd
            .flatten()
            .filter_map(|e| self.get(&e.file_name().to_string_lossy()).ok())
            .collect();
        v.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        v
    }

    /// Removes a volume and its data (never a bind volume's device directory).
    pub fn remove(&self, name: &str) -> Result<u64, VolumeError> {
        let _g = self.lock.lock().expect("volume lock");
        self.get(name)?;
        let dir = self.dir(name);
        let size = dir_size(&dir.join("_data"));
        let _ = nix::mount::umount2(&dir.join("_data"), nix::mount::MntFlags::MNT_DETACH);
        // Renamed first: a crash mid-delete never leaves half a volume under its name.
        let trash = self
            .root
            .join(format!(".trash-{}", hex::encode(rand::random::<[u8; 8]>())));
        std::fs::rename(&dir, &trash)?;
        remove_tree(&trash)?;
        Ok(size)
    }

    /// For a tmpfs volume: mounts it if nothing has yet.
    pub fn activate(&self, v: &Volume) -> Result<(), VolumeError> {
        if v.meta.options.get("type").map(String::as_str) != Some("tmpfs") {
            return Ok(());
        }
        let target = &v.mountpoint;
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|s| {
                s.lines()
                    .any(|l| l.split(' ').nth(4) == Some(&*target.to_string_lossy()))
            })
            .unwrap_or(false);
        if mounted {
            return Ok(());
        }
        let mut opts = v.meta.options.get("o").cloned().unwrap_or_default();
        if let Some(size) = v.meta.options.get("size") {
            if !opts.is_empty() {
                opts.push(',');
            }
            opts.push_str(&format!("size={size}"));
        }
        nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()).filter(|o| !o.is_empty()),
        )
        .map_err(|e| VolumeError::Invalid(format!("mounting tmpfs volume {}: {e}", v.meta.name)))
    }
}

pub use berth_util::fs::dir_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(d.path()).unwrap();
        let v = s
            .create(
                Some("data"),
                HashMap::new(),
                [("a".to_string(), "1".to_string())].into(),
                false,
            )
            .unwrap();
        assert!(v.mountpoint.ends_with("volumes/data/_data") && v.mountpoint.is_dir());
        assert_eq!(
            s.create(Some("data"), HashMap::new(), HashMap::new(), false)
                .unwrap()
                .meta
                .labels["a"],
            "1"
        );
        let anon = s
            .create(None, HashMap::new(), HashMap::new(), true)
            .unwrap();
        assert_eq!(anon.meta.name.len(), 64);
        assert_eq!(s.list().len(), 2);
        std::fs::write(v.mountpoint.join("f"), "12345").unwrap();
        assert_eq!(s.remove("data").unwrap(), 5);
        assert!(matches!(s.get("data"), Err(VolumeError::NotFound(_))));
        assert_eq!(s.list().len(), 1);
    }

    #[test]
    fn names_and_options_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(d.path()).unwrap();
        for bad in ["../x", "a", "/abs", "sp ace"] {
            assert!(
                s.create(Some(bad), HashMap::new(), HashMap::new(), false)
                    .is_err(),
                "{bad}"
            );
        }
        let opt = |k: &str, v: &str| -> HashMap<String, String> {
            [(k.to_string(), v.to_string())].into()
        };
        assert!(s
            .create(Some("v1"), opt("bogus", "1"), HashMap::new(), false)
            .is_err());
        assert!(s
            .create(Some("v1"), opt("type", "nfs"), HashMap::new(), false)
            .is_err());
        let mut bind = opt("type", "none");
        bind.insert("o".into(), "bind".into());
        bind.insert("device".into(), d.path().display().to_string());
        let v = s
            .create(Some("hostdir"), bind, HashMap::new(), false)
            .unwrap();
        assert_eq!(v.mountpoint, d.path());
        s.remove("hostdir").unwrap();
        assert!(d.path().exists(), "a bind volume's directory is the user's");
    }
}
