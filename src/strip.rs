//! Stripping: removing and coarsening what the policy names.
//!
//! Order: sensitive segments one by one; the always-removed pointers; the
//! pointers removed unless personalised; then coarsening. A field that cannot
//! be coarsened (an IP that does not parse, a latitude that is not a number)
//! is removed instead: when in doubt, nothing personal flows.

use std::net::IpAddr;

use serde_json::Value;

use crate::consent::{Outcome, Verdict};
use crate::decision::lookup_mut;
use crate::policy::{CoarsenOp, CoarsenWhen, CompiledPolicy, Pointer};

/// What stripping did to one record: pointers only, never values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stripped<'p> {
    /// Pointers removed because the policy always removes them.
    pub always: Vec<&'p str>,
    /// Pointers removed because consent was not personalised.
    pub personal: Vec<&'p str>,
    /// Pointers coarsened.
    pub coarsened: Vec<&'p str>,
    /// Pointers removed because they could not be coarsened.
    pub uncoarsenable: Vec<&'p str>,
    /// Sensitive segments removed.
    pub segments: usize,
}

impl Stripped<'_> {
    /// All removed pointers, comma-separated (the `fairgate-removed` header).
    pub fn removed_header(&self) -> String {
        let mut out = String::new();
        for p in self
            .always
            .iter()
            .chain(&self.personal)
            .chain(&self.uncoarsenable)
        {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(p);
        }
        out
    }
}

/// Remove the value at `p`. Returns whether something was there.
pub fn remove(v: &mut Value, p: &Pointer) -> bool {
    let Some((last, parent)) = p.tokens.split_last() else {
        return false;
    };
    match lookup_mut(v, parent) {
        Some(Value::Object(m)) => m.shift_remove(last.as_str()).is_some(),
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn mask_ip(s: &str, v4_bits: u8, v6_bits: u8) -> Option<String> {
    match s.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if v4_bits == 0 {
                0
            } else {
                u32::MAX << (32 - v4_bits as u32)
            };
            Some(std::net::Ipv4Addr::from(bits & mask).to_string())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if v6_bits == 0 {
                0
            } else {
                u128::MAX << (128 - v6_bits as u32)
            };
            Some(std::net::Ipv6Addr::from(bits & mask).to_string())
        }
    }
}

fn round(x: f64, decimals: u32) -> f64 {
    let f = 10f64.powi(decimals as i32);
    (x * f).round() / f
}

/// Apply one coarsening in place; `false` when the value cannot be coarsened.
fn coarsen_value(v: &mut Value, op: CoarsenOp) -> bool {
    match (op, &*v) {
        (CoarsenOp::Ip { v4_bits, v6_bits }, Value::String(s)) => {
            match mask_ip(s, v4_bits, v6_bits) {
                Some(m) => {
                    *v = Value::String(m);
                    true
                }
                None => false,
            }
        }
        (CoarsenOp::Round { decimals }, Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => match serde_json::Number::from_f64(round(x, decimals)) {
                Some(n) => {
                    *v = Value::Number(n);
                    true
                }
                None => false,
            },
            _ => false,
        },
        (CoarsenOp::Truncate { keep_chars }, Value::String(s)) => {
            let t: String = s.chars().take(keep_chars).collect();
            *v = Value::String(t);
            true
        }
        _ => false,
    }
}

/// Remove sensitive segments under the policy's data pointer.
fn strip_segments(policy: &CompiledPolicy, v: &mut Value) -> usize {
    let Some((pointer, patterns, _)) = &policy.segments else {
        return 0;
    };
    let Some(Value::Array(providers)) = lookup_mut(v, &pointer.tokens) else {
        return 0;
    };
    let mut removed = 0;
    for provider in providers.iter_mut() {
        let Some(Value::Array(segments)) = provider.get_mut("segment") else {
            continue;
        };
        segments.retain(|seg| {
            let sensitive = match seg.get("id") {
                Some(Value::String(id)) => patterns.iter().any(|p| p.matches(id)),
                // A segment without a readable id cannot be shown to be harmless.
                _ => true,
            };
            removed += sensitive as usize;
            !sensitive
        });
    }
    removed
}

/// Strip one decision in place according to the policy and its consent verdict.
pub fn strip<'p>(policy: &'p CompiledPolicy, v: &mut Value, verdict: &Verdict) -> Stripped<'p> {
    let mut out = Stripped {
        segments: strip_segments(policy, v),
        ..Stripped::default()
    };
    for p in &policy.always {
        if remove(v, p) {
            out.always.push(&p.text);
        }
    }
    if verdict.outcome != Outcome::Personalised {
        for p in &policy.unless_personalised {
            if remove(v, p) {
                out.personal.push(&p.text);
            }
        }
    }
    for c in &policy.coarsen {
        if c.when == CoarsenWhen::UnlessPreciseGeo && verdict.precise_geo {
            continue;
        }
        let Some(target) = lookup_mut(v, &c.pointer.tokens) else {
            continue;
        };
        if coarsen_value(target, c.op) {
            out.coarsened.push(&c.pointer.text);
        } else if remove(v, &c.pointer) {
            out.uncoarsenable.push(&c.pointer.text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_masks() {
        assert_eq!(mask_ip("203.0.113.17", 24, 56).unwrap(), "203.0.113.0");
        assert_eq!(
            mask_ip("2001:db8:abcd:12ff:1:2:3:4", 24, 56).unwrap(),
            "2001:db8:abcd:1200::"
        );
        assert!(mask_ip("not-an-ip", 24, 56).is_none());
    }

    #[test]
    fn rounding_and_truncation() {
        let mut v = serde_json::json!(52.3731);
        assert!(coarsen_value(&mut v, CoarsenOp::Round { decimals: 2 }));
        assert_eq!(v.to_string(), "52.37");
        let mut z = serde_json::json!("1012AB");
        assert!(coarsen_value(&mut z, CoarsenOp::Truncate { keep_chars: 3 }));
        assert_eq!(z, serde_json::json!("101"));
        let mut bad = serde_json::json!("north");
        assert!(!coarsen_value(&mut bad, CoarsenOp::Round { decimals: 2 }));
    }
}
