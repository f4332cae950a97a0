//! The records fairgate keeps on Kafka, and their envelope.
//!
//! * The **campaign table** (compacted, keyed by campaign id): a `campaign`
//!   record per campaign (its state, override, finding and numbers), a
//!   `platform` record under the empty key (the platform-wide mix the
//!   owners judge against), and a tombstone when a campaign is forgotten.
//! * The **exposure topic** (time-retained, keyed by campaign id): `delta`
//!   records (counts per bucket and group from one instance, since its last
//!   flush) and `override` commands (a campaign manager's action, for the
//!   campaign's owner to apply).
//!
//! Every record is one JSON envelope: `{"v":1,"kind":"…","mac":"…","body":{…}}`.
//! `v` is the format: a reader takes every version up to its own and skips a
//! newer one (counted, logged), so a rolling upgrade reads both; fields added
//! to a body within a version are ignored by older readers. Table records and
//! override commands carry `mac`, an HMAC-SHA256 with the state key over the
//! kind, the record key and the body's exact bytes, so that a write to either
//! topic by anyone without the key cannot unblock a campaign. Deltas are not
//! signed (see README, "Campaign state on Kafka": protect the topic with ACLs).
//!
//! Pure: encoding, decoding and checking only.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::fairness::campaign::OverrideAction;
use crate::fairness::tracker::CampaignReport;

/// The format this build writes, and the newest it reads.
pub const FORMAT: u32 = 1;

/// The key of the platform record and the platform's deltas. Campaign ids
/// are never empty, so it cannot name a campaign.
pub const PLATFORM_KEY: &str = "";

/// The shortest state key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// The secret table records and override commands are signed with.
#[derive(Clone)]
pub struct StateKey(Vec<u8>);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(…)")
    }
}

impl StateKey {
    /// A key of at least [`MIN_KEY_BYTES`] bytes.
    pub fn new(secret: &[u8]) -> Option<StateKey> {
        (secret.len() >= MIN_KEY_BYTES).then(|| StateKey(secret.to_vec()))
    }

    fn mac(&self, kind: &str, key: &str, body: &str) -> Hmac<Sha256> {
        // new_from_slice takes any length for HMAC.
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in [
            kind.as_bytes(),
            b"\n",
            key.as_bytes(),
            b"\n",
            body.as_bytes(),
        ] {
            m.update(part);
        }
        m
    }

    fn sign(&self, kind: &str, key: &str, body: &str) -> String {
        let tag = self.mac(kind, key, body).finalize().into_bytes();
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(tag)
    }

    fn verify(&self, kind: &str, key: &str, body: &str, mac: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(mac) else {
            return false;
        };
        // Constant time (hmac's verify_slice).
        self.mac(kind, key, body).verify_slice(&tag).is_ok()
    }
}

/// Why a record on the table or exposure topic was skipped. Names what was
/// wrong, never a value from the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a fairgate state record: {0}")]
    Malformed(String),
    #[error("format version {0} is newer than this build reads ({FORMAT})")]
    UnknownVersion(u64),
    #[error("unknown record kind on this topic")]
    UnknownKind,
    #[error("signature missing or wrong (not written through fairgate's API with the state key)")]
    BadSignature,
    #[error("the record's key does not match the campaign it names")]
    WrongKey,
}

impl WireError {
    /// A bounded label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            WireError::Malformed(_) => "malformed",
            WireError::UnknownVersion(_) => "unknown_version",
            WireError::UnknownKind => "unknown_kind",
            WireError::BadSignature => "bad_signature",
            WireError::WrongKey => "wrong_key",
        }
    }
}

fn malformed(e: serde_json::Error) -> WireError {
    // serde_json's messages name the field and the expected type; with
    // `raw` bodies they can quote an unknown variant's text, so only the
    // category and position are kept.
    WireError::Malformed(format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    ))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    v: u64,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    mac: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    body: &'a RawValue,
}

fn envelope(kind: &str, mac: Option<&str>, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 120);
    out.extend_from_slice(format!("{{\"v\":{FORMAT},\"kind\":\"{kind}\"").as_bytes());
    if let Some(m) = mac {
        out.extend_from_slice(b",\"mac\":\"");
        out.extend_from_slice(m.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"body\":");
    out.extend_from_slice(body.as_bytes());
    out.push(b'}');
    out
}

fn open(bytes: &[u8]) -> Result<Envelope<'_>, WireError> {
    let e: Envelope<'_> = serde_json::from_slice(bytes).map_err(malformed)?;
    if e.v == 0 || e.v > u64::from(FORMAT) {
        return Err(WireError::UnknownVersion(e.v));
    }
    Ok(e)
}

/// A campaign's row of the table: its report (state, override, finding,
/// numbers) and what its next owner needs to carry on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignRecord {
    /// What the campaign API and the status page show.
    pub report: CampaignReport,
    /// Start of the current run of skew (for `block_after_secs`).
    pub skewed_since_ms: Option<i64>,
    /// Ids of the latest override commands applied (newest last), so that
    /// a command read again after a restart is not applied twice.
    #[serde(default)]
    pub applied: Vec<String>,
    pub policy_version: String,
    /// When its owner wrote it (epoch ms).
    pub updated_ms: i64,
}

/// The platform-wide mix over the window: every campaign's baseline where
/// the policy names none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformRecord {
    /// The window's newest bucket.
    pub head: Option<i64>,
    /// (considered, selected) per flat group index.
    pub totals: Vec<[u64; 2]>,
    pub updated_ms: i64,
}

/// One row of the table as read.
#[derive(Debug, Clone)]
pub enum TableRow {
    Campaign(Box<CampaignRecord>),
    Platform(PlatformRecord),
    /// The campaign was forgotten (a tombstone: no value).
    Gone,
}

/// A table record's bytes (key: the campaign id).
pub fn encode_campaign(key: &StateKey, rec: &CampaignRecord) -> Vec<u8> {
    let body = serde_json::to_string(rec).expect("a campaign record serialises");
    let mac = key.sign("campaign", &rec.report.campaign, &body);
    envelope("campaign", Some(&mac), &body)
}

/// The platform record's bytes (key: [`PLATFORM_KEY`]).
pub fn encode_platform(key: &StateKey, rec: &PlatformRecord) -> Vec<u8> {
    let body = serde_json::to_string(rec).expect("a platform record serialises");
    let mac = key.sign("platform", PLATFORM_KEY, &body);
    envelope("platform", Some(&mac), &body)
}

/// Read one table record, checking its version, signature and key.
pub fn decode_table(
    key: &StateKey,
    record_key: &str,
    value: Option<&[u8]>,
) -> Result<TableRow, WireError> {
    let Some(value) = value else {
        return Ok(TableRow::Gone);
    };
    let e = open(value)?;
    let body = e.body.get();
    match &*e.kind {
        "campaign" | "platform" => {}
        _ => return Err(WireError::UnknownKind),
    }
    if !e
        .mac
        .as_deref()
        .is_some_and(|m| key.verify(&e.kind, record_key, body, m))
    {
        return Err(WireError::BadSignature);
    }
    if e.kind == "platform" {
        if record_key != PLATFORM_KEY {
            return Err(WireError::WrongKey);
        }
        let p: PlatformRecord = serde_json::from_str(body).map_err(malformed)?;
        return Ok(TableRow::Platform(p));
    }
    let c: CampaignRecord = serde_json::from_str(body).map_err(malformed)?;
    if c.report.campaign != record_key {
        return Err(WireError::WrongKey);
    }
    Ok(TableRow::Campaign(Box::new(c)))
}

/// Counts from one instance for one campaign (or the platform, under
/// [`PLATFORM_KEY`]) since its last flush.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub campaign: String,
    pub category: String,
    /// Which instance counted them (for diagnosis only).
    pub instance: String,
    /// Earliest and latest decision `ts` among them (epoch ms).
    pub first_ms: i64,
    pub last_ms: i64,
    /// Groups per bucket (the policy's flattened groups): a reader under a
    /// policy with a different number skips the delta.
    pub groups: usize,
    /// (bucket, (considered, selected) per group).
    pub buckets: Vec<(i64, Vec<[u32; 2]>)>,
}

/// A campaign manager's override, for the campaign's owner to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideCommand {
    /// Unique per request.
    pub id: String,
    pub campaign: String,
    pub action: OverrideAction,
    pub by: String,
    pub reason: String,
    pub at_ms: i64,
}

/// One exposure record as read.
#[derive(Debug, Clone)]
pub enum ExposureRow {
    Delta(Delta),
    Override(OverrideCommand),
}

/// A delta's bytes (key: its campaign id).
pub fn encode_delta(d: &Delta) -> Vec<u8> {
    let body = serde_json::to_string(d).expect("a delta serialises");
    envelope("delta", None, &body)
}

/// An override command's bytes (key: its campaign id), signed.
pub fn encode_override(key: &StateKey, c: &OverrideCommand) -> Vec<u8> {
    let body = serde_json::to_string(c).expect("a command serialises");
    let mac = key.sign("override", &c.campaign, &body);
    envelope("override", Some(&mac), &body)
}

/// Read one exposure record, checking its version, key and (for commands) signature.
pub fn decode_exposure(
    key: &StateKey,
    record_key: &str,
    value: &[u8],
) -> Result<ExposureRow, WireError> {
    let e = open(value)?;
    let body = e.body.get();
    match &*e.kind {
        "delta" => {
            let d: Delta = serde_json::from_str(body).map_err(malformed)?;
            if d.campaign != record_key {
                return Err(WireError::WrongKey);
            }
            if d.buckets.iter().any(|(_, cells)| cells.len() != d.groups) {
                return Err(WireError::Malformed(
                    "a bucket's cells do not match `groups`".into(),
                ));
            }
            Ok(ExposureRow::Delta(d))
        }
        "override" => {
            if !e
                .mac
                .as_deref()
                .is_some_and(|m| key.verify("override", record_key, body, m))
            {
                return Err(WireError::BadSignature);
            }
            let c: OverrideCommand = serde_json::from_str(body).map_err(malformed)?;
            if c.campaign != record_key {
                return Err(WireError::WrongKey);
            }
            Ok(ExposureRow::Override(c))
        }
        _ => Err(WireError::UnknownKind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StateKey {
        StateKey::new(b"0123456789abcdef-test").unwrap()
    }

    fn command() -> OverrideCommand {
        OverrideCommand {
            id: "cmd-1".into(),
            campaign: "c1".into(),
            action: OverrideAction::ForceAllow,
            by: "ana".into(),
            reason: "checked".into(),
            at_ms: 5,
        }
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(StateKey::new(b"short").is_none());
        assert!(
            format!("{:?}", key()).contains('…'),
            "the key is never printed"
        );
    }

    #[test]
    fn commands_round_trip_and_a_forged_or_moved_one_is_refused() {
        let k = key();
        let bytes = encode_override(&k, &command());
        match decode_exposure(&k, "c1", &bytes).unwrap() {
            ExposureRow::Override(c) => assert_eq!(c, command()),
            other => panic!("{other:?}"),
        }
        // Under another key: refused.
        assert_eq!(
            decode_exposure(&k, "c2", &bytes).unwrap_err(),
            WireError::BadSignature
        );
        // Signed with another secret: refused.
        let other = StateKey::new(b"another-secret-of-16").unwrap();
        assert_eq!(
            decode_exposure(&other, "c1", &bytes).unwrap_err(),
            WireError::BadSignature
        );
        // Body changed after signing (force_allow -> force_block): refused.
        let text = String::from_utf8(bytes)
            .unwrap()
            .replace("force_allow", "force_block");
        assert_eq!(
            decode_exposure(&k, "c1", text.as_bytes()).unwrap_err(),
            WireError::BadSignature
        );
        // Unsigned: refused.
        let body = serde_json::to_string(&command()).unwrap();
        let unsigned = envelope("override", None, &body);
        assert_eq!(
            decode_exposure(&k, "c1", &unsigned).unwrap_err(),
            WireError::BadSignature
        );
    }

    #[test]
    fn versions_kinds_and_garbage_are_named() {
        let k = key();
        let newer = br#"{"v":2,"kind":"delta","body":{}}"#;
        assert_eq!(
            decode_exposure(&k, "c1", newer).unwrap_err(),
            WireError::UnknownVersion(2)
        );
        let zero = br#"{"v":0,"kind":"delta","body":{}}"#;
        assert_eq!(
            decode_exposure(&k, "c1", zero).unwrap_err(),
            WireError::UnknownVersion(0)
        );
        let kind = br#"{"v":1,"kind":"gossip","body":{}}"#;
        assert_eq!(
            decode_exposure(&k, "c1", kind).unwrap_err(),
            WireError::UnknownKind
        );
        assert_eq!(
            decode_table(&k, "c1", Some(kind)).unwrap_err(),
            WireError::UnknownKind
        );
        for junk in [
            &b""[..],
            b"{",
            b"[]",
            b"\xff\xfe",
            b"{\"v\":\"1\"}",
            b"null",
        ] {
            let e = decode_exposure(&k, "c1", junk).unwrap_err();
            assert_eq!(e.as_str(), "malformed", "{junk:?}: {e}");
        }
        assert!(matches!(decode_table(&k, "c1", None), Ok(TableRow::Gone)));
    }

    #[test]
    fn deltas_round_trip_and_must_be_well_formed() {
        let k = key();
        let d = Delta {
            campaign: "c1".into(),
            category: "housing".into(),
            instance: "i-1".into(),
            first_ms: 1,
            last_ms: 2,
            groups: 2,
            buckets: vec![(7, vec![[3, 1], [0, 0]])],
        };
        match decode_exposure(&k, "c1", &encode_delta(&d)).unwrap() {
            ExposureRow::Delta(got) => assert_eq!(got, d),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode_exposure(&k, "c9", &encode_delta(&d)).unwrap_err(),
            WireError::WrongKey
        );
        let bad = Delta {
            groups: 3,
            ..d.clone()
        };
        let e = decode_exposure(&k, "c1", &encode_delta(&bad)).unwrap_err();
        assert_eq!(e.as_str(), "malformed");
        // A field added by a later build of the same version is ignored.
        let text = String::from_utf8(encode_delta(&d)).unwrap().replacen(
            "\"campaign\"",
            "\"added\":[1],\"campaign\"",
            1,
        );
        assert!(decode_exposure(&k, "c1", text.as_bytes()).is_ok());
    }

    #[test]
    fn platform_records_round_trip_under_their_key_only() {
        let k = key();
        let p = PlatformRecord {
            head: Some(3),
            totals: vec![[10, 4], [2, 1]],
            updated_ms: 9,
        };
        let bytes = encode_platform(&k, &p);
        match decode_table(&k, PLATFORM_KEY, Some(&bytes)).unwrap() {
            TableRow::Platform(got) => assert_eq!(got, p),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode_table(&k, "c1", Some(&bytes)).unwrap_err(),
            WireError::BadSignature
        );
    }
}
