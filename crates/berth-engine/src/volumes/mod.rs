//! Volumes and mounts: `-v`, `--mount`, `--tmpfs`, `--volumes-from`, an
//! image's VOLUMEs, the `/volumes` endpoints, and Docker's copy-up of image
//! content into a new volume.

use crate::record::Record;
use crate::{Engine, EngineError, Kind, Result};
use berth_api::{ContainerConfig, HostConfig, VolumeCreateRequest};
use berth_runtime::spec::UserMount;
use berth_volume::{Volume, VolumeError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// A mount as the container record keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountPoint {
    /// `volume`, `bind` or `tmpfs`.
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    /// Host path (binds), empty otherwise.
    #[serde(default)]
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// As the user wrote it (`ro`, `rw`, `z`, ``).
    #[serde(default)]
    pub mode: String,
    /// `nocopy`: no copy-up of image content into a new volume.
    #[serde(default)]
    pub no_copy: bool,
    /// Made for this container alone; `rm -v` removes it.
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub tmpfs_options: Vec<String>,
    /// `volume-subpath`: the directory of the volume that is mounted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subpath: String,
}

/// Go's `filepath.IsLocal`: relative, non-empty, never above its root.
fn is_local(p: &str) -> bool {
    let mut depth = 0i32;
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return false;
        }
    }
    !p.is_empty() && !p.starts_with('/')
}

impl From<VolumeError> for EngineError {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::NotFound(_) => EngineError::NotFound(e.to_string()),
            VolumeError::Invalid(_) => EngineError::BadRequest(e.to_string()),
            VolumeError::Io(e) => EngineError::Internal(e.to_string()),
        }
    }
}

fn clean_dest(d: &str) -> Result<String> {
    if !d.starts_with('/') {
        return Err(EngineError::BadRequest(format!(
            "invalid mount config: mount path must be absolute: {d}"
        )));
    }
    let cleaned = Path::new(d).components().collect::<std::path::PathBuf>();
    Ok(cleaned.display().to_string())
}

/// `size=64m` style tmpfs options from `--tmpfs /x:size=64m,mode=1777`.
fn tmpfs_opts(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty() && !matches!(*o, "rw" | "ro" | "nosuid" | "nodev" | "noexec"))
        .map(str::to_string)
        .collect()
}

/// A volume as the API shows it.
pub(crate) fn volume_view(v: &Volume) -> berth_api::Volume {
    berth_api::Volume {
        name: v.meta.name.clone(),
        driver: "local".into(),
        mountpoint: v.mountpoint.display().to_string(),
        created_at: v.meta.created_at.clone(),
        labels: v.meta.labels.clone(),
        scope: "local".into(),
        options: Some(v.meta.options.clone()).filter(|o| !o.is_empty()),
        usage_data: None,
    }
}

impl Engine {
    /// `-v SRC:DST[:MODE]`: a bind when SRC is a path (made if missing, as
    /// dockerd does), else a named volume (made if missing).
    fn bind_mount(&self, b: &str) -> Result<MountPoint> {
        let parts: Vec<&str> = b.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, m] => (*s, *d, *m),
            _ => {
                return Err(EngineError::BadRequest(format!(
                    "invalid volume specification: '{b}'"
                )))
            }
        };
        let flags: Vec<&str> = mode.split(',').filter(|f| !f.is_empty()).collect();
        for f in &flags {
            if !matches!(
                *f,
                "ro" | "rw"
                    | "z"
                    | "Z"
                    | "nocopy"
                    | "shared"
                    | "slave"
                    | "private"
                    | "rshared"
                    | "rslave"
                    | "rprivate"
            ) {
                return Err(EngineError::BadRequest(format!("invalid mode: {f}")));
            }
        }
        let rw = !flags.contains(&"ro");
        let dst = clean_dest(dst)?;
        if src.starts_with('/') {
            // `-v /host:/ctr` makes a missing host directory, as dockerd does.
            std::fs::create_dir_all(src).map_err(|e| {
                EngineError::BadRequest(format!(
                    "error while creating mount source path '{src}': {e}"
                ))
            })?;
            Ok(MountPoint {
                kind: "bind".into(),
                source: src.into(),
                destination: dst,
                rw,
                mode: mode.into(),
                ..Default::default()
            })
        } else {
            let v = self
                .volumes
                .create(Some(src), HashMap::new(), HashMap::new(), false)?;
            Ok(MountPoint {
                kind: "volume".into(),
                name: v.meta.name,
                destination: dst,
                rw,
                mode: mode.into(),
                no_copy: flags.contains(&"nocopy"),
                ..Default::default()
            })
        }
    }

    /// One `--mount` (HostConfig.Mounts entry).
    fn api_mount(&self, m: &berth_api::MountRequest) -> Result<MountPoint> {
        let dst = clean_dest(&m.target)?;
        match m.kind.as_str() {
            "bind" => {
                if !Path::new(&m.source).exists() {
                    return Err(EngineError::BadRequest(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                Ok(MountPoint {
                    kind: "bind".into(),
                    source: m.source.clone(),
                    destination: dst,
                    rw: !m.read_only,
                    ..Default::default()
                })
            }
            "volume" => {
                let vo = m.volume_options.clone().unwrap_or_default();
                let opts = vo.driver_config.and_then(|d| d.options).unwrap_or_default();
                let anonymous = m.source.is_empty();
                let bad = |why: &str| {
                    Err(EngineError::BadRequest(format!(
                        "invalid mount config for type \"volume\": {why}"
                    )))
                };
                if !vo.subpath.is_empty() {
                    if anonymous {
                        return bad("must not set Subpath when using anonymous volumes");
                    }
                    if !is_local(&vo.subpath) {
                        return bad("subpath must be a relative path within the volume");
                    }
                }
                let subpath = vo.subpath.clone();
                let v = self.volumes.create(
                    Some(&m.source)
                        .filter(|s| !s.is_empty())
                        .map(|s| s.as_str()),
                    opts,
                    vo.labels.unwrap_or_default(),
                    anonymous,
                )?;
                Ok(MountPoint {
                    kind: "volume".into(),
                    name: v.meta.name,
                    destination: dst,
                    rw: !m.read_only,
                    no_copy: vo.no_copy,
                    anonymous,
                    subpath,
                    ..Default::default()
                })
            }
            "tmpfs" => {
                let mut o = Vec::new();
                if let Some(t) = &m.tmpfs_options {
                    if t.size_bytes > 0 {
                        o.push(format!("size={}", t.size_bytes));
                    }
                    if t.mode != 0 {
                        o.push(format!("mode={:o}", t.mode));
                    }
                }
                Ok(MountPoint {
                    kind: "tmpfs".into(),
                    destination: dst,
                    rw: !m.read_only,
                    tmpfs_options: o,
                    ..Default::default()
                })
            }
            other => Err(EngineError::BadRequest(format!(
                "invalid mount config: mount type unknown: {other:?}"
            ))),
        }
    }

    /// Resolves every mount a new container asks for; creates the named and
    /// anonymous volumes it needs.
    pub(crate) fn resolve_mounts(
        &self,
        config: &ContainerConfig,
        hc: &HostConfig,
    ) -> Result<Vec<MountPoint>> {
        let mut out: Vec<MountPoint> = Vec::new();
        let push = |m: MountPoint, out: &mut Vec<MountPoint>| -> Result<()> {
            if out.iter().any(|o| o.destination == m.destination) {
                return Err(EngineError::BadRequest(format!(
                    "Duplicate mount point: {}",
                    m.destination
                )));
            }
            out.push(m);
            Ok(())
        };
        for b in hc.binds.iter().flatten() {
            push(self.bind_mount(b)?, &mut out)?;
        }
        for m in hc.mounts.iter().flatten() {
            push(self.api_mount(m)?, &mut out)?;
        }
        for (dst, opts) in hc.tmpfs.iter().flatten() {
            let dst = clean_dest(dst)?;
            push(
                MountPoint {
                    kind: "tmpfs".into(),
                    destination: dst,
                    rw: !opts.split(',').any(|o| o == "ro"),
                    tmpfs_options: tmpfs_opts(opts),
                    ..Default::default()
                },
                &mut out,
            )?;
        }
        for from in hc.volumes_from.iter().flatten() {
            let (name, mode) = from.split_once(':').unwrap_or((from, ""));
            let c = self.find(name)?;
            let other = c.rec.read().expect("rec").mounts.clone();
            for mut m in other {
                if out.iter().any(|o| o.destination == m.destination) {
                    continue;
                }
                match mode {
                    "ro" => m.rw = false,
                    "rw" => m.rw = true,
                    _ => {}
                }
                // Shared now: the other container's `rm -v` must not take it.
                m.anonymous = false;
                out.push(m);
            }
        }
        // Anonymous volumes for `-v /path` and the image's VOLUMEs.
        let mut vols: Vec<&String> = config.volumes.iter().flat_map(|v| v.keys()).collect();
        vols.sort();
        for path in vols {
            let dst = clean_dest(path)?;
            if out.iter().any(|o| o.destination == dst) {
                continue;
            }
            let v = self
                .volumes
                .create(None, HashMap::new(), HashMap::new(), true)?;
            out.push(MountPoint {
                kind: "volume".into(),
                name: v.meta.name,
                destination: dst,
                rw: true,
                anonymous: true,
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// The runtime mounts of a starting container; fills new, empty volumes
    /// with what the image has at their mount point (Docker's copy-up).
    pub(crate) fn prepare_mounts(&self, rec: &Record, rootfs: &Path) -> Result<Vec<UserMount>> {
        let mut out = Vec::new();
        for m in &rec.mounts {
            match m.kind.as_str() {
                "volume" => {
                    let v = self.volumes.get(&m.name)?;
                    self.volumes.activate(&v)?;
                    let source = if m.subpath.is_empty() {
                        if !m.no_copy {
                            copy_up(rootfs, &m.destination, &v.mountpoint)?;
                        }
                        v.mountpoint.clone()
                    } else {
                        // Resolved inside the volume: a link in it cannot
                        // lead the mount out.
                        let p = crate::rootfs::secure_join(&v.mountpoint, &m.subpath)?;
                        if !p.is_dir() && !p.is_file() {
                            return Err(EngineError::BadRequest(format!(
                                "error while mounting volume '{}': cannot access path {}: no such file or directory",
                                m.name, m.subpath
                            )));
                        }
                        p
                    };
                    out.push(UserMount {
                        source: Some(source),
                        destination: m.destination.clone(),
                        readonly: !m.rw,
                        ..Default::default()
                    });
                }
                "bind" => out.push(UserMount {
                    source: Some(m.source.clone().into()),
                    destination: m.destination.clone(),
                    readonly: !m.rw,
                    ..Default::default()
                }),
                _ => out.push(UserMount {
                    source: None,
                    destination: m.destination.clone(),
                    readonly: !m.rw,
                    tmpfs_options: m.tmpfs_options.clone(),
                }),
            }
        }
        Ok(out)
    }

    /// The container's mounts as inspect and list show them.
    pub(crate) fn mount_points(&self, rec: &Record) -> Vec<berth_api::MountPoint> {
        rec.mounts
            .iter()
            .map(|m| match m.kind.as_str() {
                "volume" => berth_api::MountPoint {
                    kind: "volume".into(),
                    name: m.name.clone(),
                    source: self
                        .volumes
                        .get(&m.name)
                        .map(|v| v.mountpoint.display().to_string())
                        .unwrap_or_default(),
                    destination: m.destination.clone(),
                    driver: "local".into(),
                    mode: m.mode.clone(),
                    rw: m.rw,
                    propagation: String::new(),
                },
                "bind" => berth_api::MountPoint {
                    kind: "bind".into(),
                    source: m.source.clone(),
                    destination: m.destination.clone(),
                    mode: m.mode.clone(),
                    rw: m.rw,
                    propagation: "rprivate".into(),
                    ..berth_api::MountPoint::default()
                },
                _ => berth_api::MountPoint {
                    kind: "tmpfs".into(),
                    destination: m.destination.clone(),
                    rw: m.rw,
                    ..berth_api::MountPoint::default()
                },
            })
            .collect()
    }

    /// Containers (any state) whose mounts name `volume`.
    pub fn volume_users(&self, volume: &str) -> Vec<String> {
        self.containers
            .read()
            .expect("containers")
            .values()
            .filter(|c| {
                c.rec
                    .read()
                    .expect("rec")
                    .mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.name == volume)
            })
            .map(|c| c.id())
            .collect()
    }

    /// `rm -v`: the container's anonymous volumes nothing else uses.
    pub(crate) fn remove_anonymous_volumes(&self, rec: &Record) {
        for m in rec
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && m.anonymous)
        {
            if self.volume_users(&m.name).is_empty() {
                let _ = self.volumes.remove(&m.name);
            }
        }
    }

    // ------------------------------------------------------------ /volumes

    pub fn volume_create(&self, req: VolumeCreateRequest) -> Result<berth_api::Volume> {
        if !req.driver.is_empty() && req.driver != "local" {
            return Err(EngineError::NotFound(format!(
                "error looking up volume plugin {}: plugin \"{}\" not found",
                req.driver, req.driver
            )));
        }
        // Without a name it is anonymous, as dockerd's: `volume prune`
        // takes it without `all`.
        let v = self.volumes.create(
            Some(&req.name)
                .filter(|n| !n.is_empty())
                .map(|n| n.as_str()),
            req.driver_opts.unwrap_or_default(),
            req.labels.unwrap_or_default(),
            req.name.is_empty(),
        )?;
        self.emit_volume(&v.meta.name, "create");
        Ok(volume_view(&v))
    }

    fn emit_volume(&self, name: &str, action: &str) {
        let attrs = crate::events::attributes(&[("driver", "local".to_string())], []);
        self.events.emit("volume", action, name, attrs);
    }

    pub fn volume_inspect(&self, name: &str) -> Result<berth_api::Volume> {
        Ok(volume_view(&self.volumes.get(name)?))
    }

    pub fn volume_list(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<berth_api::VolumeList> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "name" | "label" | "dangling" | "driver") {
                return Err(EngineError::BadRequest(format!("invalid filter '{k}'")));
            }
        }
        let volumes = self
            .volumes
            .list()
            .iter()
            .filter(|v| {
                filters
                    .get("name")
                    .is_none_or(|ns| ns.iter().any(|n| v.meta.name.contains(n.as_str())))
                    && filters
                        .get("driver")
                        .is_none_or(|d| d.iter().any(|d| d == "local"))
                    && filters.get("label").is_none_or(|ls| {
                        ls.iter().all(|l| match l.split_once('=') {
                            Some((k, val)) => v.meta.labels.get(k).is_some_and(|x| x == val),
                            None => v.meta.labels.contains_key(l.as_str()),
                        })
                    })
                    && filters
                        .get("dangling")
                        .and_then(|d| d.first())
                        .is_none_or(|d| {
                            let dangling = self.volume_users(&v.meta.name).is_empty();
                            (d == "true" || d == "1") == dangling
                        })
            })
            .map(volume_view)
            .collect();
        Ok(berth_api::VolumeList {
            volumes,
            warnings: Vec::new(),
        })
    }

    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        match self.volumes.remove(name) {
            Err(VolumeError::NotFound(_)) if force => Ok(()),
            Err(VolumeError::NotFound(_)) => Err(EngineError::missing(Kind::Volume, name)),
            r => {
                r.map_err(EngineError::from)?;
                self.emit_volume(name, "destroy");
                Ok(())
            }
        }
    }

    /// `POST /volumes/prune`: unused anonymous volumes, or with `all=true` every unused one.
    pub fn volume_prune(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<(Vec<String>, u64)> {
        let filter = crate::prune::PruneFilter::parse(filters, &["all"])?;
        let all = filters
            .get("all")
            .and_then(|v| v.first())
            .is_some_and(|a| a == "true" || a == "1");
        let mut deleted = Vec::new();
        let mut space = 0;
        for v in self.volumes.list() {
            if (all || v.meta.anonymous)
                && filter.matches(
                    crate::prune::rfc3339_unix(&v.meta.created_at),
                    &v.meta.labels,
                )
                && self.volume_users(&v.meta.name).is_empty()
            {
                if let Ok(n) = self.volumes.remove(&v.meta.name) {
                    space += n;
                    deleted.push(v.meta.name.clone());
                }
            }
        }
        Ok((deleted, space))
    }
}

/// Fills an empty volume with the image's content at `dest`, keeping owners,
/// modes and links.
fn copy_up(rootfs: &Path, dest: &str, volume: &Path) -> Result<()> {
    let empty = std::fs::read_dir(volume)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    let src = crate::rootfs::secure_join(rootfs, dest)?;
    let Ok(meta) = std::fs::symlink_metadata(&src) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    copy_dir_contents(&src, volume)?;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(
        volume,
        std::fs::Permissions::from_mode(meta.mode() & 0o7777),
    )?;
    std::os::unix::fs::lchown(volume, Some(meta.uid()), Some(meta.gid()))?;
    Ok(())
}

/// Iterative: an image can nest directories deeper than berthd's stack.
fn copy_dir_contents(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    // Directories get their modes once everything below them is written.
    let mut dirs = Vec::new();
    while let Some((src, dst)) = pending.pop() {
        for e in std::fs::read_dir(&src)? {
            let e = e?;
            let from = e.path();
            let to = dst.join(e.file_name());
            let m = std::fs::symlink_metadata(&from)?;
            let ft = m.file_type();
            if ft.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            } else if ft.is_dir() {
                std::fs::create_dir(&to)?;
                dirs.push((to.clone(), m.mode() & 0o7777));
                pending.push((from, to.clone()));
            } else if ft.is_file() {
                std::fs::copy(&from, &to)?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            } else {
                continue;
            }
            std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid()))?;
        }
    }
    for (d, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
