//! What-if against the test broker (nisshi): `fairgate diff` reading a
//! topic by time, and the shadow policy in a running service (published
//! records the same shadow on and off, its counts those of the offline
//! diff, its sample of changed decisions on a topic of its own). Every test
//! has its own topics and groups.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
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

/// Produce `(key, timestamp, payload)` records with their own timestamps,
/// in order, and wait for every acknowledgement.
fn produce_timed(brokers: &str, topic: &str, records: &[(String, i64, Vec<u8>)]) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (key, ts, payload) in records {
        let mut rec = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(payload)
            .timestamp(*ts);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
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
    let cases: [(Vec<&str>, Option<i32>, &str); 6] = [
        (
            vec![
                "--brokers",
                &brokers,
                "--topic",
                &missing,
                "--from",
                "0",
                "--to",
                "1",
            ],
            Some(1),
            "does not exist on",
        ),
        (
            vec![
                "--brokers",
                &brokers,
                "--topic",
                &topic,
                "--from",
                "20",
                "--to",
                "10",
            ],
            Some(1),
            "--from (20) must be before --to (10)",
        ),
        (
            vec![
                "--brokers",
                &brokers,
                "--topic",
                &topic,
                "--from",
                "soon",
                "--to",
                "10",
            ],
            Some(2),
            "--from: \"soon\" is neither epoch milliseconds nor an RFC 3339 time",
        ),
        (
            vec![
                "--brokers",
                "127.0.0.1:1",
                "--topic",
                &topic,
                "--from",
                "0",
                "--to",
                "1",
                "--timeout-secs",
                "2",
            ],
            Some(1),
            "cannot reach the brokers 127.0.0.1:1 within 2 s",
        ),
        (
            vec![
                "--brokers",
                &brokers,
                "--topic",
                &topic,
                "--from",
                "0",
                "--to",
                "1",
                "-X",
                "group.id=mine",
            ],
            Some(1),
            "-X group.id: set by fairgate diff itself",
        ),
        (
            vec!["--topic", &topic, "--from", "0", "--to", "1"],
            Some(2),
            "--brokers",
        ),
    ];
    for (args, code, message) in cases {
        let (got, stderr) = run(&args);
        assert_eq!(got, code, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    // An empty range is a report of nothing, not an error.
    let (code, stderr) = run(&[
        "--brokers",
        &brokers,
        "--topic",
        &topic,
        "--from",
        "0",
        "--to",
        "1",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("fairgate diff: 0 lines"), "{stderr}");
}
