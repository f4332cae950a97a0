//! The pipeline against a real Kafka-protocol broker (nisshi). Each test has
//! its own topics and consumer group.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const STRIPPED_ALWAYS: &[&str] = &["/audience"];
const STRIPPED_PERSONAL: &[&str] = &[
    "/user/id",
    "/user/buyeruid",
    "/user/yob",
    "/user/gender",
    "/user/eids",
    "/user/data",
    "/device/ifa",
];

fn write_policy(dir: &std::path::Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, edit(POLICY.to_string())).unwrap();
    p
}

fn write_config(
    dir: &std::path::Path,
    t: &TestTopics,
    policy: &std::path::Path,
    max_in_flight: usize,
    grace: u64,
) -> std::path::PathBuf {
    let p = dir.join("fairgate.toml");
    std::fs::write(&p, t.config_toml(policy, max_in_flight, grace)).unwrap();
    p
}

/// How many records the input's `partitions` hold.
fn input_end(t: &TestTopics, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &t.brokers)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            let (low, high) = c
                .fetch_watermarks(&t.input, p, Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .sum()
}

/// Wait until `group` has committed at least `at_least` on `topic`; returns
/// what it has committed. Fails only on a hang.
fn wait_committed(t: &TestTopics, partitions: i32, at_least: i64) -> i64 {
    let start = Instant::now();
    loop {
        let c = committed_total(&t.brokers, &t.group, &t.input, partitions);
        if c >= at_least {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "hang guard: committed {c}, never {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lines of a fairgate log with `message`, whose `partitions` are not empty.
fn partition_events(log: &str, message: &str) -> usize {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == message)
        .filter(|v| v["partitions"] != "[]")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_decisions_each_end_up_in_exactly_one_topic() {
    let t = TestTopics::new("exactly-one");
    t.create(3).await;
    let dir = scratch("exactly-one");
    // Missing TCF consent is withheld here, so the blocked topic is exercised too.
    let policy = write_policy(&dir, |p| {
        p.replace("no_consent = \"contextual\"", "no_consent = \"withheld\"")
    });
    let cfg_path = write_config(&dir, &t, &policy, 2000, 10);
    let records = decisions(10_000, 97, 11);
    let malformed: HashSet<String> = records
        .iter()
        .filter(|(_, _, b)| {
            serde_json::from_slice::<Value>(b)
                .map(|v| v["ts"].as_i64().is_none() || v.get("campaign").is_none())
                .unwrap_or(true)
        })
        .map(|(id, _, _)| id.clone())
        .collect();
    assert!(malformed.len() >= 100);
    let topic = t.input.clone();
    let recs = records.clone();
    tokio::task::spawn_blocking(move || produce(&topic, &recs))
        .await
        .unwrap();

    let config = fairgate::config::Config::load(&cfg_path).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let svc = tokio::spawn(fairgate::service::run(
        config,
        std::sync::Arc::new(fairgate::clock::SystemClock),
        cancel.clone(),
    ));
    let topics = [
        t.output.clone(),
        t.blocked.clone(),
        t.dead_letter.clone(),
        t.alerts.clone(),
    ];
    let seen = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        collect(
            &refs,
            10_000,
            Duration::from_secs(3),
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    cancel.cancel();
    svc.await.unwrap().unwrap();

    let counts = tally(&seen, &t.alerts);
    let (lost, _) = losses(&records, &counts);
    let dup: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        lost.is_empty(),
        "{} lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        dup.is_empty(),
        "{} duplicated, e.g. {:?}",
        dup.len(),
        &dup[..dup.len().min(5)]
    );

    // Each campaign's records keep their input order in every topic they
    // reach, though partitions are judged on parallel threads.
    let position: HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.0.as_str(), i))
        .collect();
    let mut last: HashMap<(&str, &[u8]), (usize, String)> = HashMap::new();
    for s in seen.iter().filter(|s| s.topic != t.alerts) {
        let id = id_of(&s.payload).unwrap();
        let at = position[id.as_str()];
        let key = (s.topic.as_str(), s.key.as_deref().unwrap_or(&[]));
        if let Some((before, before_id)) = last.get(&key) {
            assert!(
                *before < at,
                "{id} published after {before_id} on {} though it was read first",
                s.topic
            );
        }
        last.insert(key, (at, id));
    }

    let mut by_topic = std::collections::HashMap::new();
    for s in &seen {
        *by_topic.entry(s.topic.clone()).or_insert(0usize) += 1;
        if s.topic == t.alerts {
            let a: Value = serde_json::from_slice(&s.payload).unwrap();
            assert!(
                a["message"]
                    .as_str()
                    .unwrap()
                    .contains(a["campaign"].as_str().unwrap())
            );
            continue;
        }
        let id = id_of(&s.payload).unwrap();
        if s.topic == t.dead_letter {
            assert!(
                malformed.contains(&id),
                "{id} dead-lettered but valid: {:?}",
                s.headers
            );
            let original = &records.iter().find(|r| r.0 == id).unwrap().2;
            assert_eq!(&s.payload, original, "dead letter keeps the original bytes");
            assert!(s.headers.contains_key("fairgate-error"));
            assert!(s.headers.contains_key("fairgate-error-kind"));
            continue;
        }
        assert!(!malformed.contains(&id), "{id} malformed but published");
        let v: Value = serde_json::from_slice(&s.payload).unwrap();
        for p in STRIPPED_ALWAYS {
            assert!(v.pointer(p).is_none(), "{p} in {}", s.topic);
        }
        let consent = s.headers.get("fairgate-consent").expect("consent header");
        if consent != "personalised" {
            for p in STRIPPED_PERSONAL {
                assert!(v.pointer(p).is_none(), "{p} in a {consent} record");
            }
        }
        for h in [
            "fairgate-decision-id",
            "fairgate-policy-version",
            "fairgate-consent-reason",
            "fairgate-campaign-state",
            "fairgate-removed",
        ] {
            assert!(s.headers.contains_key(h), "{h} missing: {:?}", s.headers);
        }
        assert_eq!(s.headers["fairgate-decision-id"], id);
        assert_eq!(
            s.key.as_deref(),
            v["campaign"]["id"].as_str().map(str::as_bytes)
        );
        if s.topic == t.blocked {
            assert!(s.headers.contains_key("fairgate-reason"));
        }
    }
    assert!(
        by_topic.get(&t.blocked).copied().unwrap_or(0) > 100,
        "{by_topic:?}"
    );
    assert!(
        by_topic.get(&t.output).copied().unwrap_or(0) > 5000,
        "{by_topic:?}"
    );
    assert!(
        by_topic.get(&t.alerts).copied().unwrap_or(0) >= 1,
        "the skewed campaign is alerted: {by_topic:?}"
    );
}

#[test]
fn sigkill_three_times_loses_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("sigkill");
    rt.block_on(t.create(3));
    let dir = scratch("sigkill");
    let policy = write_policy(&dir, |p| p);
    let max_in_flight = 1000;
    let cfg = write_config(&dir, &t, &policy, max_in_flight, 10);
    let records = decisions(50_000, 501, 21);
    let producer = {
        let topic = t.input.clone();
        let recs = records.clone();
        std::thread::spawn(move || {
            // In three waves, so that kills land while input keeps arriving.
            for chunk in recs.chunks(recs.len() / 3 + 1) {
                produce(&topic, chunk);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let total = records.len() as i64;
    let mut child = Child::start(&cfg, dir.join("run-0.log"));
    let mut before = 0;
    for k in 1..=3 {
        // Kill once this instance has committed 2,000 more records; read the
        // commit when it is dead (it cannot move any more): it shows the kill
        // landed mid-stream, with records routed and records still to come.
        wait_committed(&t, 3, before + 2_000);
        child.kill9();
        let at_kill = committed_total(&t.brokers, &t.group, &t.input, 3);
        assert!(
            before < at_kill && at_kill < total,
            "kill {k}: committed {at_kill} of {total} (before it: {before}): not mid-stream"
        );
        before = at_kill;
        child = Child::start(&cfg, dir.join(format!("run-{k}.log")));
    }
    producer.join().unwrap();
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(5),
        Duration::from_secs(240),
    );
    child.term();
    child.wait_exit(Duration::from_secs(30));
    let counts = tally(&seen, &t.alerts);
    let (lost, duplicates) = losses(&records, &counts);
    assert!(
        lost.is_empty(),
        "{} lost, e.g. {:?}; log: {}",
        lost.len(),
        &lost[..lost.len().min(5)],
        child.log_text()
    );
    assert!(
        duplicates <= 3 * max_in_flight,
        "{duplicates} duplicates exceed 3 kills x max_in_flight {max_in_flight}"
    );
}

#[test]
fn sigterm_drains_within_grace_and_restart_duplicates_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("sigterm");
    rt.block_on(t.create(3));
    let dir = scratch("sigterm");
    let policy = write_policy(&dir, |p| p);
    let grace = 10;
    let cfg = write_config(&dir, &t, &policy, 1000, grace);
    let records = decisions(20_000, 0, 31);
    let producer = {
        let topic = t.input.clone();
        let recs = records.clone();
        std::thread::spawn(move || {
            for chunk in recs.chunks(2_000) {
                produce(&topic, chunk);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut child = Child::start(&cfg, dir.join("run-0.log"));
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        matches!(child.child.try_wait(), Ok(None)),
        "exited before SIGTERM; log: {}",
        child.log_text()
    );
    // The bound is the grace period itself, from the signal to the exit.
    let sent = Instant::now();
    child.term();
    let exited = child.wait_exit(Duration::from_secs(grace).saturating_sub(sent.elapsed()));
    assert!(
        exited.is_some(),
        "did not exit within the grace period of {grace} s; log: {}",
        child.log_text()
    );
    // The pipeline's last line says whether everything it held was
    // acknowledged and committed within the grace period.
    let log = child.log_text();
    let stopped: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "pipeline stopped")
        .unwrap_or_else(|| panic!("no 'pipeline stopped' line; log: {log}"));
    assert_eq!(
        stopped["drained"], true,
        "not drained within the grace period: {stopped}"
    );
    producer.join().unwrap();
    let mut child = Child::start(&cfg, dir.join("run-1.log"));
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(4),
        Duration::from_secs(180),
    );
    child.term();
    child.wait_exit(Duration::from_secs(30));
    let counts = tally(&seen, &t.alerts);
    let (lost, duplicates) = losses(&records, &counts);
    assert!(
        lost.is_empty(),
        "{} lost after SIGTERM and a restart",
        lost.len()
    );
    assert_eq!(duplicates, 0, "duplicates after SIGTERM and a restart");
}

#[test]
fn a_broker_outage_stalls_the_pipeline_and_it_resumes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = scratch("outage");
    // A broker of its own, with its log on disk, so it can go away and come back.
    let mut broker = OwnBroker::start(&dir);
    let t = TestTopics::on("outage", &broker.address());
    rt.block_on(t.create(3));
    let policy = write_policy(&dir, |p| p);
    let cfg = write_config(&dir, &t, &policy, 1000, 10);
    let records = decisions(12_000, 0, 51);
    // The first half before the outage, the second once it has begun (its
    // producer rides the outage out).
    let (outage_began, outage) = std::sync::mpsc::channel::<()>();
    let producer = {
        let (brokers, topic, recs) = (broker.address(), t.input.clone(), records.clone());
        std::thread::spawn(move || {
            let (first, second) = recs.split_at(recs.len() / 2);
            produce_on(&brokers, &topic, first);
            outage.recv().unwrap();
            produce_on(&brokers, &topic, second);
        })
    };
    let mut child = Child::start(&cfg, dir.join("run.log"));
    // Stop the broker mid-stream: once some records are committed, while
    // records the input holds are still to be routed and committed.
    wait_committed(&t, 3, 1_000);
    let (end, committed) = (
        input_end(&t, 3),
        committed_total(&t.brokers, &t.group, &t.input, 3),
    );
    assert!(
        committed < end,
        "nothing pending when the broker stopped: {committed} of {end} committed"
    );
    broker.stop();
    outage_began.send(()).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        matches!(child.child.try_wait(), Ok(None)),
        "fairgate exited during the outage; log: {}",
        child.log_text()
    );
    broker.resume();
    producer.join().unwrap();
    let seen = collect_on(
        &broker.address(),
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(4),
        Duration::from_secs(180),
    );
    assert!(
        matches!(child.child.try_wait(), Ok(None)),
        "fairgate exited after the outage; log: {}",
        child.log_text()
    );
    child.term();
    child.wait_exit(Duration::from_secs(30));
    let counts = tally(&seen, &t.alerts);
    let (lost, duplicates) = losses(&records, &counts);
    assert!(
        lost.is_empty(),
        "{} lost ({duplicates} duplicates), e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Two instances in one group: nothing lost, both hold partitions, and a
/// record is published twice only when a partition moved while the instance
/// giving it up held the record: at most `max_in_flight` per revocation.
#[test]
fn two_instances_in_one_group_share_the_work() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("two");
    rt.block_on(t.create(4));
    let dir = scratch("two");
    let policy = write_policy(&dir, |p| p);
    let max_in_flight = 200;
    let cfg = write_config(&dir, &t, &policy, max_in_flight, 10);
    let records = decisions(20_000, 0, 41);
    let mut a = Child::start(&cfg, dir.join("a.log"));
    std::thread::sleep(Duration::from_secs(2));
    let mut b = Child::start(&cfg, dir.join("b.log"));
    produce(&t.input, &records);
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(4),
        Duration::from_secs(180),
    );
    // Partitions given up while the records flowed (before the instances
    // are stopped, which revokes them again).
    let logs = [a.log_text(), b.log_text()];
    let revocations: usize = logs
        .iter()
        .map(|l| partition_events(l, "partitions revoked; offsets committed"))
        .sum();
    a.term();
    b.term();
    a.wait_exit(Duration::from_secs(30));
    b.wait_exit(Duration::from_secs(30));
    let counts = tally(&seen, &t.alerts);
    let (lost, duplicates) = losses(&records, &counts);
    assert!(lost.is_empty(), "{} lost", lost.len());
    for (name, log) in ["a", "b"].iter().zip(&logs) {
        assert!(
            partition_events(log, "partitions assigned") > 0,
            "{name} never held a partition: {log}"
        );
    }
    assert!(
        duplicates <= revocations * max_in_flight,
        "{duplicates} duplicates; {revocations} revocations x max_in_flight {max_in_flight}"
    );
}

/// Partitions revoked (another member joins the group) have their
/// acknowledged offsets committed before they move. The periodic commit is
/// set to a minute, so only the revocation commits.
#[test]
fn revoked_partitions_are_committed_before_they_move() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("revoke");
    rt.block_on(t.create(3));
    let dir = scratch("revoke");
    let policy = write_policy(&dir, |p| p);
    let cfg = dir.join("fairgate.toml");
    let toml = t
        .config_toml(&policy, 5000, 10)
        .replace("commit_interval_ms = 50", "commit_interval_ms = 60000");
    std::fs::write(&cfg, toml).unwrap();
    let records = decisions(3_000, 0, 42);
    produce(&t.input, &records);
    let mut a = Child::start(&cfg, dir.join("a.log"));
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(2),
        Duration::from_secs(120),
    );
    assert_eq!(tally(&seen, &t.alerts).len(), records.len());
    assert_eq!(
        committed_total(&t.brokers, &t.group, &t.input, 3),
        0,
        "the periodic commit (once, at the start) committed nothing"
    );
    // Another member joins; it commits nothing itself.
    let other: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &t.brokers)
        .set("group.id", &t.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    other.subscribe(&[&t.input]).unwrap();
    let start = Instant::now();
    while partition_events(&a.log_text(), "partitions revoked; offsets committed") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "hang guard: never revoked; log: {}",
            a.log_text()
        );
        let _ = other.poll(Duration::from_millis(100));
    }
    assert_eq!(
        committed_total(&t.brokers, &t.group, &t.input, 3),
        records.len() as i64,
        "acknowledged offsets committed on revocation; log: {}",
        a.log_text()
    );
    drop(other);
    a.term();
    a.wait_exit(Duration::from_secs(30));
}

/// A service configuration for a live run: the shipped policy, HTTP on a
/// free port (returned), debug logs (so a leak into any log line shows).
fn live_config(t: &TestTopics, dir: &std::path::Path) -> (std::path::PathBuf, u16) {
    let policy = write_policy(dir, |p| p);
    let port = free_port();
    let cfg = dir.join("fairgate.toml");
    std::fs::write(
        &cfg,
        t.config_toml(&policy, 1000, 10)
            .replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            )
            .replace("level = \"info\"", "level = \"debug,rdkafka=info\""),
    )
    .unwrap();
    (cfg, port)
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path, None)
}

/// A live run: the logs carry none of the sensitive values the decisions
/// hold; every metric the dashboard and alert rules use is exported; the
/// status page shows the flagged campaign in headless Chromium.
#[test]
fn operations_during_a_live_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("ops");
    rt.block_on(t.create(2));
    let dir = scratch("ops");
    let (cfg, port) = live_config(&t, &dir);
    let records = decisions(8_000, 50, 51);
    // The sensitive values these decisions carry.
    let mut secrets = HashSet::new();
    for (_, _, b) in &records {
        if let Ok(v) = serde_json::from_slice::<Value>(b) {
            for p in [
                "/user/id",
                "/user/buyeruid",
                "/device/ifa",
                "/user/consent",
                "/regs/gpp",
                "/device/ip",
            ] {
                if let Some(s) = v.pointer(p).and_then(Value::as_str) {
                    secrets.insert(s.to_string());
                }
            }
            for seg in v
                .pointer("/user/data/0/segment")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = seg["id"].as_str().filter(|s| s.starts_with("health-")) {
                    secrets.insert(id.to_string());
                }
            }
        }
    }
    assert!(secrets.len() > 1000);
    let mut child = Child::start(&cfg, dir.join("run.log"));
    produce(&t.input, &records);
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(2),
        Duration::from_secs(120),
    );
    assert_eq!(tally(&seen, &t.alerts).len(), records.len());

    let (status, ready) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{ready}");
    let (_, metrics) = http_get(port, "/metrics");
    let metrics_file = dir.join("metrics.txt");
    std::fs::write(&metrics_file, &metrics).unwrap();
    let check = std::process::Command::new("python3")
        .arg("deploy/check-metrics-names.py")
        .arg(&metrics_file)
        .output()
        .expect("python3");
    assert!(
        check.status.success(),
        "dashboard or rules use metrics fairgate does not export:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let (_, flagged) = http_get(port, "/v1/campaigns?state=flagged");
    assert!(flagged.contains("cmp-skewed-01"), "{flagged}");

    // The status page in headless Chromium, with a screenshot kept as an artifact.
    let artifacts = std::path::Path::new("artifacts");
    std::fs::create_dir_all(artifacts).unwrap();
    let chromium_flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,2200",
    ];
    let url = format!("http://127.0.0.1:{port}/");
    let profile = dir.join("chromium-profile");
    let dom = std::process::Command::new("chromium")
        .args(chromium_flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium is installed by scripts/test");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("cmp-skewed-01") && dom.contains("Flagged ("),
        "{dom}"
    );
    let shot = std::fs::canonicalize(artifacts)
        .unwrap()
        .join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new("chromium")
        .args(chromium_flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    child.term();
    child.wait_exit(Duration::from_secs(20));
    let log = child.log_text();
    assert!(log.lines().count() > 5, "{log}");
    let leaked: Vec<&String> = secrets
        .iter()
        .filter(|s| log.contains(s.as_str()) || metrics.contains(s.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "{} sensitive values in logs or metrics, e.g. {:?}",
        leaked.len(),
        &leaked[..leaked.len().min(3)]
    );
}

/// The bad-input corpus (tests/data/bad-input/) through the running service:
/// every record lands in exactly one of output, blocked and dead letter, the
/// input is committed to its end (no stall, no crash loop), the service
/// stays ready, and no value fairgate strips reaches an output or blocked
/// record, a header on any topic, a log line or a metric.
#[test]
fn the_bad_input_corpus_through_the_pipeline_is_routed_once_and_leaks_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("hostile");
    rt.block_on(t.create(1));
    let dir = scratch("hostile");
    let (cfg, port) = live_config(&t, &dir);
    let corpus = bad_input();
    let mut child = Child::start(&cfg, dir.join("run.log"));
    produce_raw(&brokers(), &t.input, &corpus);
    let end = input_end(&t, 1);
    assert_eq!(end, corpus.len() as i64, "the broker took every record");
    wait_committed(&t, 1, end);
    let (status, ready) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{ready}");
    let (_, metrics) = http_get(port, "/metrics");
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        0,
        Duration::from_secs(3),
        Duration::from_secs(60),
    );
    child.term();
    child.wait_exit(Duration::from_secs(20));
    let log = child.log_text();

    // Which corpus record each published one is.
    let ids: Vec<Option<String>> = corpus
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.payload)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
                .or_else(|| {
                    // A record with numbers beyond f64: read with sonic-rs,
                    // which has no nesting limit, so only a shallow one.
                    let opens = r.payload.iter().filter(|&&b| b == b'[' || b == b'{');
                    (opens.count() <= 127)
                        .then(|| sonic_rs::from_slice::<sonic_rs::Value>(&r.payload).ok())
                        .flatten()
                        .and_then(|v| {
                            sonic_rs::JsonValueTrait::as_str(&v["id"]).map(str::to_string)
                        })
                })
        })
        .collect();
    let mut routed = vec![Vec::new(); corpus.len()];
    let mut problems = Vec::new();
    for s in &seen {
        let at = if let Some(o) = s.headers.get("fairgate-input-offset") {
            o.parse::<usize>().ok()
        } else if s.topic == t.dead_letter {
            corpus.iter().position(|r| r.payload == s.payload)
        } else {
            // The id header is capped: a cut one ends in `…`.
            let id = s
                .headers
                .get("fairgate-decision-id")
                .cloned()
                .unwrap_or_default();
            let prefix = id.trim_end_matches('…');
            ids.iter().position(|c| {
                c.as_deref()
                    .is_some_and(|c| c == id || (id.ends_with('…') && c.starts_with(prefix)))
            })
        };
        match at {
            Some(i) => routed[i].push(s.topic.clone()),
            None => problems.push(format!("an unknown record on {}: {:?}", s.topic, s.headers)),
        }
        for (k, v) in &s.headers {
            if v.contains(SECRET) {
                problems.push(format!("a stripped value in header {k} on {}", s.topic));
            }
        }
        if s.topic != t.dead_letter && String::from_utf8_lossy(&s.payload).contains(SECRET) {
            let kind = at.map(|i| corpus[i].kind.as_str()).unwrap_or("?");
            problems.push(format!(
                "{kind}: a stripped value in a record on {}",
                s.topic
            ));
        }
    }
    for (r, topics) in corpus.iter().zip(&routed) {
        if topics.len() != 1 {
            problems.push(format!(
                "{}: published {} times: {topics:?}",
                r.kind,
                topics.len()
            ));
        } else if r.expect != "any"
            && &topics[0]
                != match r.expect.as_str() {
                    "output" => &t.output,
                    "blocked" => &t.blocked,
                    _ => &t.dead_letter,
                }
        {
            problems.push(format!(
                "{}: on {}, expected {}",
                r.kind, topics[0], r.expect
            ));
        }
    }
    assert!(!log.contains("panicked"), "a panic: {log}");
    if log.contains(SECRET) {
        problems.push("a stripped value in the log".into());
    }
    if metrics.contains(SECRET) {
        problems.push("a stripped value in a metric".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
