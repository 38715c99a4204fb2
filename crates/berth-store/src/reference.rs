//! Image references: `busybox`, `busybox:1.36`, `docker.io/library/busybox:latest`.

use crate::StoreError;

/// A normalised `repository:tag`, the way `docker images` shows it.
pub fn normalize(name: &str) -> Result<String, StoreError> {
    let bad = || StoreError::InvalidReference(name.to_string());
    if name.is_empty() || name.contains('@') {
        return Err(bad());
    }
    let (repo, tag) = match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], &name[i + 1..]),
        _ => (name, "latest"),
    };
    let repo = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .or_else(|| repo.strip_prefix("index.docker.io/library/"))
        .unwrap_or(repo);
    let parts = repo.split('/').count();
    let repo_ok = !repo.is_empty()
        && repo.split('/').enumerate().all(|(i, part)| {
            // Only a registry host (the first of several parts) may carry a port.
            let host = i == 0 && parts > 1;
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b"._-".contains(&b)
                        || (host && (b == b':' || b.is_ascii_uppercase()))
                })
                && part.as_bytes()[0].is_ascii_alphanumeric()
        });
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && tag.as_bytes()[0] != b'.'
        && tag.as_bytes()[0] != b'-';
    if !repo_ok || !tag_ok {
        return Err(bad());
    }
    Ok(format!("{repo}:{tag}"))
}

/// A repository's short name, as `normalize` keeps it: `docker.io/library/x` is `x`.
pub fn familiar_repo(repo: &str) -> String {
    repo.strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .or_else(|| repo.strip_prefix("index.docker.io/library/"))
        .unwrap_or(repo)
        .to_string()
}

/// Splits a normalised reference into repository and tag.
pub fn split(r: &str) -> (&str, &str) {
    match r.rfind(':') {
        Some(i) => (&r[..i], &r[i + 1..]),
        None => (r, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_docker_names() {
        assert_eq!(normalize("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(
            normalize("docker.io/library/busybox").unwrap(),
            "busybox:latest"
        );
        assert_eq!(
            normalize("localhost:5000/a/b:v1").unwrap(),
            "localhost:5000/a/b:v1"
        );
        assert_eq!(
            normalize("localhost:5000/a").unwrap(),
            "localhost:5000/a:latest"
        );
        assert!(normalize("Busybox").is_err());
        assert!(normalize("a:b:c").is_err());
        assert!(normalize("").is_err());
    }
}
