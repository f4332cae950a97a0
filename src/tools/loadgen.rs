//! The load generator: realistic decisions ([`crate::tools::synth`]) produced at a
//! set rate, keyed by campaign id, stamped with the wall clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::tools::synth::Synth;

/// What to generate.
#[derive(Debug, Clone)]
pub struct LoadgenOptions {
    pub brokers: String,
    pub topic: String,
    /// Decisions per second (0: as fast as the producer takes them).
    pub rate: u64,
    /// How many decisions (0: until cancelled).
    pub count: u64,
    pub campaigns: usize,
    pub skewed: usize,
    /// One in this many is malformed (0: none).
    pub malformed_every: u64,
    pub seed: u64,
    /// Prefix of decision ids (`dec-`).
    pub id_prefix: String,
    /// Extra librdkafka settings.
    pub extra: BTreeMap<String, String>,
    /// Generate all `count` decisions before the first is sent, so that the
    /// paced send reaches rates that generating as it goes cannot (a
    /// decision takes ~10 µs to make and ~2 µs to hand to the producer).
    /// Memory: about `count` × 1.2 KB. Each decision is stamped when it is
    /// made, so its `ts` is up to the generation time older than its send.
    pub pregenerate: bool,
}

/// Counts of a run.
#[derive(Debug, Default)]
pub struct LoadgenStats {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    /// Milliseconds spent generating decisions before the first was sent
    /// (with [`LoadgenOptions::pregenerate`]).
    pub generating_ms: AtomicU64,
    /// Milliseconds from the first send to the last acknowledgement.
    pub sending_ms: AtomicU64,
}

struct Ctx(Arc<LoadgenStats>);

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "fairgate::loadgen", error = %error, reason, "kafka client error");
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.0.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Records produced between two yields to the runtime.
const YIELD_EVERY: u64 = 64;

/// Fetch the topic's metadata before the first record is stamped, so a
/// paced run's first records do not carry the connection set-up in their
/// latency. A broker just started (the demo's) may refuse the first
/// requests: try a few times before giving up.
async fn connect(
    producer: &ThreadedProducer<Ctx>,
    topic: &str,
    cancel: &CancellationToken,
) -> Result<(), KafkaError> {
    let mut attempt = 0;
    loop {
        let (p, topic) = (producer.clone(), topic.to_string());
        let got = tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
        })
        .await
        .expect("metadata task");
        match got {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 5 && !cancel.is_cancelled() => {
                attempt += 1;
                tracing::warn!(target: "fairgate::loadgen", error = %e, attempt, "no metadata yet; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Produce decisions until `count` are acknowledged or `cancel` fires.
pub async fn run(
    opts: LoadgenOptions,
    clock: Arc<dyn Clock>,
    stats: Arc<LoadgenStats>,
    cancel: CancellationToken,
) -> Result<(), KafkaError> {
    let common = BTreeMap::new();
    let mut cfg = crate::kafka::producer_config(&opts.brokers, &common, &opts.extra);
    cfg.set("message.timeout.ms", "300000");
    let producer: ThreadedProducer<Ctx> = cfg.create_with_context(Ctx(stats.clone()))?;
    connect(&producer, &opts.topic, &cancel).await?;
    let mut synth = Synth::new(opts.seed, opts.campaigns, opts.skewed, clock.now_ms());
    synth.malformed_every = opts.malformed_every;
    synth.id_prefix = opts.id_prefix.clone();
    let made = Instant::now();
    let pool: Vec<(String, Vec<u8>)> = if opts.pregenerate && opts.count > 0 {
        (0..opts.count)
            .map(|_| synth.next(clock.now_ms()))
            .collect()
    } else {
        Vec::new()
    };
    stats
        .generating_ms
        .store(made.elapsed().as_millis() as u64, Ordering::Relaxed);
    let start = Instant::now();
    let mut n = 0u64;
    while (opts.count == 0 || n < opts.count) && !cancel.is_cancelled() {
        if opts.rate > 0 {
            let due = Duration::from_secs_f64(n as f64 / opts.rate as f64);
            let elapsed = start.elapsed();
            // Sleep only when more than 5 ms ahead: timers are coarser than one record.
            if due > elapsed + Duration::from_millis(5) {
                tokio::select! {
                    _ = tokio::time::sleep(due - elapsed) => {}
                    _ = cancel.cancelled() => break,
                }
            }
        }
        let made_now;
        let (key, payload) = match pool.get(n as usize) {
            Some((k, v)) => (k, v),
            None => {
                made_now = synth.next(clock.now_ms());
                (&made_now.0, &made_now.1)
            }
        };
        let mut rec = BaseRecord::to(&opts.topic).key(key).payload(payload);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    rec = r;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
        n += 1;
        stats.sent.fetch_add(1, Ordering::Relaxed);
        // Behind the rate (or unpaced), the loop never sleeps: give the
        // runtime's other tasks their turn now and then, so a load generator
        // sharing a runtime with the service cannot starve it.
        if n.is_multiple_of(YIELD_EVERY) {
            tokio::task::yield_now().await;
        }
    }
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(60)))
        .await
        .expect("flush task")?;
    stats
        .sending_ms
        .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    Ok(())
}
