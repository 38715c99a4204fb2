//! What the distribution spec allows as repository names, tags and digests.

/// A repository name: path components of lower-case letters and digits,
/// joined inside a component by `.`, `_`, `__` or runs of `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0] as char) || !alnum(b[b.len() - 1] as char) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i] as char;
        if alnum(ch) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or one or more `-`, between alphanumerics.
        let start = i;
        match ch {
            '.' => i += 1,
            '_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            '-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i] as char) {
            return false;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    tag.len() <= 128
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A sha256 digest, `sha256:` and 64 lower-case hex digits: the one
/// algorithm this registry stores.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_the_spec_allows() {
        for ok in [
            "a",
            "library/busybox",
            "my-org/app_1",
            "a.b/c__d/e--f",
            "x0",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "../etc", "a/../b", "a//b", "-a", "a-", "a_", "a___b", "a/", "/a", "a b",
            "a:b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags_and_digests() {
        assert!(valid_tag("latest") && valid_tag("v1.2_3-rc") && valid_tag("_x"));
        assert!(
            !valid_tag("") && !valid_tag(".x") && !valid_tag("a/b") && !valid_tag(&"a".repeat(129))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(valid_digest(&d));
        assert!(
            !valid_digest("sha256:abc")
                && !valid_digest(&d.to_uppercase())
                && !valid_digest("md5:x")
        );
    }
}
