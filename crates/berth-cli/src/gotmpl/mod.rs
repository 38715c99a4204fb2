//! Go's `text/template`, the subset docker's `--format` uses, over JSON values:
//! fields (`.A.B`, `$x.A`), pipelines, variables, `if`/`else if`/`else`,
//! `range` (with `$i, $e :=`), `with`, comments, `{{-`/`-}}` trimming, and
//! Go's builtins plus docker's functions (`json`, `join`, `split`, `lower`,
//! `upper`, `title`, `pad`, `truncate`, `println`). Values print as Go prints
//! them: `[a b]` for lists, `map[k:v]` for maps, `<no value>` for missing keys.

mod exec;
mod funcs;
mod parse;

use exec::*;
use parse::*;
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
