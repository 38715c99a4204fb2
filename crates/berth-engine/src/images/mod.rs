//! Image operations that need the engine's view of containers (rmi) or map
//! store types to the API's JSON.

pub mod commit;
pub mod pull;
pub mod push;
pub mod registry;

use crate::{Engine, EngineError, Result};
use berth_api::{
    GraphDriver, HistoryItem, ImageDeleteItem, ImageInspect, ImageMetadata, ImageRootFs,
    ImageRunConfig, ImageSummary,
};
use berth_store::{DeleteItem, Image, LoadReport};
use serde_json::json;
use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

/// What `POST /images/create?fromSrc=-` asks of an import, checked before
/// its body is read.
pub struct ImportOptions {
    reference: Option<String>,
    config: ImageRunConfig,
    message: Option<String>,
}

impl ImportOptions {
    pub fn new(
        reference: Option<String>,
        changes: &[String],
        message: Option<String>,
    ) -> Result<Self> {
        if let Some(r) = &reference {
            berth_store::reference::normalize(r)?;
        }
        let mut config = ImageRunConfig::default();
        apply_changes(&mut config, changes)?;
        Ok(Self {
            reference,
            config,
            message,
        })
    }
}

fn words_or_json(rest: &str) -> Vec<String> {
    let t = rest.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

/// Applies `import -c` / `commit -c` Dockerfile instructions to a config.
pub fn apply_changes(cfg: &mut ImageRunConfig, changes: &[String]) -> Result<()> {
    for ch in changes {
        let ch = ch.trim();
        if ch.is_empty() {
            continue;
        }
        let (inst, rest) = ch.split_once(char::is_whitespace).unwrap_or((ch, ""));
        let rest = rest.trim();
        match inst.to_ascii_uppercase().as_str() {
            "CMD" => cfg.cmd = Some(words_or_json(rest)),
            "ENTRYPOINT" => cfg.entrypoint = Some(words_or_json(rest)),
            "WORKDIR" => cfg.working_dir = rest.to_string(),
            "USER" => cfg.user = rest.to_string(),
            "STOPSIGNAL" => cfg.stop_signal = Some(rest.to_string()),
            "ENV" => {
                let pairs: Vec<String> = if rest.contains('=') {
                    rest.split_whitespace().map(str::to_string).collect()
                } else {
                    let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    vec![format!("{k}={}", v.trim())]
                };
                let env = cfg.env.take().unwrap_or_default();
                cfg.env = Some(crate::merge_env(&env, &pairs));
            }
            "LABEL" => {
                let labels = cfg.labels.get_or_insert_with(HashMap::new);
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    labels.insert(k.trim_matches('"').into(), v.trim_matches('"').into());
                }
            }
            "EXPOSE" => {
                let ports = cfg.exposed_ports.get_or_insert_with(HashMap::new);
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    ports.insert(p, json!({}));
                }
            }
            "VOLUME" => {
                let vols = cfg.volumes.get_or_insert_with(HashMap::new);
                for v in words_or_json(rest)
                    .into_iter()
                    .filter(|v| v.starts_with('/'))
                {
                    vols.insert(v, json!({}));
                }
            }
            other => {
                return Err(EngineError::BadRequest(format!(
                    "{other} is not a valid change command"
                )))
            }
        }
    }
    Ok(())
}

fn delete_item(i: DeleteItem) -> ImageDeleteItem {
    match i {
        DeleteItem::Untagged(t) => ImageDeleteItem {
            untagged: Some(t),
            deleted: None,
        },
        DeleteItem::Deleted(d) => ImageDeleteItem {
            untagged: None,
            deleted: Some(d),
        },
    }
}

impl Engine {
    pub fn image_summary(&self, img: &Image) -> ImageSummary {
        ImageSummary {
            id: img.id.clone(),
            parent_id: img.parent.clone().unwrap_or_default(),
            repo_tags: img.repo_tags.clone(),
            repo_digests: img.repo_digests.clone(),
            created: img.created_unix(),
            size: img.size as i64,
            shared_size: -1,
            virtual_size: img.size as i64,
            labels: img.config.config.labels.clone().unwrap_or_default(),
            containers: self.image_users(&img.id).len() as i64,
        }
    }

    pub fn images(
        &self,
        all: bool,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<ImageSummary>> {
        for k in filters.keys() {
            if !matches!(
                k.as_str(),
                "dangling" | "label" | "reference" | "before" | "since" | "until"
            ) {
                return Err(EngineError::BadRequest(format!("invalid filter '{k}'")));
            }
        }
        let mut out = Vec::new();
        let list = self.store.list();
        // Untagged parents of other images (build steps) show only with -a, as
        // dockerd hides intermediate images.
        let is_parent = |img: &berth_store::Image| {
            list.iter()
                .any(|o| berth_store::built_on(&o.config, &img.config))
        };
        for mut img in list.clone() {
            if !all && img.repo_tags.is_empty() && is_parent(&img) {
                continue;
            }
            if let Some(d) = filters.get("dangling").and_then(|v| v.first()) {
                if (d == "true") != img.repo_tags.is_empty() {
                    continue;
                }
            }
            if let Some(refs) = filters.get("reference") {
                // As dockerd: only the tags that match are listed.
                img.repo_tags.retain(|t| {
                    refs.iter().any(|r| {
                        let (repo, _) = berth_store::reference::split(t);
                        glob(r, t) || glob(r, repo)
                    })
                });
                if img.repo_tags.is_empty() {
                    continue;
                }
            }
            if let Some(ls) = filters.get("label") {
                let labels = img.config.config.labels.clone().unwrap_or_default();
                let ok = ls.iter().all(|l| match l.split_once('=') {
                    Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                    None => labels.contains_key(l.as_str()),
                });
                if !ok {
                    continue;
                }
            }
            out.push(self.image_summary(&img));
        }
        Ok(out)
    }

    /// `POST /images/prune`: dangling images, or with `dangling=false` every
    /// image no container uses. Returns the delete items and the bytes freed.
    pub fn prune_images(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<(Vec<ImageDeleteItem>, u64)> {
        let filter = crate::prune::PruneFilter::parse(filters, &["dangling"])?;
        let all = filters
            .get("dangling")
            .and_then(|v| v.first())
            .is_some_and(|d| matches!(d.as_str(), "false" | "0"));
        let before = self.store_disk_usage();
        let held = self.held_layers();
        let mut items = Vec::new();
        // Deleting a child can leave its parent prunable: repeat until stable.
        loop {
            let list = self.store.list();
            let has_children = |img: &Image| {
                list.iter()
                    .any(|o| berth_store::built_on(&o.config, &img.config))
            };
            let victims: Vec<&Image> = list
                .iter()
                .filter(|img| all || img.repo_tags.is_empty())
                .filter(|img| !has_children(img))
                .filter(|img| self.image_users(&img.id).is_empty())
                .filter(|img| {
                    let l = img.config.config.labels.clone().unwrap_or_default();
                    filter.matches(img.created_unix() as f64, &l)
                })
                .collect();
            if victims.is_empty() {
                break;
            }
            for img in victims {
                let deleted =
                    self.store
                        .delete(&img.id, true, &|id| self.image_users(id), &held)?;
                items.extend(deleted.into_iter().map(delete_item));
            }
        }
        let after = self.store_disk_usage();
        Ok((items, before.saturating_sub(after)))
    }

    /// Bytes the image store holds on disk (unpacked layers and blobs).
    pub fn store_disk_usage(&self) -> u64 {
        crate::dir_size(&self.data_root().join("layers"))
            + crate::dir_size(&self.data_root().join("content"))
    }

    /// `GET /system/df`.
    pub fn system_df(&self, with_sizes: bool) -> Result<berth_api::DiskUsage> {
        let images = self.images(false, &HashMap::new())?;
        let containers = self.list(true, None, with_sizes, &HashMap::new())?;
        let volumes: Vec<berth_api::Volume> = self
            .volumes
            .list()
            .iter()
            .map(|v| berth_api::Volume {
                usage_data: Some(berth_api::VolumeUsage {
                    size: berth_volume::dir_size(&v.mountpoint) as i64,
                    ref_count: self.volume_users(&v.meta.name).len() as i64,
                }),
                ..crate::volumes::volume_view(v)
            })
            .collect();
        Ok(berth_api::DiskUsage {
            layers_size: self.store_disk_usage() as i64,
            images,
            containers,
            volumes,
            build_cache: Vec::new(),
        })
    }

    /// `POST /build/prune`: forgets the build cache (its images go with `image prune`).
    pub fn prune_build_cache(&self) -> Result<(Vec<String>, u64)> {
        let path = self.data_root().join("build/cache.json");
        let ids: Vec<String> = std::fs::read(&path)
            .ok()
            .and_then(|b| {
                serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&b).ok()
            })
            .map(|m| m.into_keys().collect())
            .unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        Ok((ids, 0))
    }

    pub fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        let img = self.store.get(name)?;
        let dirs = self.store.lower_dirs(&img)?;
        let upper = dirs
            .first()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let lower: Vec<String> = dirs
            .iter()
            .skip(1)
            .map(|d| d.display().to_string())
            .collect();
        let cfg = img.config;
        let comment = cfg.history.last().and_then(|h| h.comment.clone());
        Ok(ImageInspect {
            id: img.id,
            repo_tags: img.repo_tags,
            repo_digests: img.repo_digests.clone(),
            parent: img.parent.unwrap_or_default(),
            comment: comment.unwrap_or_default(),
            created: cfg.created.unwrap_or_default(),
            docker_version: String::new(),
            author: cfg.author.unwrap_or_default(),
            config: cfg.config.into(),
            architecture: cfg.architecture,
            os: cfg.os,
            size: img.size as i64,
            virtual_size: img.size as i64,
            graph_driver: GraphDriver {
                name: "overlay2".into(),
                data: [
                    ("LowerDir", lower.join(":")),
                    ("UpperDir", upper),
                    ("MergedDir", String::new()),
                    ("WorkDir", String::new()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            },
            root_fs: ImageRootFs {
                kind: "layers".into(),
                layers: cfg.rootfs.diff_ids,
            },
            metadata: ImageMetadata {
                last_tag_time: crate::ZERO_TIME.into(),
            },
            ..ImageInspect::default()
        })
    }

    pub fn image_delete(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteItem>> {
        let items =
            self.store
                .delete(name, force, &|id| self.image_users(id), &self.held_layers())?;
        for i in &items {
            match i {
                DeleteItem::Untagged(t) => self.emit_image("untag", t, t),
                DeleteItem::Deleted(d) => self.emit_image("delete", d, name),
            }
        }
        Ok(items.into_iter().map(delete_item).collect())
    }

    /// `POST /images/create?fromSrc=-`: a rootfs tar (spooled) becomes a
    /// one-layer image.
    pub async fn image_import(self: &Arc<Self>, tar: File, opts: ImportOptions) -> Result<String> {
        let store = self.store.clone();
        let ImportOptions {
            reference,
            config,
            message,
        } = opts;
        let id = tokio::task::spawn_blocking(move || {
            store.import(tar, config, message, reference.as_deref())
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
        self.emit_image("import", &id, &id);
        Ok(id)
    }

    /// `POST /images/load`: images from a `docker save` tar (spooled).
    pub async fn image_load(self: &Arc<Self>, tar: File) -> Result<LoadReport> {
        let store = self.store.clone();
        let rep = tokio::task::spawn_blocking(move || store.load(tar))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        for t in &rep.tags {
            let id = self.store.get(t).map(|i| i.id).unwrap_or_default();
            self.emit_image("load", &id, t);
        }
        Ok(rep)
    }

    /// `GET /images/get`: the named images as a `docker save` tar, written
    /// to `out` (returned for the caller to stream).
    pub async fn image_save(self: &Arc<Self>, names: Vec<String>, out: File) -> Result<File> {
        if names.is_empty() {
            return Err(EngineError::BadRequest("no images named".into()));
        }
        for n in &names {
            self.store.get(n)?;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> Result<File> {
            let mut w = std::io::BufWriter::new(out);
            store.save(&names, &mut w)?;
            Ok(w.into_inner().map_err(|e| e.into_error())?)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
    }

    /// `POST /images/{name}/tag`.
    pub fn image_tag(&self, name: &str, target: &str) -> Result<()> {
        self.store.tag(name, target)?;
        let id = self.store.get(target).map(|i| i.id).unwrap_or_default();
        self.emit_image("tag", &id, target);
        Ok(())
    }

    /// Fails with Docker's "No such image" unless `name` names one.
    pub fn find_image(&self, name: &str) -> Result<()> {
        self.store.get(name).map(|_| ()).map_err(EngineError::from)
    }

    pub fn image_count(&self) -> usize {
        self.store.list().len()
    }

    /// An image event; `name` is the reference the action was about.
    pub(crate) fn emit_image(&self, action: &str, id: &str, name: &str) {
        let attrs = crate::events::attributes(&[("name", name.to_string())], []);
        self.events.emit("image", action, id, attrs);
    }

    pub fn image_history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        let img = self.store.get(name)?;
        let hist = &img.config.history;
        // Each history entry that made a layer owns the next layer of the chain.
        let mut sizes = Vec::with_capacity(hist.len());
        let mut layer = 0;
        for h in hist {
            if h.empty_layer {
                sizes.push(0);
            } else {
                let size = img
                    .chain
                    .get(layer)
                    .and_then(|c| self.store.layers.get(c))
                    .map(|m| m.size)
                    .unwrap_or(0);
                sizes.push(size);
                layer += 1;
            }
        }
        // Rows that end where a local image ends carry that image's id, as
        // Docker shows parents and build steps it still has.
        let others = self.store.list();
        let id_at = |i: usize| -> Option<&berth_store::Image> {
            others.iter().find(|o| {
                o.config.history.len() == i + 1
                    && o.config.history[..] == hist[..=i]
                    && img
                        .config
                        .rootfs
                        .diff_ids
                        .starts_with(&o.config.rootfs.diff_ids)
            })
        };
        let rows = hist
            .iter()
            .enumerate()
            .rev()
            .map(|(i, h)| {
                let owner = if i + 1 == hist.len() {
                    Some(&img)
                } else {
                    id_at(i)
                };
                HistoryItem {
                    id: owner.map_or_else(|| "<missing>".into(), |o| o.id.clone()),
                    created: h
                        .created
                        .as_deref()
                        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                        .map_or(0, |t| t.timestamp()),
                    created_by: h.created_by.clone().unwrap_or_default(),
                    tags: owner.map(|o| o.repo_tags.clone()),
                    size: sizes[i] as i64,
                    comment: h.comment.clone().unwrap_or_default(),
                }
            })
            .collect();
        Ok(rows)
    }
}

/// Docker's `reference` filter: Go's `path.Match` (`*` and `?` stay within
/// a path element, `[…]` classes, `\\` escapes). Matched by dynamic
/// programming over the pattern rather than by backtracking, so a filter
/// full of `*`s costs length × length, never exponential time or stack.
fn glob(pat: &str, s: &str) -> bool {
    enum Tok {
        Star,
        Any,
        Lit(char),
        Class(bool, Vec<(char, char)>),
    }
    let p: Vec<char> = pat.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::Any),
            '\\' if i + 1 < p.len() => {
                i += 1;
                toks.push(Tok::Lit(p[i]));
            }
            '[' => {
                let mut j = i + 1;
                let neg = p.get(j) == Some(&'^');
                if neg {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut closed = false;
                while j < p.len() {
                    if p[j] == ']' && (!ranges.is_empty() || j > i + 1 + neg as usize) {
                        closed = true;
                        break;
                    }
                    let mut lo = p[j];
                    if lo == '\\' && j + 1 < p.len() {
                        j += 1;
                        lo = p[j];
                    }
                    let mut hi = lo;
                    if p.get(j + 1) == Some(&'-') && p.get(j + 2).is_some_and(|c| *c != ']') {
                        hi = p[j + 2];
                        j += 2;
                    }
                    ranges.push((lo, hi));
                    j += 1;
                }
                if !closed {
                    // Go reports ErrBadPattern; nothing matches a bad pattern.
                    return false;
                }
                toks.push(Tok::Class(neg, ranges));
                i = j;
            }
            c => toks.push(Tok::Lit(c)),
        }
        i += 1;
    }
    let s: Vec<char> = s.chars().collect();
    // m[j]: the tokens so far match s[..j].
    let mut m = vec![false; s.len() + 1];
    m[0] = true;
    for t in &toks {
        let mut next = vec![false; s.len() + 1];
        match t {
            Tok::Star => {
                for j in 0..=s.len() {
                    next[j] = m[j] || (j > 0 && next[j - 1] && s[j - 1] != '/');
                }
            }
            _ => {
                for j in 1..=s.len() {
                    let c = s[j - 1];
                    let ok = match t {
                        Tok::Any => c != '/',
                        Tok::Lit(l) => c == *l,
                        Tok::Class(neg, r) => {
                            c != '/' && (r.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *neg)
                        }
                        Tok::Star => unreachable!(),
                    };
                    next[j] = m[j - 1] && ok;
                }
            }
        }
        m = next;
    }
    m[s.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_dockerfile_lines() {
        let mut c = ImageRunConfig::default();
        apply_changes(
            &mut c,
            &[
                r#"CMD ["sh"]"#.into(),
                "ENV A=1 B=2".into(),
                "WORKDIR /app".into(),
                "EXPOSE 80".into(),
                "ENTRYPOINT echo hi".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(c.env, Some(vec!["A=1".to_string(), "B=2".to_string()]));
        assert_eq!(c.working_dir, "/app");
        assert!(c.exposed_ports.unwrap().contains_key("80/tcp"));
        assert_eq!(c.entrypoint.unwrap()[2], "echo hi");
        assert!(apply_changes(&mut ImageRunConfig::default(), &["FROM x".into()]).is_err());
    }

    #[test]
    fn reference_globs() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*:latest", "busybox:latest"));
        assert!(!glob("alp*", "busybox"));
        assert!(glob("*/app:v?", "team/app:v1"));
        assert!(
            !glob("*:v1", "team/app:v1"),
            "* stays within a path element"
        );
        assert!(!glob("b[a-u]sy[!x]ox", "busybox"), "Go negates with ^ only");
        assert!(glob("b[a-u]sy[^x]ox", "busybox"));
        assert!(glob("caf\u{e9}:*", "caf\u{e9}:latest"), "multi-byte text");
        assert!(!glob("[oops", "[oops"));
        let stars = "*".repeat(20_000) + "x";
        assert!(!glob(&stars, &"a".repeat(300)));
    }
}
