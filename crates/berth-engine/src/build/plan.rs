//! From Dockerfile text to a plan: the stages, the global ARGs, each stage's
//! base, the target and the stages it needs. Pure but for nothing: no I/O.

use super::*;

pub(super) struct Stage {
    pub(super) name: Option<String>,
    pub(super) from: Instruction,
    pub(super) body: Vec<Instruction>,
    /// The FROM line's image or stage, its ARGs expanded.
    pub(super) base: String,
}

pub(super) struct Plan {
    pub(super) escape: char,
    pub(super) stages: Vec<Stage>,
    /// ARGs before the first FROM, with their values.
    pub(super) globals: BTreeMap<String, String>,
    pub(super) target: usize,
    /// The stages the target needs: FROM <stage> and COPY --from=<stage>.
    pub(super) needed: Vec<bool>,
    /// Steps to run, for the "Step n/total" lines.
    pub(super) total: usize,
}

impl Plan {
    pub(super) fn new(text: &str, opts: &BuildOptions) -> Result<Plan> {
        let df = dockerfile::parse(text)?;
        let escape = df.escape;
        let (mut stages, globals) = split_stages(df.instructions, escape, &opts.build_args)?;
        for s in &mut stages {
            let words = lex::expand_words(&s.from.rest, escape, &|n| globals.get(n).cloned())?;
            match words.as_slice() {
                [b] => s.base = b.clone(),
                [b, as_, n] if as_.eq_ignore_ascii_case("as") => {
                    s.name = Some(n.to_ascii_lowercase());
                    s.base = b.clone();
                }
                _ => {
                    return Err(s
                        .from
                        .error("FROM requires either one or three arguments")
                        .into())
                }
            }
        }
        let target = if opts.target.is_empty() {
            stages.len() - 1
        } else {
            stage_index(&stages, &opts.target, stages.len()).ok_or_else(|| {
                EngineError::BadRequest(format!(
                    "failed to reach build target {} in Dockerfile",
                    opts.target
                ))
            })?
        };
        let needed = needed_stages(&stages, target);
        let total = (0..stages.len())
            .filter(|&i| needed[i])
            .map(|i| 1 + stages[i].body.len())
            .sum();
        Ok(Plan {
            escape,
            stages,
            globals,
            target,
            needed,
            total,
        })
    }

    /// The stage `name` (its name or its number) among the first `before`.
    pub(super) fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        stage_index(&self.stages, name, before)
    }
}

/// Stages at each FROM; ARGs before the first FROM become the globals.
fn split_stages(
    instructions: Vec<Instruction>,
    escape: char,
    build_args: &HashMap<String, Option<String>>,
) -> Result<(Vec<Stage>, BTreeMap<String, String>)> {
    let mut globals: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for inst in instructions {
        if inst.keyword == "FROM" {
            stages.push(Stage {
                name: None,
                from: inst,
                body: Vec::new(),
                base: String::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.body.push(inst);
        } else if inst.keyword == "ARG" {
            let (k, v) = inst.rest.split_once('=').unwrap_or((inst.rest.trim(), ""));
            let k = k.trim().to_string();
            let val = match build_args.get(&k) {
                Some(Some(v)) => v.clone(),
                _ => lex::expand(v, escape, &|n| globals.get(n).cloned())?,
            };
            globals.insert(k, val);
        } else {
            return Err(EngineError::BadRequest(
                inst.error(format!(
                    "{} is not allowed before the first FROM (no build stage in current context)",
                    inst.keyword
                ))
                .to_string(),
            ));
        }
    }
    if stages.is_empty() {
        return Err(EngineError::BadRequest(
            "Dockerfile: no build stage: the Dockerfile has no FROM".into(),
        ));
    }
    Ok((stages, globals))
}

fn stage_index(stages: &[Stage], name: &str, before: usize) -> Option<usize> {
    let lname = name.to_ascii_lowercase();
    (0..before)
        .find(|&i| stages[i].name.as_deref() == Some(lname.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|&i| i < before))
}

fn needed_stages(stages: &[Stage], target: usize) -> Vec<bool> {
    let mut needed = vec![false; stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed[i] {
            continue;
        }
        needed[i] = true;
        if let Some(j) = stage_index(stages, &stages[i].base, i) {
            todo.push(j);
        }
        for inst in &stages[i].body {
            if let Some(j) = inst.flag("from").and_then(|f| stage_index(stages, f, i)) {
                todo.push(j);
            }
        }
    }
    needed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str, target: &str) -> Result<Plan> {
        let opts = BuildOptions {
            target: target.into(),
            ..Default::default()
        };
        Plan::new(text, &opts)
    }

    #[test]
    fn only_the_stages_the_target_needs() {
        let text = "ARG BASE=busybox\nFROM $BASE AS a\nRUN a\nFROM busybox AS b\nRUN b\n\
                    FROM a AS c\nCOPY --from=1 /x /x\nFROM busybox\nRUN d\n";
        let p = plan(text, "c").unwrap();
        assert_eq!(p.target, 2);
        assert_eq!(p.needed, [true, true, true, false]);
        assert_eq!(p.stages[0].base, "busybox");
        assert_eq!(p.total, 2 + 2 + 2);
        let p = plan(text, "").unwrap();
        assert_eq!(
            (p.target, p.needed.clone()),
            (3, vec![false, false, false, true])
        );
        assert!(plan(text, "nope").is_err());
    }

    #[test]
    fn bad_plans_name_the_problem() {
        let e = plan("RUN x\nFROM busybox\n", "").err().unwrap().to_string();
        assert!(
            e.contains("RUN is not allowed before the first FROM"),
            "{e}"
        );
        let e = plan("ARG X=1\n", "").err().unwrap().to_string();
        assert!(e.contains("no build stage"), "{e}");
        let e = plan("FROM a b\n", "").err().unwrap().to_string();
        assert!(e.contains("one or three arguments"), "{e}");
    }
}
