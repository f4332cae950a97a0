//! Stripping: removing and coarsening what the policy names.
//!
//! Order: sensitive segments one by one; the always-removed pointers; the
//! pointers removed unless personalised; those removed for a child
//! (`strip.when_child`: COPPA or a known child) and for `device.lmt = 1`
//! (`strip.when_lmt`); then coarsening, of what is left. A field that cannot
//! be coarsened (an IP that does not parse, a latitude that is not a number)
//! is removed instead: when in doubt, nothing personal flows.
//!
//! Pointers reach every key that matches without regard to case
//! ([`crate::policy::key_matches`]): `user.ID` and `user.Id` go with
//! `user.id`. Segment ids are normalised before they are matched
//! ([`crate::policy::normalise_segment_id`]). Segments must come in the
//! documented shape — an array of data objects, each with an array
//! `segment` of objects with a string `id` — and whatever is not in that
//! shape fails closed: it is removed, because what it holds cannot be
//! checked.

use std::net::IpAddr;

use crate::core::consent::{Outcome, Verdict};
use crate::core::edit::Node;
use crate::policy::{
    CoarsenOp, CoarsenWhen, CompiledPolicy, Pointer, RemovalGroup, SegmentMatcher, key_matches,
};

/// What stripping did to one record: pointers only, never values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stripped<'p> {
    /// Pointers removed because the policy always removes them.
    pub always: Vec<&'p str>,
    /// Pointers removed because consent was not personalised.
    pub personal: Vec<&'p str>,
    /// Pointers removed because the user is a child (`strip.when_child`).
    pub child: Vec<&'p str>,
    /// Pointers removed because `device.lmt = 1` (`strip.when_lmt`).
    pub lmt: Vec<&'p str>,
    /// Pointers coarsened.
    pub coarsened: Vec<&'p str>,
    /// Pointers removed because they could not be coarsened.
    pub uncoarsenable: Vec<&'p str>,
    /// The segments pointer, when what it named was not an array (removed whole).
    pub malformed: Vec<&'p str>,
    /// Sensitive segments removed, with every entry or container that was
    /// not in the documented shape.
    pub segments: usize,
}

impl Stripped<'_> {
    /// All removed pointers, comma-separated (the `fairgate-removed` header).
    pub fn removed_header(&self) -> String {
        let all = || {
            self.malformed
                .iter()
                .chain(&self.always)
                .chain(&self.personal)
                .chain(&self.child)
                .chain(&self.lmt)
                .chain(&self.uncoarsenable)
        };
        // Sized first: one allocation, not one per doubling.
        let mut out = String::with_capacity(all().map(|p| p.len() + 1).sum());
        for p in all() {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(p);
        }
        out
    }
}

/// Push `p` once.
fn note<'p>(out: &mut Vec<&'p str>, p: &'p str) {
    if !out.contains(&p) {
        out.push(p);
    }
}

/// Remove every value at `p` (every key matching, whatever its case).
/// Returns whether something was there.
pub fn remove(v: &mut Node<'_>, p: &Pointer) -> bool {
    v.retain_at(&p.tokens, &mut |_: &mut Node<'_>| false) > 0
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
pub fn coarsen_value(v: &mut Node<'_>, op: CoarsenOp) -> bool {
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
        // The text serde_json gives the rounded `f64` (e.g. `52.37`, `1e-7`):
        // its formatter, `zmij`, called directly.
        CoarsenOp::Round { decimals } => {
            match v
                .as_f64()
                .map(|x| round(x, decimals))
                .filter(|x| x.is_finite())
            {
                Some(x) => {
                    *v = Node::Number(zmij::Buffer::new().format_finite(x).to_string());
                    true
                }
                None => false,
            }
        }
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

/// Whether one segment may stay: an object whose every `id` key (whatever
/// its case) holds a string, at least one, none of them sensitive.
pub fn segment_passes(m: &SegmentMatcher, seg: &Node<'_>) -> bool {
    let mut ok = true;
    let ids = seg.visit_fields("id", |id| {
        ok &= id.is_some_and(|id| !m.is_sensitive(id));
    });
    ok && ids > 0
}

/// The sensitive and malformed segments of one data object's `segment`
/// arrays removed (every `segment` key, whatever its case); a `segment` that
/// is not an array is removed whole. Returns the number removed.
fn strip_provider(m: &SegmentMatcher, fields: &mut Vec<(&str, Node<'_>)>) -> usize {
    let mut removed = 0;
    fields.retain_mut(|(k, segs)| {
        if !key_matches(k, "segment") || segs.is_null() {
            return true;
        }
        let Some(list) = segs.as_array_mut() else {
            removed += 1;
            return false;
        };
        list.retain(|seg| {
            let pass = segment_passes(m, seg);
            removed += usize::from(!pass);
            pass
        });
        true
    });
    removed
}

/// Remove sensitive segments under the policy's data pointer, and fail
/// closed on what is not in the documented shape: a data value that is not
/// an array is removed whole (and its pointer noted in `malformed`), a data
/// entry that is not an object is removed. Returns the number removed.
fn strip_segments<'p>(
    policy: &'p CompiledPolicy,
    v: &mut Node<'_>,
    malformed: &mut Vec<&'p str>,
) -> usize {
    let Some(m) = &policy.segments else {
        return 0;
    };
    let mut removed = 0;
    let whole = v.retain_at(&m.pointer.tokens, &mut |data: &mut Node<'_>| {
        if data.is_null() {
            return true;
        }
        let Some(providers) = data.as_array_mut() else {
            return false;
        };
        providers.retain_mut(|provider| match provider.as_object_mut() {
            Some(fields) => {
                removed += strip_provider(m, fields);
                true
            }
            None => {
                removed += 1;
                false
            }
        });
        true
    });
    if whole > 0 {
        note(malformed, &m.pointer.text);
    }
    removed + whole
}

/// Remove every pointer of a plan; notes the removed ones in `out`, each once.
fn remove_planned<'p>(v: &mut Node<'_>, plan: &'p [RemovalGroup], out: &mut Vec<&'p str>) {
    for g in plan {
        v.for_each_at(&g.parent, &mut |parent: &mut Node<'_>| {
            if let Some(a) = parent.as_array_mut() {
                // Array children: remove one by one, highest index first.
                let mut idx: Vec<(usize, &'p str)> = g
                    .children
                    .iter()
                    .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_digit()))
                    .filter_map(|(k, t)| Some((k.parse::<usize>().ok()?, t.as_str())))
                    .collect();
                idx.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
                idx.dedup_by_key(|x| x.0);
                for (i, t) in idx {
                    if i < a.len() {
                        a.remove(i);
                        note(out, t);
                    }
                }
            } else {
                for (key, text) in &g.children {
                    if parent.remove_keys(key) > 0 {
                        note(out, text);
                    }
                }
            }
        });
    }
}

/// Strip one decision in place according to the policy and its consent verdict.
pub fn strip<'p>(policy: &'p CompiledPolicy, v: &mut Node<'_>, verdict: &Verdict) -> Stripped<'p> {
    let mut out = Stripped::default();
    out.segments = strip_segments(policy, v, &mut out.malformed);
    remove_planned(v, &policy.always_plan, &mut out.always);
    if verdict.outcome != Outcome::Personalised {
        remove_planned(v, &policy.personal_plan, &mut out.personal);
    }
    if verdict.child {
        remove_planned(v, &policy.child_plan, &mut out.child);
    }
    if verdict.lmt {
        remove_planned(v, &policy.lmt_plan, &mut out.lmt);
    }
    for c in &policy.coarsen {
        if c.when == CoarsenWhen::UnlessPreciseGeo && verdict.precise_geo {
            continue;
        }
        let (mut coarsened, mut uncoarsenable) = (false, false);
        v.retain_at(&c.pointer.tokens, &mut |target: &mut Node<'_>| {
            let done = coarsen_value(target, c.op);
            coarsened |= done;
            uncoarsenable |= !done;
            done
        });
        if coarsened {
            note(&mut out.coarsened, &c.pointer.text);
        }
        if uncoarsenable {
            note(&mut out.uncoarsenable, &c.pointer.text);
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
        assert_eq!(m.prefixes().len(), 2);
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

    proptest::proptest! {
        /// A rounded number is written as serde_json writes that `f64`.
        #[test]
        fn rounded_numbers_read_as_serde_json_writes_them(x in proptest::num::f64::ANY, decimals in 0u32..8) {
            let text = format!("{x:e}");
            let doc: sonic_rs::Value = match sonic_rs::from_str(&text) {
                Ok(d) => d,
                Err(_) => return Ok(()),
            };
            let mut v = Node::Doc(&doc);
            let expected = serde_json::Number::from_f64(round(x, decimals)).map(|n| n.to_string());
            proptest::prop_assert_eq!(coarsen_value(&mut v, CoarsenOp::Round { decimals }), expected.is_some());
            if let (Node::Number(t), Some(e)) = (&v, expected) {
                proptest::prop_assert_eq!(t, &e);
            }
        }
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
            section: None,
            child: false,
            lmt: false,
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
            r#"{"list":["b","d"],"user":{"id":"u","data":[{"segment":[{"id":"ok"}]},{}]},"device":{"ip":"0.0.0.0","ipv6":"2001:db8::1","geo":{"lat":"north","lon":4.56789}}}"#
        );
        assert_eq!(
            segments, 3,
            "the sensitive one, the one without an id, the segment list that is not an array"
        );
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

    fn example() -> CompiledPolicy {
        CompiledPolicy::from_toml(include_str!("../../config/policy.toml")).unwrap()
    }

    /// Every key a pointer names is reached whatever its case (and the
    /// non-ASCII letters that case-fold onto ASCII ones), at every level:
    /// removed, coarsened, and named once in the header.
    #[test]
    fn keys_match_without_regard_to_case() {
        let policy = example();
        let input = r#"{"id":"d","USER":{"id":"a","ID":"b","Id":"c","ıd":"e","BuyerUID":"f","geo":{"LAT":52.3731,"lat":1.23456}},
            "user":{"iD":"g","Eids":[1],"consent":"kept"},"Device":{"IFA":"h","Ip":"203.0.113.17","ip":"198.51.100.7"},"Audience":{"sex":"f"},"aUdIeNcE":1,
            "other":{"id":"kept"}}"#;
        let (out, lists, _) = stripped(&policy, input, &verdict(Outcome::Contextual, false));
        assert_eq!(
            out,
            r#"{"id":"d","USER":{"geo":{"LAT":52.37,"lat":1.23}},"user":{"consent":"kept"},"Device":{"Ip":"203.0.113.0","ip":"198.51.100.0"},"other":{"id":"kept"}}"#
        );
        assert_eq!(lists[0], "/audience");
        assert_eq!(lists[1], "/user/id,/user/buyeruid,/user/eids,/device/ifa");
        assert_eq!(lists[2], "/device/ip,/user/geo/lat");
        // Personalised, nothing personal goes, but every spelling of /audience does.
        let (out, lists, _) = stripped(&policy, input, &verdict(Outcome::Personalised, true));
        assert!(
            !out.contains("udience") && !out.contains("UDIENCE"),
            "{out}"
        );
        assert!(out.contains(r#""IFA":"h""#), "{out}");
        assert_eq!(lists[4], "/audience");
        // A key that only looks like a pointer token stays.
        for key in ["i d", "idx", "uid", "i", "İdd"] {
            let input = format!(r#"{{"user":{{"{key}":1}}}}"#);
            let (out, _, _) = stripped(&policy, &input, &verdict(Outcome::Contextual, false));
            assert_eq!(out, input);
        }
    }

    /// Segment ids are normalised before they are matched: case, Unicode
    /// whitespace around the id, separators; an id outside ASCII after
    /// trimming (lookalike, zero-width, full-width) is removed as unverifiable;
    /// so is a segment with any `id` key (whatever its case) that is not a
    /// harmless string.
    #[test]
    fn segment_ids_are_normalised_before_matching() {
        let policy = example();
        let removed = [
            r#"{"id":"Health-diabetes"}"#,
            r#"{"id":"HEALTH-x"}"#,
            r#"{"id":" health-x"}"#,
            r#"{"id":"\u00a0health-x\t"}"#,
            r#"{"id":"health_x"}"#,
            r#"{"id":"health x"}"#,
            r#"{"id":"health--x"}"#,
            r#"{"id":"-health.x"}"#,
            r#"{"id":"women_Health_y"}"#,
            r#"{"id":"LGBTQ"}"#,
            r#"{"id":"heal\u200bth-x"}"#,
            r#"{"id":"\uff48ealth-x"}"#,
            r#"{"id":"h\u0435alth-x"}"#,
            r#"{"ID":"health-x"}"#,
            r#"{"id":"sports","Id":"religion-x"}"#,
            r#"{"id":"sports","iD":7}"#,
            r#"{"id":null}"#,
            r#"{"name":"sports"}"#,
            r#"{}"#,
            r#""health-x""#,
            r#"["health-x"]"#,
            r#"null"#,
            r#"3"#,
        ];
        let kept = [
            r#"{"id":"sports"}"#,
            r#"{"id":" Auto Intender "}"#,
            r#"{"id":"healthy-food"}"#,
            r#"{"id":"my-health"}"#,
            r#"{"id":"unionist"}"#,
            r#"{"id":"","x":1}"#,
            r#"{"Id":"travel"}"#,
        ];
        for seg in removed {
            let input =
                format!(r#"{{"user":{{"data":[{{"segment":[{seg},{{"id":"sports"}}]}}]}}}}"#);
            let (out, _, n) = stripped(&policy, &input, &verdict(Outcome::Personalised, true));
            assert_eq!(
                out, r#"{"user":{"data":[{"segment":[{"id":"sports"}]}]}}"#,
                "{seg} stayed"
            );
            assert_eq!(n, 1, "{seg}");
        }
        for seg in kept {
            let input = format!(r#"{{"user":{{"data":[{{"segment":[{seg}]}}]}}}}"#);
            let (out, _, n) = stripped(&policy, &input, &verdict(Outcome::Personalised, true));
            assert_eq!(out, input, "{seg} was removed");
            assert_eq!(n, 0, "{seg}");
        }
    }

    /// What is not the documented shape — an array of data objects, each
    /// with an array `segment` of objects — is removed whole: nothing in it
    /// can be checked. A `null` holds nothing and stays. Every `segment`
    /// key, whatever its case, is checked.
    #[test]
    fn malformed_segment_containers_fail_closed() {
        let policy = example();
        let personalised = verdict(Outcome::Personalised, true);
        for (data, out, n, header) in [
            (
                r#"{"segment":[{"id":"health-x"}]}"#,
                r#"{"user":{}}"#,
                1,
                "/user/data",
            ),
            (r#""health-x""#, r#"{"user":{}}"#, 1, "/user/data"),
            (r#"7"#, r#"{"user":{}}"#, 1, "/user/data"),
            (r#"null"#, r#"{"user":{"data":null}}"#, 0, ""),
            (
                r#"["health-x",{"segment":[{"id":"ok"}]},null,[{"id":"x"}]]"#,
                r#"{"user":{"data":[{"segment":[{"id":"ok"}]}]}}"#,
                3,
                "",
            ),
            (
                r#"[{"segment":{"id":"health-x"}},{"segment":"health-x"},{"segment":null}]"#,
                r#"{"user":{"data":[{},{},{"segment":null}]}}"#,
                2,
                "",
            ),
            (
                r#"[{"segment":[{"id":"ok"}],"Segment":[{"id":"health-x"},{"id":"ok2"}],"SEGMENT":{"id":"religion-x"}}]"#,
                r#"{"user":{"data":[{"segment":[{"id":"ok"}],"Segment":[{"id":"ok2"}]}]}}"#,
                2,
                "",
            ),
        ] {
            let input = format!(r#"{{"user":{{"data":{data}}}}}"#);
            let (got, lists, removed) = stripped(&policy, &input, &personalised);
            assert_eq!(got, out, "{data}");
            assert_eq!(removed, n, "{data}");
            assert_eq!(lists[4], header, "{data}");
        }
        // Every spelling of the data pointer is checked.
        let input = r#"{"User":{"DATA":{"segment":[{"id":"health-x"}]},"data":[{"segment":[{"id":"health-y"}]}]}}"#;
        let (got, lists, removed) = stripped(&policy, input, &personalised);
        assert_eq!(got, r#"{"User":{"data":[{"segment":[]}]}}"#);
        assert_eq!((lists[4].as_str(), removed), ("/user/data", 2));
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
