//! The campaigns this instance owns: those whose exposure partitions it
//! holds in the owners' consumer group. It merges every instance's deltas
//! into their windows, applies override commands, judges them with the
//! usual rules (hysteresis, dwell, monitor/enforce, categories, overrides)
//! and says what to write: table rows, tombstones, the platform row, alerts.
//!
//! A campaign taken over (start, rebalance, another instance's crash)
//! carries on from its table row (state, since, override, acknowledgement,
//! first seen, commands applied) with a window rebuilt from the exposure
//! topic; it is not judged until its partition has been replayed.
//!
//! Pure: no I/O, the clock is an argument.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::fairness::alert::{self, AlertEvent, AlertKind};
use crate::fairness::assess;
use crate::fairness::campaign::{OverrideRecord, State, StateMachine, Transition};
use crate::fairness::exposure::Window;
use crate::fairness::measures::Counts;
use crate::fairness::table::machine_of;
use crate::fairness::tracker::{AlertParts, alert_event, campaign_report, context};
use crate::fairness::wire::{CampaignRecord, Delta, OverrideCommand, PLATFORM_KEY, PlatformRecord};
use crate::policy::{Category, CompiledPolicy};

/// Override command ids kept per campaign, against applying one twice.
const APPLIED_KEPT: usize = 32;

#[derive(Debug)]
struct Owned {
    window: Window,
    machine: StateMachine,
    category: Category,
    first_seen_ms: i64,
    last_seen_ms: i64,
    partition: i32,
    /// Counts merged since the last assessment.
    fresh: bool,
    /// Counts merged since the last row written.
    unwritten: bool,
    /// A row must be written at the next judgement (override, takeover).
    force: bool,
    written_ms: Option<i64>,
    applied: VecDeque<String>,
    /// The newest command applied (its `at_ms`): older ones are not applied.
    last_command_ms: i64,
}

impl Owned {
    fn new(
        policy: &CompiledPolicy,
        partition: i32,
        seed: Option<&CampaignRecord>,
        seen_ms: i64,
        now_ms: i64,
    ) -> Owned {
        let mut o = Owned {
            window: Window::new(policy.buckets, policy.total_groups),
            machine: StateMachine::new(now_ms),
            category: Category::Default,
            first_seen_ms: seen_ms,
            last_seen_ms: seen_ms,
            partition,
            fresh: true,
            unwritten: true,
            force: false,
            written_ms: None,
            applied: VecDeque::new(),
            last_command_ms: i64::MIN,
        };
        if let Some(r) = seed {
            o.machine = machine_of(r);
            o.category = Category::parse(&r.report.category).unwrap_or(Category::Default);
            o.first_seen_ms = r.report.first_seen_ms.min(seen_ms);
            o.last_seen_ms = r.report.last_seen_ms;
            o.applied = r.applied.iter().cloned().collect();
            o.last_command_ms = [&r.report.override_, &r.report.acknowledged]
                .into_iter()
                .flatten()
                .map(|x| x.at_ms)
                .max()
                .unwrap_or(i64::MIN);
            // Written by the previous owner: no need to write it again until
            // something changes.
            o.written_ms = Some(r.updated_ms);
            o.unwritten = false;
        }
        o
    }
}

/// What the owner asks to be written.
#[derive(Debug, Clone)]
pub enum Out {
    /// A campaign's row, for the table.
    Row(Box<CampaignRecord>),
    /// A campaign forgotten (idle, ok, no override): a tombstone.
    Gone(String),
    /// The platform row.
    Platform(PlatformRecord),
    /// A transition, for the alerts topic.
    Alert(Box<AlertEvent>),
}

/// Why a record was not merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Counted under a policy with another number of groups.
    Groups,
    /// A command already applied, or older than the newest applied.
    Replayed,
    /// A command stamped before the replay span ([`replay_span_ms`]) or
    /// further ahead than `max_future_ms`: an old signed command written
    /// to the topic again is not applied, whatever the campaign holds.
    Expired,
    /// A delta with buckets further ahead than `max_future_ms` (a clock
    /// far ahead, or a hostile record): those buckets are skipped, the rest
    /// applied, so one record cannot move a window past every real count.
    Future,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Groups => "groups_mismatch",
            Skip::Replayed => "replayed",
            Skip::Expired => "expired",
            Skip::Future => "future",
        }
    }
}

/// How far back an owner replays the exposure topic when it is given a
/// partition: the window, the future allowance and one bucket.
pub fn replay_span_ms(policy: &CompiledPolicy) -> i64 {
    policy
        .window_ms
        .saturating_add(policy.max_future_ms)
        .saturating_add(policy.bucket_ms)
}

/// The campaigns owned, with their windows and state machines.
#[derive(Debug, Default)]
pub struct Owner {
    campaigns: HashMap<Box<str>, Owned>,
    /// The platform window, while the platform key's partition is ours.
    platform: Option<(i32, Window, bool)>,
    /// Partitions still being replayed: their campaigns are not judged.
    restoring: HashSet<i32>,
    evicted: u64,
    /// What the windows were made for: a policy with another window or
    /// other dimensions makes them start afresh (as a local tracker's do).
    shape: Option<Shape>,
}

/// The parts of a policy the windows depend on.
#[derive(Debug)]
struct Shape {
    window_ms: i64,
    bucket_ms: i64,
    dimensions: Vec<crate::policy::Dimension>,
}

impl Shape {
    fn of(p: &CompiledPolicy) -> Shape {
        Shape {
            window_ms: p.window_ms,
            bucket_ms: p.bucket_ms,
            dimensions: p.dimensions.clone(),
        }
    }

    /// As [`CompiledPolicy::same_windows`].
    fn fits(&self, p: &CompiledPolicy) -> bool {
        self.window_ms == p.window_ms
            && self.bucket_ms == p.bucket_ms
            && self.dimensions.len() == p.dimensions.len()
            && self
                .dimensions
                .iter()
                .zip(&p.dimensions)
                .all(|(a, b)| a.counts_like(b))
    }
}

impl Owner {
    pub fn new() -> Owner {
        Owner::default()
    }

    /// Campaigns owned.
    pub fn len(&self) -> usize {
        self.campaigns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }

    /// Campaigns forgotten so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// A partition is being replayed: count, do not judge.
    pub fn restoring(&mut self, partition: i32) {
        self.restoring.insert(partition);
    }

    /// A partition's replay is done: its campaigns are judged from now on,
    /// and their rows written once (the windows are complete again).
    pub fn restored(&mut self, partition: i32) {
        self.restoring.remove(&partition);
        for c in self
            .campaigns
            .values_mut()
            .filter(|c| c.partition == partition)
        {
            c.force = true;
        }
    }

    /// Partitions no longer ours: their campaigns go to the new owner.
    pub fn revoke(&mut self, partitions: &[i32]) {
        self.campaigns
            .retain(|_, c| !partitions.contains(&c.partition));
        if self
            .platform
            .as_ref()
            .is_some_and(|(p, _, _)| partitions.contains(p))
        {
            self.platform = None;
        }
        for p in partitions {
            self.restoring.remove(p);
        }
    }

    /// A new policy with other dimensions or window: windows start afresh.
    pub fn reset_windows(&mut self, policy: &CompiledPolicy) {
        for c in self.campaigns.values_mut() {
            c.window = Window::new(policy.buckets, policy.total_groups);
        }
        if let Some((_, w, _)) = &mut self.platform {
            *w = Window::new(policy.buckets, policy.total_groups);
        }
    }

    /// Windows made for `policy`: a policy with another window or other
    /// dimensions resets them (states and overrides stay), whatever its version.
    fn fit(&mut self, policy: &CompiledPolicy) {
        match &self.shape {
            Some(s) if s.fits(policy) => return,
            Some(_) => self.reset_windows(policy),
            None => {}
        }
        self.shape = Some(Shape::of(policy));
    }

    fn entry(
        &mut self,
        policy: &CompiledPolicy,
        partition: i32,
        id: &str,
        seed: impl FnOnce() -> Option<CampaignRecord>,
        seen_ms: i64,
        now_ms: i64,
    ) -> &mut Owned {
        if !self.campaigns.contains_key(id) {
            let o = Owned::new(policy, partition, seed().as_ref(), seen_ms, now_ms);
            self.campaigns.insert(id.into(), o);
        }
        let c = self.campaigns.get_mut(id).expect("inserted above");
        c.partition = partition;
        c
    }

    /// Merge one instance's delta. `seed` gives the campaign's table row,
    /// read only when the campaign is new here.
    pub fn merge(
        &mut self,
        policy: &CompiledPolicy,
        partition: i32,
        d: &Delta,
        seed: impl FnOnce() -> Option<CampaignRecord>,
        now_ms: i64,
    ) -> Result<(), Skip> {
        self.fit(policy);
        if d.groups != policy.total_groups {
            return Err(Skip::Groups);
        }
        // The latest time a delta may count at now, and its bucket.
        let latest = now_ms.saturating_add(policy.max_future_ms);
        let newest = latest.div_euclid(policy.bucket_ms.max(1));
        let ahead = d.buckets.iter().any(|(b, _)| *b > newest);
        let buckets = d.buckets.iter().filter(|(b, _)| *b <= newest);
        let done = if ahead { Err(Skip::Future) } else { Ok(()) };
        if d.campaign == PLATFORM_KEY {
            let (_, w, dirty) = self.platform.get_or_insert_with(|| {
                (
                    partition,
                    Window::new(policy.buckets, policy.total_groups),
                    true,
                )
            });
            for (b, cells) in buckets {
                w.add_cells(*b, cells);
            }
            *dirty = true;
            return done;
        }
        let seen = d.first_ms.min(latest);
        let c = self.entry(policy, partition, &d.campaign, seed, seen, now_ms);
        c.category = Category::of_campaign(Some(&d.category));
        c.first_seen_ms = c.first_seen_ms.min(seen);
        c.last_seen_ms = c.last_seen_ms.max(d.last_ms.min(latest));
        for (b, cells) in buckets {
            c.window.add_cells(*b, cells);
        }
        c.fresh = true;
        c.unwritten = true;
        done
    }

    /// Apply an override command (verified by the reader). Applied once:
    /// a command seen again (a replay after a restart) or older than the
    /// newest applied is skipped.
    pub fn command(
        &mut self,
        policy: &CompiledPolicy,
        partition: i32,
        cmd: &OverrideCommand,
        seed: impl FnOnce() -> Option<CampaignRecord>,
        now_ms: i64,
    ) -> Result<(), Skip> {
        self.fit(policy);
        if cmd.at_ms < now_ms.saturating_sub(replay_span_ms(policy))
            || cmd.at_ms > now_ms.saturating_add(policy.max_future_ms)
        {
            return Err(Skip::Expired);
        }
        let c = self.entry(policy, partition, &cmd.campaign, seed, now_ms, now_ms);
        if c.applied.contains(&cmd.id) || cmd.at_ms < c.last_command_ms {
            return Err(Skip::Replayed);
        }
        c.machine.apply_override(OverrideRecord {
            action: cmd.action,
            by: cmd.by.clone(),
            reason: cmd.reason.clone(),
            at_ms: cmd.at_ms,
        });
        c.last_command_ms = cmd.at_ms;
        c.applied.push_back(cmd.id.clone());
        while c.applied.len() > APPLIED_KEPT {
            c.applied.pop_front();
        }
        c.force = true;
        Ok(())
    }

    /// Judge what changed and say what to write. A campaign is assessed
    /// when counts arrived since its last assessment; its row is written on
    /// a transition or an override, the first time, and otherwise at most
    /// every `refresh_ms` while counts arrive. Idle campaigns in state ok
    /// without override are forgotten after `idle_evict_secs`.
    pub fn judge(
        &mut self,
        policy: &CompiledPolicy,
        platform: &[Counts],
        now_ms: i64,
        refresh_ms: i64,
    ) -> Vec<Out> {
        self.fit(policy);
        let mut out = Vec::new();
        let head = now_ms.div_euclid(policy.bucket_ms.max(1));
        let mut gone = Vec::new();
        for (id, c) in self.campaigns.iter_mut() {
            if self.restoring.contains(&c.partition) {
                continue;
            }
            c.window.advance(head);
            let limits = policy.limits_for(c.category);
            let mut transition = false;
            if c.fresh {
                c.fresh = false;
                let a = assess::assess(policy, limits, id, c.window.totals(), platform);
                let before = c.machine.effective();
                if let Some(t) = c.machine.step(&a, limits, policy.mode, now_ms) {
                    transition = true;
                    let alert = transition_alert(policy, id, c, &a, platform, before, t, now_ms);
                    out.push(Out::Alert(Box::new(alert)));
                }
            }
            let due = c.unwritten
                && c.written_ms
                    .is_none_or(|w| now_ms.saturating_sub(w) >= refresh_ms);
            if transition || c.force || due {
                // Newer than the row held, whatever this instance's clock
                // says: readers keep the newest row by `updated_ms`, so a
                // previous owner's clock ahead of ours would otherwise
                // freeze the campaign on every instance until ours caught up.
                let stamp = c
                    .written_ms
                    .map_or(now_ms, |w| now_ms.max(w.saturating_add(1)));
                out.push(Out::Row(Box::new(record_of(
                    policy, id, c, platform, stamp,
                ))));
                c.force = false;
                c.unwritten = false;
                c.written_ms = Some(stamp);
            } else if c.machine.state == State::Ok
                && c.machine.override_.is_none()
                && now_ms.saturating_sub(c.last_seen_ms) >= policy.idle_evict_ms
            {
                gone.push(id.clone());
            }
        }
        for id in gone {
            self.campaigns.remove(&id);
            self.evicted += 1;
            out.push(Out::Gone(id.into()));
        }
        // The platform row, like a campaign's, waits for its partition's
        // replay: written before, it would publish a partial mix.
        if let Some((partition, w, dirty)) = &mut self.platform
            && !self.restoring.contains(partition)
        {
            w.advance(head);
            if std::mem::take(dirty) {
                out.push(Out::Platform(PlatformRecord {
                    head: w.head(),
                    totals: w
                        .totals()
                        .iter()
                        .map(|t| [t.considered, t.selected])
                        .collect(),
                    updated_ms: now_ms,
                }));
            }
        }
        out
    }
}

/// The alert for a transition of `c`'s state machine, just stepped from `before`.
#[allow(clippy::too_many_arguments)]
fn transition_alert(
    policy: &CompiledPolicy,
    id: &str,
    c: &Owned,
    a: &assess::Assessment,
    platform: &[Counts],
    before: State,
    t: Transition,
    now_ms: i64,
) -> AlertEvent {
    let numbers = assess::detail(policy, id, c.window.totals(), platform);
    let ctx = context(policy, id, c.category, a.finding.as_ref(), &numbers);
    let message = alert::transition_message(&ctx, t.from, t.to, t.cause);
    alert_event(
        policy,
        id,
        c.category,
        a.finding,
        numbers,
        c.window.head(),
        now_ms,
        AlertParts {
            kind: AlertKind::Transition,
            old_state: before,
            new_state: c.machine.effective(),
            measured_state: c.machine.state,
            cause: Some(t.cause),
            since_ms: t.prev_since_ms,
            override_: None,
            message,
        },
    )
}

/// The row of a campaign, stamped `updated_ms`.
fn record_of(
    policy: &CompiledPolicy,
    id: &str,
    c: &Owned,
    platform: &[Counts],
    updated_ms: i64,
) -> CampaignRecord {
    let seen = (c.first_seen_ms, c.last_seen_ms);
    CampaignRecord {
        report: campaign_report(
            policy, id, c.category, &c.machine, &c.window, seen, platform,
        ),
        skewed_since_ms: c.machine.skewed_since_ms,
        applied: c.applied.iter().cloned().collect(),
        policy_version: policy.version.clone(),
        updated_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fairness::campaign::OverrideAction;
    use crate::fairness::table::TableView;
    use crate::fairness::wire::{StateKey, TableRow, decode_table, encode_campaign};

    fn policy() -> CompiledPolicy {
        CompiledPolicy::from_toml(include_str!("../../config/policy.toml")).unwrap()
    }

    const NOW: i64 = 1_800_000_000_000;

    /// A delta of `n` decisions per sex group in one bucket: female
    /// selected at `f`, male at `m` (per thousand); ages spread evenly.
    fn delta(p: &CompiledPolicy, id: &str, n: u32, f: u32, m: u32) -> Delta {
        let mut cells = vec![[0u32, 0u32]; p.total_groups];
        cells[0] = [n, n * f / 1000];
        cells[1] = [n, n * m / 1000];
        let sel = cells[0][1] + cells[1][1];
        let ages = (p.total_groups - 2) as u32;
        for c in &mut cells[2..] {
            *c = [2 * n / ages, sel / ages];
        }
        Delta {
            campaign: id.into(),
            category: "default".into(),
            instance: "t".into(),
            first_ms: NOW - 1000,
            last_ms: NOW,
            groups: p.total_groups,
            buckets: vec![(NOW.div_euclid(p.bucket_ms), cells)],
        }
    }

    fn platform(p: &CompiledPolicy) -> Vec<Counts> {
        vec![
            Counts {
                considered: 10_000,
                selected: 3_000
            };
            p.total_groups
        ]
    }

    fn rows(out: &[Out]) -> Vec<&CampaignRecord> {
        out.iter()
            .filter_map(|o| {
                if let Out::Row(r) = o {
                    Some(&**r)
                } else {
                    None
                }
            })
            .collect()
    }

    fn alerts(out: &[Out]) -> usize {
        out.iter().filter(|o| matches!(o, Out::Alert(_))).count()
    }

    #[test]
    fn merged_counts_are_judged_and_written_once_then_at_the_refresh() {
        let p = policy();
        let mut o = Owner::new();
        o.merge(&p, 0, &delta(&p, "c1", 400, 300, 300), || None, NOW)
            .unwrap();
        o.merge(&p, 0, &delta(&p, "c1", 400, 300, 300), || None, NOW)
            .unwrap();
        let out = o.judge(&p, &platform(&p), NOW, 30_000);
        let r = rows(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].report.dimensions[0].considered, 1600,
            "two deltas merged"
        );
        assert!(
            o.judge(&p, &platform(&p), NOW + 10, 30_000).is_empty(),
            "nothing new"
        );
        o.merge(&p, 0, &delta(&p, "c1", 10, 300, 300), || None, NOW + 20)
            .unwrap();
        assert!(
            rows(&o.judge(&p, &platform(&p), NOW + 20, 30_000)).is_empty(),
            "not due yet"
        );
        let out = o.judge(&p, &platform(&p), NOW + 30_000, 30_000);
        assert_eq!(
            rows(&out)[0].report.dimensions[0].considered,
            1620,
            "refreshed"
        );
    }

    #[test]
    fn a_skewed_campaign_alerts_once_and_its_next_owner_carries_on_without_a_second_alert() {
        let p = policy();
        let key = StateKey::new(b"0123456789abcdef").unwrap();
        let mut o = Owner::new();
        o.merge(&p, 3, &delta(&p, "sk", 1500, 100, 600), || None, NOW)
            .unwrap();
        let out = o.judge(&p, &platform(&p), NOW, 30_000);
        assert_eq!(alerts(&out), 1);
        let row = rows(&out)[0].clone();
        assert_eq!(row.report.state, State::Flagged);
        // Through the table, as the next owner reads it.
        let table = TableView::new();
        match decode_table(&key, "sk", Some(&encode_campaign(&key, &row))).unwrap() {
            r @ TableRow::Campaign(_) => table.apply("sk", r),
            other => panic!("{other:?}"),
        };
        let mut next = Owner::new();
        next.restoring(3);
        next.merge(
            &p,
            3,
            &delta(&p, "sk", 1500, 100, 600),
            || table.get("sk").map(|r| (*r).clone()),
            NOW,
        )
        .unwrap();
        assert!(
            next.judge(&p, &platform(&p), NOW + 1, 30_000).is_empty(),
            "not judged while replaying"
        );
        next.restored(3);
        let out = next.judge(&p, &platform(&p), NOW + 2, 30_000);
        assert_eq!(alerts(&out), 0, "the flag carries on, no second alert");
        let r = rows(&out)[0];
        assert_eq!(
            (r.report.state, r.report.since_ms),
            (State::Flagged, row.report.since_ms)
        );
        assert_eq!(r.report.first_seen_ms, row.report.first_seen_ms);
    }

    #[test]
    fn an_override_command_is_applied_once_even_when_replayed_after_a_restart() {
        let p = policy();
        let cmd = |id: &str, action, at_ms| OverrideCommand {
            id: id.into(),
            campaign: "c".into(),
            action,
            by: "ana".into(),
            reason: "checked".into(),
            at_ms,
        };
        let mut o = Owner::new();
        o.command(
            &p,
            0,
            &cmd("a", OverrideAction::ForceBlock, NOW),
            || None,
            NOW,
        )
        .unwrap();
        assert_eq!(
            o.command(
                &p,
                0,
                &cmd("a", OverrideAction::ForceBlock, NOW),
                || None,
                NOW
            ),
            Err(Skip::Replayed)
        );
        let row = rows(&o.judge(&p, &platform(&p), NOW, 30_000))[0].clone();
        assert_eq!(row.report.state, State::Blocked);
        assert_eq!(row.applied, vec!["a".to_string()]);
        o.command(
            &p,
            0,
            &cmd("b", OverrideAction::Clear, NOW + 5),
            || None,
            NOW,
        )
        .unwrap();
        // An older command read late (or replayed) does not undo a newer one.
        assert_eq!(
            o.command(
                &p,
                0,
                &cmd("z", OverrideAction::ForceAllow, NOW + 1),
                || None,
                NOW
            ),
            Err(Skip::Replayed)
        );
        // A new owner seeded from the row skips the command it already holds.
        let mut next = Owner::new();
        let seeded = row.clone();
        assert_eq!(
            next.command(
                &p,
                0,
                &cmd("a", OverrideAction::ForceBlock, NOW),
                move || Some(seeded),
                NOW
            ),
            Err(Skip::Replayed)
        );
    }

    /// The platform mix is written only once its partition is replayed.
    #[test]
    fn the_platform_row_waits_for_its_partition_to_be_replayed() {
        let p = policy();
        let mut o = Owner::new();
        o.restoring(3);
        o.merge(&p, 3, &delta(&p, PLATFORM_KEY, 100, 300, 300), || None, NOW)
            .unwrap();
        let platform_rows =
            |out: &[Out]| out.iter().filter(|x| matches!(x, Out::Platform(_))).count();
        assert_eq!(platform_rows(&o.judge(&p, &platform(&p), NOW, 30_000)), 0);
        o.restored(3);
        assert_eq!(platform_rows(&o.judge(&p, &platform(&p), NOW, 30_000)), 1);
    }

    /// The previous owner's clock ran an hour ahead: this owner's rows
    /// must still be newer than its last, or every reader would keep that
    /// one (by `updated_ms`) and ignore an override applied here.
    #[test]
    fn rows_are_stamped_after_the_row_held_whatever_the_clock_says() {
        let p = policy();
        let ahead = NOW + 3_600_000;
        let mut before = Owner::new();
        before
            .merge(&p, 0, &delta(&p, "c", 400, 300, 300), || None, NOW)
            .unwrap();
        let held = rows(&before.judge(&p, &platform(&p), ahead, 30_000))[0].clone();
        assert_eq!(held.updated_ms, ahead);
        let mut next = Owner::new();
        let cmd = OverrideCommand {
            id: "x".into(),
            campaign: "c".into(),
            action: OverrideAction::ForceBlock,
            by: "ana".into(),
            reason: "checked".into(),
            at_ms: NOW,
        };
        let seeded = held.clone();
        next.command(&p, 0, &cmd, move || Some(seeded), NOW)
            .unwrap();
        let row = rows(&next.judge(&p, &platform(&p), NOW, 30_000))[0].clone();
        assert_eq!(row.report.state, State::Blocked);
        assert_eq!(row.updated_ms, ahead + 1);
    }

    /// A signed command captured long ago and written to the topic again
    /// (or one stamped by a clock far ahead) is not applied, even to a
    /// campaign that holds no memory of it.
    #[test]
    fn an_old_or_far_future_command_is_not_applied() {
        let p = policy();
        let cmd = |at_ms| OverrideCommand {
            id: format!("cmd-{at_ms}"),
            campaign: "c".into(),
            action: OverrideAction::ForceAllow,
            by: "ana".into(),
            reason: "checked".into(),
            at_ms,
        };
        let mut o = Owner::new();
        let month_ago = NOW - 30 * 86_400_000;
        let ahead = NOW + p.max_future_ms + 1;
        for at in [month_ago, NOW - replay_span_ms(&p) - 1, ahead] {
            assert_eq!(o.command(&p, 0, &cmd(at), || None, NOW), Err(Skip::Expired));
        }
        assert_eq!(o.len(), 0, "no campaign made for a refused command");
        // At the edge of the replay span: still applied (a takeover replays
        // this far back and must see commands its predecessor missed).
        let edge = NOW - replay_span_ms(&p);
        assert_eq!(o.command(&p, 0, &cmd(edge), || None, NOW), Ok(()));
    }

    /// A delta for a bucket far ahead of now (a hostile record, a clock
    /// far ahead) must not move the window past every real count.
    #[test]
    fn buckets_ahead_of_the_future_allowance_are_skipped_and_the_rest_counted() {
        let p = policy();
        let mut o = Owner::new();
        let mut hostile = delta(&p, "c", 400, 300, 300);
        let far = NOW.div_euclid(p.bucket_ms) + 10_000;
        hostile.buckets[0].0 = far;
        let real = delta(&p, "c", 400, 300, 300);
        hostile.buckets.push(real.buckets[0].clone());
        assert_eq!(o.merge(&p, 0, &hostile, || None, NOW), Err(Skip::Future));
        o.merge(&p, 0, &real, || None, NOW).unwrap();
        let row = rows(&o.judge(&p, &platform(&p), NOW, 30_000))[0].clone();
        assert_eq!(
            row.report.dimensions[0].considered, 1600,
            "both real buckets counted, the one far ahead not"
        );
        let mut platform_delta = delta(&p, PLATFORM_KEY, 10, 300, 300);
        platform_delta.buckets[0].0 = i64::MAX;
        assert_eq!(
            o.merge(&p, 0, &platform_delta, || None, NOW),
            Err(Skip::Future)
        );
    }

    #[test]
    fn a_policy_with_other_dimensions_resets_the_windows_not_the_states() {
        let p = policy();
        let mut o = Owner::new();
        o.merge(&p, 0, &delta(&p, "sk", 1500, 100, 600), || None, NOW)
            .unwrap();
        assert_eq!(
            rows(&o.judge(&p, &platform(&p), NOW, 30_000))[0]
                .report
                .state,
            State::Flagged
        );
        let fewer = CompiledPolicy::from_toml(
            &include_str!("../../config/policy.toml").replace("\"55-64\", \"65+\"", "\"55+\""),
        )
        .unwrap();
        assert_ne!(fewer.total_groups, p.total_groups);
        o.merge(
            &fewer,
            0,
            &delta(&fewer, "sk", 10, 100, 600),
            || None,
            NOW + 1,
        )
        .unwrap();
        let out = o.judge(&fewer, &platform(&fewer), NOW + 30_001, 30_000);
        let r = rows(&out)[0];
        assert_eq!(
            r.report.dimensions[0].considered, 20,
            "a fresh window of the new shape"
        );
        assert_eq!(r.report.measured_state, State::Flagged, "the state stays");
    }

    /// A policy that keeps the groups but bands the numbers otherwise
    /// starts fresh windows too: counts made under the old bands are not
    /// judged as the new groups. The same bands keep them.
    #[test]
    fn a_policy_with_other_bands_resets_the_windows() {
        let yob = "[[fairness.dimensions]]\nname = \"yob\"\npointer = \"/user/yob\"\ngroups = [\"young\", \"old\"]\nbands = [{ group = \"young\", min = 0, max = 1990 }, { group = \"old\", min = 1991, max = 3000 }]\n\n[fairness.limits.default]";
        let banded = |edit: &dyn Fn(&str) -> String| {
            CompiledPolicy::from_toml(&include_str!("../../config/policy.toml").replacen(
                "[fairness.limits.default]",
                &edit(yob),
                1,
            ))
            .unwrap()
        };
        let p = banded(&|y| y.to_string());
        for (what, next, kept) in [
            ("same", banded(&|y| y.to_string()), true),
            (
                "other cut",
                banded(&|y| y.replace("1990", "1980").replace("1991", "1981")),
                false,
            ),
            (
                "a transform (bands in ages)",
                banded(&|y| {
                    y.replace("groups", "transform = \"age_from_year\"\ngroups")
                        .replace("1990", "34")
                        .replace("1991", "35")
                        .replace("3000", "130")
                }),
                false,
            ),
        ] {
            let mut o = Owner::new();
            o.merge(&p, 0, &delta(&p, "c", 100, 300, 300), || None, NOW)
                .unwrap();
            o.merge(&next, 0, &delta(&next, "c", 10, 300, 300), || None, NOW + 1)
                .unwrap();
            let out = o.judge(&next, &platform(&next), NOW + 1, 30_000);
            let want = if kept { 220 } else { 20 };
            assert_eq!(
                rows(&out)[0].report.dimensions[0].considered,
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn deltas_of_another_policy_are_skipped_and_idle_campaigns_forgotten() {
        let p = policy();
        let mut o = Owner::new();
        let mut d = delta(&p, "c", 10, 300, 300);
        d.groups = 3;
        assert_eq!(o.merge(&p, 0, &d, || None, NOW), Err(Skip::Groups));
        o.merge(&p, 0, &delta(&p, "c", 10, 300, 300), || None, NOW)
            .unwrap();
        o.judge(&p, &platform(&p), NOW, 30_000);
        let out = o.judge(&p, &platform(&p), NOW + p.idle_evict_ms + 1, 30_000);
        assert!(matches!(&out[..], [Out::Gone(id)] if id == "c"), "{out:?}");
        assert_eq!((o.len(), o.evicted()), (0, 1));
        // The platform's deltas make the platform row.
        o.merge(&p, 2, &delta(&p, PLATFORM_KEY, 10, 300, 300), || None, NOW)
            .unwrap();
        let out = o.judge(&p, &platform(&p), NOW, 30_000);
        assert!(
            matches!(&out[..], [Out::Platform(r)] if r.totals[0] == [10, 3]),
            "{out:?}"
        );
        o.revoke(&[2]);
        assert!(
            o.judge(&p, &platform(&p), NOW, 30_000).is_empty(),
            "revoked with its partition"
        );
    }
}
