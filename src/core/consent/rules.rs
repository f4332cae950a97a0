//! Issue 13's rules, a test each (beside the per-vector verdicts of
//! `tests.rs`), and the monotonicity property: adding an opt-out, a refusal,
//! a publisher restriction or a child signal to any decision never makes
//! its verdict more permissive.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;

use super::craft::{BitWriter, gpp_header};
use super::*;
use crate::core::decision::Decision;
use crate::core::edit::Node;
use crate::core::rewrite::Plan;
use crate::core::strip;
use crate::policy::CompiledPolicy;

const TCF: &str = include_str!("../../../tests/data/consent/tcf_cases.json");
const GPP: &str = include_str!("../../../tests/data/consent/gpp_cases.json");
const POLICY: &str = include_str!("../../../config/policy.toml");

/// A day after the vectors' strings were last updated.
const TS: i64 = 1_718_526_600_000;

fn evaluator() -> ConsentEvaluator {
    ConsentEvaluator::new(&CompiledPolicy::from_toml(POLICY).unwrap())
}

fn named(json: &str, name: &str) -> Value {
    let cases: Vec<Value> = serde_json::from_str(json).unwrap();
    cases
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn tcf(name: &str) -> String {
    named(TCF, name)["tc_string"].as_str().unwrap().to_string()
}

fn gpp(name: &str) -> String {
    named(GPP, name)["gpp_string"].as_str().unwrap().to_string()
}

fn verdict(e: &ConsentEvaluator, inp: Inputs<'_>) -> (Outcome, String, bool) {
    let v = e.evaluate(&Inputs { ts_ms: TS, ..inp });
    (v.outcome, v.reason_header(), v.precise_geo)
}

use Outcome::{Contextual as C, Personalised as P};

/// Item 3: with a bare TC string and a GPP section 2, each right is the
/// strictest of the two: Special Feature 1 in one string and not in the
/// other is no precise geolocation, whichever string has it.
#[test]
fn several_strings_the_strictest_wins_for_every_right() {
    let e = evaluator();
    let with_sf1 = tcf("all_purposes_v755_sf1_range");
    let without_sf1 = tcf("sf1_not_opted_in");
    let gpp_with = gpp("tcfeuv2_purposes_1_3_4_v755");
    let gpp_without = gpp("tcfeuv2_purposes_1_3_4_v755_no_sf1");
    for (bare, section, geo) in [
        (&with_sf1, &gpp_with, true),
        (&with_sf1, &gpp_without, false),
        (&without_sf1, &gpp_with, false),
        (&without_sf1, &gpp_without, false),
    ] {
        let got = verdict(
            &e,
            Inputs {
                gdpr: Some(true),
                tcf: Some(bare),
                gpp: Some(section),
                gpp_sid: &[2],
                ..Inputs::default()
            },
        );
        assert_eq!(got, (P, "consented".into(), geo));
    }
    // Consent in one string, a refusal in the other: the refusal wins.
    let refused = tcf("missing_vendor_755_range");
    let got = verdict(
        &e,
        Inputs {
            gdpr: Some(true),
            tcf: Some(&refused),
            gpp: Some(&gpp_with),
            gpp_sid: &[2],
            ..Inputs::default()
        },
    );
    assert_eq!(got, (C, "tcf_vendor".into(), false));
    let got = verdict(
        &e,
        Inputs {
            gdpr: Some(true),
            tcf: Some(&with_sf1),
            gpp: Some(&gpp("tcfeuv2_v755_missing")),
            gpp_sid: &[2],
            ..Inputs::default()
        },
    );
    assert_eq!(got, (C, "tcf_vendor:2".into(), false));
}

/// Item 4: without `regs.gdpr`, GDPR applies exactly when `gpp_sid` lists
/// section 2; the policy's `gdpr_unknown` only when neither says. Without
/// `user.consent`, a listed section 2 is the TCF string.
#[test]
fn gpp_sid_is_the_source_of_regs() {
    let e = evaluator();
    let usnat = gpp("usnat_no_opt_out");
    let section2 = gpp("tcfeuv2_purposes_1_3_4_v755");
    // gpp_sid without 2: GDPR does not apply, no TC string is needed.
    let inp = |gdpr, gpp, sid| Inputs {
        gdpr,
        gpp,
        gpp_sid: sid,
        ..Inputs::default()
    };
    assert_eq!(
        verdict(&e, inp(None, Some(&usnat), &[7])),
        (P, "consented".into(), true)
    );
    // Neither says: the policy's `gdpr_unknown = "applies"`.
    assert_eq!(
        verdict(&e, inp(None, None, &[])),
        (C, "tcf_missing".into(), false)
    );
    // gpp_sid lists 2: GDPR applies, and section 2 is the TC string, with
    // `regs.gdpr` absent or 1.
    for gdpr in [None, Some(true)] {
        assert_eq!(
            verdict(&e, inp(gdpr, Some(&section2), &[2])),
            (P, "consented".into(), true)
        );
    }
    // Listed but absent from the string: fails closed, naming the section.
    assert_eq!(
        verdict(&e, inp(None, Some(&usnat), &[2, 7])),
        (C, "gpp_section_missing:2".into(), false)
    );
    // `regs.gdpr = 0` says it does not apply: gpp_sid without 2 agrees.
    assert_eq!(
        verdict(&e, inp(Some(false), Some(&usnat), &[7])).0,
        Outcome::Personalised
    );
}

/// Item 4: OpenRTB 2.5 placements are read where the 2.6 fields are
/// absent; where both are given, 2.6 wins and the disagreement is noted.
#[test]
fn openrtb_2_5_placements_are_read_when_2_6_is_absent() {
    let e = evaluator();
    let ok = tcf("all_purposes_v755_sf1_range");
    let refused = tcf("missing_vendor_755_range");
    let judge = |json: String| {
        let d = Decision::parse(json.as_bytes()).unwrap();
        let v = e.evaluate(&d.consent_inputs(0));
        (v.outcome, v.reason_header(), d.disagreements)
    };
    let head = r#""id":"d","ts":1718526600000,"campaign":{"id":"c"}"#;
    // 2.5 only.
    let (o, r, dis) = judge(format!(
        r#"{{{head},"regs":{{"ext":{{"gdpr":1}}}},"user":{{"ext":{{"consent":"{ok}"}}}}}}"#
    ));
    assert_eq!((o, r.as_str()), (P, "consented"));
    assert_eq!(dis, Default::default());
    let (o, r, _) = judge(format!(
        r#"{{{head},"regs":{{"gdpr":0,"ext":{{"us_privacy":"1YYN"}}}}}}"#
    ));
    assert_eq!((o, r.as_str()), (C, "usp_opt_out"));
    // Both, disagreeing: 2.6 wins, each disagreement noted.
    let (o, r, dis) = judge(format!(
        r#"{{{head},"regs":{{"gdpr":1,"us_privacy":"1YNN","ext":{{"gdpr":0,"us_privacy":"1YYN"}}}},"user":{{"consent":"{refused}","ext":{{"consent":"{ok}"}}}}}}"#
    ));
    assert_eq!((o, r.as_str()), (C, "tcf_vendor"));
    assert!(dis.gdpr && dis.us_privacy && dis.consent, "{dis:?}");
    // An empty 2.6 field is no signal: it does not hide the 2.5 one.
    let (o, r, _) = judge(format!(
        r#"{{{head},"regs":{{"gdpr":0,"us_privacy":"","ext":{{"us_privacy":"1YYN"}}}}}}"#
    ));
    assert_eq!((o, r.as_str()), (C, "usp_opt_out"));
    let (o, r, _) = judge(format!(
        r#"{{{head},"regs":{{"gdpr":1}},"user":{{"consent":"","ext":{{"consent":"{refused}"}}}}}}"#
    ));
    assert_eq!((o, r.as_str()), (C, "tcf_vendor"));
    // Both, agreeing: nothing noted.
    let (_, _, dis) = judge(format!(
        r#"{{{head},"regs":{{"gdpr":1,"ext":{{"gdpr":1}}}},"user":{{"consent":"{ok}","ext":{{"consent":"{ok}"}}}}}}"#
    ));
    assert_eq!(dis, Default::default());
    // A 2.5 field of the wrong type is rejected like its 2.6 field.
    for bad in [
        r#""regs":{"ext":{"gdpr":"1"}}"#,
        r#""regs":{"ext":{"us_privacy":1}}"#,
        r#""user":{"ext":{"consent":7}}"#,
        r#""device":{"lmt":"1"}"#,
    ] {
        let text = format!("{{{head},{bad}}}");
        let r = Decision::parse(text.as_bytes());
        assert!(
            matches!(r, Err(crate::core::decision::Reject::WrongType { .. })),
            "{bad}"
        );
    }
}

/// A TC string's age is measured at the later of the decision's `ts` and
/// fairgate's clock: a `ts` sent in seconds (1970 as milliseconds) cannot
/// keep a string from expiring.
#[test]
fn a_string_expires_by_fairgates_clock_too() {
    let e = evaluator();
    let ok = tcf("all_purposes_v755_sf1_range");
    let json = format!(
        r#"{{"id":"d","ts":1718526600,"campaign":{{"id":"c"}},"regs":{{"gdpr":1}},"user":{{"consent":"{ok}"}}}}"#
    );
    let d = Decision::parse(json.as_bytes()).unwrap();
    let at = |now_ms| e.evaluate(&d.consent_inputs(now_ms)).reason;
    // Judged in June 2024, its time: consented.
    assert_eq!(at(1_718_526_600_000), Reason::Consented);
    // Judged two years later: expired, whatever `ts` says.
    assert_eq!(
        at(1_718_526_600_000 + 2 * 365 * 86_400_000),
        Reason::TcfExpired
    );
}

/// Item 6: a section `gpp_sid` does not list is never decoded, so it never
/// breaks the ones it lists, whatever it holds; listed, it is judged.
#[test]
fn a_section_gpp_sid_does_not_list_never_breaks_the_listed_ones() {
    let e = evaluator();
    let beside = gpp("usnat_clean_beside_usmd_sale_opt_out");
    let inp = |gpp, sid| Inputs {
        gpp: Some(gpp),
        gpp_sid: sid,
        ..Inputs::default()
    };
    assert_eq!(
        verdict(&e, inp(&beside, &[7])),
        (P, "consented".into(), true)
    );
    assert_eq!(verdict(&e, inp(&beside, &[7, 24])).1, "gpp_opt_out:24");
    // A clean US National section beside sections fairgate cannot read:
    // an id past 27, garbage text, an empty section.
    let usnat = gpp("usnat_no_opt_out");
    let core = usnat.split('~').nth(1).unwrap();
    for (id, raw) in [(30u64, "BhWg"), (24, "!!!"), (25, ""), (40, "~")] {
        let s = format!("{}~{core}~{raw}", gpp_header(&[7, id]));
        let v = e.evaluate(&Inputs {
            gpp: Some(&s),
            gpp_sid: &[7],
            ts_ms: TS,
            ..Inputs::default()
        });
        if raw == "~" {
            // One more `~` is one more section than the header lists.
            assert_eq!(v.reason, Reason::GppUndecodable);
            continue;
        }
        assert_eq!(v.outcome, P, "{id} {raw:?}");
        // Listed, it fails closed, naming itself.
        let sid = [7, id as i64];
        let v = e.evaluate(&Inputs {
            gpp: Some(&s),
            gpp_sid: &sid,
            ts_ms: TS,
            ..Inputs::default()
        });
        assert_eq!(v.outcome, C, "{id} {raw:?}");
        assert_eq!(v.section, Some(id as u16));
    }
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Item 6: sections 24–27 decode as `@iabgpp/cmpapi` 3.2.0 reads the
/// strings it wrote, field by field.
#[test]
fn sections_24_to_27_decode_as_the_iab_library_reads_them() {
    let cases: Vec<Value> = serde_json::from_str(GPP).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let s = c["gpp_string"].as_str().unwrap();
        let ids: Vec<u64> = c["section_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            if !(24..=27).contains(&id) {
                continue;
            }
            seen.insert(id);
            let raw = s.split('~').nth(i + 1).unwrap();
            let ours = super::gpp::mspa_state_section(id as u16, raw)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let theirs = c["sections"][id.to_string()].as_object().unwrap();
            for (field, want) in theirs {
                let got = match field.as_str() {
                    "MspaVersion" => continue,
                    "MspaCoveredTransaction" => {
                        Value::from(if ours["core"][&snake(field)] == true {
                            1
                        } else {
                            2
                        })
                    }
                    "GpcSegmentIncluded" => Value::Bool(ours.get("gpc").is_some()),
                    "SensitiveDataConsentSegmentIncluded" => {
                        Value::Bool(ours.get("sensitive_data_processing").is_some())
                    }
                    "Gpc" if theirs.get("GpcSegmentIncluded") == Some(&Value::Bool(false)) => {
                        continue;
                    }
                    "Gpc" => ours["gpc"].clone(),
                    "SensitiveDataProcessing"
                        if theirs.get("SensitiveDataConsentSegmentIncluded")
                            == Some(&Value::Bool(false)) =>
                    {
                        continue;
                    }
                    "SensitiveDataProcessing" => ours["sensitive_data_processing"].clone(),
                    f => ours["core"][&snake(f)].clone(),
                };
                assert_eq!(&got, want, "{name}: {field}");
            }
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [24, 25, 26, 27]);
    // Undefined values and a wrong version fail the section.
    for raw in ["AhWg", "BhWg.wA", "B_Wg", "BhWg.YA.YA", "Bh"] {
        assert!(super::gpp::mspa_state_section(24, raw).is_err(), "{raw}");
    }
}

/// Item 7: an empty US Privacy string is absent; anything else that is not
/// four characters of the spec's alphabet fails closed.
#[test]
fn an_empty_us_privacy_string_is_absent() {
    let e = evaluator();
    let usp = |s| Inputs {
        gdpr: Some(false),
        usp: Some(s),
        ..Inputs::default()
    };
    assert_eq!(verdict(&e, usp("")), (P, "no_regime".into(), true));
    assert_eq!(verdict(&e, usp(" ")).1, "usp_invalid");
    assert_eq!(verdict(&e, usp("1YNN")), (P, "consented".into(), true));
}

/// Item 10: the reason header names the rule and, for a GPP section's
/// rule, the section; its values come from closed sets (no input text),
/// so they are fit for metric labels: the reason label stays the bare code.
#[test]
fn reasons_name_their_gpp_section_from_a_closed_set() {
    let e = evaluator();
    let v = e.evaluate(&Inputs {
        gpp: Some(&gpp("usnat_sale_notice_not_given")),
        gpp_sid: &[7],
        ts_ms: TS,
        ..Inputs::default()
    });
    assert_eq!((v.reason, v.section), (Reason::GppNotice, Some(7)));
    assert_eq!(v.reason_header(), "gpp_notice:7");
    assert_eq!(v.reason.as_str(), "gpp_notice");
    // A reason not given by a section has no suffix.
    let v = e.evaluate(&Inputs {
        gdpr: Some(false),
        usp: Some("1YYN"),
        gpc: true,
        ..Inputs::default()
    });
    assert_eq!(v.reason_header(), "usp_opt_out");
    // Personalised names no section, even where sections were read.
    let v = e.evaluate(&Inputs {
        gpp: Some(&gpp("usnat_no_opt_out")),
        gpp_sid: &[7],
        ts_ms: TS,
        ..Inputs::default()
    });
    assert_eq!((v.reason_header().as_str(), v.section), ("consented", None));
}

/// Items 8 and 9: a child's lat, lon, zip, city and metro are removed (not
/// coarsened) and the IP truncated; `device.lmt = 1` removes the device ids
/// (and user ids, as Prebid's LMT enforcement does) whatever the consent;
/// the sequential passes and the one walk give the same bytes.
#[test]
fn a_child_loses_location_and_lmt_loses_device_ids_on_both_strip_paths() {
    let policy = CompiledPolicy::from_toml(POLICY).unwrap();
    let plan = Plan::new(&policy).expect("the shipped policy has a plan");
    let e = evaluator();
    let input = r#"{"user":{"id":"u","geo":{"lat":52.3731,"lon":4.8922,"zip":"1012AB","city":"Amsterdam","metro":"NL-AMS","country":"NLD"}},"device":{"ip":"203.0.113.17","ifa":"IFA","dpidmd5":"D5","dpidsha1":"D1","geo":{"lat":52.3731,"lon":4.8922,"metro":"x"},"lmt":1}}"#;
    let doc: sonic_rs::Value = sonic_rs::from_str(input).unwrap();
    let known_child = gpp("usnat_known_child_consents_v2");
    let cases = [
        // COPPA (and LMT): contextual, a child.
        (
            Inputs {
                gdpr: Some(false),
                coppa: true,
                lmt: true,
                ..Inputs::default()
            },
            r#"{"user":{"geo":{"country":"NLD"}},"device":{"ip":"203.0.113.0","geo":{},"lmt":1}}"#,
            "/user/id,/device/ifa,/device/dpidmd5,/device/dpidsha1,/user/geo/lat,/user/geo/lon,/user/geo/zip,/user/geo/city,/user/geo/metro,/device/geo/lat,/device/geo/lon,/device/geo/metro",
        ),
        // A known child in a US section.
        (
            Inputs {
                gpp: Some(&known_child),
                gpp_sid: &[7],
                ..Inputs::default()
            },
            r#"{"user":{"geo":{"country":"NLD"}},"device":{"ip":"203.0.113.0","geo":{},"lmt":1}}"#,
            "/user/id,/device/ifa,/device/dpidmd5,/device/dpidsha1,/user/geo/lat,/user/geo/lon,/user/geo/zip,/user/geo/city,/user/geo/metro,/device/geo/lat,/device/geo/lon,/device/geo/metro",
        ),
        // LMT alone: personalised, yet ids go and location is coarsened.
        (
            Inputs {
                gdpr: Some(false),
                lmt: true,
                ..Inputs::default()
            },
            r#"{"user":{"geo":{"lat":52.37,"lon":4.89,"zip":"101","city":"Amsterdam","metro":"NL-AMS","country":"NLD"}},"device":{"ip":"203.0.113.0","geo":{"lat":52.37,"lon":4.89,"metro":"x"},"lmt":1}}"#,
            "/device/ifa,/device/dpidmd5,/device/dpidsha1,/user/id",
        ),
    ];
    for (inp, want, removed) in cases {
        let v = e.evaluate(&Inputs { ts_ms: TS, ..inp });
        assert_eq!(v.child, inp.coppa || inp.gpp.is_some());
        assert_eq!(v.lmt, inp.lmt);
        let mut node = Node::Doc(&doc);
        let s = strip::strip(&policy, &mut node, &v);
        let mut seq = Vec::new();
        node.write(&mut seq);
        let mut walked = Vec::new();
        let w = plan.write(&policy, &doc, &v, &mut walked);
        assert_eq!(String::from_utf8(seq).unwrap(), want);
        assert_eq!(String::from_utf8(walked).unwrap(), want);
        assert_eq!(s.removed_header(), removed);
        assert_eq!(w.removed_header(), removed);
    }
}

// ---------------------------------------------------------------------------
// Monotonicity
// ---------------------------------------------------------------------------

/// TCF signals for vendor 755, written into a string bit by bit.
#[derive(Debug, Clone)]
struct TcfSig {
    /// Bit `p`: purpose `p` consented (1..=11).
    purposes: u32,
    /// Bit `p`: purpose `p` legitimate interest.
    li: u32,
    sf1: bool,
    vendor_consent: bool,
    vendor_li: bool,
    /// (purpose, restriction type) for vendor 755.
    restrictions: Vec<(u8, u8)>,
}

/// Purposes 1..=11 as the 24-bit field (purpose 1 the most significant bit).
fn purpose_field(mask: u32) -> u64 {
    (1..=24u32)
        .filter(|p| mask & (1 << p) != 0)
        .map(|p| 1u64 << (24 - p))
        .sum()
}

fn vendor_section(w: &mut BitWriter, has: bool) {
    if has {
        w.int(755, 16).bit(true).int(1, 12).bit(false).int(755, 16);
    } else {
        w.int(0, 16).bit(false);
    }
}

fn tcf_string(t: &TcfSig) -> String {
    let mut w = BitWriter::new();
    // Version 2; Created and LastUpdated 2024-06-15 (deciseconds).
    w.int(2, 6).int(17_184_402_000, 36).int(17_184_402_000, 36);
    w.int(10, 12).int(1, 12).int(1, 6).int(4 * 64 + 13, 12); // CMP, screen, "EN"
    w.int(300, 12).int(4, 6).bit(true).bit(false); // GVL version, policy 4, service specific
    w.int(if t.sf1 { 1 << 11 } else { 0 }, 12);
    w.int(purpose_field(t.purposes), 24)
        .int(purpose_field(t.li), 24)
        .bit(false)
        .int(3 * 64 + 4, 12); // P1T, "DE"
    vendor_section(&mut w, t.vendor_consent);
    vendor_section(&mut w, t.vendor_li);
    w.int(t.restrictions.len() as u64, 12);
    for &(p, kind) in &t.restrictions {
        w.int(u64::from(p), 6).int(u64::from(kind), 2).int(1, 12);
        w.bit(false).int(755, 16);
    }
    w.base64()
}

/// A US National (version 2) section's fields, as the spec codes them.
#[derive(Debug, Clone)]
struct UsSig {
    notices: [u8; 6],
    opt_outs: [u8; 3],
    sensitive: [u8; 16],
    child: [u8; 3],
    personal_data: u8,
    service_provider: u8,
    gpc: Option<bool>,
}

fn usnat_string(u: &UsSig) -> String {
    let mut w = BitWriter::new();
    w.int(2, 6);
    for &x in u
        .notices
        .iter()
        .chain(&u.opt_outs)
        .chain(&u.sensitive)
        .chain(&u.child)
    {
        w.int(u64::from(x), 2);
    }
    w.int(u64::from(u.personal_data), 2)
        .int(2, 2) // MspaCoveredTransaction: no
        .int(0, 2)
        .int(u64::from(u.service_provider), 2);
    let core = w.base64();
    match u.gpc {
        None => core,
        Some(g) => {
            let mut s = BitWriter::new();
            s.int(1, 2).bit(g);
            format!("{core}.{}", s.base64())
        }
    }
}

#[derive(Debug, Clone)]
struct Sig {
    gdpr: Option<bool>,
    tcf: Option<TcfSig>,
    usp: Option<&'static str>,
    /// GPP section 2.
    gpp_tcf: Option<TcfSig>,
    /// GPP section 7.
    us: Option<UsSig>,
    gpc: bool,
    coppa: bool,
    lmt: bool,
}

/// The strings of one decision, and its `gpp_sid`.
struct Strings {
    tcf: Option<String>,
    gpp: Option<String>,
    sid: Vec<i64>,
}

impl Sig {
    fn strings(&self) -> Strings {
        let mut ids = Vec::new();
        let mut sections = Vec::new();
        if let Some(t) = &self.gpp_tcf {
            ids.push(2);
            sections.push(tcf_string(t));
        }
        if let Some(u) = &self.us {
            ids.push(7);
            sections.push(usnat_string(u));
        }
        let gpp = (!ids.is_empty()).then(|| {
            let mut s = gpp_header(&ids);
            for x in &sections {
                s.push('~');
                s.push_str(x);
            }
            s
        });
        Strings {
            tcf: self.tcf.as_ref().map(tcf_string),
            gpp,
            sid: ids.iter().map(|&i| i as i64).collect(),
        }
    }

    fn inputs<'a>(&self, s: &'a Strings) -> Inputs<'a> {
        Inputs {
            gdpr: self.gdpr,
            tcf: s.tcf.as_deref(),
            usp: self.usp,
            gpp: s.gpp.as_deref(),
            gpp_sid: &s.sid,
            gpc: self.gpc,
            coppa: self.coppa,
            lmt: self.lmt,
            ts_ms: TS,
        }
    }
}

/// One signal added: an opt-out, a refusal, a restriction or a child.
#[derive(Debug, Clone)]
enum Add {
    UspOptOut,
    Gpc,
    Coppa,
    Lmt,
    /// On the bare TC string (`false`) or GPP section 2 (`true`): clear
    /// purpose consent, purpose LI, vendor consent, vendor LI or SF1.
    TcfRefuse(bool, u8, u8),
    TcfRestrict(bool, u8, u8),
    UsOptOut(usize),
    UsRefuseSensitive(usize),
    UsChild(usize),
    UsRefusePersonalData,
    UsGpc,
}

fn refuse(t: &mut TcfSig, what: u8, p: u8) {
    match what {
        0 => t.purposes &= !(1 << p),
        1 => t.li &= !(1 << p),
        2 => t.vendor_consent = false,
        3 => t.vendor_li = false,
        _ => t.sf1 = false,
    }
}

impl Sig {
    fn with(&self, add: &Add) -> Sig {
        let mut s = self.clone();
        let tcf = |s: &mut Sig, gpp: bool| if gpp { s.gpp_tcf.take() } else { s.tcf.take() };
        let put = |s: &mut Sig, gpp: bool, t: Option<TcfSig>| {
            if gpp { s.gpp_tcf = t } else { s.tcf = t }
        };
        match *add {
            Add::UspOptOut => s.usp = Some("1YYN"),
            Add::Gpc => s.gpc = true,
            Add::Coppa => s.coppa = true,
            Add::Lmt => s.lmt = true,
            Add::TcfRefuse(gpp, what, p) => {
                let mut t = tcf(&mut s, gpp);
                if let Some(t) = &mut t {
                    refuse(t, what, p);
                }
                put(&mut s, gpp, t);
            }
            Add::TcfRestrict(gpp, p, kind) => {
                let mut t = tcf(&mut s, gpp);
                if let Some(t) = &mut t {
                    t.restrictions.push((p, kind));
                }
                put(&mut s, gpp, t);
            }
            Add::UsOptOut(i) => s.us.iter_mut().for_each(|u| u.opt_outs[i % 3] = 1),
            Add::UsRefuseSensitive(i) => s.us.iter_mut().for_each(|u| u.sensitive[i % 16] = 1),
            Add::UsChild(i) => s.us.iter_mut().for_each(|u| u.child[i % 3] = 1),
            Add::UsRefusePersonalData => s.us.iter_mut().for_each(|u| u.personal_data = 1),
            Add::UsGpc => s.us.iter_mut().for_each(|u| u.gpc = Some(true)),
        }
        s
    }
}

const ALL_PURPOSES: u32 = 0b1111_1111_1110;

fn tcf_sig() -> impl Strategy<Value = TcfSig> {
    let mask =
        prop_oneof![3 => Just(ALL_PURPOSES), 1 => any::<u32>().prop_map(|m| m & ALL_PURPOSES)];
    let li = prop_oneof![
        Just(1 << 2 | 1 << 7 | 1 << 9 | 1 << 10),
        any::<u32>().prop_map(|m| m & ALL_PURPOSES),
    ];
    (
        mask,
        li,
        any::<bool>(),
        proptest::bool::weighted(0.8),
        any::<bool>(),
        proptest::collection::vec((1u8..=11, 0u8..=3), 0..3),
    )
        .prop_map(
            |(purposes, li, sf1, vendor_consent, vendor_li, restrictions)| TcfSig {
                purposes,
                li,
                sf1,
                vendor_consent,
                vendor_li,
                restrictions,
            },
        )
}

fn us_sig() -> impl Strategy<Value = UsSig> {
    let v = |choices: &'static [u8]| proptest::sample::select(choices);
    (
        proptest::array::uniform6(v(&[1, 1, 1, 1, 0, 2])),
        proptest::array::uniform3(v(&[2, 2, 2, 0, 1])),
        proptest::array::uniform16(v(&[0, 0, 0, 0, 0, 0, 2, 1])),
        proptest::array::uniform3(v(&[0, 0, 0, 0, 2, 1])),
        v(&[0, 0, 1, 2]),
        v(&[0, 0, 2, 1]),
        proptest::option::of(proptest::bool::weighted(0.2)),
    )
        .prop_map(
            |(notices, opt_outs, sensitive, child, personal_data, service_provider, gpc)| UsSig {
                notices,
                opt_outs,
                sensitive,
                child,
                personal_data,
                service_provider,
                gpc,
            },
        )
}

fn sig() -> impl Strategy<Value = Sig> {
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(tcf_sig()),
        proptest::option::of(proptest::sample::select(&["1YNN", "1NNN", "1---", ""][..])),
        proptest::option::weighted(0.3, tcf_sig()),
        proptest::option::weighted(0.6, us_sig()),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(gdpr, tcf, usp, gpp_tcf, us, gpc, coppa, lmt)| Sig {
            gdpr,
            tcf,
            usp,
            gpp_tcf,
            us,
            gpc,
            coppa,
            lmt,
        })
}

fn add() -> impl Strategy<Value = Add> {
    prop_oneof![
        1 => Just(Add::UspOptOut),
        1 => Just(Add::Gpc),
        1 => Just(Add::Coppa),
        1 => Just(Add::Lmt),
        3 => (any::<bool>(), 0u8..5, 1u8..=11).prop_map(|(g, w, p)| Add::TcfRefuse(g, w, p)),
        3 => (any::<bool>(), 1u8..=11, 0u8..=3).prop_map(|(g, p, k)| Add::TcfRestrict(g, p, k)),
        2 => (0usize..3).prop_map(Add::UsOptOut),
        3 => (0usize..16).prop_map(Add::UsRefuseSensitive),
        2 => (0usize..3).prop_map(Add::UsChild),
        1 => Just(Add::UsRefusePersonalData),
        1 => Just(Add::UsGpc),
    ]
}

/// The shipped policy, one that withholds on everything, and one that
/// withholds on opt-outs only; required purposes 1, 3, 4 and, in the
/// last, 1, 2, 3, 4, 7 (so legitimate interest counts).
fn evaluators() -> &'static [ConsentEvaluator; 3] {
    static E: OnceLock<[ConsentEvaluator; 3]> = OnceLock::new();
    E.get_or_init(|| {
        let withhold = |p: &str, what: &str| {
            p.replace(
                &format!("{what} = \"contextual\""),
                &format!("{what} = \"withheld\""),
            )
        };
        let strict = withhold(
            &withhold(&withhold(POLICY, "no_consent"), "opt_out"),
            "child",
        );
        let mixed = withhold(POLICY, "opt_out").replace(
            "required_purposes = [1, 3, 4]",
            "required_purposes = [1, 2, 3, 4, 7]",
        );
        [POLICY.to_string(), strict, mixed]
            .map(|p| ConsentEvaluator::new(&CompiledPolicy::from_toml(&p).unwrap()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Adding an opt-out, a refusal, a restriction or a child signal to any
    /// combination of signals never makes the verdict more permissive: the
    /// outcome never goes from withheld towards personalised, and precise
    /// geolocation never appears.
    #[test]
    fn more_refusal_is_never_more_permission(base in sig(), add in add(), which in 0usize..3) {
        let e = &evaluators()[which];
        let added = base.with(&add);
        let (s0, s1) = (base.strings(), added.strings());
        let before = e.evaluate(&base.inputs(&s0));
        let after = e.evaluate(&added.inputs(&s1));
        prop_assert!(
            after.outcome >= before.outcome,
            "{:?} -> {:?} ({:?}) after {:?}",
            before.outcome, after.outcome, after.reason, add
        );
        prop_assert!(
            !after.precise_geo || before.precise_geo,
            "precise geo appeared after {:?}", add
        );
    }
}
