//! The at-least-once pipeline: consume → guard → produce, never losing a record.
//!
//! * Each input record takes a permit from a semaphore of `max_in_flight`
//!   permits, given back only when its offset is **committed**. In-flight work
//!   is therefore bounded, and so are the duplicates a crash can cause.
//! * Every record the guard produces for an input (its routed record, and an
//!   alert when its campaign changed state) is sent with a delivery token; the
//!   producer's delivery callback marks the token acknowledged in
//!   [`Offsets`]. An input offset becomes committable only when all its
//!   records, and all earlier offsets of its partition, are acknowledged.
//! * `QueueFull` is back-pressure: the loop waits and sends again. Delivery
//!   errors are classified: transient ones are sent again, fatal ones stop the
//!   pipeline without committing the record (it is reprocessed on restart).
//! * Acknowledgements, retries and commits are served before new input (a
//!   `biased` select).
//! * On revocation, the producer is flushed and the revoked partitions'
//!   offsets committed before they move.
//! * On cancellation (SIGTERM, SIGINT, a test): stop reading, drain retries,
//!   flush, commit, and give up after the grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::offsets::Offsets;
use super::{ErrorClass, classify};
use crate::clock::Clock;
use crate::config::{Config, Topics};
use crate::core::guard::{Guard, Now, Route};
use crate::fairness::alert::AlertEvent;
use crate::metrics::Metrics;

/// Why the pipeline stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "fatal delivery error to the {role} topic: {error} (record not committed; it is reprocessed on restart)"
    )]
    FatalDelivery { role: &'static str, error: String },
    #[error("cannot start a judge thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(
        "a judge thread stopped unexpectedly (records not committed; they are reprocessed on restart)"
    )]
    WorkerStopped,
}

/// Health of the pipeline, read by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// The consumer holds a non-empty assignment.
    pub assigned: AtomicBool,
    /// The producer can reach the brokers (cleared on "all brokers down",
    /// set again on the next acknowledged delivery).
    pub producer_ok: AtomicBool,
    /// The pipeline loop is running.
    pub running: AtomicBool,
    /// Set when the pipeline stopped on a fatal error.
    pub fatal: Mutex<Option<String>>,
    /// Input records consumed.
    pub consumed: AtomicU64,
    /// Input records whose every produced record is acknowledged.
    pub completed: AtomicU64,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.running.load(Ordering::Relaxed)
            && self.assigned.load(Ordering::Relaxed)
            && self.producer_ok.load(Ordering::Relaxed)
            && self.fatal.lock().is_none()
    }
}

/// What the pipeline does to each record.
#[derive(Clone)]
pub enum Stage {
    /// The guard.
    Guard(Arc<Guard>),
    /// Copy input to output unchanged (the benchmark's baseline).
    PassThrough,
}

/// Which topic a produced record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Output,
    Blocked,
    DeadLetter,
    Alerts,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Output => "output",
            Role::Blocked => "blocked",
            Role::DeadLetter => "dead_letter",
            Role::Alerts => "alerts",
        }
    }

    fn topic(self, t: &Topics) -> &str {
        match self {
            Role::Output => &t.output,
            Role::Blocked => &t.blocked,
            Role::DeadLetter => &t.dead_letter,
            Role::Alerts => &t.alerts,
        }
    }
}

/// One record to produce.
#[derive(Debug)]
pub struct Out {
    pub role: Role,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Vec<u8>,
}

/// The delivery opaque: which input it belongs to, and the record, kept for re-sending.
#[derive(Debug)]
pub struct Token {
    /// `(partition, generation, offset)` of the input record, if any.
    input: Option<(i32, u64, i64)>,
    /// The decision's own ts, for the publish-lag histogram.
    ts_ms: Option<i64>,
    out: Arc<Out>,
    attempts: u32,
}

struct Shared {
    offsets: Mutex<Offsets>,
    /// Held while committing, so the periodic commit and the commit on
    /// revocation never interleave.
    commit_lock: Mutex<()>,
    permits: Arc<Semaphore>,
    /// Records taken over the limit: read while the consumer was being
    /// paused. Paid off before permits are given back.
    owed: Mutex<usize>,
    /// Signalled when permits are given back (the consume loop resumes).
    freed: Notify,
    metrics: Metrics,
    health: Arc<Health>,
    clock: Arc<dyn Clock>,
    retry_tx: mpsc::UnboundedSender<Box<Token>>,
    fatal_tx: mpsc::UnboundedSender<PipelineError>,
    input_topic: String,
    grace: Duration,
    delivered: AtomicU64,
    /// Set when the pipeline gives up on what it holds (fatal error, or the
    /// grace period is over): judge threads drop their remaining records,
    /// which stay uncommitted.
    abandon: AtomicBool,
}

impl Shared {
    /// Give back `n` records' permits (paying off any taken over the limit first).
    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.metrics.in_flight.sub(n as i64);
        let give = {
            let mut owed = self.owed.lock();
            let pay = (*owed).min(n);
            *owed -= pay;
            n - pay
        };
        if give > 0 {
            self.permits.add_permits(give);
            self.freed.notify_one();
        }
    }
}

/// Producer callbacks: delivery acknowledgements and client errors.
struct ProducerCtx(Arc<Shared>);

/// librdkafka's own log lines, into ours (they name brokers, topics and
/// groups, never record contents).
fn librdkafka_log(client: &'static str, level: RDKafkaLogLevel, facility: &str, line: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            error!(target: "fairgate::librdkafka", client, facility, "{line}")
        }
        RDKafkaLogLevel::Warning => {
            warn!(target: "fairgate::librdkafka", client, facility, "{line}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            info!(target: "fairgate::librdkafka", client, facility, "{line}")
        }
        RDKafkaLogLevel::Debug => {
            debug!(target: "fairgate::librdkafka", client, facility, "{line}")
        }
    }
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        librdkafka_log("producer", level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.0.health.producer_ok.store(false, Ordering::Relaxed);
        }
        warn!(target: "fairgate::kafka", client = "producer", error = %error, reason, "kafka client error");
    }

    fn stats(&self, s: Statistics) {
        self.0.metrics.producer_queue.set(s.msg_cnt as i64);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<Token>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Box<Token>) {
        let s = &self.0;
        match result {
            Ok(_) => {
                s.health.producer_ok.store(true, Ordering::Relaxed);
                s.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(ts) = token.ts_ms {
                    let lag = (s.clock.now_ms() - ts).max(0) as f64 / 1000.0;
                    s.metrics.publish_lag.observe(lag);
                }
                if token.out.role == Role::Alerts {
                    s.metrics.alerts.with_label_values(&["topic", "sent"]).inc();
                }
                if let Some((p, g, o)) = token.input
                    && s.offsets.lock().ack(p, g, o)
                {
                    s.health.completed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((e, _)) => {
                let role = token.out.role.as_str();
                match classify(e) {
                    ErrorClass::Retriable => {
                        s.metrics
                            .delivery_errors
                            .with_label_values(&[role, "retried"])
                            .inc();
                        debug!(target: "fairgate::kafka", topic = role, error = %e, "delivery failed; sending again");
                        let _ = s.retry_tx.send(token);
                    }
                    ErrorClass::Fatal => {
                        s.metrics
                            .delivery_errors
                            .with_label_values(&[role, "fatal"])
                            .inc();
                        let _ = s.fatal_tx.send(PipelineError::FatalDelivery {
                            role,
                            error: e.to_string(),
                        });
                    }
                }
            }
        }
    }
}

/// Consumer callbacks: rebalances and statistics.
struct ConsumerCtx {
    shared: Arc<Shared>,
    producer: ThreadedProducer<ProducerCtx>,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        librdkafka_log("consumer", level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(target: "fairgate::kafka", client = "consumer", error = %error, reason, "kafka client error");
    }

    fn stats(&self, s: Statistics) {
        let Some(topic) = s.topics.get(&self.shared.input_topic) else {
            return;
        };
        for (id, p) in &topic.partitions {
            if *id < 0 || p.consumer_lag < 0 {
                continue;
            }
            self.shared
                .metrics
                .consumer_lag
                .with_label_values(&[&self.shared.input_topic, &id.to_string()])
                .set(p.consumer_lag);
        }
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        let s = &self.shared;
        match r {
            Rebalance::Revoke(tpl) => {
                s.metrics.rebalances.with_label_values(&["revoke"]).inc();
                // Everything produced so far is acknowledged before the partitions move.
                if let Err(e) = self.producer.flush(s.grace) {
                    warn!(target: "fairgate::kafka", error = %e, "flush before revocation timed out; uncommitted records will be reprocessed by the new owner");
                }
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                commit_acknowledged(
                    s,
                    consumer,
                    Some(&parts),
                    "on revocation (the new owner reads what is uncommitted)",
                );
                let mut released = 0;
                {
                    let mut offsets = s.offsets.lock();
                    for &p in &parts {
                        released += offsets.revoke(p);
                    }
                    s.health
                        .assigned
                        .store(!offsets.partitions().is_empty(), Ordering::Relaxed);
                }
                s.release(released);
                for p in &parts {
                    let _ = s
                        .metrics
                        .consumer_lag
                        .remove_label_values(&[&s.input_topic, &p.to_string()]);
                }
                info!(target: "fairgate::kafka", partitions = ?parts, "partitions revoked; offsets committed");
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                s.metrics.rebalances.with_label_values(&["error"]).inc();
                warn!(target: "fairgate::kafka", error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, c: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            let s = &self.shared;
            s.metrics.rebalances.with_label_values(&["assign"]).inc();
            // librdkafka keeps a partition paused across a revoke and a new
            // assignment; start it fetching (the loop pauses it again if it
            // must hold back).
            if let Err(e) = c.resume(tpl) {
                warn!(target: "fairgate::kafka", error = %e, "cannot resume newly assigned partitions");
            }
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            let mut offsets = s.offsets.lock();
            for &p in &parts {
                if offsets.generation(p).is_none() {
                    offsets.assign(p);
                }
            }
            s.health
                .assigned
                .store(!offsets.partitions().is_empty(), Ordering::Relaxed);
            info!(target: "fairgate::kafka", partitions = ?parts, "partitions assigned");
        }
    }
}

/// What a finished run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunSummary {
    pub consumed: u64,
    pub delivered: u64,
    /// The drain finished within the grace period (everything committed).
    pub drained: bool,
}

/// Everything the pipeline needs.
pub struct PipelineParts {
    pub config: Config,
    pub stage: Stage,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub clock: Arc<dyn Clock>,
    /// Alerts from elsewhere (overrides) to publish on the alerts topic.
    pub alerts: mpsc::Receiver<AlertEvent>,
    /// Alerts to hand to other sinks (webhook), after they are produced.
    pub alert_fanout: Option<mpsc::Sender<AlertEvent>>,
}

fn headers_of(out: &Out) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(out.headers.len());
    for (k, v) in &out.headers {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    h
}

fn alert_out(a: &AlertEvent, version: &str) -> Out {
    Out {
        role: Role::Alerts,
        key: Some(a.campaign.as_bytes().to_vec()),
        headers: vec![
            (
                "fairgate-alert-kind",
                format!("{:?}", a.kind).to_lowercase(),
            ),
            ("fairgate-campaign-state", a.new_state.as_str().to_string()),
            ("fairgate-policy-version", version.to_string()),
        ],
        payload: serde_json::to_vec(a).expect("alerts serialise"),
    }
}

/// Why one attempt to hand a record to the producer failed.
enum SendFailure {
    /// The producer's queue is full: back-pressure, wait and send again.
    QueueFull,
    Retriable,
    Fatal(KafkaError),
}

/// Hand a token to the producer once.
fn try_send(
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    token: Box<Token>,
) -> Result<(), (Box<Token>, SendFailure)> {
    let out = token.out.clone();
    let mut rec = BaseRecord::with_opaque_to(out.role.topic(topics), token)
        .payload(&out.payload)
        .headers(headers_of(&out));
    if let Some(k) = &out.key {
        rec = rec.key(k);
    }
    producer.send(rec).map_err(|(e, rec)| {
        let failure = if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
            SendFailure::QueueFull
        } else {
            match classify(&e) {
                ErrorClass::Retriable => SendFailure::Retriable,
                ErrorClass::Fatal => SendFailure::Fatal(e),
            }
        };
        (rec.delivery_opaque, failure)
    })
}

/// After a failed send: how long to wait before sending again, or the fatal error.
fn pause_after(
    shared: &Shared,
    token: &mut Token,
    failure: SendFailure,
) -> Result<Duration, PipelineError> {
    match failure {
        SendFailure::QueueFull => Ok(Duration::from_millis(1)),
        SendFailure::Retriable => {
            token.attempts += 1;
            Ok(Duration::from_millis(
                u64::from(token.attempts.min(10)) * 20,
            ))
        }
        SendFailure::Fatal(e) => {
            let role = token.out.role.as_str();
            shared
                .metrics
                .delivery_errors
                .with_label_values(&[role, "fatal"])
                .inc();
            Err(PipelineError::FatalDelivery {
                role,
                error: e.to_string(),
            })
        }
    }
}

/// Send from async code (the consume loop: overrides' alerts, re-sends).
async fn send_async(
    shared: &Shared,
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    mut token: Box<Token>,
) -> Result<(), PipelineError> {
    loop {
        match try_send(producer, topics, token) {
            Ok(()) => return Ok(()),
            Err((t, failure)) => {
                token = t;
                let pause = pause_after(shared, &mut token, failure)?;
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Send from a judge thread. Gives up (leaving the record uncommitted, so it
/// is read again) when the pipeline abandons its work after the grace period.
fn send_blocking(
    shared: &Shared,
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    mut token: Box<Token>,
) -> Result<(), PipelineError> {
    loop {
        match try_send(producer, topics, token) {
            Ok(()) => return Ok(()),
            Err((t, failure)) => {
                token = t;
                let pause = pause_after(shared, &mut token, failure)?;
                if shared.abandon.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(pause);
            }
        }
    }
}

/// Commit the acknowledged offsets of the partitions `only` names (all when
/// `None`). The periodic commit and the commit on revocation both come here,
/// one at a time, so an older offset never lands after a newer one.
fn commit_acknowledged<C: Consumer<ConsumerCtx>>(
    shared: &Shared,
    consumer: &C,
    only: Option<&[i32]>,
    when: &'static str,
) {
    let _one_at_a_time = shared.commit_lock.lock();
    let mut pending = shared.offsets.lock().all_committable();
    if let Some(only) = only {
        pending.retain(|(p, _)| only.contains(p));
    }
    if pending.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, next) in &pending {
        let _ = tpl.add_partition_offset(&shared.input_topic, *p, Offset::Offset(*next));
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            shared.metrics.commits.with_label_values(&["ok"]).inc();
            let mut released = 0;
            {
                let mut offsets = shared.offsets.lock();
                for (p, next) in pending {
                    released += offsets.committed(p, next);
                }
            }
            shared.release(released);
        }
        Err(e) => {
            shared.metrics.commits.with_label_values(&["error"]).inc();
            warn!(target: "fairgate::kafka", error = %e, when, "offset commit failed");
        }
    }
}

async fn commit(shared: &Arc<Shared>, consumer: &Arc<StreamConsumer<ConsumerCtx>>) {
    let (s, c) = (shared.clone(), consumer.clone());
    if let Err(e) = tokio::task::spawn_blocking(move || {
        commit_acknowledged(&s, c.as_ref(), None, "periodic (tried again next interval)")
    })
    .await
    {
        error!(target: "fairgate::kafka", error = %e, "commit task failed");
    }
}

/// How long the consume loop may be held back by `max_in_flight` before it
/// pauses its partitions and polls again.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Pause (or resume) fetching for every assigned partition: `max_in_flight`
/// records are held. A paused consumer is still polled.
fn set_paused(consumer: &StreamConsumer<ConsumerCtx>, pause: bool) {
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    let result = if pause {
        consumer.pause(&assigned)
    } else {
        consumer.resume(&assigned)
    };
    match result {
        Ok(()) => {
            debug!(target: "fairgate::kafka", pause, partitions = assigned.count(), "max_in_flight records held: consumer paused or resumed")
        }
        Err(e) => {
            warn!(target: "fairgate::kafka", error = %e, pause, "cannot pause or resume the consumer")
        }
    }
}

/// One input record, handed from the consume loop to the judge thread that
/// owns its partition.
struct Job {
    partition: i32,
    generation: u64,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// Pass-through only: the input's decision-id header, carried over.
    decision_id: Option<String>,
}

/// A judge thread: judges its partitions' records in order and hands the
/// results to the producer.
struct Worker {
    shared: Arc<Shared>,
    producer: ThreadedProducer<ProducerCtx>,
    topics: Topics,
    stage: Stage,
    alert_fanout: Option<mpsc::Sender<AlertEvent>>,
}

impl Worker {
    fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let s = &self.shared;
        while let Some(job) = jobs.blocking_recv() {
            // Not ours any more (or ours again since it was read): the
            // partition's owner reads it again from the committed offset.
            if s.abandon.load(Ordering::Relaxed)
                || s.offsets.lock().generation(job.partition) != Some(job.generation)
            {
                s.release(1);
                continue;
            }
            let (partition, generation, offset) = (job.partition, job.generation, job.offset);
            let start = Instant::now();
            let outs = self.judge(job);
            s.metrics.processing.observe(start.elapsed().as_secs_f64());
            if !s
                .offsets
                .lock()
                .begin(partition, generation, offset, outs.len() as u32)
            {
                s.release(1);
                continue;
            }
            for (out, ts_ms) in outs {
                let token = Box::new(Token {
                    input: Some((partition, generation, offset)),
                    ts_ms,
                    out,
                    attempts: 0,
                });
                if let Err(e) = send_blocking(s, &self.producer, &self.topics, token) {
                    s.abandon.store(true, Ordering::Relaxed);
                    let _ = s.fatal_tx.send(e);
                    break;
                }
            }
        }
    }

    /// The records one input produces: its routed record, then an alert when
    /// it moved its campaign's state.
    fn judge(&self, job: Job) -> Vec<(Arc<Out>, Option<i64>)> {
        let s = &self.shared;
        match &self.stage {
            Stage::Guard(g) => {
                // judge never panics on input (property-tested); should a bug
                // make it, the record goes to the dead-letter topic instead of
                // taking the thread down, and every restart with it.
                let now = Now::At(s.clock.now_ms());
                let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    g.judge(job.key.as_deref(), &job.payload, now)
                }));
                let j = judged.unwrap_or_else(|_| {
                    error!(target: "fairgate::kafka", partition = job.partition, offset = job.offset, "the guard failed on a record (a bug); it goes to the dead-letter topic");
                    g.internal_error(job.key.as_deref(), &job.payload)
                });
                s.metrics.observe(&j);
                let role = match j.route {
                    Route::Output => Role::Output,
                    Route::Blocked => Role::Blocked,
                    Route::DeadLetter => Role::DeadLetter,
                };
                let ts = j.facts.ts_ms;
                let mut outs = vec![(
                    Arc::new(Out {
                        role,
                        key: j.key,
                        headers: j.headers,
                        payload: j.payload,
                    }),
                    ts,
                )];
                if let Some(a) = j.alert {
                    info!(target: "fairgate::alerts", campaign = %a.campaign, from = a.old_state.as_str(), to = a.new_state.as_str(), measure = ?a.measure.map(|m| m.as_str()), value = ?a.value, "campaign state changed");
                    outs.push((Arc::new(alert_out(&a, &j.facts.policy_version)), None));
                    if let Some(f) = &self.alert_fanout
                        && f.try_send(a).is_err()
                    {
                        s.metrics
                            .alerts
                            .with_label_values(&["webhook", "dropped"])
                            .inc();
                    }
                }
                outs
            }
            Stage::PassThrough => {
                let headers = job
                    .decision_id
                    .map(|id| vec![("fairgate-decision-id", id)])
                    .unwrap_or_default();
                vec![(
                    Arc::new(Out {
                        role: Role::Output,
                        key: job.key,
                        headers,
                        payload: job.payload,
                    }),
                    None,
                )]
            }
        }
    }
}

/// Run the pipeline until `cancel` fires or a fatal error occurs.
///
/// One task consumes and hands each record to the judge thread that owns its
/// partition (`partition mod workers`), so a partition's records are judged
/// and produced in order while partitions are judged in parallel. Another
/// task commits. The consume loop also re-sends records whose delivery
/// failed transiently, and publishes overrides' alerts.
pub async fn run(
    parts: PipelineParts,
    cancel: CancellationToken,
) -> Result<RunSummary, PipelineError> {
    let PipelineParts {
        config,
        stage,
        metrics,
        health,
        clock,
        mut alerts,
        alert_fanout,
    } = parts;
    let k = &config.kafka;
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel();
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
    let max_in_flight = config.pipeline.max_in_flight;
    let shared = Arc::new(Shared {
        offsets: Mutex::new(Offsets::new()),
        commit_lock: Mutex::new(()),
        permits: Arc::new(Semaphore::new(max_in_flight)),
        owed: Mutex::new(0),
        freed: Notify::new(),
        metrics: metrics.clone(),
        health: health.clone(),
        clock: clock.clone(),
        retry_tx,
        fatal_tx,
        input_topic: k.topics.input.clone(),
        grace: Duration::from_secs(config.pipeline.grace_period_secs),
        delivered: AtomicU64::new(0),
        abandon: AtomicBool::new(false),
    });
    let producer: ThreadedProducer<ProducerCtx> =
        super::producer_config(&k.brokers, &k.common, &k.producer)
            .create_with_context(ProducerCtx(shared.clone()))
            .map_err(PipelineError::Client)?;
    let consumer: Arc<StreamConsumer<ConsumerCtx>> = Arc::new(
        super::consumer_config(&k.brokers, &k.group_id, &k.common, &k.consumer)
            .create_with_context(ConsumerCtx {
                shared: shared.clone(),
                producer: producer.clone(),
            })
            .map_err(PipelineError::Client)?,
    );
    consumer
        .subscribe(&[&k.topics.input])
        .map_err(|source| PipelineError::Subscribe {
            topic: k.topics.input.clone(),
            source,
        })?;

    // Judge threads. Their queues can hold every record in flight, so handing
    // a record over never waits: the permits are the bound.
    let worker_count = config.pipeline.worker_count();
    let mut queues = Vec::with_capacity(worker_count);
    let mut threads = Vec::with_capacity(worker_count);
    for i in 0..worker_count {
        let (tx, rx) = mpsc::channel::<Job>(max_in_flight);
        let worker = Worker {
            shared: shared.clone(),
            producer: producer.clone(),
            topics: k.topics.clone(),
            stage: stage.clone(),
            alert_fanout: alert_fanout.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("fairgate-judge-{i}"))
            .spawn(move || worker.run(rx))
            .map_err(PipelineError::Thread)?;
        queues.push(tx);
        threads.push(thread);
    }

    // Commits run beside the consume loop, never stalling it.
    let stop_commits = CancellationToken::new();
    let committer = {
        let (shared, consumer, stop) = (shared.clone(), consumer.clone(), stop_commits.clone());
        let every = Duration::from_millis(config.pipeline.commit_interval_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => commit(&shared, &consumer).await,
                }
            }
        })
    };

    health.producer_ok.store(true, Ordering::Relaxed);
    health.running.store(true, Ordering::Relaxed);
    info!(target: "fairgate::kafka", input = %k.topics.input, group = %k.group_id, max_in_flight, workers = worker_count, "pipeline started");

    let topics = k.topics.clone();
    let pass_through = matches!(stage, Stage::PassThrough);
    let mut fatal: Option<PipelineError> = None;
    let mut consumed = 0u64;
    let mut alerts_open = true;
    let mut paused = false;

    loop {
        let held_back = !paused && shared.permits.available_permits() == 0;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(e) = fatal_rx.recv() => { fatal = Some(e); break; }
            Some(mut token) = retry_rx.recv() => {
                token.attempts += 1;
                let pause = u64::from(token.attempts.min(10)) * 50;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                if let Err(e) = send_async(&shared, &producer, &topics, token).await {
                    fatal = Some(e);
                    break;
                }
            }
            a = alerts.recv(), if alerts_open => match a {
                Some(a) => {
                    let version = match &stage { Stage::Guard(g) => g.live().version.to_string(), Stage::PassThrough => String::new() };
                    let out = Arc::new(alert_out(&a, &version));
                    if let Some(f) = &alert_fanout { let _ = f.try_send(a); }
                    let token = Box::new(Token { input: None, ts_ms: None, out, attempts: 0 });
                    if let Err(e) = send_async(&shared, &producer, &topics, token).await {
                        fatal = Some(e);
                        break;
                    }
                }
                None => alerts_open = false,
            },
            // Permits came back: read again (resuming the partitions if they
            // were paused).
            _ = shared.freed.notified(), if held_back || paused => {
                if paused && shared.permits.available_permits() > 0 {
                    set_paused(&consumer, false);
                    paused = false;
                }
            }
            // Held back for a while (a slow or absent broker): pause the
            // partitions and poll again, so that rebalances and group errors
            // are served. Brief back-pressure leaves the fetched records in
            // librdkafka's queue instead.
            _ = tokio::time::sleep(PAUSE_AFTER), if held_back => {
                set_paused(&consumer, true);
                paused = true;
            }
            m = consumer.recv(), if !held_back => {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(target: "fairgate::kafka", error = %e, "consume error");
                        continue;
                    }
                };
                let (partition, offset) = (m.partition(), m.offset());
                let Some(generation) = shared.offsets.lock().generation(partition) else {
                    // A record of a partition no longer ours: its new owner reads it.
                    continue;
                };
                // One permit per input record, given back at commit. A record
                // that arrives while the consumer is paused (fetched before
                // the pause) is taken over the limit and paid off first.
                match shared.permits.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => *shared.owed.lock() += 1,
                }
                metrics.in_flight.inc();
                consumed += 1;
                health.consumed.fetch_add(1, Ordering::Relaxed);
                let decision_id = if pass_through {
                    m.headers().and_then(|h| {
                        h.iter()
                            .find(|hd| hd.key == "fairgate-decision-id")
                            .map(|hd| String::from_utf8_lossy(hd.value.unwrap_or(&[])).into_owned())
                    })
                } else {
                    None
                };
                let job = Job {
                    partition,
                    generation,
                    offset,
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or(&[]).to_vec(),
                    decision_id,
                };
                drop(m);
                let queue = &queues[partition.rem_euclid(worker_count as i32) as usize];
                if queue.send(job).await.is_err() {
                    fatal = Some(PipelineError::WorkerStopped);
                    break;
                }
            }
        }
    }

    // Drain: stop reading; let the judge threads finish what they hold;
    // finish re-sends; flush; commit.
    health.running.store(false, Ordering::Relaxed);
    drop(queues);
    stop_commits.cancel();
    let _ = committer.await;
    let deadline = Instant::now() + Duration::from_secs(config.pipeline.grace_period_secs);
    info!(target: "fairgate::kafka", consumed, "draining");
    let mut drained = false;
    while Instant::now() < deadline && fatal.is_none() {
        while let Ok(token) = retry_rx.try_recv() {
            if let Err(e) = send_async(&shared, &producer, &topics, token).await {
                fatal = Some(e);
            }
        }
        if let Ok(e) = fatal_rx.try_recv() {
            fatal = Some(e);
        }
        if fatal.is_some() {
            break;
        }
        let judging = threads.iter().filter(|t| !t.is_finished()).count();
        let in_queue = producer.in_flight_count();
        if judging == 0 && in_queue == 0 && retry_rx.is_empty() {
            commit(&shared, &consumer).await;
            if shared.offsets.lock().all_committable().is_empty() {
                drained = true;
                break;
            }
        }
        debug!(target: "fairgate::kafka", judging, in_queue, held = shared.offsets.lock().held(), "draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Whatever is still unacknowledged stays uncommitted and is read again.
    shared.abandon.store(true, Ordering::Relaxed);
    if !drained {
        warn!(target: "fairgate::kafka", "grace period over before everything was acknowledged; unacknowledged records will be reprocessed");
        commit(&shared, &consumer).await;
    }
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    let delivered = shared.delivered.load(Ordering::Relaxed);
    // Leaving the group triggers the revoke callback (flush + commit again, harmlessly).
    let c = consumer.clone();
    drop(consumer);
    let _ = tokio::task::spawn_blocking(move || {
        c.unsubscribe();
        drop(c);
    })
    .await;
    health.assigned.store(false, Ordering::Relaxed);
    info!(target: "fairgate::kafka", consumed, delivered, drained, "pipeline stopped");
    if let Some(e) = fatal {
        *health.fatal.lock() = Some(e.to_string());
        return Err(e);
    }
    Ok(RunSummary {
        consumed,
        delivered,
        drained,
    })
}
