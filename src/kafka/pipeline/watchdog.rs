//! The progress watchdog: a pipeline that has consumed and completed nothing
//! for `pipeline.stall_after_secs` while records wait (in flight, or behind
//! on the input partitions) is stalled. `/readyz` turns 503 with the reason,
//! `fairgate_pipeline_stalled` is 1, and a line is logged; all of it clears
//! on the next record consumed or completed.
//!
//! Idle is not stalled: with nothing in flight and no lag, the clock of the
//! last progress moves on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::shared::Shared;

/// What the watchdog saw at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) now_ms: i64,
    /// Input records consumed so far.
    pub(super) consumed: u64,
    /// Input records completed (everything produced for them acknowledged).
    pub(super) completed: u64,
    pub(super) in_flight: i64,
    /// Consumer lag summed over the assigned partitions (-1: unknown).
    pub(super) lag: i64,
}

/// The watchdog's memory between two looks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Progress {
    counts: (u64, u64),
    /// When progress (or idleness) was last seen.
    pub(super) since_ms: i64,
}

impl Progress {
    pub(super) fn new(now_ms: i64) -> Progress {
        Progress {
            counts: (0, 0),
            since_ms: now_ms,
        }
    }

    /// Look once: the reason the pipeline is stalled, or `None`.
    pub(super) fn look(&mut self, s: Seen, stall_after_ms: i64) -> Option<String> {
        let counts = (s.consumed, s.completed);
        let waiting = s.in_flight > 0 || s.lag > 0;
        if counts != self.counts || !waiting {
            self.counts = counts;
            self.since_ms = s.now_ms;
            return None;
        }
        let still_ms = s.now_ms.saturating_sub(self.since_ms);
        (still_ms >= stall_after_ms).then(|| {
            format!(
                "no input record consumed or completed for {} s while {} records are in flight and the consumer lag is {}",
                still_ms / 1000,
                s.in_flight,
                if s.lag < 0 {
                    "not reported yet".to_string()
                } else {
                    s.lag.to_string()
                }
            )
        })
    }
}

/// Look every second until `cancel` fires.
pub(super) async fn watch(shared: Arc<Shared>, stall_after: Duration, cancel: CancellationToken) {
    let stall_after_ms = i64::try_from(stall_after.as_millis()).unwrap_or(i64::MAX);
    let mut progress = Progress::new(shared.clock.now_ms());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let h = &shared.health;
        let seen = Seen {
            now_ms: shared.clock.now_ms(),
            consumed: h.consumed.load(Ordering::Relaxed),
            completed: h.completed.load(Ordering::Relaxed),
            in_flight: shared.metrics.in_flight.get(),
            lag: h.lag.load(Ordering::Relaxed),
        };
        let verdict = progress.look(seen, stall_after_ms);
        shared
            .metrics
            .last_progress
            .set(progress.since_ms as f64 / 1000.0);
        let mut stalled = h.stalled.lock();
        match (&*stalled, &verdict) {
            (None, Some(reason)) => {
                error!(target: "fairgate::kafka", reason = %reason, "pipeline stalled: not ready until it moves again")
            }
            (Some(_), None) => info!(target: "fairgate::kafka", "pipeline moving again"),
            _ => {}
        }
        shared.metrics.stalled.set(i64::from(verdict.is_some()));
        *stalled = verdict;
    }
    *shared.health.stalled.lock() = None;
    shared.metrics.stalled.set(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(now_ms: i64, consumed: u64, completed: u64, in_flight: i64, lag: i64) -> Seen {
        Seen {
            now_ms,
            consumed,
            completed,
            in_flight,
            lag,
        }
    }

    #[test]
    fn records_waiting_and_nothing_moving_is_a_stall_after_the_limit() {
        let mut p = Progress::new(0);
        assert_eq!(p.look(seen(1_000, 10, 5, 5, 100), 15_000), None);
        assert_eq!(p.look(seen(15_999, 10, 5, 5, 100), 15_000), None);
        let reason = p.look(seen(16_000, 10, 5, 5, 100), 15_000).unwrap();
        assert!(reason.contains("for 15 s"), "{reason}");
        assert!(reason.contains("5 records are in flight"), "{reason}");
        assert!(reason.contains("consumer lag is 100"), "{reason}");
    }

    #[test]
    fn lag_alone_or_in_flight_alone_is_waiting_work() {
        let mut p = Progress::new(0);
        p.look(seen(0, 1, 1, 0, 7), 10);
        assert!(
            p.look(seen(20, 1, 1, 0, 7), 10).is_some(),
            "lag, nothing in flight"
        );
        let mut p = Progress::new(0);
        p.look(seen(0, 1, 0, 3, -1), 10);
        let r = p.look(seen(20, 1, 0, 3, -1), 10).unwrap();
        assert!(r.contains("not reported yet"), "{r}");
    }

    #[test]
    fn idle_is_not_a_stall() {
        let mut p = Progress::new(0);
        for t in 0..100 {
            assert_eq!(p.look(seen(t * 1_000, 5, 5, 0, 0), 15_000), None);
        }
        assert_eq!(p.since_ms, 99_000);
    }

    #[test]
    fn any_record_consumed_or_completed_clears_the_stall() {
        let mut p = Progress::new(0);
        p.look(seen(0, 1, 1, 1, 1), 10);
        assert!(p.look(seen(50, 1, 1, 1, 1), 10).is_some());
        assert_eq!(p.look(seen(60, 1, 2, 1, 1), 10), None, "one completed");
        assert!(p.look(seen(80, 1, 2, 1, 1), 10).is_some());
        assert_eq!(p.look(seen(90, 2, 2, 1, 1), 10), None, "one consumed");
        assert_eq!(p.since_ms, 90);
    }
}
