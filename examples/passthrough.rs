//! The independent baseline of `scripts/bench-e2e`: the plainest correct
//! at-least-once pass-through with rdkafka, sharing no code with fairgate.
//!
//! Consume in a group (no auto-commit), produce each record's key, payload
//! and headers to the output topic, and commit an input offset only once every
//! record before it is acknowledged by the broker. The producer keeps
//! librdkafka's defaults except `enable.idempotence=true`.
//!
//! ```text
//! cargo run --release --example passthrough -- \
//!     --brokers 127.0.0.1:9092 --input decisions --output copy --group base
//! ```
//!
//! Stops on SIGTERM/SIGINT (or after `--exit-when-idle-secs` without a
//! record): flushes, commits, prints `records=N seconds=S`. One member per
//! group is assumed: a revoked partition's pending offsets are not handed over.
//! `--consumer key=value` sets a consumer setting (the benchmark sets
//! `fetch.wait.max.ms` as fairgate does; see `scripts/bench_e2e.py`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long)]
    group: String,
    /// Exit after this many seconds without a record (default: only on a signal).
    #[arg(long)]
    exit_when_idle_secs: Option<u64>,
    /// A librdkafka consumer setting, `key=value` (repeatable).
    #[arg(long = "consumer", value_parser = key_value)]
    consumer: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected key=value")?;
    Ok((k.to_string(), v.to_string()))
}

/// Per input partition: offsets read but not yet acknowledged, and the next
/// offset to read. The committable offset is the lowest unacknowledged one.
#[derive(Default)]
struct Partition {
    pending: BTreeSet<i64>,
    next: i64,
    committed: i64,
}

#[derive(Default)]
struct Tracker {
    partitions: HashMap<i32, Partition>,
    failed: bool,
}

struct Acks(Arc<Mutex<Tracker>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<(i32, i64)>;
    fn delivery(&self, r: &DeliveryResult<'_>, input: Box<(i32, i64)>) {
        let mut t = self.0.lock().unwrap();
        match r {
            Ok(_) => {
                if let Some(p) = t.partitions.get_mut(&input.0) {
                    p.pending.remove(&input.1);
                }
            }
            // Stays pending, so it is never committed; the run stops.
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                t.failed = true;
            }
        }
    }
}

/// Commit every partition's lowest unacknowledged offset that moved on.
fn commit(consumer: &BaseConsumer, topic: &str, tracker: &Mutex<Tracker>, mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    for (&id, p) in tracker.lock().unwrap().partitions.iter_mut() {
        let upto = p.pending.first().copied().unwrap_or(p.next);
        if upto > p.committed {
            tpl.add_partition_offset(topic, id, Offset::Offset(upto))
                .unwrap();
            p.committed = upto;
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, mode)
    {
        eprintln!("commit failed: {e}");
    }
}

/// SIGTERM or SIGINT sets the flag.
fn on_signal(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).unwrap();
            let mut int = signal(SignalKind::interrupt()).unwrap();
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        });
        stop.store(true, Ordering::Relaxed);
    });
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    on_signal(stop.clone());
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &a.brokers)
        .set("group.id", &a.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in &a.consumer {
        cc.set(k, v);
    }
    let consumer: BaseConsumer = cc.create()?;
    consumer.subscribe(&[&a.input])?;
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let producer: ThreadedProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("enable.idempotence", "true")
        .create_with_context(Acks(tracker.clone()))?;

    let start = Instant::now();
    let (mut records, mut last_record, mut last_commit) = (0u64, Instant::now(), Instant::now());
    while !stop.load(Ordering::Relaxed) && !tracker.lock().unwrap().failed {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let (partition, offset) = (m.partition(), m.offset());
                {
                    let mut t = tracker.lock().unwrap();
                    let p = t.partitions.entry(partition).or_default();
                    p.pending.insert(offset);
                    p.next = offset + 1;
                }
                let mut rec = BaseRecord::with_opaque_to(&a.output, Box::new((partition, offset)));
                if let Some(k) = m.key() {
                    rec = rec.key(k);
                }
                if let Some(v) = m.payload() {
                    rec = rec.payload(v);
                }
                if let Some(h) = m.headers() {
                    rec = rec.headers(h.detach());
                }
                while let Err((e, back)) = producer.send(rec) {
                    if e.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) {
                        anyhow::bail!("produce failed: {e}");
                    }
                    producer.poll(Duration::from_millis(10));
                    rec = back;
                }
                records += 1;
                last_record = Instant::now();
            }
            Some(Err(e)) => eprintln!("consume error: {e}"),
            None => {}
        }
        if last_commit.elapsed() >= Duration::from_millis(100) {
            commit(&consumer, &a.input, &tracker, CommitMode::Async);
            last_commit = Instant::now();
        }
        if let Some(idle) = a.exit_when_idle_secs
            && last_record.elapsed() >= Duration::from_secs(idle)
        {
            break;
        }
    }
    producer.flush(Duration::from_secs(60))?;
    commit(&consumer, &a.input, &tracker, CommitMode::Sync);
    println!(
        "records={records} seconds={:.3}",
        start.elapsed().as_secs_f64()
    );
    if tracker.lock().unwrap().failed {
        anyhow::bail!("a delivery failed; its input was not committed");
    }
    Ok(())
}
