//! The campaign-table reader: every partition of the compacted campaigns
//! topic, read from the beginning into the table view, then followed.
//! [`crate::fairness::table::TableView::loaded`] turns true once everything that was on the topic
//! at start has been read; the pipeline does not start before.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::config::Config;
use crate::fairness::table::{Applied, SharedCampaigns};
use crate::fairness::wire::{StateKey, decode_table};
use crate::metrics::Metrics;

/// How often the lag behind the table's end is measured.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// A consumer that assigns partitions itself and commits nothing. librdkafka
/// wants a group id to assign at all; this one is never joined (no
/// subscription) and never committed to.
pub(super) fn reader_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set(
            "group.id",
            format!("{}.table-reader", config.kafka.group_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in &config.kafka.common {
        c.set(k, v);
    }
    c
}

/// The reader, started: stops when `stop` is set.
pub(super) struct TableReader {
    consumer: BaseConsumer,
    topic: String,
    key: StateKey,
    shared: Arc<SharedCampaigns>,
    metrics: Metrics,
    /// Next offset to read per partition.
    position: parking_lot::Mutex<HashMap<i32, i64>>,
    /// End of each partition when the reader started.
    start_end: HashMap<i32, i64>,
    parts: Vec<i32>,
}

impl TableReader {
    /// Assign every partition of the table from its beginning.
    pub(super) fn start(
        config: &Config,
        key: StateKey,
        shared: Arc<SharedCampaigns>,
        metrics: Metrics,
    ) -> Result<TableReader, String> {
        let topic = config.kafka.topics.campaigns.clone();
        let consumer: BaseConsumer = reader_config(config)
            .create()
            .map_err(|e| format!("campaign table reader: {e}"))?;
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| {
                format!("kafka.topics.campaigns {topic:?}: cannot read its metadata: {e}")
            })?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if parts.is_empty() {
            return Err(format!(
                "kafka.topics.campaigns {topic:?}: the topic does not exist (create it compacted: cleanup.policy=compact)"
            ));
        }
        let mut tpl = TopicPartitionList::new();
        let mut start_end = HashMap::new();
        for &p in &parts {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(10))
                .map_err(|e| format!("kafka.topics.campaigns {topic:?} partition {p}: {e}"))?;
            if high > low {
                start_end.insert(p, high);
            }
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(|e| format!("campaign table reader: {e}"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("campaign table reader: cannot assign {topic:?}: {e}"))?;
        info!(target: "fairgate::state", topic = %topic, partitions = parts.len(), records = start_end.values().sum::<i64>(), "reading the campaign table");
        Ok(TableReader {
            consumer,
            topic,
            key,
            shared,
            metrics,
            position: parking_lot::Mutex::new(HashMap::new()),
            start_end,
            parts,
        })
    }

    /// Read until `stop`.
    pub(super) fn run(self, stop: Arc<AtomicBool>) {
        let started = Instant::now();
        let mut lag_at = Instant::now();
        self.check_loaded(started);
        while !stop.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    self.take(m.partition(), m.offset(), m.key(), m.payload());
                    if !self.shared.table.loaded() {
                        self.check_loaded(started);
                    }
                }
                Some(Err(e)) => {
                    warn!(target: "fairgate::state", error = %e, "campaign table: consume error")
                }
                None => {}
            }
            if !self.shared.table.loaded() && lag_at.elapsed() >= Duration::from_secs(1) {
                self.check_position(started);
            }
            if lag_at.elapsed() >= LAG_EVERY {
                lag_at = Instant::now();
                self.measure_lag();
            }
        }
    }

    fn take(&self, partition: i32, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.position.lock().insert(partition, offset + 1);
        let label = |r: &str| {
            self.metrics
                .state
                .records
                .with_label_values(&["campaigns", r])
                .inc()
        };
        let Some(id) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            label("malformed");
            warn!(target: "fairgate::state", partition, offset, "campaign table: a record without a UTF-8 key; skipped");
            return;
        };
        match decode_table(&self.key, id, value) {
            Ok(row) => match self.shared.table.apply(id, row) {
                Applied::Updated | Applied::Removed => label("applied"),
                Applied::Stale => label("stale"),
                Applied::Refused => {
                    label("refused_tombstone");
                    warn!(target: "fairgate::state", partition, offset, campaign = id, "campaign table: a tombstone for a campaign that is not ok or holds an override; ignored (only an owner forgets a campaign, and only an ok one)");
                }
            },
            Err(e) => {
                label(e.as_str());
                warn!(target: "fairgate::state", partition, offset, error = %e, "campaign table: record skipped");
            }
        }
    }

    fn check_loaded(&self, started: Instant) {
        let position = self.position.lock();
        let done = self
            .start_end
            .iter()
            .all(|(p, end)| position.get(p).is_some_and(|pos| pos >= end));
        drop(position);
        if done {
            self.shared.table.set_loaded();
            info!(target: "fairgate::state", campaigns = crate::fairness::tracker::CampaignStore::len(&self.shared.table), secs = started.elapsed().as_secs_f64(), "campaign table read");
        }
    }

    /// The end reached without a record there (compacted away, control
    /// records): the position says so.
    fn check_position(&self, started: Instant) {
        if let Ok(pos) = self.consumer.position() {
            let mut position = self.position.lock();
            for e in pos.elements_for_topic(&self.topic) {
                if let Offset::Offset(o) = e.offset() {
                    let p = position.entry(e.partition()).or_insert(o);
                    *p = (*p).max(o);
                }
            }
        }
        self.check_loaded(started);
    }

    fn measure_lag(&self) {
        let mut lag = 0i64;
        for p in &self.parts {
            if let Ok((low, high)) =
                self.consumer
                    .fetch_watermarks(&self.topic, *p, Duration::from_secs(1))
            {
                let pos = self.position.lock().get(p).copied();
                lag += (high - pos.unwrap_or(low)).max(0);
            }
        }
        self.metrics.state.table_lag.set(lag);
    }
}
