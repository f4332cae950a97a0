//! The campaign table as this instance reads it: every campaign's latest
//! record from the compacted campaigns topic (Kafka Streams' GlobalKTable).
//! Routing, headers, the campaign API, the status page and the metrics all
//! answer from it, the same on every instance.
//!
//! Pure: the Kafka reader feeds it rows ([`TableView::apply`]); nothing here
//! reads a topic or a clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::RwLock;

use crate::fairness::alert::{self, AlertEvent, AlertKind, OverrideInfo};
use crate::fairness::assess::Finding;
use crate::fairness::campaign::{OverrideAction, OverrideRecord, State, StateMachine};
use crate::fairness::measures::Counts;
use crate::fairness::tracker::{
    AlertParts, CampaignReport, CampaignStore, Filter, OverrideError, Page, Pager, WorstFirst,
    alert_event, check_override, context,
};
use crate::fairness::wire::{CampaignRecord, OverrideCommand, PlatformRecord, TableRow};
use crate::policy::{Category, CompiledPolicy};

/// What routing needs of a campaign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Route {
    /// The effective state (override included).
    pub state: State,
    pub finding: Option<Finding>,
    pub acknowledged: bool,
}

/// What applying a row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Updated,
    Removed,
    /// Older than the row held (a replayed record): ignored.
    Stale,
    /// A tombstone for a row that is not ok or holds an override: ignored.
    Refused,
}

/// Whether a row may be removed by a tombstone: what an owner forgets
/// (state ok, no override; see [`crate::fairness::owner`]).
fn forgettable(r: &CampaignRecord) -> bool {
    r.report.state == State::Ok && r.report.override_.is_none()
}

/// Counters of what the table saw (read by metrics).
#[derive(Debug, Default)]
pub struct TableCounters {
    pub stale: AtomicU64,
    pub removed: AtomicU64,
    /// Tombstones refused (see [`TableView::apply`]).
    pub refused: AtomicU64,
}

/// Every campaign's latest row.
#[derive(Debug, Default)]
pub struct TableView {
    rows: DashMap<Box<str>, Arc<CampaignRecord>>,
    platform: RwLock<Option<PlatformRecord>>,
    /// The whole table has been read once (readiness waits for it).
    loaded: AtomicBool,
    pub counters: TableCounters,
}

impl TableView {
    pub fn new() -> TableView {
        TableView::default()
    }

    /// Take one row read from the topic. A campaign row older than the
    /// one held (by `updated_ms`) is ignored: a signed record replayed onto
    /// the topic cannot roll a campaign back.
    ///
    /// A tombstone carries no signature (Kafka's compaction needs a null
    /// value), so it removes only a row that an owner could have forgotten:
    /// state ok and no override. A tombstone for any other row is refused
    /// ([`Applied::Refused`]): a write to the topic alone cannot unblock or
    /// unflag a campaign, nor drop a campaign manager's override.
    pub fn apply(&self, key: &str, row: TableRow) -> Applied {
        match row {
            TableRow::Gone => {
                let removed = self.rows.remove_if(key, |_, r| forgettable(r));
                if removed.is_none() && self.rows.contains_key(key) {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    return Applied::Refused;
                }
                self.counters.removed.fetch_add(1, Ordering::Relaxed);
                Applied::Removed
            }
            TableRow::Platform(p) => {
                let mut held = self.platform.write();
                if held.as_ref().is_some_and(|h| h.updated_ms > p.updated_ms) {
                    self.counters.stale.fetch_add(1, Ordering::Relaxed);
                    return Applied::Stale;
                }
                *held = Some(p);
                Applied::Updated
            }
            TableRow::Campaign(c) => {
                if let Some(held) = self.rows.get(key)
                    && held.updated_ms > c.updated_ms
                {
                    self.counters.stale.fetch_add(1, Ordering::Relaxed);
                    return Applied::Stale;
                }
                self.rows.insert(key.into(), Arc::new(*c));
                Applied::Updated
            }
        }
    }

    /// The whole table has been read once.
    pub fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// A campaign's routing: state ok when the table has no row for it.
    pub fn route(&self, id: &str) -> Route {
        match self.rows.get(id) {
            Some(r) => Route {
                state: r.report.state,
                finding: r.report.finding,
                acknowledged: r.report.acknowledged.is_some(),
            },
            None => Route {
                state: State::Ok,
                finding: None,
                acknowledged: false,
            },
        }
    }

    /// A campaign's row.
    pub fn get(&self, id: &str) -> Option<Arc<CampaignRecord>> {
        self.rows.get(id).map(|r| r.clone())
    }

    /// The platform-wide totals, `groups` long (zeros before the first row
    /// or under a policy with another number of groups).
    pub fn platform_totals(&self, groups: usize) -> Vec<Counts> {
        let mut out = vec![Counts::default(); groups];
        if let Some(p) = &*self.platform.read()
            && p.totals.len() == groups
        {
            for (o, [c, s]) in out.iter_mut().zip(&p.totals) {
                o.considered = *c;
                o.selected = *s;
            }
        }
        out
    }

    /// Campaigns whose rows say ok, without override or acknowledgement,
    /// and unseen for `idle_ms` by `now_ms`: at most `limit` of them. Rows
    /// whose owner forgot the campaign before a restart are tombstoned from
    /// this list, so that the table does not keep every campaign ever seen.
    pub fn idle(&self, now_ms: i64, idle_ms: i64, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.rows.iter() {
            if out.len() >= limit {
                break;
            }
            let rep = &r.report;
            if rep.state == State::Ok
                && rep.override_.is_none()
                && rep.acknowledged.is_none()
                && now_ms.saturating_sub(rep.last_seen_ms) >= idle_ms
            {
                out.push(r.key().to_string());
            }
        }
        out
    }

    /// The platform row, as read.
    pub fn platform(&self) -> Option<PlatformRecord> {
        self.platform.read().clone()
    }

    /// A campaign manager's override, prepared on any instance: the command
    /// for the campaign's owner, and the audit alert (the state before is
    /// this table's; the state after is the override applied to it).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_override(
        &self,
        policy: &CompiledPolicy,
        id: &str,
        action: OverrideAction,
        by: &str,
        reason: &str,
        now_ms: i64,
        command_id: String,
    ) -> Result<(OverrideCommand, AlertEvent), OverrideError> {
        let (by, reason) = check_override(id, by, reason)?;
        let row = self.get(id);
        let mut machine = row
            .as_deref()
            .map_or_else(|| StateMachine::new(now_ms), machine_of);
        let category = row
            .as_deref()
            .and_then(|r| Category::parse(&r.report.category))
            .unwrap_or(Category::Default);
        let since = machine.since_ms;
        let (before, after) = machine.apply_override(OverrideRecord {
            action,
            by: by.to_string(),
            reason: reason.to_string(),
            at_ms: now_ms,
        });
        let numbers = row
            .as_deref()
            .map(|r| r.report.dimensions.clone())
            .unwrap_or_default();
        let finding = machine.last_assessment.and_then(|a| a.finding);
        let info = OverrideInfo {
            action,
            by: by.to_string(),
            reason: reason.to_string(),
        };
        let ctx = context(policy, id, category, finding.as_ref(), &numbers);
        let message = alert::override_message(&ctx, &info, before, after);
        let head = row
            .as_deref()
            .map(|r| r.report.window.end_ms.div_euclid(policy.bucket_ms.max(1)) - 1);
        let alert = alert_event(
            policy,
            id,
            category,
            finding,
            numbers,
            head,
            now_ms,
            AlertParts {
                kind: AlertKind::Override,
                old_state: before,
                new_state: after,
                measured_state: machine.state,
                cause: None,
                since_ms: since,
                override_: Some(info),
                message,
            },
        );
        let command = OverrideCommand {
            id: command_id,
            campaign: id.to_string(),
            action,
            by: by.to_string(),
            reason: reason.to_string(),
            at_ms: now_ms,
        };
        Ok((command, alert))
    }
}

/// The state machine a row describes (what an owner carries on from).
pub fn machine_of(r: &CampaignRecord) -> StateMachine {
    let rep = &r.report;
    StateMachine {
        state: rep.measured_state,
        since_ms: rep.since_ms,
        skewed_since_ms: r.skewed_since_ms,
        override_: rep.override_.clone(),
        acknowledged: rep.acknowledged.clone(),
        last_assessment: rep.level.map(|level| crate::fairness::assess::Assessment {
            level,
            finding: rep.finding,
        }),
    }
}

impl CampaignStore for TableView {
    fn report(&self, _policy: &CompiledPolicy, id: &str) -> Option<CampaignReport> {
        self.get(id).map(|r| r.report.clone())
    }

    fn page(
        &self,
        _policy: &CompiledPolicy,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Page {
        let mut pager = Pager::new(filter, after, limit);
        for r in self.rows.iter() {
            pager.offer(r.key(), r.report.state);
        }
        let (total, ids, next) = pager.finish();
        let campaigns = ids
            .iter()
            .filter_map(|id| self.get(id).map(|r| r.report.clone()))
            .collect();
        Page {
            total,
            campaigns,
            next,
        }
    }

    fn state_counts(&self) -> [(State, usize); 3] {
        let mut n = [0usize; 3];
        for r in self.rows.iter() {
            n[r.report.state as usize] += 1;
        }
        [
            (State::Ok, n[0]),
            (State::Flagged, n[1]),
            (State::Blocked, n[2]),
        ]
    }

    fn non_ok(&self, limit: usize) -> Vec<(String, State)> {
        let mut worst = WorstFirst::new(limit);
        for r in self.rows.iter() {
            worst.offer(r.key(), r.report.state);
        }
        worst.finish()
    }

    fn evicted(&self) -> u64 {
        self.counters.removed.load(Ordering::Relaxed)
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Campaign state kept on Kafka, as the guard sees it: the table it routes
/// by, and the counter its decisions are added to until the next flush.
#[derive(Debug)]
pub struct SharedCampaigns {
    pub table: TableView,
    counter: arc_swap::ArcSwap<crate::fairness::counter::Counter>,
}

impl SharedCampaigns {
    pub fn new(policy: &CompiledPolicy) -> SharedCampaigns {
        SharedCampaigns {
            table: TableView::new(),
            counter: arc_swap::ArcSwap::from_pointee(crate::fairness::counter::Counter::new(
                policy.total_groups,
            )),
        }
    }

    /// The counter decisions are added to now (a guard: no reference count
    /// is taken per decision).
    pub fn counter(&self) -> arc_swap::Guard<Arc<crate::fairness::counter::Counter>> {
        self.counter.load()
    }

    /// A policy with other groups: counts start afresh (those not yet
    /// flushed were counted under the old groups and are dropped, as a
    /// local window would be).
    pub fn reset_counter(&self, policy: &CompiledPolicy) {
        self.counter
            .store(Arc::new(crate::fairness::counter::Counter::new(
                policy.total_groups,
            )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fairness::alert::WindowInfo;
    use crate::fairness::wire::PlatformRecord;

    fn row(id: &str, state: State, updated_ms: i64) -> TableRow {
        TableRow::Campaign(Box::new(CampaignRecord {
            report: CampaignReport {
                campaign: id.into(),
                category: "default".into(),
                state,
                measured_state: state,
                since_ms: 1,
                level: None,
                finding: None,
                override_: None,
                acknowledged: None,
                window: WindowInfo {
                    start_ms: 0,
                    end_ms: 0,
                    secs: 0,
                },
                window_complete: false,
                first_seen_ms: 0,
                last_seen_ms: 0,
                dimensions: Vec::new(),
            },
            skewed_since_ms: None,
            applied: Vec::new(),
            policy_version: "v".into(),
            updated_ms,
        }))
    }

    /// A tombstone is unsigned: anyone who can write to the topic can
    /// send one. It must not unblock, unflag or drop an override.
    #[test]
    fn a_tombstone_forgets_only_an_ok_campaign_without_override() {
        let t = TableView::new();
        for (id, state) in [("b", State::Blocked), ("f", State::Flagged)] {
            t.apply(id, row(id, state, 10));
            assert_eq!(t.apply(id, TableRow::Gone), Applied::Refused);
            assert_eq!(t.route(id).state, state, "{id}: kept");
        }
        let TableRow::Campaign(mut allowed) = row("a", State::Ok, 10) else {
            unreachable!()
        };
        allowed.report.override_ = Some(OverrideRecord {
            action: OverrideAction::ForceAllow,
            by: "cm@example.com".into(),
            reason: "checked by hand".into(),
            at_ms: 5,
        });
        t.apply("a", TableRow::Campaign(allowed));
        assert_eq!(t.apply("a", TableRow::Gone), Applied::Refused);
        assert!(t.get("a").is_some_and(|r| r.report.override_.is_some()));
        assert_eq!(t.counters.refused.load(Ordering::Relaxed), 3);
        assert_eq!((t.len(), t.evicted()), (3, 0));
    }

    #[test]
    fn an_older_row_cannot_roll_a_campaign_back_and_a_tombstone_forgets_it() {
        let t = TableView::new();
        assert_eq!(t.route("c").state, State::Ok, "unknown: ok");
        assert_eq!(t.apply("c", row("c", State::Blocked, 10)), Applied::Updated);
        assert_eq!(t.apply("c", row("c", State::Ok, 9)), Applied::Stale);
        assert_eq!(t.route("c").state, State::Blocked);
        assert_eq!(t.state_counts()[2], (State::Blocked, 1));
        assert_eq!(t.idle(100, 50, 10), Vec::<String>::new(), "blocked: kept");
        t.apply("d", row("d", State::Ok, 10));
        assert_eq!(
            t.idle(100, 50, 10),
            vec!["d".to_string()],
            "ok and unseen since 0"
        );
        assert!(t.idle(40, 50, 10).is_empty(), "not idle long enough");
        assert_eq!(t.apply("d", TableRow::Gone), Applied::Removed);
        assert_eq!((t.len(), t.evicted()), (1, 1));
        assert_eq!(t.apply("d", TableRow::Gone), Applied::Removed, "none held");
        let p = |updated_ms| {
            TableRow::Platform(PlatformRecord {
                head: None,
                totals: vec![[4, 2], [6, 1]],
                updated_ms,
            })
        };
        t.apply("", p(5));
        assert_eq!(t.apply("", p(4)), Applied::Stale);
        assert_eq!(t.platform_totals(2)[1].considered, 6);
        assert_eq!(
            t.platform_totals(3),
            vec![Counts::default(); 3],
            "another policy's groups: none"
        );
    }
}
