//! The filters every `prune` endpoint shares: `until` and `label` / `label!`.

use std::collections::{BTreeMap, HashMap};

use crate::{EngineError, Result};

/// A parsed prune filter set; `matches` says whether an object may go.
#[derive(Debug, Default)]
pub struct PruneFilter {
    until: Option<f64>,
    labels: Vec<String>,
    not_labels: Vec<String>,
}

impl PruneFilter {
    /// Parses `filters`, refusing keys outside `allowed` (plus the common ones)
    /// the way Docker does.
    pub fn parse(filters: &HashMap<String, Vec<String>>, allowed: &[&str]) -> Result<Self> {
        let mut f = PruneFilter::default();
        for (k, vals) in filters {
            match k.as_str() {
                "until" => {
                    let v = vals.first().map(String::as_str).unwrap_or_default();
                    let t = parse_until(v, now()).ok_or_else(|| {
                        EngineError::BadRequest(format!(
                            "failed to parse value of filter (until): invalid time format {v:?}"
                        ))
                    })?;
                    f.until = Some(t);
                }
                "label" => f.labels.extend(vals.iter().cloned()),
                "label!" => f.not_labels.extend(vals.iter().cloned()),
                other if allowed.contains(&other) => {}
                other => return Err(EngineError::BadRequest(format!("invalid filter '{other}'"))),
            }
        }
        Ok(f)
    }

    /// Created strictly before `until`, carrying every `label` and none of the
    /// `label!` ones.
    pub fn matches<'a>(
        &self,
        created_unix: f64,
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> bool {
        let labels: BTreeMap<&str, &str> = labels
            .into_iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let has = |f: &String| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| *x == v),
            None => labels.contains_key(f.as_str()),
        };
        self.until.is_none_or(|u| created_unix < u)
            && self.labels.iter().all(has)
            && !self.not_labels.iter().any(has)
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A record's RFC 3339 creation time → unix seconds (0 when unparsable).
pub fn rfc3339_unix(s: &str) -> f64 {
    crate::logs::parse_time(s).unwrap_or(0.0)
}

/// Docker's `until`: a unix time, an RFC 3339 time, or a Go duration
/// (`10m`, `1h30m`) counted back from now.
fn parse_until(s: &str, now: f64) -> Option<f64> {
    crate::logs::parse_time(s).or_else(|| {
        berth_build::duration_ns(s)
            .ok()
            .map(|ns| now - ns as f64 / 1e9)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_values() {
        assert_eq!(parse_until("1h", 10_000.0), Some(6400.0));
        assert_eq!(parse_until("1700000000", 0.0), Some(1.7e9));
        assert!(parse_until("2024-01-02T03:04:05Z", 0.0).is_some());
        assert!(parse_until("yesterday", 0.0).is_none());
    }

    #[test]
    fn filter_semantics() {
        let q = |pairs: &[(&str, &str)]| {
            let mut m: HashMap<String, Vec<String>> = HashMap::new();
            for (k, v) in pairs {
                m.entry(k.to_string()).or_default().push(v.to_string());
            }
            m
        };
        let labels: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        let f = PruneFilter::parse(&q(&[("label", "env=prod")]), &[]).unwrap();
        assert!(f.matches(0.0, &labels));
        assert!(!f.matches(0.0, &BTreeMap::new()));
        let f = PruneFilter::parse(&q(&[("label!", "env")]), &[]).unwrap();
        assert!(!f.matches(0.0, &labels));
        assert!(f.matches(0.0, &BTreeMap::new()));
        let f = PruneFilter::parse(&q(&[("until", "100")]), &[]).unwrap();
        assert!(f.matches(99.0, &labels));
        assert!(!f.matches(100.0, &labels));
        assert!(PruneFilter::parse(&q(&[("dangling", "true")]), &[]).is_err());
        assert!(PruneFilter::parse(&q(&[("dangling", "true")]), &["dangling"]).is_ok());
        assert!(PruneFilter::parse(&q(&[("until", "soon")]), &[]).is_err());
    }
}
