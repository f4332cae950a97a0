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
    self, GuardStage, Health, Input, PipelineParts, Produced, Role, RunSummary, Stage,
};
use fairgate::metrics::Metrics;
use fairgate::{CompiledPolicy, Guard, Now};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// Generous: only a hang takes this long.
const HANG: Duration = Duration::from_secs(60);

type Mock = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster of `brokers` brokers holding the test's five topics, one
/// partition each (the mock serves a group only the first partition of a
/// multi-partition topic).
fn cluster(brokers: i32, name: &str) -> (Mock, TestTopics) {
    cluster_with(brokers, name, 1)
}

/// [`cluster`] with `input_partitions` partitions of the input topic.
fn cluster_with(brokers: i32, name: &str, input_partitions: i32) -> (Mock, TestTopics) {
    let mock = MockCluster::new(brokers).expect("mock cluster");
    let t = TestTopics::on(name, &mock.bootstrap_servers());
    for topic in t.all() {
        let partitions = if topic == t.input {
            input_partitions
        } else {
            1
        };
        mock.create_topic(topic, partitions, 1)
            .expect("create topic");
    }
    (mock, t)
}

/// A mock cluster of two brokers: the input topic and the group's
/// coordinator on broker 1, the topics `on_second` names on broker 2 (which
/// the test can take down), the rest on broker 1.
fn split_cluster(name: &str, on_second: impl Fn(&TestTopics) -> Vec<String>) -> (Mock, TestTopics) {
    split_cluster_with(name, 1, on_second)
}

/// [`split_cluster`] with `input_partitions` partitions of the input topic.
fn split_cluster_with(
    name: &str,
    input_partitions: i32,
    on_second: impl Fn(&TestTopics) -> Vec<String>,
) -> (Mock, TestTopics) {
    let (mock, t) = cluster_with(2, name, input_partitions);
    for topic in t.all() {
        let partitions = if topic == t.input {
            input_partitions
        } else {
            1
        };
        for p in 0..partitions {
            mock.partition_leader(topic, p, Some(1)).unwrap();
        }
    }
    for topic in on_second(&t) {
        mock.partition_leader(&topic, 0, Some(2)).unwrap();
    }
    mock.coordinator(MockCoordinator::Group(t.group.clone()), 1)
        .unwrap();
    (mock, t)
}

/// The topics the pipeline produces to.
fn produced_topics(t: &TestTopics) -> Vec<String> {
    vec![
        t.output.clone(),
        t.blocked.clone(),
        t.dead_letter.clone(),
        t.alerts.clone(),
    ]
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
    metrics: Metrics,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<RunSummary, pipeline::PipelineError>>,
}

fn start(config: &Config, stage: impl Stage, metrics: Metrics) -> Running {
    let (_no_overrides, alerts) = tokio::sync::mpsc::channel(1);
    start_with(config, stage, metrics, alerts)
}

/// [`start`], with the receiving end of the overrides' alerts.
fn start_with(
    config: &Config,
    stage: impl Stage,
    metrics: Metrics,
    alerts: tokio::sync::mpsc::Receiver<fairgate::fairness::alert::AlertEvent>,
) -> Running {
    let health = Arc::new(Health::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(pipeline::run(
        PipelineParts {
            config: config.clone(),
            stage: Arc::new(stage),
            metrics: metrics.clone(),
            health: health.clone(),
            clock: Arc::new(SystemClock),
            alerts,
            alert_fanout: None,
        },
        cancel.clone(),
    ));
    Running {
        health,
        metrics,
        cancel,
        task,
    }
}

impl Running {
    fn completed(&self) -> u64 {
        self.health.completed.load(Ordering::Relaxed)
    }

    fn consumed(&self) -> u64 {
        self.health.consumed.load(Ordering::Relaxed)
    }

    /// Rebalance callbacks of `kind` (`assign`, `revoke`) so far.
    fn rebalances(&self, kind: &str) -> u64 {
        self.metrics.rebalances.with_label_values(&[kind]).get()
    }

    /// Wait until `done` holds; fails on a hang, or at once when the
    /// pipeline stopped.
    async fn wait(&self, what: &str, done: impl Fn() -> bool) {
        wait_until(what, || {
            assert!(
                !self.task.is_finished(),
                "the pipeline stopped before it {what}"
            );
            done()
        })
        .await;
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

/// `n` malformed records (dead letters), numbered from `from`.
fn malformed(from: usize, n: usize) -> Vec<(String, String, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            let id = format!("dec-bad-{i}");
            let line = format!("{{\"id\":\"{id}\",\"campaign\":").into_bytes();
            (id, "k".to_string(), line)
        })
        .collect()
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

/// An override's audit alert handed over before the pipeline is told to
/// stop is published, once; once the drain has begun no alert is taken (the
/// override is then refused before it is applied), rather than taken and
/// never published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_published_once_or_refused_never_taken_and_lost() {
    let (_mock, t) = cluster(1, "alert-drain");
    let config = setup(&t, 100, |p| p);
    produce(&t, decisions(40, 0, 71)).await;
    let m = metrics();
    let reached = Arc::new(AtomicBool::new(false));
    let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let gate = Gate {
        inner: guard(&config, &m),
        at: 20,
        reached: reached.clone(),
        open: open.clone(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let p = start_with(&config, gate, m, rx);
    let alert = || {
        Guard::new(CompiledPolicy::load(&config.policy).unwrap())
            .override_campaign(
                "cmp-1",
                fairgate::fairness::campaign::OverrideAction::ForceBlock,
                "ana",
                "checked",
                1_800_000_000_000,
            )
            .unwrap()
    };
    wait_until("reached the gate", || reached.load(Ordering::Relaxed)).await;
    tx.send(alert()).await.unwrap();
    p.cancel.cancel();
    // The drain waits on the held record: an override now must be refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = tx.send(alert()).await;
    *open.0.lock().unwrap() = true;
    open.1.notify_all();
    let summary = p.stop().await;
    assert!(summary.drained);
    assert!(
        late.is_err(),
        "an alert handed over during the drain is refused"
    );
    let (b, topic) = (t.brokers.clone(), t.alerts.clone());
    let on_topic = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .unwrap();
        let (low, high) = c
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .unwrap();
        high - low
    })
    .await
    .unwrap();
    assert_eq!(on_topic, 1, "the first override's alert, once");
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

/// Every id of `records` appears exactly once across the decision topics.
async fn each_once(t: &TestTopics, records: &[(String, String, Vec<u8>)]) {
    let counts = tally(&routed(t).await);
    for id in ids(records) {
        assert_eq!(counts.get(&id), Some(&1), "{id}: records across the topics");
    }
}

/// Wait until the group has committed `want` on the input; fails on a hang,
/// or at once when the pipeline stopped.
async fn wait_committed(p: &Running, t: &TestTopics, want: i64) {
    let start = Instant::now();
    loop {
        assert!(
            !p.task.is_finished(),
            "the pipeline stopped before committing {want}"
        );
        let c = committed_async(t).await;
        if c == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < HANG,
            "hang guard: committed {c:?}, never {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Another member of the test's group: a plain consumer polled on a thread
/// of its own, committing nothing.
struct Member {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Member {
    fn join(t: &TestTopics) -> Member {
        Member::join_with(t, "range,roundrobin")
    }

    /// [`Member::join`] with the group's assignment strategy.
    fn join_with(t: &TestTopics, strategy: &str) -> Member {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &t.brokers)
            .set("group.id", &t.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "4000")
            .set("partition.assignment.strategy", strategy)
            .create()
            .unwrap();
        c.subscribe(&[&t.input]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let _ = c.poll(Duration::from_millis(50));
            }
            c.unsubscribe();
        });
        Member { stop, thread }
    }

    /// Leave the group (the consumer closes when its thread ends).
    async fn leave(self) {
        self.stop.store(true, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || self.thread.join().unwrap())
            .await
            .unwrap();
    }
}

/// A delivery the broker refuses for good (the topics decisions go to are not
/// authorised) stops the pipeline with an error, and the group's commit never
/// covers the refused record: it is read again once the cause is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_delivery_error_stops_the_pipeline_without_committing_the_record() {
    let (mock, t) = cluster(1, "fatal");
    for topic in [&t.output, &t.blocked, &t.alerts] {
        mock.topic_error(
            topic,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    }
    let config = setup(&t, 1000, |p| p);
    // Offsets 0..20 malformed (the dead-letter topic works), then decisions.
    let mut records = malformed(0, 20);
    records.extend(decisions(200, 0, 64));
    produce(&t, records).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m);
    let result = tokio::time::timeout(HANG, p.task)
        .await
        .expect("the pipeline stops on a fatal delivery error (hang guard)")
        .unwrap();
    let err = result.expect_err("the pipeline stops with an error");
    assert!(
        matches!(err, pipeline::PipelineError::FatalDelivery { .. }),
        "{err}"
    );
    assert!(p.health.fatal.lock().is_some(), "/readyz names the error");
    let c = committed_async(&t).await;
    assert!(
        c.unwrap_or(0) <= 20,
        "committed {c:?}: past the first refused record, at offset 20"
    );
}

/// At most `max_in_flight` records are taken and not committed. With every
/// produced topic on a broker that is down, the pipeline reads exactly
/// `max_in_flight` records, however long it is held back; once the broker
/// is back, what it has read less what the group committed never passes the
/// bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_in_flight_records_are_taken_and_not_committed() {
    let (mock, t) = split_cluster("permits", produced_topics);
    mock.broker_down(2).unwrap();
    let max = 50;
    let config = setup(&t, max, |p| p);
    let records = decisions(500, 0, 65);
    produce(&t, records.clone()).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m);
    p.wait("read max_in_flight records", || p.consumed() >= max as u64)
        .await;
    // Held back past the pause (1 s) and many commit intervals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.consumed(), max as u64, "read with nothing acknowledged");
    assert_eq!(committed_async(&t).await.unwrap_or(0), 0);

    mock.broker_up(2).unwrap();
    let mut most = 0;
    let start = Instant::now();
    while p.completed() < 500 {
        assert!(start.elapsed() < HANG, "hang guard: never completed");
        assert!(!p.task.is_finished(), "the pipeline stopped");
        // Read first: the difference can only be smaller than the truth.
        let read = p.consumed() as i64;
        let done = committed_async(&t).await.unwrap_or(0);
        most = most.max(read - done);
    }
    assert!(
        most <= max as i64,
        "{most} records read and not committed, max_in_flight {max}"
    );
    assert!(p.stop().await.drained);
    each_once(&t, &records).await;
}

/// `QueueFull` is back-pressure, not an error: with a producer queue of five
/// records and the produced topics' broker down, the judge thread waits on
/// the full queue, and once the broker is back every record is delivered
/// once and the run ends without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_is_back_pressure_not_an_error() {
    let (mock, t) = split_cluster("queue-full", produced_topics);
    mock.broker_down(2).unwrap();
    let mut config = setup(&t, 100, |p| p);
    config
        .kafka
        .producer
        .insert("queue.buffering.max.messages".into(), "5".into());
    let records = decisions(300, 0, 66);
    produce(&t, records.clone()).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m);
    p.wait("read max_in_flight records", || p.consumed() >= 100)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let judged = p.metrics.processing.get_sample_count();
    assert!(
        judged < 100,
        "{judged} of 100 records judged: the judge thread did not wait on the full queue"
    );
    mock.broker_up(2).unwrap();
    p.wait("completed every record", || p.completed() == 300)
        .await;
    assert!(p.stop().await.drained);
    each_once(&t, &records).await;
}

/// Held back for longer than `max.poll.interval.ms` (its produced topics'
/// broker down), the consumer pauses its partition and keeps polling, so it
/// stays in the group: no revocation, and no record read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_back_past_the_poll_interval_it_pauses_and_stays_in_the_group() {
    let (mock, t) = split_cluster("pause", produced_topics);
    mock.broker_down(2).unwrap();
    let mut config = setup(&t, 20, |p| p);
    config
        .kafka
        .consumer
        .insert("max.poll.interval.ms".into(), "5000".into());
    let records = decisions(200, 0, 67);
    produce(&t, records.clone()).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m);
    p.wait("read max_in_flight records", || p.consumed() >= 20)
        .await;
    // Past max.poll.interval.ms.
    tokio::time::sleep(Duration::from_secs(8)).await;
    mock.broker_up(2).unwrap();
    p.wait("completed every record", || p.completed() == 200)
        .await;
    assert_eq!(
        p.rebalances("revoke"),
        0,
        "the partition was taken away while held back"
    );
    let summary = p.stop().await;
    assert_eq!(summary.consumed, 200, "records read twice");
    each_once(&t, &records).await;
}

/// The config of a pipeline held back: `max_in_flight` 20, and a flush on
/// revocation that waits 2 s for a broker that is down.
fn held_back_config(t: &TestTopics) -> Config {
    let mut config = setup(t, 20, |p| p);
    config.pipeline.grace_period_secs = 2;
    config
}

/// A pipeline given `records` whose output's broker is down (nothing is
/// acknowledged): once it has read its 20 and been held back past the
/// pause (1 s).
async fn held_back(
    config: &Config,
    t: &TestTopics,
    records: Vec<(String, String, Vec<u8>)>,
) -> Running {
    produce(t, records).await;
    let m = metrics();
    let p = start(config, guard(config, &m), m);
    p.wait("read max_in_flight records", || p.consumed() >= 20)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    p
}

/// A partition revoked and assigned again while the consumer is paused is
/// fetched again: librdkafka keeps a pause across reassignment, and the
/// pipeline resumes it (with its other partitions, once it may read again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_assigned_while_paused_is_resumed() {
    let (mock, t) = split_cluster("resume", produced_topics);
    mock.broker_down(2).unwrap();
    let config = held_back_config(&t);
    let records = decisions(200, 0, 68);
    let p = held_back(&config, &t, records.clone()).await;
    // Another member joins and leaves: the partition is revoked, and in the
    // end assigned to the pipeline again.
    let before = p.rebalances("assign");
    let other = Member::join(&t);
    p.wait("rebalanced", || p.rebalances("assign") > before)
        .await;
    other.leave().await;
    p.wait("rebalanced again", || p.rebalances("assign") > before + 1)
        .await;
    mock.broker_up(2).unwrap();
    wait_committed(&p, &t, 200).await;
    assert!(p.stop().await.drained);
    let counts = tally(&routed(&t).await);
    for id in ids(&records) {
        assert!(counts.contains_key(&id), "{id} lost");
    }
}

/// Under a cooperative protocol, a partition given back to the pipeline
/// while it holds back (its places all taken, its partitions paused) stays
/// paused with the others: it is not read past `max_in_flight` (before, the
/// assignment resumed it and the paused loop took its records over the
/// limit, up to the whole partition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_assigned_while_held_back_is_not_read_past_the_bound() {
    let (mock, t) = split_cluster_with("coop", 2, produced_topics);
    mock.broker_down(2).unwrap();
    let mut config = held_back_config(&t);
    config.kafka.consumer.insert(
        "partition.assignment.strategy".into(),
        "cooperative-sticky".into(),
    );
    let p = held_back(&config, &t, decisions(400, 0, 69)).await;
    let before = p.rebalances("assign");
    let other = Member::join_with(&t, "cooperative-sticky");
    p.wait("rebalanced", || p.rebalances("revoke") > 0).await;
    other.leave().await;
    p.wait("given the partition back", || {
        p.rebalances("assign") > before
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Nothing is acknowledged (the output's broker is down): every record
    // read is in flight. A revocation gives places back, so the bound may
    // be filled again once per rebalance; never the partitions' whole 400.
    let read = p.consumed();
    assert!(read <= 3 * 20 + 10, "read {read} with max_in_flight 20");
    mock.broker_up(2).unwrap();
    let summary = p.stop().await;
    assert!(summary.consumed <= 400);
}

/// The guard, noting which input offsets raised an alert.
struct Spy {
    inner: GuardStage,
    alerted: Arc<std::sync::Mutex<Vec<i64>>>,
}

impl Stage for Spy {
    fn process(&self, input: Input) -> Vec<Produced> {
        let offset = input.offset;
        let produced = self.inner.process(input);
        if produced.iter().any(|p| p.out.role == Role::Alerts) {
            self.alerted.lock().unwrap().push(offset);
        }
        produced
    }

    fn policy_version(&self) -> String {
        self.inner.policy_version()
    }
}

/// An input whose campaign changed state produces an alert as well as its
/// decision; its offset is committed only once the alert is acknowledged
/// too. With the alerts topic's broker down, the commit stops at the first
/// input that raised an alert, though every later decision is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_whose_alert_is_unacknowledged_is_not_committed() {
    let (mock, t) = split_cluster("alert-ack", |t| vec![t.alerts.clone()]);
    mock.broker_down(2).unwrap();
    let n = 3000;
    // Verdicts on fewer numbers, so the skewed campaign is flagged soon.
    let config = setup(&t, n, |p| {
        p.replace(
            "min_campaign_considered = 300",
            "min_campaign_considered = 60",
        )
        .replace("min_campaign_selected = 300", "min_campaign_selected = 60")
        .replace("min_group_considered = 50", "min_group_considered = 10")
    });
    let records = decisions(n, 0, 70);
    produce(&t, records.clone()).await;

    let m = metrics();
    let alerted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let spy = Spy {
        inner: guard(&config, &m),
        alerted: alerted.clone(),
    };
    let p = start(&config, spy, m);
    p.wait("completed every record without an alert", || {
        p.consumed() == n as u64 && p.completed() as usize + alerted.lock().unwrap().len() >= n
    })
    .await;
    let first = *alerted
        .lock()
        .unwrap()
        .iter()
        .min()
        .expect("the skewed campaign raised an alert");
    // Many commit intervals (50 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        committed_async(&t).await,
        Some(first),
        "the commit passed the input at {first}, whose alert is unacknowledged"
    );

    mock.broker_up(2).unwrap();
    p.wait("completed every record", || p.completed() == n as u64)
        .await;
    assert!(p.stop().await.drained);
    assert_eq!(committed_async(&t).await, Some(n as i64));
}

/// Cancelled while its produced topics' broker is down, the run cannot
/// drain: it gives up, and returns within `grace_period_secs` of the
/// cancellation, leaving the unacknowledged records uncommitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_cannot_finish_ends_within_the_grace_period() {
    let (mock, t) = split_cluster("grace", produced_topics);
    mock.broker_down(2).unwrap();
    let grace = 10;
    let mut config = setup(&t, 100, |p| p);
    config.pipeline.grace_period_secs = grace;
    produce(&t, decisions(300, 0, 71)).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m);
    p.wait("read max_in_flight records", || p.consumed() >= 100)
        .await;
    let cancelled = Instant::now();
    p.cancel.cancel();
    let summary = tokio::time::timeout(HANG, p.task)
        .await
        .expect("the pipeline stops (hang guard)")
        .unwrap()
        .expect("the pipeline stops without an error");
    let took = cancelled.elapsed();
    assert!(
        took <= Duration::from_secs(grace),
        "returned {took:?} after the cancellation; grace period {grace} s"
    );
    assert!(!summary.drained, "nothing could be acknowledged");
    assert_eq!(committed_async(&t).await.unwrap_or(0), 0);
}

/// When a partition moves, its new owner starts each campaign's window
/// empty: it counts only the records it read itself (what a fresh guard
/// makes of them), and reports `window_complete: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_partition_starts_its_windows_empty_on_the_new_owner() {
    let (_mock, t) = cluster(1, "moved");
    let config = setup(&t, 1000, |p| p);
    let records = decisions(600, 0, 72);
    let (first, rest) = records.split_at(400);
    produce(&t, first.to_vec()).await;
    let owned_guard = |m: &Metrics| {
        let g = Arc::new(Guard::new(CompiledPolicy::load(&config.policy).unwrap()));
        let stage = GuardStage::new(g.clone(), m.clone(), Arc::new(SystemClock), None);
        (g, stage)
    };
    let m = metrics();
    let (old_owner, stage) = owned_guard(&m);
    let a = start(&config, stage, m);
    a.wait("completed the first records", || a.completed() == 400)
        .await;
    assert!(a.stop().await.drained);

    produce(&t, rest.to_vec()).await;
    let m = metrics();
    let (new_owner, stage) = owned_guard(&m);
    let b = start(&config, stage, m);
    b.wait("completed the rest", || b.completed() == 200).await;
    assert!(b.stop().await.drained);

    let fresh = Guard::new(CompiledPolicy::load(&config.policy).unwrap());
    let now = fairgate::clock::Clock::now_ms(&SystemClock);
    for (_, key, payload) in rest {
        fresh.judge(Some(key.as_bytes()), payload, Now::At(now));
    }
    let campaign = &rest[0].1;
    let numbers = |g: &Guard| {
        let r = g.campaign(campaign).expect("campaign tracked");
        let n: Vec<(u64, u64)> = r
            .dimensions
            .iter()
            .map(|d| (d.considered, d.selected))
            .collect();
        (n, r.window_complete)
    };
    let (old, _) = numbers(&old_owner);
    let (moved, complete) = numbers(&new_owner);
    let (expected, _) = numbers(&fresh);
    assert!(
        old.iter().any(|&(c, _)| c > 0),
        "the old owner counted {campaign}: {old:?}"
    );
    assert_eq!(
        moved, expected,
        "{campaign} on the new owner counts only what it read"
    );
    assert!(!complete, "{campaign}: window_complete on the new owner");
}

/// The dead letters of records a topic refused, read back, with their offsets'
/// headers parsed.
fn refused_letters(seen: &[common::Seen]) -> Vec<&common::Seen> {
    seen.iter()
        .filter(|s| {
            s.headers.get("fairgate-error-kind").map(String::as_str) == Some("refused_by_topic")
        })
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Three records of the kind that used to stop fairgate for good:
/// * a decision whose id alone is 600 KB, copied into a header: the header
///   is capped, so the record fits and is routed as usual;
/// * a 1.2 MB decision: its output record is larger than the producer takes;
/// * a 1.1 MB record that is not JSON, too large for the dead-letter topic.
///
/// The last two go to the dead-letter topic cut to fit, saying so, with their
/// size, digest and input offset; every header value stays short; the
/// pipeline goes on and commits the input to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_its_topic_is_dead_lettered_cut_to_fit_and_the_pipeline_goes_on() {
    let (_mock, t) = cluster(1, "too-large");
    let config = setup(&t, 1000, |p| p);
    let mut batch = decisions(11, 0, 81);
    let (_, key, normal) = batch.remove(5);
    let after = batch.split_off(5);
    let mut records = batch;
    let mut long_id: serde_json::Value = serde_json::from_slice(&normal).unwrap();
    let huge_id = format!("dec-huge-{}", "x".repeat(600_000));
    long_id["id"] = serde_json::Value::String(huge_id.clone());
    let mut big: serde_json::Value = serde_json::from_slice(&normal).unwrap();
    big["id"] = "dec-big".into();
    big["ext"] = serde_json::json!({"note": "y".repeat(1_200_000)});
    let mut junk = vec![0xffu8];
    junk.extend(std::iter::repeat_n(b'A', 1_100_000));
    records.push((
        huge_id.clone(),
        key.clone(),
        serde_json::to_vec(&long_id).unwrap(),
    ));
    records.push((
        "dec-big".into(),
        key.clone(),
        serde_json::to_vec(&big).unwrap(),
    ));
    records.push(("junk".into(), key, junk.clone()));
    records.extend(after);
    let total = records.len() as i64;
    let mut routed_ids: Vec<String> = records[..5]
        .iter()
        .chain(&records[8..])
        .map(|r| r.0.clone())
        .collect();
    routed_ids.push(huge_id.clone());
    produce(&t, records).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m.clone());
    wait_committed(&p, &t, total).await;
    assert!(p.health.fatal.lock().is_none());
    let (b, topics) = (t.brokers.clone(), produced_topics(&t));
    let seen = tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        common::collect_on(&b, &topics, 11, Duration::from_secs(2), HANG)
    })
    .await
    .unwrap();
    p.stop().await;

    for id in &routed_ids {
        let n = seen
            .iter()
            .filter(|s| s.topic != t.alerts && id_of(&s.payload).as_deref() == Some(id))
            .count();
        assert_eq!(n, 1, "{} routed once", &id[..id.len().min(20)]);
    }
    let letters = refused_letters(&seen);
    assert_eq!(letters.len(), 2, "both refused records are dead letters");
    for (letter, by, offset) in [(letters[0], "output", 6), (letters[1], "dead_letter", 7)] {
        assert_eq!(letter.topic, t.dead_letter);
        let h = &letter.headers;
        assert_eq!(h["fairgate-refused-by"], by);
        assert_eq!(h["fairgate-input-partition"], "0");
        assert_eq!(h["fairgate-input-offset"], offset.to_string());
        assert_eq!(h["fairgate-truncated"], "true");
        assert!(letter.payload.len() <= 16 * 1024);
        let size: usize = h["fairgate-original-bytes"].parse().unwrap();
        assert!(size > 1_000_000, "{size}");
        assert!(h["fairgate-error"].contains("refused"), "{h:?}");
    }
    // The malformed record's dead letter is the record itself: its digest is
    // the input's, and the payload its first bytes.
    let h = &letters[1].headers;
    assert_eq!(h["fairgate-original-bytes"], junk.len().to_string());
    assert_eq!(h["fairgate-original-sha256"], sha256_hex(&junk));
    assert_eq!(letters[1].payload[..], junk[..letters[1].payload.len()]);
    for s in &seen {
        for (k, v) in &s.headers {
            assert!(v.len() <= 1024, "header {k} is {} bytes", v.len());
        }
    }
    assert_eq!(
        m.dead_letters
            .with_label_values(&["refused_by_topic"])
            .get(),
        2
    );
}

/// The broker refuses a produce request with MESSAGE_TOO_LARGE (as a topic
/// with a small `max.message.bytes` would): each record of it reaches the
/// dead-letter topic instead, nothing stops, the input is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_broker_refuses_go_to_dead_letter_and_the_input_is_committed() {
    let (mock, t) = cluster(1, "broker-refuses");
    let config = setup(&t, 1000, |p| p);
    let records = decisions(60, 0, 84);
    let total = records.len() as i64;
    produce(&t, records.clone()).await;
    // The next produce request, fairgate's first, is refused.
    mock.request_errors(
        rdkafka::types::RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let m = metrics();
    let p = start(&config, guard(&config, &m), m.clone());
    wait_committed(&p, &t, total).await;
    let routed = routed(&t).await;
    p.stop().await;
    let n = tally(&routed);
    for (id, _, _) in &records {
        assert_eq!(n.get(id), Some(&1), "{id} routed once");
    }
    let refused = routed[&t.dead_letter]
        .iter()
        .filter(|s| s.headers.contains_key("fairgate-refused-by"))
        .count();
    assert!(refused > 0, "the refused records were dead-lettered");
    let counted: u64 = ["output", "blocked", "dead_letter", "alerts"]
        .iter()
        .map(|r| {
            m.delivery_errors
                .with_label_values(&[r, "dead_lettered"])
                .get()
        })
        .sum();
    assert!(
        counted as usize >= refused,
        "{counted} counted, {refused} read"
    );
}

/// A judge thread wedged on one record (the stage never returns): records
/// wait in flight and nothing moves. With the shipped `stall_after_secs`, the
/// pipeline is reported not ready within 30 s, with the reason and the
/// metric; once the record goes through, it is ready again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_pipeline_is_reported_not_ready_within_30_s_and_ready_again_when_it_moves() {
    let (_mock, t) = cluster(1, "wedged");
    let config = setup(&t, 20, |p| p);
    assert_eq!(config.pipeline.stall_after_secs, 15, "the shipped default");
    let records = decisions(100, 0, 91);
    produce(&t, records).await;
    let m = metrics();
    let gate = Gate {
        inner: guard(&config, &m),
        at: 10,
        reached: Arc::new(AtomicBool::new(false)),
        open: Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new())),
    };
    let (reached, open) = (gate.reached.clone(), gate.open.clone());
    let p = start(&config, gate, m.clone());
    p.wait("reached the wedge", || reached.load(Ordering::Relaxed))
        .await;
    assert!(p.health.ready(), "ready while it moved");
    let wedged = Instant::now();
    while p.health.ready() {
        assert!(
            wedged.elapsed() < Duration::from_secs(30),
            "a wedged pipeline still reported ready after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = p.health.stalled.lock().clone().expect("the reason");
    assert!(
        reason.contains("no input record consumed or completed")
            && reason.contains("records are in flight"),
        "{reason}"
    );
    assert_eq!(m.stalled.get(), 1);
    {
        let (o, cv) = &*open;
        *o.lock().unwrap() = true;
        cv.notify_all();
    }
    p.wait("ready again", || p.health.ready()).await;
    assert_eq!(m.stalled.get(), 0);
    wait_committed(&p, &t, 100).await;
    p.stop().await;
}

/// The byte bound: with every produced topic on a broker that is down, the
/// pipeline reads records only until `max_in_flight_bytes` of them wait for
/// an acknowledgement (the record that crosses the bound is the last one
/// read), however many places `max_in_flight` has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_in_flight_bytes_are_read_and_unacknowledged() {
    let (mock, t) = split_cluster("bytes", produced_topics);
    mock.broker_down(2).unwrap();
    let mut config = setup(&t, 100_000, |p| p);
    config.pipeline.max_in_flight_bytes = 1 << 20;
    let records = decisions(3_000, 0, 66);
    let largest = records.iter().map(|r| r.1.len() + r.2.len()).max().unwrap();
    let smallest = records.iter().map(|r| r.1.len() + r.2.len()).min().unwrap();
    produce(&t, records.clone()).await;

    let m = metrics();
    let p = start(&config, guard(&config, &m), m.clone());
    p.wait("read up to the byte bound", || {
        m.in_flight_bytes.get() >= 1 << 20
    })
    .await;
    // Held back past the pause (1 s) and many commit intervals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = m.in_flight_bytes.get() as usize;
    assert!(
        held < (1 << 20) + largest,
        "{held} bytes unacknowledged, bound 1 MiB + one record"
    );
    assert!(
        p.consumed() as usize <= (1 << 20) / smallest + 1,
        "{} records read",
        p.consumed()
    );
    mock.broker_up(2).unwrap();
    p.wait("completed every record", || p.completed() == 3_000)
        .await;
    assert!(p.stop().await.drained);
    each_once(&t, &records).await;
}

/// A record's bytes come back when it is acknowledged, not when it is
/// committed: with commits 60 s apart and a byte bound a third of the input,
/// every record is read and completed long before the first commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_come_back_at_acknowledgement_not_at_commit() {
    let (_mock, t) = cluster(1, "bytes-at-ack");
    let mut config = setup(&t, 100_000, |p| p);
    config.pipeline.max_in_flight_bytes = 1 << 20;
    config.pipeline.commit_interval_ms = 60_000;
    // The mock broker keeps about 5 MB of a partition: 3,000 records of
    // about 1.2 KB fit, and are three times the bound.
    let records = decisions(3_000, 0, 67);
    let total: usize = records.iter().map(|r| r.1.len() + r.2.len()).sum();
    assert!(
        total > 3 << 20,
        "{total} bytes: the input is several bounds"
    );
    produce(&t, records.clone()).await;
    let m = metrics();
    let p = start(&config, guard(&config, &m), m.clone());
    p.wait("completed every record", || p.completed() == 3_000)
        .await;
    assert_eq!(
        committed_async(&t).await.unwrap_or(0),
        0,
        "nothing committed yet: the bytes came back at acknowledgement"
    );
    assert_eq!(m.in_flight_bytes.get(), 0);
    assert_eq!(m.in_flight.get(), 3_000, "places wait for the commit");
    assert!(p.stop().await.drained);
    assert_eq!(committed_async(&t).await, Some(3_000));
}
