//! Docker-style output: aligned tables and Go templates (`--format`), one engine
//! for every command.

use crate::gotmpl::Template;
use anyhow::Result;
use serde_json::Value as J;

/// A parsed Go template (our own engine: Go's printing and docker's functions).
pub struct Tmpl(Template);

impl Tmpl {
    pub fn parse(tmpl: &str) -> Result<Self> {
        Ok(Tmpl(Template::parse(tmpl)?))
    }

    pub fn render(&self, ctx: &J) -> Result<String> {
        Ok(self.0.render(ctx)?)
    }
}

/// Renders one Go template against `ctx`.
pub fn render(tmpl: &str, ctx: &J) -> Result<String> {
    Tmpl::parse(tmpl)?.render(ctx)
}

/// Docker lets users type `\t` and `\n` in formats.
fn unescape(f: &str) -> String {
    f.replace("\\t", "\t").replace("\\n", "\n")
}

/// Aligns tab-separated cells the way Go's tabwriter does for docker (padding 3).
pub fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let ncol = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; ncol];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints `rows` with a user's `--format` (or `default`, a `table …` template).
/// `headers` maps field names to column titles for `table` formats.
/// A `--format` as the template it stands for: `json` is `{{json .}}`, and
/// `\t`/`\n` typed by the user are real ones.
fn normalize(format: &str) -> String {
    if format == "json" {
        "{{json .}}".to_string()
    } else {
        unescape(format)
    }
}

/// The template of a line-per-item `--format` (`berth events`), parsed once;
/// None when the user gave none.
pub fn line_template(format: &str) -> Result<Option<Tmpl>> {
    match format {
        "" => Ok(None),
        f => Tmpl::parse(&normalize(f)).map(Some),
    }
}

pub fn print_rows(format: &str, default: &str, rows: &[J], headers: &[(&str, &str)]) -> Result<()> {
    let f = if format.is_empty() || format == "table" {
        default
    } else {
        format
    };
    let f = normalize(f);
    if let Some(rest) = f.strip_prefix("table") {
        let rest = rest.trim_start();
        let mut hctx = serde_json::Map::new();
        for (k, v) in headers {
            hctx.insert(k.to_string(), J::String(v.to_string()));
        }
        let t = Tmpl::parse(rest)?;
        let mut lines = vec![t.render(&J::Object(hctx))?];
        for r in rows {
            lines.push(t.render(r)?);
        }
        print!("{}", align(&lines));
    } else {
        let t = Tmpl::parse(&f)?;
        let mut out = String::new();
        for r in rows {
            out.push_str(&t.render(r)?);
            out.push('\n');
        }
        print!("{out}");
    }
    Ok(())
}

pub use berth_util::units::{bytes_size, human_size};

/// "5 seconds ago", for CREATED columns.
pub fn ago(unix: i64) -> String {
    let secs = chrono::Utc::now().timestamp() - unix;
    format!("{} ago", human_duration(secs))
}

pub use berth_util::gotime::human_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_and_functions() {
        let ctx = json!({"ID": "abc", "Names": ["x", "y"], "Config": {"Cmd": ["sh", "-c"]}});
        assert_eq!(render("{{.ID}}", &ctx).unwrap(), "abc");
        assert_eq!(render("{{join .Names \",\"}}", &ctx).unwrap(), "x,y");
        assert_eq!(
            render("{{json .Config.Cmd}}", &ctx).unwrap(),
            "[\"sh\",\"-c\"]"
        );
        assert_eq!(render("{{upper .ID}}", &ctx).unwrap(), "ABC");
        assert_eq!(render("{{index .Names 1}}", &ctx).unwrap(), "y");
        assert_eq!(
            render("{{range .Names}}[{{.}}]{{end}}", &ctx).unwrap(),
            "[x][y]"
        );
        assert!(render("{{.ID", &ctx).is_err());
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let out = align(&["A\tBB\tC".into(), "long\tx\ty".into()]);
        assert_eq!(out, "A      BB   C\nlong   x    y\n");
    }

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(2_000_000.0), "2MB");
        assert_eq!(human_size(1_981_440.0), "1.98MB");
        assert_eq!(human_size(512.0), "512B");
        assert_eq!(human_size(4096.0), "4.1kB");
        assert_eq!(bytes_size(64.0 * 1048576.0), "64MiB");
        assert_eq!(bytes_size(1_234_567.0), "1.177MiB");
        assert_eq!(bytes_size(0.0), "0B");
    }
}
