//! Go's `text/template`, the subset docker's `--format` uses, over JSON values:
//! fields (`.A.B`, `$x.A`), pipelines, variables, `if`/`else if`/`else`,
//! `range` (with `$i, $e :=`), `with`, comments, `{{-`/`-}}` trimming, and
//! Go's builtins plus docker's functions (`json`, `join`, `split`, `lower`,
//! `upper`, `title`, `pad`, `truncate`, `println`). Values print as Go prints
//! them: `[a b]` for lists, `map[k:v]` for maps, `<no value>` for missing keys.

use serde_json::Value;
use std::fmt::Write;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template parsing error: template: :{line}: {msg}")]
    Parse { line: usize, msg: String },
    #[error("template: :{line}: executing \"\" at <{at}>: {msg}")]
    Exec {
        line: usize,
        at: String,
        msg: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),       // .A.B  (empty: `.`)
    Var(String, Vec<String>), // $x.A
    Ident(String),
    Str(String),
    Num(Value),
    Pipe,
    LParen,
    RParen,
    Declare, // :=
    Assign,  // =
    Comma,
}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Value),
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Command {
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
struct Pipeline {
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Command>,
    line: usize,
    text: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

// ------------------------------------------------------------------ lexing

/// Splits the source into text and actions, applying `{{-` / `-}}` trims.
fn split(src: &str) -> Result<Vec<(bool, String, usize)>, TemplateError> {
    let mut out: Vec<(bool, String, usize)> = Vec::new();
    let mut rest = src;
    let mut line = 1;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_string();
        let after = &rest[open + 2..];
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end().to_string();
        }
        line += rest[..open].matches('\n').count();
        if !text.is_empty() {
            out.push((false, text, line));
        }
        let body_start = if trim_left { 1 } else { 0 };
        let Some(close) = find_close(&after[body_start..]) else {
            return Err(TemplateError::Parse {
                line,
                msg: "unclosed action".into(),
            });
        };
        let mut body = &after[body_start..body_start + close];
        let mut trim_right = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            trim_right = true;
            body = &body[..body.len() - 1];
        }
        out.push((true, body.to_string(), line));
        line += body.matches('\n').count();
        rest = &after[body_start + close + 2..];
        if trim_right {
            rest = rest.trim_start();
        }
    }
    if !rest.is_empty() {
        out.push((false, rest.to_string(), line));
    }
    Ok(out)
}

/// The `}}` that ends an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex(src: &str, line: usize) -> Result<Vec<Tok>, TemplateError> {
    let err = |msg: String| TemplateError::Parse { line, msg };
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let path = |chars: &[char], i: &mut usize| -> Vec<String> {
        let mut parts = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < chars.len() && ident_char(chars[*i]) {
                *i += 1;
            }
            if *i > start {
                parts.push(chars[start..*i].iter().collect());
            }
        }
        parts
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                toks.push(Tok::RParen);
                i += 1;
                // A field of a parenthesized pipeline: `(index .X 0).Name`.
                if i < chars.len() && chars[i] == '.' {
                    let p = path(&chars, &mut i);
                    toks.push(Tok::Field(p));
                    toks.push(Tok::Ident("\u{0}chain".into()));
                }
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '.' => {
                let p = path(&chars, &mut i);
                toks.push(Tok::Field(p));
            }
            '$' => {
                i += 1;
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let p = path(&chars, &mut i);
                toks.push(Tok::Var(name, p));
            }
            '"' => {
                let mut j = i + 1;
                let mut raw = String::from("\"");
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        raw.push(chars[j]);
                        j += 1;
                    }
                    raw.push(chars[j]);
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(err("unterminated quoted string".into()));
                }
                raw.push('"');
                let s: String =
                    serde_json::from_str(&raw).map_err(|_| err(format!("bad string {raw}")))?;
                toks.push(Tok::Str(s));
                i = j + 1;
            }
            '`' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '`' {
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(err("unterminated raw quoted string".into()));
                }
                toks.push(Tok::Str(chars[i + 1..j].iter().collect()));
                i = j + 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let t: String = chars[start..i].iter().collect();
                let v = t
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| t.parse::<f64>().map(Value::from))
                    .map_err(|_| err(format!("bad number syntax: {t:?}")))?;
                toks.push(Tok::Num(v));
            }
            c if ident_char(c) => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(err(format!("unexpected {other:?} in command"))),
        }
    }
    Ok(toks)
}

// ------------------------------------------------------------------ parsing

const FUNCS: [&str; 26] = [
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge", "json", "join", "split", "lower", "upper", "title", "pad", "truncate", "slice", "html",
    "js", "urlquery",
];

/// How deeply actions (`if`, `range`, `with`, `else if` chains) and
/// parentheses may nest. Parsing and execution recurse once per level; a
/// `--format` string must get an error, never overflow the stack.
const MAX_DEPTH: usize = 200;

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    line: usize,
    parens: usize,
}

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> TemplateError {
        TemplateError::Parse {
            line: self.line,
            msg: msg.into(),
        }
    }

    fn pipeline(&mut self, text: &str) -> Result<Pipeline, TemplateError> {
        let mut decl = Vec::new();
        let mut assign = false;
        // `$x :=`, `$i, $e :=`, `$x =`
        let save = self.pos;
        let mut vars = Vec::new();
        while let Some(Tok::Var(n, p)) = self.toks.get(self.pos) {
            if !p.is_empty() {
                break;
            }
            vars.push(n.clone());
            self.pos += 1;
            if self.toks.get(self.pos) == Some(&Tok::Comma) {
                self.pos += 1;
                continue;
            }
            break;
        }
        match self.toks.get(self.pos) {
            Some(Tok::Declare) if !vars.is_empty() => {
                decl = vars;
                self.pos += 1;
            }
            Some(Tok::Assign) if vars.len() == 1 => {
                decl = vars;
                assign = true;
                self.pos += 1;
            }
            _ => self.pos = save,
        }
        let mut cmds = Vec::new();
        loop {
            let mut args = Vec::new();
            while let Some(t) = self.toks.get(self.pos) {
                match t {
                    Tok::Pipe | Tok::RParen => break,
                    _ => args.push(self.operand()?),
                }
            }
            if args.is_empty() {
                return Err(self.err("missing value for command"));
            }
            cmds.push(Command { args });
            if self.toks.get(self.pos) == Some(&Tok::Pipe) {
                self.pos += 1;
                continue;
            }
            break;
        }
        Ok(Pipeline {
            decl,
            assign,
            cmds,
            line: self.line,
            text: text.trim().to_string(),
        })
    }

    fn operand(&mut self) -> Result<Arg, TemplateError> {
        let t = self.toks[self.pos].clone();
        self.pos += 1;
        Ok(match t {
            Tok::Field(p) => Arg::Field(p),
            Tok::Var(n, p) => Arg::Var(n, p),
            Tok::Str(s) => Arg::Lit(Value::String(s)),
            Tok::Num(n) => Arg::Lit(n),
            Tok::Ident(i) => match i.as_str() {
                "true" => Arg::Lit(Value::Bool(true)),
                "false" => Arg::Lit(Value::Bool(false)),
                "nil" => Arg::Lit(Value::Null),
                f if FUNCS.contains(&f) => Arg::Func(i),
                f => return Err(self.err(format!("function {f:?} not defined"))),
            },
            Tok::LParen => {
                self.parens += 1;
                if self.parens > MAX_DEPTH {
                    return Err(self.err(format!("parentheses nested more than {MAX_DEPTH} deep")));
                }
                let p = self.pipeline("")?;
                self.parens -= 1;
                if self.toks.get(self.pos) != Some(&Tok::RParen) {
                    return Err(self.err("unclosed left paren"));
                }
                self.pos += 1;
                let mut chain = Vec::new();
                if let (Some(Tok::Field(f)), Some(Tok::Ident(m))) =
                    (self.toks.get(self.pos), self.toks.get(self.pos + 1))
                {
                    if m == "\u{0}chain" {
                        chain = f.clone();
                        self.pos += 2;
                    }
                }
                Arg::Sub(Box::new(p), chain)
            }
            other => return Err(self.err(format!("unexpected {other:?} in operand"))),
        })
    }
}

enum Item {
    Node(Node),
    Else(Option<Pipeline>, bool), // `else`, `else if p` (bool: is `else with`)
    End,
}

fn parse_action(body: &str, line: usize) -> Result<Option<Item>, TemplateError> {
    let t = body.trim();
    if t.starts_with("/*") {
        return Ok(None);
    }
    let toks = lex(t, line)?;
    let mut p = Parser {
        toks: &toks,
        pos: 0,
        line,
        parens: 0,
    };
    let kw = match toks.first() {
        Some(Tok::Ident(k)) => k.as_str(),
        _ => "",
    };
    let rest_text = t
        .split_once(char::is_whitespace)
        .map(|(_, r)| r)
        .unwrap_or("");
    let item = match kw {
        "end" => Item::End,
        "else" => {
            p.pos = 1;
            match toks.get(1) {
                None => Item::Else(None, false),
                Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                    p.pos = 2;
                    let with = k == "with";
                    let inner = rest_text.trim_start()[k.len()..].to_string();
                    Item::Else(Some(p.pipeline(&inner)?), with)
                }
                _ => return Err(p.err("unexpected tokens after else")),
            }
        }
        "if" | "range" | "with" => {
            p.pos = 1;
            let pl = p.pipeline(rest_text)?;
            let node = match kw {
                "if" => Node::If(pl, vec![], vec![]),
                "range" => Node::Range(pl, vec![], vec![]),
                _ => Node::With(pl, vec![], vec![]),
            };
            Item::Node(node)
        }
        "define" | "template" | "block" | "break" | "continue" => {
            return Err(p.err(format!("{kw} is not supported")));
        }
        _ => Item::Node(Node::Action(p.pipeline(t)?)),
    };
    if p.pos < toks.len() && !matches!(item, Item::End) {
        return Err(p.err(format!("unexpected {:?} in command", toks[p.pos])));
    }
    Ok(Some(item))
}

type Items = std::iter::Peekable<std::vec::IntoIter<(Item, usize)>>;
/// The nodes of a list, and the `end`/`else` that closed it (none at EOF).
type Parsed = (Vec<Node>, Option<(Item, usize)>);

/// Parses items into nodes until `end`/`else` (returned) or the input ends.
fn parse_list(items: &mut Items, depth: usize) -> Result<Parsed, TemplateError> {
    let mut nodes = Vec::new();
    while let Some((item, line)) = items.next() {
        match item {
            Item::Node(Node::If(p, _, _)) => nodes.push(block(items, line, depth, &|a, b| {
                Node::If(p.clone(), a, b)
            })?),
            Item::Node(Node::Range(p, _, _)) => nodes.push(block(items, line, depth, &|a, b| {
                Node::Range(p.clone(), a, b)
            })?),
            Item::Node(Node::With(p, _, _)) => nodes.push(block(items, line, depth, &|a, b| {
                Node::With(p.clone(), a, b)
            })?),
            Item::Node(n) => nodes.push(n),
            other => return Ok((nodes, Some((other, line)))),
        }
    }
    Ok((nodes, None))
}

fn block(
    items: &mut Items,
    line: usize,
    depth: usize,
    make: &dyn Fn(Vec<Node>, Vec<Node>) -> Node,
) -> Result<Node, TemplateError> {
    if depth >= MAX_DEPTH {
        return Err(TemplateError::Parse {
            line,
            msg: format!("actions nested more than {MAX_DEPTH} deep"),
        });
    }
    let (body, stop) = parse_list(items, depth + 1)?;
    Ok(match stop {
        Some((Item::Else(None, _), _)) => {
            let (els, _) = parse_list(items, depth + 1)?;
            make(body, els)
        }
        Some((Item::Else(Some(p), with), l)) => {
            // `else if p` is an `if` nested in the else branch, sharing the `end`.
            let inner = if with {
                block(items, l, depth + 1, &|a, b| Node::With(p.clone(), a, b))?
            } else {
                block(items, l, depth + 1, &|a, b| Node::If(p.clone(), a, b))?
            };
            make(body, vec![inner])
        }
        Some((Item::End, _)) => make(body, vec![]),
        _ => make(body, vec![Node::Text("\u{0}unclosed".into())]),
    })
}

fn contains_unclosed(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match n {
        Node::Text(t) => t == "\u{0}unclosed",
        Node::If(_, a, b) | Node::Range(_, a, b) | Node::With(_, a, b) => {
            contains_unclosed(a) || contains_unclosed(b)
        }
        Node::Action(_) => false,
    })
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut items = Vec::new();
        for (is_action, body, line) in split(src)? {
            if !is_action {
                items.push((Item::Node(Node::Text(body)), line));
            } else if let Some(item) = parse_action(&body, line)? {
                items.push((item, line));
            }
        }
        let last_line = items.last().map(|(_, l)| *l).unwrap_or(1);
        let mut it = items.into_iter().peekable();
        let (nodes, stop) = parse_list(&mut it, 0)?;
        if let Some((item, line)) = stop {
            let what = match item {
                Item::End => "end",
                _ => "else",
            };
            return Err(TemplateError::Parse {
                line,
                msg: format!("unexpected {{{{{what}}}}}"),
            });
        }
        if contains_unclosed(&nodes) {
            return Err(TemplateError::Parse {
                line: last_line,
                msg: "unexpected EOF".into(),
            });
        }
        Ok(Template { nodes })
    }

    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut vars = vec![("".to_string(), data.clone())];
        exec(&self.nodes, data, &mut vars, &mut out)?;
        Ok(out)
    }
}

// ------------------------------------------------------------------ execution

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

fn truthy(v: &Value) -> bool {
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
const NO_VALUE: &str = "\u{0}novalue";

fn field(v: &Value, path: &[String]) -> Value {
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

fn exec(
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

fn is_no_value(v: &Value) -> bool {
    v.as_str() == Some(NO_VALUE)
}

fn printable(v: &Value) -> String {
    if is_no_value(v) {
        "<no value>".into()
    } else {
        go_print(v)
    }
}

fn exec_err(p: &Pipeline, msg: String) -> TemplateError {
    TemplateError::Exec {
        line: p.line,
        at: p.text.clone(),
        msg,
    }
}

fn eval_pipeline(
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

fn eval_arg(
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

fn eval_command(
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

fn text(v: &Value) -> String {
    printable(v)
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (num(a), num(b)) {
        (Some(x), Some(y)) if !(a.is_string() && b.is_string()) => x.partial_cmp(&y),
        _ => Some(text(a).cmp(&text(b))),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: %s %v %d %q %t %f %x, widths.
fn sprintf(fmt: &str, args: &[Value]) -> String {
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

fn call(p: &Pipeline, f: &str, a: &[Value]) -> Result<Value, TemplateError> {
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
            Value::from(match &a[0] {
                Value::Array(v) => v.len(),
                Value::Object(o) => o.len(),
                Value::String(s) => s.len(),
                other => {
                    return Err(exec_err(
                        p,
                        format!("error calling len: len of type {}", go_print(other)),
                    ))
                }
            })
        }
        "index" => {
            need(1)?;
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
            cur
        }
        "slice" => {
            need(1)?;
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
        "json" => {
            need(1)?;
            let v = if is_no_value(&a[0]) {
                Value::Null
            } else {
                a[0].clone()
            };
            Value::String(serde_json::to_string(&v).unwrap_or_default())
        }
        "join" => {
            need(2)?;
            let sep = text(&a[1]);
            Value::String(match &a[0] {
                Value::Array(v) => v.iter().map(text).collect::<Vec<_>>().join(&sep),
                Value::Null => String::new(),
                other => text(other),
            })
        }
        "split" => {
            need(2)?;
            Value::Array(
                text(&a[0])
                    .split(text(&a[1]).as_str())
                    .map(|s| Value::String(s.into()))
                    .collect(),
            )
        }
        "lower" => {
            need(1)?;
            Value::String(text(&a[0]).to_lowercase())
        }
        "upper" => {
            need(1)?;
            Value::String(text(&a[0]).to_uppercase())
        }
        "title" => {
            need(1)?;
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
            need(3)?;
            let l = num(&a[1]).unwrap_or(0.0) as usize;
            let r = num(&a[2]).unwrap_or(0.0) as usize;
            Value::String(format!("{}{}{}", " ".repeat(l), text(&a[0]), " ".repeat(r)))
        }
        "truncate" => {
            need(2)?;
            let n = num(&a[1]).unwrap_or(0.0) as usize;
            Value::String(text(&a[0]).chars().take(n).collect())
        }
        "html" | "js" | "urlquery" => Value::String(go_sprint(a)),
        other => return Err(exec_err(p, format!("function {other:?} not defined"))),
    })
}

/// Go's `fmt.Sprint`: spaces only between operands that are not both strings.
fn go_sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !(a[i - 1].is_string() && v.is_string()) {
            out.push(' ');
        }
        out.push_str(&text(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    fn ctx() -> Value {
        json!({
            "Id": "abc", "Names": ["x", "y"], "Count": 3, "Running": true, "Empty": [],
            "Config": {"Cmd": ["sh", "-c", "a && b"], "Labels": {"b": "2", "a": "1"}, "Env": null},
            "State": {"Pid": 1234, "Health": null}
        })
    }

    #[test]
    fn fields_print_as_go_prints_them() {
        let c = ctx();
        assert_eq!(r("{{.Id}} {{.Count}} {{.Running}}", &c), "abc 3 true");
        assert_eq!(r("{{.Config.Cmd}}", &c), "[sh -c a && b]");
        assert_eq!(r("{{.Config.Labels}}", &c), "map[a:1 b:2]");
        assert_eq!(
            r("{{.Config.Env}} {{.Nope}} {{.State.Health}}", &c),
            "<nil> <no value> <nil>"
        );
        assert_eq!(r("{{json .Config.Cmd}}", &c), r#"["sh","-c","a && b"]"#);
        assert_eq!(r("{{json .Config.Labels}}", &c), r#"{"a":"1","b":"2"}"#);
    }

    #[test]
    fn control_flow() {
        let c = ctx();
        assert_eq!(r("{{range .Names}}[{{.}}]{{end}}", &c), "[x][y]");
        assert_eq!(
            r("{{range $i, $n := .Names}}{{$i}}={{$n}} {{end}}", &c),
            "0=x 1=y "
        );
        assert_eq!(
            r("{{range $k, $v := .Config.Labels}}{{$k}}{{$v}}{{end}}", &c),
            "a1b2"
        );
        assert_eq!(r("{{range .Empty}}x{{else}}none{{end}}", &c), "none");
        assert_eq!(r("{{if .Running}}up{{else}}down{{end}}", &c), "up");
        assert_eq!(
            r(
                "{{if not .Running}}a{{else if eq .Count 3}}b{{else}}c{{end}}",
                &c
            ),
            "b"
        );
        assert_eq!(r("{{with .State}}{{.Pid}}{{end}}", &c), "1234");
        assert_eq!(
            r("{{with .State.Health}}h{{else}}no health{{end}}", &c),
            "no health"
        );
        assert_eq!(r("{{$x := .Id}}{{$x}}-{{$x}}", &c), "abc-abc");
        assert_eq!(r("a {{- /* note */ -}} b", &c), "ab");
        assert_eq!(r("  {{- .Id -}}  \n", &c), "abc");
    }

    #[test]
    fn functions() {
        let c = ctx();
        assert_eq!(r("{{join .Names \",\"}}", &c), "x,y");
        assert_eq!(
            r("{{index .Names 1}} {{index .Config.Labels \"a\"}}", &c),
            "y 1"
        );
        assert_eq!(r("{{upper .Id | lower}}", &c), "abc");
        assert_eq!(r("{{.Id | printf \"%5s|\"}}", &c), "  abc|");
        assert_eq!(r("{{printf \"%-4s|%d\" .Id .Count}}", &c), "abc |3");
        assert_eq!(r("{{title \"hello world\"}}", &c), "Hello World");
        assert_eq!(r("{{split \"a:b\" \":\"}}", &c), "[a b]");
        assert_eq!(r("{{pad .Id 1 2}}|", &c), " abc  |");
        assert_eq!(r("{{truncate .Id 2}}", &c), "ab");
        assert_eq!(r("{{println .Id}}", &c), "abc\n");
        assert_eq!(r("{{len .Names}} {{len .Config.Labels}}", &c), "2 2");
        assert_eq!(r("{{(index .Config.Cmd 0)}}", &c), "sh");
        assert_eq!(r("{{if and .Running (gt .Count 2)}}yes{{end}}", &c), "yes");
        assert_eq!(r("{{slice .Id 1}}", &c), "bc");
    }

    #[test]
    fn errors_look_like_go() {
        let e = Template::parse("{{.Id").unwrap_err().to_string();
        assert!(
            e.starts_with("template parsing error: template: :1:"),
            "{e}"
        );
        let e = Template::parse("{{nosuch .Id}}").unwrap_err().to_string();
        assert!(e.contains("function \"nosuch\" not defined"), "{e}");
        assert!(Template::parse("{{if .A}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        let e = Template::parse("{{index .Names 5}}")
            .unwrap()
            .render(&ctx())
            .unwrap_err();
        assert!(e.to_string().contains("index out of range"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let ifs = |n: usize| format!("{}x{}", "{{if .A}}".repeat(n), "{{end}}".repeat(n));
        assert_eq!(r(&ifs(MAX_DEPTH), &ctx()), "x");
        let e = Template::parse(&ifs(100_000)).unwrap_err().to_string();
        assert!(e.contains("nested more than"), "{e}");
        let elifs = format!(
            "{{{{if .Nope}}}}{}y{{{{end}}}}",
            "{{else if .Nope}}".repeat(100_000)
        );
        assert!(Template::parse(&elifs)
            .unwrap_err()
            .to_string()
            .contains("nested"));
        let parens = format!("{{{{{}.A{}}}}}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(Template::parse(&parens)
            .unwrap_err()
            .to_string()
            .contains("nested"));
        let ok = format!("{{{{{}.A{}}}}}", "(".repeat(50), ")".repeat(50));
        assert!(Template::parse(&ok).is_ok());
    }
}
