//! The bad-input corpus (`tests/data/bad-input/`, at least 40 kinds of
//! hostile record) through `fairgate check`: every record gets exactly one
//! line and a route, nothing panics, and no value fairgate strips reaches an
//! output or blocked record, a header, or the log. The same corpus goes
//! through the pipeline on a broker in `tests/kafka.rs`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{SECRET, bad_input};
// Read with sonic-rs (numbers kept as text): check's output may hold numbers
// beyond f64, as the input did.
use sonic_rs::{JsonValueTrait, Value};

#[test]
fn the_corpus_has_at_least_forty_kinds_each_one_record_line() {
    let corpus = bad_input();
    assert!(corpus.len() >= 40, "{} kinds", corpus.len());
    let mut kinds: Vec<&str> = corpus.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), corpus.len(), "kinds are unique");
    for r in &corpus {
        assert!(!r.payload.contains(&b'\n'), "{}: one line", r.kind);
        assert!(!r.why.is_empty());
        assert!(
            ["output", "blocked", "dead_letter", "any"].contains(&r.expect.as_str()),
            "{}",
            r.kind
        );
    }
}

#[test]
fn every_hostile_record_is_routed_once_by_check_and_nothing_stripped_leaks() {
    let corpus = bad_input();
    let dir = std::env::temp_dir().join(format!("fairgate-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("corpus.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for r in &corpus {
        f.write_all(&r.payload).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let out = Command::new(env!("CARGO_BIN_EXE_fairgate"))
        .args(["check", "--policy", "config/policy.toml", "--input"])
        .arg(&input)
        .arg("--report")
        .arg(dir.join("report.json"))
        .stdin(Stdio::null())
        .output()
        .expect("run fairgate check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains(SECRET),
        "a stripped value in the log: {stderr}"
    );
    let lines: Vec<&[u8]> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), corpus.len(), "one line per record");
    let mut problems = Vec::new();
    for (r, line) in corpus.iter().zip(lines) {
        let v: Value = sonic_rs::from_slice(line).expect("check writes JSON");
        let route = v["route"].as_str().unwrap();
        if r.expect != "any" && route != r.expect {
            problems.push(format!(
                "{}: routed to {route}, expected {}",
                r.kind, r.expect
            ));
        }
        let headers = v["headers"].to_string();
        if headers.contains(SECRET) {
            problems.push(format!(
                "{}: a stripped value in a header: {headers:.300}",
                r.kind
            ));
        }
        if route != "dead_letter" && v["value"].to_string().contains(SECRET) {
            let value = v["value"].to_string();
            let at = value.find(SECRET).unwrap();
            problems.push(format!(
                "{} ({}): a stripped value in the {route} record: …{}…",
                r.kind,
                r.why,
                &value[at.saturating_sub(80)..(at + 40).min(value.len())]
            ));
        }
    }
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(!report.contains(SECRET), "a stripped value in the report");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
