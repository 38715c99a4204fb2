//! Docker's word processing for Dockerfile arguments: quotes, the escape
//! character, and `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}`,
//! `${VAR-default}`, `${VAR+alt}`, `${VAR:?msg}`.

use crate::BuildError;

/// How deeply `${A:-${B:-…}}` may nest. Expansion recurses once per level,
/// and a Dockerfile is untrusted input: without a bound a 15 KB `ENV` line
/// overflows the stack of the daemon thread that expands it.
pub const MAX_NESTING: usize = 64;

/// Expands and unquotes `s` as one word.
pub fn expand(
    s: &str,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, BuildError> {
    Ok(process(s, escape, env, false, 0)?.join(""))
}

/// Expands `s` and splits it into words on unquoted whitespace.
pub fn expand_words(
    s: &str,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, BuildError> {
    process(s, escape, env, true, 0)
}

fn process(
    s: &str,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
    split: bool,
    depth: usize,
) -> Result<Vec<String>, BuildError> {
    if depth > MAX_NESTING {
        return Err(BuildError::Syntax(format!(
            "bad substitution: variable expansions nested more than {MAX_NESTING} deep"
        )));
    }
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if split && c.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
            i += 1;
            continue;
        }
        in_word = true;
        match c {
            '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    cur.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(BuildError::Syntax(format!("unexpected end of statement while looking for matching single-quote in {s}")));
                }
                i += 1;
            }
            '"' => i = double_quoted(&chars, i + 1, escape, env, &mut cur, depth, s)?,
            c if c == escape => {
                if i + 1 < chars.len() {
                    cur.push(chars[i + 1]);
                    i += 2;
                } else {
                    cur.push(c);
                    i += 1;
                }
            }
            '$' => {
                let mut val = String::new();
                i = dollar(&chars, i, escape, env, &mut val, depth)?;
                if split {
                    // An unquoted expansion splits into words, as in a shell.
                    let mut parts = val.split(char::is_whitespace);
                    cur.push_str(parts.next().unwrap_or_default());
                    for p in parts {
                        if !cur.is_empty() {
                            words.push(std::mem::take(&mut cur));
                        }
                        cur.push_str(p);
                    }
                } else {
                    cur.push_str(&val);
                }
            }
            _ => {
                cur.push(c);
                i += 1;
            }
        }
    }
    if in_word || !split {
        words.push(cur);
    }
    Ok(words)
}

/// The inside of a double-quoted string from `chars[i]`: `$` expands, the
/// escape character escapes only `"`, `$` and itself. Returns the index
/// after the closing quote.
fn double_quoted(
    chars: &[char],
    mut i: usize,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
    cur: &mut String,
    depth: usize,
    whole: &str,
) -> Result<usize, BuildError> {
    loop {
        if i >= chars.len() {
            return Err(BuildError::Syntax(format!(
                "unexpected end of statement while looking for matching double-quote in {whole}"
            )));
        }
        let d = chars[i];
        if d == '"' {
            return Ok(i + 1);
        }
        if d == escape && i + 1 < chars.len() {
            let n = chars[i + 1];
            if n == '"' || n == '$' || n == escape {
                cur.push(n);
            } else {
                cur.push(d);
                cur.push(n);
            }
            i += 2;
        } else if d == '$' {
            i = dollar(chars, i, escape, env, cur, depth)?;
        } else {
            cur.push(d);
            i += 1;
        }
    }
}

/// Expands the `$…` at `chars[i]`; returns the index after it.
fn dollar(
    chars: &[char],
    i: usize,
    escape: char,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    depth: usize,
) -> Result<usize, BuildError> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut j = i + 1;
    if j < chars.len() && chars[j] == '{' {
        j += 1;
        let start = j;
        while j < chars.len() && name_char(chars[j]) {
            j += 1;
        }
        let name: String = chars[start..j].iter().collect();
        if name.is_empty() {
            return Err(BuildError::Syntax(
                "bad substitution: missing variable name".into(),
            ));
        }
        if j >= chars.len() {
            return Err(BuildError::Syntax(format!("missing '}}' for ${{{name}")));
        }
        if chars[j] == '}' {
            out.push_str(&env(&name).unwrap_or_default());
            return Ok(j + 1);
        }
        // A modifier: `:-`, `:+`, `:?`, `-`, `+`, `?`.
        let colon = chars[j] == ':';
        if colon {
            j += 1;
        }
        let op = chars.get(j).copied().unwrap_or('}');
        if !matches!(op, '-' | '+' | '?') {
            return Err(BuildError::Syntax(format!(
                "unsupported modifier ({op}) in substitution"
            )));
        }
        j += 1;
        // The word runs to the matching `}`, and is itself expanded.
        let wstart = j;
        let mut braces = 1;
        while j < chars.len() {
            match chars[j] {
                '{' => braces += 1,
                '}' => {
                    braces -= 1;
                    if braces == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        if j >= chars.len() {
            return Err(BuildError::Syntax(format!("missing '}}' for ${{{name}")));
        }
        let word: String = chars[wstart..j].iter().collect();
        let word = process(&word, escape, env, false, depth + 1)?.join("");
        let val = env(&name);
        let set = match (&val, colon) {
            (Some(v), true) => !v.is_empty(),
            (Some(_), false) => true,
            (None, _) => false,
        };
        match op {
            '-' => out.push_str(&if set { val.unwrap_or_default() } else { word }),
            '+' => {
                if set {
                    out.push_str(&word)
                }
            }
            _ => {
                if !set {
                    return Err(BuildError::Syntax(format!("{name}: {word}")));
                }
                out.push_str(&val.unwrap_or_default());
            }
        }
        return Ok(j + 1);
    }
    let start = j;
    while j < chars.len() && name_char(chars[j]) {
        j += 1;
    }
    if j == start {
        out.push('$');
        return Ok(i + 1);
    }
    let name: String = chars[start..j].iter().collect();
    out.push_str(&env(&name).unwrap_or_default());
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("apple".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("two words".into()),
            _ => None,
        }
    }

    fn x(s: &str) -> String {
        expand(s, '\\', &env).unwrap()
    }

    #[test]
    fn substitutions_as_docker() {
        assert_eq!(x("$A/${A}x"), "apple/applex");
        assert_eq!(x("${NOPE:-dflt} ${EMPTY:-e} ${EMPTY-e}"), "dflt e ");
        assert_eq!(x("${A:+alt} ${NOPE:+alt}|${EMPTY+set}"), "alt |set");
        assert_eq!(x("${NOPE:-${A}}"), "apple");
        assert_eq!(x("cost: $5 and $"), "cost:  and $");
        assert!(expand("${NOPE:?must be set}", '\\', &env)
            .unwrap_err()
            .to_string()
            .contains("must be set"));
        assert!(expand("${A", '\\', &env).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(x(r#""$A" '$A' \$A"#), "apple $A $A");
        assert_eq!(x(r#""a \"q\" \$A""#), r#"a "q" $A"#);
        assert_eq!(x("/my\\ dir"), "/my dir");
        assert!(expand("'open", '\\', &env).is_err());
        assert_eq!(expand("`$A", '`', &env).unwrap(), "$A");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = |n: usize| format!("{}x{}", "${NOPE:-".repeat(n), "}".repeat(n));
        assert_eq!(x(&deep(MAX_NESTING)), "x");
        // Deep enough to overflow a 2 MiB thread stack before the bound existed.
        let e = expand(&deep(5000), '\\', &env).unwrap_err().to_string();
        assert!(e.contains("nested more than"), "{e}");
        let e = expand_words(&format!("\"{}\"", deep(5000)), '\\', &env).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
    }

    #[test]
    fn words_split_on_unquoted_space() {
        let w = expand_words(r#"A=1 B="two words" $SP ''"#, '\\', &env).unwrap();
        assert_eq!(w, ["A=1", "B=two words", "two", "words", ""]);
    }
}
