//! What-if against the test broker (nisshi): `fairgate diff` reading a
//! topic by time, and the shadow policy in a running service (published
//! records the same shadow on and off, its counts those of the offline
//! diff, its sample of changed decisions on a topic of its own). Every test
//! has its own topics and groups.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;

fn candidate_policy(dir: &Path) -> PathBuf {
    let text = POLICY
        .replace(
            "required_purposes = [1, 3, 4]",
            "required_purposes = [1, 2, 3, 4]",
        )
        .replace("version = \"2026-11-23.1\"", "version = \"candidate\"");
    let path = dir.join("candidate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn live_policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    path
}

async fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, n)| NewTopic::new(t, *n, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin
        .create_topics(&new, &opts)
        .await
        .expect("create topics")
    {
        if let Err((t, e)) = r {
            panic!("creating {t}: {e}");
        }
    }
}

/// Synthetic decisions stamped `t0 + 40 ms × i`, some broken: `(campaign, ts, bytes)`.
fn timed_decisions(n: usize, t0: i64) -> Vec<(String, i64, Vec<u8>)> {
    let mut s = fairgate::tools::synth::Synth::new(21, 12, 2, t0);
    s.malformed_every = 211;
    (0..n)
        .map(|i| {
            let ts = t0 + 40 * i as i64;
            let (key, bytes) = s.next(ts);
            (key, ts, bytes)
        })
        .collect()
}

fn fairgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fairgate"))
        .args(args)
        .output()
        .expect("run fairgate")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------
// fairgate diff --topic
// ---------------------------------------------------------------------------

/// A topic of three partitions holding the same decisions as a file: the
/// report over a time range of the topic is byte for byte the report over
/// the file's lines in that range, twice the same; records outside the
/// range are not read; no group is joined or committed to.
#[tokio::test(flavor = "multi_thread")]
async fn diff_over_a_topic_and_a_time_range_reports_as_over_the_file() {
    let brokers = brokers();
    let dir = scratch("diff-topic");
    let topic = unique("whatif-diff");
    create_topics(&brokers, &[(&topic, 3)]).await;
    let t0 = 1_795_000_000_000i64;
    let records = timed_decisions(4_000, t0);
    produce_timed(&brokers, &topic, &records);

    // The range: decisions 600..3400 (every decision has its own ts, and
    // each partition's are in order, so the merge gives the file's order).
    let (from, to) = (t0 + 40 * 600, t0 + 40 * 3_400);
    let file = dir.join("range.jsonl");
    let mut lines = Vec::new();
    for (_, _, bytes) in &records[600..3_400] {
        lines.extend_from_slice(bytes);
        lines.push(b'\n');
    }
    std::fs::write(&file, lines).unwrap();
    let (cur, cand) = (live_policy(&dir), candidate_policy(&dir));
    let report = |name: &str, source: &[&str]| {
        let (json, html) = (
            dir.join(format!("{name}.json")),
            dir.join(format!("{name}.html")),
        );
        let mut args = vec!["diff", "--policy", path(&cur), "--candidate", path(&cand)];
        args.extend_from_slice(source);
        args.extend_from_slice(&["--json", path(&json), "--html", path(&html)]);
        let out = fairgate(&args);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (std::fs::read(&json).unwrap(), std::fs::read(&html).unwrap())
    };
    let from_file = report("file", &["--input", path(&file)]);
    let (from_s, to_s) = (from.to_string(), "2026-11-18T12:08:56+01:00".to_string());
    assert_eq!(
        fairgate::tools::topic::parse_time(&to_s),
        Ok(to),
        "the RFC 3339 form of --to"
    );
    let topic_args = [
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--from",
        &from_s,
        "--to",
        &to_s,
    ];
    let from_topic = report("topic", &topic_args);
    let doc: Value = serde_json::from_slice(&from_topic.0).unwrap();
    assert_eq!(doc["totals"]["lines"], 2_800, "only the range is read");
    assert!(
        doc["totals"]["changed"].as_u64().unwrap() > 100,
        "the candidate changes something"
    );
    assert!(
        doc["totals"]["dead_letter"]["current"].as_u64().unwrap() > 5,
        "broken records count"
    );
    assert!(
        from_topic.0 == from_file.0,
        "the JSON report from the topic is the file's, byte for byte"
    );
    assert!(from_topic.1 == from_file.1, "so is the HTML page");
    assert!(
        report("again", &topic_args) == from_topic,
        "and again the same"
    );

    // Read-only: the topic holds what was produced, and no group has offsets.
    let witness = commit_one(&brokers, &topic);
    let groups = committed_groups(&brokers);
    assert!(
        groups.contains(&witness),
        "the broker lists a group that committed: {groups:?}"
    );
    assert!(
        groups.iter().all(|g| !g.starts_with("fairgate-diff")),
        "no group of fairgate diff: {groups:?}"
    );
}

/// A group that commits an offset of `topic` (so that the broker lists it).
fn commit_one(brokers: &str, topic: &str) -> String {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let group = unique("witness");
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(1))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
    group
}

/// Groups the broker knows (ListGroups).
fn committed_groups(brokers: &str) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("lister"))
        .create()
        .unwrap();
    c.fetch_group_list(None, Duration::from_secs(10))
        .map(|l| l.groups().iter().map(|g| g.name().to_string()).collect())
        .unwrap_or_default()
}

/// Bad topic arguments each get a message naming what was wrong.
#[tokio::test(flavor = "multi_thread")]
async fn diff_over_a_topic_names_what_is_wrong() {
    let brokers = brokers();
    let dir = scratch("diff-topic-errors");
    let topic = unique("whatif-diff-errors");
    create_topics(&brokers, &[(&topic, 1)]).await;
    let (cur, cand) = (live_policy(&dir), candidate_policy(&dir));
    let run = |extra: &[&str]| {
        let mut args = vec!["diff", "--policy", path(&cur), "--candidate", path(&cand)];
        args.extend_from_slice(extra);
        let out = fairgate(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let missing = unique("no-such-topic");
    let cases = [
        (
            format!("--brokers {brokers} --topic {missing} --from 0 --to 1"),
            Some(1),
            "does not exist on",
        ),
        (
            format!("--brokers {brokers} --topic {topic} --from 20 --to 10"),
            Some(1),
            "--from (20) must be before --to (10)",
        ),
        (
            format!("--brokers {brokers} --topic {topic} --from soon --to 10"),
            Some(2),
            "--from: \"soon\" is neither epoch milliseconds nor an RFC 3339 time",
        ),
        (
            format!("--brokers 127.0.0.1:1 --topic {topic} --from 0 --to 1 --timeout-secs 2"),
            Some(1),
            "cannot reach the brokers 127.0.0.1:1 within 2 s",
        ),
        (
            format!("--brokers {brokers} --topic {topic} --from 0 --to 1 -X group.id=mine"),
            Some(1),
            "-X group.id: set by fairgate diff itself",
        ),
        (
            format!("--topic {topic} --from 0 --to 1"),
            Some(2),
            "--brokers",
        ),
        // An empty range is a report of nothing, not an error.
        (
            format!("--brokers {brokers} --topic {topic} --from 0 --to 1"),
            Some(0),
            "fairgate diff: 0 lines",
        ),
    ];
    for (args, code, message) in cases {
        let args: Vec<&str> = args.split_whitespace().collect();
        let (got, stderr) = run(&args);
        assert_eq!(got, code, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------
// The shadow policy in the running service
// ---------------------------------------------------------------------------

/// One `fairgate run` over `t` (one input partition, one judge thread, state
/// in its memory), with the shadow policy and sample topic when given.
fn start_service(t: &TestTopics, dir: &Path, shadow: Option<(&Path, &str)>) -> (Child, u16) {
    let port = free_port();
    let mut config = t
        .config_toml(&live_policy(dir), 5000, 10)
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace("workers = 2", "workers = 1")
        .replace("[state]\n", "[state]\nshared = false\n");
    if let Some((policy, topic)) = shadow {
        config = format!("shadow_policy = \"{}\"\n{config}", policy.display())
            .replace(
                "[kafka.topics]\n",
                &format!("[kafka.topics]\nshadow = \"{topic}\"\n"),
            )
            .replace("[pipeline]\n", "[pipeline]\nshadow_sample_per_sec = 3\n");
    }
    let name = if shadow.is_some() { "on" } else { "off" };
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let child = Child::start(&path, dir.join(format!("{name}.log")));
    let start = std::time::Instant::now();
    while http(port, "GET", "/readyz", None).0 != 200 {
        assert!(
            start.elapsed() < HANG,
            "hang guard: never ready\n{}",
            child.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

/// Only a hang takes this long.
const HANG: Duration = Duration::from_secs(180);

/// The sum of the `/metrics` lines starting with `prefix`.
fn metric(port: u16, prefix: &str) -> u64 {
    let (_, body) = http(port, "GET", "/metrics", None);
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A published record: its topic's role, key, headers and value.
type Published = (String, Option<Vec<u8>>, Vec<(String, String)>, Vec<u8>);

/// Every decision record published for `t`'s input, by decision id: its
/// topic (output, blocked, dead letter), key, headers and value.
fn published(t: &TestTopics, n: usize) -> BTreeMap<String, Published> {
    let seen = collect_on(
        &t.brokers,
        &[&t.output, &t.blocked, &t.dead_letter],
        n,
        Duration::from_secs(2),
        HANG,
    );
    let mut out = BTreeMap::new();
    for s in seen {
        let id = id_of(&s.payload).expect("every test decision carries its id");
        let role = s.topic.rsplit('.').next().unwrap().to_string();
        let headers: BTreeMap<String, String> = s.headers.into_iter().collect();
        let old = out.insert(
            id.clone(),
            (role, s.key, headers.into_iter().collect(), s.payload),
        );
        assert!(old.is_none(), "{id} published twice");
    }
    assert_eq!(out.len(), n, "every decision published once");
    out
}

/// The service with the shadow policy on publishes byte for byte what it
/// publishes with it off; its `fairgate_shadow_*` counts are the offline
/// `fairgate diff`'s over the same decisions; and its sample topic holds
/// changed decisions' ids and kinds only, every sample accounted for.
#[tokio::test(flavor = "multi_thread")]
async fn the_shadow_in_the_service_publishes_nothing_new_and_counts_what_diff_counts() {
    let dir = scratch("shadow-live");
    let (off_t, on_t) = (TestTopics::new("shadow-off"), TestTopics::new("shadow-on"));
    off_t.create(1).await;
    on_t.create(1).await;
    let sample_topic = format!("{}.sample", on_t.input);
    create_topics(&on_t.brokers, &[(&sample_topic, 1)]).await;
    let cand = candidate_policy(&dir);
    let records = decisions(2_000, 97, 5);

    let (mut off, _) = start_service(&off_t, &dir, None);
    produce_on(&off_t.brokers, &off_t.input, &records);
    let published_off = published(&off_t, records.len());
    off.term();

    let (mut on, port) = start_service(&on_t, &dir, Some((&cand, &sample_topic)));
    produce_on(&on_t.brokers, &on_t.input, &records);
    let published_on = published(&on_t, records.len());
    assert!(
        published_on == published_off,
        "the published records are the same, shadow on or off"
    );

    // The offline diff over the same decisions, in the same order.
    let file = dir.join("decisions.jsonl");
    let mut lines = Vec::new();
    for (_, _, bytes) in &records {
        lines.extend_from_slice(bytes);
        lines.push(b'\n');
    }
    std::fs::write(&file, lines).unwrap();
    let now = fairgate::clock::Clock::now_ms(&fairgate::clock::SystemClock).to_string();
    let json = dir.join("diff.json");
    let out = fairgate(&[
        "diff",
        "--policy",
        path(&live_policy(&dir)),
        "--candidate",
        path(&cand),
        "--input",
        path(&file),
        "--now-ms",
        &now,
        "--json",
        path(&json),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let totals = &report["totals"];
    assert_eq!(
        metric(port, "fairgate_shadow_decisions_total"),
        records.len() as u64
    );
    for k in report["changes"].as_array().unwrap() {
        let kind = k["kind"].as_str().unwrap();
        assert_eq!(
            metric(
                port,
                &format!("fairgate_shadow_changes_total{{kind=\"{kind}\"}}")
            ),
            k["count"].as_u64().unwrap(),
            "{kind}"
        );
    }
    let changed = totals["changed"].as_u64().unwrap();
    assert!(changed > 50, "the candidate changes something: {changed}");
    assert_eq!(
        metric(port, "fairgate_shadow_changed_decisions_total"),
        changed
    );
    assert_eq!(
        metric(port, "fairgate_shadow_published_differs_total"),
        totals["published_differs"].as_u64().unwrap()
    );
    for (route, total) in [
        ("output", &totals["output"]),
        ("blocked", &totals["blocked"]),
        ("dead_letter", &totals["dead_letter"]),
    ] {
        assert_eq!(
            metric(
                port,
                &format!("fairgate_shadow_routes_total{{route=\"{route}\"}}")
            ),
            total["candidate"].as_u64().unwrap(),
            "{route}"
        );
    }

    check_samples(port, &sample_topic, &on_t.brokers, changed, &records);
    on.term();
}

/// Every changed decision was sampled or counted as dropped; the sample
/// records on the topic are the ones counted as published, each with ids,
/// kinds and nothing a policy strips.
fn check_samples(
    port: u16,
    topic: &str,
    brokers: &str,
    changed: u64,
    records: &[(String, String, Vec<u8>)],
) {
    let sampled = |r: &str| {
        metric(
            port,
            &format!("fairgate_shadow_samples_total{{result=\"{r}\"}}"),
        )
    };
    let start = std::time::Instant::now();
    let accounted = || {
        sampled("published") + sampled("rate_limited") + sampled("queue_full") + sampled("failed")
    };
    while accounted() < changed {
        assert!(
            start.elapsed() < HANG,
            "hang guard: samples never accounted for"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(accounted(), changed, "each changed decision once");
    assert_eq!(sampled("failed") + sampled("queue_full"), 0);
    let published = sampled("published");
    assert!(published >= 1);
    let seen = collect_on(brokers, &[topic], 0, Duration::from_secs(2), HANG);
    assert_eq!(
        seen.len() as u64,
        published,
        "the topic holds what was counted"
    );

    let ids: BTreeSet<&str> = records.iter().map(|r| r.0.as_str()).collect();
    let kinds = [
        "route",
        "consent",
        "consent_reason",
        "removed",
        "coarsened",
        "segments_removed",
        "campaign_state",
    ];
    let mut secrets = Vec::new();
    for (_, _, bytes) in records {
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            for p in [
                "/user/id",
                "/user/buyeruid",
                "/device/ifa",
                "/device/ip",
                "/user/geo/zip",
            ] {
                if let Some(s) = v.pointer(p).and_then(Value::as_str) {
                    secrets.push(s.to_string());
                }
            }
        }
    }
    assert!(secrets.len() > 100, "the decisions hold personal values");
    for s in &seen {
        assert!(s.headers.is_empty(), "no headers on a sample");
        let text = String::from_utf8(s.payload.clone()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let want = [
            "format",
            "decision",
            "campaign",
            "changes",
            "published_differs",
            "live_policy",
            "shadow_policy",
            "input_partition",
            "input_offset",
        ];
        assert_eq!(keys, BTreeSet::from(want), "{text}");
        assert!(ids.contains(v["decision"].as_str().unwrap()), "{text}");
        assert_eq!(s.key.as_deref(), v["campaign"].as_str().map(str::as_bytes));
        let changes = v["changes"].as_array().unwrap();
        assert!(
            !changes.is_empty() && changes.iter().all(|c| kinds.contains(&c.as_str().unwrap())),
            "{text}"
        );
        assert_eq!(v["shadow_policy"], "candidate");
        assert!(
            secrets.iter().all(|x| !text.contains(x.as_str())),
            "no stripped value: {text}"
        );
    }
}
