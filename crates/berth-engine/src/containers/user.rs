//! `--user name[:group]` → uid/gid, read from the container's own /etc files.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

fn lookup(file: &str, key: &str) -> Option<Vec<String>> {
    file.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && (f[0] == key || f[2] == key))
}

/// Resolves `spec` against the rootfs' /etc/passwd and /etc/group. Numeric ids
/// need no entry; names do.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser, String> {
    let read = |p: &str| {
        crate::rootfs::secure_join(rootfs, p)
            .and_then(std::fs::read_to_string)
            .unwrap_or_default()
    };
    let passwd = read("/etc/passwd");
    let group = read("/etc/group");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = lookup(&passwd, u);
    let uid = match (u.parse::<u32>(), &entry) {
        (Ok(n), _) => n,
        (Err(_), Some(e)) => e[2]
            .parse()
            .map_err(|_| format!("bad passwd entry for {u}"))?,
        (Err(_), None) => {
            return Err(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        }
    };
    let home = entry
        .as_ref()
        .and_then(|e| e.get(5).cloned())
        .unwrap_or_else(|| "/".into());
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&group, g)
                .and_then(|e| e[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
        None => entry
            .as_ref()
            .and_then(|e| e.get(3).and_then(|s| s.parse().ok()))
            .unwrap_or(0),
    };
    let name = entry.as_ref().map(|e| e[0].clone());
    let additional_gids = match (&name, g) {
        (Some(n), None) => group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[3].split(',').any(|m| m == n))
                    .then(|| f[2].parse().ok())
                    .flatten()
            })
            .filter(|&x| x != gid)
            .collect(),
        _ => vec![],
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// `--group-add`: a gid, or a group name from the rootfs' /etc/group.
pub fn group_id(rootfs: &Path, g: &str) -> Result<u32, String> {
    if let Ok(n) = g.parse() {
        return Ok(n);
    }
    let group = crate::rootfs::secure_join(rootfs, "/etc/group")
        .and_then(std::fs::read_to_string)
        .unwrap_or_default();
    lookup(&group, g)
        .and_then(|e| e[2].parse().ok())
        .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nadm:x:4:www\n",
        )
        .unwrap();
        let r = resolve(d.path(), "www").unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.clone()), (33, 33, vec![4]));
        assert_eq!(r.home, "/var/www");
        assert_eq!(resolve(d.path(), "1000:1000").unwrap().uid, 1000);
        assert_eq!(resolve(d.path(), "www:adm").unwrap().gid, 4);
        assert!(resolve(d.path(), "nobody").is_err());
        assert_eq!(resolve(d.path(), "").unwrap().uid, 0);
    }
}
