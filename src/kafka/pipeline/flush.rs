//! Exposure flushes: the stage's count deltas published, and the input
//! records that they count released for commit once every delta is
//! acknowledged. An input offset is never committed before the deltas that
//! cover it.
//!
//! Order matters: the records held so far are taken *before* the stage's
//! counts. A record is counted before it is held (the judge thread counts
//! it, then begins it held), so every record taken here was counted into
//! the counts taken just after, or into an earlier flush's, which may still
//! be in flight: a flush's records are released only once its deltas and
//! every earlier flush's are acknowledged ([`Holds`], a queue), even when
//! it had no deltas of its own.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use rdkafka::producer::ThreadedProducer;

use super::context::ProducerCtx;
use super::error::PipelineError;
use super::records::{FlushBatch, Out, Outgoing};
use super::send::{send_async, send_blocking};
use super::shared::{Holds, Shared};
use super::stage::Stage;
use crate::config::Topics;

/// The held records and the deltas that cover them, as records to send; or
/// nothing to send (the holds are released once every earlier flush is:
/// a record held now may have been counted into one still in flight).
fn prepare(shared: &Shared, holds: &Holds, stage: &dyn Stage) -> Vec<Outgoing> {
    let taking = holds.taking.lock();
    let held = holds.take();
    let outs: Vec<Out> = stage.flush();
    let batch = Arc::new(FlushBatch {
        remaining: AtomicUsize::new(outs.len()),
        holds: held,
        started: Instant::now(),
    });
    if batch.holds.is_empty() && outs.is_empty() {
        return Vec::new();
    }
    holds.queue(batch.clone());
    drop(taking);
    if outs.is_empty() {
        shared.release_ready();
        return Vec::new();
    }
    shared.metrics.state.deltas.inc_by(outs.len() as u64);
    outs.into_iter()
        .map(|out| {
            let mut o = Outgoing::new(out, None, None);
            o.token.batch = Some(batch.clone());
            o
        })
        .collect()
}

/// Flush from the consume loop.
pub(super) async fn flush_async(
    shared: &Shared,
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    holds: &Holds,
    stage: &dyn Stage,
) -> Result<(), PipelineError> {
    for t in prepare(shared, holds, stage) {
        send_async(shared, producer, topics, t).await?;
    }
    Ok(())
}

/// Flush from a callback (partitions about to be revoked), blocking.
pub(super) fn flush_blocking(
    shared: &Shared,
    producer: &ThreadedProducer<ProducerCtx>,
    topics: &Topics,
    holds: &Holds,
    stage: &dyn Stage,
) -> Result<(), PipelineError> {
    for t in prepare(shared, holds, stage) {
        send_blocking(shared, producer, topics, t)?;
    }
    Ok(())
}
