//! The decision message (SPEC "The decision message"): reading and checking it.
//!
//! A decision is kept as a `serde_json::Value` (with `preserve_order` and
//! `arbitrary_precision`), so fields the policy does not name are published
//! with their values unchanged, numbers digit for digit. Only the fields
//! fairgate interprets are type-checked; a wrong type is a rejection naming
//! the field and the JSON type found — never the value, which may be personal.

use serde_json::{Map, Value};

use crate::consent::Inputs;

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
        }
    }
}

/// JSON type name of a value, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A decision that passed validation.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The whole message; stripping works on it in place.
    pub value: Value,
    pub id: String,
    /// Epoch milliseconds.
    pub ts: i64,
    pub campaign_id: String,
    pub category: Option<String>,
    /// Whether the user was targeted (absent: true).
    pub selected: bool,
    pub gdpr: Option<bool>,
    pub coppa: bool,
    pub gpc: bool,
    pub gpp_sid: Vec<i64>,
}

fn get<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    match m.get(k) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

fn object<'a>(
    m: &'a Map<String, Value>,
    k: &str,
    field: &'static str,
) -> Result<Option<&'a Map<String, Value>>, Reject> {
    match get(m, k) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(Reject::WrongType {
            field,
            expected: "an object",
            found: type_name(v),
        }),
    }
}

fn string<'a>(
    m: Option<&'a Map<String, Value>>,
    k: &str,
    field: &'static str,
) -> Result<Option<&'a str>, Reject> {
    match m.and_then(|m| get(m, k)) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(Reject::WrongType {
            field,
            expected: "a string",
            found: type_name(v),
        }),
    }
}

/// A 0/1 flag; booleans are accepted too.
fn flag(
    m: Option<&Map<String, Value>>,
    k: &str,
    field: &'static str,
) -> Result<Option<bool>, Reject> {
    match m.and_then(|m| get(m, k)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v @ Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            _ => Err(Reject::WrongType {
                field,
                expected: "0 or 1",
                found: type_name(v),
            }),
        },
        Some(v) => Err(Reject::WrongType {
            field,
            expected: "0 or 1",
            found: type_name(v),
        }),
    }
}

impl Decision {
    /// Parse and validate one record.
    pub fn parse(bytes: &[u8]) -> Result<Decision, Reject> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            if std::str::from_utf8(bytes).is_err() {
                Reject::NotUtf8
            } else {
                // serde_json's syntax errors name a place, never the input's text.
                Reject::NotJson(format!(
                    "{} at line {} column {}",
                    match e.classify() {
                        serde_json::error::Category::Eof => "unexpected end of input",
                        _ => "syntax error",
                    },
                    e.line(),
                    e.column()
                ))
            }
        })?;
        Self::from_value(value)
    }

    /// Validate an already parsed value.
    pub fn from_value(value: Value) -> Result<Decision, Reject> {
        let Value::Object(root) = &value else {
            return Err(Reject::NotObject(type_name(&value)));
        };
        let id = match get(root, "id") {
            None => return Err(Reject::Missing("id")),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(Reject::Invalid {
                    field: "id",
                    why: "must not be empty",
                });
            }
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(Reject::WrongType {
                    field: "id",
                    expected: "a string",
                    found: type_name(v),
                });
            }
        };
        let ts = match get(root, "ts") {
            None => return Err(Reject::Missing("ts")),
            Some(v @ Value::Number(n)) => match n.as_i64() {
                Some(t) if t >= 0 => t,
                Some(_) => {
                    return Err(Reject::Invalid {
                        field: "ts",
                        why: "must be epoch milliseconds, not negative",
                    });
                }
                None => {
                    return Err(Reject::WrongType {
                        field: "ts",
                        expected: "an integer (epoch milliseconds)",
                        found: type_name(v),
                    });
                }
            },
            Some(v) => {
                return Err(Reject::WrongType {
                    field: "ts",
                    expected: "an integer (epoch milliseconds)",
                    found: type_name(v),
                });
            }
        };
        let campaign = match get(root, "campaign") {
            None => return Err(Reject::Missing("campaign.id")),
            Some(Value::Object(o)) => o,
            Some(v) => {
                return Err(Reject::WrongType {
                    field: "campaign",
                    expected: "an object",
                    found: type_name(v),
                });
            }
        };
        let campaign_id = match string(Some(campaign), "id", "campaign.id")? {
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
        let category = string(Some(campaign), "category", "campaign.category")?.map(str::to_string);
        let selected = match get(root, "selected") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(Reject::WrongType {
                    field: "selected",
                    expected: "a boolean",
                    found: type_name(v),
                });
            }
        };
        let user = object(root, "user", "user")?;
        string(user, "consent", "user.consent")?;
        let regs = object(root, "regs", "regs")?;
        let gdpr = flag(regs, "gdpr", "regs.gdpr")?;
        let coppa = flag(regs, "coppa", "regs.coppa")?.unwrap_or(false);
        let gpc = flag(regs, "gpc", "regs.gpc")?.unwrap_or(false);
        string(regs, "us_privacy", "regs.us_privacy")?;
        string(regs, "gpp", "regs.gpp")?;
        let gpp_sid = match regs.and_then(|r| get(r, "gpp_sid")) {
            None => Vec::new(),
            Some(Value::Array(a)) => {
                let mut out = Vec::with_capacity(a.len());
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
                out
            }
            Some(v) => {
                return Err(Reject::WrongType {
                    field: "regs.gpp_sid",
                    expected: "an array of integers",
                    found: type_name(v),
                });
            }
        };
        object(root, "device", "device")?;
        Ok(Decision {
            value,
            id,
            ts,
            campaign_id,
            category,
            selected,
            gdpr,
            coppa,
            gpc,
            gpp_sid,
        })
    }

    /// The consent signals, borrowed from the message.
    pub fn consent_inputs(&self) -> Inputs<'_> {
        let root = self.value.as_object().expect("validated object");
        let user = root.get("user").and_then(Value::as_object);
        let regs = root.get("regs").and_then(Value::as_object);
        fn s<'a>(m: Option<&'a Map<String, Value>>, k: &str) -> Option<&'a str> {
            m.and_then(|m| m.get(k)).and_then(Value::as_str)
        }
        Inputs {
            gdpr: self.gdpr,
            tcf: s(user, "consent"),
            usp: s(regs, "us_privacy"),
            gpp: s(regs, "gpp"),
            gpp_sid: &self.gpp_sid,
            gpc: self.gpc,
            coppa: self.coppa,
            ts_ms: self.ts,
        }
    }
}

/// Follow unescaped pointer tokens.
pub fn lookup<'a>(v: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t.as_str())?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Follow unescaped pointer tokens, mutably.
pub fn lookup_mut<'a>(v: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t.as_str())?,
            Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
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
    fn optional_fields_default() {
        let d = Decision::parse(br#"{"id":"a","ts":17,"campaign":{"id":"c"}}"#).unwrap();
        assert!(d.selected);
        assert_eq!(d.ts, 17);
        assert_eq!(d.gdpr, None);
    }
}
