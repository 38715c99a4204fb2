//! The functions a template may call (Go's builtins and the docker CLI's).

use super::*;

pub(super) fn text(v: &Value) -> String {
    printable(v)
}

pub(super) fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (num(a), num(b)) {
        (Some(x), Some(y)) if !(a.is_string() && b.is_string()) => x.partial_cmp(&y),
        _ => Some(text(a).cmp(&text(b))),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: %s %v %d %q %t %f %x, widths.
pub(super) fn sprintf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        if i < chars.len() && chars[i] == '%' {
            out.push('%');
            i += 1;
            continue;
        }
        let mut spec = String::new();
        while i < chars.len()
            && (chars[i].is_ascii_digit() || matches!(chars[i], '-' | '.' | '+' | ' '))
        {
            spec.push(chars[i]);
            i += 1;
        }
        let verb = chars.get(i).copied().unwrap_or('v');
        i += 1;
        let a = it.next().cloned().unwrap_or(Value::Null);
        let s = match verb {
            'q' => serde_json::to_string(&text(&a)).unwrap_or_default(),
            'd' => num(&a)
                .map(|f| format!("{}", f as i64))
                .unwrap_or_else(|| text(&a)),
            'f' => {
                let prec = spec
                    .split('.')
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(6);
                format!("{:.*}", prec, num(&a).unwrap_or(0.0))
            }
            'x' => num(&a)
                .map(|f| format!("{:x}", f as i64))
                .unwrap_or_else(|| text(&a).bytes().map(|b| format!("{b:02x}")).collect()),
            _ => text(&a),
        };
        let width: usize = spec
            .trim_start_matches('-')
            .split('.')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        if spec.starts_with('-') {
            let _ = write!(out, "{s:<width$}");
        } else {
            let _ = write!(out, "{s:>width$}");
        }
    }
    out
}

pub(super) fn call(p: &Pipeline, f: &str, a: &[Value]) -> Result<Value, TemplateError> {
    let need = |n: usize| -> Result<(), TemplateError> {
        if a.len() < n {
            Err(exec_err(
                p,
                format!(
                    "error calling {f}: wrong number of args for {f}: want {n} got {}",
                    a.len()
                ),
            ))
        } else {
            Ok(())
        }
    };
    Ok(match f {
        "and" => {
            need(1)?;
            a.iter()
                .find(|v| !truthy(v))
                .unwrap_or(&a[a.len() - 1])
                .clone()
        }
        "or" => {
            need(1)?;
            a.iter()
                .find(|v| truthy(v))
                .unwrap_or(&a[a.len() - 1])
                .clone()
        }
        "not" => {
            need(1)?;
            Value::Bool(!truthy(&a[0]))
        }
        "len" => {
            need(1)?;
            len(p, &a[0])?
        }
        "index" => {
            need(1)?;
            index(p, a)?
        }
        "slice" => {
            need(1)?;
            slice(a)
        }
        "print" => Value::String(go_sprint(a)),
        "println" => Value::String(a.iter().map(text).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            need(1)?;
            Value::String(sprintf(&text(&a[0]), &a[1..]))
        }
        "eq" => {
            need(2)?;
            Value::Bool(
                a[1..]
                    .iter()
                    .any(|b| compare(&a[0], b) == Some(std::cmp::Ordering::Equal)),
            )
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            need(2)?;
            let o = compare(&a[0], &a[1]);
            use std::cmp::Ordering::*;
            Value::Bool(match f {
                "ne" => o != Some(Equal),
                "lt" => o == Some(Less),
                "le" => matches!(o, Some(Less | Equal)),
                "gt" => o == Some(Greater),
                _ => matches!(o, Some(Greater | Equal)),
            })
        }
        "json" | "join" | "split" | "lower" | "upper" | "title" | "pad" | "truncate" => {
            need(match f {
                "pad" => 3,
                "join" | "split" | "truncate" => 2,
                _ => 1,
            })?;
            docker_func(f, a)
        }
        "html" | "js" | "urlquery" => Value::String(go_sprint(a)),
        other => return Err(exec_err(p, format!("function {other:?} not defined"))),
    })
}

/// Go's `len`.
fn len(p: &Pipeline, v: &Value) -> Result<Value, TemplateError> {
    Ok(Value::from(match v {
        Value::Array(v) => v.len(),
        Value::Object(o) => o.len(),
        Value::String(s) => s.len(),
        other => {
            return Err(exec_err(
                p,
                format!("error calling len: len of type {}", go_print(other)),
            ))
        }
    }))
}

/// Go's `index`: into arrays by number, maps by key, one level per argument.
fn index(p: &Pipeline, a: &[Value]) -> Result<Value, TemplateError> {
    let mut cur = a[0].clone();
    for k in &a[1..] {
        cur = match (&cur, k) {
            (Value::Array(v), k) => {
                let i = num(k).unwrap_or(-1.0);
                if i < 0.0 || i as usize >= v.len() {
                    return Err(exec_err(
                        p,
                        format!("error calling index: index out of range: {}", go_print(k)),
                    ));
                }
                v[i as usize].clone()
            }
            (Value::Object(o), k) => o.get(&text(k)).cloned().unwrap_or(Value::Null),
            (Value::Null, _) => Value::Null,
            _ => return Err(exec_err(p, "error calling index: can't index item".into())),
        };
    }
    Ok(cur)
}

/// Go's `slice` of a string or an array.
fn slice(a: &[Value]) -> Value {
    let lo = a.get(1).and_then(num).unwrap_or(0.0) as usize;
    match &a[0] {
        Value::String(s) => {
            let hi = a
                .get(2)
                .and_then(num)
                .map(|h| h as usize)
                .unwrap_or(s.len());
            Value::String(s.get(lo..hi).unwrap_or_default().to_string())
        }
        Value::Array(v) => {
            let hi = a
                .get(2)
                .and_then(num)
                .map(|h| h as usize)
                .unwrap_or(v.len());
            Value::Array(v.get(lo..hi).unwrap_or_default().to_vec())
        }
        _ => Value::Null,
    }
}

/// The functions the docker CLI adds to Go's (`json`, `join`, `title`, …).
fn docker_func(f: &str, a: &[Value]) -> Value {
    match f {
        "json" => {
            let v = if is_no_value(&a[0]) {
                Value::Null
            } else {
                a[0].clone()
            };
            Value::String(serde_json::to_string(&v).unwrap_or_default())
        }
        "join" => {
            let sep = text(&a[1]);
            Value::String(match &a[0] {
                Value::Array(v) => v.iter().map(text).collect::<Vec<_>>().join(&sep),
                Value::Null => String::new(),
                other => text(other),
            })
        }
        "split" => Value::Array(
            text(&a[0])
                .split(text(&a[1]).as_str())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        "lower" => Value::String(text(&a[0]).to_lowercase()),
        "upper" => Value::String(text(&a[0]).to_uppercase()),
        "title" => {
            let t = text(&a[0]);
            let mut out = String::new();
            let mut start = true;
            for c in t.chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric();
            }
            Value::String(out)
        }
        "pad" => {
            let l = num(&a[1]).unwrap_or(0.0) as usize;
            let r = num(&a[2]).unwrap_or(0.0) as usize;
            Value::String(format!("{}{}{}", " ".repeat(l), text(&a[0]), " ".repeat(r)))
        }
        "truncate" => {
            let n = num(&a[1]).unwrap_or(0.0) as usize;
            Value::String(text(&a[0]).chars().take(n).collect())
        }
        _ => Value::Null,
    }
}

/// Go's `fmt.Sprint`: spaces only between operands that are not both strings.
pub(super) fn go_sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !(a[i - 1].is_string() && v.is_string()) {
            out.push(' ');
        }
        out.push_str(&text(v));
    }
    out
}
