//! The consume loop: reads input records and hands each to the judge thread
//! that owns its partition; also sends again what failed transiently and
//! publishes overrides' alerts. Everything but new input is served first (a
//! `biased` select), and input stops while the in-flight bound is reached.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::ThreadedProducer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::context::{ConsumerCtx, ProducerCtx};
use super::error::PipelineError;
use super::flush::flush_async;
use super::records::{Outgoing, alert_out, pick_headers};
use super::send::{resend, send_async};
use super::shared::Shared;
use super::stage::{Input, Stage};
use super::worker::Job;
use crate::config::Topics;
use crate::fairness::alert::AlertEvent;

/// How long the consume loop may be held back by `max_in_flight` before it
/// pauses its partitions and polls again.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// The consume loop's state. What it owns goes on to the drain.
pub(super) struct ConsumeLoop {
    pub(super) shared: Arc<Shared>,
    pub(super) producer: ThreadedProducer<ProducerCtx>,
    pub(super) consumer: Arc<StreamConsumer<ConsumerCtx>>,
    pub(super) topics: Topics,
    pub(super) stage: Arc<dyn Stage>,
    /// One queue per judge thread; a partition's records go to `partition mod queues`.
    pub(super) queues: Vec<mpsc::Sender<Job>>,
    /// Alerts from elsewhere (overrides) to publish on the alerts topic.
    pub(super) alerts: mpsc::Receiver<AlertEvent>,
    /// Alerts to hand to other sinks (webhook) as well.
    pub(super) alert_fanout: Option<mpsc::Sender<AlertEvent>>,
    pub(super) retry_rx: mpsc::UnboundedReceiver<Outgoing>,
    pub(super) fatal_rx: mpsc::UnboundedReceiver<PipelineError>,
    /// Input records read in this run.
    pub(super) consumed: u64,
    pub(super) alerts_open: bool,
    /// Exposure deltas are flushed at least this often…
    pub(super) flush_every: Duration,
    /// …and as soon as this many input records wait for them.
    pub(super) flush_at: usize,
    /// When the last input record was handed to a judge thread.
    pub(super) last_input: tokio::time::Instant,
    /// When the exposure deltas were last flushed.
    pub(super) last_flush: tokio::time::Instant,
}

/// Input quiet this long: the deltas of what was judged are flushed at once,
/// and again this often while the judge threads finish what they were
/// given (what they judge after a flush waits on the next one).
const IDLE_FLUSH: Duration = Duration::from_millis(50);

impl ConsumeLoop {
    /// Until `cancel` fires (returns `None`) or an error stops the pipeline.
    pub(super) async fn run(&mut self, cancel: &CancellationToken) -> Option<PipelineError> {
        let holding = self.shared.holds.is_some();
        let mut held_since: Option<tokio::time::Instant> = None;
        let mut flush_tick = tokio::time::interval(self.flush_every);
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let flush_due = self
                .shared
                .holds
                .as_ref()
                .is_some_and(|h| h.len() >= self.flush_at);
            let held_back = !self.paused() && self.shared.in_flight.held_back();
            // The pause is due a fixed time after holding back began: other
            // branches (the flush tick) must not put it off for ever, or a
            // consumer held back would never poll, and never serve the
            // rebalance that could free it.
            if !held_back {
                held_since = None;
            } else if held_since.is_none() {
                held_since = Some(tokio::time::Instant::now());
            }
            // (When not held back the branch is disabled; any instant will do.)
            let pause_at = held_since.unwrap_or(self.last_input) + PAUSE_AFTER;
            let step = tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                Some(e) = self.fatal_rx.recv() => Err(e),
                Some(r) = self.retry_rx.recv() => {
                    resend(&self.shared, &self.producer, &self.topics, r).await
                }
                a = self.alerts.recv(), if self.alerts_open => self.publish_alert(a).await,
                _ = flush_tick.tick(), if holding => self.flush().await,
                // Input paused (a burst ended, or a quiet spell): flush now,
                // and every IDLE_FLUSH after, so that what the judge threads
                // finish from their queues is committed without waiting for
                // the next tick. Armed while anything is uncommitted, not
                // only while records are held: a branch's condition is read
                // when the loop comes round, and with input stopped nothing
                // else may bring it round before the next tick.
                _ = tokio::time::sleep_until(self.last_input.max(self.last_flush) + IDLE_FLUSH),
                    if holding && self.shared.in_flight.records() > 0 => {
                    flush_tick.reset();
                    self.flush().await
                }
                // Many records wait on the next flush: flush now, so that
                // the deltas never hold back max_in_flight.
                _ = std::future::ready(()), if flush_due => {
                    flush_tick.reset();
                    self.flush().await
                }
                // Places came back: read again (resuming the partitions if
                // they were paused).
                _ = self.shared.in_flight.freed(), if held_back || self.paused() => {
                    self.resume_if_free();
                    Ok(())
                }
                // Held back for a while (a slow or absent broker): pause the
                // partitions and poll again, so that rebalances and group
                // errors are served. Brief back-pressure leaves the fetched
                // records in librdkafka's queue instead.
                _ = tokio::time::sleep_until(pause_at), if held_back => {
                    set_paused(&self.consumer, true);
                    self.shared.paused.store(true, Ordering::Relaxed);
                    Ok(())
                }
                m = self.consumer.recv(), if !held_back => match self.take(m) {
                    Some(job) => self.hand_over(job).await,
                    None => Ok(()),
                },
            };
            if let Err(e) = step {
                return Some(e);
            }
        }
    }

    /// An override's alert: publish it, and hand it to the other sinks.
    pub(super) async fn publish_alert(
        &mut self,
        a: Option<AlertEvent>,
    ) -> Result<(), PipelineError> {
        let Some(a) = a else {
            self.alerts_open = false;
            return Ok(());
        };
        let out = alert_out(&a, &self.stage.policy_version());
        if let Some(f) = &self.alert_fanout {
            let _ = f.try_send(a);
        }
        send_async(
            &self.shared,
            &self.producer,
            &self.topics,
            Outgoing::new(out, None, None),
        )
        .await
    }

    /// Publish the exposure deltas; the records they count may then be committed.
    pub(super) async fn flush(&mut self) -> Result<(), PipelineError> {
        self.last_flush = tokio::time::Instant::now();
        match &self.shared.holds {
            Some(h) => {
                flush_async(&self.shared, &self.producer, &self.topics, h, &*self.stage).await
            }
            None => Ok(()),
        }
    }

    fn resume_if_free(&mut self) {
        if self.paused() && !self.shared.in_flight.held_back() {
            set_paused(&self.consumer, false);
            self.shared.paused.store(false, Ordering::Relaxed);
        }
    }

    /// The partitions are paused (held back for longer than [`PAUSE_AFTER`]).
    fn paused(&self) -> bool {
        self.shared.paused.load(Ordering::Relaxed)
    }

    /// A record read: take its place in flight and make it a job. `None` for
    /// a consume error, or a record of a partition no longer ours (its new
    /// owner reads it).
    fn take(&self, m: KafkaResult<BorrowedMessage<'_>>) -> Option<Job> {
        let m = m
            .inspect_err(|e| warn!(target: "fairgate::kafka", error = %e, "consume error"))
            .ok()?;
        let generation = self.shared.offsets.lock().generation(m.partition())?;
        // One place per input record, given back at commit, and its bytes,
        // given back at acknowledgement. A record that arrives while the
        // consumer is paused (fetched before the pause) is taken over the
        // limit and paid off first.
        let size = m.payload_len() + m.key_len();
        self.shared.in_flight.acquire_or_owe(size);
        self.shared.health.consumed.fetch_add(1, Ordering::Relaxed);
        let input = Input {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or(&[]).to_vec(),
            headers: pick_headers(&m, self.stage.input_headers()),
        };
        Some(Job {
            generation,
            size,
            input,
        })
    }

    /// To the judge thread that owns the record's partition. Never waits: a
    /// queue can hold every record in flight.
    async fn hand_over(&mut self, job: Job) -> Result<(), PipelineError> {
        self.consumed += 1;
        self.last_input = tokio::time::Instant::now();
        let at = job.input.partition.rem_euclid(self.queues.len() as i32) as usize;
        self.queues[at]
            .send(job)
            .await
            .map_err(|_| PipelineError::WorkerStopped)
    }
}

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
