//! Exposure accounting: rolling windows of time buckets, by each decision's own
//! `ts`, counting considered and selected decisions per group of every
//! configured dimension.
//!
//! A [`Window`] is a ring of `buckets` slots; each slot is tagged with the
//! absolute bucket number it holds, and running totals are kept so that
//! reading a campaign's numbers costs one pass over its groups, not over its
//! buckets. Advancing the window subtracts the slots that fall out of it.
//!
//! Bucket arithmetic saturates: any `i64` bucket is accepted (the lowest,
//! `i64::MIN`, is read as `i64::MIN + 1`, as it tags empty slots), and none
//! overflows or panics.
//!
//! Memory per campaign is fixed by the policy: `buckets × (8 + 8 × groups)`
//! bytes of ring plus `16 × groups` of totals (for the example policy, 60
//! buckets and 8 groups: about 4.4 KiB), see [`Window::heap_bytes`].

use crate::fairness::measures::Counts;

const EMPTY: i64 = i64::MIN;

/// A rolling window over `n` buckets for `g` groups (all dimensions flattened).
#[derive(Debug, Clone)]
pub struct Window {
    n: usize,
    g: usize,
    /// Absolute bucket number held by each slot, or `EMPTY`.
    tags: Box<[i64]>,
    /// `n × g` cells of (considered, selected).
    cells: Box<[[u32; 2]]>,
    /// Running totals per group over the live slots.
    totals: Box<[Counts]>,
    /// Highest bucket the window has been advanced to (`EMPTY` before the first).
    head: i64,
}

/// Where a decision's bucket falls relative to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Inside the window: counted.
    Counted,
    /// Older than the window: not counted.
    Late,
}

impl Window {
    pub fn new(buckets: usize, groups: usize) -> Window {
        Window {
            n: buckets,
            g: groups,
            tags: vec![EMPTY; buckets].into_boxed_slice(),
            cells: vec![[0, 0]; buckets * groups].into_boxed_slice(),
            totals: vec![Counts::default(); groups].into_boxed_slice(),
            head: EMPTY,
        }
    }

    /// Heap bytes held by this window.
    pub fn heap_bytes(&self) -> usize {
        self.tags.len() * std::mem::size_of::<i64>()
            + self.cells.len() * std::mem::size_of::<[u32; 2]>()
            + self.totals.len() * std::mem::size_of::<Counts>()
    }

    /// The highest bucket advanced to, if any.
    pub fn head(&self) -> Option<i64> {
        (self.head != EMPTY).then_some(self.head)
    }

    /// First bucket still inside the window.
    pub fn first_live(&self) -> Option<i64> {
        self.head()
            .map(|h| h.saturating_sub(self.n as i64).saturating_add(1))
    }

    fn expire_slot(&mut self, slot: usize) {
        let base = slot * self.g;
        for gi in 0..self.g {
            let [c, s] = self.cells[base + gi];
            self.totals[gi].considered -= c as u64;
            self.totals[gi].selected -= s as u64;
            self.cells[base + gi] = [0, 0];
        }
        self.tags[slot] = EMPTY;
    }

    fn slot(&self, bucket: i64) -> usize {
        bucket.rem_euclid(self.n as i64) as usize
    }

    /// Move the head forward to `to`, dropping the buckets that leave the window.
    pub fn advance(&mut self, to: i64) {
        let to = to.max(EMPTY + 1);
        if self.head != EMPTY && to <= self.head {
            return;
        }
        let n = self.n as i64;
        if self.head == EMPTY || to.saturating_sub(self.head) >= n {
            for slot in 0..self.n {
                if self.tags[slot] != EMPTY {
                    self.expire_slot(slot);
                }
            }
        } else {
            // Buckets (head - n, to - n] leave the window (fewer than n of
            // them; near i64::MIN the saturated range is empty or shorter,
            // and those buckets cannot have been counted).
            for b in self.head.saturating_sub(n).saturating_add(1)..=to.saturating_sub(n) {
                let slot = self.slot(b);
                if self.tags[slot] == b {
                    self.expire_slot(slot);
                }
            }
        }
        self.head = to;
    }

    /// The slot holding `bucket`, the head moved up to it when it is newer
    /// (a slot reused for it is emptied first); `None` when the bucket is
    /// older than the window.
    fn place(&mut self, bucket: i64) -> Option<usize> {
        let bucket = bucket.max(EMPTY + 1);
        if self.head == EMPTY || bucket > self.head {
            self.advance(bucket);
        }
        if bucket <= self.head.saturating_sub(self.n as i64) {
            return None;
        }
        let slot = self.slot(bucket);
        if self.tags[slot] != bucket {
            if self.tags[slot] != EMPTY {
                self.expire_slot(slot);
            }
            self.tags[slot] = bucket;
        }
        Some(slot)
    }

    /// Whether this window has `buckets` buckets of `groups` groups, the
    /// shape a policy asks for.
    pub fn fits(&self, buckets: usize, groups: usize) -> bool {
        self.n == buckets && self.g == groups
    }

    /// Count one decision in `bucket` for the given flat group indices.
    /// The caller advances first, so `bucket <= head`. Indices past the
    /// window's groups are ignored, as in [`Window::add_cells`]: a decision
    /// grouped under a policy with more groups (a reload racing the judge
    /// threads) counts only in the groups this window has.
    pub fn add(&mut self, bucket: i64, groups: &[usize], selected: bool) -> Placement {
        let Some(slot) = self.place(bucket) else {
            return Placement::Late;
        };
        let base = slot * self.g;
        for &gi in groups {
            if gi >= self.g {
                continue;
            }
            let cell = &mut self.cells[base + gi];
            cell[0] = cell[0].saturating_add(1);
            self.totals[gi].considered += 1;
            if selected {
                cell[1] = cell[1].saturating_add(1);
                self.totals[gi].selected += 1;
            }
        }
        Placement::Counted
    }

    /// Add counts already summed per group (a [`crate::fairness::wire::Delta`]'s
    /// bucket): `cells[g]` is (considered, selected) of group `g`. Cells past
    /// the window's groups are ignored.
    pub fn add_cells(&mut self, bucket: i64, cells: &[[u32; 2]]) -> Placement {
        let Some(slot) = self.place(bucket) else {
            return Placement::Late;
        };
        let base = slot * self.g;
        for (gi, &[c, s]) in cells.iter().enumerate().take(self.g) {
            let cell = &mut self.cells[base + gi];
            // A cell saturates as `add` does; the totals count what the cells hold.
            let (c0, s0) = (cell[0], cell[1]);
            cell[0] = c0.saturating_add(c);
            cell[1] = s0.saturating_add(s);
            self.totals[gi].considered += u64::from(cell[0] - c0);
            self.totals[gi].selected += u64::from(cell[1] - s0);
        }
        Placement::Counted
    }

    /// Running totals per flat group index.
    pub fn totals(&self) -> &[Counts] {
        &self.totals
    }

    /// Sum the totals from the buckets directly (for tests and audits).
    pub fn recount(&self) -> Vec<Counts> {
        let mut out = vec![Counts::default(); self.g];
        for slot in 0..self.n {
            if self.tags[slot] == EMPTY {
                continue;
            }
            for (gi, o) in out.iter_mut().enumerate() {
                let [c, s] = self.cells[slot * self.g + gi];
                o.considered += c as u64;
                o.selected += s as u64;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_leave_the_window() {
        let mut w = Window::new(3, 2);
        w.add(10, &[0], true);
        w.add(11, &[1], false);
        w.add(12, &[0], false);
        assert_eq!(
            w.totals()[0],
            Counts {
                considered: 2,
                selected: 1
            }
        );
        w.advance(13); // bucket 10 leaves
        assert_eq!(
            w.totals()[0],
            Counts {
                considered: 1,
                selected: 0
            }
        );
        assert_eq!(
            w.totals()[1],
            Counts {
                considered: 1,
                selected: 0
            }
        );
        w.advance(100); // everything leaves
        assert_eq!(w.totals()[1], Counts::default());
    }

    #[test]
    fn late_buckets_are_not_counted() {
        let mut w = Window::new(3, 1);
        w.add(10, &[0], true);
        assert_eq!(w.add(7, &[0], true), Placement::Late);
        assert_eq!(w.add(8, &[0], true), Placement::Counted);
        assert_eq!(w.totals()[0].considered, 2);
    }

    /// One step of the model-based test: a decision, or the clock moving.
    #[derive(Debug, Clone)]
    enum Step {
        Add(i64, Vec<usize>, bool),
        Advance(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (-5i64..40, proptest::collection::vec(0usize..4, 0..3), any::<bool>())
                .prop_map(|(b, g, s)| Step::Add(b, g, s)),
            1 => (-5i64..60).prop_map(Step::Advance),
        ]
    }

    proptest! {
        /// Against a plain list of every decision: whatever the order of
        /// buckets and clock moves, a decision is late exactly when its bucket
        /// is at least `n` behind the newest bucket seen, and the totals equal
        /// a direct count of the decisions inside the window.
        #[test]
        fn totals_equal_direct_count(steps in proptest::collection::vec(step(), 1..300), n in 1usize..8) {
            let mut w = Window::new(n, 4);
            let mut kept: Vec<(i64, Vec<usize>, bool)> = Vec::new();
            let mut head: Option<i64> = None;
            for st in steps {
                match st {
                    Step::Add(b, groups, sel) => {
                        let newest = head.map_or(b, |h| h.max(b));
                        let late = b <= newest - n as i64;
                        head = Some(newest);
                        let want = if late { Placement::Late } else { Placement::Counted };
                        prop_assert_eq!(w.add(b, &groups, sel), want, "bucket {} head {}", b, newest);
                        if !late {
                            kept.push((b, groups, sel));
                        }
                    }
                    Step::Advance(to) => {
                        w.advance(to);
                        head = Some(head.map_or(to, |h| h.max(to)));
                    }
                }
                prop_assert_eq!(w.head(), head);
                let h = head.unwrap();
                prop_assert_eq!(w.first_live(), Some(h - n as i64 + 1));
                let mut expect = vec![Counts::default(); 4];
                for (b, groups, sel) in &kept {
                    if *b > h - n as i64 {
                        for &g in groups {
                            expect[g].considered += 1;
                            expect[g].selected += *sel as u64;
                        }
                    }
                }
                prop_assert_eq!(w.totals().to_vec(), expect.clone());
                prop_assert_eq!(w.recount(), expect);
            }
        }
    }

    /// The extremes of `i64` neither overflow nor panic, and keep the rules:
    /// a bucket at least `n` behind the head is late; the lowest bucket
    /// (`i64::MIN`, the empty tag) is read as the one above it.
    #[test]
    fn extreme_buckets_do_not_overflow() {
        let mut w = Window::new(3, 1);
        assert_eq!(w.add(i64::MIN, &[0], true), Placement::Counted);
        assert_eq!(w.head(), Some(i64::MIN + 1));
        assert_eq!(w.first_live(), Some(i64::MIN + 1));
        assert_eq!(w.add(i64::MIN + 2, &[0], true), Placement::Counted);
        assert_eq!(w.totals()[0].considered, 2);
        assert_eq!(w.add(i64::MAX, &[0], false), Placement::Counted);
        assert_eq!(
            w.totals()[0].considered,
            1,
            "a jump past the window empties it"
        );
        assert_eq!(w.first_live(), Some(i64::MAX - 2));
        assert_eq!(w.add(i64::MAX - 2, &[0], false), Placement::Counted);
        assert_eq!(w.add(i64::MAX - 3, &[0], false), Placement::Late);
        assert_eq!(w.add(i64::MIN, &[0], false), Placement::Late);
        assert_eq!(w.add(0, &[0], false), Placement::Late);
        w.advance(i64::MIN);
        w.advance(i64::MAX);
        assert_eq!(w.totals()[0].considered, 2);
        assert_eq!(w.recount(), w.totals().to_vec());
        let mut w = Window::new(1440, 1);
        w.add(i64::MIN + 5, &[0], true);
        w.advance(i64::MIN + 100);
        assert_eq!(w.totals()[0].considered, 1);
        w.advance(i64::MIN + 2000);
        assert_eq!(w.totals()[0].considered, 0);
    }

    /// A group index past the window's groups (one from a policy with more
    /// groups, in a reload racing the judge threads) is ignored, not a
    /// panic; the decision's other groups count.
    #[test]
    fn a_group_past_the_window_is_ignored() {
        let mut w = Window::new(3, 2);
        assert_eq!(w.add(10, &[0, 2, 7, 1], true), Placement::Counted);
        assert_eq!(w.add(10, &[usize::MAX], false), Placement::Counted);
        let one = Counts {
            considered: 1,
            selected: 1,
        };
        assert_eq!(w.totals().to_vec(), vec![one, one]);
        assert_eq!(w.recount(), w.totals().to_vec());
        assert!(w.fits(3, 2));
        assert!(!w.fits(3, 8) && !w.fits(4, 2));
    }

    #[test]
    fn memory_is_fixed_by_the_policy() {
        // 60 buckets, 8 groups: 60 tags, 480 cells of two u32, 8 totals of two u64.
        let w = Window::new(60, 8);
        assert_eq!(w.heap_bytes(), 60 * 8 + 480 * 8 + 8 * 16);
        assert_eq!(w.head(), None);
        assert_eq!(w.first_live(), None);
    }
}
