//! librdkafka's callbacks: delivery acknowledgements, client errors,
//! statistics, logs and rebalances.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::super::client::{ErrorClass, classify};
use super::commit::commit_acknowledged;
use super::failure::{fatal, refuse};
use super::records::{Outgoing, Role, Token, out_of_message};
use super::shared::Shared;

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

/// Producer callbacks: delivery acknowledgements and client errors.
pub(super) struct ProducerCtx(pub(super) Arc<Shared>);

impl ProducerCtx {
    /// A produced record is acknowledged: its input may become committable.
    fn acknowledged(&self, token: &Token) {
        let s = &self.0;
        s.health.producer_ok.store(true, Ordering::Relaxed);
        s.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(ts) = token.ts_ms {
            let lag = (s.clock.now_ms() - ts).max(0) as f64 / 1000.0;
            s.metrics.publish_lag.observe(lag);
        }
        if token.role == Role::Alerts {
            s.metrics.alerts.with_label_values(&["topic", "sent"]).inc();
        }
        if let Some((p, g, o)) = token.input
            && s.offsets.lock().ack(p, g, o)
        {
            s.health.completed.fetch_add(1, Ordering::Relaxed);
            s.in_flight.release_bytes(token.input_bytes);
        }
        if let Some(b) = &token.batch {
            s.delta_acknowledged(b);
        }
    }

    /// A delivery of `m` failed: transient ones go back to the consume loop
    /// to be sent again (read back from librdkafka's copy); a fatal one stops
    /// the pipeline (the record stays uncommitted).
    fn failed(&self, e: &KafkaError, m: &BorrowedMessage<'_>, token: Box<Token>) {
        let s = &self.0;
        let role = token.role.as_str();
        match classify(e) {
            ErrorClass::Retriable => {
                s.metrics
                    .delivery_errors
                    .with_label_values(&[role, "retried"])
                    .inc();
                debug!(target: "fairgate::kafka", topic = role, error = %e, "delivery failed; sending again");
                let out = out_of_message(m, token.role);
                let _ = s.retry_tx.send(Outgoing { out, token });
            }
            // The dead-letter form goes back to the consume loop to be sent.
            ErrorClass::Refused => match refuse(s, &out_of_message(m, token.role), &token, e) {
                Ok(dead_letter) => {
                    let _ = s.retry_tx.send(dead_letter);
                }
                Err(stop) => {
                    let _ = s.fatal_tx.send(stop);
                }
            },
            ErrorClass::Fatal => {
                let _ = s.fatal_tx.send(fatal(s, &token, e));
            }
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
        match result {
            Ok(_) => self.acknowledged(&token),
            Err((e, m)) => self.failed(e, m, token),
        }
    }
}

/// Consumer callbacks: rebalances and statistics.
pub(super) struct ConsumerCtx {
    pub(super) shared: Arc<Shared>,
    /// Flushed before partitions are revoked.
    pub(super) producer: ThreadedProducer<ProducerCtx>,
    /// Publishes the exposure deltas (before partitions are revoked, so
    /// that what they count can be committed first).
    pub(super) flush_deltas: Box<dyn Fn() + Send + Sync>,
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
        let mut total = 0i64;
        for (id, p) in &topic.partitions {
            if *id < 0 || p.consumer_lag < 0 {
                continue;
            }
            total = total.saturating_add(p.consumer_lag);
            self.shared
                .metrics
                .consumer_lag
                .with_label_values(&[&self.shared.input_topic, &id.to_string()])
                .set(p.consumer_lag);
        }
        self.shared.health.lag.store(total, Ordering::Relaxed);
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerCtx {
    /// Partitions are about to move: everything produced so far is
    /// acknowledged and committed first, then their records are let go.
    ///
    /// Order: flush while holding no lock (the delivery callbacks it waits
    /// for take `offsets`), then commit (`commit_lock` → `offsets`), then
    /// `offsets` alone to forget the partitions, then give back their places.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let s = &self.shared;
        s.metrics.rebalances.with_label_values(&["revoke"]).inc();
        // Once the pipeline has given up on what it holds (a fatal error, or
        // the grace period is over), nothing more is waited for: what is
        // unacknowledged stays uncommitted and is read again.
        let wait = if s.abandon.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            s.grace
        };
        // The deltas that count what was judged so far, so that those
        // records can be committed before the new owner reads on.
        debug!(target: "fairgate::kafka", lost = consumer.assignment_lost(), "revocation: publishing deltas, flushing the producer");
        if s.holds.is_some() && wait > Duration::ZERO {
            (self.flush_deltas)();
        }
        if let Err(e) = self.producer.flush(wait) {
            warn!(target: "fairgate::kafka", error = %e, "flush before revocation timed out; uncommitted records will be reprocessed by the new owner");
        }
        let parts = partitions_of(tpl);
        debug!(target: "fairgate::kafka", "revocation: committing");
        commit_acknowledged(
            s,
            consumer,
            Some(&parts),
            "on revocation (the new owner reads what is uncommitted)",
        );
        let (released, bytes) = {
            let mut offsets = s.offsets.lock();
            let bytes: usize = parts.iter().map(|&p| offsets.pending_bytes(p)).sum();
            let released = parts.iter().map(|&p| offsets.revoke(p)).sum();
            s.health
                .assigned
                .store(!offsets.partitions().is_empty(), Ordering::Relaxed);
            (released, bytes)
        };
        s.in_flight.release(released);
        s.in_flight.release_bytes(bytes);
        for p in &parts {
            let _ = s
                .metrics
                .consumer_lag
                .remove_label_values(&[&s.input_topic, &p.to_string()]);
        }
        info!(target: "fairgate::kafka", partitions = ?parts, "partitions revoked; offsets committed");
    }

    /// Partitions are ours: start tracking them and fetching from them.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let s = &self.shared;
        s.metrics.rebalances.with_label_values(&["assign"]).inc();
        // librdkafka keeps a partition paused across a revoke and a new
        // assignment: start it fetching, unless the loop holds its
        // partitions paused (past the in-flight bound), where it waits with
        // them and resumes with them. Under a cooperative protocol the
        // other partitions stay assigned, and paused, across this call.
        let paused = s.paused.load(Ordering::Relaxed);
        let r = if paused {
            consumer.pause(tpl)
        } else {
            consumer.resume(tpl)
        };
        if let Err(e) = r {
            warn!(target: "fairgate::kafka", error = %e, paused, "cannot pause or resume newly assigned partitions");
        }
        let parts = partitions_of(tpl);
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

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Revoke(tpl) => self.revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                self.shared
                    .metrics
                    .rebalances
                    .with_label_values(&["error"])
                    .inc();
                warn!(target: "fairgate::kafka", error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            self.assign(consumer, tpl);
        }
    }
}
