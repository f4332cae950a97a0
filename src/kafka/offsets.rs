//! Which input offsets may be committed: an offset is committable only when
//! every record it produced has been acknowledged, and every offset before it
//! on the same partition too. Pure bookkeeping, no Kafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Default)]
struct Part {
    /// Offset -> deliveries still outstanding.
    pending: BTreeMap<i64, u32>,
    /// Offsets fully acknowledged but not yet committed.
    done: BTreeSet<i64>,
    /// Highest offset begun.
    high: Option<i64>,
    /// Next offset already committed (what the group would resume from).
    committed: Option<i64>,
    /// Bumped on every assignment, so late acknowledgements of a previous
    /// ownership are ignored.
    generation: u64,
}

/// Offsets of the partitions this instance owns.
#[derive(Debug, Default)]
pub struct Offsets {
    parts: HashMap<i32, Part>,
    next_generation: u64,
}

impl Offsets {
    pub fn new() -> Offsets {
        Offsets::default()
    }

    /// The partition is now ours; returns its generation.
    pub fn assign(&mut self, partition: i32) -> u64 {
        self.next_generation += 1;
        let g = self.next_generation;
        self.parts.insert(
            partition,
            Part {
                generation: g,
                ..Part::default()
            },
        );
        g
    }

    /// The partition is no longer ours; returns how many records were held
    /// (in flight or awaiting commit), whose permits can be released.
    pub fn revoke(&mut self, partition: i32) -> usize {
        self.parts
            .remove(&partition)
            .map(|p| p.pending.len() + p.done.len())
            .unwrap_or(0)
    }

    /// Current generation of a partition, if owned.
    pub fn generation(&self, partition: i32) -> Option<u64> {
        self.parts.get(&partition).map(|p| p.generation)
    }

    /// Partitions owned.
    pub fn partitions(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.parts.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// An input record, read during ownership `generation`, whose results
    /// need `deliveries` acknowledgements. Returns false when the partition is
    /// not owned, or was revoked and assigned again since the record was read
    /// (the record is then not tracked: its new owner reads it again).
    pub fn begin(&mut self, partition: i32, generation: u64, offset: i64, deliveries: u32) -> bool {
        let Some(p) = self.parts.get_mut(&partition) else {
            return false;
        };
        if p.generation != generation {
            return false;
        }
        p.high = Some(p.high.map_or(offset, |h| h.max(offset)));
        if deliveries == 0 {
            p.done.insert(offset);
        } else {
            *p.pending.entry(offset).or_insert(0) += deliveries;
        }
        true
    }

    /// One delivery for `offset` was acknowledged. Returns true when that was
    /// the record's last outstanding delivery.
    pub fn ack(&mut self, partition: i32, generation: u64, offset: i64) -> bool {
        let Some(p) = self.parts.get_mut(&partition) else {
            return false;
        };
        if p.generation != generation {
            return false;
        }
        if let Some(n) = p.pending.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                p.pending.remove(&offset);
                p.done.insert(offset);
                return true;
            }
        }
        false
    }

    /// The next offset to commit for a partition, when it moved past the last commit.
    pub fn committable(&self, partition: i32) -> Option<i64> {
        let p = self.parts.get(&partition)?;
        let next = match p.pending.keys().next() {
            Some(&first_pending) => first_pending,
            None => p.high? + 1,
        };
        (p.committed.is_none_or(|c| next > c)).then_some(next)
    }

    /// All partitions with something to commit: `(partition, next offset)`.
    pub fn all_committable(&self) -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = self
            .parts
            .keys()
            .filter_map(|&p| self.committable(p).map(|o| (p, o)))
            .collect();
        v.sort_unstable();
        v
    }

    /// `next` was committed for `partition`; returns how many records that
    /// releases (their permits can be given back).
    pub fn committed(&mut self, partition: i32, next: i64) -> usize {
        let Some(p) = self.parts.get_mut(&partition) else {
            return 0;
        };
        if p.committed.is_some_and(|c| c >= next) {
            return 0;
        }
        p.committed = Some(next);
        let keep = p.done.split_off(&next);
        let released = p.done.len();
        p.done = keep;
        released
    }

    /// Records held: in flight plus awaiting commit.
    pub fn held(&self) -> usize {
        self.parts
            .values()
            .map(|p| p.pending.len() + p.done.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commit_waits_for_the_earliest_outstanding_record() {
        let mut o = Offsets::new();
        let g = o.assign(0);
        o.begin(0, g, 10, 2);
        o.begin(0, g, 11, 1);
        o.begin(0, g, 12, 1);
        o.ack(0, g, 12);
        o.ack(0, g, 11);
        assert_eq!(o.committable(0), Some(10));
        o.ack(0, g, 10);
        assert_eq!(o.committable(0), Some(10));
        o.ack(0, g, 10);
        assert_eq!(o.committable(0), Some(13));
        assert_eq!(o.committed(0, 13), 3);
        assert_eq!(o.committable(0), None);
        assert_eq!(o.held(), 0);
    }

    #[test]
    fn acknowledgements_of_an_old_ownership_are_ignored() {
        let mut o = Offsets::new();
        let g1 = o.assign(3);
        assert!(o.begin(3, g1, 5, 1));
        assert_eq!(o.revoke(3), 1);
        assert!(!o.begin(3, g1, 6, 1), "not owned");
        let g2 = o.assign(3);
        // Read before the partition moved away and came back: not tracked.
        assert!(!o.begin(3, g1, 6, 1));
        assert!(o.begin(3, g2, 7, 1));
        o.ack(3, g1, 7);
        assert_eq!(o.committable(3), Some(7));
        o.ack(3, g2, 7);
        assert_eq!(o.committable(3), Some(8));
    }

    proptest! {
        /// Whatever the order of acknowledgements, the committable offset never
        /// passes a record that is not fully acknowledged.
        #[test]
        fn never_commits_past_an_unacknowledged_record(order in Just((0..50i64).collect::<Vec<_>>()).prop_shuffle(), cut in 0usize..50) {
            let mut o = Offsets::new();
            let g = o.assign(0);
            for off in 0..50 {
                o.begin(0, g, off, 1);
            }
            for &off in &order[..cut] {
                o.ack(0, g, off);
            }
            let acked: std::collections::HashSet<i64> = order[..cut].iter().copied().collect();
            if let Some(next) = o.committable(0) {
                for off in 0..next {
                    prop_assert!(acked.contains(&off));
                }
            }
        }
    }
}
