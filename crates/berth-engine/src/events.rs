//! `/events`: what happened to containers, images, networks and volumes, as
//! Docker reports it, live and (for `since`) from a bounded recent history.

use berth_api::{EventActor, EventMessage};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// How many past events `since` can reach back to.
const KEEP: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`.
    pub kind: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    pub time_nano: i64,
}

impl Event {
    /// Docker's message.
    pub fn to_message(&self) -> EventMessage {
        let old_style = self.kind == "container" || self.kind == "image";
        EventMessage {
            kind: self.kind.to_string(),
            action: self.action.clone(),
            actor: EventActor {
                id: self.id.clone(),
                attributes: self.attributes.clone(),
            },
            scope: "local".into(),
            time: self.time_nano / 1_000_000_000,
            time_nano: self.time_nano,
            status: old_style.then(|| self.action.clone()),
            id: old_style.then(|| self.id.clone()),
            from: self.attributes.get("image").filter(|_| old_style).cloned(),
        }
    }

    /// Docker's `/events` filters: type, event, container, image, network,
    /// volume, label (`key` or `key=value`); values of one key are OR'ed.
    pub fn matches(&self, filters: &HashMap<String, Vec<String>>) -> bool {
        let name = self
            .attributes
            .get("name")
            .map(String::as_str)
            .unwrap_or("");
        let one = |key: &str, pred: &dyn Fn(&str) -> bool| {
            filters
                .get(key)
                .is_none_or(|vals| vals.is_empty() || vals.iter().any(|v| pred(v)))
        };
        let actor = |kind: &'static str| {
            move |v: &str| self.kind == kind && (self.id.starts_with(v) || name == v)
        };
        one("type", &|v| v == self.kind)
            && one("event", &|v| {
                v == self.action || self.action.split(':').next() == Some(v)
            })
            && one("container", &actor("container"))
            && one("network", &actor("network"))
            && one("volume", &actor("volume"))
            && one("image", &|v| {
                self.attributes.get("image").is_some_and(|i| i == v)
                    || (self.kind == "image" && (self.id.starts_with(v) || name == v))
            })
            && filters.get("label").is_none_or(|vals| {
                vals.iter().all(|l| match l.split_once('=') {
                    Some((k, val)) => self.attributes.get(k).is_some_and(|x| x == val),
                    None => self.attributes.contains_key(l.as_str()),
                })
            })
    }
}

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    recent: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(256).0,
            recent: Mutex::new(VecDeque::with_capacity(KEEP)),
        }
    }
}

impl EventBus {
    pub fn emit(
        &self,
        kind: &'static str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let time_nano = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let ev = Event {
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes,
            time_nano,
        };
        {
            let mut r = self.recent.lock().expect("events");
            if r.len() == KEEP {
                r.pop_front();
            }
            r.push_back(ev.clone());
        }
        let _ = self.tx.send(ev);
    }

    /// Past events from `since_nano` on, and a receiver for what follows;
    /// taken together so that nothing falls between them.
    pub fn subscribe(&self, since_nano: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let r = self.recent.lock().expect("events");
        let rx = self.tx.subscribe();
        let past = match since_nano {
            Some(t) => r.iter().filter(|e| e.time_nano >= t).cloned().collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

/// A `since`/`until` value (unix seconds with a fraction, or RFC 3339) in
/// nanoseconds.
pub fn parse_time_nano(s: &str) -> Option<i64> {
    crate::logs::parse_time(s).map(|t| (t * 1e9) as i64)
}

/// Attributes as Docker sends them: the given pairs, then labels.
pub fn attributes<'a>(
    pairs: &[(&str, String)],
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = labels
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in pairs {
        m.insert(k.to_string(), v.clone());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &'static str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            kind,
            action: action.into(),
            id: id.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            time_nano: 1,
        }
    }

    fn f(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn filters() {
        let e = ev(
            "container",
            "die",
            "abcdef",
            &[("name", "web"), ("image", "busybox"), ("tier", "front")],
        );
        assert!(e.matches(&f(&[])));
        assert!(e.matches(&f(&[
            ("container", "web"),
            ("event", "start"),
            ("event", "die")
        ])));
        assert!(e.matches(&f(&[
            ("container", "abc"),
            ("image", "busybox"),
            ("label", "tier=front")
        ])));
        assert!(!e.matches(&f(&[("type", "network")])));
        assert!(!e.matches(&f(&[("container", "other")])));
        assert!(!e.matches(&f(&[("label", "tier=back")])));
        let h = ev("container", "health_status: healthy", "abcdef", &[]);
        assert!(h.matches(&f(&[("event", "health_status")])));
        let m = e.to_message();
        assert_eq!(
            (m.status.as_deref(), m.from.as_deref()),
            (Some("die"), Some("busybox"))
        );
        let j = serde_json::to_value(&m).unwrap();
        assert_eq!(
            (j["Actor"]["ID"].as_str(), j["timeNano"].as_i64()),
            (Some(e.id.as_str()), Some(e.time_nano))
        );
        let v = serde_json::to_value(ev("volume", "create", "v", &[]).to_message()).unwrap();
        assert!(v.get("status").is_none() && v.get("from").is_none());
    }

    #[test]
    fn since_replays_and_keeps_a_bounded_history() {
        let bus = EventBus::default();
        for i in 0..(KEEP + 10) {
            bus.emit("volume", "create", &format!("v{i}"), BTreeMap::new());
        }
        let (past, _rx) = bus.subscribe(Some(0));
        assert_eq!(past.len(), KEEP);
        assert_eq!(past[0].id, "v10");
        let (none, _rx) = bus.subscribe(None);
        assert!(none.is_empty());
    }
}
