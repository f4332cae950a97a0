//! The guard core end to end, without a broker: routes, stripping, windows,
//! states and the offline `check` command.

use std::io::Cursor;

use fairgate::core::consent::Outcome;
use fairgate::core::guard::headers;
use fairgate::fairness::campaign::State;
use fairgate::tools::synth::Synth;
use fairgate::{CompiledPolicy, Guard, Now, Route};
use proptest::prelude::*;
use serde_json::{Value, json};

const POLICY: &str = include_str!("../config/policy.toml");
const T0: i64 = 1_795_000_000_000;

fn guard() -> Guard {
    Guard::new(CompiledPolicy::from_toml(POLICY).unwrap())
}

fn guard_with(edit: impl Fn(String) -> String) -> Guard {
    Guard::new(CompiledPolicy::from_toml(&edit(POLICY.to_string())).unwrap())
}

fn header<'a>(j: &'a fairgate::Judgement, name: &str) -> Option<&'a str> {
    j.headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_ref())
}

// ---------------------------------------------------------------------------
// Nothing stripped leaks
// ---------------------------------------------------------------------------

const SECRET: &str = "S3CRET-VALUE";

/// A decision time one day after the TCF fixtures were last updated, so
/// that none of them has expired and the consented ones do personalise.
const TS_CONSENT: i64 = 1_718_526_600_000;

fn fixture_strings(json: &str, field: &str) -> Vec<(String, Vec<i64>)> {
    serde_json::from_str::<Vec<Value>>(json)
        .unwrap()
        .iter()
        .map(|c| {
            let sids = c["section_ids"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_i64().unwrap()).collect())
                .unwrap_or_default();
            (c[field].as_str().unwrap().to_string(), sids)
        })
        .collect()
}

fn arb_consent() -> impl Strategy<Value = Value> {
    let tcf: Vec<String> =
        fixture_strings(include_str!("data/consent/tcf_cases.json"), "tc_string")
            .into_iter()
            .map(|(s, _)| s)
            .collect();
    let gpp = fixture_strings(include_str!("data/consent/gpp_cases.json"), "gpp_string");
    (
        prop::option::of(0i64..=1),
        prop::option::of(prop::sample::select(tcf)),
        prop::option::of(prop::sample::select(vec!["1YNN", "1YYN", "1---", "bad"])),
        prop::option::weighted(0.3, prop::sample::select(gpp)),
        prop::option::weighted(0.2, 0i64..=1),
        prop::option::weighted(0.2, 0i64..=1),
    )
        .prop_map(|(gdpr, tcf, usp, gpp, gpc, coppa)| {
            let mut regs = serde_json::Map::new();
            if let Some(g) = gdpr {
                regs.insert("gdpr".into(), json!(g));
            }
            if let Some(u) = usp {
                regs.insert("us_privacy".into(), json!(u));
            }
            if let Some((s, sids)) = gpp {
                regs.insert("gpp".into(), json!(s));
                regs.insert("gpp_sid".into(), json!(sids));
            }
            if let Some(g) = gpc {
                regs.insert("gpc".into(), json!(g));
            }
            if let Some(c) = coppa {
                regs.insert("coppa".into(), json!(c));
            }
            json!({"regs": regs, "consent": tcf})
        })
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(SECRET)),
        Just(json!({"nested": SECRET})),
        Just(json!([SECRET, 1])),
        Just(json!(123456789)),
        Just(json!(52.123456)),
        Just(json!(null)),
    ]
}

const SENSITIVE_SEGMENTS: [&str; 4] = [
    "health-diabetes",
    "religion-x",
    "union-member",
    "politics-left",
];
const PLAIN_SEGMENTS: [&str; 2] = ["auto-intender", "sports"];

/// Set `pointer` in `v` to `x`, making the objects on the way.
fn plant(v: &mut Value, pointer: &str, x: Value) {
    let mut at = v;
    for part in pointer.trim_start_matches('/').split('/') {
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()
            .unwrap()
            .entry(part)
            .or_insert(Value::Null);
    }
    *at = x;
}

/// A decision with a value planted at every pointer the policy strips.
fn arb_decision(personal: &'static [String]) -> impl Strategy<Value = Value> {
    let mut all_segments = SENSITIVE_SEGMENTS.to_vec();
    all_segments.extend(PLAIN_SEGMENTS);
    (
        arb_consent(),
        prop::collection::vec(arb_value(), personal.len()),
        arb_value(),
        prop::collection::vec(prop::sample::select(all_segments), 0..6),
        any::<bool>(),
        prop::sample::select(vec!["203.0.113.17", "2001:db8:1:2::1", "garbage", ""]),
        prop::option::weighted(0.2, 0i64..=1),
    )
        .prop_map(move |(consent, values, aud, segs, selected, ip, lmt)| {
            let mut d = json!({
                "id": "dec-1", "ts": TS_CONSENT, "campaign": {"id": "cmp-1"}, "selected": selected,
                "user": {"geo": {"lat": 52.3731, "lon": 4.8922, "zip": "1012AB"},
                         "unknown_field": {"kept": true}},
                "device": {"ip": ip, "geo": {"lat": 1.23456, "lon": 2.34567}},
                "regs": consent["regs"],
                "audience": {"sex": "female", "age_band": "25-34", "secret": aud},
                "ext": {"platform": "kept"}
            });
            for (p, v) in personal.iter().zip(values) {
                plant(&mut d, p, v);
            }
            let segments: Vec<Value> = segs.iter().map(|s| json!({"id": s})).collect();
            d["user"]["data"] = json!([{"id": "dmp", "segment": segments}]);
            if let Some(c) = consent["consent"].as_str() {
                d["user"]["consent"] = json!(c);
            }
            if let Some(l) = lmt {
                d["device"]["lmt"] = json!(l);
            }
            d
        })
}

/// What the leak test saw, so it can show it covered every route and outcome.
#[derive(Default, Debug)]
struct Seen {
    personalised_precise: usize,
    personalised_under_tcf: usize,
    contextual: usize,
    blocked: usize,
}

/// Check one judged decision; `d` is the input.
fn check_nothing_leaks(
    policy: &CompiledPolicy,
    d: &Value,
    j: &fairgate::Judgement,
    seen: &mut Seen,
) -> Result<(), TestCaseError> {
    prop_assert_ne!(j.route, Route::DeadLetter);
    let verdict = j.facts.consent.unwrap();
    let personalised = verdict.outcome == Outcome::Personalised;
    prop_assert_eq!(
        j.route == Route::Blocked,
        verdict.outcome == Outcome::Withheld
    );
    let out: Value = serde_json::from_slice(&j.payload).unwrap();
    let text = String::from_utf8_lossy(&j.payload).to_string();
    for p in &policy.always {
        prop_assert!(out.pointer(&p.text).is_none(), "{} leaked", p.text);
    }
    for p in &policy.unless_personalised {
        if !personalised {
            prop_assert!(
                out.pointer(&p.text).is_none(),
                "{} leaked ({:?})",
                p.text,
                verdict
            );
        } else if p.text != "/user/data"
            && !(verdict.lmt && policy.when_lmt.iter().any(|l| l.text == p.text))
        {
            // Personal fields are kept when personalised.
            prop_assert_eq!(
                out.pointer(&p.text),
                d.pointer(&p.text),
                "{} not kept",
                p.text
            );
        }
    }
    if !personalised {
        prop_assert!(!text.contains(SECRET), "a planted value leaked: {}", text);
    }
    // A child's location and, under `device.lmt = 1`, the device and user
    // ids go whatever the outcome.
    prop_assert_eq!(verdict.lmt, d["device"]["lmt"] == json!(1));
    for (on, list) in [
        (verdict.child, &policy.when_child),
        (verdict.lmt, &policy.when_lmt),
    ] {
        for p in list.iter().filter(|_| on) {
            prop_assert!(out.pointer(&p.text).is_none(), "{} leaked", p.text);
        }
    }
    for s in SENSITIVE_SEGMENTS {
        prop_assert!(!text.contains(s), "segment {} leaked", s);
    }
    if personalised {
        // Segments that are not sensitive stay.
        for s in PLAIN_SEGMENTS {
            prop_assert_eq!(text.contains(s), d.to_string().contains(s), "segment {}", s);
        }
    }
    for (_, v) in &j.headers {
        prop_assert!(!v.contains(SECRET) && !v.contains("203.0.113.17"));
    }
    prop_assert_eq!(&out["ext"], &json!({"platform": "kept"}));
    prop_assert_eq!(&out["user"]["unknown_field"], &json!({"kept": true}));
    check_geo(d, &out, verdict.precise_geo, verdict.child)?;
    match (verdict.outcome, verdict.precise_geo) {
        (Outcome::Personalised, true) => seen.personalised_precise += 1,
        (Outcome::Contextual, _) => seen.contextual += 1,
        (Outcome::Withheld, _) => seen.blocked += 1,
        _ => {}
    }
    if personalised && verdict.signals.tcf == fairgate::core::consent::SignalResult::Allowed {
        seen.personalised_under_tcf += 1;
    }
    Ok(())
}

/// Precise location flows only where allowed; elsewhere it is coarsened, and
/// a value that cannot be coarsened is removed.
/// A child's lat, lon and zip are removed, not coarsened (the IP is still truncated).
fn check_geo(d: &Value, out: &Value, precise: bool, child: bool) -> Result<(), TestCaseError> {
    if precise {
        prop_assert!(!child);
        prop_assert_eq!(&out["device"], &d["device"]);
        prop_assert_eq!(&out["user"]["geo"], &d["user"]["geo"]);
        return Ok(());
    }
    if child {
        prop_assert_eq!(&out["device"]["geo"], &json!({}));
        prop_assert_eq!(&out["user"]["geo"], &json!({}));
    } else {
        prop_assert_eq!(&out["device"]["geo"], &json!({"lat": 1.23, "lon": 2.35}));
        prop_assert_eq!(
            &out["user"]["geo"],
            &json!({"lat": 52.37, "lon": 4.89, "zip": "101"})
        );
    }
    let ip = match d["device"]["ip"].as_str().unwrap() {
        "203.0.113.17" => Some("203.0.113.0"),
        "2001:db8:1:2::1" => Some("2001:db8:1::"),
        _ => None,
    };
    prop_assert_eq!(out.pointer("/device/ip").and_then(Value::as_str), ip);
    Ok(())
}

#[test]
fn no_stripped_pointer_ever_reaches_output_or_blocked() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let shipped = CompiledPolicy::from_toml(POLICY).unwrap();
    let personal: &'static [String] = Vec::leak(
        shipped
            .unless_personalised
            .iter()
            .map(|p| p.text.clone())
            .collect(),
    );
    let withholding = |p: String| {
        p.replace("no_consent = \"contextual\"", "no_consent = \"withheld\"")
            .replace("opt_out = \"contextual\"", "opt_out = \"withheld\"")
    };
    let guards = [guard(), guard_with(withholding)];
    let seen = std::cell::RefCell::new(Seen::default());
    let mut runner = TestRunner::new_with_rng(
        Config::with_cases(1500),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    runner
        .run(&(arb_decision(personal), 0..2usize), |(d, which)| {
            let j = guards[which].judge(
                Some(b"k"),
                &serde_json::to_vec(&d).unwrap(),
                Now::At(TS_CONSENT),
            );
            check_nothing_leaks(&shipped, &d, &j, &mut seen.borrow_mut())
        })
        .unwrap();
    // The cases reached every route and outcome the checks are about.
    let seen = seen.into_inner();
    assert!(seen.personalised_precise > 20, "{seen:?}");
    assert!(seen.personalised_under_tcf > 20, "{seen:?}");
    assert!(seen.contextual > 100, "{seen:?}");
    assert!(seen.blocked > 100, "{seen:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_never_panic_and_always_route(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let g = guard();
        let j = g.judge(Some(b"orig"), &bytes, Now::At(T0));
        if j.route == Route::DeadLetter {
            prop_assert!(header(&j, headers::ERROR).is_some());
            prop_assert_eq!(j.key.as_deref(), Some(&b"orig"[..]));
            prop_assert_eq!(j.payload, bytes);
        }
    }
}

#[test]
fn numbers_and_unknown_fields_pass_through_digit_for_digit() {
    let g = guard();
    let input = br#"{"id":"d","ts":1795000000000,"campaign":{"id":"c"},"regs":{"gdpr":0},"ad":{"bid_cpm":1.250,"big":123456789012345678901234567890,"e":1e3},"x":[1,"two",{"three":3.0}]}"#;
    let j = g.judge(None, input, Now::At(T0));
    let s = String::from_utf8(j.payload).unwrap();
    assert!(s.contains(r#""bid_cpm":1.250"#), "{s}");
    assert!(s.contains("123456789012345678901234567890"), "{s}");
    // The number's text is kept as written: 1e3 stays 1e3, not 1000 or 1000.0.
    assert!(s.contains(r#""e":1e3}"#), "{s}");
    assert!(s.contains(r#""x":[1,"two",{"three":3.0}]"#), "{s}");
}

#[test]
fn repeated_keys_cannot_smuggle_stripped_fields_or_consent() {
    let g = guard();
    // Stripped fields repeated at three depths; consent repeated, opt-out last.
    let input = br#"{"id":"d","audience":{"sex":"female"},"ts":1795000000000,"campaign":{"id":"c"},
        "user":{"id":"UID-1","yob":1988,"id":"UID-2","geo":{"lat":52.3731,"lat":1.5}},
        "device":{"ifa":"IFA-1","ip":"203.0.113.17","ifa":"IFA-2"},
        "regs":{"gdpr":0,"us_privacy":"1YNN","us_privacy":"1YYN"},
        "audience":{"sex":"male"},"ext":{"k":1,"k":2}}"#;
    let j = g.judge(None, input, Now::At(T0));
    assert_eq!(j.route, Route::Output);
    assert_eq!(header(&j, headers::CONSENT), Some("contextual"));
    assert_eq!(header(&j, headers::CONSENT_REASON), Some("usp_opt_out"));
    let s = String::from_utf8(j.payload.clone()).unwrap();
    for leaked in [
        "UID-1", "UID-2", "IFA-1", "IFA-2", "audience", "female", "male",
    ] {
        assert!(!s.contains(leaked), "{leaked} leaked: {s}");
    }
    // One entry per key, the last value at the first key's place.
    assert_eq!(
        s,
        r#"{"id":"d","ts":1795000000000,"campaign":{"id":"c"},"user":{"geo":{"lat":1.5}},"device":{"ip":"203.0.113.0"},"regs":{"gdpr":0,"us_privacy":"1YYN"},"ext":{"k":2}}"#
    );
    // The same record with the opt-out first: the last string is the one read.
    let swapped = String::from_utf8(input.to_vec()).unwrap().replace(
        r#""1YNN","us_privacy":"1YYN""#,
        r#""1YYN","us_privacy":"1YNN""#,
    );
    let j = g.judge(None, swapped.as_bytes(), Now::At(T0));
    assert_eq!(header(&j, headers::CONSENT), Some("personalised"));
    let s = String::from_utf8(j.payload).unwrap();
    assert!(!s.contains("UID-1") && !s.contains("IFA-1") && !s.contains("audience"));
}

#[test]
fn withheld_consent_goes_to_blocked_stripped_with_reason() {
    let g = guard_with(|p| p.replace("no_consent = \"contextual\"", "no_consent = \"withheld\""));
    let input = br#"{"id":"d","ts":1795000000000,"campaign":{"id":"c"},"regs":{"gdpr":1},"user":{"id":"u-1","eids":[1]},"audience":{"sex":"male"}}"#;
    let j = g.judge(None, input, Now::At(T0));
    assert_eq!(j.route, Route::Blocked);
    assert_eq!(header(&j, headers::REASON), Some("consent_withheld"));
    assert_eq!(header(&j, headers::CONSENT_REASON), Some("tcf_missing"));
    let out: Value = serde_json::from_slice(&j.payload).unwrap();
    assert!(out.pointer("/user/id").is_none());
    assert!(out.pointer("/audience").is_none());
    assert_eq!(
        header(&j, headers::REMOVED),
        Some("/audience,/user/id,/user/eids")
    );
}

// ---------------------------------------------------------------------------
// The offline check
// ---------------------------------------------------------------------------

#[test]
fn every_input_line_yields_exactly_one_output_line() {
    let mut s = Synth::new(3, 10, 2, T0);
    s.malformed_every = 17;
    let mut input = Vec::new();
    for i in 0..6000 {
        input.extend_from_slice(&s.next(T0 + i * 100).1);
        input.push(b'\n');
    }
    input.extend_from_slice(b"\n   \nnot json at all\n{\"id\":1}\n");
    let lines = input.split(|&b| b == b'\n').count() - 1;
    let g = guard();
    let mut out = Vec::new();
    let mut alerts = Vec::new();
    let totals =
        fairgate::tools::check::run(&g, Cursor::new(&input), &mut out, Some(&mut alerts), None)
            .unwrap();
    let out_lines: Vec<&[u8]> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(out_lines.len(), lines);
    assert_eq!(totals.lines as usize, lines);
    assert_eq!(
        (totals.output + totals.blocked + totals.dead_letter) as usize,
        lines
    );
    let mut dead = 0;
    for (i, l) in out_lines.iter().enumerate() {
        let v: Value = serde_json::from_slice(l).unwrap_or_else(|e| panic!("line {i}: {e}"));
        match v["route"].as_str().unwrap() {
            "output" | "blocked" => assert!(v["value"].is_object()),
            "dead_letter" => {
                dead += 1;
                assert!(v["value"].is_string());
                assert!(v["headers"][headers::ERROR].is_string());
            }
            r => panic!("route {r}"),
        }
    }
    assert!(dead >= 6000 / 17 + 4);
    // The skewed campaigns were flagged, with one alert each.
    let alerts: Vec<Value> = alerts
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let flagged: Vec<&str> = alerts
        .iter()
        .filter(|a| a["new_state"] == "flagged")
        .map(|a| a["campaign"].as_str().unwrap())
        .collect();
    assert!(flagged.contains(&"cmp-skewed-01"), "{alerts:?}");
    assert!(
        flagged.iter().all(|c| c.starts_with("cmp-skewed")),
        "{flagged:?}"
    );
    let a = alerts
        .iter()
        .find(|a| a["campaign"] == "cmp-skewed-01")
        .unwrap();
    let message = a["message"].as_str().unwrap();
    assert!(
        message.contains("cmp-skewed-01") && message.contains("counted over the last 60 minutes"),
        "{message}"
    );
    assert!(a["numbers"][0]["groups"].as_array().unwrap().len() == 2);
    assert!(a["threshold"].is_number() && a["value"].is_number());
}

/// Synthetic traffic of two campaigns, one skewed, as JSON lines: 1000
/// decisions, 100 ms apart from `T0`.
fn synth_lines() -> Vec<Vec<u8>> {
    let mut s = Synth::new(3, 2, 1, T0);
    (0..1000).map(|i| s.next(T0 + i * 100).1).collect()
}

/// `fairgate check` over lines: the totals, each line's timing header, the
/// flagged campaigns, and the report.
fn check_lines(
    lines: &[Vec<u8>],
) -> (
    fairgate::tools::check::Totals,
    Vec<Option<String>>,
    Vec<String>,
    Value,
) {
    let g = guard();
    let input = lines.join(&b'\n');
    let (mut out, mut alerts) = (Vec::new(), Vec::new());
    let totals =
        fairgate::tools::check::run(&g, Cursor::new(&input), &mut out, Some(&mut alerts), None)
            .unwrap();
    let timing = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            v["headers"][headers::TIMING].as_str().map(str::to_string)
        })
        .collect();
    let flagged = alerts
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .filter(|a| a["new_state"] == "flagged")
        .map(|a| a["campaign"].as_str().unwrap().to_string())
        .collect();
    let report = serde_json::to_value(fairgate::tools::check::report(&g, totals.clone())).unwrap();
    (totals, timing, flagged, report)
}

/// One decision stamped at `ts` (raw JSON text, so any integer fits).
fn outlier(ts: &str) -> Vec<u8> {
    format!(r#"{{"id":"outlier","ts":{ts},"campaign":{{"id":"cmp-outlier"}},"regs":{{"gdpr":0}},"audience":{{"sex":"female"}}}}"#)
        .into_bytes()
}

/// One decision stamped far from the rest — first in the file or amid it,
/// far ahead, far behind, or at the ends of `i64` — moves neither the event
/// clock nor the windows: the skewed campaign is still flagged, the window
/// reported ends with the traffic, and only a decision ahead of it is early.
#[test]
fn one_outlying_ts_does_not_poison_event_time() {
    let normal = synth_lines();
    let clean = check_lines(&normal);
    assert_eq!((clean.0.late, clean.0.early), (0, 0));
    assert!(clean.2.contains(&"cmp-skewed-01".to_string()));
    let day = 86_400_000;
    for (ts, early, places) in [
        (i64::MAX.to_string(), true, &[0, 500][..]),
        ((T0 + day).to_string(), true, &[0, 500]),
        ("18446744073709551615".to_string(), false, &[0]),
        (i64::MIN.to_string(), false, &[0]),
        ("0".to_string(), false, &[0]),
        ((T0 - day).to_string(), false, &[0]),
    ] {
        for &at in places {
            let mut lines = normal.clone();
            lines.insert(at, outlier(&ts));
            let (totals, timing, flagged, report) = check_lines(&lines);
            assert!(
                flagged.contains(&"cmp-skewed-01".to_string()),
                "ts {ts} at line {at}: flagged {flagged:?}"
            );
            assert_eq!(totals.early, u64::from(early), "ts {ts} at line {at}");
            if early {
                assert_eq!(timing[at].as_deref(), Some("early"), "ts {ts} at line {at}");
            }
            let others_late = timing
                .iter()
                .enumerate()
                .filter(|&(i, t)| i != at && t.is_some())
                .count();
            assert_eq!(others_late, 0, "ts {ts} at line {at}: others late or early");
            let skewed = report["campaigns"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["campaign"] == "cmp-skewed-01")
                .unwrap();
            let end = skewed["window"]["end_ms"].as_i64().unwrap();
            assert!(
                (T0..=T0 + 700_000).contains(&end),
                "ts {ts} at line {at}: window ends at {end}"
            );
            assert_eq!(skewed["state"], "flagged", "ts {ts} at line {at}");
            // A campaign first seen by an early decision is seen at the clock,
            // not at its `ts`: it is forgotten when idle like any other.
            if early {
                let c = report["campaigns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["campaign"] == "cmp-outlier")
                    .unwrap();
                for k in ["first_seen_ms", "last_seen_ms"] {
                    let seen = c[k].as_i64().unwrap();
                    assert!(seen <= T0 + 1_000_000, "ts {ts} at line {at}: {k} {seen}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Windows and states
// ---------------------------------------------------------------------------

/// Feed `n` decisions for one campaign: group `sex`, selected with the given pattern.
fn feed(g: &Guard, campaign: &str, ts: i64, sex: &str, selected: bool) -> fairgate::Judgement {
    let d = json!({"id": "d", "ts": ts, "campaign": {"id": campaign}, "selected": selected,
                   "regs": {"gdpr": 0}, "audience": {"sex": sex}});
    g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(ts))
}

#[test]
fn no_verdict_below_minimum_counts() {
    let g = guard();
    // Wildly skewed, but only 100 decisions per group: below min_campaign_considered (300).
    let mut alerts = 0;
    for i in 0..140 {
        for j in [
            feed(&g, "small", T0 + i, "female", false),
            feed(&g, "small", T0 + i, "male", true),
        ] {
            alerts += j.alert.is_some() as usize;
            assert_eq!(
                header(&j, headers::FLAG),
                None,
                "an ok campaign carries no flag"
            );
        }
    }
    assert_eq!(alerts, 0);
    let r = g.campaign("small").unwrap();
    assert_eq!(r.state, State::Ok);
    assert_eq!(r.dimensions[0].selection_rate_ratio, None);
    // Past the minimum the same skew is flagged.
    for i in 140..400 {
        feed(&g, "small", T0 + i, "female", false);
        feed(&g, "small", T0 + i, "male", true);
    }
    let r = g.campaign("small").unwrap();
    assert_eq!(r.state, State::Flagged);
    // Every decision of a flagged campaign carries the flag, judged or not.
    for i in 400..416 {
        let j = feed(&g, "small", T0 + i, "male", true);
        assert!(
            header(&j, headers::FLAG).is_some_and(|f| f.contains("measure=")),
            "decision {i}"
        );
    }
    // The report's window ends with the bucket of the newest decision (1-minute buckets).
    let end = (T0 + 415).div_euclid(60_000) * 60_000 + 60_000;
    let w = serde_json::to_value(r.window).unwrap();
    assert_eq!(
        w,
        json!({"start_ms": end - 3_600_000, "end_ms": end, "secs": 3600})
    );
}

/// Drive one campaign to flagged, then hold its ratio's upper bound right at
/// the flag limit (0.8) for two hours of event time: female decisions are
/// selected while the bound is under the limit and not while it is over it, so
/// the bound crosses the limit again and again but never reaches the clear
/// limit. Returns (crossings of the flag limit, state changes after flagging).
fn hover(g: &Guard) -> (usize, usize) {
    let upper = |g: &Guard| {
        g.campaign("hover")
            .and_then(|r| r.dimensions[0].selection_rate_ratio_upper)
    };
    let state = |g: &Guard| g.campaign("hover").map(|r| r.state);
    let mut ts = T0;
    // Female selected at 30%, male at 50%: flagged once the minimums are met.
    for i in 0..2000 {
        ts += 1000;
        feed(g, "hover", ts, "male", i % 2 == 0);
        feed(g, "hover", ts, "female", i % 10 < 3);
        if state(g) == Some(State::Flagged) {
            break;
        }
    }
    assert_eq!(state(g), Some(State::Flagged), "the skew was never flagged");
    let (mut crossings, mut changes) = (0, 0);
    let mut below = true;
    let mut last = State::Flagged;
    for i in 0..7200 {
        ts += 1000;
        let u = upper(g).unwrap();
        assert!(
            u < 0.85,
            "bound {u} reached the clear limit: recovering would be right"
        );
        if (u < 0.8) != below {
            crossings += 1;
            below = u < 0.8;
        }
        feed(g, "hover", ts, "male", i % 2 == 0);
        feed(g, "hover", ts, "female", below);
        let now = state(g).unwrap();
        changes += (now != last) as usize;
        last = now;
    }
    (crossings, changes)
}

#[test]
fn a_campaign_hovering_at_the_threshold_does_not_flap() {
    let (crossings, changes) = hover(&guard());
    assert!(
        crossings >= 20,
        "the bound crossed the limit only {crossings} times"
    );
    assert_eq!(changes, 0, "flagged campaign changed state {changes} times");
    // The same traffic without the margin between the limits does flap: the
    // test above would catch hysteresis going missing.
    let (crossings, changes) = hover(&guard_with(|p| {
        p.replacen("clear_ratio = 0.85", "clear_ratio = 0.8", 1)
    }));
    assert!(crossings >= 20);
    assert!(changes >= 4, "without hysteresis: {changes} changes");
}

#[test]
fn late_and_early_decisions_do_not_corrupt_the_window() {
    let g = guard();
    for i in 0..200 {
        feed(&g, "c", T0 + i * 1000, "male", true);
    }
    let before = g.campaign("c").unwrap().dimensions[0].clone();
    // Two hours old: late. A day ahead of the clock: early.
    let late = json!({"id": "l", "ts": T0 - 7_200_000, "campaign": {"id": "c"}, "regs": {"gdpr": 0}, "audience": {"sex": "female"}});
    let j = g.judge(
        None,
        &serde_json::to_vec(&late).unwrap(),
        Now::At(T0 + 200_000),
    );
    assert_eq!(header(&j, headers::TIMING), Some("late"));
    let early = json!({"id": "e", "ts": T0 + 86_400_000, "campaign": {"id": "c"}, "regs": {"gdpr": 0}, "audience": {"sex": "female"}});
    let j = g.judge(
        None,
        &serde_json::to_vec(&early).unwrap(),
        Now::At(T0 + 200_000),
    );
    assert_eq!(header(&j, headers::TIMING), Some("early"));
    assert_eq!(j.route, Route::Output);
    assert_eq!(g.campaign("c").unwrap().dimensions[0], before);
    let c = &g.tracker().counters;
    assert_eq!(c.late.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(c.early.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn counts_leave_the_window_and_idle_campaigns_are_evicted() {
    let g = guard();
    for i in 0..100 {
        feed(&g, "old", T0 + i, "male", true);
    }
    assert_eq!(g.campaign("old").unwrap().dimensions[0].considered, 100);
    // 61 minutes later (window 60 min): counts gone.
    feed(&g, "other", T0 + 61 * 60_000, "male", true);
    assert_eq!(g.campaign("old").unwrap().dimensions[0].considered, 0);
    // Past idle_evict_secs (2 h): forgotten.
    feed(&g, "other", T0 + 130 * 60_000, "male", true);
    assert!(g.campaign("old").is_none());
    assert!(g.campaign("other").is_some());
}

#[test]
fn enforce_mode_blocks_severe_skew_and_special_categories_are_stricter() {
    let g = guard_with(|p| p.replace("mode = \"monitor\"", "mode = \"enforce\""));
    let mut last = None;
    for i in 0..600 {
        feed(&g, "sev", T0 + i, "female", i % 10 == 0);
        last = Some(feed(&g, "sev", T0 + i, "male", i % 2 == 0));
    }
    let j = last.unwrap();
    assert_eq!(j.route, Route::Blocked);
    assert_eq!(header(&j, headers::REASON), Some("campaign_blocked"));
    assert!(
        header(&j, headers::FLAG)
            .unwrap()
            .contains("selection_rate_ratio")
    );

    // Ratio 0.78, upper bound ~0.84: ok by default (0.8) but flagged for housing (0.85).
    let g = guard();
    for cat in ["default", "housing"] {
        for i in 0..4000 {
            let sel_f = i % 100 < 39;
            let sel_m = i % 2 == 0;
            for (sex, sel) in [("female", sel_f), ("male", sel_m)] {
                let d = json!({"id": "d", "ts": T0 + i, "campaign": {"id": cat, "category": cat}, "selected": sel,
                               "regs": {"gdpr": 0}, "audience": {"sex": sex}});
                g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(T0 + i));
            }
        }
    }
    assert_eq!(g.campaign("default").unwrap().state, State::Ok);
    assert_eq!(g.campaign("housing").unwrap().state, State::Flagged);
}

#[test]
fn share_distance_uses_the_policy_baseline_where_given() {
    let g = guard();
    // cmp-housing-1 has a 50/50 baseline; deliver 70/30.
    for i in 0..1000 {
        let sex = if i % 10 < 7 { "male" } else { "female" };
        let d = json!({"id": "d", "ts": T0 + i, "campaign": {"id": "cmp-housing-1", "category": "housing"},
                       "regs": {"gdpr": 0}, "audience": {"sex": sex}});
        g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(T0 + i));
    }
    let r = g.campaign("cmp-housing-1").unwrap();
    let sex = &r.dimensions[0];
    assert!((sex.share_distance.unwrap() - 0.2).abs() < 1e-9);
    assert_eq!(r.state, State::Flagged);
    assert_eq!(serde_json::to_value(sex.baseline).unwrap(), json!("policy"));
}

#[test]
fn overrides_decide_routing_and_are_audited() {
    let g = guard();
    feed(&g, "c", T0, "male", true);
    let a = g
        .override_campaign(
            "c",
            fairgate::fairness::campaign::OverrideAction::ForceBlock,
            "ana@example.com",
            "legal hold",
            T0,
        )
        .unwrap();
    assert_eq!(a.new_state, State::Blocked);
    assert!(a.message.contains("ana@example.com"));
    let j = feed(&g, "c", T0 + 1, "male", true);
    assert_eq!(j.route, Route::Blocked);
    g.override_campaign(
        "c",
        fairgate::fairness::campaign::OverrideAction::Clear,
        "ana@example.com",
        "released",
        T0,
    )
    .unwrap();
    assert_eq!(feed(&g, "c", T0 + 2, "male", true).route, Route::Output);
    assert!(
        g.override_campaign(
            "c",
            fairgate::fairness::campaign::OverrideAction::Acknowledge,
            "",
            "x",
            T0
        )
        .is_err()
    );
}

#[test]
fn windows_survive_a_reload_with_the_same_dimensions() {
    let g = guard();
    for i in 0..50 {
        feed(&g, "c", T0 + i, "male", true);
    }
    let s = g.swap_policy(
        CompiledPolicy::from_toml(
            &POLICY.replace("version = \"2026-11-23.1\"", "version = \"v2\""),
        )
        .unwrap(),
    );
    assert!(s.kept_windows);
    assert_eq!(g.campaign("c").unwrap().dimensions[0].considered, 50);
    let j = feed(&g, "c", T0 + 100, "male", true);
    assert_eq!(header(&j, headers::POLICY_VERSION), Some("v2"));
    let s = g.swap_policy(
        CompiledPolicy::from_toml(&POLICY.replace(
            "groups = [\"female\", \"male\"]",
            "groups = [\"female\", \"male\", \"other\"]",
        ))
        .unwrap(),
    );
    assert!(!s.kept_windows);
    assert_eq!(g.campaign("c").unwrap().dimensions[0].considered, 0);
}

/// The example policy with a third dimension banding `/user/yob`: ages
/// 0-34 and 35-130 (flat groups 8 and 9).
const YOB: &str = "[[fairness.dimensions]]\nname = \"age_from_yob\"\npointer = \"/user/yob\"\ntransform = \"age_from_year\"\ngroups = [\"under-35\", \"35-plus\"]\nbands = [{ group = \"under-35\", min = 0, max = 34 }, { group = \"35-plus\", min = 35, max = 130 }]\n\n";

fn banded(edit: impl Fn(&str) -> String) -> CompiledPolicy {
    let text = POLICY.replacen(
        "[fairness.limits.default]",
        &format!("{}[fairness.limits.default]", edit(YOB)),
        1,
    );
    CompiledPolicy::from_toml(&text).unwrap()
}

fn feed_yob(g: &Guard, ts: i64, yob: i64) {
    let d = json!({"id": "d", "ts": ts, "campaign": {"id": "c"}, "selected": true,
                   "regs": {"gdpr": 0}, "user": {"yob": yob}, "audience": {"sex": "male"}});
    g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(ts));
}

/// A reload that keeps the groups but maps the numbers to them otherwise
/// (other bands, or no transform) starts fresh windows, as a reload with
/// other groups does: counts made under the old mapping are not judged as
/// the new groups. The same bands keep the windows.
#[test]
fn a_reload_that_remaps_bands_starts_fresh_windows() {
    let cases = [
        ("same bands", banded(|y| y.to_string()), true),
        (
            "other cut",
            banded(|y| {
                y.replace("max = 34 }", "max = 29 }")
                    .replace("min = 35,", "min = 30,")
            }),
            false,
        ),
        (
            "bands swapped",
            banded(|y| {
                y.replace("group = \"under-35\", min = 0", "group = \"x\", min = 0")
                    .replace("group = \"35-plus\"", "group = \"under-35\"")
                    .replace("group = \"x\"", "group = \"35-plus\"")
            }),
            false,
        ),
        (
            "no transform",
            banded(|y| y.replace("transform = \"age_from_year\"\n", "")),
            false,
        ),
    ];
    for (what, next, keep) in cases {
        let g = Guard::new(banded(|y| y.to_string()));
        for i in 0..30 {
            feed_yob(&g, T0 + i, 1990);
        }
        let yob = |g: &Guard| g.campaign("c").unwrap().dimensions[2].clone();
        assert_eq!(yob(&g).groups[1].considered, 30, "{what}: 36 years old");
        assert_eq!(next.total_groups, 10, "{what}");
        let s = g.swap_policy(next);
        assert_eq!(s.kept_windows, keep, "{what}");
        let expect = if keep { 30 } else { 0 };
        assert_eq!(yob(&g).considered, expect, "{what}");
        assert_eq!(
            g.campaign("c").unwrap().dimensions[0].considered,
            expect,
            "{what}: every window"
        );
    }
}

/// A reload that changes the number of groups, racing the judge threads
/// (`state.shared = false`): the windows are resized first and the policy
/// published second, so a thread still holding the old policy records with
/// it. Nothing panics, and a campaign made at the old size is rebuilt at
/// the size of the policy it is next recorded under.
#[test]
fn a_reload_racing_the_judge_threads_never_panics() {
    use fairgate::fairness::tracker::Tracker;
    use fairgate::policy::Category;
    let p8 = CompiledPolicy::from_toml(POLICY).unwrap();
    // Two groups in all: sex only.
    let p2 = {
        let start = POLICY
            .find("[[fairness.dimensions]]\nname = \"age_band\"")
            .unwrap();
        let end = POLICY.find("# A dimension may also band").unwrap();
        CompiledPolicy::from_toml(&format!("{}{}", &POLICY[..start], &POLICY[end..])).unwrap()
    };
    assert_eq!((p2.total_groups, p8.total_groups), (2, 8));
    let rec = |t: &Tracker, p: &CompiledPolicy, id: &str, i: i64, groups: &[usize]| {
        t.record(p, id, Category::Default, T0 + i, groups, true, T0 + i);
    };

    // 2 -> 8 groups: a straggler with the old policy makes the campaign.
    let t = Tracker::new(&p2);
    t.reset_windows(&p8);
    rec(&t, &p2, "c", 0, &[1]);
    for i in 1..=20 {
        rec(&t, &p8, "c", i, &[0, 7]);
    }
    let r = t.report(&p8, "c").unwrap();
    assert_eq!(r.dimensions[1].groups[5].considered, 20, "65+");
    assert_eq!(r.dimensions[0].groups[0].considered, 20, "female");
    // Reported under the old policy, it does not panic either, and a
    // report does not rebuild (empty) the window.
    assert!(t.report(&p2, "c").is_some());
    assert_eq!(t.reports(&p2, None).len(), 1);
    let r = t.report(&p8, "c").unwrap();
    assert_eq!(r.dimensions[1].groups[5].considered, 20, "65+, still");

    // 8 -> 2 groups: a straggler with the old policy counts a group the
    // new windows do not have.
    let t = Tracker::new(&p8);
    rec(&t, &p8, "d", 0, &[0, 7]);
    t.reset_windows(&p2);
    rec(&t, &p8, "d", 1, &[0, 7]);
    rec(&t, &p8, "e", 1, &[1, 7]);
    for i in 2..=10 {
        rec(&t, &p2, "d", i, &[1]);
        rec(&t, &p2, "e", i, &[1]);
    }
    for id in ["d", "e"] {
        let r = t.report(&p2, id).unwrap();
        assert_eq!(r.dimensions.len(), 1);
        assert_eq!(r.dimensions[0].groups[1].considered, 9, "{id}: male");
        assert!(t.report(&p8, id).is_some());
    }
}

#[test]
fn consent_outcome_is_in_the_headers() {
    let g = guard();
    let d = json!({"id": "d", "ts": T0, "campaign": {"id": "c"}, "regs": {"gdpr": 0, "us_privacy": "1YYN"},
                   "user": {"id": "u"}, "device": {"ip": "203.0.113.17"}});
    let j = g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(T0));
    assert_eq!(
        header(&j, headers::CONSENT),
        Some(Outcome::Contextual.as_str())
    );
    assert_eq!(header(&j, headers::CONSENT_REASON), Some("usp_opt_out"));
    assert_eq!(header(&j, headers::COARSENED), Some("/device/ip"));
    let out: Value = serde_json::from_slice(&j.payload).unwrap();
    assert_eq!(out["device"]["ip"], "203.0.113.0");
}

// ---------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------

#[test]
fn policy_check_lists_every_problem_and_fails() {
    let dir = std::env::temp_dir().join(format!("fairgate-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        POLICY
            .replace("vendor_id = 755", "vendor_id = 0")
            .replace("window_secs = 3600", "window_secs = 3601")
            .replace(
                "shares = { female = 0.5, male = 0.5 }",
                "shares = { female = 0.5, male = 0.6 }",
            ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fairgate"))
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 problems"), "{err}");
    assert!(err.contains("consent.vendor_id"), "{err}");
    assert!(err.contains("fairness.window_secs"), "{err}");
    assert!(err.contains("fairness.baselines[0].shares"), "{err}");

    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_fairgate"))
        .args(["policy", "check", "config/policy.toml"])
        .output()
        .unwrap();
    assert!(ok.status.success());
}

#[test]
fn check_command_writes_lines_alerts_and_report() {
    let dir = std::env::temp_dir().join(format!("fairgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (alerts, report) = (dir.join("alerts.jsonl"), dir.join("report.json"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fairgate"))
        .args([
            "check",
            "--policy",
            "config/policy.toml",
            "--input",
            "examples/decisions.jsonl",
        ])
        .arg("--alerts")
        .arg(&alerts)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input_lines = std::fs::read("examples/decisions.jsonl")
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        input_lines
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let skewed = report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["campaign"] == "cmp-skewed-01")
        .unwrap();
    assert_eq!(skewed["state"], "flagged");
    let g = &skewed["dimensions"][0]["groups"][0];
    for k in ["considered", "selected", "selection_rate", "share"] {
        assert!(g[k].is_number(), "{k}: {g}");
    }
    assert!(skewed["dimensions"][0]["selection_rate_ratio"].is_number());
    assert!(skewed["dimensions"][0]["share_distance"].is_number());
    assert!(
        std::fs::read_to_string(&alerts)
            .unwrap()
            .contains("cmp-skewed-01")
    );
}

#[test]
fn a_record_the_guard_fails_on_is_dead_lettered_whole() {
    let g = guard();
    let bytes = br#"{"id":"dec-1","user":{"id":"u-secret"}}"#;
    let j = g.internal_error(Some(b"cmp-1"), bytes);
    assert_eq!(j.route, fairgate::Route::DeadLetter);
    assert_eq!(j.payload, bytes.to_vec(), "the original bytes are kept");
    assert_eq!(j.key.as_deref(), Some(&b"cmp-1"[..]));
    assert_eq!(header(&j, "fairgate-error-kind"), Some("internal_error"));
    let error = header(&j, "fairgate-error").unwrap();
    assert!(
        error.contains("bug") && !error.contains("u-secret"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------
// README's promises, one test each
// ---------------------------------------------------------------------------

/// A decision that personalises (no regime applies) with the given segment ids.
fn with_segments(ids: &[&str]) -> Vec<u8> {
    let segs: Vec<Value> = ids.iter().map(|s| json!({"id": s})).collect();
    serde_json::to_vec(
        &json!({"id": "d", "ts": T0, "campaign": {"id": "seg"}, "regs": {"gdpr": 0},
        "user": {"id": "u", "data": [{"id": "dmp", "segment": segs}]}}),
    )
    .unwrap()
}

#[test]
fn every_sensitive_pattern_family_is_removed_and_the_rest_kept() {
    let g = guard();
    let file: toml::Value = toml::from_str(POLICY).unwrap();
    let patterns: Vec<&str> = file["strip"]["segments"]["sensitive"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(patterns.len() >= 10);
    // Near misses of the patterns stay: a segment is removed only when it matches.
    let kept = [
        "sports",
        "auto-intender",
        "healthy-food",
        "my-health",
        "unionist",
    ];
    for p in &patterns {
        let id = p.replace('*', "x").replace('?', "y");
        let j = g.judge(
            None,
            &with_segments(&[kept[0], &id, kept[1], kept[2], kept[3], kept[4]]),
            Now::At(T0),
        );
        assert_eq!(header(&j, headers::CONSENT), Some("personalised"));
        let out: Value = serde_json::from_slice(&j.payload).unwrap();
        let ids: Vec<&str> = out["user"]["data"][0]["segment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, kept, "pattern {p}: segment {id}");
        assert_eq!(
            header(&j, headers::SEGMENTS_REMOVED),
            Some("1"),
            "pattern {p}"
        );
        assert_eq!(
            out["user"]["id"], "u",
            "personal fields stay when personalised"
        );
    }
    // Several at once are counted; none removed means no header.
    let j = g.judge(
        None,
        &with_segments(&["health-a", "sports", "religion-b", "union-c"]),
        Now::At(T0),
    );
    assert_eq!(header(&j, headers::SEGMENTS_REMOVED), Some("3"));
    let j = g.judge(None, &with_segments(&["sports"]), Now::At(T0));
    assert_eq!(header(&j, headers::SEGMENTS_REMOVED), None);
}

#[test]
fn numeric_fields_are_banded_and_labels_outside_groups_not_counted() {
    let g = guard_with(|p| {
        p + r#"
[[fairness.dimensions]]
name = "age_from_yob"
pointer = "/user/yob"
transform = "age_from_year"
groups = ["under-35", "35-plus"]
bands = [{ group = "under-35", min = 0, max = 34 }, { group = "35-plus", min = 35, max = 130 }]
"#
    });
    // T0 is in 2026: born 1992 is 34, born 1991 is 35; a string number is read too.
    for (yob, sex) in [
        (json!(1992), "female"),
        (json!(1991), "male"),
        (json!("1960"), "FEMALE"),
        (json!(1800), "other"),
        (json!("x"), " male"),
        (json!(2030), "female"),
        (json!(i64::MIN), "nobody"),
        (json!(i64::MAX), "nobody"),
    ] {
        let d = json!({"id": "d", "ts": T0, "campaign": {"id": "band"}, "regs": {"gdpr": 0},
                       "user": {"yob": yob}, "audience": {"sex": sex}});
        g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(T0));
    }
    let r = g.campaign("band").unwrap();
    let counts = |dim: usize| -> Vec<u64> {
        r.dimensions[dim]
            .groups
            .iter()
            .map(|g| g.considered)
            .collect()
    };
    // Only the exact labels "female" and "male" count (twice female, once male).
    assert_eq!(counts(0), vec![2, 1]);
    assert_eq!(r.dimensions[2].dimension, "age_from_yob");
    // 1992 → 34 (under 35); 1991 and "1960" → 35-plus; 1800 (226), "x", 2030
    // (−4) and the ends of i64 (an age that does not fit one) in no band.
    assert_eq!(counts(2), vec![1, 2]);
}

#[test]
fn the_platform_baseline_is_the_window_mix_of_considered_decisions() {
    let g = guard();
    // Campaign a: 600 female, 200 male considered; b: 200 and 200. The
    // platform mix is 800 : 400, so a's baseline is 2/3 female.
    for (campaign, female, male) in [("a", 600, 200), ("b", 200, 200)] {
        for i in 0..female {
            feed(&g, campaign, T0 + i, "female", i % 2 == 0);
        }
        for i in 0..male {
            feed(&g, campaign, T0 + i, "male", true);
        }
    }
    let r = g.campaign("a").unwrap();
    let sex = &r.dimensions[0];
    assert_eq!(
        serde_json::to_value(sex.baseline).unwrap(),
        json!("platform")
    );
    let base: Vec<f64> = sex
        .groups
        .iter()
        .map(|g| g.baseline_share.unwrap())
        .collect();
    assert!(
        (base[0] - 2.0 / 3.0).abs() < 1e-12 && (base[1] - 1.0 / 3.0).abs() < 1e-12,
        "{base:?}"
    );
    // a selected 300 female and 200 male: shares 0.6 / 0.4 against 2/3 / 1/3.
    let d = sex.share_distance.unwrap();
    assert!((d - (2.0 / 3.0 - 0.6)).abs() < 1e-12, "{d}");
}

#[test]
fn confidence_is_bonferroni_corrected_over_each_dimensions_groups() {
    let p = CompiledPolicy::from_toml(POLICY).unwrap();
    // confidence 0.95: sex has 2 groups → two-sided 1 − 0.05/2 = 97.5% → z 2.2414;
    // age_band has 6 → 1 − 0.05/6 → z 2.6383. Uncorrected it would be 1.96.
    let z: Vec<f64> = p.dimensions.iter().map(|d| d.z).collect();
    assert!((z[0] - 2.241_403).abs() < 1e-4, "{z:?}");
    assert!((z[1] - 2.638_257).abs() < 1e-4, "{z:?}");
}

#[test]
fn max_future_secs_is_the_last_millisecond_counted() {
    let g = guard();
    feed(&g, "f", T0, "male", true);
    let at = |ts: i64| {
        let d = json!({"id": "d", "ts": ts, "campaign": {"id": "f"}, "regs": {"gdpr": 0}, "audience": {"sex": "female"}});
        let j = g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(T0));
        header(&j, headers::TIMING).map(str::to_string)
    };
    // max_future_secs = 300: exactly 300 s ahead still counts, a millisecond more is early.
    assert_eq!(at(T0 + 300_000), None);
    assert_eq!(at(T0 + 300_001).as_deref(), Some("early"));
    assert_eq!(
        g.campaign("f").unwrap().dimensions[0].groups[0].considered,
        1
    );
}

#[test]
fn only_ok_campaigns_without_override_are_evicted() {
    let g = guard();
    assert!(g.tracker().is_empty());
    assert_eq!(g.tracker().len(), 0);
    // "skewed" is flagged, "kept" is ok with an override, "idle" is ok.
    for i in 0..400 {
        feed(&g, "skewed", T0 + i, "female", false);
        feed(&g, "skewed", T0 + i, "male", true);
    }
    assert_eq!(g.campaign("skewed").unwrap().state, State::Flagged);
    feed(&g, "kept", T0, "male", true);
    feed(&g, "idle", T0, "male", true);
    g.override_campaign(
        "kept",
        fairgate::fairness::campaign::OverrideAction::ForceAllow,
        "ops",
        "test",
        T0,
    )
    .unwrap();
    assert_eq!(g.tracker().len(), 3);
    assert!(!g.tracker().is_empty());
    // Past idle_evict_secs (2 h) of event time.
    feed(&g, "other", T0 + 130 * 60_000, "male", true);
    assert_eq!(g.tracker().len(), 3, "skewed, kept and other");
    assert!(g.campaign("idle").is_none());
    assert!(g.campaign("kept").is_some());
    assert!(g.campaign("skewed").is_some());
    let evicted = g
        .tracker()
        .counters
        .evicted
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(evicted, 1);
}

// ---------------------------------------------------------------------------
// Fuzzing: parsing and stripping
// ---------------------------------------------------------------------------

/// A JSON value of any shape, small.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(json!(SECRET)),
        Just(json!("health-diabetes")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z_]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a field the guard reads: usually the right type, often not.
fn typed_or_not(right: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop::option::weighted(0.85, prop_oneof![4 => right, 1 => arb_json()]).boxed()
}

/// A decision near the contract: every field the guard interprets, each
/// present or not, of the right type or any other; unknown fields of any shape.
fn arb_near_decision() -> impl Strategy<Value = Value> {
    let ts = prop_oneof![
        Just(json!(T0)),
        any::<i64>().prop_map(Value::from),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(0)),
    ];
    let regs = (
        typed_or_not(prop_oneof![
            Just(json!(0)),
            Just(json!(1)),
            any::<bool>().prop_map(Value::from)
        ]),
        typed_or_not(
            prop::sample::select(vec!["1YNN", "1YYN", "1---", "", "1Y"]).prop_map(Value::from),
        ),
        typed_or_not(prop::collection::vec(-3i64..30, 0..4).prop_map(Value::from)),
        typed_or_not("[A-Za-z0-9~._-]{0,40}".prop_map(Value::from)),
    )
        .prop_map(|(gdpr, usp, sid, gpp)| {
            let mut r = serde_json::Map::new();
            for (k, v) in [
                ("gdpr", gdpr),
                ("us_privacy", usp),
                ("gpp_sid", sid),
                ("gpp", gpp),
            ] {
                if let Some(v) = v {
                    r.insert(k.into(), v);
                }
            }
            Value::Object(r)
        });
    (
        typed_or_not("[a-z0-9-]{0,8}".prop_map(Value::from)),
        typed_or_not(ts),
        typed_or_not(
            (typed_or_not("[a-z0-9-]{0,300}".prop_map(Value::from)), typed_or_not(prop::sample::select(vec!["housing", "credit", "x"]).prop_map(Value::from)))
                .prop_map(|(id, cat)| json!({"id": id, "category": cat})),
        ),
        typed_or_not(any::<bool>().prop_map(Value::from)),
        typed_or_not(
            (arb_json(), arb_json(), typed_or_not("[A-Za-z0-9._-]{0,30}".prop_map(Value::from)))
                .prop_map(|(data, yob, consent)| json!({"id": SECRET, "data": data, "yob": yob, "consent": consent})),
        ),
        typed_or_not(regs),
        typed_or_not(arb_json()),
        arb_json(),
    )
        .prop_map(|(id, ts, campaign, selected, user, regs, device, extra)| {
            let mut d = serde_json::Map::new();
            for (k, v) in [
                ("id", id),
                ("ts", ts),
                ("campaign", campaign),
                ("selected", selected),
                ("user", user),
                ("regs", regs),
                ("device", device),
                ("ext", Some(extra)),
            ] {
                if let Some(v) = v {
                    d.insert(k.into(), v);
                }
            }
            Value::Object(d)
        })
}

/// Bytes from a near-decision, sometimes damaged: cut short, a byte
/// changed, a byte inserted, or a key repeated.
fn arb_near_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        arb_near_decision(),
        0..5u8,
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(d, how, at, b)| {
            let mut bytes = serde_json::to_vec(&d).unwrap();
            let i = at.index(bytes.len() + 1);
            match how {
                0 => bytes.truncate(i),
                1 if i < bytes.len() => bytes[i] = b,
                2 => bytes.insert(i, b),
                3 if bytes.len() > 1 => {
                    // `{"ts":1, ...` repeated at the front: a second value for a key.
                    bytes.splice(1..1, br#""ts":"x","user":7,"#.iter().copied());
                }
                _ => {}
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Whatever the bytes, the guard neither panics nor loses the record:
    /// one route; a dead letter keeps the original key and bytes and says
    /// what was wrong without quoting the input; a published record is a
    /// JSON object with the standard headers.
    #[test]
    fn any_near_decision_routes_once_and_never_panics(bytes in arb_near_bytes(), event_time in any::<bool>()) {
        thread_local! {
            static GUARD: Guard = guard();
        }
        let now = if event_time { Now::EventTime } else { Now::At(T0) };
        let j = GUARD.with(|g| g.judge(Some(b"orig"), &bytes, now));
        match j.route {
            Route::DeadLetter => {
                prop_assert_eq!(j.key.as_deref(), Some(&b"orig"[..]));
                prop_assert_eq!(&j.payload, &bytes);
                let error = header(&j, headers::ERROR).unwrap();
                prop_assert!(header(&j, headers::ERROR_KIND).is_some());
                prop_assert!(!error.contains(SECRET), "{}", error);
            }
            Route::Output | Route::Blocked => {
                let out: Value = serde_json::from_slice(&j.payload).unwrap();
                prop_assert!(out.is_object());
                prop_assert!(out.get("audience").is_none());
                for h in [headers::DECISION_ID, headers::POLICY_VERSION, headers::CONSENT, headers::CAMPAIGN_STATE] {
                    prop_assert!(header(&j, h).is_some(), "{} missing", h);
                }
                // The decision id names the decision and is published as it came.
                for (_, v) in j.headers.iter().filter(|(k, _)| *k != headers::DECISION_ID) {
                    prop_assert!(!v.contains(SECRET) && !v.contains("health-diabetes"), "{}", v);
                }
            }
        }
    }
}

/// Key comparison for the stripping oracle, written apart from the
/// product's: lower case, with the non-ASCII letters that fold onto ASCII.
fn oracle_key_eq(a: &str, b: &str) -> bool {
    let fold = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                'ı' | 'İ' => 'i',
                'ſ' => 's',
                'K' => 'k',
                c => c.to_ascii_lowercase(),
            })
            .collect()
    };
    fold(a) == fold(b)
}

/// Every value in `v` a pointer's tokens reach, every key spelling included.
fn oracle_reach<'a>(v: &'a Value, tokens: &[&str], out: &mut Vec<&'a Value>) {
    let Some((t, rest)) = tokens.split_first() else {
        out.push(v);
        return;
    };
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if oracle_key_eq(k, t) {
                    oracle_reach(x, rest, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(x) = t.parse::<usize>().ok().and_then(|i| a.get(i)) {
                oracle_reach(x, rest, out);
            }
        }
        _ => {}
    }
}

/// Every string in `v`, keys included.
fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k);
                all_strings(x, out);
            }
        }
        _ => {}
    }
}

/// A hostile sender's spelling of a key: random case, and the non-ASCII
/// letters that case-fold onto `i`, `s` and `k`.
fn spell_key(rng: &mut fastrand::Rng, k: &str) -> String {
    k.chars()
        .map(|c| match (c, rng.u8(..8)) {
            ('i', 0) => 'ı',
            ('i', 1) => 'İ',
            ('s', 0) => 'ſ',
            ('k', 0) => 'K',
            (c, 2..=4) => c.to_ascii_uppercase(),
            (c, _) => c,
        })
        .collect()
}

/// A spelling of a segment id: case, whitespace around it, other
/// separators; for sensitive ids also characters outside ASCII (zero-width,
/// lookalike, full-width), which make the id unverifiable.
fn spell_id(rng: &mut fastrand::Rng, id: &str, hostile: bool) -> String {
    const PAD: [&str; 6] = [" ", "\t", "\n", "\u{a0}", "\u{3000}", "\u{2003}"];
    const SEP: [&str; 6] = ["-", "_", " ", ".", "--", " - "];
    let mut s = String::new();
    for c in id.chars() {
        if c == '-' {
            s.push_str(SEP[rng.usize(..SEP.len())]);
        } else if rng.u8(..3) == 0 {
            s.push(c.to_ascii_uppercase());
        } else {
            s.push(c);
        }
    }
    if hostile && rng.u8(..3) == 0 {
        let at = s
            .char_indices()
            .map(|(i, _)| i)
            .nth(rng.usize(..s.chars().count()))
            .unwrap_or(0);
        let odd = ["\u{200b}", "\u{feff}", "\u{0435}", "\u{ff48}", "\u{ad}"][rng.usize(..5)];
        s.insert_str(at, odd);
    }
    for _ in 0..rng.usize(..3) {
        if rng.bool() {
            s.insert_str(0, PAD[rng.usize(..PAD.len())]);
        } else {
            s.push_str(PAD[rng.usize(..PAD.len())]);
        }
    }
    s
}

const FUZZ_SENSITIVE: [&str; 6] = [
    "health-diabetes",
    "religion-catholic",
    "lgbtq-plus",
    "union-member",
    "women-health-care",
    "race-x",
];
const FUZZ_PLAIN: [&str; 5] = [
    "sports",
    "auto-intender",
    "healthy-food",
    "my-health",
    "unionist",
];

/// What the stripping fuzz planted: the decision, the sensitive id
/// spellings, and the plain ids placed where the contract allows segments.
struct Planted {
    decision: Value,
    sensitive: Vec<String>,
    plain_well_formed: Vec<String>,
}

/// One segment entry: usually an object with an `id` (in some spelling),
/// sometimes another shape; sensitive or plain.
fn fuzz_segment(rng: &mut fastrand::Rng, p: &mut Planted, well_formed: bool) -> Value {
    let sensitive = rng.bool();
    let id = if sensitive {
        let base = FUZZ_SENSITIVE[rng.usize(..FUZZ_SENSITIVE.len())];
        let s = spell_id(rng, base, true);
        p.sensitive.push(s.clone());
        s
    } else {
        let base = FUZZ_PLAIN[rng.usize(..FUZZ_PLAIN.len())];
        let s = spell_id(rng, base, false);
        if well_formed {
            p.plain_well_formed.push(s.clone());
        }
        s
    };
    if well_formed {
        return json!({"id": id, "name": "n"});
    }
    match rng.u8(..6) {
        0 => json!({spell_key(rng, "id"): id}),
        1 => json!({"id": "sports", spell_key(rng, "id"): id}),
        2 => json!(id),
        3 => json!([id]),
        4 => json!({"id": [id]}),
        _ => json!({"name": id}),
    }
}

/// A `user.data` value of a random shape, with segments planted in it.
/// Plain ids count as well placed only inside the documented shape all the
/// way down: an array of objects, each with an array `segment` of objects.
fn fuzz_data(rng: &mut fastrand::Rng, p: &mut Planted) -> Value {
    let provider = |rng: &mut fastrand::Rng, p: &mut Planted, in_array: bool| -> Value {
        let well_formed = in_array && rng.u8(..3) > 0;
        let segs: Vec<Value> = (0..rng.usize(1..5))
            .map(|_| fuzz_segment(rng, p, well_formed))
            .collect();
        let key = if well_formed {
            "segment".to_string()
        } else {
            spell_key(rng, "segment")
        };
        match rng.u8(..5) {
            0 if !well_formed => json!({key: segs[0].clone()}),
            // A data entry that is not an object (a data object's own `id`
            // or `name` is not a segment id: only non-objects are planted).
            1 if !well_formed => json!(segs.iter().map(Value::to_string).collect::<String>()),
            _ => json!({"id": "dmp", key: segs}),
        }
    };
    match rng.u8(..6) {
        0 => provider(rng, p, false),
        1 => fuzz_segment(rng, p, false),
        2 => Value::Null,
        _ => Value::Array(
            (0..rng.usize(1..4))
                .map(|_| provider(rng, p, true))
                .collect(),
        ),
    }
}

/// A decision whose personal fields are spelled in several cases, each
/// holding the secret, with segments of random shapes.
fn fuzz_decision(seed: u64, personal: &[String], contextual: bool) -> Planted {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut p = Planted {
        decision: json!({"id": "d", "ts": T0, "campaign": {"id": "c"},
            "regs": {"gdpr": 0, "us_privacy": if contextual { "1YYN" } else { "1YNN" }}}),
        sensitive: Vec::new(),
        plain_well_formed: Vec::new(),
    };
    for ptr in personal.iter().map(String::as_str).chain(["/audience/sex"]) {
        for _ in 0..rng.usize(1..3) {
            let tokens: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
            let mut at = &mut p.decision;
            for (i, t) in tokens.iter().enumerate() {
                // The `user` object itself keeps its spelling: the guard
                // type-checks `user` and reads consent from it.
                let key = if i == 0 && *t == "user" && rng.bool() {
                    t.to_string()
                } else {
                    spell_key(&mut rng, t)
                };
                if !at.is_object() {
                    *at = json!({});
                }
                at = at
                    .as_object_mut()
                    .unwrap()
                    .entry(key)
                    .or_insert(Value::Null);
            }
            *at = json!(SECRET);
        }
    }
    let data = fuzz_data(&mut rng, &mut p);
    p.decision["user"]["data"] = data;
    p
}

/// Stripping, fuzzed: whatever the case of the keys and the shape of the
/// segments, no key a stripped pointer names (in any case) is left, no
/// sensitive segment id (in any spelling) is left anywhere, no secret
/// reaches a header, and plain segments in the documented shape stay when
/// consent allows personal data.
#[test]
fn no_spelling_or_shape_gets_past_stripping() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let policy = CompiledPolicy::from_toml(POLICY).unwrap();
    let personal: Vec<String> = policy
        .unless_personalised
        .iter()
        .map(|p| p.text.clone())
        .collect();
    let g = guard();
    let mut runner = TestRunner::new_with_rng(
        Config::with_cases(1500),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    runner
        .run(&(any::<u64>(), any::<bool>()), |(seed, contextual)| {
            let p = fuzz_decision(seed, &personal, contextual);
            let j = g.judge(None, &serde_json::to_vec(&p.decision).unwrap(), Now::At(T0));
            prop_assert_ne!(j.route, Route::DeadLetter);
            let outcome = j.facts.consent.unwrap().outcome;
            prop_assert_eq!(outcome == Outcome::Contextual, contextual);
            let out: Value = serde_json::from_slice(&j.payload).unwrap();
            let stripped = policy.always.iter().chain(if contextual {
                &policy.unless_personalised[..]
            } else {
                &[]
            });
            for ptr in stripped {
                let tokens: Vec<&str> = ptr.tokens.iter().map(String::as_str).collect();
                let mut left = Vec::new();
                oracle_reach(&out, &tokens, &mut left);
                prop_assert!(left.is_empty(), "{} left: {}", ptr.text, out);
            }
            let mut strings = Vec::new();
            all_strings(&out, &mut strings);
            for s in &p.sensitive {
                prop_assert!(
                    !strings.contains(&s.as_str()),
                    "segment {:?} left: {}",
                    s,
                    out
                );
            }
            if contextual {
                prop_assert!(!strings.contains(&SECRET), "secret left: {}", out);
            } else {
                for s in &p.plain_well_formed {
                    prop_assert!(
                        strings.contains(&s.as_str()),
                        "plain segment {:?} removed: {}",
                        s,
                        out
                    );
                }
            }
            for (_, v) in &j.headers {
                prop_assert!(!v.contains(SECRET));
                for s in &p.sensitive {
                    prop_assert!(!v.contains(s.as_str()));
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Any accepted window shape with the extremes of its ranges, and any `i64`
/// times (decision and clock), through the tracker: nothing overflows or
/// panics, and the window reported is `window_secs` long and never inverted.
#[test]
fn any_accepted_policy_and_any_times_never_overflow() {
    use fairgate::fairness::tracker::Tracker;
    use fairgate::policy::Category;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let extreme = prop_oneof![
        Just(i64::MIN),
        Just(i64::MIN + 1),
        Just(-1i64),
        Just(0i64),
        Just(T0),
        Just(i64::MAX - 1),
        Just(i64::MAX),
        any::<i64>(),
        (T0 - 10_000_000..T0 + 10_000_000),
    ];
    let shape = (
        prop::sample::select(vec![1u64, 7, 60, 1800, 86_400]),
        1u64..=1440,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_filter_map("window in range", |(bucket, n, fut, idle)| {
            let window = bucket * n;
            if !(60..=2_592_000).contains(&window) {
                return None;
            }
            let future = fut.index((window / 2).min(3600) as usize + 1) as u64;
            let idle = window + idle.index((7_776_000 - window) as usize + 1) as u64;
            Some((window, bucket, future, idle))
        });
    let steps = prop::collection::vec(
        (
            0..3usize,
            extreme.clone(),
            extreme,
            any::<bool>(),
            0..2usize,
        ),
        1..40,
    );
    let mut runner = TestRunner::new_with_rng(
        Config::with_cases(300),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    runner
        .run(
            &(shape, steps),
            |((window, bucket, future, idle), steps)| {
                let text = POLICY
                    .replacen("window_secs = 3600", &format!("window_secs = {window}"), 1)
                    .replacen("bucket_secs = 60", &format!("bucket_secs = {bucket}"), 1)
                    .replacen(
                        "max_future_secs = 300",
                        &format!("max_future_secs = {future}"),
                        1,
                    )
                    .replacen(
                        "idle_evict_secs = 7200",
                        &format!("idle_evict_secs = {idle}"),
                        1,
                    )
                    .replacen(
                        "min_campaign_considered = 300",
                        "min_campaign_considered = 2",
                        1,
                    )
                    .replacen(
                        "min_campaign_selected = 300",
                        "min_campaign_selected = 1",
                        1,
                    )
                    .replacen("min_group_considered = 50", "min_group_considered = 1", 1);
                let policy = CompiledPolicy::from_toml(&text).unwrap();
                let t = Tracker::new(&policy);
                for (c, ts, now, selected, group) in steps {
                    let id = ["a", "b", "c"][c];
                    t.record(&policy, id, Category::Default, ts, &[group], selected, now);
                }
                for r in t.reports(&policy, None) {
                    prop_assert!(r.window.start_ms <= r.window.end_ms);
                    prop_assert!(r.window.end_ms - r.window.start_ms <= window as i64 * 1000);
                    prop_assert_eq!(r.window.secs, window as i64);
                }
                Ok(())
            },
        )
        .unwrap();
}

/// The metrics' and the demo's list of flagged and blocked campaigns is the
/// worst first, then by id, and never longer than asked, however many
/// campaigns there are; a page walks the campaigns by id and its `total`
/// and `next` say what is left.
#[test]
fn worst_campaigns_and_pages_are_bounded_and_ordered() {
    use fairgate::fairness::campaign::OverrideAction;
    use fairgate::fairness::tracker::{Filter, Tracker};
    use fairgate::policy::Category;
    let policy = CompiledPolicy::from_toml(POLICY).unwrap();
    let t = Tracker::new(&policy);
    for i in 0..500 {
        t.record(
            &policy,
            &format!("c{i:03}"),
            Category::Default,
            1_000,
            &[0],
            true,
            1_000,
        );
    }
    for (id, action) in [
        ("c400", OverrideAction::ForceBlock),
        ("c010", OverrideAction::ForceBlock),
        ("c300", OverrideAction::ForceBlock),
    ] {
        t.apply_override(&policy, id, action, "ana", "test", 1_000)
            .unwrap();
    }
    let worst = t.non_ok(2);
    assert_eq!(
        worst,
        vec![
            ("c010".to_string(), State::Blocked),
            ("c300".to_string(), State::Blocked)
        ]
    );
    assert_eq!(t.non_ok(0), vec![]);
    assert_eq!(t.non_ok(10).len(), 3);

    let all = Filter::default();
    let first = t.page(&policy, &all, None, 7);
    let ids: Vec<&str> = first
        .campaigns
        .iter()
        .map(|c| c.campaign.as_str())
        .collect();
    assert_eq!(
        ids,
        ["c000", "c001", "c002", "c003", "c004", "c005", "c006"]
    );
    assert_eq!((first.total, first.next.as_deref()), (500, Some("c006")));
    let last = t.page(&policy, &all, Some("c495"), 7);
    let ids: Vec<&str> = last.campaigns.iter().map(|c| c.campaign.as_str()).collect();
    assert_eq!(ids, ["c496", "c497", "c498", "c499"]);
    assert_eq!(last.next, None);
    let blocked = Filter {
        state: Some(State::Blocked),
        prefix: Some("c3".into()),
    };
    let page = t.page(&policy, &blocked, None, 100);
    assert_eq!(page.total, 1);
    assert_eq!(page.campaigns[0].campaign, "c300");
}
