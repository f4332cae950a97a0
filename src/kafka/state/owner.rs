//! The owners' consumer: this instance's share of the exposure partitions,
//! in a consumer group of its own. It merges every instance's deltas into
//! the windows of the campaigns it owns, applies override commands, judges,
//! and writes rows to the campaign table and transitions to the alerts topic.
//!
//! On assignment (start, rebalance, another instance's crash) each
//! partition is read from the first record of the window span (looked up by
//! timestamp), not from a committed offset: the windows are rebuilt from
//! the topic, the states from the table, and the partition's campaigns are
//! judged only once it has been replayed to where it ended at assignment.
//! Nothing is committed in this group.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::super::client::{consumer_config, producer_config};
use crate::clock::Clock;
use crate::config::Config;
use crate::core::guard::Guard;
use crate::fairness::alert::AlertEvent;
use crate::fairness::owner::{Out, Owner};
use crate::fairness::wire::{
    ExposureRow, PLATFORM_KEY, StateKey, decode_exposure, encode_campaign, encode_platform,
};
use crate::kafka::pipeline::{alert_out, headers_of};
use crate::metrics::Metrics;

/// How often rows of long-idle campaigns are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Tombstones written per sweep, at most.
const SWEEP_MAX: usize = 10_000;

/// The end of a partition whose watermark could not be read (yet): no
/// offset reaches it, so the partition stays in replay until
/// [`OwnerLoop::check_restoring`] reads the real end.
const UNKNOWN_END: i64 = i64::MAX;

/// A partition being replayed: read it up to `end` before judging it.
#[derive(Debug)]
struct Restoring {
    end: i64,
    started: Instant,
    replayed: u64,
}

/// What the rebalance callback and the loop share (one thread: the callback
/// runs inside `poll`; the lock is never held across it).
struct OwnerState {
    owner: Owner,
    restoring: HashMap<i32, Restoring>,
    partitions: Vec<i32>,
}

struct OwnerCtx {
    state: Mutex<OwnerState>,
    topic: String,
    guard: Arc<Guard>,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
}

impl ClientContext for OwnerCtx {}

impl OwnerCtx {
    /// The first offset of each partition's window span (by timestamp), and
    /// its end now. A lookup that fails replays from the beginning: slower,
    /// never wrong (older buckets fall out of the windows).
    fn replay_from(
        &self,
        c: &BaseConsumer<OwnerCtx>,
        parts: &[i32],
    ) -> HashMap<i32, (Offset, i64)> {
        let p = &self.guard.live().policy;
        let since = self
            .clock
            .now_ms()
            .saturating_sub(crate::fairness::owner::replay_span_ms(p));
        let mut ask = TopicPartitionList::new();
        for &part in parts {
            let _ = ask.add_partition_offset(&self.topic, part, Offset::Offset(since));
        }
        let found = c.offsets_for_times(ask, Duration::from_secs(10));
        let mut out = HashMap::new();
        for &part in parts {
            let end = match c.fetch_watermarks(&self.topic, part, Duration::from_secs(10)) {
                Ok((_, high)) => high,
                Err(e) => {
                    warn!(target: "fairgate::state", partition = part, error = %e, "exposure: cannot read where the partition ends; asking again until it answers (the partition is judged once replayed to there)");
                    UNKNOWN_END
                }
            };
            let from = match &found {
                Ok(tpl) => match tpl.find_partition(&self.topic, part).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Offset::Offset(o),
                    // No record at or after the span's start: nothing to replay.
                    Some(Offset::End) => Offset::End,
                    _ => Offset::Beginning,
                },
                Err(e) => {
                    warn!(target: "fairgate::state", partition = part, error = %e, "exposure: cannot look offsets up by time; replaying the partition from its beginning");
                    Offset::Beginning
                }
            };
            out.insert(part, (from, end));
        }
        out
    }

    fn assigned(&self, c: &BaseConsumer<OwnerCtx>, tpl: &mut TopicPartitionList) {
        let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let from = self.replay_from(c, &parts);
        let mut st = self.state.lock();
        for &p in &parts {
            let (offset, end) = from
                .get(&p)
                .copied()
                .unwrap_or((Offset::Beginning, UNKNOWN_END));
            let _ = tpl.set_partition_offset(&self.topic, p, offset);
            let nothing = matches!(offset, Offset::End)
                || matches!(offset, Offset::Offset(o) if o >= end)
                || end == 0;
            if !nothing {
                st.owner.restoring(p);
                st.restoring.insert(
                    p,
                    Restoring {
                        end,
                        started: Instant::now(),
                        replayed: 0,
                    },
                );
            }
            if !st.partitions.contains(&p) {
                st.partitions.push(p);
            }
        }
        self.metrics
            .state
            .owned_partitions
            .set(st.partitions.len() as i64);
        info!(target: "fairgate::state", partitions = ?parts, replaying = st.restoring.len(), "exposure partitions assigned: rebuilding their windows");
    }

    fn revoked(&self, tpl: &TopicPartitionList) {
        let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let mut st = self.state.lock();
        st.owner.revoke(&parts);
        for p in &parts {
            st.restoring.remove(p);
        }
        st.partitions.retain(|p| !parts.contains(p));
        self.metrics
            .state
            .owned_partitions
            .set(st.partitions.len() as i64);
        info!(target: "fairgate::state", partitions = ?parts, "exposure partitions revoked");
    }
}

impl ConsumerContext for OwnerCtx {
    /// librdkafka's rebalance, with the replay offsets set before the
    /// partitions are assigned (the default callback cannot set them).
    fn rebalance(
        &self,
        c: &BaseConsumer<OwnerCtx>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assigned(c, tpl);
                if cooperative {
                    c.incremental_assign(tpl)
                } else {
                    c.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoked(tpl);
                if cooperative {
                    c.incremental_unassign(tpl)
                } else {
                    c.unassign()
                }
            }
            other => {
                warn!(target: "fairgate::state", error = ?other, "owners' group: rebalance error");
                self.revoked(tpl);
                c.unassign()
            }
        };
        if let Err(e) = result {
            warn!(target: "fairgate::state", error = %e, "owners' group: cannot apply the assignment");
        }
    }
}

fn finish_restore(st: &mut OwnerState, metrics: &Metrics, partition: i32) {
    let Some(r) = st.restoring.remove(&partition) else {
        return;
    };
    st.owner.restored(partition);
    let secs = r.started.elapsed().as_secs_f64();
    metrics.state.restore_seconds.observe(secs);
    info!(target: "fairgate::state", partition, records = r.replayed, secs, "exposure partition replayed: its campaigns' windows are rebuilt");
}

/// Counts the table writes and alerts that failed (they are rewritten at the
/// next change or refresh; a failed alert is logged).
struct WriteCtx(Metrics);

impl ClientContext for WriteCtx {}

impl ProducerContext for WriteCtx {
    type DeliveryOpaque = Box<&'static str>;

    fn delivery(&self, result: &DeliveryResult<'_>, kind: Box<&'static str>) {
        let outcome = if result.is_ok() { "sent" } else { "failed" };
        if let Err((e, _)) = result {
            warn!(target: "fairgate::state", kind = *kind, error = %e, "campaign table or alert write failed");
        }
        if *kind == "alert" {
            self.0
                .alerts
                .with_label_values(&["topic", if result.is_ok() { "sent" } else { "failed" }])
                .inc();
        } else {
            self.0
                .state
                .table_writes
                .with_label_values(&[*kind, outcome])
                .inc();
        }
    }
}

/// The owner, started.
pub(super) struct OwnerLoop {
    consumer: BaseConsumer<OwnerCtx>,
    producer: ThreadedProducer<WriteCtx>,
    config: Config,
    key: StateKey,
    fanout: Option<mpsc::Sender<AlertEvent>>,
}

impl OwnerLoop {
    pub(super) fn start(
        config: &Config,
        key: StateKey,
        guard: Arc<Guard>,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
        fanout: Option<mpsc::Sender<AlertEvent>>,
    ) -> Result<OwnerLoop, String> {
        let k = &config.kafka;
        let topic = k.topics.exposure.clone();
        let ctx = OwnerCtx {
            state: Mutex::new(OwnerState {
                owner: Owner::new(),
                restoring: HashMap::new(),
                partitions: Vec::new(),
            }),
            topic: topic.clone(),
            guard,
            metrics: metrics.clone(),
            clock,
        };
        let mut cc = consumer_config(&k.brokers, &config.owner_group(), &k.common, &k.consumer);
        cc.set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<OwnerCtx> = cc
            .create_with_context(ctx)
            .map_err(|e| format!("owners' consumer: {e}"))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| format!("owners' consumer: cannot subscribe to {topic:?}: {e}"))?;
        let producer: ThreadedProducer<WriteCtx> =
            producer_config(&k.brokers, &k.common, &k.producer)
                .create_with_context(WriteCtx(metrics))
                .map_err(|e| format!("campaign table producer: {e}"))?;
        Ok(OwnerLoop {
            consumer,
            producer,
            config: config.clone(),
            key,
            fanout,
        })
    }

    /// Merge, judge and write until `stop`.
    ///
    /// Nothing is polled until the table has been read once: the group is
    /// joined, and partitions replayed, only then. A campaign first seen in
    /// a replay starts from its table row (state, override,
    /// acknowledgement, since); read before the table was, it would start
    /// from no row or an old one, and its next row, newer, would replace
    /// the real one on every instance.
    pub(super) fn run(self, stop: Arc<AtomicBool>) {
        let shared = self.consumer.context().guard.shared().cloned();
        while !stop.load(Ordering::Relaxed) && shared.as_ref().is_some_and(|s| !s.table.loaded()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let every = Duration::from_millis(self.config.state.judge_interval_ms);
        let mut judged = Instant::now();
        let mut swept = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => self.take(m.partition(), m.offset(), m.key(), m.payload()),
                Some(Err(e)) => {
                    warn!(target: "fairgate::state", error = %e, "exposure: consume error")
                }
                None => {}
            }
            if judged.elapsed() >= every {
                judged = Instant::now();
                self.check_restoring();
                self.judge();
            }
            if swept.elapsed() >= SWEEP_EVERY {
                swept = Instant::now();
                self.sweep_table();
            }
        }
        self.judge();
        let _ = rdkafka::producer::Producer::flush(&self.producer, Duration::from_secs(5));
        self.consumer.unsubscribe();
    }

    fn take(&self, partition: i32, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        let ctx = self.consumer.context();
        let label = |r: &str| {
            ctx.metrics
                .state
                .records
                .with_label_values(&["exposure", r])
                .inc()
        };
        let mut st = ctx.state.lock();
        if let Some(r) = st.restoring.get_mut(&partition) {
            r.replayed += 1;
            ctx.metrics.state.restore_records.inc();
        }
        let row = match (key.and_then(|k| std::str::from_utf8(k).ok()), value) {
            (Some(id), Some(v)) => decode_exposure(&self.key, id, v).map_err(|e| e.as_str()),
            _ => Err("malformed"),
        };
        let live = ctx.guard.live();
        let now = ctx.clock.now_ms();
        let table = ctx.guard.shared().map(|s| &s.table);
        let seed = |id: &str| table.and_then(|t| t.get(id)).map(|r| (*r).clone());
        let merged = match row {
            Ok(ExposureRow::Delta(d)) => st
                .owner
                .merge(&live.policy, partition, &d, || seed(&d.campaign), now)
                .map_err(|s| s.as_str()),
            Ok(ExposureRow::Override(c)) => {
                let r = st
                    .owner
                    .command(&live.policy, partition, &c, || seed(&c.campaign), now);
                if r.is_ok() {
                    info!(target: "fairgate::state", campaign = %c.campaign, action = c.action.as_str(), "override applied by the campaign's owner");
                }
                r.map_err(|s| s.as_str())
            }
            Err(e) => {
                warn!(target: "fairgate::state", partition, offset, error = e, "exposure: record skipped");
                Err(e)
            }
        };
        label(merged.err().unwrap_or("applied"));
        // Replayed up to where the partition ended at assignment: judge it.
        if st
            .restoring
            .get(&partition)
            .is_some_and(|r| offset + 1 >= r.end)
        {
            finish_restore(&mut st, &ctx.metrics, partition);
        }
    }

    /// Partitions whose position passed their end without a record there
    /// (skipped records, control records) are replayed too.
    fn check_restoring(&self) {
        let ctx = self.consumer.context();
        let unknown: Vec<i32> = {
            let st = ctx.state.lock();
            if st.restoring.is_empty() {
                return;
            }
            st.restoring
                .iter()
                .filter(|(_, r)| r.end == UNKNOWN_END)
                .map(|(p, _)| *p)
                .collect()
        };
        // Ends that could not be read at assignment (a leader election, a
        // broker restarting): asked again, without the lock, until known.
        for p in unknown {
            if let Ok((_, high)) =
                self.consumer
                    .fetch_watermarks(&ctx.topic, p, Duration::from_secs(1))
            {
                let mut st = ctx.state.lock();
                if let Some(r) = st.restoring.get_mut(&p) {
                    r.end = high;
                    if high == 0 {
                        finish_restore(&mut st, &ctx.metrics, p);
                    }
                }
            }
        }
        let Ok(pos) = self.consumer.position() else {
            return;
        };
        let mut st = ctx.state.lock();
        for e in pos.elements_for_topic(&ctx.topic) {
            if let Offset::Offset(o) = e.offset()
                && st.restoring.get(&e.partition()).is_some_and(|r| o >= r.end)
            {
                finish_restore(&mut st, &ctx.metrics, e.partition());
            }
        }
    }

    /// Judge what the deltas changed; write rows, tombstones and alerts.
    fn judge(&self) {
        let ctx = self.consumer.context();
        let live = ctx.guard.live();
        let policy = &live.policy;
        let platform = ctx
            .guard
            .shared()
            .map(|s| s.table.platform_totals(policy.total_groups))
            .unwrap_or_default();
        let now = ctx.clock.now_ms();
        let outs = {
            let mut st = ctx.state.lock();
            let outs = st.owner.judge(
                policy,
                &platform,
                now,
                self.config.state.table_refresh_ms as i64,
            );
            ctx.metrics.state.owned_campaigns.set(st.owner.len() as i64);
            outs
        };
        let table = &self.config.kafka.topics.campaigns;
        for out in outs {
            match out {
                Out::Row(r) => {
                    let bytes = encode_campaign(&self.key, &r);
                    self.send(table, &r.report.campaign, Some(&bytes), "row", None);
                }
                Out::Gone(id) => self.send(table, &id, None, "tombstone", None),
                Out::Platform(p) => {
                    let bytes = encode_platform(&self.key, &p);
                    self.send(table, PLATFORM_KEY, Some(&bytes), "platform", None);
                }
                Out::Alert(a) => {
                    info!(target: "fairgate::alerts", campaign = %a.campaign, from = a.old_state.as_str(), to = a.new_state.as_str(), measure = ?a.measure.map(|m| m.as_str()), value = ?a.value, "campaign state changed");
                    ctx.metrics
                        .transitions
                        .with_label_values(&[
                            "transition",
                            a.old_state.as_str(),
                            a.new_state.as_str(),
                        ])
                        .inc();
                    let out = alert_out(&a, &live.version);
                    self.send(
                        &self.config.kafka.topics.alerts,
                        &a.campaign,
                        Some(&out.payload),
                        "alert",
                        Some(&out),
                    );
                    if let Some(f) = &self.fanout
                        && f.try_send(*a).is_err()
                    {
                        ctx.metrics
                            .alerts
                            .with_label_values(&["webhook", "dropped"])
                            .inc();
                    }
                }
            }
        }
    }

    /// Tombstone rows of campaigns idle for twice `idle_evict_secs` that no
    /// owner holds any more (forgotten before a restart: their owner never
    /// saw them again). Their live owner forgets them at once
    /// `idle_evict_secs` and writes the tombstone itself; this catches the
    /// rest. A campaign that comes back gets a row from its owner again.
    fn sweep_table(&self) {
        let ctx = self.consumer.context();
        let Some(shared) = ctx.guard.shared() else {
            return;
        };
        let idle = ctx.guard.live().policy.idle_evict_ms.saturating_mul(2);
        let ids = shared.table.idle(ctx.clock.now_ms(), idle, SWEEP_MAX);
        for id in ids {
            self.send(
                &self.config.kafka.topics.campaigns,
                &id,
                None,
                "tombstone",
                None,
            );
        }
    }

    /// Produce one record, waiting out a full queue.
    fn send(
        &self,
        topic: &str,
        key: &str,
        value: Option<&[u8]>,
        kind: &'static str,
        out: Option<&crate::kafka::pipeline::Out>,
    ) {
        let mut rec = BaseRecord::with_opaque_to(topic, Box::new(kind)).key(key.as_bytes());
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        if let Some(o) = out {
            rec = rec.headers(headers_of(o));
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => return,
                Err((e, back)) => {
                    if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                        std::thread::sleep(Duration::from_millis(5));
                        rec = back;
                    } else {
                        warn!(target: "fairgate::state", kind, error = %e, "cannot write to the campaign table or alerts");
                        self.consumer
                            .context()
                            .metrics
                            .state
                            .table_writes
                            .with_label_values(&[kind, "failed"])
                            .inc();
                        return;
                    }
                }
            }
        }
    }
}
