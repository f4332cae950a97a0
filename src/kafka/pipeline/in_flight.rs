//! The in-flight bound: at most `max_in_flight` input records between being
//! read and having their offset committed.
//!
//! Each record read takes one place; its place comes back only when its
//! offset is committed (or its partition is revoked, or it is dropped unread).
//! A record read while every place is taken — one fetched before the consumer
//! was paused — is taken over the limit and *owed*: the next places given
//! back pay off what is owed before any becomes free again.

use parking_lot::Mutex;
use prometheus::IntGauge;
use tokio::sync::Notify;

#[derive(Debug)]
struct Places {
    free: usize,
    /// Records taken over the limit, not yet paid off.
    owed: usize,
}

/// The in-flight bound, and the `in_flight` gauge that shows it.
///
/// Its lock is a leaf: taken alone, never while holding another lock and
/// never across a call out.
#[derive(Debug)]
pub(super) struct InFlight {
    places: Mutex<Places>,
    /// Signalled when places come back (the consume loop reads again).
    freed: Notify,
    gauge: IntGauge,
}

impl InFlight {
    pub(super) fn new(max_in_flight: usize, gauge: IntGauge) -> InFlight {
        InFlight {
            places: Mutex::new(Places {
                free: max_in_flight,
                owed: 0,
            }),
            freed: Notify::new(),
            gauge,
        }
    }

    /// A record was read: take a free place, or owe one when none is free.
    /// Returns false when the record was taken over the limit.
    pub(super) fn acquire_or_owe(&self) -> bool {
        self.gauge.inc();
        let mut p = self.places.lock();
        if p.free > 0 {
            p.free -= 1;
            true
        } else {
            p.owed += 1;
            false
        }
    }

    /// `n` records are done with (committed, revoked, dropped): pay off what
    /// is owed, free the rest, and wake the consume loop if any became free.
    pub(super) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.gauge.sub(n as i64);
        let freed = {
            let mut p = self.places.lock();
            let pay = p.owed.min(n);
            p.owed -= pay;
            p.free += n - pay;
            n - pay
        };
        if freed > 0 {
            self.freed.notify_one();
        }
    }

    /// Every place is taken: the consume loop must stop reading.
    pub(super) fn held_back(&self) -> bool {
        self.places.lock().free == 0
    }

    /// Completes once places have been freed since the last wake-up (a wake-up
    /// given while nobody waited is kept for the next call).
    pub(super) async fn freed(&self) {
        self.freed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn bound(max: usize) -> InFlight {
        InFlight::new(max, IntGauge::new("in_flight", "test").unwrap())
    }

    fn is_ready(f: impl Future<Output = ()>) -> bool {
        let mut f = pin!(f);
        matches!(
            f.as_mut().poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(())
        )
    }

    #[test]
    fn holds_back_once_every_place_is_taken() {
        let b = bound(2);
        assert!(!b.held_back());
        assert!(b.acquire_or_owe());
        assert!(b.acquire_or_owe());
        assert!(b.held_back());
        b.release(1);
        assert!(!b.held_back());
        assert_eq!(b.gauge.get(), 1);
    }

    #[test]
    fn owed_records_are_paid_off_before_places_come_back() {
        let b = bound(1);
        assert!(b.acquire_or_owe());
        assert!(!b.acquire_or_owe(), "over the limit");
        assert!(!b.acquire_or_owe(), "over the limit");
        assert_eq!(b.gauge.get(), 3);
        b.release(2);
        assert!(b.held_back(), "two owed records paid off, nothing freed");
        assert!(!is_ready(b.freed()), "nothing freed: no wake-up");
        b.release(1);
        assert!(!b.held_back());
        assert_eq!(b.gauge.get(), 0);
        assert!(is_ready(b.freed()));
    }

    #[test]
    fn releasing_nothing_changes_nothing() {
        let b = bound(1);
        assert!(b.acquire_or_owe());
        b.release(0);
        assert!(b.held_back());
        assert_eq!(b.gauge.get(), 1);
        assert!(!is_ready(b.freed()));
    }

    #[test]
    fn a_wake_up_given_while_nobody_waits_is_kept() {
        let b = bound(1);
        assert!(b.acquire_or_owe());
        b.release(1);
        assert!(is_ready(b.freed()));
        assert!(!is_ready(b.freed()), "one wake-up, used once");
    }
}
