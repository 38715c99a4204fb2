//! Go templates, text to tree: the lexer and the parser.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
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

/// Splits the source into text and actions, applying `{{-` / `-}}` trims.
pub(super) fn split(src: &str) -> Result<Vec<(bool, String, usize)>, TemplateError> {
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
pub(super) fn find_close(s: &str) -> Option<usize> {
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

pub(super) fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub(super) fn lex(src: &str, line: usize) -> Result<Vec<Tok>, TemplateError> {
    let err = |msg: String| TemplateError::Parse { line, msg };
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
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
                    let p = field_path(&chars, &mut i);
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
                let p = field_path(&chars, &mut i);
                toks.push(Tok::Field(p));
            }
            '$' => {
                i += 1;
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let p = field_path(&chars, &mut i);
                toks.push(Tok::Var(name, p));
            }
            '"' | '`' => {
                let (text, end) = quoted(&chars, i).map_err(err)?;
                toks.push(Tok::Str(text));
                i = end;
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

/// `.A.B`: the field names of a path starting at `chars[*i]`.
fn field_path(chars: &[char], i: &mut usize) -> Vec<String> {
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
}

/// A Go string at `chars[i]`, interpreted (`"…"`, with escapes) or raw
/// (`` `…` ``); its text and where it ends.
fn quoted(chars: &[char], i: usize) -> Result<(String, usize), String> {
    let mut j = i + 1;
    if chars[i] == '`' {
        while j < chars.len() && chars[j] != '`' {
            j += 1;
        }
        if j >= chars.len() {
            return Err("unterminated raw quoted string".into());
        }
        return Ok((chars[i + 1..j].iter().collect(), j + 1));
    }
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
        return Err("unterminated quoted string".into());
    }
    raw.push('"');
    let s: String = serde_json::from_str(&raw).map_err(|_| format!("bad string {raw}"))?;
    Ok((s, j + 1))
}

// ------------------------------------------------------------------ parsing

pub(super) const FUNCS: [&str; 26] = [
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge", "json", "join", "split", "lower", "upper", "title", "pad", "truncate", "slice", "html",
    "js", "urlquery",
];

/// How deeply actions (`if`, `range`, `with`, `else if` chains) and
/// parentheses may nest. Parsing and execution recurse once per level; a
/// `--format` string must get an error, never overflow the stack.
pub(super) const MAX_DEPTH: usize = 200;

pub(super) struct Parser<'a> {
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

pub(super) enum Item {
    Node(Node),
    Else(Option<Pipeline>, bool), // `else`, `else if p` (bool: is `else with`)
    End,
}

pub(super) fn parse_action(body: &str, line: usize) -> Result<Option<Item>, TemplateError> {
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

pub(super) type Items = std::iter::Peekable<std::vec::IntoIter<(Item, usize)>>;

/// The nodes of a list, and the `end`/`else` that closed it (none at EOF).
pub(super) type Parsed = (Vec<Node>, Option<(Item, usize)>);

/// Parses items into nodes until `end`/`else` (returned) or the input ends.
pub(super) fn parse_list(items: &mut Items, depth: usize) -> Result<Parsed, TemplateError> {
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

pub(super) fn block(
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

pub(super) fn contains_unclosed(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match n {
        Node::Text(t) => t == "\u{0}unclosed",
        Node::If(_, a, b) | Node::Range(_, a, b) | Node::With(_, a, b) => {
            contains_unclosed(a) || contains_unclosed(b)
        }
        Node::Action(_) => false,
    })
}
