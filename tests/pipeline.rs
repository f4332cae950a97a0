//! The pipeline against librdkafka's in-process mock cluster: no broker to
//! install, seconds to run. Each test has its own cluster, topics and group,
//! runs the real `pipeline::run` with the guard, and reads back what reached
//! the topics and what the group committed.
//!
//! Timeouts here only guard against a hang; no assertion depends on how fast
//! the machine is.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{POLICY, TestTopics, decisions, id_of, produce_on, scratch, unique};
use fairgate::clock::SystemClock;
use fairgate::config::Config;
use fairgate::kafka::pipeline::{
    self, GuardStage, Health, Input, PipelineParts, Produced, RunSummary, Stage,
};
use fairgate::metrics::Metrics;
use fairgate::{CompiledPolicy, Guard};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// Generous: only a hang takes this long.
const HANG: Duration = Duration::from_secs(60);

type Mock = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster of `brokers` brokers holding the test's five topics, one
/// partition each (the mock serves a group only the first partition of a
/// multi-partition topic).
fn cluster(brokers: i32, name: &str) -> (Mock, TestTopics) {
    let mock = MockCluster::new(brokers).expect("mock cluster");
    let t = TestTopics::on(name, &mock.bootstrap_servers());
    for topic in t.all() {
        mock.create_topic(topic, 1, 1).expect("create topic");
    }
    (mock, t)
}

/// The service configuration for `t`, with the policy `edit` makes of the
/// shipped one.
///
/// Two librdkafka settings are shortened for the mock: its coordinator keeps a
/// member that left until that member's session times out (a second run in
/// the same group waits that long), and a broker brought back up is found
/// sooner.
fn setup(t: &TestTopics, max_in_flight: usize, edit: impl Fn(String) -> String) -> Config {
    let dir = scratch("pipeline");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, edit(POLICY.to_string())).unwrap();
    let mut config = Config::from_toml(&t.config_toml(&policy, max_in_flight, 30)).unwrap();
    let k = &mut config.kafka;
    k.consumer
        .insert("session.timeout.ms".into(), "4000".into());
    k.common
        .insert("reconnect.backoff.max.ms".into(), "1000".into());
    config
}

/// Missing TCF consent is withheld: such decisions go to the blocked topic.
fn withheld(p: String) -> String {
    p.replace("no_consent = \"contextual\"", "no_consent = \"withheld\"")
}

/// The guard as the service builds it, on the configured policy.
fn guard(config: &Config, metrics: &Metrics) -> GuardStage {
    let policy = CompiledPolicy::load(&config.policy).unwrap();
    GuardStage::new(
        Arc::new(Guard::new(policy)),
        metrics.clone(),
        Arc::new(SystemClock),
        None,
    )
}

/// A pipeline running in a task of its own.
struct Running {
    health: Arc<Health>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<RunSummary, pipeline::PipelineError>>,
}

fn start(config: &Config, stage: impl Stage, metrics: Metrics) -> Running {
    let health = Arc::new(Health::default());
    let cancel = CancellationToken::new();
    let (_no_overrides, alerts) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(pipeline::run(
        PipelineParts {
            config: config.clone(),
            stage: Arc::new(stage),
            metrics,
            health: health.clone(),
            clock: Arc::new(SystemClock),
            alerts,
            alert_fanout: None,
        },
        cancel.clone(),
    ));
    Running {
        health,
        cancel,
        task,
    }
}

impl Running {
    fn completed(&self) -> u64 {
        self.health.completed.load(Ordering::Relaxed)
    }

    /// Cancel, and wait for the drain to end.
    async fn stop(self) -> RunSummary {
        self.cancel.cancel();
        tokio::time::timeout(HANG, self.task)
            .await
            .expect("the pipeline stops (hang guard)")
            .unwrap()
            .expect("the pipeline stops without an error")
    }
}

fn metrics() -> Metrics {
    Metrics::new(prometheus::Registry::new(), 10)
}

/// Wait until `done` holds; fails only on a hang.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG, "hang guard: never {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the group committed on partition 0 of `topic` (`None`: nothing yet).
fn committed(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    match got.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

async fn committed_async(t: &TestTopics) -> Option<i64> {
    let (b, g, i) = (t.brokers.clone(), t.group.clone(), t.input.clone());
    tokio::task::spawn_blocking(move || committed(&b, &g, &i))
        .await
        .unwrap()
}

/// One record read back.
struct Seen {
    id: String,
    headers: HashMap<String, String>,
}

/// Everything on partition 0 of `topic`, from the start to its end now.
fn read_all(brokers: &str, topic: &str) -> Vec<Seen> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("read"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (low, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    while (out.len() as i64) < high - low {
        assert!(start.elapsed() < HANG, "hang guard: reading {topic}");
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        let v = String::from_utf8_lossy(x.value.unwrap_or(&[]));
                        (x.key.to_string(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let id = id_of(m.payload().unwrap_or(&[])).expect("every record names its decision");
        out.push(Seen { id, headers });
    }
    out
}

/// The decision topics' records, read back: topic → records.
async fn routed(t: &TestTopics) -> HashMap<String, Vec<Seen>> {
    let t = t.clone();
    tokio::task::spawn_blocking(move || {
        [&t.output, &t.blocked, &t.dead_letter]
            .into_iter()
            .map(|topic| (topic.clone(), read_all(&t.brokers, topic)))
            .collect()
    })
    .await
    .unwrap()
}

/// Per decision id, how many records across the decision topics.
fn tally(routed: &HashMap<String, Vec<Seen>>) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for s in routed.values().flatten() {
        *n.entry(s.id.clone()).or_insert(0) += 1;
    }
    n
}

fn ids(records: &[(String, String, Vec<u8>)]) -> Vec<String> {
    records.iter().map(|r| r.0.clone()).collect()
}

async fn produce(t: &TestTopics, records: Vec<(String, String, Vec<u8>)>) {
    let (b, topic) = (t.brokers.clone(), t.input.clone());
    tokio::task::spawn_blocking(move || produce_on(&b, &topic, &records))
        .await
        .unwrap();
}

/// Every input record ends up in exactly one of output, blocked and dead
/// letter; malformed ones, and only they, in dead letter. After a clean
/// drain the group has committed the input's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_routed_exactly_once_and_the_input_committed_to_its_end() {
    let (_mock, t) = cluster(1, "routing");
    let config = setup(&t, 1000, withheld);
    let records = decisions(600, 23, 61);
    let malformed: HashSet<String> = records
        .iter()
        .filter(|(_, _, b)| fairgate::core::decision::Decision::parse(b).is_err())
        .map(|r| r.0.clone())
        .collect();
    assert!(!malformed.is_empty());
    produce(&t, records.clone()).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m);
    wait_until("completed every record", || p.completed() == 600).await;
    let summary = p.stop().await;
    assert!(summary.drained);
    assert_eq!(summary.consumed, 600);

    let routed = routed(&t).await;
    let counts = tally(&routed);
    for id in ids(&records) {
        assert_eq!(counts.get(&id), Some(&1), "{id}: records across the topics");
    }
    assert_eq!(counts.len(), records.len(), "nothing else was produced");
    let dead: HashSet<String> = routed[&t.dead_letter]
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(
        dead, malformed,
        "dead letter holds exactly the malformed records"
    );
    assert!(
        !routed[&t.blocked].is_empty(),
        "withheld consent is blocked"
    );
    assert!(!routed[&t.output].is_empty());
    for s in routed[&t.output].iter().chain(&routed[&t.blocked]) {
        assert_eq!(s.headers.get("fairgate-decision-id"), Some(&s.id));
    }
    assert_eq!(
        committed_async(&t).await,
        Some(600),
        "committed to the input's end"
    );
}

/// Decisions go to a broker that is down; dead letters to one that is up.
/// An input offset is committed only once its record is acknowledged, and
/// every earlier one too: the commit stops at the first decision, though
/// later malformed records are acknowledged. Once the broker is back,
/// everything is delivered and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_is_committed_only_after_its_records_are_acknowledged() {
    let (mock, t) = cluster(2, "commit-after-ack");
    for topic in [&t.input, &t.dead_letter] {
        mock.partition_leader(topic, 0, Some(1)).unwrap();
    }
    for topic in [&t.output, &t.blocked, &t.alerts] {
        mock.partition_leader(topic, 0, Some(2)).unwrap();
    }
    mock.coordinator(MockCoordinator::Group(t.group.clone()), 1)
        .unwrap();
    mock.broker_down(2).unwrap();
    let config = setup(&t, 1000, |p| p);
    let malformed = |from: usize, n: usize| -> Vec<(String, String, Vec<u8>)> {
        (from..from + n)
            .map(|i| {
                let id = format!("dec-bad-{i}");
                let line = format!("{{\"id\":\"{id}\",\"campaign\":").into_bytes();
                (id, "k".to_string(), line)
            })
            .collect()
    };
    // Offsets 0..20 malformed, 20..220 decisions, 220..240 malformed.
    let mut records = malformed(0, 20);
    records.extend(decisions(200, 0, 62));
    records.extend(malformed(20, 20));
    produce(&t, records.clone()).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m);
    wait_until("completed the malformed records", || p.completed() >= 40).await;
    let mut at_first_decision = None;
    let start = Instant::now();
    while at_first_decision.is_none() {
        assert!(start.elapsed() < HANG, "hang guard: nothing committed");
        at_first_decision = committed_async(&t).await.filter(|&c| c >= 20);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more commit intervals (50 ms) with the decisions unacknowledged.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        at_first_decision,
        Some(20),
        "committed past an unacknowledged record"
    );
    assert_eq!(committed_async(&t).await, Some(20));
    assert_eq!(
        p.completed(),
        40,
        "only the malformed records are acknowledged"
    );

    mock.broker_up(2).unwrap();
    wait_until("completed every record", || p.completed() == 240).await;
    let summary = p.stop().await;
    assert!(summary.drained);
    assert_eq!(committed_async(&t).await, Some(240));
    let counts = tally(&routed(&t).await);
    for id in ids(&records) {
        assert_eq!(counts.get(&id), Some(&1), "{id}: records across the topics");
    }
}

/// The guard, holding back the record at one offset until the test lets it go.
struct Gate {
    inner: GuardStage,
    at: i64,
    reached: Arc<AtomicBool>,
    open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Stage for Gate {
    fn process(&self, input: Input) -> Vec<Produced> {
        if input.offset == self.at {
            self.reached.store(true, Ordering::Relaxed);
            let (open, cv) = &*self.open;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
        }
        self.inner.process(input)
    }

    fn policy_version(&self) -> String {
        self.inner.policy_version()
    }
}

/// Cancelled while the stage holds a record and more wait behind it: the run
/// drains within the grace period, commits exactly what it read (all of it
/// delivered, once), and a second run from there delivers the rest: nothing
/// lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_mid_stream_it_drains_and_a_restart_loses_nothing() {
    let (_mock, t) = cluster(1, "drain");
    let config = setup(&t, 100, withheld);
    let records = decisions(1000, 50, 63);
    produce(&t, records.clone()).await;

    let m = metrics();
    let reached = Arc::new(AtomicBool::new(false));
    let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let gate = Gate {
        inner: guard(&config, &m),
        at: 300,
        reached: reached.clone(),
        open: open.clone(),
    };
    let p = start(&config, gate, m);
    wait_until("reached the gate", || reached.load(Ordering::Relaxed)).await;
    p.cancel.cancel();
    *open.0.lock().unwrap() = true;
    open.1.notify_all();
    let first = p.stop().await;
    assert!(first.drained, "drained within the grace period");
    assert!(first.consumed > 300, "the held record was read");

    let read = first.consumed as usize;
    assert_eq!(
        committed_async(&t).await,
        Some(read as i64),
        "committed what it read"
    );
    let counts = tally(&routed(&t).await);
    assert_eq!(
        counts.len(),
        read,
        "exactly the records read were delivered"
    );
    for id in ids(&records[..read]) {
        assert_eq!(counts.get(&id), Some(&1), "{id}: records across the topics");
    }

    let m = metrics();
    let p = start(&config, guard(&config, &m), m);
    wait_until("completed the rest", || {
        p.completed() == (1000 - read) as u64
    })
    .await;
    let second = p.stop().await;
    assert!(second.drained);
    assert_eq!(
        second.consumed,
        (1000 - read) as u64,
        "restarted from the commit"
    );
    assert_eq!(committed_async(&t).await, Some(1000));
    let counts = tally(&routed(&t).await);
    for id in ids(&records) {
        assert_eq!(counts.get(&id), Some(&1), "{id}: records across the topics");
    }
}
