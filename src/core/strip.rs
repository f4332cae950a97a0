//! Stripping: removing and coarsening what the policy names.
//!
//! Order: sensitive segments one by one; the always-removed pointers; the
//! pointers removed unless personalised; then coarsening. A field that cannot
//! be coarsened (an IP that does not parse, a latitude that is not a number)
//! is removed instead: when in doubt, nothing personal flows.

use std::net::IpAddr;

use crate::core::consent::{Outcome, Verdict};
use crate::core::edit::Node;
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
pub fn remove(v: &mut Node<'_>, p: &Pointer) -> bool {
    let Some((last, parent)) = p.tokens.split_last() else {
        return false;
    };
    let Some(parent) = v.pointer_mut(parent) else {
        return false;
    };
    if let Some(a) = parent.as_array_mut() {
        return match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        };
    }
    parent.remove_key(last)
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
fn coarsen_value(v: &mut Node<'_>, op: CoarsenOp) -> bool {
    match op {
        CoarsenOp::Ip { v4_bits, v6_bits } => {
            match v.as_str().and_then(|s| mask_ip(s, v4_bits, v6_bits)) {
                Some(m) => {
                    *v = Node::String(m);
                    true
                }
                None => false,
            }
        }
        // The text serde_json gives the rounded `f64` (e.g. `52.37`, `1e-7`).
        CoarsenOp::Round { decimals } => match v
            .as_f64()
            .and_then(|x| serde_json::Number::from_f64(round(x, decimals)))
        {
            Some(n) => {
                *v = Node::Number(n.to_string());
                true
            }
            None => false,
        },
        CoarsenOp::Truncate { keep_chars } => match v.as_str() {
            Some(s) => {
                let t: String = s.chars().take(keep_chars).collect();
                *v = Node::String(t);
                true
            }
            None => false,
        },
    }
}

/// Remove sensitive segments under the policy's data pointer.
fn strip_segments(policy: &CompiledPolicy, v: &mut Node<'_>) -> usize {
    let Some(m) = &policy.segments else {
        return 0;
    };
    let Some(providers) = v
        .pointer_mut(&m.pointer.tokens)
        .and_then(Node::as_array_mut)
    else {
        return 0;
    };
    let mut removed = 0;
    for provider in providers.iter_mut() {
        let Some(segments) = provider.get_mut("segment").and_then(Node::as_array_mut) else {
            continue;
        };
        segments.retain(|seg| {
            let sensitive = match seg.field_str("id") {
                Some(id) => m.matches(id),
                // A segment without a readable id cannot be shown to be harmless.
                None => true,
            };
            removed += sensitive as usize;
            !sensitive
        });
    }
    removed
}

/// Remove every pointer of a plan; pushes the removed ones onto `out`.
fn remove_planned<'p>(v: &mut Node<'_>, plan: &'p [RemovalGroup], out: &mut Vec<&'p str>) {
    for g in plan {
        let Some(parent) = v.pointer_mut(&g.parent) else {
            continue;
        };
        if let Some(a) = parent.as_array_mut() {
            // Array children: remove one by one, highest index first.
            let mut idx: Vec<(usize, &'p str)> = g
                .children
                .iter()
                .filter_map(|(k, t)| Some((k.parse::<usize>().ok()?, t.as_str())))
                .collect();
            idx.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
            for (i, t) in idx {
                if i < a.len() {
                    a.remove(i);
                    out.push(t);
                }
            }
        } else {
            for (key, text) in &g.children {
                if parent.remove_key(key) {
                    out.push(text);
                }
            }
        }
    }
}

/// Strip one decision in place according to the policy and its consent verdict.
pub fn strip<'p>(policy: &'p CompiledPolicy, v: &mut Node<'_>, verdict: &Verdict) -> Stripped<'p> {
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
        let Some(target) = v.pointer_mut(&c.pointer.tokens) else {
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
        let doc: sonic_rs::Value = sonic_rs::from_str(r#"[52.3731, "1012AB", "north"]"#).unwrap();
        let text = |n: &Node| {
            let mut out = Vec::new();
            n.write(&mut out);
            String::from_utf8(out).unwrap()
        };
        let mut v = Node::Doc(&doc[0]);
        assert!(coarsen_value(&mut v, CoarsenOp::Round { decimals: 2 }));
        assert_eq!(text(&v), "52.37");
        let mut z = Node::Doc(&doc[1]);
        assert!(coarsen_value(&mut z, CoarsenOp::Truncate { keep_chars: 3 }));
        assert_eq!(text(&z), r#""101""#);
        let mut bad = Node::Doc(&doc[2]);
        assert!(!coarsen_value(&mut bad, CoarsenOp::Round { decimals: 2 }));
    }

    fn verdict(outcome: Outcome, precise_geo: bool) -> Verdict {
        Verdict {
            outcome,
            reason: crate::core::consent::Reason::Consented,
            precise_geo,
            signals: Default::default(),
        }
    }

    fn stripped(policy: &CompiledPolicy, json: &str, v: &Verdict) -> (String, Vec<String>, usize) {
        let doc: sonic_rs::Value = sonic_rs::from_str(json).unwrap();
        let mut node = Node::Doc(&doc);
        let s = strip(policy, &mut node, v);
        let mut out = Vec::new();
        node.write(&mut out);
        let lists = vec![
            s.always.join(","),
            s.personal.join(","),
            s.coarsened.join(","),
            s.uncoarsenable.join(","),
            s.removed_header(),
        ];
        (String::from_utf8(out).unwrap(), lists, s.segments)
    }

    /// Array elements named by index are removed highest first (so the
    /// indices stay right), `when = "always"` coarsens even when precise
    /// geolocation is allowed, a prefix of 0 bits masks everything, and what
    /// cannot be coarsened is removed and reported.
    #[test]
    fn plans_indices_and_coarsening_rules() {
        let text = include_str!("../../config/policy.toml")
            .replace(
                "always = [\"/audience\"]",
                "always = [\"/audience\", \"/list/0\", \"/list/2\", \"/list/9\", \"/list/4\", \"/gone/x\"]",
            )
            .replacen(
                "ipv4_prefix_bits = 24",
                "ipv4_prefix_bits = 0\nwhen = \"always\"",
                1,
            )
            .replacen(
                "method = \"ip\"\n",
                "method = \"ip\"\nipv6_prefix_bits = 0\n",
                1,
            );
        let policy = CompiledPolicy::from_toml(&text).unwrap();
        let input = r#"{"list":["a","b","c","d"],"audience":{"sex":"f"},"user":{"id":"u","data":[{"segment":[{"id":"health-x"},{"id":"ok"},{"x":1}]},{"segment":"odd"}]},
            "device":{"ip":"203.0.113.17","ipv6":"2001:db8::1","geo":{"lat":"north","lon":4.56789}}}"#;
        // Personalised with precise geolocation: only the "always" coarsening applies.
        let (out, lists, segments) =
            stripped(&policy, input, &verdict(Outcome::Personalised, true));
        assert_eq!(
            out,
            r#"{"list":["b","d"],"user":{"id":"u","data":[{"segment":[{"id":"ok"}]},{"segment":"odd"}]},"device":{"ip":"0.0.0.0","ipv6":"2001:db8::1","geo":{"lat":"north","lon":4.56789}}}"#
        );
        assert_eq!(segments, 2, "the sensitive one and the one without an id");
        assert_eq!(lists[0], "/audience,/list/2,/list/0");
        assert_eq!(
            (lists[1].as_str(), lists[2].as_str(), lists[3].as_str()),
            ("", "/device/ip", "")
        );
        // Contextual: personal fields go, every coarsening applies, the
        // latitude that is not a number is removed.
        let (out, lists, _) = stripped(&policy, input, &verdict(Outcome::Contextual, false));
        assert_eq!(
            out,
            r#"{"list":["b","d"],"user":{},"device":{"ip":"0.0.0.0","ipv6":"::","geo":{"lon":4.57}}}"#
        );
        assert_eq!(lists[1], "/user/id,/user/data");
        assert_eq!(lists[2], "/device/ip,/device/ipv6,/device/geo/lon");
        assert_eq!(lists[3], "/device/geo/lat");
        assert_eq!(
            lists[4],
            "/audience,/list/2,/list/0,/user/id,/user/data,/device/geo/lat"
        );
    }

    #[test]
    fn remove_reaches_objects_and_arrays() {
        let doc: sonic_rs::Value = sonic_rs::from_str(r#"{"a":[1,2,3],"b":{"c":1}}"#).unwrap();
        let mut n = Node::Doc(&doc);
        let p = |s: &str| crate::policy::Pointer::parse(s).unwrap();
        assert!(remove(&mut n, &p("/a/1")));
        assert!(!remove(&mut n, &p("/a/5")));
        assert!(!remove(&mut n, &p("/a/2")), "one past the end");
        assert!(!remove(&mut n, &p("/a/x")));
        assert!(remove(&mut n, &p("/b/c")));
        assert!(!remove(&mut n, &p("/b/c")));
        assert!(!remove(&mut n, &p("/z/c")));
        let mut out = Vec::new();
        n.write(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":[1,3],"b":{}}"#);
    }

    #[test]
    fn ip_masks_at_every_width() {
        assert_eq!(mask_ip(" 203.0.113.17 ", 32, 128).unwrap(), "203.0.113.17");
        assert_eq!(mask_ip("203.0.113.17", 8, 56).unwrap(), "203.0.0.0");
        assert_eq!(mask_ip("203.0.113.17", 0, 56).unwrap(), "0.0.0.0");
        assert_eq!(mask_ip("2001:db8::1", 24, 0).unwrap(), "::");
        assert_eq!(mask_ip("2001:db8::1", 24, 128).unwrap(), "2001:db8::1");
        assert_eq!(mask_ip("2001:db8:ff::1", 24, 32).unwrap(), "2001:db8::");
        assert_eq!(round(1.005, 0), 1.0);
        assert_eq!(round(-2.555, 1), -2.6);
    }
}
