//! Go templates, running the tree over a JSON value.

use super::funcs::*;
use super::*;

/// Go's `%v` of a value decoded from JSON.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 1e21 {
                    format!("{f:.0}")
                } else {
                    f.to_string()
                }
            }
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_print(&o[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A missing map key: Go prints `<no value>` for it.
pub(super) const NO_VALUE: &str = "\u{0}novalue";

pub(super) fn field(v: &Value, path: &[String]) -> Value {
    let mut cur = v.clone();
    for p in path {
        cur = match &cur {
            Value::Object(o) => o
                .get(p)
                .cloned()
                .unwrap_or_else(|| Value::String(NO_VALUE.into())),
            _ => return Value::String(NO_VALUE.into()),
        };
    }
    cur
}

pub(super) fn exec(
    nodes: &[Node],
    dot: &Value,
    vars: &mut Vec<(String, Value)>,
    out: &mut String,
) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipeline(p, dot, vars)?;
                if p.decl.is_empty() {
                    out.push_str(&printable(&v));
                }
            }
            Node::If(p, a, b) => {
                let depth = vars.len();
                let v = eval_pipeline(p, dot, vars)?;
                exec(if truthy(&v) { a } else { b }, dot, vars, out)?;
                vars.truncate(depth);
            }
            Node::With(p, a, b) => {
                let depth = vars.len();
                let v = eval_pipeline(p, dot, vars)?;
                if truthy(&v) {
                    exec(a, &v, vars, out)?;
                } else {
                    exec(b, dot, vars, out)?;
                }
                vars.truncate(depth);
            }
            Node::Range(p, a, b) => {
                let depth = vars.len();
                let mut plain = p.clone();
                let names = std::mem::take(&mut plain.decl);
                let v = eval_pipeline(&plain, dot, vars)?;
                let pairs: Vec<(Value, Value)> = match &v {
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (Value::from(i), e.clone()))
                        .collect(),
                    Value::Object(o) => {
                        let mut keys: Vec<&String> = o.keys().collect();
                        keys.sort();
                        keys.into_iter()
                            .map(|k| (Value::String(k.clone()), o[k].clone()))
                            .collect()
                    }
                    Value::Null => vec![],
                    Value::Number(n) => (0..n.as_i64().unwrap_or(0))
                        .map(|i| (Value::from(i), Value::from(i)))
                        .collect(),
                    other if is_no_value(other) => vec![],
                    other => {
                        return Err(exec_err(
                            p,
                            format!("range can't iterate over {}", go_print(other)),
                        ));
                    }
                };
                if pairs.is_empty() {
                    exec(b, dot, vars, out)?;
                }
                for (k, e) in pairs {
                    vars.truncate(depth);
                    match names.as_slice() {
                        [one] => vars.push((one.clone(), e.clone())),
                        [ki, vi] => {
                            vars.push((ki.clone(), k));
                            vars.push((vi.clone(), e.clone()));
                        }
                        _ => {}
                    }
                    exec(a, &e, vars, out)?;
                }
                vars.truncate(depth);
            }
        }
    }
    Ok(())
}

pub(super) fn is_no_value(v: &Value) -> bool {
    v.as_str() == Some(NO_VALUE)
}

pub(super) fn printable(v: &Value) -> String {
    if is_no_value(v) {
        "<no value>".into()
    } else {
        go_print(v)
    }
}

pub(super) fn exec_err(p: &Pipeline, msg: String) -> TemplateError {
    TemplateError::Exec {
        line: p.line,
        at: p.text.clone(),
        msg,
    }
}

pub(super) fn eval_pipeline(
    p: &Pipeline,
    dot: &Value,
    vars: &mut Vec<(String, Value)>,
) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for c in &p.cmds {
        prev = Some(eval_command(p, c, dot, vars, prev)?);
    }
    let v = prev.unwrap_or(Value::Null);
    if !p.decl.is_empty() {
        if p.assign {
            if let Some(slot) = vars.iter_mut().rev().find(|(n, _)| *n == p.decl[0]) {
                slot.1 = v.clone();
            } else {
                return Err(exec_err(p, format!("undefined variable: ${}", p.decl[0])));
            }
        } else {
            vars.push((p.decl[0].clone(), v.clone()));
        }
    }
    Ok(v)
}

pub(super) fn eval_arg(
    p: &Pipeline,
    a: &Arg,
    dot: &Value,
    vars: &mut Vec<(String, Value)>,
) -> Result<Value, TemplateError> {
    Ok(match a {
        Arg::Field(path) => field(dot, path),
        Arg::Var(n, path) => {
            let v = vars
                .iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| exec_err(p, format!("undefined variable: ${n}")))?;
            field(&v, path)
        }
        Arg::Lit(v) => v.clone(),
        Arg::Sub(inner, chain) => field(&eval_pipeline(inner, dot, vars)?, chain),
        Arg::Func(f) => call(p, f, &[])?,
    })
}

pub(super) fn eval_command(
    p: &Pipeline,
    c: &Command,
    dot: &Value,
    vars: &mut Vec<(String, Value)>,
    prev: Option<Value>,
) -> Result<Value, TemplateError> {
    match &c.args[0] {
        Arg::Func(f) => {
            let mut args = Vec::new();
            for a in &c.args[1..] {
                args.push(eval_arg(p, a, dot, vars)?);
            }
            if let Some(v) = prev {
                args.push(v);
            }
            call(p, f, &args)
        }
        first => {
            if c.args.len() > 1 || prev.is_some() {
                return Err(exec_err(p, "can't give argument to non-function".into()));
            }
            eval_arg(p, first, dot, vars)
        }
    }
}
