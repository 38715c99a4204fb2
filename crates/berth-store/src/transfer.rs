//! The tar formats images travel in: `docker save` (manifest.json) and OCI image
//! layout (index.json), both written together by `save` and both read by `load`.

use crate::content::digest_hex;
use crate::layer::clean_entry_path;
use crate::{reference, Store, StoreError, MEDIA_CONFIG, MEDIA_LAYER, MEDIA_MANIFEST};
use berth_api::ImageConfigBlob;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};

/// Wraps `reader` in a gzip decoder when it starts with gzip's magic bytes.
pub fn maybe_gunzip<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>, StoreError> {
    let mut br = BufReader::with_capacity(256 * 1024, reader);
    let head = br.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(flate2::read::GzDecoder::new(br)))
    } else {
        Ok(Box::new(br))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What `load` brought in, for the client's "Loaded image: …" lines.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub tags: Vec<String>,
    pub ids: Vec<String>,
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, name, data)
}

impl Store {
    /// Writes the named images (and the tags by which they were named) as one tar.
    pub fn save<W: Write>(&self, names: &[String], out: W) -> Result<(), StoreError> {
        let mut b = tar::Builder::new(out);
        let mut manifests = Vec::new();
        let mut index = Vec::new();
        let mut written = std::collections::HashSet::new();
        for name in names {
            let img = self.get(name)?;
            let tags: Vec<String> = match reference::normalize(name) {
                Ok(r) if img.repo_tags.contains(&r) => vec![r],
                _ if name.starts_with("sha256:") || img.id[7..].starts_with(name.as_str()) => {
                    vec![]
                }
                _ => img.repo_tags.clone(),
            };
            let mut layer_paths = Vec::new();
            let mut layer_descs = Vec::new();
            for (diff, chain) in img.config.rootfs.diff_ids.iter().zip(&img.chain) {
                let path = format!("blobs/sha256/{}", digest_hex(diff)?);
                // A pulled layer is kept compressed: its tar is made as it is
                // written, and its length was recorded when it was pulled.
                let (tar, size) = self.layer_tar(chain)?;
                if written.insert(diff.clone()) {
                    let mut h = tar::Header::new_ustar();
                    h.set_size(size);
                    h.set_mode(0o644);
                    h.set_mtime(0);
                    b.append_data(&mut h, &path, tar)?;
                }
                layer_paths.push(path);
                layer_descs.push(json!({"mediaType": MEDIA_LAYER, "digest": diff, "size": size}));
            }
            let cfg = self.content.read(&img.id)?;
            let cfg_path = format!("blobs/sha256/{}", digest_hex(&img.id)?);
            if written.insert(img.id.clone()) {
                append_bytes(&mut b, &cfg_path, &cfg)?;
            }
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": img.id, "size": cfg.len()},
                "layers": layer_descs,
            }))?;
            let mdesc = self.content.write(&manifest)?;
            if written.insert(mdesc.digest.clone()) {
                append_bytes(
                    &mut b,
                    &format!("blobs/sha256/{}", digest_hex(&mdesc.digest)?),
                    &manifest,
                )?;
            }
            let mut annotations = serde_json::Map::new();
            if let Some(t) = tags.first() {
                annotations.insert("io.containerd.image.name".into(), json!(t));
                annotations.insert(
                    "org.opencontainers.image.ref.name".into(),
                    json!(reference::split(t).1),
                );
            }
            index.push(json!({"mediaType": MEDIA_MANIFEST, "digest": mdesc.digest,
                "size": mdesc.size, "annotations": annotations}));
            manifests.push(SaveManifest {
                config: cfg_path,
                repo_tags: Some(tags),
                layers: layer_paths,
            });
        }
        append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append_bytes(
            &mut b,
            "index.json",
            &serde_json::to_vec(
                &json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index}),
            )?,
        )?;
        append_bytes(&mut b, "manifest.json", &serde_json::to_vec(&manifests)?)?;
        b.into_inner()?.flush()?;
        Ok(())
    }

    /// Reads a `docker save` or OCI layout tar. Every blob is verified against its
    /// digest before use; layers are unpacked once and shared.
    pub fn load<R: Read>(&self, reader: R) -> Result<LoadReport, StoreError> {
        let mut report = LoadReport::default();
        for (cfg_digest, layers, tags) in self.ingest_archive(reader)? {
            self.load_layers(&cfg_digest, &layers)?;
            // The config as it travelled: the image keeps its id.
            let id = self.register_raw(&self.content.read(&cfg_digest)?, &tags, None)?;
            if tags.is_empty() {
                report.ids.push(id);
            }
            report
                .tags
                .extend(tags.iter().filter_map(|t| reference::normalize(t).ok()));
        }
        Ok(report)
    }

    /// Every blob of a `docker save` or OCI-layout tar into the content
    /// store, and the images its manifest.json or index.json names: (config
    /// digest, layer blob digests, tags).
    fn ingest_archive<R: Read>(&self, reader: R) -> Result<Vec<ArchivedImage>, StoreError> {
        let mut ar = tar::Archive::new(maybe_gunzip(reader)?);
        let mut by_path: HashMap<String, String> = HashMap::new();
        let mut manifest_json = None;
        let mut index_json = None;
        for entry in ar.entries()? {
            let mut e = entry?;
            if !e.header().entry_type().is_file() {
                continue;
            }
            let path = clean_entry_path(&e.path()?)?.to_string_lossy().to_string();
            match path.as_str() {
                "manifest.json" => {
                    let mut s = Vec::new();
                    e.read_to_end(&mut s)?;
                    manifest_json = Some(s);
                }
                "index.json" => {
                    let mut s = Vec::new();
                    e.read_to_end(&mut s)?;
                    index_json = Some(s);
                }
                "oci-layout" | "repositories" => {}
                _ => {
                    let expected = path
                        .strip_prefix("blobs/sha256/")
                        .map(|h| format!("sha256:{h}"));
                    let d = self.content.ingest(&mut e, expected.as_deref())?;
                    by_path.insert(path, d.digest);
                }
            }
        }
        let mut images: Vec<ArchivedImage> = Vec::new();
        let blob = |p: &str| {
            by_path
                .get(p)
                .cloned()
                .ok_or_else(|| StoreError::InvalidArchive(format!("missing {p}")))
        };
        if let Some(m) = manifest_json {
            let ms: Vec<SaveManifest> = serde_json::from_slice(&m)
                .map_err(|e| StoreError::InvalidArchive(format!("manifest.json: {e}")))?;
            for m in ms {
                let layers = m.layers.iter().map(|l| blob(l)).collect::<Result<_, _>>()?;
                images.push((blob(&m.config)?, layers, m.repo_tags.unwrap_or_default()));
            }
        } else if let Some(ix) = index_json {
            let ix: serde_json::Value = serde_json::from_slice(&ix)?;
            for m in ix["manifests"].as_array().cloned().unwrap_or_default() {
                let md = m["digest"].as_str().unwrap_or_default();
                let man: serde_json::Value = serde_json::from_slice(&self.content.read(md)?)?;
                let cfg = man["config"]["digest"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let layers = man["layers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|l| l["digest"].as_str().unwrap_or_default().to_string())
                    .collect();
                let tag = m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .map(str::to_string);
                images.push((cfg, layers, tag.into_iter().collect()));
            }
        } else {
            return Err(StoreError::InvalidArchive(
                "no manifest.json or index.json in the archive".into(),
            ));
        }
        Ok(images)
    }

    /// An archived image's layers, each unpacked unless already here and
    /// checked against the config's diff ids; its config.
    fn load_layers(
        &self,
        cfg_digest: &str,
        layers: &[String],
    ) -> Result<ImageConfigBlob, StoreError> {
        let config: ImageConfigBlob = serde_json::from_slice(&self.content.read(cfg_digest)?)
            .map_err(|e| StoreError::InvalidArchive(format!("image config: {e}")))?;
        if config.rootfs.diff_ids.len() > crate::MAX_LAYERS {
            return Err(StoreError::MaxDepth(config.rootfs.diff_ids.len()));
        }
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(StoreError::InvalidArchive(
                "layer count differs from the config's diff_ids".into(),
            ));
        }
        let mut parent: Option<String> = None;
        for (blob_digest, diff) in layers.iter().zip(&config.rootfs.diff_ids) {
            let chain = crate::layer::chain_id(parent.as_deref(), diff);
            if self.layers.get(&chain).is_none() {
                let (desc, chain) =
                    self.add_layer(parent.as_deref(), self.content.open_blob(blob_digest)?)?;
                if &desc.digest != diff {
                    let _ = self.layers.remove(&chain);
                    return Err(StoreError::DigestMismatch {
                        expected: diff.clone(),
                        actual: desc.digest,
                    });
                }
            }
            parent = Some(chain);
        }
        Ok(config)
    }
}

/// (config digest, layer blob digests, tags) of an image in an archive.
type ArchivedImage = (String, Vec<String>, Vec<String>);

#[cfg(test)]
mod tests {
    use crate::Store;
    use berth_api::ImageRunConfig;

    #[test]
    fn save_then_load_round_trips() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "hello", &b"hi"[..]).unwrap();
        let rootfs = b.into_inner().unwrap();
        let a = tempfile::tempdir().unwrap();
        let s = Store::open(a.path()).unwrap();
        let cfg = ImageRunConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let id = s.import(&rootfs[..], cfg, None, Some("x:1")).unwrap();
        let mut out = Vec::new();
        s.save(&["x:1".to_string()], &mut out).unwrap();

        let b = tempfile::tempdir().unwrap();
        let s2 = Store::open(b.path()).unwrap();
        let rep = s2.load(&out[..]).unwrap();
        assert_eq!(rep.tags, vec!["x:1"]);
        let img = s2.get("x:1").unwrap();
        assert_eq!(img.id, id, "same config bytes, same id");
        assert_eq!(img.config.config.cmd, Some(vec!["sh".to_string()]));
        let dir = &s2.lower_dirs(&img).unwrap()[0];
        assert_eq!(std::fs::read(dir.join("hello")).unwrap(), b"hi");
    }

    #[test]
    fn load_refuses_tampered_blobs() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(3);
        h.set_mode(0o644);
        let fake = format!("blobs/sha256/{}", "0".repeat(64));
        b.append_data(&mut h, &fake, &b"bad"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        assert!(s.load(&t[..]).is_err());
    }
}
