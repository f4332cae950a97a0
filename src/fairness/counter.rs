//! Counting before the shuffle: each instance adds its decisions up per
//! campaign, bucket and group, and hands the sums over as [`Delta`]s at each
//! flush (Flink's local-global aggregation): the exposure topic carries one
//! record per campaign per flush, not one per decision, and a campaign that
//! is in half of all auctions is counted on every judge thread at once.
//!
//! [`Counter::take`] swaps the whole batch at once, so every decision is in
//! exactly one flush. Pure: no I/O, no clock.

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use crate::fairness::wire::{Delta, PLATFORM_KEY};
use crate::policy::Category;

#[derive(Debug)]
struct Pending {
    category: Category,
    first_ms: i64,
    last_ms: i64,
    /// (bucket, (considered, selected) per group); a campaign's decisions
    /// fall in few buckets between two flushes, so a short list.
    buckets: Vec<(i64, Box<[[u32; 2]]>)>,
}

impl Pending {
    fn new(category: Category, ts_ms: i64) -> Pending {
        Pending {
            category,
            first_ms: ts_ms,
            last_ms: ts_ms,
            buckets: Vec::new(),
        }
    }

    fn add(
        &mut self,
        width: usize,
        ts_ms: i64,
        bucket: Option<i64>,
        groups: &[usize],
        selected: bool,
    ) {
        self.first_ms = self.first_ms.min(ts_ms);
        self.last_ms = self.last_ms.max(ts_ms);
        let Some(b) = bucket else { return };
        if groups.is_empty() {
            return;
        }
        let cells = match self.buckets.iter().position(|(x, _)| *x == b) {
            Some(i) => &mut self.buckets[i].1,
            None => {
                self.buckets
                    .push((b, vec![[0, 0]; width].into_boxed_slice()));
                &mut self.buckets.last_mut().expect("just pushed").1
            }
        };
        for &g in groups {
            if let Some(c) = cells.get_mut(g) {
                c[0] = c[0].saturating_add(1);
                if selected {
                    c[1] = c[1].saturating_add(1);
                }
            }
        }
    }

    fn into_delta(self, campaign: String, instance: &str, groups: usize) -> Delta {
        Delta {
            campaign,
            category: self.category.as_str().to_string(),
            instance: instance.to_string(),
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            groups,
            buckets: self
                .buckets
                .into_iter()
                .map(|(b, c)| (b, c.into_vec()))
                .collect(),
        }
    }
}

#[derive(Debug, Default)]
struct Batch {
    campaigns: DashMap<Box<str>, Pending>,
    /// The platform's counts (every decision's), apart: every decision
    /// touches it, so it gets its own short lock.
    platform: Mutex<Option<Pending>>,
}

/// The decisions counted since the last flush.
#[derive(Debug)]
pub struct Counter {
    groups: usize,
    batch: RwLock<Batch>,
}

impl Counter {
    /// A counter for `groups` flattened groups (the policy's `total_groups`).
    pub fn new(groups: usize) -> Counter {
        Counter {
            groups,
            batch: RwLock::new(Batch::default()),
        }
    }

    /// The number of groups per bucket.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Count one decision of `campaign` at `ts_ms`. `bucket` is `None` when
    /// the decision falls outside the window (late or early): it is then
    /// only seen, not counted.
    pub fn add(
        &self,
        campaign: &str,
        category: Category,
        ts_ms: i64,
        bucket: Option<i64>,
        groups: &[usize],
        selected: bool,
    ) {
        let batch = self.batch.read();
        {
            let mut p = batch.platform.lock();
            p.get_or_insert_with(|| Pending::new(Category::Default, ts_ms))
                .add(self.groups, ts_ms, bucket, groups, selected);
        }
        match batch.campaigns.get_mut(campaign) {
            Some(mut e) => {
                e.category = category;
                e.add(self.groups, ts_ms, bucket, groups, selected);
            }
            // Two threads may miss at once: `entry` makes the second add to
            // the first one's counts instead of replacing them.
            None => batch
                .campaigns
                .entry(campaign.into())
                .or_insert_with(|| Pending::new(category, ts_ms))
                .add(self.groups, ts_ms, bucket, groups, selected),
        }
    }

    /// Campaigns counted since the last flush.
    pub fn pending(&self) -> usize {
        self.batch.read().campaigns.len()
    }

    /// Everything counted since the last flush, as deltas (the platform's
    /// under [`PLATFORM_KEY`], last); the counter starts afresh.
    pub fn take(&self, instance: &str) -> Vec<Delta> {
        let batch = std::mem::take(&mut *self.batch.write());
        let mut out: Vec<Delta> = batch
            .campaigns
            .into_iter()
            .map(|(id, p)| p.into_delta(id.into(), instance, self.groups))
            .collect();
        if let Some(p) = batch.platform.into_inner() {
            out.push(p.into_delta(PLATFORM_KEY.to_string(), instance, self.groups));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_summed_per_campaign_bucket_and_group_and_taken_once() {
        let c = Counter::new(3);
        c.add("a", Category::Housing, 10, Some(1), &[0, 2], true);
        c.add("a", Category::Housing, 5, Some(1), &[0], false);
        c.add("a", Category::Housing, 70, Some(2), &[1], true);
        c.add("b", Category::Default, 11, None, &[0], true);
        c.add("b", Category::Default, 12, Some(1), &[], true);
        assert_eq!(c.pending(), 2);
        let mut d = c.take("i");
        assert_eq!(c.pending(), 0);
        assert!(c.take("i").is_empty(), "taken once");
        let platform = d.pop().unwrap();
        assert_eq!(platform.campaign, PLATFORM_KEY);
        assert_eq!(
            platform.buckets,
            vec![
                (1, vec![[2, 1], [0, 0], [1, 1]]),
                (2, vec![[0, 0], [1, 1], [0, 0]])
            ]
        );
        d.sort_by(|x, y| x.campaign.cmp(&y.campaign));
        let a = &d[0];
        assert_eq!(
            (a.first_ms, a.last_ms, a.category.as_str()),
            (5, 70, "housing")
        );
        assert_eq!(
            a.buckets,
            vec![
                (1, vec![[2, 1], [0, 0], [1, 1]]),
                (2, vec![[0, 0], [1, 1], [0, 0]])
            ]
        );
        let b = &d[1];
        assert!(b.buckets.is_empty(), "seen, not counted: {b:?}");
        assert_eq!((b.first_ms, b.last_ms), (11, 12));
    }

    #[test]
    fn every_decision_lands_in_exactly_one_flush_under_concurrency() {
        let c = std::sync::Arc::new(Counter::new(1));
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        c.add(
                            &format!("c{}", (i + t) % 7),
                            Category::Default,
                            i,
                            Some(0),
                            &[0],
                            true,
                        );
                    }
                })
            })
            .collect();
        let mut total = 0u64;
        let mut flushes = 0;
        while writers.iter().any(|w| !w.is_finished()) || flushes == 0 {
            total += c
                .take("i")
                .iter()
                .filter(|d| d.campaign != PLATFORM_KEY)
                .flat_map(|d| &d.buckets)
                .map(|(_, g)| u64::from(g[0][0]))
                .sum::<u64>();
            flushes += 1;
        }
        for w in writers {
            w.join().unwrap();
        }
        total += c
            .take("i")
            .iter()
            .filter(|d| d.campaign != PLATFORM_KEY)
            .flat_map(|d| &d.buckets)
            .map(|(_, g)| u64::from(g[0][0]))
            .sum::<u64>();
        assert_eq!(total, 40_000);
    }
}
