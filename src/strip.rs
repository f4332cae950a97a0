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
use crate::policy::{CoarsenOp, CoarsenWhen, CompiledPolicy, Pointer, RemovalGroup};

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
    let Some(m) = &policy.segments else {
        return 0;
    };
    let Some(Value::Array(providers)) = lookup_mut(v, &m.pointer.tokens) else {
        return 0;
    };
    let mut removed = 0;
    for provider in providers.iter_mut() {
        let Some(Value::Array(segments)) = provider.get_mut("segment") else {
            continue;
        };
        segments.retain(|seg| {
            let sensitive = match seg.get("id") {
                Some(Value::String(id)) => m.matches(id),
                // A segment without a readable id cannot be shown to be harmless.
                _ => true,
            };
            removed += sensitive as usize;
            !sensitive
        });
    }
    removed
}

/// Remove every pointer of a plan; pushes the removed ones onto `out`.
fn remove_planned<'p>(v: &mut Value, plan: &'p [RemovalGroup], out: &mut Vec<&'p str>) {
    for g in plan {
        match lookup_mut(v, &g.parent) {
            Some(Value::Object(m)) => {
                for (key, text) in &g.children {
                    if m.shift_remove(key.as_str()).is_some() {
                        out.push(text);
                    }
                }
            }
            Some(Value::Array(_)) => {
                // Array children: remove one by one, highest index first.
                let mut idx: Vec<(usize, &'p str)> = g
                    .children
                    .iter()
                    .filter_map(|(k, t)| Some((k.parse::<usize>().ok()?, t.as_str())))
                    .collect();
                idx.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
                if let Some(Value::Array(a)) = lookup_mut(v, &g.parent) {
                    for (i, t) in idx {
                        if i < a.len() {
                            a.remove(i);
                            out.push(t);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Strip one decision in place according to the policy and its consent verdict.
pub fn strip<'p>(policy: &'p CompiledPolicy, v: &mut Value, verdict: &Verdict) -> Stripped<'p> {
    let mut out = Stripped {
        segments: strip_segments(policy, v),
        ..Stripped::default()
    };
    remove_planned(v, &policy.always_plan, &mut out.always);
    if verdict.outcome != Outcome::Personalised {
        remove_planned(v, &policy.personal_plan, &mut out.personal);
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
    fn segment_patterns() {
        let p = crate::policy::Pointer::parse("/user/data").unwrap();
        let pats: Vec<String> = ["health-*", "*-health-*", "lgbt*", "r?ce"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = crate::policy::SegmentMatcher::new(p, &pats);
        assert_eq!(m.prefixes.len(), 2);
        for id in ["health-x", "women-health-y", "lgbtq", "race"] {
            assert!(m.matches(id), "{id}");
        }
        for id in ["auto", "healthy", "xlgbt"] {
            assert!(!m.matches(id), "{id}");
        }
    }

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
