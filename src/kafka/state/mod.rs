//! Campaign state on Kafka, the I/O side: the campaign-table reader, the
//! owners' consumer, the topic checks at start and the override commands.
//! The pure side is in [`crate::fairness`]: `wire`, `counter`, `table`, `owner`.
//!
//! ```text
//!  input ──► judge threads ──► output / blocked / dlq
//!              │    ▲ route by table
//!              │ count (Counter)           every instance reads the whole
//!              ▼                           table (TableReader)
//!        exposure topic ──► owner of the campaign's partition (OwnerLoop,
//!        (deltas, override     group <group_id>.owners): merge, judge
//!         commands)                 │
//!                                   ▼
//!                       campaigns topic (compacted) + alerts
//! ```

mod owner;
mod table;
mod topics;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::client::producer_config;
use crate::clock::Clock;
use crate::config::Config;
use crate::core::guard::Guard;
use crate::fairness::alert::AlertEvent;
use crate::fairness::wire::{OverrideCommand, StateKey, encode_override};
use crate::metrics::Metrics;

pub use topics::check_topics;

/// The state threads, running.
pub struct StateService {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Sends override commands to the campaigns' owners.
    pub commands: Arc<Commands>,
}

/// Start the table reader and the owner. Fails, naming every problem, when
/// the key is missing or a topic is unfit.
pub async fn start(
    config: &Config,
    guard: Arc<Guard>,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    fanout: Option<mpsc::Sender<AlertEvent>>,
) -> Result<StateService, Vec<String>> {
    let Some(shared) = guard.shared().cloned() else {
        return Err(vec!["state: the guard keeps no shared state".into()]);
    };
    let key = config
        .state_key_or_problem()
        .map(|k| StateKey::new(k.as_bytes()).expect("length checked"))
        .map_err(|e| vec![e])?;
    check_topics(config, &guard.live().policy).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = table::TableReader::start(config, key.clone(), shared, metrics.clone())
        .map_err(|e| vec![e])?;
    let owner = owner::OwnerLoop::start(config, key.clone(), guard, metrics, clock, fanout)
        .map_err(|e| vec![e])?;
    let mut threads = Vec::new();
    for (name, job) in [
        (
            "fairgate-table",
            Box::new({
                let stop = stop.clone();
                move || reader.run(stop)
            }) as Box<dyn FnOnce() + Send>,
        ),
        (
            "fairgate-owner",
            Box::new({
                let stop = stop.clone();
                move || owner.run(stop)
            }),
        ),
    ] {
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(job)
            .map_err(|e| vec![format!("cannot start thread {name}: {e}")])?;
        threads.push(t);
    }
    let producer: FutureProducer = producer_config(
        &config.kafka.brokers,
        &config.kafka.common,
        &config.kafka.producer,
    )
    .create()
    .map_err(|e| vec![format!("override command producer: {e}")])?;
    Ok(StateService {
        stop,
        threads,
        commands: Arc::new(Commands {
            producer,
            topic: config.kafka.topics.exposure.clone(),
            key,
        }),
    })
}

impl StateService {
    /// Wait until the whole table has been read (or `cancel`).
    pub async fn wait_loaded(&self, guard: &Guard, cancel: &CancellationToken) -> bool {
        let Some(shared) = guard.shared() else {
            return true;
        };
        let mut waited = 0u64;
        while !shared.table.loaded() {
            if cancel.is_cancelled() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += 20;
            if waited.is_multiple_of(10_000) {
                info!(target: "fairgate::state", secs = waited / 1000, "still reading the campaign table");
            }
        }
        true
    }

    /// Stop the threads (the owner writes what it judged last).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Override commands, signed, to the campaigns' owners.
pub struct Commands {
    producer: FutureProducer,
    topic: String,
    key: StateKey,
}

impl Commands {
    /// Publish one command; returns once the broker has it.
    pub async fn send(&self, cmd: &OverrideCommand) -> Result<(), String> {
        let bytes = encode_override(&self.key, cmd);
        let rec = FutureRecord::to(&self.topic)
            .key(cmd.campaign.as_bytes())
            .payload(&bytes);
        self.producer
            .send(rec, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("the override could not be published to {}: {e}", self.topic))
    }
}
