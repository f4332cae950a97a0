//! Shared helpers for the tests that talk to a real Kafka-protocol broker
//! (nisshi, started by `scripts/test`; its address in FAIRGATE_TEST_BROKERS).
//! Every test gets its own topics and consumer groups.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

pub const POLICY: &str = include_str!("../../config/policy.toml");

/// The test broker's address. The README's test command starts one.
pub fn brokers() -> String {
    std::env::var("FAIRGATE_TEST_BROKERS").unwrap_or_else(|_| {
        panic!(
            "FAIRGATE_TEST_BROKERS is not set: run the tests with scripts/test, which installs and starts the test broker"
        )
    })
}

/// A unique suffix for topic and group names.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), n % 10_000_000_000)
}

/// The five topics of one test.
#[derive(Debug, Clone)]
pub struct TestTopics {
    pub input: String,
    pub output: String,
    pub blocked: String,
    pub dead_letter: String,
    pub alerts: String,
    /// The campaign table (compacted) and the exposure topic.
    pub campaigns: String,
    pub exposure: String,
    pub group: String,
    /// The broker they live on.
    pub brokers: String,
}

impl TestTopics {
    /// Topics on the shared test broker.
    pub fn new(name: &str) -> TestTopics {
        TestTopics::on(name, &brokers())
    }

    /// Topics on a given broker.
    pub fn on(name: &str, brokers: &str) -> TestTopics {
        let base = unique(name);
        TestTopics {
            brokers: brokers.to_string(),
            input: format!("{base}.in"),
            output: format!("{base}.out"),
            blocked: format!("{base}.blocked"),
            dead_letter: format!("{base}.dlq"),
            alerts: format!("{base}.alerts"),
            campaigns: format!("{base}.campaigns"),
            exposure: format!("{base}.exposure"),
            group: format!("{base}.group"),
        }
    }

    pub fn all(&self) -> [&str; 5] {
        [
            &self.input,
            &self.output,
            &self.blocked,
            &self.dead_letter,
            &self.alerts,
        ]
    }

    /// Create the topics on the broker.
    pub async fn create(&self, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .expect("admin client");
        let mut topics: Vec<NewTopic> = self
            .all()
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        topics.push(
            NewTopic::new(&self.campaigns, partitions, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact"),
        );
        topics.push(NewTopic::new(
            &self.exposure,
            partitions,
            TopicReplication::Fixed(1),
        ));
        let res = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics");
        for r in res {
            if let Err((t, e)) = r {
                panic!("creating {t}: {e}");
            }
        }
    }

    /// A service configuration for these topics.
    pub fn config_toml(
        &self,
        policy: &std::path::Path,
        max_in_flight: usize,
        grace_secs: u64,
    ) -> String {
        format!(
            r#"policy = "{policy}"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
[kafka.topics]
input = "{input}"
output = "{output}"
blocked = "{blocked}"
dead_letter = "{dlq}"
alerts = "{alerts}"
campaigns = "{campaigns}"
exposure = "{exposure}"
[kafka.consumer]
"auto.offset.reset" = "earliest"
[pipeline]
max_in_flight = {max_in_flight}
# More judge threads than this machine may have CPUs, and fewer than the
# input's partitions, so records are always judged in parallel.
workers = 2
commit_interval_ms = 50
grace_period_secs = {grace_secs}
watch_policy = true
[http]
listen = "127.0.0.1:0"
admin_token = "test-token"
[log]
format = "json"
level = "info"
[state]
key = "test-state-key-0123456789"
table_refresh_ms = 1000
judge_interval_ms = 100
"#,
            policy = policy.display(),
            brokers = self.brokers,
            group = self.group,
            input = self.input,
            output = self.output,
            blocked = self.blocked,
            dlq = self.dead_letter,
            alerts = self.alerts,
            campaigns = self.campaigns,
            exposure = self.exposure,
        )
    }
}

/// What `group` has committed on `topic`, summed over its first
/// `partitions` partitions (a partition with no commit counts 0).
pub fn committed_total(brokers: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// A scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(&format!("fairgate-{name}")));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Decisions for a test: `(id, key, payload)`; every `malformed_every`-th is
/// malformed but still carries its id in its bytes.
pub fn decisions(n: usize, malformed_every: usize, seed: u64) -> Vec<(String, String, Vec<u8>)> {
    let now = fairgate::clock::Clock::now_ms(&fairgate::clock::SystemClock);
    let mut s = fairgate::tools::synth::Synth::new(seed, 12, 1, now);
    (0..n)
        .map(|i| {
            let (key, bytes) = s.next(now + i as i64);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let id = v["id"].as_str().unwrap().to_string();
            if malformed_every > 0 && i % malformed_every == malformed_every - 1 {
                let bad = match i % 4 {
                    0 => format!("{{\"id\":\"{id}\",\"ts\":\"not a time\",\"campaign\":{{\"id\":\"{key}\"}}}}").into_bytes(),
                    1 => format!("{{\"id\":\"{id}\",\"campaign\":").into_bytes(),
                    2 => format!("{{\"id\":\"{id}\",\"ts\":1}}").into_bytes(),
                    _ => {
                        let mut b = vec![0xff, 0xfe];
                        b.extend_from_slice(id.as_bytes());
                        b
                    }
                };
                (id, key, bad)
            } else {
                (id, key, bytes)
            }
        })
        .collect()
}

/// Produce records and wait for every acknowledgement.
pub fn produce(topic: &str, records: &[(String, String, Vec<u8>)]) {
    produce_on(&brokers(), topic, records)
}

/// Produce records to a given broker and wait for every acknowledgement
/// (riding out a broker outage of up to five minutes).
pub fn produce_on(brokers: &str, topic: &str, records: &[(String, String, Vec<u8>)]) {
    send_all(
        brokers,
        topic,
        records
            .iter()
            .map(|(_, key, payload)| (Some(key.as_bytes()), payload.as_slice(), None)),
    );
}

/// Produce `(key, timestamp, payload)` records with their own Kafka
/// timestamps, in order, and wait for every acknowledgement.
pub fn produce_timed(brokers: &str, topic: &str, records: &[(String, i64, Vec<u8>)]) {
    send_all(
        brokers,
        topic,
        records
            .iter()
            .map(|(key, ts, payload)| (Some(key.as_bytes()), payload.as_slice(), Some(*ts))),
    );
}

/// Produce `(key, payload, timestamp)` records as they are (the timestamp:
/// the producer's clock when none), waiting out a full queue, and flush.
fn send_all<'a>(
    brokers: &str,
    topic: &str,
    records: impl Iterator<Item = (Option<&'a [u8]>, &'a [u8], Option<i64>)>,
) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Tests send records larger than Kafka's usual 1 MB on purpose.
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer");
    for (key, payload, ts) in records {
        let mut rec = BaseRecord::to(topic).payload(payload);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(ts) = ts {
            rec = rec.timestamp(ts);
        }
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

/// One record read back from an output topic.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
    pub payload: Vec<u8>,
}

/// The decision id in a payload (also found inside malformed bytes).
pub fn id_of(payload: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(payload);
    let i = s.find("dec-")?;
    let tail: String = s[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Some(tail)
}

/// Read `topics` from the beginning with a fresh group until `want` distinct
/// ids have been seen and nothing new arrived for `quiet`, or `timeout` ends.
pub fn collect(topics: &[&str], want: usize, quiet: Duration, timeout: Duration) -> Vec<Seen> {
    collect_on(&brokers(), topics, want, quiet, timeout)
}

/// [`collect`] from a given broker.
pub fn collect_on(
    brokers: &str,
    topics: &[&str],
    want: usize,
    quiet: Duration,
    timeout: Duration,
) -> Vec<Seen> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("verify"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(topics).expect("subscribe");
    let start = Instant::now();
    let mut last_new = Instant::now();
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    while start.elapsed() < timeout {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers.insert(
                            hd.key.to_string(),
                            String::from_utf8_lossy(hd.value.unwrap_or(&[])).into_owned(),
                        );
                    }
                }
                let payload = m.payload().unwrap_or(&[]).to_vec();
                if !m.topic().ends_with(".alerts")
                    && let Some(id) = id_of(&payload)
                {
                    ids.insert(id);
                }
                out.push(Seen {
                    topic: m.topic().to_string(),
                    key: m.key().map(<[u8]>::to_vec),
                    headers,
                    payload,
                });
                last_new = Instant::now();
            }
            Some(Err(e)) => eprintln!("verify consumer: {e}"),
            None => {
                if ids.len() >= want && last_new.elapsed() >= quiet {
                    break;
                }
            }
        }
    }
    out
}

/// Per id, how many times it appeared across the decision topics.
pub fn tally(seen: &[Seen], alerts_topic: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in seen.iter().filter(|s| s.topic != alerts_topic) {
        if let Some(id) = id_of(&s.payload) {
            *m.entry(id).or_insert(0) += 1;
        }
    }
    m
}

/// Ids of `records` seen nowhere, and how many extra copies were seen in all.
pub fn losses(
    records: &[(String, String, Vec<u8>)],
    counts: &HashMap<String, usize>,
) -> (Vec<String>, usize) {
    let lost = records
        .iter()
        .filter(|r| !counts.contains_key(&r.0))
        .map(|r| r.0.clone())
        .collect();
    let duplicates = counts.values().map(|n| n - 1).sum();
    (lost, duplicates)
}

/// A `fairgate run` child process.
pub struct Child {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Child {
    pub fn start(config: &std::path::Path, log: PathBuf) -> Child {
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_fairgate"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start fairgate");
        Child { child, log }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn term(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Wait for exit up to `limit`; returns the elapsed time if it exited.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker of the test's own (nisshi, with its log kept in SQLite in `dir`),
/// which the test can stop and start again on the same port and storage.
pub struct OwnBroker {
    pub port: u16,
    dir: PathBuf,
    process: Option<std::process::Child>,
}

impl OwnBroker {
    pub fn start(dir: &std::path::Path) -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut b = OwnBroker {
            port,
            dir: dir.to_path_buf(),
            process: None,
        };
        b.resume();
        b
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port and storage, and wait until it listens.
    pub fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nisshi.log"))
            .unwrap();
        let child = std::process::Command::new("nisshi")
            .current_dir(&self.dir)
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://nisshi.db"])
            .args(["--group-initial-rebalance-delay", "200ms"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nisshi (scripts/test installs it)");
        self.process = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nisshi did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop it (SIGTERM) and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &p.id().to_string()])
                .status();
            let start = Instant::now();
            while matches!(p.try_wait(), Ok(None)) {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = p.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// One record of the bad-input corpus (`tests/data/bad-input/`).
#[derive(Debug, Clone)]
pub struct BadRecord {
    pub kind: String,
    pub why: String,
    /// `output`, `blocked`, `dead_letter`, or `any`.
    pub expect: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// The marker every value fairgate must strip carries in the corpus.
pub const SECRET: &str = "SECRET";

/// The bad-input corpus, large records expanded.
pub fn bad_input() -> Vec<BadRecord> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = include_str!("../data/bad-input/corpus.json");
    let entries: Vec<serde_json::Value> = serde_json::from_str(text).expect("corpus.json");
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            let mut payload = b64.decode(s("payload_b64")).expect("payload_b64");
            if let Some(x) = e.get("expand") {
                let marker = x["marker"].as_str().unwrap().as_bytes();
                let times = x["times"].as_u64().unwrap() as usize;
                let mut fill = x["char"].as_str().unwrap().repeat(times);
                if let Some(then) = x["then"].as_str() {
                    fill.push_str(&then.repeat(times));
                }
                let at = payload
                    .windows(marker.len())
                    .position(|w| w == marker)
                    .expect("the marker");
                payload.splice(at..at + marker.len(), fill.into_bytes());
            }
            let key = match &e["key"] {
                serde_json::Value::Null => None,
                serde_json::Value::String(k) => Some(k.clone().into_bytes()),
                k => Some(b64.decode(k["b64"].as_str().unwrap()).expect("key b64")),
            };
            BadRecord {
                kind: s("kind"),
                why: s("why"),
                expect: s("expect"),
                key,
                payload,
            }
        })
        .collect()
}

/// Produce records with any key (or none), as they are.
pub fn produce_raw(brokers: &str, topic: &str, records: &[BadRecord]) {
    send_all(
        brokers,
        topic,
        records
            .iter()
            .map(|r| (r.key.as_deref(), r.payload.as_slice(), None)),
    );
}

/// A port free now (for an instance's HTTP address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with the tests' admin token: the status (0 when
/// nothing listens) and the body.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let body = body.unwrap_or("");
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer test-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}
