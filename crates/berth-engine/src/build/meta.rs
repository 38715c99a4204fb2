//! The instructions that change only the image's config (ENV, LABEL, ARG,
//! WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL, MAINTAINER, SHELL, CMD,
//! ENTRYPOINT, HEALTHCHECK, ONBUILD): each edits the config and returns the
//! text its history entry and cache key carry.

use super::*;
use berth_api::HealthConfig;

/// The metadata instructions that take no `--flags`.
const NO_FLAGS: [&str; 10] = [
    "ENV",
    "LABEL",
    "ARG",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "VOLUME",
    "STOPSIGNAL",
    "CMD",
    "ENTRYPOINT",
];

pub(super) type Lookup<'a> = dyn Fn(&str) -> Option<String> + Sync + 'a;

impl Build<'_> {
    /// Applies `inst` to a copy of the stage's config: the new config and its
    /// history text, or None when `inst` is not a metadata instruction.
    pub(super) fn metadata(
        &mut self,
        st: &mut StageRun,
        inst: &Instruction,
        lookup: &Lookup,
    ) -> Result<Option<(ImageConfigBlob, String)>> {
        let mut cfg = st.state.config.clone();
        let esc = self.plan.escape;
        let kw = inst.keyword.as_str();
        if NO_FLAGS.contains(&kw) {
            inst.check_flags(&[])?;
        }
        let text = match kw {
            "ENV" => env(inst, esc, lookup, &mut cfg)?,
            "LABEL" => label(inst, esc, lookup, &mut cfg)?,
            "ARG" => self.arg(st, inst, lookup)?,
            "WORKDIR" => workdir(inst, esc, lookup, &mut cfg)?,
            "USER" => {
                let u = lex::expand(inst.rest.trim(), esc, lookup)?;
                cfg.config.user = u.clone();
                format!("USER {u}")
            }
            "EXPOSE" => expose(inst, esc, lookup, &mut cfg)?,
            "VOLUME" => volume(inst, esc, lookup, &mut cfg)?,
            "STOPSIGNAL" => {
                let s = lex::expand(inst.rest.trim(), esc, lookup)?;
                cfg.config.stop_signal = Some(s.clone());
                format!("STOPSIGNAL {s}")
            }
            "MAINTAINER" => {
                cfg.author = Some(inst.rest.trim().to_string());
                format!("MAINTAINER {}", inst.rest.trim())
            }
            "SHELL" => {
                let sh = inst
                    .json_args()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| inst.error("SHELL requires the arguments to be in JSON form"))?;
                cfg.config.shell = Some(sh.clone());
                format!("SHELL {}", json!(sh))
            }
            "CMD" | "ENTRYPOINT" => cmd_or_entrypoint(inst, &mut st.cmd_set, &mut cfg),
            "HEALTHCHECK" => healthcheck(inst, &mut cfg)?,
            "ONBUILD" => onbuild(inst, &mut cfg)?,
            _ => return Ok(None),
        };
        Ok(Some((cfg, text)))
    }

    /// ARG: the value from `--build-arg`, else the default, else the global
    /// of that name; visible to later steps of the stage.
    fn arg(&mut self, st: &mut StageRun, inst: &Instruction, lookup: &Lookup) -> Result<String> {
        let mut text = Vec::new();
        for w in inst.rest.split_whitespace() {
            let (k, default) = match w.split_once('=') {
                Some((k, d)) => (
                    k.to_string(),
                    Some(lex::expand(d, self.plan.escape, lookup)?),
                ),
                None => (w.to_string(), None),
            };
            let val = match self.opts.build_args.get(&k) {
                Some(Some(v)) => Some(v.clone()),
                Some(None) => std::env::var(&k).ok().or(default),
                // A global ARG redeclared without a value takes the global value.
                None => default.or_else(|| self.plan.globals.get(&k).cloned()),
            };
            self.used_args.push(k.clone());
            if let Some(v) = val {
                st.args.push((k.clone(), v));
            }
            text.push(w.to_string());
        }
        Ok(format!("ARG {}", text.join(" ")))
    }
}

fn env(
    inst: &Instruction,
    esc: char,
    lookup: &Lookup,
    cfg: &mut ImageConfigBlob,
) -> Result<String> {
    let words = lex::expand_words(&inst.rest, esc, lookup)?;
    let mut pairs = Vec::new();
    if words.len() >= 2 && !words[0].contains('=') {
        // Legacy `ENV key value with spaces`.
        let key = &words[0];
        let raw = inst.rest.trim_start()[key.len()..].trim_start();
        pairs.push((key.clone(), lex::expand(raw, esc, lookup)?));
    } else {
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(inst
                    .error(format!(
                        "ENV names can not be blank or missing a value: {w}"
                    ))
                    .into());
            };
            if k.is_empty() {
                return Err(inst.error("ENV names can not be blank").into());
            }
            pairs.push((k.to_string(), v.to_string()));
        }
    }
    for (k, v) in &pairs {
        set_env(cfg, k, v);
    }
    let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(format!("ENV {}", text.join(" ")))
}

fn label(
    inst: &Instruction,
    esc: char,
    lookup: &Lookup,
    cfg: &mut ImageConfigBlob,
) -> Result<String> {
    let labels = cfg.config.labels.get_or_insert_with(Default::default);
    let mut text = Vec::new();
    for w in lex::expand_words(&inst.rest, esc, lookup)? {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| inst.error(format!("LABEL requires key=value: {w}")))?;
        labels.insert(k.to_string(), v.to_string());
        text.push(format!("{k}={v}"));
    }
    Ok(format!("LABEL {}", text.join(" ")))
}

fn workdir(
    inst: &Instruction,
    esc: char,
    lookup: &Lookup,
    cfg: &mut ImageConfigBlob,
) -> Result<String> {
    let p = lex::expand(inst.rest.trim(), esc, lookup)?;
    let wd = if p.starts_with('/') {
        p
    } else {
        let base = match cfg.config.working_dir.as_str() {
            "" => "/",
            wd => wd,
        };
        Path::new(base).join(p).display().to_string()
    };
    cfg.config.working_dir = wd.clone();
    Ok(format!("WORKDIR {wd}"))
}

fn expose(
    inst: &Instruction,
    esc: char,
    lookup: &Lookup,
    cfg: &mut ImageConfigBlob,
) -> Result<String> {
    let ports = cfg
        .config
        .exposed_ports
        .get_or_insert_with(Default::default);
    let mut text = Vec::new();
    for p in lex::expand_words(&inst.rest, esc, lookup)? {
        let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
        let proto = proto.to_ascii_lowercase();
        let valid = port.split('-').all(|n| n.parse::<u16>().is_ok())
            && matches!(proto.as_str(), "tcp" | "udp" | "sctp");
        if !valid {
            return Err(inst.error(format!("invalid containerPort: {p}")).into());
        }
        let key = format!("{port}/{proto}");
        ports.insert(key.clone(), json!({}));
        text.push(key);
    }
    Ok(format!("EXPOSE {}", text.join(" ")))
}

fn volume(
    inst: &Instruction,
    esc: char,
    lookup: &Lookup,
    cfg: &mut ImageConfigBlob,
) -> Result<String> {
    let vols = match inst.json_args() {
        Some(v) => v,
        None => lex::expand_words(&inst.rest, esc, lookup)?,
    };
    let map = cfg.config.volumes.get_or_insert_with(Default::default);
    for v in &vols {
        if v.trim().is_empty() {
            return Err(inst
                .error("VOLUME specified can not be an empty string")
                .into());
        }
        map.insert(v.clone(), json!({}));
    }
    Ok(format!("VOLUME {}", json!(vols)))
}

/// CMD and ENTRYPOINT; an ENTRYPOINT drops a CMD inherited from the base
/// image, not one this stage set.
fn cmd_or_entrypoint(inst: &Instruction, cmd_set: &mut bool, cfg: &mut ImageConfigBlob) -> String {
    let v = match inst.json_args() {
        Some(v) => v,
        None => {
            let mut sh = cfg
                .config
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            sh.push(inst.rest.clone());
            sh
        }
    };
    let text = format!("{} {}", inst.keyword, json!(v));
    if inst.keyword == "CMD" {
        cfg.config.cmd = Some(v);
        *cmd_set = true;
    } else {
        cfg.config.entrypoint = Some(v);
        if !*cmd_set {
            cfg.config.cmd = None;
        }
    }
    text
}

fn healthcheck(inst: &Instruction, cfg: &mut ImageConfigBlob) -> Result<String> {
    inst.check_flags(&[
        "interval",
        "timeout",
        "start-period",
        "start-interval",
        "retries",
    ])?;
    let rest = inst.rest.trim();
    let hc = if rest.eq_ignore_ascii_case("none") {
        HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        }
    } else {
        let (word, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if !word.eq_ignore_ascii_case("cmd") {
            return Err(inst.error("HEALTHCHECK requires CMD or NONE").into());
        }
        let probe = Instruction {
            rest: cmd.to_string(),
            ..inst.clone()
        };
        let test = match probe.json_args() {
            Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
            None => vec!["CMD-SHELL".to_string(), cmd.to_string()],
        };
        let ns = |flag: &str| -> Result<i64> {
            Ok(match inst.flag(flag) {
                Some(v) => berth_build::duration_ns(v).map_err(|e| inst.error(e))?,
                None => 0,
            })
        };
        let retries = match inst.flag("retries") {
            Some(r) => r
                .parse::<i64>()
                .map_err(|_| inst.error(format!("invalid retries {r}")))?,
            None => 0,
        };
        HealthConfig {
            test,
            interval: ns("interval")?,
            timeout: ns("timeout")?,
            start_period: ns("start-period")?,
            start_interval: ns("start-interval")?,
            retries,
        }
    };
    let text = serde_json::to_string(&hc).map_err(|e| inst.error(e.to_string()))?;
    cfg.config.healthcheck = Some(hc);
    Ok(format!("HEALTHCHECK {text}"))
}

fn onbuild(inst: &Instruction, cfg: &mut ImageConfigBlob) -> Result<String> {
    let t = inst.original["ONBUILD".len()..].trim().to_string();
    let first = t
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(inst
            .error(format!("{first} isn't allowed as an ONBUILD trigger"))
            .into());
    }
    cfg.config
        .on_build
        .get_or_insert_with(Vec::new)
        .push(t.clone());
    Ok(format!("ONBUILD {t}"))
}
