//! Handing records to the producer: one attempt, what a failure means, and
//! the one back-off both re-send paths use.
//!
//! A record can fail twice over: `producer.send` can refuse it at once (a
//! full queue, a local error), and a delivery can fail later, in the
//! delivery callback, which hands the token back to the consume loop.
//! `QueueFull` is back-pressure (wait a moment, send again); a transient
//! error waits [`backoff`]; a fatal one stops the pipeline without
//! committing the record.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::super::client::{ErrorClass, classify};
use super::context::ProducerCtx;
use super::error::PipelineError;
use super::failure::{fatal, refuse};
use super::records::{Out, Outgoing, Token, headers_of};
use super::shared::Shared;
use crate::config::Topics;

/// The back-off grows by this much with each transient failure of a record…
const BACKOFF_STEP: Duration = Duration::from_millis(50);
/// …for this many failures, then stays (at 500 ms).
const BACKOFF_MAX_STEPS: u32 = 10;
/// How long to wait on a full producer queue before sending again.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(1);

/// How long to wait before sending a record again after its `attempts`-th
/// transient failure: 50 ms more per failure, at most 500 ms.
pub(super) fn backoff(attempts: u32) -> Duration {
    BACKOFF_STEP * attempts.min(BACKOFF_MAX_STEPS)
}

/// Why one attempt to hand a record to the producer failed.
#[derive(Debug)]
enum SendFailure {
    /// The producer's queue is full: back-pressure, wait and send again.
    QueueFull,
    Retriable,
    /// The topic can never take this record as it is.
    Refused(KafkaError),
    Fatal(KafkaError),
}

fn failure_of(e: KafkaError) -> SendFailure {
    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
        return SendFailure::QueueFull;
    }
    match classify(&e) {
        ErrorClass::Retriable => SendFailure::Retriable,
        ErrorClass::Refused => SendFailure::Refused(e),
        ErrorClass::Fatal => SendFailure::Fatal(e),
    }
}

/// Count one more transient failure of `token`; returns how long to wait.
fn failed_again(token: &mut Token) -> Duration {
    token.attempts += 1;
    backoff(token.attempts)
}

/// Hand `out` to the producer once, with its token.
fn try_send(
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    out: &Out,
    token: Box<Token>,
) -> Result<(), (Box<Token>, SendFailure)> {
    debug_assert_eq!(out.role, token.role, "a token names its record's topic");
    let mut rec = BaseRecord::with_opaque_to(out.role.topic(topics), token)
        .payload(&out.payload)
        .headers(headers_of(out));
    if let Some(k) = &out.key {
        rec = rec.key(k);
    }
    producer
        .send(rec)
        .map_err(|(e, rec)| (rec.delivery_opaque, failure_of(e)))
}

/// After a failed send: what to send next (the same, or the dead-letter
/// form of a refused record) and how long to wait first, or the fatal error.
fn pause_after(
    shared: &Shared,
    out: Out,
    mut token: Box<Token>,
    failure: SendFailure,
) -> Result<(Outgoing, Duration), PipelineError> {
    match failure {
        SendFailure::QueueFull => Ok((Outgoing { out, token }, QUEUE_FULL_PAUSE)),
        SendFailure::Retriable => {
            let pause = failed_again(&mut token);
            Ok((Outgoing { out, token }, pause))
        }
        SendFailure::Refused(e) => Ok((refuse(shared, &out, &token, &e)?, Duration::ZERO)),
        SendFailure::Fatal(e) => Err(fatal(shared, &token, &e)),
    }
}

/// Send from async code (the consume loop: overrides' alerts, re-sends, deltas).
pub(super) async fn send_async(
    shared: &Shared,
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    mut r: Outgoing,
) -> Result<(), PipelineError> {
    loop {
        match try_send(producer, topics, &r.out, r.token) {
            Ok(()) => return Ok(()),
            Err((token, failure)) => {
                let pause;
                (r, pause) = pause_after(shared, r.out, token, failure)?;
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Send again a record whose delivery failed transiently, after its back-off.
pub(super) async fn resend(
    shared: &Shared,
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    mut r: Outgoing,
) -> Result<(), PipelineError> {
    tokio::time::sleep(failed_again(&mut r.token)).await;
    send_async(shared, producer, topics, r).await
}

/// Send from a judge thread. Gives up (leaving the record uncommitted, so it
/// is read again) when the pipeline abandons its work after the grace period.
/// The record is freed here, on the thread that made it, once librdkafka
/// has its copy.
pub(super) fn send_blocking(
    shared: &Shared,
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    mut r: Outgoing,
) -> Result<(), PipelineError> {
    loop {
        match try_send(producer, topics, &r.out, r.token) {
            Ok(()) => return Ok(()),
            Err((token, failure)) => {
                let pause;
                (r, pause) = pause_after(shared, r.out, token, failure)?;
                if shared.abandon.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(pause);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::pipeline::records::Role;

    #[test]
    fn backoff_grows_by_a_step_per_failure_then_stays() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(50));
        assert_eq!(backoff(4), Duration::from_millis(200));
        assert_eq!(backoff(10), Duration::from_millis(500));
        assert_eq!(backoff(11), Duration::from_millis(500));
        assert_eq!(backoff(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn each_failure_of_a_record_waits_longer() {
        let mut token = Token::new(None, None, Role::Output);
        let waits: Vec<Duration> = (0..3).map(|_| failed_again(&mut token)).collect();
        assert_eq!(waits, [50, 100, 150].map(Duration::from_millis));
        assert_eq!(token.attempts, 3);
    }

    #[test]
    fn a_full_queue_is_back_pressure_and_a_bad_record_is_fatal() {
        let e = |c| KafkaError::MessageProduction(c);
        assert!(matches!(
            failure_of(e(RDKafkaErrorCode::QueueFull)),
            SendFailure::QueueFull
        ));
        assert!(matches!(
            failure_of(e(RDKafkaErrorCode::UnknownPartition)),
            SendFailure::Retriable
        ));
        assert!(matches!(
            failure_of(e(RDKafkaErrorCode::MessageSizeTooLarge)),
            SendFailure::Refused(_)
        ));
        assert!(matches!(
            failure_of(e(RDKafkaErrorCode::TopicAuthorizationFailed)),
            SendFailure::Fatal(_)
        ));
    }
}
