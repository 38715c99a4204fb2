//! `.dockerignore`, with Docker's rules: patterns are paths relative to the
//! context root (a leading `/` is dropped), `*` and `?` stay within one path
//! element, `**` spans any number, `!` re-includes, the last matching pattern
//! wins, and a pattern that matches a directory matches everything under it.

use regex::Regex;

#[derive(Debug)]
struct Pattern {
    re: Regex,
    exclusion: bool,
}

#[derive(Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// Lexically cleans a slash path: no `.`, no empty elements, `..` resolved.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

pub(crate) fn glob_to_regex(p: &str) -> String {
    let mut re = String::from("^");
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    // `**/` matches zero or more whole directories.
                    re.push_str("(.*/)?");
                    i += 1;
                } else {
                    re.push_str(".*");
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                // A character class passes through, `!` negation as `^`.
                let mut j = i + 1;
                let mut class = String::from("[");
                if chars.get(j) == Some(&'!') || chars.get(j) == Some(&'^') {
                    class.push('^');
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '\\' {
                        class.push('\\');
                    }
                    class.push(chars[j]);
                    j += 1;
                }
                if j < chars.len() {
                    class.push(']');
                    re.push_str(&class);
                    i = j + 1;
                    continue;
                }
                re.push_str("\\[");
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                re.push_str(&regex::escape(&chars[i].to_string()));
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    re
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exclusion, p) = match l.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, l),
            };
            let p = clean(p);
            if p.is_empty() {
                continue;
            }
            if let Ok(re) = Regex::new(&glob_to_regex(&p)) {
                patterns.push(Pattern { re, exclusion });
            }
        }
        Ignore { patterns }
    }

    /// Is `path` (relative to the context root) left out of the context?
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = path
            .match_indices('/')
            .map(|(i, _)| &path[..i])
            .chain(std::iter::once(path.as_str()))
            .collect();
        let mut out = false;
        for p in &self.patterns {
            if parents.iter().any(|q| p.re.is_match(q)) {
                out = !p.exclusion;
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_rules() {
        let ig = Ignore::parse(
            "# comment\n\
             node_modules\n\
             *.log\n\
             !keep.log\n\
             /build/\n\
             **/*.tmp\n\
             docs/**/draft?.md\n\
             secret[0-9]\n",
        );
        assert!(ig.excluded("node_modules"));
        assert!(
            ig.excluded("node_modules/x/y.js"),
            "a directory takes its contents"
        );
        assert!(
            !ig.excluded("src/node_modules"),
            "patterns are anchored at the root"
        );
        assert!(ig.excluded("app.log"));
        assert!(
            !ig.excluded("keep.log"),
            "! re-includes; the last match wins"
        );
        assert!(!ig.excluded("sub/app.log"), "* does not cross /");
        assert!(ig.excluded("build/out.bin"));
        assert!(
            ig.excluded("a.tmp") && ig.excluded("a/b/c.tmp"),
            "**/ spans zero or more dirs"
        );
        assert!(ig.excluded("docs/draft1.md") && ig.excluded("docs/x/y/draft2.md"));
        assert!(!ig.excluded("docs/final.md"));
        assert!(ig.excluded("secret7") && !ig.excluded("secretX"));
        assert!(!ig.excluded("Dockerfile"));
    }

    #[test]
    fn exceptions_inside_excluded_dirs() {
        let ig = Ignore::parse("data\n!data/keep\n");
        assert!(ig.excluded("data/drop"));
        assert!(!ig.excluded("data/keep"));
        assert!(ig.excluded("data"));
        let all = Ignore::parse("*\n!Dockerfile\n!src\n");
        assert!(all.excluded("README"));
        assert!(!all.excluded("src/main.c") && !all.excluded("Dockerfile"));
    }
}
