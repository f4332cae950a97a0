//! What the pipeline produces: records, the topic each goes to, and the
//! delivery token that ties a produced record to its input offset.

use std::borrow::Cow;
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
    /// Count deltas, for the campaigns' owners.
    Exposure,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Output => "output",
            Role::Blocked => "blocked",
            Role::DeadLetter => "dead_letter",
            Role::Alerts => "alerts",
            Role::Exposure => "exposure",
        }
    }

    pub(super) fn topic(self, t: &Topics) -> &str {
        match self {
            Role::Output => &t.output,
            Role::Blocked => &t.blocked,
            Role::DeadLetter => &t.dead_letter,
            Role::Alerts => &t.alerts,
            Role::Exposure => &t.exposure,
        }
    }
}

/// One record to produce.
#[derive(Debug)]
pub struct Out {
    pub role: Role,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub payload: Vec<u8>,
}

/// The delivery opaque: which input a produced record belongs to, and what
/// its acknowledgement means. It does not hold the record: librdkafka holds
/// its own copy until delivery, so the judge thread frees the record as
/// soon as it is handed over, and a failed delivery reads it back from that
/// copy ([`out_of_message`]) to send it again or dead-letter it.
#[derive(Debug)]
pub struct Token {
    /// `(partition, generation, offset)` of the input record, if any.
    pub(super) input: Option<(i32, u64, i64)>,
    /// The decision's own ts, for the publish-lag histogram.
    pub(super) ts_ms: Option<i64>,
    /// The topic it was sent to.
    pub(super) role: Role,
    /// Sends that failed transiently so far (sets the back-off).
    pub(super) attempts: u32,
    /// This is the dead-letter form of a record its topic refused: refused
    /// again, there is no smaller form to fall back to.
    pub(super) refused: bool,
    /// Size of the input record, given back to the in-flight bound when its
    /// last produced record is acknowledged.
    pub(super) input_bytes: usize,
    /// The flush this record (a delta) belongs to.
    pub(super) batch: Option<Arc<FlushBatch>>,
}

/// A record to send, with its token: a judged record, a delta, an alert, or
/// one read back from a failed delivery (sent again, or its dead-letter
/// form), which the delivery callback hands to the consume loop.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) out: Out,
    pub(super) token: Box<Token>,
}

impl Outgoing {
    /// `out` with a fresh token for its topic, standing for `input` (if any).
    pub(super) fn new(out: Out, input: Option<(i32, u64, i64)>, ts_ms: Option<i64>) -> Outgoing {
        let token = Token::new(input, ts_ms, out.role);
        Outgoing { out, token }
    }
}

/// One flush of exposure deltas: the input records it holds are released
/// when its last delta is acknowledged and every earlier flush's were
/// ([`super::shared::Holds`]).
#[derive(Debug)]
pub(super) struct FlushBatch {
    /// Deltas not yet acknowledged: the flush is done at 0 (a flush with
    /// none is done from the start).
    pub(super) remaining: std::sync::atomic::AtomicUsize,
    /// `(partition, generation, offset)` of every input record held for it.
    pub(super) holds: Vec<(i32, u64, i64)>,
    pub(super) started: std::time::Instant,
}

impl Token {
    pub(super) fn new(
        input: Option<(i32, u64, i64)>,
        ts_ms: Option<i64>,
        role: Role,
    ) -> Box<Token> {
        Box::new(Token {
            input,
            ts_ms,
            role,
            attempts: 0,
            refused: false,
            input_bytes: 0,
            batch: None,
        })
    }

    /// The dead-letter form of `out`, this token's record, which its topic
    /// refused (see [`refused_out`]); same input, so the input's offset
    /// waits for it.
    pub(super) fn refused(&self, out: &Out, code: &str) -> Outgoing {
        Outgoing {
            out: refused_out(out, self.input, code),
            token: Box::new(Token {
                input: self.input,
                ts_ms: self.ts_ms,
                role: Role::DeadLetter,
                attempts: 0,
                refused: true,
                input_bytes: self.input_bytes,
                batch: self.batch.clone(),
            }),
        }
    }
}

/// The record a failed delivery carried, read back from librdkafka's copy:
/// its key, payload and headers as they were sent (header values already
/// capped), for the topic of `role`.
pub(super) fn out_of_message<M: Message>(m: &M, role: Role) -> Out {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|x| {
                    (
                        header_name(x.key),
                        String::from_utf8_lossy(x.value.unwrap_or_default())
                            .into_owned()
                            .into(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Out {
        role,
        key: m.key().map(<[u8]>::to_vec),
        headers,
        payload: m.payload().unwrap_or_default().to_vec(),
    }
}

/// A header name read back from a record fairgate produced, as the
/// `'static` name [`Out`] holds. Those names are fairgate's own constants, a
/// fixed set, so each is made `'static` once and kept.
fn header_name(name: &str) -> &'static str {
    static NAMES: parking_lot::Mutex<std::collections::BTreeSet<&'static str>> =
        parking_lot::Mutex::new(std::collections::BTreeSet::new());
    let mut names = NAMES.lock();
    match names.get(name) {
        Some(&n) => n,
        None => {
            let n: &'static str = Box::leak(name.into());
            names.insert(n);
            n
        }
    }
}

/// Produced header values are cut to this many bytes (at a character
/// boundary, ending in `…`): a header copied from the input, such as the
/// decision id, cannot make a record too large for its topic.
pub const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// A record its topic refuses goes to the dead-letter topic with at most
/// this much of its payload…
pub const REFUSED_PAYLOAD_BYTES: usize = 16 * 1024;
/// …and of its key.
pub const REFUSED_KEY_BYTES: usize = 256;

/// Dead-letter headers of a refused record.
pub mod refused_headers {
    /// Which topic (role) refused the record: output, blocked, dead_letter, alerts.
    pub const TOPIC: &str = "fairgate-refused-by";
    /// The size of the refused payload, in bytes.
    pub const ORIGINAL_BYTES: &str = "fairgate-original-bytes";
    /// SHA-256 of the whole refused payload, hex.
    pub const ORIGINAL_SHA256: &str = "fairgate-original-sha256";
    /// `true` when the payload that follows is only the first part.
    pub const TRUNCATED: &str = "fairgate-truncated";
    /// Where the input record is, to read it again from the input topic.
    pub const INPUT_PARTITION: &str = "fairgate-input-partition";
    pub const INPUT_OFFSET: &str = "fairgate-input-offset";
}

/// `s` cut to at most `max` bytes at a character boundary; a cut value ends in `…`.
fn capped(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// The dead-letter form of `out`, which its topic refused with error `code`
/// (too large, or not a valid record for it): the first
/// [`REFUSED_PAYLOAD_BYTES`] of the payload, the key cut to
/// [`REFUSED_KEY_BYTES`], its headers (capped, as always), and headers that
/// say what happened: the error, the refusing topic, the original size and
/// digest, whether the payload is cut, and the input's partition and offset.
///
/// Nothing new is revealed: the payload is a prefix of the record fairgate
/// itself produced (already stripped, for output and blocked).
pub(super) fn refused_out(out: &Out, input: Option<(i32, u64, i64)>, code: &str) -> Out {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let size = out.payload.len();
    let head = &out.payload[..size.min(REFUSED_PAYLOAD_BYTES)];
    let mut digest = String::with_capacity(64);
    for b in Sha256::digest(&out.payload) {
        let _ = write!(digest, "{b:02x}");
    }
    let role = out.role.as_str();
    let mut headers: Vec<(&'static str, Cow<'static, str>)> = out
        .headers
        .iter()
        .filter(|(k, _)| !matches!(*k, "fairgate-error" | "fairgate-error-kind"))
        .cloned()
        .collect();
    headers.extend([
        (
            "fairgate-error",
            format!(
                "the {role} topic refused the record ({code}); the first {} of its {size} bytes follow",
                head.len()
            )
            .into(),
        ),
        ("fairgate-error-kind", "refused_by_topic".into()),
        (refused_headers::TOPIC, role.into()),
        (refused_headers::ORIGINAL_BYTES, size.to_string().into()),
        (refused_headers::ORIGINAL_SHA256, digest.into()),
        (
            refused_headers::TRUNCATED,
            if head.len() < size { "true" } else { "false" }.into(),
        ),
    ]);
    if let Some((partition, _, offset)) = input {
        headers.push((
            refused_headers::INPUT_PARTITION,
            partition.to_string().into(),
        ));
        headers.push((refused_headers::INPUT_OFFSET, offset.to_string().into()));
    }
    Out {
        role: Role::DeadLetter,
        key: out
            .key
            .as_ref()
            .map(|k| k[..k.len().min(REFUSED_KEY_BYTES)].to_vec()),
        headers,
        payload: head.to_vec(),
    }
}

/// The Kafka headers of a record to produce.
pub fn headers_of(out: &Out) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(out.headers.len());
    for (k, v) in &out.headers {
        h = h.insert(Header {
            key: k,
            value: Some(capped(v, MAX_HEADER_VALUE_BYTES).as_bytes()),
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
pub fn alert_out(a: &AlertEvent, version: &str) -> Out {
    Out {
        role: Role::Alerts,
        key: Some(a.campaign.as_bytes().to_vec()),
        headers: vec![
            (
                "fairgate-alert-kind",
                format!("{:?}", a.kind).to_lowercase().into(),
            ),
            ("fairgate-campaign-state", a.new_state.as_str().into()),
            ("fairgate-policy-version", version.to_string().into()),
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
                ("fairgate-alert-kind", "transition".into()),
                ("fairgate-campaign-state", "flagged".into()),
                ("fairgate-policy-version", "2026-11-23.1".into()),
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
                ("fairgate-removed", String::new().into()),
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

    #[test]
    fn header_values_are_capped_at_a_character_boundary() {
        assert_eq!(capped("short", 1024), "short");
        let exact = "a".repeat(1024);
        assert_eq!(capped(&exact, 1024), exact);
        let long = "é".repeat(1000); // 2,000 bytes
        let c = capped(&long, 1024);
        assert!(c.len() <= 1024, "{}", c.len());
        assert!(c.ends_with('…'));
        assert!(long.starts_with(c.trim_end_matches('…')));
        let out = Out {
            role: Role::Output,
            key: None,
            headers: vec![("fairgate-decision-id", "x".repeat(600_000).into())],
            payload: Vec::new(),
        };
        let h = headers_of(&out);
        assert_eq!(h.iter().next().unwrap().value.unwrap().len(), 1024);
    }

    #[test]
    fn a_refused_record_becomes_a_dead_letter_that_fits_and_says_what_happened() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let out = Out {
            role: Role::Blocked,
            key: Some(vec![b'k'; 5_000]),
            headers: vec![
                ("fairgate-decision-id", "dec-1".into()),
                ("fairgate-error", "old".into()),
            ],
            payload: payload.clone(),
        };
        let d = refused_out(&out, Some((3, 9, 1234)), "MessageSizeTooLarge");
        assert_eq!(d.role, Role::DeadLetter);
        assert_eq!(d.payload[..], payload[..REFUSED_PAYLOAD_BYTES]);
        assert_eq!(d.key.as_ref().unwrap().len(), REFUSED_KEY_BYTES);
        let h: std::collections::HashMap<&str, &str> =
            d.headers.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        assert_eq!(d.headers.len(), h.len(), "no header twice: {:?}", d.headers);
        assert_eq!(h["fairgate-decision-id"], "dec-1");
        assert_eq!(h["fairgate-error-kind"], "refused_by_topic");
        assert!(
            h["fairgate-error"].contains("blocked topic refused the record (MessageSizeTooLarge)")
        );
        assert_eq!(h[refused_headers::TOPIC], "blocked");
        assert_eq!(h[refused_headers::ORIGINAL_BYTES], "100000");
        assert_eq!(h[refused_headers::TRUNCATED], "true");
        assert_eq!(h[refused_headers::INPUT_PARTITION], "3");
        assert_eq!(h[refused_headers::INPUT_OFFSET], "1234");
        let digest = h[refused_headers::ORIGINAL_SHA256];
        assert_eq!(digest.len(), 64);
        // A different payload, a different digest; a small one is whole.
        let small = Out {
            payload: b"{}".to_vec(),
            key: None,
            headers: Vec::new(),
            role: Role::Output,
        };
        let d2 = refused_out(&small, None, "InvalidRecord");
        let h2: std::collections::HashMap<&str, &str> =
            d2.headers.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        assert_ne!(h2[refused_headers::ORIGINAL_SHA256], digest);
        assert_eq!(
            h2[refused_headers::ORIGINAL_SHA256],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(h2[refused_headers::TRUNCATED], "false");
        assert_eq!(d2.payload, b"{}");
        assert!(!h2.contains_key(refused_headers::INPUT_OFFSET));
    }

    #[test]
    fn a_failed_record_is_read_back_as_it_was_sent() {
        let out = Out {
            role: Role::Blocked,
            key: Some(b"cmp-1".to_vec()),
            headers: vec![
                ("fairgate-decision-id", "dec-1".into()),
                ("fairgate-removed", String::new().into()),
                ("fairgate-decision-id", "dec-2".into()),
                ("fairgate-flag", "x".repeat(5_000).into()),
            ],
            payload: br#"{"id":"dec-1"}"#.to_vec(),
        };
        // What librdkafka holds: the record as handed to it (values capped).
        let m = OwnedMessage::new(
            Some(out.payload.clone()),
            out.key.clone(),
            "decisions.blocked".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(headers_of(&out)),
        );
        let back = out_of_message(&m, Role::Blocked);
        assert_eq!(back.role, Role::Blocked);
        assert_eq!(back.key, out.key);
        assert_eq!(back.payload, out.payload);
        let capped_value = capped(&out.headers[3].1, MAX_HEADER_VALUE_BYTES).into_owned();
        let mut want = out.headers.clone();
        want[3].1 = capped_value.into();
        assert_eq!(back.headers, want);
        // Sent again, it is the same record.
        let (resent, sent) = (headers_of(&back), headers_of(&out));
        let seen: Vec<(&str, Option<&[u8]>)> = resent.iter().map(|x| (x.key, x.value)).collect();
        let first: Vec<(&str, Option<&[u8]>)> = sent.iter().map(|x| (x.key, x.value)).collect();
        assert_eq!(seen, first);
        // Each name is made 'static once, whatever the record.
        let again = out_of_message(&m, Role::Blocked);
        assert!(std::ptr::eq(back.headers[0].0, again.headers[0].0));
        // No key, no payload, no headers: read back as such.
        let bare = out_of_message(&message(None), Role::Output);
        assert!(bare.key.is_none() && bare.payload.is_empty() && bare.headers.is_empty());
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
