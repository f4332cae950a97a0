//! Event time: the clock decisions are judged by when no wall clock applies
//! (`fairgate check` replaying recorded traffic), read from the decisions'
//! own `ts`.
//!
//! Taking the latest `ts` seen as the time lets one decision stamped far
//! ahead (`i64::MAX`, a timestamp in microseconds) drag the clock there:
//! every later decision is then late, the windows stay empty, and no
//! campaign is ever flagged. So the clock follows the *median* of the last
//! [`RECENT`] timestamps instead of any one of them:
//!
//! * a decision moves the clock to its `ts`, but never past the median of the
//!   last [`RECENT`] timestamps (its own included) plus `max_future_secs`;
//! * the clock never goes back;
//! * as with the wall clock, a decision more than `max_future_secs` ahead of
//!   the clock is early: not counted, and it moves no window
//!   ([`crate::fairness::tracker::Tracker::record`]).
//!
//! So a lone outlier is counted as early and moves the clock by at most
//! `max_future_secs` past the traffic around it; it takes more than half of
//! [`RECENT`] consecutive decisions (three of five) to move the median.
//! Traffic stays counted while its decisions are at most `max_future_secs`
//! apart; after a longer gap (traffic resuming after a quiet spell), the
//! first two decisions are early until the median has crossed the gap.
//!
//! The first decision has no neighbours to be judged against, so a replay
//! [primes](EventClock::prime) the clock with the timestamps of the first
//! decisions ahead (`fairgate check` reads ahead to do so). Unprimed, the
//! first decision is taken at its word.

/// How many recent timestamps the median is taken over.
pub const RECENT: usize = 5;

/// The event clock. See the module doc for the rule.
#[derive(Debug, Clone, Default)]
pub struct EventClock {
    /// The last `len` timestamps seen (a ring; `next` is the oldest once full).
    recent: [i64; RECENT],
    len: usize,
    next: usize,
    now: Option<i64>,
}

impl EventClock {
    pub fn new() -> EventClock {
        EventClock::default()
    }

    fn push(&mut self, ts: i64) {
        self.recent[self.next] = ts;
        self.next = (self.next + 1) % RECENT;
        self.len = (self.len + 1).min(RECENT);
    }

    /// The lower median of the recent timestamps (at least one is held).
    fn median(&self) -> i64 {
        let mut s = self.recent;
        let s = &mut s[..self.len];
        s.sort_unstable();
        s[(self.len - 1) / 2]
    }

    /// A timestamp read ahead of judging: it counts among the recent ones
    /// without moving the clock, so that the first decisions are judged
    /// against the ones around them.
    pub fn prime(&mut self, ts: i64) {
        self.push(ts);
    }

    /// The clock for a decision stamped `ts` (which then counts among the
    /// recent timestamps).
    pub fn observe(&mut self, ts: i64, max_future_ms: i64) -> i64 {
        self.push(ts);
        let to = ts.min(self.median().saturating_add(max_future_ms));
        let now = self.now.map_or(to, |n| n.max(to));
        self.now = Some(now);
        now
    }

    /// The clock as it stands, if any decision was observed.
    pub fn now(&self) -> Option<i64> {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FUT: i64 = 300_000;
    const T: i64 = 1_795_000_000_000;

    /// Whether the tracker would count `ts` as early against `now`.
    fn early(ts: i64, now: i64) -> bool {
        ts > now.saturating_add(FUT)
    }

    #[test]
    fn in_order_traffic_is_followed_exactly() {
        let mut c = EventClock::new();
        assert_eq!(c.now(), None);
        for i in 0..20 {
            assert_eq!(c.observe(T + i * 100, FUT), T + i * 100);
        }
        // Out of order: the clock does not go back.
        assert_eq!(c.observe(T, FUT), T + 1900);
        assert_eq!(c.now(), Some(T + 1900));
    }

    /// A lone outlier, and two in five, are early and move the clock by at
    /// most `max_future` past the median; three in five move the median.
    #[test]
    fn outliers_do_not_move_the_clock() {
        for outlier in [i64::MAX, T + 86_400_000, T + 3 * FUT] {
            let mut c = EventClock::new();
            for i in 0..5 {
                c.observe(T + i, FUT);
            }
            // The median of T+1..T+4 and the outlier is T+3.
            let now = c.observe(outlier, FUT);
            assert!(now <= T + 3 + FUT, "{outlier}: {now}");
            assert!(early(outlier, now), "{outlier}");
            let now = c.observe(outlier, FUT);
            assert!(
                early(outlier, now) && now <= T + 4 + FUT,
                "{outlier}: {now}"
            );
            assert!(!early(T + 5, c.observe(T + 5, FUT)));
        }
        let mut c = EventClock::new();
        for i in 0..5 {
            c.observe(T + i, FUT);
        }
        for _ in 0..2 {
            c.observe(i64::MAX, FUT);
        }
        assert_eq!(
            c.observe(i64::MAX, FUT),
            i64::MAX,
            "a majority moves the median"
        );
    }

    /// Primed with the decisions ahead, a first decision far ahead is early
    /// and the ones after it are judged as if it had not come.
    #[test]
    fn priming_judges_the_first_decision_against_the_ones_after_it() {
        let mut c = EventClock::new();
        for ts in [i64::MAX, T, T + 1, T + 2, T + 3] {
            c.prime(ts);
        }
        let now = c.observe(i64::MAX, FUT);
        assert!(early(i64::MAX, now) && now <= T + 2 + FUT, "{now}");
        for i in 0..4 {
            assert!(!early(T + i, c.observe(T + i, FUT)));
        }
        // Unprimed, the first decision is taken at its word.
        assert_eq!(EventClock::new().observe(i64::MAX, FUT), i64::MAX);
    }

    /// After a gap longer than twice `max_future`, two decisions are early;
    /// the third is counted and the clock has crossed the gap.
    #[test]
    fn a_gap_is_crossed_after_two_decisions() {
        let mut c = EventClock::new();
        for i in 0..5 {
            c.observe(T + i, FUT);
        }
        let later = T + 3_600_000;
        assert!(early(later, c.observe(later, FUT)));
        assert!(early(later + 1, c.observe(later + 1, FUT)));
        assert_eq!(c.observe(later + 2, FUT), later + 2);
    }

    proptest! {
        /// Decisions at most `max_future` apart, in order, are never early
        /// and the clock never runs ahead of the latest of them; nothing
        /// overflows at the ends of i64.
        #[test]
        fn steady_traffic_is_never_early(
            start in any::<i64>(),
            gaps in proptest::collection::vec(0i64..=FUT, 1..60),
        ) {
            let mut c = EventClock::new();
            let mut ts = start;
            for g in gaps {
                ts = ts.saturating_add(g);
                let now = c.observe(ts, FUT);
                prop_assert!(!early(ts, now), "{} early against {}", ts, now);
                prop_assert!(now <= ts);
            }
        }

        /// Whatever the timestamps, no one decision moves the clock past
        /// the median of the last five plus `max_future`.
        #[test]
        fn the_clock_stays_near_the_median(stamps in proptest::collection::vec(any::<i64>(), 1..40)) {
            let mut c = EventClock::new();
            let mut prev: Option<i64> = None;
            for (i, &ts) in stamps.iter().enumerate() {
                let now = c.observe(ts, FUT);
                let mut last: Vec<i64> = stamps[i.saturating_sub(RECENT - 1)..=i].to_vec();
                last.sort_unstable();
                let bound = last[(last.len() - 1) / 2].saturating_add(FUT);
                prop_assert!(now <= bound.max(prev.unwrap_or(i64::MIN)));
                prop_assert!(prev.is_none_or(|p| now >= p));
                prev = Some(now);
            }
        }
    }
}
