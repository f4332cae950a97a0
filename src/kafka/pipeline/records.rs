//! What the pipeline produces: records, the topic each goes to, and the
//! delivery token that ties a produced record to its input offset.

use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::config::Topics;
use crate::fairness::alert::AlertEvent;

/// Which topic a produced record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Output,
    Blocked,
    DeadLetter,
    Alerts,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Output => "output",
            Role::Blocked => "blocked",
            Role::DeadLetter => "dead_letter",
            Role::Alerts => "alerts",
        }
    }

    pub(super) fn topic(self, t: &Topics) -> &str {
        match self {
            Role::Output => &t.output,
            Role::Blocked => &t.blocked,
            Role::DeadLetter => &t.dead_letter,
            Role::Alerts => &t.alerts,
        }
    }
}

/// One record to produce.
#[derive(Debug)]
pub struct Out {
    pub role: Role,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Vec<u8>,
}

/// The delivery opaque: which input it belongs to, and the record, kept for re-sending.
#[derive(Debug)]
pub struct Token {
    /// `(partition, generation, offset)` of the input record, if any.
    pub(super) input: Option<(i32, u64, i64)>,
    /// The decision's own ts, for the publish-lag histogram.
    pub(super) ts_ms: Option<i64>,
    pub(super) out: Arc<Out>,
    /// Sends that failed transiently so far (sets the back-off).
    pub(super) attempts: u32,
}

impl Token {
    pub(super) fn new(
        input: Option<(i32, u64, i64)>,
        ts_ms: Option<i64>,
        out: Arc<Out>,
    ) -> Box<Token> {
        Box::new(Token {
            input,
            ts_ms,
            out,
            attempts: 0,
        })
    }
}

/// The Kafka headers of a record to produce.
pub(super) fn headers_of(out: &Out) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(out.headers.len());
    for (k, v) in &out.headers {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    h
}

/// The first value of each `wanted` header of an input record (lossy UTF-8),
/// in `wanted` order. The headers are not even parsed when none is wanted.
pub(super) fn pick_headers<M: Message>(
    m: &M,
    wanted: &[&'static str],
) -> Vec<(&'static str, String)> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let Some(h) = m.headers() else {
        return Vec::new();
    };
    wanted
        .iter()
        .filter_map(|&name| {
            h.iter().find(|hd| hd.key == name).map(|hd| {
                (
                    name,
                    String::from_utf8_lossy(hd.value.unwrap_or(&[])).into_owned(),
                )
            })
        })
        .collect()
}

/// The alerts-topic record for a campaign's change of state.
pub(super) fn alert_out(a: &AlertEvent, version: &str) -> Out {
    Out {
        role: Role::Alerts,
        key: Some(a.campaign.as_bytes().to_vec()),
        headers: vec![
            (
                "fairgate-alert-kind",
                format!("{:?}", a.kind).to_lowercase(),
            ),
            ("fairgate-campaign-state", a.new_state.as_str().to_string()),
            ("fairgate-policy-version", version.to_string()),
        ],
        payload: serde_json::to_vec(a).expect("alerts serialise"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fairness::alert::{AlertKind, WindowInfo};
    use crate::fairness::campaign::State;
    use crate::policy::Mode;
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    fn alert() -> AlertEvent {
        AlertEvent {
            kind: AlertKind::Transition,
            campaign: "cmp-skewed-01".into(),
            category: "gender",
            old_state: State::Ok,
            new_state: State::Flagged,
            measured_state: State::Flagged,
            cause: None,
            measure: None,
            dimension: Some("gender".into()),
            value: Some(0.4),
            bound: Some(0.3),
            threshold: Some(0.2),
            confidence: 0.95,
            numbers: Vec::new(),
            window: WindowInfo {
                start_ms: 0,
                end_ms: 60_000,
                secs: 60,
            },
            policy_version: "in-the-event".into(),
            mode: Mode::Monitor,
            at_ms: 60_000,
            since_ms: 0,
            override_: None,
            message: "flagged".into(),
        }
    }

    #[test]
    fn an_alert_is_keyed_by_campaign_and_says_kind_state_and_policy() {
        let out = alert_out(&alert(), "2026-11-23.1");
        assert_eq!(out.role, Role::Alerts);
        assert_eq!(out.key.as_deref(), Some(&b"cmp-skewed-01"[..]));
        assert_eq!(
            out.headers,
            vec![
                ("fairgate-alert-kind", "transition".to_string()),
                ("fairgate-campaign-state", "flagged".to_string()),
                ("fairgate-policy-version", "2026-11-23.1".to_string()),
            ]
        );
        let v: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(v["campaign"], "cmp-skewed-01");
        assert_eq!(v["new_state"], "flagged");
    }

    #[test]
    fn produced_headers_keep_names_values_and_order() {
        let out = Out {
            role: Role::Output,
            key: None,
            headers: vec![
                ("fairgate-decision-id", "dec-1".into()),
                ("fairgate-removed", String::new()),
                ("fairgate-decision-id", "dec-2".into()),
            ],
            payload: Vec::new(),
        };
        let h = headers_of(&out);
        let seen: Vec<(&str, Option<&[u8]>)> = h.iter().map(|x| (x.key, x.value)).collect();
        assert_eq!(
            seen,
            vec![
                ("fairgate-decision-id", Some(&b"dec-1"[..])),
                ("fairgate-removed", Some(&b""[..])),
                ("fairgate-decision-id", Some(&b"dec-2"[..])),
            ]
        );
    }

    fn message(headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            "in".into(),
            Timestamp::NotAvailable,
            0,
            0,
            headers,
        )
    }

    #[test]
    fn picked_headers_are_the_first_of_each_wanted_name() {
        let h = OwnedHeaders::new()
            .insert(Header {
                key: "other",
                value: Some("x"),
            })
            .insert(Header {
                key: "fairgate-decision-id",
                value: Some("dec-1"),
            })
            .insert(Header {
                key: "fairgate-decision-id",
                value: Some("dec-2"),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: None,
            });
        let m = message(Some(h));
        assert_eq!(
            pick_headers(&m, &["fairgate-decision-id", "empty", "absent"]),
            vec![
                ("fairgate-decision-id", "dec-1".to_string()),
                ("empty", String::new()),
            ]
        );
        assert!(pick_headers(&m, &[]).is_empty());
        assert!(pick_headers(&message(None), &["fairgate-decision-id"]).is_empty());
    }
}
