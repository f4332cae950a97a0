//! `fairgate diff` without a broker: its counts against two `check` runs
//! compared line by line, a candidate that changes nothing, a stricter
//! housing limit, reproducible reports, broken lines, an invalid candidate,
//! and nothing from the input but ids in the reports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use fairgate::tools::diff::{self, DiffReport};
use fairgate::tools::synth::Synth;
use fairgate::{CompiledPolicy, Guard};
use serde_json::{Value, json};

const POLICY: &str = include_str!("../config/policy.toml");
const T0: i64 = 1_795_000_000_000;

/// A policy's text: the shipped one, edited.
fn policy(edit: impl Fn(String) -> String) -> String {
    let text = edit(POLICY.to_string());
    CompiledPolicy::from_toml(&text).unwrap();
    text
}

fn guard(text: &str) -> Guard {
    Guard::new(CompiledPolicy::from_toml(text).unwrap())
}

fn synth_input(count: u64, malformed_every: u64) -> Vec<u8> {
    let mut s = Synth::new(3, 12, 2, T0);
    s.malformed_every = malformed_every;
    let mut out = Vec::new();
    for i in 0..count {
        out.extend_from_slice(&s.next(T0 + i as i64 * 50).1);
        out.push(b'\n');
    }
    out
}

fn run_diff(current: &str, candidate: &str, input: &[u8], now_ms: Option<i64>) -> DiffReport {
    diff::run(
        &guard(current),
        &guard(candidate),
        Cursor::new(input),
        now_ms,
        3,
    )
    .unwrap()
}

fn as_json(r: &DiffReport) -> Value {
    serde_json::from_slice(&diff::to_json(r)).unwrap()
}

fn kind<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == name)
        .unwrap_or_else(|| panic!("no kind {name}"))
}

/// `fairgate check` over `input` under `p`: one JSON value per line.
fn check_lines(p: &str, input: &[u8]) -> Vec<Value> {
    let g = guard(p);
    let mut out = Vec::new();
    fairgate::tools::check::run(&g, Cursor::new(input), &mut out, None, None).unwrap();
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn required_purpose_added(p: String) -> String {
    p.replace(
        "required_purposes = [1, 3, 4]",
        "required_purposes = [1, 2, 3, 4]",
    )
    .replace("version = \"2026-11-23.1\"", "version = \"candidate\"")
}

#[test]
fn an_added_purpose_is_counted_as_two_check_runs_compared_line_by_line() {
    let input = synth_input(6_000, 397);
    let (cur, cand) = (policy(|p| p), policy(required_purpose_added));
    let report = as_json(&run_diff(&cur, &cand, &input, None));
    let (a, b) = (check_lines(&cur, &input), check_lines(&cand, &input));
    assert_eq!(a.len(), b.len());

    let kinds = [
        ("route", None),
        ("consent", Some("fairgate-consent")),
        ("consent_reason", Some("fairgate-consent-reason")),
        ("removed", Some("fairgate-removed")),
        ("coarsened", Some("fairgate-coarsened")),
        ("segments_removed", Some("fairgate-segments-removed")),
        ("campaign_state", Some("fairgate-campaign-state")),
    ];
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut examples: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let (mut changed, mut published, mut dead) = (0u64, 0u64, 0u64);
    let (mut out_a, mut out_b) = (0i64, 0i64);
    for (x, y) in a.iter().zip(&b) {
        out_a += i64::from(x["route"] == "output");
        out_b += i64::from(y["route"] == "output");
        if x["route"] != y["route"] || x["value"] != y["value"] {
            published += 1;
        }
        if x["route"] == "dead_letter" {
            assert_eq!(
                y["route"], "dead_letter",
                "a broken line is broken under both"
            );
            dead += 1;
            continue;
        }
        let mut any = false;
        for (name, h) in kinds {
            let differs = match h {
                None => x["route"] != y["route"],
                Some(h) => x["headers"][h] != y["headers"][h],
            };
            if differs {
                any = true;
                *counts.entry(name).or_default() += 1;
                let ex = examples.entry(name).or_default();
                if ex.len() < 3 {
                    ex.push(
                        x["headers"]["fairgate-decision-id"]
                            .as_str()
                            .unwrap()
                            .into(),
                    );
                }
            }
        }
        changed += u64::from(any);
    }
    assert!(counts["consent"] > 100, "the candidate changes something");
    for (name, _) in kinds {
        let k = kind(&report, name);
        assert_eq!(
            k["count"].as_u64().unwrap(),
            counts.get(name).copied().unwrap_or(0),
            "{name}"
        );
        let ex: Vec<String> = serde_json::from_value(k["examples"].clone()).unwrap();
        assert_eq!(
            ex,
            examples.get(name).cloned().unwrap_or_default(),
            "{name}"
        );
    }
    let t = &report["totals"];
    assert_eq!(t["changed"], changed);
    assert_eq!(t["published_differs"], published);
    assert_eq!(t["lines"], 6_000);
    assert_eq!(
        t["dead_letter"],
        json!({"current": dead, "candidate": dead})
    );
    assert_eq!(dead, 6_000 / 397, "every broken line counted under both");
    assert_eq!(
        t["output"],
        json!({"current": out_a, "candidate": out_b, "difference": out_b - out_a})
    );
}

#[test]
fn a_candidate_that_changes_nothing_reports_no_change() {
    let input = synth_input(3_000, 0);
    let cand = policy(|p| p.replace("version = \"2026-11-23.1\"", "version = \"same\""));
    let report = as_json(&run_diff(&policy(|p| p), &cand, &input, None));
    for k in report["changes"].as_array().unwrap() {
        assert_eq!(k["count"], 0, "{k}");
        assert_eq!(k["examples"], json!([]), "{k}");
    }
    let t = &report["totals"];
    assert_eq!(t["changed"], 0);
    assert_eq!(t["published_differs"], 0);
    assert_eq!(t["flips"], 0);
    assert_eq!(t["output"]["difference"], 0);
    assert_eq!(t["alerts"]["current"], t["alerts"]["candidate"]);
    for c in report["campaigns"].as_array().unwrap() {
        assert_eq!(c["current"], c["candidate"], "{}", c["campaign"]);
        assert_eq!(c["divergences"], json!([]));
    }
}

/// Decisions of four campaigns whose selection rate for men is `ratio`
/// times that for women: housing at 1.0, 0.8 and 0.5, and an uncategorised
/// one at 0.8.
fn skewed_input() -> Vec<u8> {
    let campaigns = [
        ("h-even", Some("housing"), 1.0),
        ("h-mid", Some("housing"), 0.8),
        ("h-far", Some("housing"), 0.5),
        ("d-mid", None, 0.8),
    ];
    let ages = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
    let mut rng = fastrand::Rng::with_seed(11);
    let mut out = Vec::new();
    for i in 0..40_000i64 {
        let (id, category, ratio) = campaigns[(i % 4) as usize];
        let sex = if rng.bool() { "female" } else { "male" };
        let p = if sex == "female" { 0.5 } else { 0.5 * ratio };
        let mut d = json!({
            "id": format!("dec-{i:06}"),
            "ts": T0 + i * 75,
            "campaign": {"id": id},
            "selected": rng.f64() < p,
            "regs": {"gdpr": 0, "coppa": 0},
            "audience": {"sex": sex, "age_band": ages[rng.usize(0..ages.len())]},
        });
        if let Some(c) = category {
            d["campaign"]["category"] = json!(c);
        }
        out.extend_from_slice(&serde_json::to_vec(&d).unwrap());
        out.push(b'\n');
    }
    out
}

#[test]
fn a_stricter_housing_limit_flips_exactly_the_campaigns_between_the_two_limits() {
    let housing = |flag: f64, clear: f64| {
        move |p: String| {
            let shipped = "[fairness.limits.housing]\nflag_ratio = 0.85\nclear_ratio = 0.9\n";
            assert!(p.contains(shipped));
            p.replace(
                shipped,
                &format!("[fairness.limits.housing]\nflag_ratio = {flag}\nclear_ratio = {clear}\n"),
            )
        }
    };
    let (low, high) = (0.7, 0.95);
    let report = as_json(&run_diff(
        &policy(housing(low, 0.75)),
        &policy(housing(high, 0.97)),
        &skewed_input(),
        None,
    ));
    let mut between = BTreeSet::new();
    let mut flipped = BTreeSet::new();
    for c in report["campaigns"].as_array().unwrap() {
        let id = c["campaign"].as_str().unwrap().to_string();
        // The measure judged: the lowest ratio's upper bound over the dimensions.
        let measure = c["current"]["measures"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["selection_rate_ratio_upper"].as_f64())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(
            c["candidate"]["measures"], c["current"]["measures"],
            "same counts under both"
        );
        if c["category"] == "housing" && (low..high).contains(&measure) {
            between.insert(id.clone());
        }
        if !c["flip"].is_null() {
            assert_eq!(c["flip"]["from"], "ok");
            assert_eq!(c["flip"]["to"], "flagged");
            assert!(c["flip"]["since_ts_ms"].as_i64().unwrap() >= T0);
            flipped.insert(id);
        }
    }
    assert_eq!(flipped, between);
    let summary: Vec<String> = report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["campaign"], c["current"], c["candidate"]["state"]
            )
        })
        .collect();
    assert!(flipped.contains("h-mid"), "{flipped:?} {summary:#?}");
    assert!(!flipped.contains("d-mid") && !flipped.contains("h-far"));
    assert_eq!(report["totals"]["flips"], flipped.len());
    assert!(kind(&report, "campaign_state")["count"].as_u64().unwrap() > 0);
}

#[test]
fn reports_are_byte_identical_across_runs() {
    let input = synth_input(3_000, 101);
    let (cur, cand) = (policy(|p| p), policy(required_purpose_added));
    let (r1, r2) = (
        run_diff(&cur, &cand, &input, None),
        run_diff(&cur, &cand, &input, None),
    );
    assert_eq!(diff::to_json(&r1), diff::to_json(&r2));
    assert_eq!(diff::to_html(&r1), diff::to_html(&r2));
    let fixed = run_diff(&cur, &cand, &input, Some(T0 + 60_000));
    assert_eq!(
        diff::to_json(&fixed),
        diff::to_json(&run_diff(&cur, &cand, &input, Some(T0 + 60_000)))
    );
    assert_eq!(fixed.now_ms, Some(T0 + 60_000));
}

#[test]
fn nothing_but_ids_from_the_input_reaches_the_reports() {
    let input = synth_input(2_000, 0);
    let mut secrets = Vec::new();
    for l in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(l).unwrap();
        secrets.push(v["user"]["id"].as_str().unwrap().to_string());
        secrets.push(v["device"]["ifa"].as_str().unwrap().to_string());
        secrets.push(v["device"]["ip"].as_str().unwrap().to_string());
    }
    let r = run_diff(
        &policy(|p| p),
        &policy(required_purpose_added),
        &input,
        None,
    );
    let (j, h) = (
        String::from_utf8(diff::to_json(&r)).unwrap(),
        diff::to_html(&r),
    );
    for s in &secrets {
        assert!(!j.contains(s.as_str()) && !h.contains(s.as_str()), "{s}");
    }
    // Ids are escaped in the page.
    let hostile = br#"{"id":"<script>x</script>","ts":1795000000000,"campaign":{"id":"c<b>"},"regs":{"gdpr":1},"user":{"consent":"x"}}"#;
    let stricter =
        policy(|p| p.replace("no_consent = \"contextual\"", "no_consent = \"withheld\""));
    let r = run_diff(&policy(|p| p), &stricter, hostile, None);
    assert_eq!(r.totals.blocked.difference, 1);
    let h = diff::to_html(&r);
    assert!(h.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(!h.contains("<script>") && !h.contains("c<b>"));
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fairgate-diff-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_command_reads_standard_input_and_writes_both_reports() {
    let dir = temp_dir("cmd");
    let cand = dir.join("candidate.toml");
    std::fs::write(&cand, required_purpose_added(POLICY.to_string())).unwrap();
    let input = synth_input(500, 50);
    let (json_path, html_path) = (dir.join("diff.json"), dir.join("diff.html"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fairgate"))
        .args(["diff", "--policy", "config/policy.toml", "--input", "-"])
        .arg("--candidate")
        .arg(&cand)
        .arg("--json")
        .arg(&json_path)
        .arg("--html")
        .arg(&html_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read(&json_path).unwrap();
    // Example ids per kind: 10 unless told.
    let expected = diff::run(
        &guard(&policy(|p| p)),
        &guard(&policy(required_purpose_added)),
        Cursor::new(&input),
        None,
        10,
    )
    .unwrap();
    assert_eq!(written, diff::to_json(&expected));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "no external assets: {external}");
    }
}

#[test]
fn an_invalid_candidate_is_refused_with_every_error_listed() {
    let dir = temp_dir("bad");
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
    let json_path = dir.join("never.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fairgate"))
        .args([
            "diff",
            "--policy",
            "config/policy.toml",
            "--input",
            "examples/decisions.jsonl",
        ])
        .arg("--candidate")
        .arg(&bad)
        .arg("--json")
        .arg(&json_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("candidate"), "{err}");
    assert!(err.contains("3 problems"), "{err}");
    assert!(err.contains("consent.vendor_id"), "{err}");
    assert!(err.contains("fairness.window_secs"), "{err}");
    assert!(err.contains("fairness.baselines[0].shares"), "{err}");
    assert!(!json_path.exists(), "no report from an invalid candidate");
}

// ---------------------------------------------------------------------------
// The shadow policy, live
// ---------------------------------------------------------------------------

use std::sync::Arc;

use fairgate::clock::ManualClock;
use fairgate::core::shadow::Shadow;
use fairgate::kafka::pipeline::{GuardStage, Input, Stage};
use fairgate::metrics::Metrics;

/// The records a guard stage publishes for `input`, and its metrics.
fn through_stage(input: &[u8], now_ms: i64, shadow: Option<&str>) -> (Vec<String>, Metrics) {
    let metrics = Metrics::new(prometheus::Registry::new(), 10);
    let mut stage = GuardStage::new(
        Arc::new(guard(&policy(|p| p))),
        metrics.clone(),
        Arc::new(ManualClock::new(now_ms)),
        None,
    );
    if let Some(text) = shadow {
        let s = Arc::new(Shadow::new());
        s.set(Some(CompiledPolicy::from_toml(text).unwrap()));
        stage = stage.with_shadow(s);
    }
    let mut published = Vec::new();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        if i > 0 && line.is_empty() {
            continue;
        }
        for p in stage.process(Input {
            partition: 0,
            offset: i as i64,
            key: Some(b"k".to_vec()),
            payload: line.to_vec(),
            headers: Vec::new(),
        }) {
            let o = p.out;
            published.push(format!(
                "{:?} {:?} {:?} {}",
                o.role,
                o.key,
                o.headers,
                String::from_utf8_lossy(&o.payload)
            ));
        }
    }
    (published, metrics)
}

#[test]
fn the_shadow_publishes_nothing_new_and_counts_what_diff_counts() {
    let input = synth_input(3_000, 97);
    let now = T0 + 3_000 * 50;
    let candidate = policy(required_purpose_added);
    let (off, _) = through_stage(&input, now, None);
    let (on, metrics) = through_stage(&input, now, Some(&candidate));
    assert_eq!(
        on, off,
        "the published records are the same, shadow on or off"
    );

    let report = run_diff(&policy(|p| p), &candidate, &input, Some(now));
    let s = &metrics.shadow;
    assert_eq!(s.decisions.get(), report.totals.lines);
    for k in &report.changes {
        assert_eq!(
            s.changes.with_label_values(&[k.kind.as_str()]).get(),
            k.count,
            "{}",
            k.kind.as_str()
        );
    }
    assert!(
        report.changes[1].count > 100,
        "the candidate changes something"
    );
    assert_eq!(s.changed.get(), report.totals.changed);
    assert_eq!(s.published_differs.get(), report.totals.published_differs);
    assert_eq!(
        s.routes.with_label_values(&["output"]).get(),
        report.totals.output.candidate
    );
    assert_eq!(
        s.routes.with_label_values(&["dead_letter"]).get(),
        report.totals.dead_letter.candidate
    );
}

#[test]
fn shadow_is_turned_on_and_off_by_a_reload() {
    let dir = temp_dir("shadow");
    let (live, shadow) = (dir.join("policy.toml"), dir.join("policy.shadow.toml"));
    std::fs::write(&live, POLICY).unwrap();
    let _ = std::fs::remove_file(&shadow);
    let (app, _alerts) = fairgate::service::App::new(
        Arc::new(guard(POLICY)),
        Metrics::new(prometheus::Registry::new(), 10),
        Arc::new(ManualClock::new(T0)),
        Some(live.clone()),
        None,
    );
    app.set_shadow_path(shadow.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info = |app: &fairgate::service::App| {
        let text = {
            use prometheus::Encoder;
            let mut buf = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&app.metrics.registry.gather(), &mut buf)
                .unwrap();
            String::from_utf8(buf).unwrap()
        };
        text.lines()
            .filter(|l| l.starts_with("fairgate_shadow_policy_info{"))
            .map(String::from)
            .collect::<Vec<_>>()
    };

    let r = rt.block_on(app.reload_policy("test")).unwrap();
    assert_eq!(r.shadow.unwrap().result, "off");
    assert_eq!(app.shadow.version(), None);

    std::fs::write(&shadow, required_purpose_added(POLICY.to_string())).unwrap();
    let r = rt.block_on(app.reload_policy("test")).unwrap();
    let s = r.shadow.unwrap();
    assert_eq!(
        (s.result, s.version.as_deref()),
        ("applied", Some("candidate"))
    );
    assert_eq!(
        info(&app),
        ["fairgate_shadow_policy_info{version=\"candidate\"} 1"]
    );

    // An invalid shadow is refused, every problem listed; the running one stays.
    std::fs::write(
        &shadow,
        POLICY
            .replace("vendor_id = 755", "vendor_id = 0")
            .replace("window_secs = 3600", "window_secs = 3601"),
    )
    .unwrap();
    let err = rt.block_on(app.reload_shadow("test")).unwrap_err();
    assert_eq!(err.issues().len(), 2, "{err}");
    assert_eq!(app.shadow.version().as_deref(), Some("candidate"));
    let r = rt.block_on(app.reload_policy("test")).unwrap();
    assert_eq!(r.shadow.unwrap().result, "rejected");
    assert_eq!(
        app.metrics
            .shadow
            .reloads
            .with_label_values(&["rejected"])
            .get(),
        2
    );

    std::fs::remove_file(&shadow).unwrap();
    let r = rt.block_on(app.reload_policy("test")).unwrap();
    assert_eq!(r.shadow.unwrap().result, "off");
    assert_eq!(app.shadow.version(), None);
    assert!(info(&app).is_empty());
}

/// The shadow's shortcuts (the live verdict reused under the same consent
/// rules, the live stripped record under the same strip rules) give, record
/// by record, what judging in full and [`compare`] give, and the same
/// campaign states: for candidates that change nothing, consent, its
/// fallback, stripping, segments, or the fairness limits.
#[test]
fn the_shadow_s_shortcuts_count_what_a_full_judgement_counts() {
    use fairgate::core::diff::compare;
    use fairgate::core::guard::Now;
    let mut input = synth_input(3_000, 97);
    input.extend_from_slice(&skewed_input()[..400_000]);
    let mut long = synth_input(3_000, 97);
    long.extend_from_slice(&skewed_input());
    let candidates = [
        policy(|p| p.replace("version = \"2026-11-23.1\"", "version = \"same\"")),
        policy(required_purpose_added),
        policy(|p| p.replace("no_consent = \"contextual\"", "no_consent = \"withheld\"")),
        policy(|p| {
            p.replace(
                "always = [\"/audience\"]",
                "always = [\"/audience\", \"/ad\"]",
            )
        }),
        policy(|p| p.replace("\"religion-*\",", "\"religion-*\", \"auto-*\",")),
        policy(|p| {
            required_purpose_added(p)
                .replace("flag_ratio = 0.8          #", "flag_ratio = 0.95 #")
                .replace("clear_ratio = 0.85", "clear_ratio = 0.97")
        }),
    ];
    let cur = policy(|p| p);
    for (ci, cand) in candidates.iter().enumerate() {
        assert_ne!(cand, &cur, "candidate {ci} is an edit");
        let live = guard(&cur);
        let full = guard(cand);
        let shadow = Shadow::new();
        shadow.set(Some(CompiledPolicy::from_toml(cand).unwrap()));
        let (mut changed, mut states) = (0, 0);
        // The stricter limit needs the whole skewed traffic to flip a campaign.
        let input = if ci == 5 { &long } else { &input };
        for (i, line) in input.split(|&b| b == b'\n').enumerate() {
            let now = Now::At(T0 + 30 * 60_000 + i as i64);
            let read = fairgate::core::decision::Decision::parse(line);
            let lj = live.judge_read(None, line, &read, now);
            let fj = full.judge_read(None, line, &read, now);
            let s = shadow.judge(&live, &lj, None, line, &read, now).unwrap();
            assert_eq!(s.compared, compare(&lj, &fj), "candidate {ci}, line {i}");
            assert_eq!(s.route, fj.route, "candidate {ci}, line {i}");
            changed += usize::from(s.compared.changed());
            states += usize::from(s.compared.kinds[6]);
        }
        assert_eq!(
            serde_json::to_value(shadow.guard().unwrap().campaigns(None)).unwrap(),
            serde_json::to_value(full.campaigns(None)).unwrap(),
            "candidate {ci}: the same campaign states"
        );
        assert_eq!(changed > 0, ci > 0, "candidate {ci}: {changed} changed");
        assert_eq!(
            states > 0,
            ci == 5,
            "candidate {ci}: {states} campaign states"
        );
    }
}
