//! Docker-style output: aligned tables and Go templates (`--format`), one engine
//! for every command.

use anyhow::{anyhow, Result};
use gtmpl_value::{FuncError, Number, Value};
use serde_json::Value as J;
use std::collections::HashMap;

pub fn to_gtmpl(v: &J) -> Value {
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                Value::Number(Number::from(n.as_f64().unwrap_or(0.0)))
            }
        }
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(to_gtmpl).collect()),
        J::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_gtmpl(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn to_json(v: &Value) -> J {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::String(s) => J::String(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map(J::from)
            .or_else(|| n.as_u64().map(J::from))
            .or_else(|| n.as_f64().map(J::from))
            .unwrap_or(J::Null),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            J::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), to_json(&o[k])))
                    .collect(),
            )
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::AtLeastXArgs(name.into(), i + 1))
}

fn f_json(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(to_json(arg(a, 0, "json")?).to_string()))
}
fn f_join(a: &[Value]) -> Result<Value, FuncError> {
    let sep = s(arg(a, 1, "join")?);
    Ok(Value::String(match arg(a, 0, "join")? {
        Value::Array(v) => v.iter().map(s).collect::<Vec<_>>().join(&sep),
        other => s(other),
    }))
}
fn f_lower(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(s(arg(a, 0, "lower")?).to_lowercase()))
}
fn f_upper(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(s(arg(a, 0, "upper")?).to_uppercase()))
}
fn f_title(a: &[Value]) -> Result<Value, FuncError> {
    let t = s(arg(a, 0, "title")?);
    Ok(Value::String(
        t.split(' ')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" "),
    ))
}
fn f_split(a: &[Value]) -> Result<Value, FuncError> {
    let t = s(arg(a, 0, "split")?);
    let sep = s(arg(a, 1, "split")?);
    Ok(Value::Array(
        t.split(sep.as_str())
            .map(|p| Value::String(p.into()))
            .collect(),
    ))
}
fn f_pad(a: &[Value]) -> Result<Value, FuncError> {
    let t = s(arg(a, 0, "pad")?);
    let n = |v: &Value| v.to_string().parse::<usize>().unwrap_or(0);
    let (l, r) = (n(arg(a, 1, "pad")?), n(arg(a, 2, "pad")?));
    Ok(Value::String(format!(
        "{}{}{}",
        " ".repeat(l),
        t,
        " ".repeat(r)
    )))
}
fn f_truncate(a: &[Value]) -> Result<Value, FuncError> {
    let t = s(arg(a, 0, "truncate")?);
    let n = arg(a, 1, "truncate")?
        .to_string()
        .parse::<usize>()
        .unwrap_or(0);
    Ok(Value::String(t.chars().take(n).collect()))
}

/// A parsed Go template with docker's extra functions.
pub struct Tmpl(gtmpl::Template);

impl Tmpl {
    pub fn parse(tmpl: &str) -> Result<Self> {
        let mut t = gtmpl::Template::default();
        t.add_funcs(&[
            ("json", f_json as gtmpl_value::Func),
            ("join", f_join),
            ("lower", f_lower),
            ("upper", f_upper),
            ("title", f_title),
            ("split", f_split),
            ("pad", f_pad),
            ("truncate", f_truncate),
        ]);
        t.parse(tmpl)
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Tmpl(t))
    }

    pub fn render(&self, ctx: &J) -> Result<String> {
        self.0
            .render(&gtmpl::Context::from(to_gtmpl(ctx)))
            .map_err(|e| anyhow!("template: {e}"))
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
pub fn print_rows(format: &str, default: &str, rows: &[J], headers: &[(&str, &str)]) -> Result<()> {
    let f = if format.is_empty() || format == "table" {
        default.to_string()
    } else {
        format.to_string()
    };
    let f = if f == "json" {
        "{{json .}}".to_string()
    } else {
        f
    };
    let f = unescape(&f);
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

/// Docker's `units.HumanSize` (decimal, 3 significant digits): "1.98MB".
pub fn human_size(n: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // Go's %.3g: three significant digits, trailing zeros dropped.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let t = format!("{v:.digits$}");
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    };
    format!("{t}{}", units[i])
}

/// "5 seconds ago", for CREATED columns.
pub fn ago(unix: i64) -> String {
    let secs = chrono::Utc::now().timestamp() - unix;
    format!("{} ago", human_duration(secs))
}

pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        _ => {
            let m = s / 60;
            if m == 1 {
                return "About a minute".into();
            }
            if m < 60 {
                return format!("{m} minutes");
            }
            let h = ((s as f64) / 3600.0 + 0.5) as i64;
            if h == 1 {
                "About an hour".into()
            } else if h < 48 {
                format!("{h} hours")
            } else if h < 24 * 7 * 2 {
                format!("{} days", h / 24)
            } else if h < 24 * 30 * 2 {
                format!("{} weeks", h / 24 / 7)
            } else if h < 24 * 365 * 2 {
                format!("{} months", h / 24 / 30)
            } else {
                format!("{} years", h / 24 / 365)
            }
        }
    }
}

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
    }
}
