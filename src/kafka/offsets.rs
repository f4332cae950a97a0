//! Which input offsets may be committed: an offset is committable only when
//! every record it produced has been acknowledged, and every offset before it
//! on the same partition too. Pure bookkeeping, no Kafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A record begun and not yet fully acknowledged.
#[derive(Debug, Default)]
struct Pending {
    deliveries: u32,
    /// Bytes of the input record (0 when begun without a size, and once
    /// every delivery is acknowledged: its memory is free then).
    bytes: usize,
    /// Something else must be acknowledged before the record is done: the
    /// exposure deltas that count it ([`Offsets::release_hold`]).
    held: bool,
}

#[derive(Debug, Default)]
struct Part {
    /// Offset -> deliveries still outstanding, and the input record's bytes.
    pending: BTreeMap<i64, Pending>,
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

impl Part {
    /// A pending record with nothing outstanding (no delivery, no hold) is done.
    fn finish(&mut self, offset: i64) {
        self.pending.remove(&offset);
        self.done.insert(offset);
    }
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

    /// The partition, when it is owned in `generation` (a record read in an
    /// earlier ownership finds nothing).
    fn owned(&mut self, partition: i32, generation: u64) -> Option<&mut Part> {
        self.parts
            .get_mut(&partition)
            .filter(|p| p.generation == generation)
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
        self.begin_sized(partition, generation, offset, deliveries, 0)
    }

    /// [`Offsets::begin`] for a record of `bytes` bytes, which
    /// [`Offsets::pending_bytes`] counts until its last acknowledgement.
    pub fn begin_sized(
        &mut self,
        partition: i32,
        generation: u64,
        offset: i64,
        deliveries: u32,
        bytes: usize,
    ) -> bool {
        self.begin_held(partition, generation, offset, deliveries, bytes, false)
    }

    /// [`Offsets::begin_sized`] for a record that, when `held`, is done only
    /// once [`Offsets::release_hold`] is called for it as well.
    pub fn begin_held(
        &mut self,
        partition: i32,
        generation: u64,
        offset: i64,
        deliveries: u32,
        bytes: usize,
        held: bool,
    ) -> bool {
        let Some(p) = self.owned(partition, generation) else {
            return false;
        };
        p.high = Some(p.high.map_or(offset, |h| h.max(offset)));
        if deliveries == 0 && !held {
            p.done.insert(offset);
        } else {
            let e = p.pending.entry(offset).or_default();
            e.deliveries += deliveries;
            e.held |= held;
            if bytes > 0 && deliveries > 0 {
                e.bytes = bytes;
            }
        }
        true
    }

    /// The hold on a record begun with `held` is released (the deltas that
    /// count it are acknowledged). Returns true when that made it done.
    pub fn release_hold(&mut self, partition: i32, generation: u64, offset: i64) -> bool {
        let Some(p) = self.owned(partition, generation) else {
            return false;
        };
        if let Some(e) = p.pending.get_mut(&offset) {
            e.held = false;
            if e.deliveries == 0 {
                p.finish(offset);
                return true;
            }
        }
        false
    }

    /// Bytes of the partition's records still waiting for an acknowledgement.
    pub fn pending_bytes(&self, partition: i32) -> usize {
        self.parts
            .get(&partition)
            .map_or(0, |p| p.pending.values().map(|e| e.bytes).sum())
    }

    /// One delivery for `offset` was acknowledged. Returns true when that was
    /// the record's last outstanding delivery (its bytes are free; it is done
    /// unless it is still held).
    pub fn ack(&mut self, partition: i32, generation: u64, offset: i64) -> bool {
        let Some(p) = self.owned(partition, generation) else {
            return false;
        };
        if let Some(e) = p.pending.get_mut(&offset) {
            e.deliveries -= 1;
            if e.deliveries == 0 {
                e.bytes = 0;
                if !e.held {
                    p.finish(offset);
                }
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
    fn a_held_record_waits_for_its_hold_and_its_deliveries() {
        let mut o = Offsets::new();
        let g = o.assign(0);
        o.begin_held(0, g, 10, 1, 100, true);
        o.begin_held(0, g, 11, 0, 50, true);
        assert_eq!(
            o.pending_bytes(0),
            100,
            "a record with nothing to deliver holds no bytes"
        );
        assert!(o.ack(0, g, 10), "its last delivery frees its bytes");
        assert_eq!(o.pending_bytes(0), 0);
        assert_eq!(o.committable(0), Some(10), "still held: not committable");
        assert!(o.release_hold(0, g, 10));
        assert_eq!(o.committable(0), Some(11));
        assert!(
            !o.release_hold(0, g + 1, 11),
            "another ownership's release is ignored"
        );
        assert!(o.release_hold(0, g, 11));
        assert_eq!(o.committable(0), Some(12));
        // Released before its delivery: done at the delivery.
        o.begin_held(0, g, 12, 1, 10, true);
        assert!(!o.release_hold(0, g, 12));
        assert!(o.ack(0, g, 12));
        assert_eq!(o.committable(0), Some(13));
    }

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

    /// One step of the model-based test.
    #[derive(Debug, Clone)]
    enum Op {
        /// Read the partition's next offset, needing this many deliveries,
        /// held or not for an exposure flush.
        Begin(i32, u32, bool),
        /// Release the hold of the n-th held record (mod len).
        Release(i32, usize),
        /// Acknowledge one delivery of the n-th outstanding record (mod len).
        Ack(i32, usize),
        /// Commit what is committable.
        Commit(i32),
        /// The partition moves away and comes back (a new generation).
        Reassign(i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..2i32, 0..3u32, any::<bool>()).prop_map(|(p, d, h)| Op::Begin(p, d, h)),
            2 => (0..2i32, any::<usize>()).prop_map(|(p, n)| Op::Release(p, n)),
            5 => (0..2i32, any::<usize>()).prop_map(|(p, n)| Op::Ack(p, n)),
            2 => (0..2i32).prop_map(Op::Commit),
            1 => (0..2i32).prop_map(Op::Reassign),
        ]
    }

    /// The plain model of one partition: every record read with its
    /// outstanding deliveries, in offset order.
    #[derive(Default)]
    struct Model {
        generation: u64,
        next_offset: i64,
        /// (offset, deliveries outstanding, held) of records not yet committed.
        records: Vec<(i64, u32, bool)>,
        committed: Option<i64>,
    }

    impl Model {
        /// The first offset not fully acknowledged, or one past the last read.
        fn committable(&self) -> Option<i64> {
            let next = match self.records.iter().find(|(_, n, held)| *n > 0 || *held) {
                Some(&(off, _, _)) => off,
                None => self.records.last()?.0 + 1,
            };
            self.committed.is_none_or(|c| next > c).then_some(next)
        }
    }

    proptest! {
        /// Against a plain model, under any interleaving of reads (held for
        /// an exposure flush or not), acknowledgements, releases of holds,
        /// commits and reassignments on two partitions: the committable
        /// offset is exactly the first record not fully acknowledged or still
        /// held (never past it, never short of it), commits release
        /// exactly the records below them, and a stale generation changes nothing.
        #[test]
        fn never_commits_past_an_unacknowledged_record(ops in prop::collection::vec(op(), 1..200)) {
            let mut o = Offsets::new();
            let mut m: [Model; 2] = Default::default();
            for p in 0..2 {
                m[p as usize].generation = o.assign(p);
            }
            let mut stale: Vec<(i32, u64, i64)> = Vec::new();
            for op in ops {
                match op {
                    Op::Begin(p, d, held) => {
                        let mp = &mut m[p as usize];
                        prop_assert!(o.begin_held(p, mp.generation, mp.next_offset, d, 10, held));
                        mp.records.push((mp.next_offset, d, held));
                        mp.next_offset += 1;
                    }
                    Op::Release(p, n) => {
                        let mp = &mut m[p as usize];
                        let held: Vec<usize> = (0..mp.records.len()).filter(|&i| mp.records[i].2).collect();
                        if held.is_empty() {
                            continue;
                        }
                        let i = held[n % held.len()];
                        mp.records[i].2 = false;
                        let done = mp.records[i].1 == 0;
                        prop_assert_eq!(o.release_hold(p, mp.generation, mp.records[i].0), done);
                    }
                    Op::Ack(p, n) => {
                        let mp = &mut m[p as usize];
                        let open: Vec<usize> = (0..mp.records.len()).filter(|&i| mp.records[i].1 > 0).collect();
                        if open.is_empty() {
                            continue;
                        }
                        let i = open[n % open.len()];
                        mp.records[i].1 -= 1;
                        let last = mp.records[i].1 == 0;
                        prop_assert_eq!(o.ack(p, mp.generation, mp.records[i].0), last);
                    }
                    Op::Commit(p) => {
                        let mp = &mut m[p as usize];
                        if let Some(next) = o.committable(p) {
                            let released = mp.records.iter().filter(|(off, _, _)| *off < next).count();
                            prop_assert_eq!(o.committed(p, next), released);
                            mp.records.retain(|(off, _, _)| *off >= next);
                            mp.committed = Some(next);
                        }
                        // Committing the same offset again releases nothing.
                        if let Some(c) = mp.committed {
                            prop_assert_eq!(o.committed(p, c), 0);
                        }
                    }
                    Op::Reassign(p) => {
                        let mp = &mut m[p as usize];
                        let held = mp.records.len();
                        if let Some(&(off, _, _)) = mp.records.iter().find(|(_, n, _)| *n > 0) {
                            stale.push((p, mp.generation, off));
                        }
                        prop_assert_eq!(o.revoke(p), held);
                        prop_assert_eq!(o.committable(p), None);
                        prop_assert!(!o.begin(p, mp.generation, mp.next_offset, 1));
                        let next_offset = mp.committed.unwrap_or(0);
                        *mp = Model { generation: o.assign(p), next_offset, ..Model::default() };
                        prop_assert_ne!(Some(mp.generation), stale.last().map(|s| s.1));
                    }
                }
                // An acknowledgement from an earlier ownership changes nothing.
                for &(p, g, off) in &stale {
                    prop_assert!(!o.ack(p, g, off));
                }
                for p in 0..2 {
                    prop_assert_eq!(o.committable(p), m[p as usize].committable(), "partition {}", p);
                    prop_assert_eq!(o.generation(p), Some(m[p as usize].generation));
                }
                prop_assert_eq!(o.held(), m[0].records.len() + m[1].records.len());
                let all: Vec<(i32, i64)> = (0..2).filter_map(|p| m[p as usize].committable().map(|c| (p, c))).collect();
                prop_assert_eq!(o.all_committable(), all);
                prop_assert_eq!(o.partitions(), vec![0, 1]);
            }
        }
    }
}
