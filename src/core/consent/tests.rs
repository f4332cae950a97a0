//! Consent checked against strings made by the IAB reference libraries
//! (`tests/data/consent/`, with how they were made in its README).

use serde_json::Value;

use super::*;
use crate::policy::CompiledPolicy;

const TCF: &str = include_str!("../../../tests/data/consent/tcf_cases.json");
const GPP: &str = include_str!("../../../tests/data/consent/gpp_cases.json");
const POLICY: &str = include_str!("../../../config/policy.toml");

fn ids(v: &Value) -> Vec<u16> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u16)
        .collect()
}

fn evaluator() -> ConsentEvaluator {
    ConsentEvaluator::new(&CompiledPolicy::from_toml(POLICY).unwrap())
}

#[test]
fn tcf_strings_agree_with_the_iab_library_where_it_decodes_them() {
    // Where iab_gpp decodes correctly (no publisher restrictions), it agrees with us.
    use std::str::FromStr;
    let cases: Vec<Value> = serde_json::from_str(TCF).unwrap();
    for c in cases
        .iter()
        .filter(|c| c["publisher_restrictions"].as_array().unwrap().is_empty())
    {
        let s = c["tc_string"].as_str().unwrap();
        let theirs = iab_gpp::sections::tcfeuv2::TcfEuV2::from_str(s).unwrap();
        let ours = decode_core(s).unwrap();
        for v in 1..=1000u16 {
            assert_eq!(
                theirs.core.vendor_consents.contains(&v),
                ours.vendor_consents.contains(v)
            );
        }
    }
}

#[test]
fn tcf_strings_decode_as_the_iab_library_reads_them() {
    let cases: Vec<Value> = serde_json::from_str(TCF).unwrap();
    assert!(cases.len() >= 12);
    let mut encodings = std::collections::HashSet::new();
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let s = c["tc_string"].as_str().unwrap();
        let t = decode_core(s).unwrap_or_else(|e| panic!("{name}: {e}"));
        core_matches(name, &t, c);
        restrictions_match(name, &t, c);
        vendor_755_matches(name, s, c);
        encodings.insert(c["vendor_consent_encoding"].as_str().unwrap().to_string());
    }
    assert!(encodings.contains("bitfield") && encodings.contains("range"));
}

/// The ids set in `mask` among `range`.
fn bits(mask: u32, range: std::ops::Range<u16>) -> Vec<u16> {
    range.filter(|p| mask & (1 << p) != 0).collect()
}

/// Purposes, special features and vendors (consent and LI), and their
/// encodings, as the IAB library read them.
fn core_matches(name: &str, t: &TcfCore, c: &Value) {
    assert_eq!(
        bits(t.purposes, 1..32),
        ids(&c["purpose_consents"]),
        "{name}: purposes"
    );
    let got: Vec<u16> = (1..=2000)
        .filter(|&v| t.vendor_consents.contains(v))
        .collect();
    assert_eq!(got, ids(&c["vendor_consents"]), "{name}: vendors");
    assert_eq!(
        bits(t.special_features, 1..13),
        ids(&c["special_feature_optins"]),
        "{name}: special features"
    );
    assert_eq!(
        bits(t.purposes_li, 1..32),
        ids(&c["purpose_legitimate_interests"]),
        "{name}: purpose LI"
    );
    let got: Vec<u16> = (1..=2000).filter(|&v| t.vendor_li.contains(v)).collect();
    assert_eq!(
        got,
        ids(&c["vendor_legitimate_interests"]),
        "{name}: vendor LI"
    );
    assert_eq!(
        t.vendor_li.is_range(),
        c["vendor_li_encoding"] == "range",
        "{name}: vendor LI encoding"
    );
    let range = c["vendor_consent_encoding"] == "range";
    assert_eq!(t.vendor_consents.is_range(), range, "{name}: encoding");
}

/// Publisher restrictions, as the IAB library read them.
fn restrictions_match(name: &str, t: &TcfCore, c: &Value) {
    let want: Vec<(u8, u8, Vec<u16>)> = c["publisher_restrictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["purpose"].as_u64().unwrap() as u8,
                r["restriction_type"].as_u64().unwrap() as u8,
                ids(&r["vendors"]),
            )
        })
        .collect();
    let got: Vec<(u8, u8, Vec<u16>)> = t
        .restrictions
        .iter()
        .map(|(p, k, r)| (*p, *k, r.iter().flat_map(|&(s, e)| s..=e).collect()))
        .collect();
    assert_eq!(got, want, "{name}: publisher restrictions");
}

/// What the evaluator reads for vendor 755: its consent, the string's
/// last update, and purpose 3 restricted for it.
fn vendor_755_matches(name: &str, s: &str, c: &Value) {
    let f = decode_tcf(s, 755).unwrap();
    assert_eq!(
        f.vendor_consent,
        c["vendor_755_consent"].as_bool().unwrap(),
        "{name}"
    );
    assert_eq!(
        f.last_updated_ms,
        c["last_updated_ms"].as_i64().unwrap() / 1000 * 1000,
        "{name}"
    );
    let restricted_p3 = c["publisher_restrictions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| {
            r["purpose"] == 3 && r["restriction_type"] == 0 && ids(&r["vendors"]).contains(&755)
        });
    assert_eq!(
        f.restricted_purposes & (1 << 3) != 0,
        restricted_p3,
        "{name}: restrictions"
    );
}

fn case(name: &str) -> String {
    let cases: Vec<Value> = serde_json::from_str(TCF).unwrap();
    cases
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))["tc_string"]
        .as_str()
        .unwrap()
        .to_string()
}

fn eu(s: &str) -> Inputs<'_> {
    Inputs {
        gdpr: Some(true),
        tcf: Some(s),
        ts_ms: 1_718_440_200_000 + 86_400_000,
        ..Inputs::default()
    }
}

#[test]
fn tcf_outcomes_follow_the_policy() {
    let e = evaluator();
    let expect = [
        (
            "all_purposes_v755_sf1_bitfield",
            Outcome::Personalised,
            Reason::Consented,
            true,
        ),
        (
            "all_purposes_v755_sf1_range",
            Outcome::Personalised,
            Reason::Consented,
            true,
        ),
        (
            "sf1_not_opted_in",
            Outcome::Personalised,
            Reason::Consented,
            false,
        ),
        (
            "missing_purpose_3_range",
            Outcome::Contextual,
            Reason::TcfPurpose,
            false,
        ),
        (
            "missing_vendor_755_bitfield",
            Outcome::Contextual,
            Reason::TcfVendor,
            false,
        ),
        (
            "missing_vendor_755_range",
            Outcome::Contextual,
            Reason::TcfVendor,
            false,
        ),
        (
            "vendor_range_ending_at_755",
            Outcome::Personalised,
            Reason::Consented,
            true,
        ),
        (
            "vendor_range_ending_at_754",
            Outcome::Contextual,
            Reason::TcfVendor,
            false,
        ),
        (
            "pub_restriction_not_allowed_p3_v755",
            Outcome::Contextual,
            Reason::TcfRestricted,
            false,
        ),
        (
            "no_consents",
            Outcome::Contextual,
            Reason::TcfPurpose,
            false,
        ),
    ];
    for (name, outcome, reason, geo) in expect {
        let s = case(name);
        let v = e.evaluate(&eu(&s));
        assert_eq!(
            (v.outcome, v.reason, v.precise_geo),
            (outcome, reason, geo),
            "{name}"
        );
    }
    let old = case("old_string_2020_01_15");
    assert_eq!(e.evaluate(&eu(&old)).reason, Reason::TcfExpired);
}

#[test]
fn missing_or_garbage_tcf_fails_closed() {
    let e = evaluator();
    let v = e.evaluate(&Inputs {
        gdpr: Some(true),
        ..Inputs::default()
    });
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Contextual, Reason::TcfMissing)
    );
    let v = e.evaluate(&eu("not-a-consent-string"));
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Contextual, Reason::TcfUndecodable)
    );
    // gdpr absent: the example policy says it applies.
    let v = e.evaluate(&Inputs::default());
    assert_eq!(v.reason, Reason::TcfMissing);
}

#[test]
fn gpp_strings_decode_as_the_iab_library_reads_them() {
    let cases: Vec<Value> = serde_json::from_str(GPP).unwrap();
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let s = c["gpp_string"].as_str().unwrap();
        let facts =
            decode_gpp(s, 755, SectionSet::ALL).unwrap_or_else(|err| panic!("{name}: {err}"));
        let sids: Vec<u16> = ids(&c["section_ids"]);
        assert_eq!(
            facts.sections.iter().map(|x| x.0).collect::<Vec<_>>(),
            sids,
            "{name}"
        );
        for (sid, fields) in c["sections"].as_object().unwrap() {
            let sid: u16 = sid.parse().unwrap();
            let f = facts.section(sid).unwrap();
            match f {
                SectionFacts::Us(u) => {
                    let opted = ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"]
                        .iter()
                        .any(|k| fields.get(*k).and_then(Value::as_i64) == Some(1));
                    assert_eq!(u.opted_out, opted, "{name}: opt-out");
                    // Prebid's rule: US National, a refusal anywhere or any
                    // value for under 13 (entry 1); a state, any value.
                    let child = match &fields["KnownChildSensitiveDataConsents"] {
                        Value::Array(a) if sid == 7 => a.iter().enumerate().any(|(i, x)| {
                            x.as_i64() == Some(1) || (i == 1 && x.as_i64() != Some(0))
                        }),
                        Value::Array(a) => a.iter().any(|x| x.as_i64() != Some(0)),
                        Value::Number(n) => n.as_i64() != Some(0),
                        _ => false,
                    };
                    assert_eq!(u.known_child, child, "{name}: known child");
                    let gpc = fields.get("Gpc").and_then(Value::as_bool).unwrap_or(false)
                        && fields
                            .get("GpcSegmentIncluded")
                            .and_then(Value::as_bool)
                            .unwrap_or(true);
                    assert_eq!(u.gpc, gpc, "{name}: gpc");
                }
                SectionFacts::Usp(opted) => {
                    assert_eq!(*opted, fields["OptOutSale"] == "Y", "{name}: usp");
                }
                SectionFacts::Tcf(t) => {
                    let v = fields["VendorConsents"].as_array().unwrap();
                    assert_eq!(
                        t.vendor_consent,
                        v.iter().any(|x| x == 755),
                        "{name}: vendor"
                    );
                }
                other => panic!("{name}: section {sid} not decoded: {other:?}"),
            }
        }
    }
}

/// A day after the fixtures' TCF sections were last updated: none expired.
const GPP_TS: i64 = 1_718_526_600_000;

fn gpp_case(name: &str) -> (String, Vec<i64>) {
    let cases: Vec<Value> = serde_json::from_str(GPP).unwrap();
    let c = cases.iter().find(|c| c["name"] == name).unwrap();
    let sids = c["section_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    (c["gpp_string"].as_str().unwrap().to_string(), sids)
}

fn gpp_verdict(e: &ConsentEvaluator, gpp: &str, sids: &[i64]) -> Verdict {
    e.evaluate(&Inputs {
        gdpr: Some(false),
        gpp: Some(gpp),
        gpp_sid: sids,
        ts_ms: GPP_TS,
        ..Inputs::default()
    })
}

/// Every IAB-made vector carries the verdict its rules call for
/// (`expect`, written by hand in the generator): TCF strings with GDPR
/// applying, for the shipped policy's purposes or those the case names;
/// GPP strings with `regs.gdpr` absent (so `gpp_sid` says whether GDPR
/// applies) and `gpp_sid` = the header's ids or those the case names.
#[test]
fn every_vector_gets_its_expected_verdict() {
    let check = |name: &str, v: Verdict, want: &Value| {
        let got = (v.outcome.as_str(), v.reason_header(), v.precise_geo);
        let want = (
            want["outcome"].as_str().unwrap(),
            want["reason"].as_str().unwrap().to_string(),
            want["precise_geo"].as_bool().unwrap(),
        );
        assert_eq!(got, want, "{name}");
    };
    let tcf: Vec<Value> = serde_json::from_str(TCF).unwrap();
    for c in &tcf {
        let name = c["name"].as_str().unwrap();
        let e = match c.get("required_purposes") {
            Some(p) => evaluator_with(&[(
                "required_purposes = [1, 3, 4]",
                &format!("required_purposes = {p}"),
            )]),
            None => evaluator(),
        };
        let v = e.evaluate(&Inputs {
            gdpr: Some(true),
            tcf: c["tc_string"].as_str(),
            ts_ms: GPP_TS,
            ..Inputs::default()
        });
        check(name, v, &c["expect"]);
    }
    let gpp: Vec<Value> = serde_json::from_str(GPP).unwrap();
    let e = evaluator();
    for c in &gpp {
        let name = c["name"].as_str().unwrap();
        let sids: Vec<i64> = c
            .get("gpp_sid")
            .unwrap_or(&c["section_ids"])
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let v = e.evaluate(&Inputs {
            gpp: c["gpp_string"].as_str(),
            gpp_sid: &sids,
            ts_ms: GPP_TS,
            ..Inputs::default()
        });
        check(name, v, &c["expect"]);
        let want = if v.outcome == Outcome::Personalised {
            SignalResult::Allowed
        } else {
            SignalResult::Denied
        };
        if v.reason != Reason::Gpc {
            assert_eq!(v.signals.gpp, want, "{name}");
        }
    }
    assert!(tcf.len() >= 30 && gpp.len() >= 50);
}

/// The same strings under a policy that withholds on opt-out and on a child.
#[test]
fn gpp_verdicts_follow_a_policy_that_withholds() {
    use Reason::*;
    let strict = POLICY
        .replace("opt_out = \"contextual\"", "opt_out = \"withheld\"")
        .replace("child = \"contextual\"", "child = \"withheld\"");
    let e = ConsentEvaluator::new(&CompiledPolicy::from_toml(&strict).unwrap());
    for (name, reason) in [
        ("usnat_sale_opt_out", GppOptOut),
        ("usnat_known_child_consents_v2", KnownChild),
        ("usnat_gpc_true", Gpc),
        ("uspv1_1YYN", GppOptOut),
    ] {
        let (s, sids) = gpp_case(name);
        let v = gpp_verdict(&e, &s, &sids);
        assert_eq!((v.outcome, v.reason), (Outcome::Withheld, reason), "{name}");
    }
}

#[test]
fn only_the_gpp_sections_in_gpp_sid_apply() {
    let e = evaluator();
    // US Privacy allows, US National opts out: the section listed decides.
    let (s, _) = gpp_case("multi_uspv1_opt_out_usnat_sale_opt_out");
    let (t, _) = gpp_case("multi_tcfeuv2_uspv1_usnat");
    assert_eq!(gpp_verdict(&e, &s, &[6]).reason, Reason::GppOptOut);
    assert_eq!(gpp_verdict(&e, &t, &[6]).outcome, Outcome::Personalised);
    // A TCF section that denies does not count when only US sections apply.
    let (denies, _) = gpp_case("tcfeuv2_v755_missing");
    assert_eq!(gpp_verdict(&e, &denies, &[2]).reason, Reason::TcfVendor);
    let (usnat, _) = gpp_case("usnat_no_opt_out");
    assert_eq!(gpp_verdict(&e, &usnat, &[7]).outcome, Outcome::Personalised);
    // Listed but absent, or no string at all: fails closed.
    assert_eq!(
        gpp_verdict(&e, &usnat, &[7, 8]).reason,
        Reason::GppSectionMissing
    );
    // 63 is the highest section id: listed, it is looked for (and missing here).
    assert_eq!(
        gpp_verdict(&e, &usnat, &[7, 63]).reason,
        Reason::GppSectionMissing
    );
    // A section id outside 1..=63 is invalid, whatever the string says.
    for bad in [0, -1, 64, 1 << 40] {
        let v = gpp_verdict(&e, &usnat, &[7, bad]);
        assert_eq!(
            (v.outcome, v.reason),
            (Outcome::Contextual, Reason::GppSidInvalid),
            "{bad}"
        );
        assert_eq!(v.signals.gpp, SignalResult::Invalid);
    }
    // A header that does not decode.
    let v = gpp_verdict(&e, "not-a-gpp-string", &[7]);
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Contextual, Reason::GppUndecodable)
    );
    // A section the decoder cannot read (TCF Canada, id 5), listed as applying.
    let v = gpp_verdict(
        &e,
        "DBABjw~BPXuQIAPXuQIAAfKABENB-CgAAAAAAAAAAAAAAAA.YAAAAAAAAAA~1YNN",
        &[5],
    );
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Contextual, Reason::GppSectionUnsupported)
    );
}

#[test]
fn precise_geolocation_follows_tcf_special_feature_1_and_us_sections() {
    let e = evaluator();
    let eu = |name: &str| {
        let v = e.evaluate(&Inputs {
            gdpr: Some(true),
            tcf: Some(&case(name)),
            ts_ms: GPP_TS,
            ..Inputs::default()
        });
        (v.outcome, v.precise_geo)
    };
    assert_eq!(
        eu("all_purposes_v755_sf1_bitfield"),
        (Outcome::Personalised, true)
    );
    // Consent given, but not Special Feature 1: personalised without precise geo.
    assert_eq!(eu("sf1_not_opted_in"), (Outcome::Personalised, false));
}

#[test]
fn us_signals() {
    let e = evaluator();
    let us = |usp: Option<&'static str>, gpc: bool, coppa: bool| Inputs {
        gdpr: Some(false),
        usp,
        gpc,
        coppa,
        ..Inputs::default()
    };
    assert_eq!(
        e.evaluate(&us(Some("1YNN"), false, false)).outcome,
        Outcome::Personalised
    );
    assert_eq!(
        e.evaluate(&us(Some("1YYN"), false, false)).reason,
        Reason::UspOptOut
    );
    assert_eq!(
        e.evaluate(&us(Some("garbage"), false, false)).reason,
        Reason::UspInvalid
    );
    assert_eq!(e.evaluate(&us(None, true, false)).reason, Reason::Gpc);
    let child = e.evaluate(&us(Some("1YNN"), false, true));
    assert_eq!(
        (child.outcome, child.reason, child.precise_geo),
        (Outcome::Contextual, Reason::Coppa, false)
    );
    let none = e.evaluate(&us(None, false, false));
    assert_eq!(
        (none.outcome, none.reason, none.precise_geo),
        (Outcome::Personalised, Reason::NoRegime, true)
    );
}

#[test]
fn gpp_sections_not_in_the_string_fail_closed() {
    let e = evaluator();
    let v = e.evaluate(&Inputs {
        gdpr: Some(false),
        gpp: Some("DBABTA~1YNN"),
        gpp_sid: &[7],
        ..Inputs::default()
    });
    assert_eq!(v.reason, Reason::GppSectionMissing);
    assert_ne!(v.outcome, Outcome::Personalised);
    let v = e.evaluate(&Inputs {
        gdpr: Some(false),
        gpp: None,
        gpp_sid: &[6],
        ..Inputs::default()
    });
    assert_eq!(v.reason, Reason::GppMissing);
    let v = e.evaluate(&Inputs {
        gdpr: Some(false),
        gpp: Some("DBABTA~1YYN"),
        gpp_sid: &[6],
        ..Inputs::default()
    });
    assert_eq!(v.reason, Reason::GppOptOut);
}

#[test]
fn decoded_strings_are_cached_and_bounded() {
    let p =
        CompiledPolicy::from_toml(&POLICY.replace("cache_entries = 65536", "cache_entries = 32"))
            .unwrap();
    let e = ConsentEvaluator::new(&p);
    // The same strings again and again are decoded once and kept.
    let cases: Vec<Value> = serde_json::from_str(TCF).unwrap();
    for _ in 0..3 {
        for c in cases.iter().take(20) {
            e.evaluate(&eu(c["tc_string"].as_str().unwrap()));
        }
    }
    assert!(
        e.cached() >= 15,
        "{} of 20 recurring strings cached",
        e.cached()
    );
    // Many more distinct strings than fit, TCF and GPP, valid and not: the cache
    // stays within its bound of 32 entries.
    for i in 0..120 {
        let tcf = format!("{}{i}", case("no_consents"));
        e.evaluate(&eu(&tcf));
        let gpp = format!("DBABTA~1YN{}", if i % 2 == 0 { "N" } else { "Y" }).repeat(1 + i % 3);
        let gpp = format!("{gpp}{i}");
        e.evaluate(&Inputs {
            gdpr: Some(false),
            gpp: Some(&gpp),
            gpp_sid: &[6],
            ..Inputs::default()
        });
    }
    assert!(e.cached() <= 32, "{} cached", e.cached());
}

/// The codes are a contract: they appear in headers and metric labels, and
/// README lists them. Each is pinned here and must be in README.
#[test]
fn reason_and_signal_codes_are_the_documented_ones() {
    let readme = include_str!("../../../README.md");
    use Reason::*;
    let reasons = [
        (Consented, "consented"),
        (NoRegime, "no_regime"),
        (TcfMissing, "tcf_missing"),
        (TcfUndecodable, "tcf_undecodable"),
        (TcfTooLong, "tcf_too_long"),
        (TcfExpired, "tcf_expired"),
        (TcfPurpose, "tcf_purpose"),
        (TcfVendor, "tcf_vendor"),
        (TcfRestricted, "tcf_restricted"),
        (UspOptOut, "usp_opt_out"),
        (UspInvalid, "usp_invalid"),
        (GppMissing, "gpp_missing"),
        (GppUndecodable, "gpp_undecodable"),
        (GppTooLong, "gpp_too_long"),
        (GppSectionMissing, "gpp_section_missing"),
        (GppSectionUnsupported, "gpp_section_unsupported"),
        (GppSidInvalid, "gpp_sid_invalid"),
        (GppOptOut, "gpp_opt_out"),
        (GppNotice, "gpp_notice"),
        (GppServiceProvider, "gpp_service_provider"),
        (GppSensitive, "gpp_sensitive"),
        (GppPersonalData, "gpp_personal_data"),
        (Gpc, "gpc"),
        (Coppa, "coppa"),
        (KnownChild, "known_child"),
    ];
    for (r, code) in reasons {
        assert_eq!(r.as_str(), code);
        assert_eq!(serde_json::to_value(r).unwrap(), code);
        assert!(readme.contains(&format!("`{code}`")), "README lacks {code}");
    }
    for (o, code) in [
        (Outcome::Personalised, "personalised"),
        (Outcome::Contextual, "contextual"),
        (Outcome::Withheld, "withheld"),
    ] {
        assert_eq!(o.as_str(), code);
        assert!(readme.contains(&format!("`{code}`")), "README lacks {code}");
    }
    for (s, code) in [
        (SignalResult::NotApplicable, "not_applicable"),
        (SignalResult::Allowed, "allowed"),
        (SignalResult::Denied, "denied"),
        (SignalResult::Invalid, "invalid"),
    ] {
        assert_eq!(s.as_str(), code);
    }
    let signals = Signals {
        tcf: SignalResult::Allowed,
        usp: SignalResult::Denied,
        gpp: SignalResult::Invalid,
        gpc: SignalResult::NotApplicable,
        coppa: SignalResult::Denied,
    };
    assert_eq!(
        signals.iter(),
        [
            ("tcf", SignalResult::Allowed),
            ("usp", SignalResult::Denied),
            ("gpp", SignalResult::Invalid),
            ("gpc", SignalResult::NotApplicable),
            ("coppa", SignalResult::Denied),
        ]
    );
}

/// The evaluator's debug output (which may reach a log) names its settings
/// and how many strings it holds, never a consent string.
#[test]
fn debug_output_never_shows_a_consent_string() {
    let e = evaluator();
    let s = case("all_purposes_v755_sf1_bitfield");
    e.evaluate(&eu(&s));
    e.evaluate(&Inputs {
        gdpr: Some(false),
        gpp: Some("DBABTA~1YNN"),
        gpp_sid: &[6],
        ..Inputs::default()
    });
    let text = format!("{e:?}");
    assert_eq!(
        text,
        "ConsentEvaluator { vendor_id: 755, cached: 2, cached_bytes: 2048 }"
    );
    assert_eq!(e.cached(), 2);
}

/// `max_age_days` after the string's last update it still counts; a
/// millisecond later it has expired (and expired is invalid, not denied).
#[test]
fn tcf_expiry_is_exact_to_the_millisecond() {
    let e = evaluator();
    let s = case("all_purposes_v755_sf1_bitfield");
    let at = |ts_ms: i64| {
        e.evaluate(&Inputs {
            gdpr: Some(true),
            tcf: Some(&s),
            ts_ms,
            ..Inputs::default()
        })
    };
    let edge = 1_718_440_200_000 + 390 * 86_400_000;
    assert_eq!(at(edge).outcome, Outcome::Personalised);
    let v = at(edge + 1);
    assert_eq!(
        (v.outcome, v.reason, v.signals.tcf),
        (
            Outcome::Contextual,
            Reason::TcfExpired,
            SignalResult::Invalid
        )
    );
}

/// The IAB US Privacy string is exactly four characters: `1`, then three of
/// `Y`, `N`, `-` (upper case, as the spec spells them). Anything else fails
/// closed, bare or as GPP section 6.
#[test]
fn us_privacy_is_exactly_four_characters() {
    assert_eq!(decode_usp("1YNN"), Ok(Some(false)));
    assert_eq!(decode_usp("1YYN"), Ok(Some(true)));
    assert_eq!(decode_usp("1NYY"), Ok(Some(true)));
    assert_eq!(decode_usp("1---"), Ok(None));
    assert_eq!(decode_usp("1-N-"), Ok(Some(false)));
    // A notice given, the sale flag unknown: fail closed.
    assert_eq!(decode_usp("1Y-N"), Ok(Some(true)));
    let bad = [
        "1YNNX", "1YNN~", "1YNN-", "1YNNN", "1YN", "1", " 1YNN", "1YNN ", "1YNN\n", "1ynn", "1yNN",
        "1YnN", "1YNn", "2YNN", "0YNN", "1YNX", "1X--", "1YN\u{0}", "1YNÑ", "１YNN",
    ];
    let e = evaluator();
    for s in bad {
        assert_eq!(decode_usp(s), Err(UspInvalid), "{s:?}");
        let v = e.evaluate(&Inputs {
            gdpr: Some(false),
            usp: Some(s),
            ..Inputs::default()
        });
        assert_eq!(
            (v.outcome, v.reason, v.signals.usp),
            (
                Outcome::Contextual,
                Reason::UspInvalid,
                SignalResult::Invalid
            ),
            "{s:?}"
        );
    }
    // The same inside GPP: section 6 that is not exactly four characters.
    for s in ["DBABTA~1YNNX", "DBABTA~1ynn", "DBABTA~1YN"] {
        let v = gpp_verdict(&e, s, &[6]);
        assert_eq!(
            (v.outcome, v.reason),
            (Outcome::Contextual, Reason::GppUndecodable),
            "{s:?}"
        );
    }
    assert_eq!(
        gpp_verdict(&e, "DBABTA~1YNN", &[6]).outcome,
        Outcome::Personalised
    );
}

/// A TCF or GPP string longer than `max_string_bytes` is not decoded and
/// fails closed with its own reason; one at the cap is decoded. The strings
/// here would be personalised if decoded: only their length fails them.
#[test]
fn consent_strings_over_the_cap_fail_closed() {
    let tcf_ok = case("all_purposes_v755_sf1_bitfield");
    // The TCF reader stops at the core segment: padding after a dot is not read.
    let padded = |s: &str, len: usize| format!("{s}.{}", "A".repeat(len - s.len() - 1));
    let gpp_ok = format!("DBABMA~{tcf_ok}");
    for cap in [1024usize, 8192, 65_536] {
        let e = evaluator_with(&[(
            "max_string_bytes = 8192",
            &format!("max_string_bytes = {cap}"),
        )]);
        let tcf = |s: &str| e.evaluate(&eu(s));
        let gpp = |s: &str| {
            e.evaluate(&Inputs {
                gdpr: Some(false),
                gpp: Some(s),
                gpp_sid: &[2],
                ts_ms: GPP_TS,
                ..Inputs::default()
            })
        };
        assert_eq!(tcf(&padded(&tcf_ok, cap)).outcome, Outcome::Personalised);
        assert_eq!(gpp(&padded(&gpp_ok, cap)).outcome, Outcome::Personalised);
        let v = tcf(&padded(&tcf_ok, cap + 1));
        assert_eq!(
            (v.outcome, v.reason, v.signals.tcf),
            (
                Outcome::Contextual,
                Reason::TcfTooLong,
                SignalResult::Invalid
            ),
            "{cap}"
        );
        let v = gpp(&padded(&gpp_ok, cap + 1));
        assert_eq!(
            (v.outcome, v.reason, v.signals.gpp),
            (
                Outcome::Contextual,
                Reason::GppTooLong,
                SignalResult::Invalid
            ),
            "{cap}"
        );
    }
    // The fallback is the policy's, as for any string that does not decode.
    let e = evaluator_with(&[("no_consent = \"contextual\"", "no_consent = \"withheld\"")]);
    let v = e.evaluate(&eu(&padded(&tcf_ok, 9000)));
    assert_eq!(
        (v.outcome, v.reason),
        (Outcome::Withheld, Reason::TcfTooLong)
    );
    // 200 KB: refused by its length alone, never cached.
    let big = padded(&tcf_ok, 200_000);
    assert_eq!(e.evaluate(&eu(&big)).reason, Reason::TcfTooLong);
    assert_eq!(e.cached(), 0);
}

fn evaluator_with(edits: &[(&str, &str)]) -> ConsentEvaluator {
    let mut text = POLICY.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "policy lacks {from:?}");
        text = text.replacen(from, to, 1);
    }
    ConsentEvaluator::new(&CompiledPolicy::from_toml(&text).unwrap())
}

fn sections(ids: &[i64]) -> SectionSet {
    ids.iter().copied().collect()
}

/// A section not listed in `gpp_sid` is not decoded: it is not in the facts,
/// whatever it holds, and the facts of the others are the same as when every
/// section is asked for.
#[test]
fn only_the_gpp_sections_asked_for_are_decoded() {
    let (s, _) = gpp_case("multi_tcfeuv2_uspv1_usnat");
    let all = decode_gpp(&s, 755, SectionSet::ALL).unwrap();
    assert_eq!(
        all.sections.iter().map(|x| x.0).collect::<Vec<_>>(),
        [2, 6, 7]
    );
    for wanted in [&[6][..], &[2, 7], &[7, 8], &[]] {
        let some = decode_gpp(&s, 755, sections(wanted)).unwrap();
        let expect: Vec<_> = all
            .sections
            .iter()
            .filter(|(id, _)| wanted.contains(&(*id as i64)))
            .cloned()
            .collect();
        assert_eq!(some.sections, expect, "{wanted:?}");
    }
    // A section that does not decode is harmless until it is listed.
    let bad = "DBACNY~not-a-tcf-string~1YNN";
    let g = decode_gpp(bad, 755, sections(&[6])).unwrap();
    assert_eq!(g.sections, [(6, SectionFacts::Usp(false))]);
    let g = decode_gpp(bad, 755, sections(&[2, 6])).unwrap();
    assert_eq!(g.section(2), Some(&SectionFacts::Undecodable));
}

/// TCF EU v1 (1) and TCF Canada (5) are not judged, so never decoded:
/// `iab_gpp` expands their vendor ranges one id at a time (a 22 KB section
/// took 84 s and 780 MB in a debug build before this), and on some it
/// overflows. Listed, they are unsupported; not listed, they cost nothing.
#[test]
fn tcf_v1_and_canada_sections_are_never_decoded() {
    use super::craft::{gpp_header, tcf_ca_huge, tcf_ca_overflowing};
    let e = evaluator_with(&[("max_string_bytes = 8192", "max_string_bytes = 65536")]);
    let huge = tcf_ca_huge(4000);
    let overflowing = tcf_ca_overflowing();
    if cfg!(debug_assertions) {
        // The tripwire: handed to iab_gpp, this section panics (debug build).
        use iab_gpp::sections::tcfcav1::TcfCaV1;
        let r = std::panic::catch_unwind(|| overflowing.parse::<TcfCaV1>());
        assert!(r.is_err(), "iab_gpp read the overflowing section");
    }
    // The tripwire first: a regression fails at once instead of running long.
    for (ca_id, ca) in [(5, &overflowing), (5, &huge), (1, &huge)] {
        let s = format!("{}~{ca}~1YNN", gpp_header(&[ca_id, 6]));
        assert!(s.len() > 20_000 || ca == &overflowing);
        let v = gpp_verdict(&e, &s, &[6]);
        assert_eq!(
            (v.outcome, v.reason),
            (Outcome::Personalised, Reason::Consented)
        );
        let v = gpp_verdict(&e, &s, &[ca_id as i64, 6]);
        assert_eq!(
            (v.outcome, v.reason, v.signals.gpp),
            (
                Outcome::Contextual,
                Reason::GppSectionUnsupported,
                SignalResult::Invalid
            )
        );
    }
}

/// The GPP header is read as the spec writes it: each id's offset counts
/// from the last id seen, single ids and groups alike.
#[test]
fn gpp_headers_are_read_as_the_spec_writes_them() {
    use super::craft::{BitWriter, gpp_header};
    let ids = |s: &str| -> Result<Vec<u16>, GppDecodeError> {
        decode_gpp(s, 755, SectionSet::ALL).map(|g| g.sections.iter().map(|x| x.0).collect())
    };
    // The spec's own examples (Consent String Specification, "Header Examples").
    assert_eq!(ids("DBABM~x"), Ok(vec![2]));
    assert_eq!(ids("DBACNY~x~1YNN"), Ok(vec![2, 6]));
    assert_eq!(ids("DBABjw~x~1YNN"), Ok(vec![5, 6]));
    // Every IAB-made fixture, as @iabgpp/cmpapi read its header.
    let cases: Vec<Value> = serde_json::from_str(GPP).unwrap();
    for c in &cases {
        let s = c["gpp_string"].as_str().unwrap();
        assert_eq!(ids(s).unwrap(), ids_of(&c["section_ids"]), "{}", c["name"]);
    }
    // Three single ids in a row: 2, then +4 = 6, then +2 = 8 (iab_gpp 0.1.2
    // counts the third from the second's offset and reads 6 again).
    let h = gpp_header(&[2, 6, 8]);
    assert_eq!(ids(&format!("{h}~a~1YNN~b")), Ok(vec![2, 6, 8]));
    // Ids past 255 (iab_gpp sums them in a u8), never asked for.
    let h = gpp_header(&[6, 250, 260]);
    let g = decode_gpp(&format!("{h}~1YYN~x~y"), 755, sections(&[6])).unwrap();
    assert_eq!(g.sections, [(6, SectionFacts::Usp(true))]);
    // An id fairgate does not know, listed or not.
    let h = gpp_header(&[6, 40]);
    let e = evaluator();
    let s = format!("{h}~1YNN~whatever");
    assert_eq!(gpp_verdict(&e, &s, &[6]).outcome, Outcome::Personalised);
    assert_eq!(
        gpp_verdict(&e, &s, &[6, 40]).reason,
        Reason::GppSectionUnsupported
    );
    // A header that claims more sections than follow, by a group of 60,000
    // ids or one id too many, or fewer, or is not a header at all.
    let mut w = BitWriter::new();
    w.int(3, 6)
        .int(1, 6)
        .int(1, 12)
        .bit(true)
        .fib(1)
        .fib(60_000);
    assert!(ids(&format!("{}~a~b", w.base64())).is_err());
    assert!(ids(&format!("{}~1YNN", gpp_header(&[2, 6]))).is_err());
    assert!(ids(&format!("{}~a~b", gpp_header(&[6]))).is_err());
    for bad in [
        "", "~", "DBABM", "DBAB", "CBABMA~x", "DCABMA~x", "DB*BMA~x", "D~x",
    ] {
        assert!(ids(bad).is_err(), "{bad:?}");
    }
    // A Fibonacci number too large for a section id.
    let mut w = BitWriter::new();
    w.int(3, 6)
        .int(1, 6)
        .int(1, 12)
        .bit(false)
        .int(0, 40)
        .int(3, 2);
    assert!(ids(&format!("{}~a", w.base64())).is_err());
}

fn ids_of(v: &Value) -> Vec<u16> {
    ids(v)
}

/// The cache is bounded in bytes, not only in entries: 2,000 distinct
/// strings at the largest cap (64 KiB each, 128 MiB in all) leave what the
/// cache holds, strings counted byte for byte, within a 1 MiB budget.
#[test]
fn the_cache_stays_within_its_byte_budget() {
    let budget = 1u64 << 20;
    let e = evaluator_with(&[
        ("max_string_bytes = 8192", "max_string_bytes = 65536"),
        ("cache_bytes = 67108864", "cache_bytes = 1048576"),
    ]);
    let tcf = case("all_purposes_v755_sf1_bitfield");
    let mut s = format!("{tcf}.{}", "A".repeat(65_536 - tcf.len() - 1));
    let mut g = format!("DBABMA~{s}");
    g.truncate(65_536);
    for i in 0..2_000 {
        // Distinct strings of the same length: the index written over the end.
        let tag = format!("{i:06}");
        s.replace_range(s.len() - 6.., &tag);
        g.replace_range(g.len() - 6.., &tag);
        assert_eq!(e.evaluate(&eu(&s)).outcome, Outcome::Personalised);
        let v = e.evaluate(&Inputs {
            gdpr: Some(false),
            gpp: Some(&g),
            gpp_sid: &[2],
            ts_ms: GPP_TS,
            ..Inputs::default()
        });
        assert_eq!(v.outcome, Outcome::Personalised);
        assert!(e.cached_bytes() <= budget, "{} bytes", e.cached_bytes());
    }
    let held = e.held_string_bytes();
    assert!(held > 0 && held <= budget, "{held} bytes of strings held");
    // A small entry budget holds: each entry weighs at least budget / entries.
    let e = evaluator_with(&[("cache_entries = 65536", "cache_entries = 8")]);
    for i in 0..100 {
        e.evaluate(&eu(&format!("{tcf}{i}")));
    }
    assert!(e.cached() <= 8, "{} cached", e.cached());
}

/// A string is looked up by borrowing it (no allocation) and found: the
/// borrowed key hashes as the stored one. A GPP string is cached once per
/// set of applicable sections, since the sections decoded depend on it.
#[test]
fn the_cache_finds_what_it_stored() {
    let e = evaluator();
    let tcf = case("all_purposes_v755_sf1_bitfield");
    e.evaluate(&eu(&tcf));
    let found = |kind: Kind, text: &str| e.cache.get(&KeyRef { kind, text }).is_some();
    assert!(found(Kind::Tcf, &tcf));
    let (gpp, _) = gpp_case("multi_tcfeuv2_uspv1_usnat");
    for sids in [&[6][..], &[7, 6, 6]] {
        gpp_verdict(&e, &gpp, sids);
    }
    assert!(found(Kind::Gpp(sections(&[6])), &gpp));
    assert!(found(Kind::Gpp(sections(&[6, 7])), &gpp));
    assert!(!found(Kind::Gpp(sections(&[2])), &gpp));
    assert!(!found(Kind::Tcf, &gpp));
    assert_eq!(e.cached(), 3);
}

/// `max_string_bytes` and `cache_bytes` are checked with their range, and
/// default (for policy files written before them) to 8 KiB and 64 MiB.
#[test]
fn consent_bounds_are_checked_against_their_range() {
    let compile = |from: &str, to: &str| {
        assert!(POLICY.contains(from));
        CompiledPolicy::from_toml(&POLICY.replacen(from, to, 1))
    };
    let string = "max_string_bytes = 8192";
    let cache = "cache_bytes = 67108864";
    for (from, to, place, range) in [
        (
            string,
            "max_string_bytes = 1023",
            "consent.max_string_bytes",
            "between 1024 and 65536 (bytes)",
        ),
        (
            string,
            "max_string_bytes = 65537",
            "consent.max_string_bytes",
            "between 1024 and 65536 (bytes)",
        ),
        (
            string,
            "max_string_bytes = 0",
            "consent.max_string_bytes",
            "between 1024 and 65536 (bytes)",
        ),
        (
            cache,
            "cache_bytes = 1048575",
            "consent.cache_bytes",
            "between 1048576 and 68719476736",
        ),
        (
            cache,
            "cache_bytes = 68719476737",
            "consent.cache_bytes",
            "between 1048576 and 68719476736",
        ),
    ] {
        let err = compile(from, to).unwrap_err();
        let issue = err
            .issues()
            .iter()
            .find(|i| i.place == place)
            .unwrap_or_else(|| panic!("{to}: {err}"));
        assert!(issue.message.contains(range), "{to}: {issue}");
    }
    // Both wrong at once: both reported.
    let both = POLICY
        .replace(string, "max_string_bytes = 1")
        .replace(cache, "cache_bytes = 1");
    assert_eq!(
        CompiledPolicy::from_toml(&both).unwrap_err().issues().len(),
        2
    );
    for (from, to) in [
        (string, "max_string_bytes = 1024"),
        (string, "max_string_bytes = 65536"),
        (cache, "cache_bytes = 1048576"),
        (cache, "cache_bytes = 68719476736"),
    ] {
        compile(from, to).unwrap_or_else(|e| panic!("{to}: {e}"));
    }
    let old = POLICY.replace(string, "").replace(cache, "");
    let p = CompiledPolicy::from_toml(&old).unwrap();
    assert_eq!((p.max_string_bytes, p.cache_bytes), (8192, 64 << 20));
}

/// The worst TCF string a cap lets through, as many ranges as it holds, each
/// claiming every vendor id: decoded as ranges (never one entry per id), and
/// judged; bare and as GPP section 2, at the default cap and the largest.
#[test]
fn the_most_ranges_a_capped_tcf_string_holds_are_decoded_as_ranges() {
    use super::craft::{gpp_header, tcf_max_ranges};
    for cap in [8192usize, 65_536] {
        let e = evaluator_with(&[(
            "max_string_bytes = 8192",
            &format!("max_string_bytes = {cap}"),
        )]);
        let s = tcf_max_ranges(cap);
        assert!(s.len() <= cap && s.len() > cap - 8, "{}", s.len());
        let core = decode_core(&s).unwrap();
        let VendorSet::Ranges(r) = &core.vendor_consents else {
            panic!("not ranges")
        };
        let restricted: usize = core.restrictions.iter().map(|x| x.2.len()).sum();
        // Every entry of 33 bits or 53 bits (a restriction) is one pair.
        assert!(
            2 * r.len() * 33 + restricted * 53 > (cap - 100) * 6,
            "{cap}"
        );
        assert!(r.iter().all(|&x| x == (1, 65_535)));
        let v = e.evaluate(&eu(&s));
        assert_eq!(
            (v.outcome, v.reason),
            (Outcome::Contextual, Reason::TcfRestricted)
        );
        let g = format!("{}~{}", gpp_header(&[2]), tcf_max_ranges(cap - 8));
        let v = gpp_verdict(&e, &g, &[2]);
        assert_eq!(
            (v.outcome, v.reason),
            (Outcome::Contextual, Reason::TcfRestricted)
        );
    }
}

/// The bits of a base64url text, six a character.
fn sextet_bits(text: &str) -> Vec<bool> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    text.bytes()
        .flat_map(|c| {
            let v = ALPHABET.bytes().position(|a| a == c).expect("base64url") as u8;
            (0..6).rev().map(move |i| v >> i & 1 == 1)
        })
        .collect()
}

/// `gpp` (header `~` one US section) with the 2-bit field at `pair` (counted
/// after the 6-bit version) of the section's core segment set to `value`.
fn with_us_field(gpp: &str, pair: usize, value: u64) -> String {
    let (header, section) = gpp.split_once('~').expect("one section");
    let (core, rest) = section
        .split_once('.')
        .map_or((section, None), |(c, r)| (c, Some(r)));
    let mut bits = sextet_bits(core);
    let at = 6 + 2 * pair;
    bits[at] = value & 2 != 0;
    bits[at + 1] = value & 1 != 0;
    let mut w = super::craft::BitWriter::new();
    for b in bits {
        w.bit(b);
    }
    let core = w.base64();
    match rest {
        Some(r) => format!("{header}~{core}.{r}"),
        None => format!("{header}~{core}"),
    }
}

/// A US section holding a field of value 3 (defined for none of their
/// fields) fails closed: `iab_gpp` would read it as "not applicable", and an
/// opt-out of 3 would pass as no opt-out.
#[test]
fn an_undefined_value_in_a_us_section_fails_closed() {
    let e = evaluator();
    let (usnat, _) = gpp_case("usnat_no_opt_out");
    assert_eq!(gpp_verdict(&e, &usnat, &[7]).outcome, Outcome::Personalised);
    // Rewritten with the same value: still read, still personalised.
    let same = with_us_field(&usnat, 6, 2);
    assert_eq!(gpp_verdict(&e, &same, &[7]).outcome, Outcome::Personalised);
    // SaleOptOut (the 7th field) = 1: opted out, read as such.
    let opted_out = with_us_field(&usnat, 6, 1);
    assert_eq!(gpp_verdict(&e, &opted_out, &[7]).reason, Reason::GppOptOut);
    // SaleOptOut = 3, then the first notice, then an MSPA flag near the end.
    for pair in [6, 0, 26] {
        let undefined = with_us_field(&usnat, pair, 3);
        let v = gpp_verdict(&e, &undefined, &[7]);
        assert_ne!(v.outcome, Outcome::Personalised, "field {pair}");
        assert_eq!(v.reason, Reason::GppUndecodable, "field {pair}");
    }
}
