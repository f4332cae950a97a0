//! `run`: set the pipeline up, consume until cancelled, drain, leave.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::ThreadedProducer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::super::client::{consumer_config, producer_config};
use super::super::offsets::Offsets;
use super::commit::{Committer, commit};
use super::consume::ConsumeLoop;
use super::context::{ConsumerCtx, ProducerCtx};
use super::drain::drain;
use super::error::PipelineError;
use super::flush::flush_blocking;
use super::in_flight::InFlight;
use super::shared::{Health, Shared};
use super::stage::Stage;
use super::watchdog::watch;
use super::worker::{Job, Worker};
use crate::clock::Clock;
use crate::config::Config;
use crate::fairness::alert::AlertEvent;
use crate::metrics::Metrics;

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
    /// What is done to each record.
    pub stage: Arc<dyn Stage>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub clock: Arc<dyn Clock>,
    /// Alerts from elsewhere (overrides) to publish on the alerts topic.
    pub alerts: mpsc::Receiver<AlertEvent>,
    /// Alerts to hand to other sinks (webhook) as well.
    pub alert_fanout: Option<mpsc::Sender<AlertEvent>>,
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
    let health = parts.health.clone();
    let stall_after = Duration::from_secs(parts.config.pipeline.stall_after_secs);
    let (mut lp, threads, committer) = start(parts)?;
    let watching = CancellationToken::new();
    let watchdog = tokio::spawn(watch(lp.shared.clone(), stall_after, watching.clone()));
    let stopped = lp.run(&cancel).await;
    watching.cancel();
    let _ = watchdog.await;

    // Drain: stop reading; let the judge threads finish what they hold;
    // finish re-sends; wait for acknowledgements; commit.
    health.running.store(false, Ordering::Relaxed);
    lp.queues.clear();
    committer.stop().await;
    let consumed = lp.consumed;
    info!(target: "fairgate::kafka", consumed, "draining");
    let (drained, fatal) = drain_or_give_up(&mut lp, &threads, stopped).await;
    let ConsumeLoop {
        shared, consumer, ..
    } = lp;
    let delivered = leave(shared, consumer, threads).await;
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

/// Shared state, clients, judge threads and the committer: everything the
/// consume loop needs before its first record.
fn start(
    parts: PipelineParts,
) -> Result<(ConsumeLoop, Vec<JoinHandle<()>>, Committer), PipelineError> {
    let PipelineParts {
        config,
        stage,
        metrics,
        health,
        clock,
        alerts,
        alert_fanout,
    } = parts;
    let (retry_tx, retry_rx) = mpsc::unbounded_channel();
    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
    let p = &config.pipeline;
    let shared = Arc::new(Shared {
        offsets: Mutex::new(Offsets::new()),
        commit_lock: Mutex::new(()),
        in_flight: InFlight::new(
            p.max_in_flight,
            p.max_in_flight_bytes,
            metrics.in_flight.clone(),
            metrics.in_flight_bytes.clone(),
        ),
        metrics,
        health: health.clone(),
        clock,
        retry_tx,
        fatal_tx,
        input_topic: config.kafka.topics.input.clone(),
        grace: Duration::from_secs(p.grace_period_secs),
        delivered: AtomicU64::new(0),
        abandon: AtomicBool::new(false),
        holds: stage.holds().then(super::shared::Holds::default),
        paused: AtomicBool::new(false),
    });
    let (producer, consumer) = connect(&config, &shared, &stage)?;
    let mut lp = ConsumeLoop {
        shared,
        producer,
        consumer,
        topics: config.kafka.topics.clone(),
        stage,
        queues: Vec::new(),
        alerts,
        alert_fanout,
        retry_rx,
        fatal_rx,
        consumed: 0,
        alerts_open: true,
        flush_every: Duration::from_millis(p.exposure_flush_ms),
        flush_at: (p.max_in_flight / 4).max(1),
        last_input: tokio::time::Instant::now(),
        last_flush: tokio::time::Instant::now(),
    };
    let threads = spawn_judges(&config, &mut lp)?;
    let every = Duration::from_millis(p.commit_interval_ms);
    let committer = Committer::start(&lp.shared, &lp.consumer, every);
    health.producer_ok.store(true, Ordering::Relaxed);
    health.running.store(true, Ordering::Relaxed);
    let k = &config.kafka;
    info!(target: "fairgate::kafka", input = %k.topics.input, group = %k.group_id, max_in_flight = p.max_in_flight, workers = threads.len(), "pipeline started");
    Ok((lp, threads, committer))
}

/// The producer, and the consumer subscribed to the input topic.
fn connect(
    config: &Config,
    shared: &Arc<Shared>,
    stage: &Arc<dyn Stage>,
) -> Result<
    (
        ThreadedProducer<ProducerCtx>,
        Arc<StreamConsumer<ConsumerCtx>>,
    ),
    PipelineError,
> {
    let k = &config.kafka;
    let producer: ThreadedProducer<ProducerCtx> =
        producer_config(&k.brokers, &k.common, &k.producer)
            .create_with_context(ProducerCtx(shared.clone()))
            .map_err(PipelineError::Client)?;
    let consumer: Arc<StreamConsumer<ConsumerCtx>> = Arc::new(
        consumer_config(&k.brokers, &k.group_id, &k.common, &k.consumer)
            .create_with_context(ConsumerCtx {
                shared: shared.clone(),
                producer: producer.clone(),
                flush_deltas: flush_deltas(shared, &producer, &k.topics, stage),
            })
            .map_err(PipelineError::Client)?,
    );
    consumer
        .subscribe(&[&k.topics.input])
        .map_err(|source| PipelineError::Subscribe {
            topic: k.topics.input.clone(),
            source,
        })?;
    Ok((producer, consumer))
}

/// What the consumer's revocation callback calls to publish the exposure
/// deltas before partitions move.
fn flush_deltas(
    shared: &Arc<Shared>,
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &crate::config::Topics,
    stage: &Arc<dyn Stage>,
) -> Box<dyn Fn() + Send + Sync> {
    let (shared, producer, topics, stage) = (
        shared.clone(),
        producer.clone(),
        topics.clone(),
        stage.clone(),
    );
    Box::new(move || {
        if let Some(h) = &shared.holds
            && let Err(e) = flush_blocking(&shared, &producer, &topics, h, &*stage)
        {
            warn!(target: "fairgate::kafka", error = %e, "exposure flush before revocation failed; uncommitted records will be reprocessed by the new owner");
        }
    })
}

/// Judge threads, one queue each. A queue can hold every record in flight,
/// so handing a record over never waits: the in-flight bound is the bound.
fn spawn_judges(
    config: &Config,
    lp: &mut ConsumeLoop,
) -> Result<Vec<JoinHandle<()>>, PipelineError> {
    let workers = config.pipeline.worker_count();
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let (tx, rx) = mpsc::channel::<Job>(config.pipeline.max_in_flight);
        let worker = Worker {
            shared: lp.shared.clone(),
            producer: lp.producer.clone(),
            topics: lp.topics.clone(),
            stage: lp.stage.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("fairgate-judge-{i}"))
            .spawn(move || worker.run(rx))
            .map_err(PipelineError::Thread)?;
        lp.queues.push(tx);
        threads.push(thread);
    }
    Ok(threads)
}

/// Drain within the grace period unless the loop stopped on an error; then
/// give up on what is left (it stays uncommitted and is read again).
/// Returns whether everything was committed, and the error that stopped the
/// pipeline.
async fn drain_or_give_up(
    lp: &mut ConsumeLoop,
    threads: &[JoinHandle<()>],
    stopped: Option<PipelineError>,
) -> (bool, Option<PipelineError>) {
    let (drained, fatal) = match stopped {
        Some(e) => (false, Some(e)),
        None => match drain(lp, threads).await {
            Ok(drained) => (drained, None),
            Err(e) => (false, Some(e)),
        },
    };
    lp.shared.abandon.store(true, Ordering::Relaxed);
    if !drained {
        warn!(target: "fairgate::kafka", "grace period over before everything was acknowledged; unacknowledged records will be reprocessed");
        commit(&lp.shared, &lp.consumer).await;
    }
    (drained, fatal)
}

/// Wait for the judge threads, then leave the group, off the runtime (both
/// block). Returns how many produced records were acknowledged.
async fn leave(
    shared: Arc<Shared>,
    consumer: Arc<StreamConsumer<ConsumerCtx>>,
    threads: Vec<JoinHandle<()>>,
) -> u64 {
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    let delivered = shared.delivered.load(Ordering::Relaxed);
    // Leaving the group triggers the revoke callback (flush + commit again,
    // harmlessly); the last handle on the consumer goes with it.
    let _ = tokio::task::spawn_blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    })
    .await;
    shared.health.assigned.store(false, Ordering::Relaxed);
    delivered
}
