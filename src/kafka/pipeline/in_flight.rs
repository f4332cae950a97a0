//! The two in-flight bounds:
//!
//! * **records not yet committed**, at most `pipeline.max_in_flight`: a
//!   record's place comes back when its offset is committed (or its partition
//!   is revoked, or it is dropped unread). This bounds the duplicates a crash
//!   can cause: everything uncommitted is read again.
//! * **bytes not yet acknowledged**, at most `pipeline.max_in_flight_bytes`:
//!   a record's bytes come back as soon as everything produced for it is
//!   acknowledged (or it is dropped, or its partition revoked). This bounds
//!   the memory the pipeline holds: an input is freed once judged, what is
//!   produced for it is held once (by librdkafka, which fairgate hands it
//!   to) until acknowledgement, and what waits for a commit is an offset.
//!
//! The consume loop reads while both have room. A record is taken whatever
//! its size while there is room at all, and a record read while there is
//! none (one fetched before the consumer was paused) is taken over the
//! limit: the room goes below zero and the next places given back pay it off
//! before any becomes free again.

use parking_lot::Mutex;
use prometheus::IntGauge;
use tokio::sync::Notify;

#[derive(Debug)]
struct Room {
    /// Records that may still be taken before a commit (below zero: owed).
    records: i64,
    /// Bytes that may still be taken before acknowledgements (below zero: owed).
    bytes: i64,
}

impl Room {
    fn full(&self) -> bool {
        self.records <= 0 || self.bytes <= 0
    }
}

/// The in-flight bounds, and the gauges that show them.
///
/// Its lock is a leaf: taken alone, never while holding another lock and
/// never across a call out.
#[derive(Debug)]
pub(super) struct InFlight {
    room: Mutex<Room>,
    /// Signalled when room comes back (the consume loop reads again).
    freed: Notify,
    records: IntGauge,
    bytes: IntGauge,
}

impl InFlight {
    pub(super) fn new(
        max_records: usize,
        max_bytes: usize,
        records: IntGauge,
        bytes: IntGauge,
    ) -> InFlight {
        InFlight {
            room: Mutex::new(Room {
                records: i64::try_from(max_records).unwrap_or(i64::MAX),
                bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
            }),
            freed: Notify::new(),
            records,
            bytes,
        }
    }

    /// A record of `size` bytes was read: take its place and its bytes.
    /// Returns false when it was taken over a limit.
    pub(super) fn acquire_or_owe(&self, size: usize) -> bool {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        self.records.inc();
        self.bytes.add(size);
        let mut r = self.room.lock();
        let had_room = !r.full();
        r.records -= 1;
        r.bytes = r.bytes.saturating_sub(size);
        had_room
    }

    /// `n` records are done with (committed, revoked, dropped).
    pub(super) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.records.sub(n);
        self.give_back(|r| r.records = r.records.saturating_add(n));
    }

    /// `size` bytes are let go (acknowledged, revoked, dropped).
    pub(super) fn release_bytes(&self, size: usize) {
        if size == 0 {
            return;
        }
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        self.bytes.sub(size);
        self.give_back(|r| r.bytes = r.bytes.saturating_add(size));
    }

    /// Give room back; wake the consume loop if that made room.
    fn give_back(&self, f: impl FnOnce(&mut Room)) {
        let opened = {
            let mut r = self.room.lock();
            let was_full = r.full();
            f(&mut r);
            was_full && !r.full()
        };
        if opened {
            self.freed.notify_one();
        }
    }

    /// Records read and not yet committed, a place each.
    pub(super) fn records(&self) -> i64 {
        self.records.get()
    }

    /// No room: the consume loop must stop reading.
    pub(super) fn held_back(&self) -> bool {
        self.room.lock().full()
    }

    /// Completes once room has come back since the last wake-up (a wake-up
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

    fn bound(records: usize, bytes: usize) -> InFlight {
        InFlight::new(
            records,
            bytes,
            IntGauge::new("in_flight", "test").unwrap(),
            IntGauge::new("in_flight_bytes", "test").unwrap(),
        )
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
        let b = bound(2, 1_000);
        assert!(!b.held_back());
        assert!(b.acquire_or_owe(10));
        assert!(b.acquire_or_owe(10));
        assert!(b.held_back());
        b.release(1);
        assert!(!b.held_back());
        assert_eq!(b.records.get(), 1);
        assert_eq!(b.bytes.get(), 20);
    }

    #[test]
    fn holds_back_once_the_bytes_are_taken_and_reads_again_at_acknowledgement() {
        let b = bound(100, 1_000);
        assert!(b.acquire_or_owe(600));
        assert!(!b.held_back());
        assert!(b.acquire_or_owe(600), "taken while there was room");
        assert!(b.held_back(), "1,200 of 1,000 bytes");
        assert!(!b.acquire_or_owe(5), "over the limit");
        b.release_bytes(100);
        assert!(b.held_back(), "105 bytes still owed past the room");
        assert!(!is_ready(b.freed()));
        b.release_bytes(600);
        assert!(!b.held_back());
        assert!(is_ready(b.freed()));
        assert_eq!(b.bytes.get(), 505);
        assert_eq!(b.records.get(), 3, "records wait for their commit");
    }

    #[test]
    fn one_record_larger_than_every_byte_is_taken_alone() {
        let b = bound(100, 1_000);
        assert!(b.acquire_or_owe(5_000_000));
        assert!(b.held_back());
        b.release_bytes(5_000_000);
        assert!(!b.held_back());
    }

    #[test]
    fn owed_records_are_paid_off_before_places_come_back() {
        let b = bound(1, usize::MAX);
        assert!(b.acquire_or_owe(1));
        assert!(!b.acquire_or_owe(1), "over the limit");
        assert!(!b.acquire_or_owe(1), "over the limit");
        assert_eq!(b.records.get(), 3);
        b.release(2);
        assert!(b.held_back(), "two owed records paid off, nothing freed");
        assert!(!is_ready(b.freed()), "nothing freed: no wake-up");
        b.release(1);
        assert!(!b.held_back());
        assert_eq!(b.records.get(), 0);
        assert!(is_ready(b.freed()));
    }

    #[test]
    fn releasing_nothing_changes_nothing() {
        let b = bound(1, 10);
        assert!(b.acquire_or_owe(1));
        b.release(0);
        b.release_bytes(0);
        assert!(b.held_back());
        assert_eq!(b.records.get(), 1);
        assert!(!is_ready(b.freed()));
    }

    #[test]
    fn a_wake_up_given_while_nobody_waits_is_kept() {
        let b = bound(1, 10);
        assert!(b.acquire_or_owe(1));
        b.release(1);
        assert!(is_ready(b.freed()));
        assert!(!is_ready(b.freed()), "one wake-up, used once");
    }
}
