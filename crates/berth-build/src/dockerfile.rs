//! Dockerfile syntax: directives, comments, line continuations, heredocs,
//! flags, exec (JSON) and shell forms. Semantics live in the builder.

use crate::BuildError;

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-case keyword (`RUN`, `COPY`, …).
    pub keyword: String,
    /// `--name=value` flags that precede the arguments.
    pub flags: Vec<(String, String)>,
    /// The arguments, continuation lines joined, flags removed.
    pub rest: String,
    /// Heredoc bodies (`<<EOF`), in order, each with its name.
    pub heredocs: Vec<Heredoc>,
    /// The instruction as the classic builder prints it (`RUN echo hi`).
    pub original: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
    /// `<<"EOF"` / `<<'EOF'`: no variable expansion in the body.
    pub quoted: bool,
}

#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

pub const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Instructions whose flags we parse (`--from=…`, `--chown=…`, …).
const FLAGGED: [&str; 6] = ["FROM", "COPY", "ADD", "RUN", "HEALTHCHECK", "ONBUILD"];

fn err(line: usize, msg: impl std::fmt::Display) -> BuildError {
    BuildError::Parse(format!("Dockerfile:{line}: {msg}"))
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, BuildError> {
    let lines: Vec<&str> = text.lines().collect();
    let (escape, mut i) = directives(&lines)?;
    let mut out = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i];
        i += 1;
        let t = first.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let logical = join_continued(&lines, &mut i, first, escape);
        let logical = logical.trim().to_string();
        let (kw, rest) = match logical.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim_start()),
            None => (logical.as_str(), ""),
        };
        let keyword = kw.to_ascii_uppercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(err(start + 1, format!("unknown instruction: {kw}")));
        }
        let (flags, args) = if FLAGGED.contains(&keyword.as_str()) {
            split_flags(rest)
        } else {
            (Vec::new(), rest.to_string())
        };
        let heredocs = if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            read_heredocs(&lines, &mut i, &args, start)?
        } else {
            Vec::new()
        };
        if args.trim().is_empty()
            && !matches!(keyword.as_str(), "CMD" | "ENTRYPOINT" | "HEALTHCHECK")
        {
            return Err(err(
                start + 1,
                format!("{keyword} requires at least one argument"),
            ));
        }
        out.push(Instruction {
            line: start + 1,
            original: format!("{keyword} {}", logical[kw.len()..].trim_start()),
            keyword,
            flags,
            rest: args,
            heredocs,
        });
    }
    Ok(Dockerfile {
        escape,
        instructions: out,
    })
}

/// Parser directives: `# key=value` comments before anything else. The
/// escape character, and the line where instructions start.
fn directives(lines: &[&str]) -> Result<(char, usize), BuildError> {
    let mut escape = '\\';
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        let Some(d) = l.strip_prefix('#') else { break };
        let Some((k, v)) = d.split_once('=') else {
            break;
        };
        let k = k.trim().to_ascii_lowercase();
        if k.contains(char::is_whitespace) {
            break;
        }
        match k.as_str() {
            "escape" => match v.trim() {
                "\\" => escape = '\\',
                "`" => escape = '`',
                other => {
                    return Err(err(
                        i + 1,
                        format!("invalid escape token '{other}' does not match ` or \\"),
                    ))
                }
            },
            "syntax" | "check" => {}
            _ => break,
        }
        i += 1;
    }
    Ok((escape, i))
}

/// A logical line: continuation lines joined; comment and blank lines
/// inside are dropped.
fn join_continued(lines: &[&str], i: &mut usize, first: &str, escape: char) -> String {
    let mut logical = String::new();
    let mut cur = first.trim_end().to_string();
    loop {
        // As moby: the escape character at the end of a line continues it.
        if !cur.ends_with(escape) {
            logical.push_str(&cur);
            break;
        }
        cur.pop();
        logical.push_str(&cur);
        let mut next = None;
        while *i < lines.len() {
            let n = lines[*i];
            *i += 1;
            let nt = n.trim_start();
            if nt.starts_with('#') || nt.is_empty() {
                continue;
            }
            next = Some(n.trim_end().to_string());
            break;
        }
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    logical
}

/// The bodies of the heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) an
/// instruction's arguments open, read from the lines that follow.
fn read_heredocs(
    lines: &[&str],
    i: &mut usize,
    args: &str,
    start: usize,
) -> Result<Vec<Heredoc>, BuildError> {
    let mut heredocs = Vec::new();
    for (name, strip_tabs, quoted) in heredoc_markers(args) {
        let mut body = String::new();
        let mut closed = false;
        while *i < lines.len() {
            let l = lines[*i];
            *i += 1;
            let cmp = if strip_tabs {
                l.trim_start_matches('\t')
            } else {
                l
            };
            if cmp == name {
                closed = true;
                break;
            }
            body.push_str(cmp);
            body.push('\n');
        }
        if !closed {
            return Err(err(start + 1, format!("unterminated heredoc {name}")));
        }
        heredocs.push(Heredoc { name, body, quoted });
    }
    Ok(heredocs)
}

fn split_flags(rest: &str) -> (Vec<(String, String)>, String) {
    let mut flags = Vec::new();
    let mut s = rest.trim_start();
    while let Some(f) = s.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let tok = &f[..end];
        let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
        flags.push((k.to_string(), v.to_string()));
        s = f[end..].trim_start();
    }
    (flags, s.to_string())
}

fn heredoc_markers(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some(p) = rest.find("<<") {
        let mut m = &rest[p + 2..];
        let strip = m.starts_with('-');
        if strip {
            m = &m[1..];
        }
        let quoted = m.starts_with('"') || m.starts_with('\'');
        let name: String = m
            .trim_start_matches(['"', '\''])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push((name, strip, quoted));
        }
        rest = &rest[p + 2..];
    }
    out
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON (exec) form, when the arguments are a JSON array of strings.
    pub fn json_args(&self) -> Option<Vec<String>> {
        let t = self.rest.trim();
        if !t.starts_with('[') {
            return None;
        }
        serde_json::from_str::<Vec<String>>(t).ok()
    }

    /// Rejects flags this instruction does not take.
    pub fn check_flags(&self, allowed: &[&str]) -> Result<(), BuildError> {
        for (k, _) in &self.flags {
            if !allowed.contains(&k.as_str()) {
                return Err(err(self.line, format!("unknown flag: --{k}")));
            }
        }
        Ok(())
    }

    pub fn error(&self, msg: impl std::fmt::Display) -> BuildError {
        err(self.line, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kws(d: &Dockerfile) -> Vec<&str> {
        d.instructions.iter().map(|i| i.keyword.as_str()).collect()
    }

    #[test]
    fn every_instruction_parses() {
        let d = parse(
            "# syntax=docker/dockerfile:1\n\
             ARG BASE=busybox\n\
             FROM --platform=linux/amd64 ${BASE} AS build\n\
             RUN echo hi \\\n  && echo there\n\
             COPY --chown=1:1 --chmod=644 a b /dst/\n\
             ADD x.tar /opt/\n\
             WORKDIR /app\n\
             ENV A=1 B=\"two words\"\n\
             LABEL k=v\n\
             EXPOSE 80/tcp 443\n\
             USER nobody\n\
             VOLUME [\"/data\"]\n\
             STOPSIGNAL SIGTERM\n\
             HEALTHCHECK --interval=5s CMD true\n\
             ONBUILD RUN echo child\n\
             SHELL [\"/bin/sh\", \"-ec\"]\n\
             ENTRYPOINT [\"/bin/sh\"]\n\
             MAINTAINER me\n\
             cmd [\"echo\", \"hi\"]\n",
        )
        .unwrap();
        assert_eq!(
            kws(&d),
            [
                "ARG",
                "FROM",
                "RUN",
                "COPY",
                "ADD",
                "WORKDIR",
                "ENV",
                "LABEL",
                "EXPOSE",
                "USER",
                "VOLUME",
                "STOPSIGNAL",
                "HEALTHCHECK",
                "ONBUILD",
                "SHELL",
                "ENTRYPOINT",
                "MAINTAINER",
                "CMD"
            ]
        );
        let from = &d.instructions[1];
        assert_eq!(from.flag("platform"), Some("linux/amd64"));
        assert_eq!(from.rest, "${BASE} AS build");
        assert_eq!(d.instructions[2].rest, "echo hi   && echo there");
        assert_eq!(d.instructions[2].line, 4);
        assert_eq!(d.instructions[3].flag("chown"), Some("1:1"));
        assert_eq!(d.instructions[3].rest, "a b /dst/");
        assert_eq!(d.instructions[17].json_args().unwrap(), ["echo", "hi"]);
        assert_eq!(d.instructions[17].keyword, "CMD");
    }

    #[test]
    fn comments_continuations_and_escape_directive() {
        let d = parse("# escape=`\nFROM busybox\nRUN echo a `\n# inside\n\n  b\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.instructions[1].rest, "echo a   b");
        let d = parse("FROM x\n  # indented comment\nRUN a\\\\\n").unwrap();
        assert_eq!(d.instructions.len(), 2);
    }

    #[test]
    fn heredocs_collect_their_bodies() {
        let d = parse("FROM x\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<-\"END\" /f\n\thello $X\nEND\nCMD x\n")
            .unwrap();
        assert_eq!(d.instructions[1].heredocs[0].body, "echo one\necho two\n");
        let h = &d.instructions[2].heredocs[0];
        assert_eq!(
            (h.name.as_str(), h.body.as_str(), h.quoted),
            ("END", "hello $X\n", true)
        );
        assert_eq!(d.instructions[3].keyword, "CMD");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM busybox\n\nRUNN echo\n").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:3: unknown instruction: RUNN");
        let e = parse("FROM busybox\nRUN <<EOF\necho\n").unwrap_err();
        assert!(e.to_string().contains("unterminated heredoc EOF"), "{e}");
        let e = parse("FROM busybox\nWORKDIR\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: WORKDIR requires at least one argument"
        );
        let e = parse("# escape=x\nFROM a\n").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Dockerfile:1: invalid escape token"));
    }
}
