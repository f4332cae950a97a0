//! What the consume loop, the judge threads, the committer and librdkafka's
//! callbacks share.
//!
//! Locks, and which may be held together:
//!
//! * `commit_lock` → `offsets`: a commit takes `commit_lock` first and holds
//!   it across the commit call; `offsets` is taken inside it, briefly, and
//!   never across a call to Kafka.
//! * `offsets` alone everywhere else (the delivery callback, judge threads,
//!   the consume loop, rebalances), and never while flushing the producer: a
//!   flush waits for delivery callbacks, which take `offsets`.
//! * The in-flight bound's lock is a leaf: places are given back after
//!   `offsets` is let go.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::super::offsets::Offsets;
use super::error::PipelineError;
use super::in_flight::InFlight;
use super::records::{FlushBatch, Outgoing};
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Health of the pipeline, read by `/readyz`.
#[derive(Debug)]
pub struct Health {
    /// The consumer holds a non-empty assignment.
    pub assigned: AtomicBool,
    /// The producer can reach the brokers (cleared on "all brokers down",
    /// set again on the next acknowledged delivery).
    pub producer_ok: AtomicBool,
    /// The pipeline loop is running.
    pub running: AtomicBool,
    /// Set when the pipeline stopped on a fatal error.
    pub fatal: Mutex<Option<String>>,
    /// Input records consumed.
    pub consumed: AtomicU64,
    /// Input records whose every produced record is acknowledged.
    pub completed: AtomicU64,
    /// Records waiting on the assigned input partitions, as librdkafka's
    /// statistics last reported (-1: not reported yet).
    pub lag: AtomicI64,
    /// Why the progress watchdog finds the pipeline stalled, while it does.
    pub stalled: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            assigned: AtomicBool::new(false),
            producer_ok: AtomicBool::new(false),
            running: AtomicBool::new(false),
            fatal: Mutex::new(None),
            consumed: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            lag: AtomicI64::new(-1),
            stalled: Mutex::new(None),
        }
    }
}

impl Health {
    pub fn ready(&self) -> bool {
        self.running.load(Ordering::Relaxed)
            && self.assigned.load(Ordering::Relaxed)
            && self.producer_ok.load(Ordering::Relaxed)
            && self.fatal.lock().is_none()
            && self.stalled.lock().is_none()
    }
}

/// State shared by the pipeline's tasks, threads and callbacks.
pub(super) struct Shared {
    /// Which input offsets may be committed. See the lock order above.
    pub(super) offsets: Mutex<Offsets>,
    /// Held while committing, so the periodic commit and the commit on
    /// revocation never interleave (an older offset never lands after a
    /// newer one). Taken before `offsets`.
    pub(super) commit_lock: Mutex<()>,
    /// At most `max_in_flight` records between read and commit.
    pub(super) in_flight: InFlight,
    pub(super) metrics: Metrics,
    pub(super) health: Arc<Health>,
    pub(super) clock: Arc<dyn Clock>,
    /// Records whose delivery failed transiently, back to the consume loop.
    pub(super) retry_tx: mpsc::UnboundedSender<Outgoing>,
    /// Errors that stop the pipeline, to the consume loop.
    pub(super) fatal_tx: mpsc::UnboundedSender<PipelineError>,
    pub(super) input_topic: String,
    /// How long a flush or the drain may take.
    pub(super) grace: Duration,
    /// Produced records acknowledged.
    pub(super) delivered: AtomicU64,
    /// Set when the pipeline gives up on what it holds (fatal error, or the
    /// grace period is over): judge threads drop their remaining records,
    /// which stay uncommitted.
    pub(super) abandon: AtomicBool,
    /// Input records waiting for the next exposure flush (when the stage
    /// counts exposure: [`super::stage::Stage::holds`]).
    pub(super) holds: Option<Holds>,
    /// The consume loop has paused its partitions (held back for a while):
    /// partitions assigned meanwhile stay paused too, or a cooperative
    /// rebalance would have them read past the in-flight bound.
    pub(super) paused: AtomicBool,
}

/// Input records begun held, waiting for the next flush; and the flushes
/// not yet released, in the order they were taken.
///
/// A judge thread counts a record, then holds it, so a flush can take the
/// counts that include a record that the *next* flush holds. The next
/// flush's records are therefore released only once every earlier flush's
/// deltas are acknowledged too, not when its own are (or at once, when it
/// had no deltas): in order, as a queue.
#[derive(Debug, Default)]
pub(super) struct Holds {
    list: Mutex<Vec<(i32, u64, i64)>>,
    len: AtomicUsize,
    /// Flushes taken and not yet released, oldest first.
    flushes: Mutex<std::collections::VecDeque<Arc<FlushBatch>>>,
    /// Held by [`super::flush`] from taking a flush's records to queueing
    /// it, so that flushes are queued in the order they were taken.
    pub(super) taking: Mutex<()>,
}

impl Holds {
    /// A record begun held (after `Offsets::begin_held`).
    pub(super) fn push(&self, input: (i32, u64, i64)) {
        self.list.lock().push(input);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Records waiting for a flush.
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The records held so far; the next list starts with room for as many
    /// (it would otherwise grow from empty by doubling, through fresh
    /// memory, between every two flushes).
    pub(super) fn take(&self) -> Vec<(i32, u64, i64)> {
        // Allocated outside the lock, which the judge threads take per record.
        let room = Vec::with_capacity(self.list.lock().len());
        let taken = std::mem::replace(&mut *self.list.lock(), room);
        self.len.fetch_sub(taken.len(), Ordering::Relaxed);
        taken
    }
}

impl Holds {
    /// A flush taken, behind those not yet released.
    pub(super) fn queue(&self, batch: Arc<FlushBatch>) {
        self.flushes.lock().push_back(batch);
    }

    /// The flushes at the front of the queue that are done, taken from it.
    fn ready(&self) -> Vec<Arc<FlushBatch>> {
        let mut q = self.flushes.lock();
        let mut out = Vec::new();
        while q
            .front()
            .is_some_and(|b| b.remaining.load(Ordering::Acquire) == 0)
        {
            out.extend(q.pop_front());
        }
        out
    }
}

impl Shared {
    /// Release every flush at the front of the queue that is done.
    pub(super) fn release_ready(&self) {
        if let Some(h) = &self.holds {
            for b in h.ready() {
                self.release_holds(&b.holds);
            }
        }
    }

    /// The holds of a flush whose deltas are all acknowledged (or that had
    /// none), and every earlier flush's too: those records may be committed.
    fn release_holds(&self, held: &[(i32, u64, i64)]) {
        if held.is_empty() {
            return;
        }
        let mut offsets = self.offsets.lock();
        for &(p, g, o) in held {
            offsets.release_hold(p, g, o);
        }
    }

    /// A delta was acknowledged: when it was its flush's last, release the flush.
    pub(super) fn delta_acknowledged(&self, batch: &FlushBatch) {
        if batch.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.metrics
                .state
                .flush_seconds
                .observe(batch.started.elapsed().as_secs_f64());
            self.release_ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(deltas: usize, held: i64) -> Arc<FlushBatch> {
        Arc::new(FlushBatch {
            remaining: AtomicUsize::new(deltas),
            holds: vec![(0, 1, held)],
            started: std::time::Instant::now(),
        })
    }

    /// A flush with no deltas of its own (its records were counted into
    /// the previous flush, still in flight) is released only after that
    /// one; and a later flush acknowledged first waits too.
    #[test]
    fn flushes_are_released_in_the_order_they_were_taken() {
        let h = Holds::default();
        let first = batch(2, 10);
        h.queue(first.clone());
        h.queue(batch(0, 11));
        let third = batch(1, 12);
        h.queue(third.clone());
        assert!(h.ready().is_empty(), "the first is in flight");
        third.remaining.store(0, Ordering::Release);
        assert!(h.ready().is_empty(), "the third is done, the first is not");
        first.remaining.store(0, Ordering::Release);
        let released: Vec<i64> = h.ready().iter().map(|b| b.holds[0].2).collect();
        assert_eq!(released, vec![10, 11, 12]);
        assert!(h.ready().is_empty(), "each released once");
    }
}
