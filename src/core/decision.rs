//! The decision message (SPEC "The decision message"): reading and checking it.
//!
//! Most records are read from their text alone: when the outline read
//! accepts the text ([`outline::scan`]: valid JSON, no escape, no repeated
//! key), the fields are read through the outline and nothing is parsed
//! ([`crate::core::view::TextValue`]). Any other record is parsed into a
//! `sonic_rs::Value` (with `arbitrary_precision`), an immutable document
//! that stripping edits copy-on-write ([`crate::core::edit`]). Both are read
//! by the same rules ([`View`]), so fields the policy does not name are
//! published with their values unchanged, numbers digit for digit, either
//! way. Only the fields fairgate interprets are
//! type-checked; a wrong type is a rejection naming the field and the JSON type
//! found — never the value, which may be personal.
//!
//! Reading is kept to serde_json's semantics, which fairgate used before:
//! nesting deeper than 127 is a syntax error, a repeated key keeps one entry
//! (the last value, at the first key's place; see [`normalise`]), and integers
//! are read from the number's text as `str::parse` reads them.

use std::borrow::Cow;

use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait, Object, Value};

use crate::core::consent::Inputs;
use crate::core::outline::{self, Outline, Scan};
use crate::core::view::{TextValue, View};

/// Why a record was sent to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("the decision must be a JSON object, found {0}")]
    NotObject(&'static str),
    #[error("{0}: required field is missing")]
    Missing(&'static str),
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{field}: {why}")]
    Invalid {
        field: &'static str,
        why: &'static str,
    },
    /// The guard failed on this record: a bug in fairgate, not in the record.
    #[error("fairgate failed while judging this record (a bug; see fairgate's log)")]
    Internal,
}

impl Reject {
    /// Stable error kind (metrics label, `fairgate-error-kind` header).
    pub fn kind(&self) -> &'static str {
        match self {
            Reject::NotJson(_) | Reject::NotUtf8 => "not_json",
            Reject::NotObject(_) => "not_object",
            Reject::Missing(_) => "missing_field",
            Reject::WrongType { .. } => "wrong_type",
            Reject::Invalid { .. } => "invalid_value",
            Reject::Internal => "internal_error",
        }
    }
}

/// The number as a finite `f64`, read from its source text.
pub fn as_f64(v: &Value) -> Option<f64> {
    match v.as_raw_number() {
        Some(raw) => raw.as_str().parse::<f64>().ok(),
        None => v.as_f64(),
    }
    .filter(|x| x.is_finite())
}

/// A decision that passed validation, read from the text `'t`.
#[derive(Debug, Clone)]
pub struct Decision<'t> {
    /// The whole message, as text or as a parsed document.
    body: Body<'t>,
    pub id: String,
    /// Epoch milliseconds.
    pub ts: i64,
    pub campaign_id: String,
    pub category: Option<String>,
    /// Whether the user was targeted (absent: true).
    pub selected: bool,
    /// `regs.gdpr`, or `regs.ext.gdpr` (OpenRTB 2.5) when absent.
    pub gdpr: Option<bool>,
    pub coppa: bool,
    pub gpc: bool,
    pub gpp_sid: Vec<i64>,
    /// `device.lmt = 1` (Limit Ad Tracking).
    pub lmt: bool,
    /// Consent fields given in both their OpenRTB 2.6 and 2.5 places with
    /// different values (the 2.6 one is used), for a metric.
    pub disagreements: Placements,
}

/// A decision's message.
#[derive(Debug, Clone)]
enum Body<'t> {
    /// Text the outline read accepted: read through its outline, never
    /// parsed whole.
    Text { text: &'t str, outline: Outline },
    /// Any other text, parsed (repeated keys resolved: [`normalise`]).
    Parsed(Value),
}

/// The message's root, to be read through [`View`].
#[derive(Debug, Clone, Copy)]
pub enum Root<'a> {
    Text(TextValue<'a>),
    Parsed(&'a Value),
}

/// The fields validation reads.
struct Fields {
    id: String,
    ts: i64,
    campaign_id: String,
    category: Option<String>,
    selected: bool,
    regs: Regs,
    lmt: bool,
    disagree_consent: bool,
}

/// A decision's text and where its entries lie ([`Decision::source`]).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub text: &'a str,
    pub outline: &'a Outline,
}

impl<'a> Source<'a> {
    /// The text of a span (spans of the outline lie on characters' bounds).
    pub fn text(&self, (start, end): outline::Span) -> &'a str {
        &self.text[start as usize..end as usize]
    }

    /// The value of the entry `id`.
    pub fn value(&self, id: u32) -> TextValue<'a> {
        TextValue::of_entry(self.text, self.outline, id)
    }
}

/// Which consent fields a decision gives differently in their OpenRTB 2.6
/// place and their 2.5 place (`regs.ext.*`, `user.ext.consent`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placements {
    pub gdpr: bool,
    pub us_privacy: bool,
    pub consent: bool,
}

impl Placements {
    /// `(field, disagreed)` pairs, for metrics: the field names are fixed.
    pub fn iter(&self) -> [(&'static str, bool); 3] {
        [
            ("gdpr", self.gdpr),
            ("us_privacy", self.us_privacy),
            ("consent", self.consent),
        ]
    }
}

/// The non-null value of `k` in the object `m`.
fn get<'a, V: View<'a>>(m: V, k: &str) -> Option<V> {
    m.get(k).filter(|v| !v.is_null())
}

/// An object view: `v` when it is one.
fn as_object<'a, V: View<'a>>(v: V) -> Option<V> {
    (v.json_type() == JsonType::Object).then_some(v)
}

/// The non-null values of `names` in the object `m`, in one pass over its
/// fields.
fn fields<'a, V: View<'a>, const N: usize>(m: V, names: [&str; N]) -> [Option<V>; N] {
    let mut out = [None; N];
    for (k, v) in m.entries().into_iter().flatten() {
        if let Some(i) = names.iter().position(|n| *n == k) {
            out[i] = Some(v);
        }
    }
    out.map(|v| v.filter(|v| !v.is_null()))
}

fn object<'a, V: View<'a>>(v: Option<V>, field: &'static str) -> Result<Option<V>, Reject> {
    match v {
        None => Ok(None),
        Some(v) => match as_object(v) {
            Some(o) => Ok(Some(o)),
            None => Err(Reject::WrongType {
                field,
                expected: "an object",
                found: v.type_name(),
            }),
        },
    }
}

fn string<'a, V: View<'a>>(v: Option<V>, field: &'static str) -> Result<Option<&'a str>, Reject> {
    match v {
        None => Ok(None),
        Some(v) => match v.as_str() {
            Some(s) => Ok(Some(s)),
            None => Err(Reject::WrongType {
                field,
                expected: "a string",
                found: v.type_name(),
            }),
        },
    }
}

/// A 0/1 flag; booleans are accepted too.
fn flag<'a, V: View<'a>>(v: Option<V>, field: &'static str) -> Result<Option<bool>, Reject> {
    match v {
        None => Ok(None),
        Some(v) => match (v.as_bool(), v.as_i64()) {
            (Some(b), _) => Ok(Some(b)),
            (None, Some(0)) => Ok(Some(false)),
            (None, Some(1)) => Ok(Some(true)),
            _ => Err(Reject::WrongType {
                field,
                expected: "0 or 1",
                found: v.type_name(),
            }),
        },
    }
}

/// serde_json's nesting limit: the 128th open array or object is an error.
const MAX_DEPTH: usize = 127;

/// Where the input nests deeper than [`MAX_DEPTH`], if it does. The parser
/// recurses per level, so this is checked before parsing: a deep record must
/// not exhaust the stack.
fn too_deep(bytes: &[u8]) -> Option<usize> {
    // No record can nest deeper than it has brackets; counting them is cheap
    // (`b | 0x20` is `{` for `[` and `{` only; u8 sums per chunk vectorise).
    let opens: usize = bytes
        .chunks(255)
        .map(|c| c.iter().map(|&b| u8::from(b | 0x20 == b'{')).sum::<u8>() as usize)
        .sum();
    if opens <= MAX_DEPTH {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// One-based line and the column of byte `at` (serde_json's convention:
/// bytes into the line, so the end of `{"a"` is column 4).
fn place(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = &bytes[..at.min(bytes.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, before.len() - start)
}

/// The syntax error for bytes that did not parse. Built from a place only:
/// the parser's own message quotes the input, which may be personal.
fn not_json(bytes: &[u8], e: &sonic_rs::Error) -> Reject {
    if std::str::from_utf8(bytes).is_err() {
        return Reject::NotUtf8;
    }
    if e.offset() >= bytes.len() {
        let (line, column) = place(bytes, bytes.len());
        Reject::NotJson(format!(
            "unexpected end of input at line {line} column {column}"
        ))
    } else {
        Reject::NotJson(format!(
            "syntax error at line {} column {}",
            e.line(),
            e.column()
        ))
    }
}

/// Whether some object of a text that parsed may repeat a key, from what
/// the outline read found ([`outline::scan`]; a text it accepted never
/// comes here). A repeat (`true`) is not certain: an escaped key may spell
/// another differently, an object of more than 32 keys is left to the
/// hashed check on the parsed document ([`normalise`]), and so is a text
/// the read did not take. No repeat is certain: every key differs byte for
/// byte from the other keys of its object.
fn keys_may_repeat(json: &[u8], scan: &Scan) -> bool {
    match scan {
        Scan::Escaped => keys_may_repeat_bytewise(json),
        Scan::Unique(_) | Scan::MayRepeat | Scan::Unread => true,
    }
}

/// Whether some object of a valid JSON text may repeat a key, byte by
/// byte (text holding escapes, which the outline read does not take).
fn keys_may_repeat_bytewise(json: &[u8]) -> bool {
    const MANY: usize = 32;
    // The keys of the open objects, innermost last; where each open
    // container's keys start (arrays too, so that closing pops in step).
    let mut keys: Vec<&[u8]> = Vec::with_capacity(64);
    let mut frames: Vec<usize> = Vec::with_capacity(16);
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i + 1;
                let (mut end, mut escaped) = (start, false);
                loop {
                    let Some(p) = memchr::memchr2(b'"', b'\\', &json[end..]) else {
                        return true;
                    };
                    end += p;
                    if json[end] == b'"' {
                        break;
                    }
                    escaped = true;
                    end += 2;
                }
                i = end + 1;
                // A string is a key when a `:` follows it.
                let mut k = i;
                while json
                    .get(k)
                    .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                {
                    k += 1;
                }
                if json.get(k) == Some(&b':') {
                    let from = frames.last().copied().unwrap_or(0);
                    let key = &json[start..end];
                    if escaped || keys.len() - from >= MANY || keys[from..].contains(&key) {
                        return true;
                    }
                    keys.push(key);
                    i = k + 1;
                }
            }
            b'{' | b'[' => {
                frames.push(keys.len());
                i += 1;
            }
            b'}' | b']' => {
                if let Some(f) = frames.pop() {
                    keys.truncate(f);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    false
}

/// Whether any object in `v` repeats a key.
fn has_repeated_keys(v: &Value) -> bool {
    match v.get_type() {
        JsonType::Array => v
            .as_array()
            .is_some_and(|a| a.iter().any(has_repeated_keys)),
        JsonType::Object => v.as_object().is_some_and(object_repeats_keys),
        _ => false,
    }
}

fn object_repeats_keys(o: &Object) -> bool {
    const SMALL: usize = 16;
    // Length and first and last byte: most keys differ there, no compare needed.
    fn print(k: &str) -> u32 {
        let b = k.as_bytes();
        (b.len() as u32) << 16
            | u32::from(b.first().copied().unwrap_or(0)) << 8
            | u32::from(b.last().copied().unwrap_or(0))
    }
    if o.len() <= SMALL {
        let mut seen: [(u32, &str); SMALL] = [(0, ""); SMALL];
        for (n, (k, child)) in o.iter().enumerate() {
            let p = print(k);
            if seen[..n].iter().any(|&(q, s)| q == p && s == k) || has_repeated_keys(child) {
                return true;
            }
            seen[n] = (p, k);
        }
        false
    } else {
        let mut seen = std::collections::HashSet::with_capacity(o.len());
        o.iter()
            .any(|(k, child)| !seen.insert(k) || has_repeated_keys(child))
    }
}

/// `v` written with one entry per key: the last value, at the first key's place.
fn write_normalised(v: &Value, out: &mut Vec<u8>) {
    let ser = "a parsed value always serialises";
    if let Some(a) = v.as_array() {
        out.push(b'[');
        for (i, x) in a.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_normalised(x, out);
        }
        out.push(b']');
    } else if let Some(o) = v.as_object() {
        let mut entries: Vec<(&str, &Value)> = Vec::with_capacity(o.len());
        let mut index = std::collections::HashMap::with_capacity(o.len());
        for (k, x) in o.iter() {
            match index.get(k) {
                Some(&i) => entries[i] = (k, x),
                None => {
                    index.insert(k, entries.len());
                    entries.push((k, x));
                }
            }
        }
        out.push(b'{');
        for (i, (k, x)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            sonic_rs::to_writer(&mut *out, k).expect(ser);
            out.push(b':');
            write_normalised(x, out);
        }
        out.push(b'}');
    } else {
        sonic_rs::to_writer(&mut *out, v).expect(ser);
    }
}

/// Keep one entry per object key, as serde_json did: the last value, at the
/// first key's place. Everything downstream then reads and strips the one
/// entry the next consumer will read; a repeated `"id"` cannot survive
/// stripping, and consent is read from the string downstream reads.
/// Returns `v` itself when no key repeats (the usual case, checked cheaply).
pub fn normalise(v: Value) -> Result<Value, Reject> {
    if !has_repeated_keys(&v) {
        return Ok(v);
    }
    let mut out = Vec::new();
    write_normalised(&v, &mut out);
    // Our own writer's output always parses; should it ever not, the record
    // is dead-lettered rather than the judge thread brought down.
    sonic_rs::from_slice(&out).map_err(|_| Reject::Invalid {
        field: "(document)",
        why: "repeated keys could not be resolved",
    })
}

/// `id`: a non-empty string, required.
fn read_id<'a, V: View<'a>>(id: Option<V>) -> Result<String, Reject> {
    match id {
        None => Err(Reject::Missing("id")),
        Some(v) => match v.as_str() {
            Some("") => Err(Reject::Invalid {
                field: "id",
                why: "must not be empty",
            }),
            Some(s) => Ok(s.to_string()),
            None => Err(Reject::WrongType {
                field: "id",
                expected: "a string",
                found: v.type_name(),
            }),
        },
    }
}

/// `ts`: epoch milliseconds, a non-negative integer, required.
fn read_ts<'a, V: View<'a>>(ts: Option<V>) -> Result<i64, Reject> {
    match ts {
        None => Err(Reject::Missing("ts")),
        Some(v) => match v.as_i64() {
            Some(t) if t >= 0 => Ok(t),
            Some(_) => Err(Reject::Invalid {
                field: "ts",
                why: "must be epoch milliseconds, not negative",
            }),
            None => Err(Reject::WrongType {
                field: "ts",
                expected: "an integer (epoch milliseconds)",
                found: v.type_name(),
            }),
        },
    }
}

/// `campaign`: an object with a non-empty `id` of at most 256 bytes
/// (required) and an optional string `category`.
fn read_campaign<'a, V: View<'a>>(campaign: Option<V>) -> Result<(String, Option<String>), Reject> {
    let campaign = match campaign {
        None => return Err(Reject::Missing("campaign.id")),
        Some(v) => as_object(v).ok_or_else(|| Reject::WrongType {
            field: "campaign",
            expected: "an object",
            found: v.type_name(),
        })?,
    };
    let [campaign_id, category] = fields(campaign, ["id", "category"]);
    let campaign_id = match string(campaign_id, "campaign.id")? {
        None => return Err(Reject::Missing("campaign.id")),
        Some("") => {
            return Err(Reject::Invalid {
                field: "campaign.id",
                why: "must not be empty",
            });
        }
        Some(s) if s.len() > 256 => {
            return Err(Reject::Invalid {
                field: "campaign.id",
                why: "longer than 256 bytes",
            });
        }
        Some(s) => s.to_string(),
    };
    let category = string(category, "campaign.category")?.map(str::to_string);
    Ok((campaign_id, category))
}

/// `selected`: a boolean, true when absent.
fn read_selected<'a, V: View<'a>>(selected: Option<V>) -> Result<bool, Reject> {
    match selected {
        None => Ok(true),
        Some(v) => v.as_bool().ok_or_else(|| Reject::WrongType {
            field: "selected",
            expected: "a boolean",
            found: v.type_name(),
        }),
    }
}

/// `user`: an optional object whose `consent` and `ext.consent` (OpenRTB
/// 2.5), if any, are strings (read later, borrowed, by
/// [`Decision::consent_inputs`]). Whether the two disagree.
fn read_user<'a, V: View<'a>>(user: Option<V>) -> Result<bool, Reject> {
    let user = object(user, "user")?;
    let consent = string(user.and_then(|u| get(u, "consent")), "user.consent")?;
    let ext = user.and_then(|u| get(u, "ext")).and_then(as_object);
    let old = string(ext.and_then(|e| get(e, "consent")), "user.ext.consent")?;
    Ok(matches!((consent, old), (Some(a), Some(b)) if a != b))
}

/// `device`: an optional object whose `lmt`, if any, is 0 or 1.
fn read_device<'a, V: View<'a>>(device: Option<V>) -> Result<bool, Reject> {
    let device = object(device, "device")?;
    Ok(flag(device.and_then(|d| get(d, "lmt")), "device.lmt")?.unwrap_or(false))
}

/// The `regs` fields a decision keeps; `us_privacy` and `gpp` are only
/// type-checked here and read later, borrowed.
struct Regs {
    gdpr: Option<bool>,
    coppa: bool,
    gpc: bool,
    gpp_sid: Vec<i64>,
    disagree_gdpr: bool,
    disagree_usp: bool,
}

/// `regs`: an optional object of flags, consent strings and GPP section ids.
fn read_regs<'a, V: View<'a>>(regs: Option<V>) -> Result<Regs, Reject> {
    let regs = object(regs, "regs")?;
    let [gdpr, coppa, gpc, usp, gpp, gpp_sid] = match regs {
        Some(r) => fields(r, ["gdpr", "coppa", "gpc", "us_privacy", "gpp", "gpp_sid"]),
        None => [None; 6],
    };
    let gdpr = flag(gdpr, "regs.gdpr")?;
    let coppa = flag(coppa, "regs.coppa")?.unwrap_or(false);
    let gpc = flag(gpc, "regs.gpc")?.unwrap_or(false);
    let usp = string(usp, "regs.us_privacy")?;
    string(gpp, "regs.gpp")?;
    let gpp_sid = read_gpp_sid(gpp_sid)?;
    // OpenRTB 2.5 placed these under `regs.ext`; read where 2.6's are absent.
    let ext = regs.and_then(|r| get(r, "ext")).and_then(as_object);
    let [old_gdpr, old_usp] = match ext {
        Some(e) => fields(e, ["gdpr", "us_privacy"]),
        None => [None; 2],
    };
    let old_gdpr = flag(old_gdpr, "regs.ext.gdpr")?;
    let old_usp = string(old_usp, "regs.ext.us_privacy")?;
    Ok(Regs {
        gdpr: gdpr.or(old_gdpr),
        coppa,
        gpc,
        gpp_sid,
        disagree_gdpr: matches!((gdpr, old_gdpr), (Some(a), Some(b)) if a != b),
        disagree_usp: matches!((usp, old_usp), (Some(a), Some(b)) if a != b),
    })
}

/// `regs.gpp_sid`: an array of integers, empty when absent.
fn read_gpp_sid<'a, V: View<'a>>(gpp_sid: Option<V>) -> Result<Vec<i64>, Reject> {
    let Some(v) = gpp_sid else {
        return Ok(Vec::new());
    };
    let Some(a) = v.elements() else {
        return Err(Reject::WrongType {
            field: "regs.gpp_sid",
            expected: "an array of integers",
            found: v.type_name(),
        });
    };
    let mut out = Vec::new();
    for x in a {
        match x.as_i64() {
            Some(i) => out.push(i),
            None => {
                return Err(Reject::WrongType {
                    field: "regs.gpp_sid",
                    expected: "an array of integers",
                    found: "an array with a non-integer",
                });
            }
        }
    }
    Ok(out)
}

impl<'t> Decision<'t> {
    /// Parse and validate one record.
    pub fn parse(bytes: &'t [u8]) -> Result<Decision<'t>, Reject> {
        let scan = match simdutf8::basic::from_utf8(bytes) {
            Ok(text) => match outline::scan(bytes) {
                Scan::Unique(outline) => return Self::from_text(text, outline),
                other => other,
            },
            Err(_) => Scan::Unread,
        };
        Self::from_document(bytes, &scan)
    }

    /// [`Decision::parse`] through the parsed document, whatever the text:
    /// the path of a text the outline read does not take (`scan`, its
    /// finding). Public for the tests that hold the two paths equal.
    #[doc(hidden)]
    pub fn from_document(bytes: &[u8], scan: &Scan) -> Result<Decision<'t>, Reject> {
        if let Some(at) = too_deep(bytes) {
            if std::str::from_utf8(bytes).is_err() {
                return Err(Reject::NotUtf8);
            }
            let (line, column) = place(bytes, at + 1);
            return Err(Reject::NotJson(format!(
                "syntax error at line {line} column {column}"
            )));
        }
        let value: Value = sonic_rs::from_slice(bytes).map_err(|e| not_json(bytes, &e))?;
        let value = if keys_may_repeat(bytes, scan) {
            normalise(value)?
        } else {
            value
        };
        let fields = read(&value)?;
        Ok(Self::with(Body::Parsed(value), fields))
    }

    /// A text the outline read accepted, validated through its outline.
    fn from_text(text: &'t str, outline: Outline) -> Result<Decision<'t>, Reject> {
        let fields = read(TextValue::root(text, &outline))?;
        Ok(Self::with(Body::Text { text, outline }, fields))
    }

    fn with(body: Body<'t>, f: Fields) -> Decision<'t> {
        Decision {
            body,
            id: f.id,
            ts: f.ts,
            campaign_id: f.campaign_id,
            category: f.category,
            selected: f.selected,
            gdpr: f.regs.gdpr,
            coppa: f.regs.coppa,
            gpc: f.regs.gpc,
            gpp_sid: f.regs.gpp_sid,
            lmt: f.lmt,
            disagreements: Placements {
                gdpr: f.regs.disagree_gdpr,
                us_privacy: f.regs.disagree_usp,
                consent: f.disagree_consent,
            },
        }
    }

    /// The text and its outline, when the decision was read from its text
    /// ([`crate::core::rewrite`] copies what it leaves untouched from it).
    pub fn source(&self) -> Option<Source<'_>> {
        match &self.body {
            Body::Text { text, outline } => Some(Source { text, outline }),
            Body::Parsed(_) => None,
        }
    }

    /// The message's root, to read through [`View`].
    pub fn root(&self) -> Root<'_> {
        match &self.body {
            Body::Text { text, outline } => Root::Text(TextValue::root(text, outline)),
            Body::Parsed(v) => Root::Parsed(v),
        }
    }

    /// The message as a parsed document: parsed now when it was read from
    /// its text (for the policies stripping cannot do in one walk, see
    /// [`crate::core::rewrite`]).
    pub fn document(&self) -> Cow<'_, Value> {
        match &self.body {
            Body::Parsed(v) => Cow::Borrowed(v),
            Body::Text { text, .. } => Cow::Owned(
                sonic_rs::from_str(text).expect("a text the outline read accepted parses"),
            ),
        }
    }

    /// The consent signals, borrowed from the message: each in its OpenRTB
    /// 2.6 place, or in its 2.5 place (`ext`) when the 2.6 one is absent or
    /// empty (an empty string is no signal, so it must not hide one).
    ///
    /// A TC string's age is measured at the later of the decision's `ts`
    /// and `now_ms`, fairgate's clock: a `ts` far in the past (seconds sent
    /// as milliseconds, 1970; a replay of old traffic) cannot keep an old
    /// string from expiring.
    pub fn consent_inputs(&self, now_ms: i64) -> Inputs<'_> {
        match self.root() {
            Root::Text(v) => self.inputs(v, now_ms),
            Root::Parsed(v) => self.inputs(v, now_ms),
        }
    }

    fn inputs<'a, V: View<'a>>(&'a self, root: V, now_ms: i64) -> Inputs<'a> {
        let user = root.get("user").and_then(as_object);
        let regs = root.get("regs").and_then(as_object);
        fn s<'a, V: View<'a>>(m: Option<V>, k: &str) -> Option<&'a str> {
            m.and_then(|m| m.get(k))
                .and_then(V::as_str)
                .filter(|s| !s.is_empty())
        }
        fn ext<'a, V: View<'a>>(m: Option<V>) -> Option<V> {
            m.and_then(|m| m.get("ext")).and_then(as_object)
        }
        Inputs {
            gdpr: self.gdpr,
            tcf: s(user, "consent").or_else(|| s(ext(user), "consent")),
            usp: s(regs, "us_privacy").or_else(|| s(ext(regs), "us_privacy")),
            gpp: s(regs, "gpp"),
            gpp_sid: &self.gpp_sid,
            gpc: self.gpc,
            coppa: self.coppa,
            lmt: self.lmt,
            ts_ms: self.ts.max(now_ms),
        }
    }
}

/// Validate a message that repeats no key.
///
/// Fields are checked in a fixed order — id, ts, campaign, selected,
/// user, regs, device — and the first problem found is the rejection.
fn read<'a, V: View<'a>>(root: V) -> Result<Fields, Reject> {
    if root.json_type() != JsonType::Object {
        return Err(Reject::NotObject(root.type_name()));
    }
    let [id, ts, campaign, selected, user, regs, device] = fields(
        root,
        ["id", "ts", "campaign", "selected", "user", "regs", "device"],
    );
    let id = read_id(id)?;
    let ts = read_ts(ts)?;
    let (campaign_id, category) = read_campaign(campaign)?;
    let selected = read_selected(selected)?;
    let disagree_consent = read_user(user)?;
    let regs = read_regs(regs)?;
    let lmt = read_device(device)?;
    Ok(Fields {
        id,
        ts,
        campaign_id,
        category,
        selected,
        regs,
        lmt,
        disagree_consent,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn reject(s: &str) -> Reject {
        Decision::parse(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn required_fields_are_named() {
        assert_eq!(
            reject(r#"{"ts":1,"campaign":{"id":"c"}}"#),
            Reject::Missing("id")
        );
        assert_eq!(
            reject(r#"{"id":"a","campaign":{"id":"c"}}"#),
            Reject::Missing("ts")
        );
        assert_eq!(
            reject(r#"{"id":"a","ts":1}"#),
            Reject::Missing("campaign.id")
        );
        assert_eq!(
            reject(r#"{"id":"a","ts":1,"campaign":{}}"#),
            Reject::Missing("campaign.id")
        );
    }

    #[test]
    fn wrong_types_are_named_without_values() {
        let r = reject(r#"{"id":"a","ts":"soon","campaign":{"id":"c"}}"#);
        assert_eq!(
            r.to_string(),
            "ts: expected an integer (epoch milliseconds), found a string"
        );
        let r = reject(r#"{"id":"a","ts":1.5,"campaign":{"id":"c"}}"#);
        assert_eq!(r.kind(), "wrong_type");
        let r = reject(r#"{"id":"a","ts":1,"campaign":{"id":"c"},"user":{"consent":12345}}"#);
        assert_eq!(
            r.to_string(),
            "user.consent: expected a string, found an integer"
        );
        assert!(!r.to_string().contains("12345"));
        let r = reject(r#"{"id":"a","ts":1,"campaign":{"id":"c"},"regs":{"gdpr":2}}"#);
        assert_eq!(
            r.to_string(),
            "regs.gdpr: expected 0 or 1, found an integer"
        );
    }

    #[test]
    fn not_json_says_where() {
        let r = reject("{\"id\": \"secret-user\"");
        assert!(matches!(r, Reject::NotJson(_)));
        assert!(!r.to_string().contains("secret-user"));
        assert_eq!(reject("[1,2]"), Reject::NotObject("an array"));
        assert_eq!(Decision::parse(&[0xff, 0xfe]).unwrap_err(), Reject::NotUtf8);
    }

    #[test]
    fn syntax_errors_name_a_place_never_the_input() {
        let r = reject("{\"id\":\"secret-user\"");
        assert_eq!(
            r,
            Reject::NotJson("unexpected end of input at line 1 column 19".into())
        );
        assert_eq!(
            reject(""),
            Reject::NotJson("unexpected end of input at line 1 column 0".into())
        );
        let r = reject("{\"id\":\n\"secret-user\" x}");
        assert_eq!(
            r,
            Reject::NotJson("syntax error at line 2 column 15".into())
        );
        let r = reject("{\"id\":\"secret\\x-user\"}");
        assert!(matches!(r, Reject::NotJson(_)), "{r:?}");
        assert!(!r.to_string().contains("secret"), "{r}");
        assert_eq!(
            Decision::parse(b"{\"id\":\"\xff\"}").unwrap_err(),
            Reject::NotUtf8
        );
    }

    #[test]
    fn nesting_is_limited_as_serde_json_limited_it() {
        let ok = format!(
            "{{\"id\":\"a\",\"ts\":1,\"campaign\":{{\"id\":\"c\"}},\"x\":{}{}}}",
            "[".repeat(126),
            "]".repeat(126)
        );
        // Unoptimised, the parser takes tens of KB of stack per level (about
        // 0.5 KB optimised), more than a test thread has for 126 levels.
        let parsed = std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn(move || Decision::parse(ok.as_bytes()).is_ok())
            .unwrap()
            .join()
            .unwrap();
        assert!(parsed);
        // Brackets inside strings do not count.
        let quoted = format!(
            "{{\"id\":\"a\",\"ts\":1,\"campaign\":{{\"id\":\"c\"}},\"x\":\"{}\\\"{}\"}}",
            "[".repeat(200),
            "{".repeat(200)
        );
        assert!(Decision::parse(quoted.as_bytes()).is_ok());
        let deep = format!("{{\"x\":{}", "[".repeat(200));
        assert_eq!(
            reject(&deep),
            Reject::NotJson("syntax error at line 1 column 132".into())
        );
        // Deep enough to exhaust a stack if it reached the parser.
        let deeper = "[".repeat(1_000_000) + &"]".repeat(1_000_000);
        assert!(matches!(reject(&deeper), Reject::NotJson(_)));
    }

    #[test]
    fn the_bracket_count_sees_every_byte() {
        // 127 opening brackets pass untouched; one more, wherever it lies
        // (any block, any lane, the tail), sends the text to the exact
        // scan, which finds it 128 deep.
        for len in [0, 1, 15, 16, 17, 127, 128, 129, 200, 1000] {
            for at in 0..=len.min(40) {
                let mut text = vec![b' '; len];
                let brackets = b"[{".iter().cycle().take(127);
                text.splice(at..at, brackets.copied());
                assert_eq!(too_deep(&text), None, "{len} {at}");
                let last = at + 127 + (len - at) / 2;
                text.insert(last, b'[');
                assert_eq!(too_deep(&text), Some(last), "{len} {at}");
            }
        }
    }

    #[test]
    fn numbers_are_read_from_their_text() {
        let d = Decision::parse(
            br#"{"id":"a","ts":-0,"campaign":{"id":"c"},"regs":{"gdpr":1,"gpp_sid":[2,-0]}}"#,
        )
        .unwrap();
        assert_eq!((d.ts, d.gdpr, d.gpp_sid), (0, Some(true), vec![2, 0]));
        let r = reject(r#"{"id":"a","ts":1e3,"campaign":{"id":"c"}}"#);
        assert_eq!(
            r.to_string(),
            "ts: expected an integer (epoch milliseconds), found a number"
        );
        let r = reject(r#"{"id":"a","ts":18446744073709551615,"campaign":{"id":"c"}}"#);
        assert_eq!(
            r.to_string(),
            "ts: expected an integer (epoch milliseconds), found an integer"
        );
    }

    #[test]
    fn repeated_keys_keep_the_last_value_at_the_first_place() {
        let d = Decision::parse(
            br#"{"id":"first","ts":1,"campaign":{"id":"c"},"user":{"consent":"A","x":[{"k":1,"k":{"j":1,"j":2}}],"consent":"B"},"id":"last"}"#,
        )
        .unwrap();
        assert_eq!(d.id, "last");
        assert_eq!(d.consent_inputs(0).tcf, Some("B"));
        assert_eq!(
            sonic_rs::to_string(&*d.document()).unwrap(),
            r#"{"id":"last","ts":1,"campaign":{"id":"c"},"user":{"consent":"B","x":[{"k":{"j":2}}]}}"#
        );
        // The last value decides validity, too.
        let r = reject(r#"{"id":"a","ts":1,"campaign":{"id":"c"},"ts":"soon"}"#);
        assert_eq!(r.kind(), "wrong_type");
        // Many keys (past the small-object path), one repeated.
        let mut many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        many.push_str("\"k7\":\"x\"");
        let text = format!(r#"{{"id":"a","ts":1,"campaign":{{"id":"c"}},"m":{{{many}}}}}"#);
        let d = Decision::parse(text.as_bytes()).unwrap();
        let doc = d.document();
        let m = JsonValueTrait::get(&*doc, "m").unwrap();
        assert_eq!(m.as_object().unwrap().len(), 40);
        assert_eq!(View::as_str(View::get(m, "k7").unwrap()), Some("x"));
    }

    /// What the two reads together say of a text that parsed: whether some
    /// object may repeat a key.
    fn may_repeat(json: &[u8]) -> bool {
        let scan = outline::scan(json);
        !matches!(scan, Scan::Unique(_)) && keys_may_repeat(json, &scan)
    }

    /// The text scan settles records that repeat no key, and sends every
    /// one that might to the parsed-document check.
    #[test]
    fn the_key_scan_never_misses_a_repeat() {
        for json in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":[{"c":1,"d":"c","c":2}]}}"#,
            r#"{"a" : 1 , "a"	:2}"#,
            // An escape may spell another key: looked at closer.
            r#"{"a":1,"\u0061":2}"#,
            r#"{"a\"":1}"#,
        ] {
            assert!(may_repeat(json.as_bytes()), "{json}");
        }
        // A string that crosses a 64-byte block holding `}`, `{` and `:`:
        // inside the string they are not structure, whichever block they are in.
        for pad in 50..80 {
            let json = format!(r#"{{"a":1,"s":"{}}}}}{{:x:","a":2}}"#, "x".repeat(pad));
            assert!(may_repeat(json.as_bytes()), "{json}");
        }
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        assert!(may_repeat(format!("{{{many}\"z\":0}}").as_bytes()));
        for json in [
            r#"{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}],"d":{"a":{"a":1}}}"#,
            // Strings that are values, holding quotes, colons and brackets.
            r#"{"a":"a","b":":","c":"\"a\":{[","d":["a","a"],"e":"\\"}"#,
            r#"[{"a":1},{"a":1}]"#,
            r#""a""#,
            "{}",
        ] {
            assert!(!may_repeat(json.as_bytes()), "{json}");
        }
    }

    /// Text that may repeat keys at any depth, with strings holding the
    /// structural characters and long enough to cross 64-byte blocks.
    pub(crate) fn repeating_json() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let ws = proptest::sample::select(&["", " ", "\n  ", "\t"][..]);
        let leaf = prop_oneof![
            Just("1".to_string()),
            Just("null".to_string()),
            "[a-c:{}\\[\\], ]{0,90}".prop_map(|s| format!("\"{s}\"")),
        ];
        leaf.prop_recursive(4, 40, 6, move |inner| {
            let ws = ws.clone();
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec(("[a-d]{1,2}|k[a-z]{0,70}", ws.clone(), inner), 0..6)
                    .prop_map(|fields| {
                        let f: Vec<String> = fields
                            .into_iter()
                            .map(|(k, w, v)| format!("\"{k}\"{w}:{w}{v}"))
                            .collect();
                        format!("{{{}}}", f.join(","))
                    }),
            ]
        })
    }

    /// Synthetic decisions, each bent at one place: a byte cut, doubled,
    /// replaced, or a JSON character or white space put in.
    fn bent_decisions() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        const START: i64 = 1_795_000_000_000;
        (0u64..400, 0usize..4000, 0u8..7, any::<u8>()).prop_map(|(seed, at, how, b)| {
            let mut s = crate::tools::synth::Synth::new(seed, 20, 2, START);
            let mut rec = s.next(START + seed as i64).1;
            let at = at % (rec.len() + 1);
            let json_char = b"{}[]:,\"0-eE.tfn\\"[b as usize % 16];
            match how {
                0 => {}
                1 => rec.insert(at, b),
                2 if at < rec.len() => {
                    rec.remove(at);
                }
                3 if at < rec.len() => rec[at] = b,
                4 => rec.insert(at, b" \t\n\r"[b as usize % 4]),
                5 if at < rec.len() => rec[at] = json_char,
                _ => rec.insert(at, json_char),
            }
            rec
        })
    }

    /// Everything validation reads of a decision (the message aside).
    fn read_of(d: &Decision<'_>) -> String {
        format!(
            "{:?}",
            (
                &d.id,
                d.ts,
                &d.campaign_id,
                &d.category,
                d.selected,
                (d.gdpr, d.coppa, d.gpc, &d.gpp_sid, d.lmt),
                d.disagreements,
                d.consent_inputs(1_795_000_000_000),
            )
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]

        /// A record read from its text reads as the parsed document does:
        /// the same fields and consent signals, the same message, or the
        /// same rejection; and a text the outline read accepts is one the
        /// parser accepts.
        #[test]
        fn the_text_and_the_document_read_alike(rec in bent_decisions()) {
            let fast = Decision::parse(&rec);
            let slow = Decision::from_document(&rec, &Scan::Unread);
            match (&fast, &slow) {
                (Ok(a), Ok(b)) => {
                    proptest::prop_assert_eq!(read_of(a), read_of(b));
                    proptest::prop_assert_eq!(&*a.document(), &*b.document());
                }
                (Err(a), Err(b)) => proptest::prop_assert_eq!(a, b),
                _ => proptest::prop_assert!(false, "{:?} against {:?}", fast.map(|d| read_of(&d)), slow.map(|d| read_of(&d))),
            }
            if let Scan::Unique(_) = outline::scan(&rec) && std::str::from_utf8(&rec).is_ok() {
                proptest::prop_assert!(sonic_rs::from_slice::<Value>(&rec).is_ok());
            }
        }

        /// The block scan answers as the byte scan does on text without a
        /// backslash, repeated keys or not.
        #[test]
        fn the_block_scan_agrees_with_the_byte_scan(json in repeating_json()) {
            proptest::prop_assume!(sonic_rs::from_str::<Value>(&json).is_ok());
            proptest::prop_assert_eq!(
                match outline::scan(json.as_bytes()) {
                    Scan::Unique(_) => Some(false),
                    Scan::MayRepeat => Some(true),
                    Scan::Escaped => None,
                    Scan::Unread => panic!("valid JSON left unread: {json}"),
                },
                Some(keys_may_repeat_bytewise(json.as_bytes())),
                "{}", json
            );
        }
    }

    #[test]
    fn optional_fields_default() {
        let d = Decision::parse(br#"{"id":"a","ts":17,"campaign":{"id":"c"}}"#).unwrap();
        assert!(d.selected);
        assert_eq!(d.ts, 17);
        assert_eq!(d.gdpr, None);
    }
}
