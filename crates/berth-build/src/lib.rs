//! Dockerfile builds, the parts that need no daemon: the parser, Docker's word
//! expansion, `.dockerignore`, build-context path resolution and cache keys.
//! The engine runs the steps.

pub mod dockerfile;
pub mod ignore;
pub mod lex;

use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};

pub use berth_util::gotime::{duration_ns, human_duration};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A Dockerfile that does not parse; the message names the line.
    #[error("{0}")]
    Parse(String),
    /// Bad quoting or substitution inside an instruction's arguments.
    #[error("{0}")]
    Syntax(String),
    #[error("forbidden path outside the build context: {0}")]
    OutsideContext(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Resolves `path` (as written in COPY/ADD) inside the build context `root`.
/// Symlinks are followed inside the context; a path, or a link, that leads
/// out of it is refused.
pub fn resolve_in_context(root: &Path, path: &str) -> Result<PathBuf, BuildError> {
    let outside = || BuildError::OutsideContext(path.to_string());
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut pending, Path::new(path));
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if !cur.pop() {
                return Err(outside());
            }
            continue;
        }
        let cand = cur.join(&part);
        match std::fs::symlink_metadata(root.join(&cand)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(BuildError::Syntax(format!("too many links in {path}")));
                }
                let target = std::fs::read_link(root.join(&cand))?;
                if target.is_absolute() {
                    return Err(outside());
                }
                push_components(&mut pending, &target);
            }
            _ => cur = cand,
        }
    }
    Ok(root.join(cur))
}

/// Queues `p`'s components so that the first is popped first.
fn push_components(pending: &mut Vec<std::ffi::OsString>, p: &Path) {
    for c in p.components().rev() {
        match c {
            Component::Normal(n) => pending.push(n.to_os_string()),
            Component::ParentDir => pending.push("..".into()),
            _ => {}
        }
    }
}

/// Does a COPY/ADD source contain shell wildcards?
pub fn has_wildcards(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The context paths (relative, `/`-separated) that a wildcard source matches,
/// in name order. `*` and `?` stay within one path element.
pub fn wildcard_matches(root: &Path, pattern: &str) -> Result<Vec<String>, BuildError> {
    let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
    let re = regex::Regex::new(&ignore::glob_to_regex(pattern))
        .map_err(|e| BuildError::Syntax(format!("bad pattern {pattern}: {e}")))?;
    let depth = pattern.split('/').count();
    let mut out = Vec::new();
    let mut stack = vec![(PathBuf::new(), 0usize)];
    while let Some((rel, d)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let r = rel.join(e.file_name());
            let s = r.to_string_lossy().into_owned();
            if d + 1 == depth {
                if re.is_match(&s) {
                    out.push(s);
                }
            } else if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push((r, d + 1));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The cache key of a step: its parent image, the instruction as it will run
/// (variables substituted) and a digest of its inputs (COPY/ADD sources).
pub fn cache_key(parent: &str, instruction: &str, inputs: &str) -> String {
    let mut h = Sha256::new();
    for part in [parent, instruction, inputs] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        use super::duration_ns;
        assert_eq!(duration_ns("30s").unwrap(), 30_000_000_000);
        assert_eq!(duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(duration_ns("500ms").unwrap(), 500_000_000);
        assert_eq!(duration_ns("1.5s").unwrap(), 1_500_000_000);
        assert!(duration_ns("5").is_err() && duration_ns("5x").is_err());
        assert!(duration_ns("").is_err() && duration_ns("5d").is_err());
    }

    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn context_paths_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("src/sub")).unwrap();
        std::fs::write(r.join("src/sub/f"), "x").unwrap();
        symlink("src/sub", r.join("inner")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../..", r.join("up")).unwrap();
        assert_eq!(
            resolve_in_context(r, "inner/f").unwrap(),
            r.join("src/sub/f")
        );
        assert_eq!(
            resolve_in_context(r, "/src/./sub/../sub/f").unwrap(),
            r.join("src/sub/f")
        );
        for bad in ["../x", "src/../../x", "abs/passwd", "up/etc"] {
            let e = resolve_in_context(r, bad).unwrap_err();
            assert!(matches!(e, BuildError::OutsideContext(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn wildcards_match_within_one_level() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src")).unwrap();
        for f in ["a.js", "b.js", "c.txt", "src/d.js"] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        assert_eq!(
            wildcard_matches(d.path(), "*.js").unwrap(),
            ["a.js", "b.js"]
        );
        assert_eq!(
            wildcard_matches(d.path(), "src/*.js").unwrap(),
            ["src/d.js"]
        );
        assert_eq!(wildcard_matches(d.path(), "?.txt").unwrap(), ["c.txt"]);
        assert!(has_wildcards("*.js") && !has_wildcards("a.js"));
    }

    #[test]
    fn cache_keys_separate_their_parts() {
        assert_ne!(cache_key("a", "bc", ""), cache_key("ab", "c", ""));
        assert_eq!(cache_key("p", "RUN x", "i"), cache_key("p", "RUN x", "i"));
    }
}
