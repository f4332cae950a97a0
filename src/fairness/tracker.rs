//! The campaign store: one rolling [`Window`] and one [`StateMachine`] per
//! campaign, plus a platform-wide window that provides the default baseline.
//!
//! Safe to share between threads: campaigns live in a `DashMap` (sharded
//! locks), the platform window behind one short mutex. The clock is an
//! argument (`now_ms`), never read here.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use dashmap::mapref::one::RefMut;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::fairness::alert::{self, AlertEvent, AlertKind, Context, OverrideInfo, WindowInfo};
use crate::fairness::assess::{self, Assessment, DimensionNumbers, Finding, Level};
use crate::fairness::campaign::{
    Cause, OverrideAction, OverrideRecord, State, StateMachine, Transition,
};
use crate::fairness::exposure::{Placement, Window};
use crate::fairness::measures::Counts;
use crate::policy::{Category, CompiledPolicy, MAX_TOTAL_GROUPS};

/// Which campaigns a listing asks for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only campaigns in this effective state.
    pub state: Option<State>,
    /// Only campaigns whose id starts with this.
    pub prefix: Option<String>,
}

impl Filter {
    pub fn matches(&self, id: &str, state: State) -> bool {
        self.state.is_none_or(|s| s == state)
            && self.prefix.as_deref().is_none_or(|p| id.starts_with(p))
    }
}

/// One page of a listing.
#[derive(Debug, Serialize)]
pub struct Page {
    /// Campaigns matching the filter, on every page.
    pub total: usize,
    /// This page's campaigns, by id.
    pub campaigns: Vec<CampaignReport>,
    /// The cursor of the next page (`after=`), when there is one.
    pub next: Option<String>,
}

/// Where a decision's time put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// Counted in the window.
    Counted,
    /// Older than the window: not counted.
    Late,
    /// Too far ahead of the clock: not counted.
    Early,
}

impl Timing {
    pub fn as_str(self) -> &'static str {
        match self {
            Timing::Counted => "counted",
            Timing::Late => "late",
            Timing::Early => "early",
        }
    }
}

/// The longest `by` and `reason` of an override, in characters.
pub const MAX_WHO_OR_WHY_CHARS: usize = 512;

/// What recording one decision found.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The state that decides routing (overrides included).
    pub state: State,
    pub timing: Timing,
    /// The finding behind a flagged or blocked state.
    pub finding: Option<Finding>,
    pub acknowledged: bool,
    /// An alert, when this decision moved the campaign's state.
    pub alert: Option<AlertEvent>,
}

#[derive(Debug)]
struct Campaign {
    window: Window,
    machine: StateMachine,
    category: Category,
    first_seen_ms: i64,
    last_seen_ms: i64,
    /// Decisions counted since the last assessment.
    unassessed: u32,
}

/// A campaign is re-judged every this many decisions (and at its first):
/// one decision moves the numbers by little, and judging is most of the
/// tracker's cost. A transition is at most this many decisions late.
const ASSESS_EVERY: u32 = 8;

impl Campaign {
    /// A campaign first seen at `seen_ms`, with an empty window and state ok
    /// since `now_ms`, judged at its first decision.
    fn new(policy: &CompiledPolicy, category: Category, seen_ms: i64, now_ms: i64) -> Campaign {
        Campaign {
            window: Window::new(policy.buckets, policy.total_groups),
            machine: StateMachine::new(now_ms),
            category,
            first_seen_ms: seen_ms,
            last_seen_ms: seen_ms,
            unassessed: ASSESS_EVERY,
        }
    }

    /// The campaign step of [`Tracker::record`]: count the decision in the
    /// campaign's window, moved up to the platform's `head`. A window of
    /// another shape than the decision's policy (made by a judge thread
    /// still holding the policy a reload replaced) is rebuilt first, as
    /// [`Tracker::reset_windows`] would have: the counts always match the
    /// groups they are judged as.
    fn count(&mut self, d: &Seen<'_>, timing: Timing, head: Option<i64>) {
        fit(&mut self.window, d.policy);
        self.category = d.category;
        if timing != Timing::Early {
            self.last_seen_ms = self.last_seen_ms.max(d.ts_ms);
        }
        if let Some(h) = head {
            self.window.advance(h);
        }
        if timing == Timing::Counted {
            self.window.add(d.bucket, d.groups, d.selected);
        }
    }

    /// The assessment step of [`Tracker::record`]: every [`ASSESS_EVERY`]
    /// decisions, judge the campaign against the platform and step its state
    /// machine (with an alert on a transition); in between, report the state
    /// as it stands.
    fn judge(&mut self, d: &Seen<'_>, timing: Timing, platform: &[Counts]) -> Recorded {
        self.unassessed += 1;
        if self.unassessed < ASSESS_EVERY {
            let state = self.machine.effective();
            let finding = self.machine.last_assessment.and_then(|a| a.finding);
            return Recorded {
                state,
                timing,
                finding: if state == State::Ok { None } else { finding },
                acknowledged: self.machine.acknowledged.is_some(),
                alert: None,
            };
        }
        self.unassessed = 0;
        let (policy, campaign) = (d.policy, d.campaign);
        let limits = policy.limits_for(d.category);
        let a = assess::assess(policy, limits, campaign, self.window.totals(), platform);
        let before = self.machine.effective();
        let alert = self
            .machine
            .step(&a, limits, policy.mode, d.now_ms)
            .map(|t| self.transition_alert(d, &a, platform, before, t));
        let state = self.machine.effective();
        Recorded {
            state,
            timing,
            finding: if state == State::Ok { None } else { a.finding },
            acknowledged: self.machine.acknowledged.is_some(),
            alert,
        }
    }

    /// The alert for a transition of the state machine, just stepped from `before`.
    fn transition_alert(
        &self,
        d: &Seen<'_>,
        a: &Assessment,
        platform: &[Counts],
        before: State,
        t: Transition,
    ) -> AlertEvent {
        let (policy, campaign, category) = (d.policy, d.campaign, d.category);
        let numbers = assess::detail(policy, campaign, self.window.totals(), platform);
        let ctx = context(policy, campaign, category, a.finding.as_ref(), &numbers);
        let message = alert::transition_message(&ctx, t.from, t.to, t.cause);
        alert_event(
            policy,
            campaign,
            category,
            a.finding,
            numbers,
            self.window.head(),
            d.now_ms,
            AlertParts {
                kind: AlertKind::Transition,
                old_state: before,
                new_state: self.machine.effective(),
                measured_state: self.machine.state,
                cause: Some(t.cause),
                since_ms: t.prev_since_ms,
                override_: None,
                message,
            },
        )
    }
}

/// Rebuild `w`, empty, when its shape is not `policy`'s (one length
/// compare on the hot path).
fn fit(w: &mut Window, policy: &CompiledPolicy) {
    if !w.fits(policy.buckets, policy.total_groups) {
        *w = Window::new(policy.buckets, policy.total_groups);
    }
}

/// One decision as [`Tracker::record`] passes it through its steps.
struct Seen<'a> {
    policy: &'a CompiledPolicy,
    campaign: &'a str,
    category: Category,
    ts_ms: i64,
    /// `ts_ms`'s bucket.
    bucket: i64,
    groups: &'a [usize],
    selected: bool,
    now_ms: i64,
}

/// What the platform step of [`Tracker::record`] hands on, the mutex released.
struct PlatformSeen {
    timing: Timing,
    /// The platform window's newest bucket.
    head: Option<i64>,
    /// The platform window's totals (the first `total_groups` are used).
    totals: [Counts; MAX_TOTAL_GROUPS],
    /// A newer head than any swept before: sweep idle campaigns up to it.
    sweep: Option<i64>,
}

#[derive(Debug)]
struct Platform {
    window: Window,
    swept_bucket: i64,
}

/// Counters of what the tracker saw (read by metrics).
#[derive(Debug, Default)]
pub struct TrackerCounters {
    pub late: AtomicU64,
    pub early: AtomicU64,
    pub evicted: AtomicU64,
}

/// All campaigns' windows and states.
///
/// Lock order. There are two kinds of lock, neither re-entrant: the platform
/// mutex (`platform`) and the shard locks of the `campaigns` `DashMap` (one
/// `RwLock` per shard: `get`, `get_mut` and `entry` take one shard's and hold
/// it in the `Ref`/`RefMut` they return; `iter` and `iter_mut` take one shard's
/// at a time; `len` and `retain` take every shard's in turn).
///
/// - The platform mutex may be held while shard locks are taken
///   (`reset_windows` does), never the other way round: nothing takes the
///   platform mutex while it holds a campaign entry or iterates `campaigns`.
/// - A thread holds at most one campaign entry at a time and, while it does,
///   calls nothing else on `campaigns` — in particular not `sweep` (`len`,
///   `retain`), which would wait for the entry's own shard, held by the same
///   thread: a deadlock. `record` drops its entry before it sweeps.
/// - What runs under either lock (assessment, alert messages) takes no lock
///   of the tracker's.
#[derive(Debug)]
pub struct Tracker {
    campaigns: DashMap<Box<str>, Campaign>,
    platform: Mutex<Platform>,
    pub counters: TrackerCounters,
}

/// A campaign's state and numbers, as reported (check `--report`, HTTP API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignReport {
    pub campaign: String,
    pub category: std::borrow::Cow<'static, str>,
    pub state: State,
    pub measured_state: State,
    pub since_ms: i64,
    pub level: Option<Level>,
    pub finding: Option<Finding>,
    #[serde(rename = "override")]
    pub override_: Option<OverrideRecord>,
    pub acknowledged: Option<OverrideRecord>,
    pub window: WindowInfo,
    /// The window is not yet fully covered by this instance's own counts (new
    /// campaign, restart, or partition moved here): fewer numbers than the window length.
    pub window_complete: bool,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub dimensions: Vec<DimensionNumbers>,
}

/// Why an override was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OverrideError {
    #[error("campaign id must be 1 to 256 characters")]
    BadCampaign,
    #[error("`by` and `reason` must be non-empty and at most 512 characters")]
    MissingWhoOrWhy,
    /// The override could not be handed to the campaign's owner.
    #[error("override not applied: {0}")]
    Unavailable(String),
}

/// An override's campaign id, and its `by` and `reason` trimmed, checked.
pub fn check_override<'a>(
    id: &str,
    by: &'a str,
    reason: &'a str,
) -> Result<(&'a str, &'a str), OverrideError> {
    if id.is_empty() || id.len() > 256 {
        return Err(OverrideError::BadCampaign);
    }
    let (by, reason) = (by.trim(), reason.trim());
    // Limits count characters, not bytes: a reason in Japanese or
    // Greek gets as many characters as one in English.
    let too_long = |s: &str| s.chars().count() > MAX_WHO_OR_WHY_CHARS;
    if by.is_empty() || reason.is_empty() || too_long(by) || too_long(reason) {
        return Err(OverrideError::MissingWhoOrWhy);
    }
    Ok((by, reason))
}

/// Where campaign reports come from: this instance's own tracker (`check`,
/// a single instance with `state.shared = false`) or the campaign table
/// every instance reads ([`crate::fairness::table`]).
pub trait CampaignStore: Send + Sync {
    /// One campaign's report.
    fn report(&self, policy: &CompiledPolicy, id: &str) -> Option<CampaignReport>;
    /// One page of reports, by id, after the cursor `after`; bounded
    /// whatever the number of campaigns.
    fn page(
        &self,
        policy: &CompiledPolicy,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Page;
    /// Number of campaigns per effective state.
    fn state_counts(&self) -> [(State, usize); 3];
    /// Ids of at most `limit` campaigns not in state ok, worst first, then by id.
    fn non_ok(&self, limit: usize) -> Vec<(String, State)>;
    /// Campaigns forgotten so far.
    fn evicted(&self) -> u64;
    /// Campaigns held.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CampaignStore for Tracker {
    fn report(&self, policy: &CompiledPolicy, id: &str) -> Option<CampaignReport> {
        Tracker::report(self, policy, id)
    }
    fn page(
        &self,
        policy: &CompiledPolicy,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Page {
        Tracker::page(self, policy, filter, after, limit)
    }
    fn state_counts(&self) -> [(State, usize); 3] {
        Tracker::state_counts(self)
    }
    fn non_ok(&self, limit: usize) -> Vec<(String, State)> {
        Tracker::non_ok(self, limit)
    }
    fn evicted(&self) -> u64 {
        self.counters.evicted.load(Ordering::Relaxed)
    }
    fn len(&self) -> usize {
        Tracker::len(self)
    }
}

/// What differs between a transition alert and an override alert.
pub struct AlertParts {
    pub kind: AlertKind,
    pub old_state: State,
    pub new_state: State,
    pub measured_state: State,
    pub cause: Option<Cause>,
    pub since_ms: i64,
    pub override_: Option<OverrideInfo>,
    pub message: String,
}

/// An alert event with the finding and numbers behind it.
#[allow(clippy::too_many_arguments)]
pub fn alert_event(
    policy: &CompiledPolicy,
    campaign: &str,
    category: Category,
    finding: Option<Finding>,
    numbers: Vec<DimensionNumbers>,
    head: Option<i64>,
    at_ms: i64,
    p: AlertParts,
) -> AlertEvent {
    AlertEvent {
        kind: p.kind,
        campaign: campaign.to_string(),
        category: category.as_str(),
        old_state: p.old_state,
        new_state: p.new_state,
        measured_state: p.measured_state,
        cause: p.cause,
        measure: finding.map(|f| f.measure),
        dimension: finding.map(|f| policy.dimension_name(f.dimension).to_string()),
        value: finding.map(|f| f.value),
        bound: finding.map(|f| f.bound),
        threshold: finding.map(|f| f.threshold),
        confidence: policy.confidence,
        numbers,
        window: window_info(policy, head),
        policy_version: policy.version.clone(),
        mode: policy.mode,
        at_ms,
        since_ms: p.since_ms,
        override_: p.override_,
        message: p.message,
    }
}

/// What an alert's message is written from.
pub fn context<'a>(
    policy: &'a CompiledPolicy,
    campaign: &'a str,
    category: Category,
    finding: Option<&'a Finding>,
    numbers: &'a [DimensionNumbers],
) -> Context<'a> {
    Context {
        campaign,
        category,
        finding,
        numbers,
        limits: policy.limits_for(category),
        mode: policy.mode,
        confidence: policy.confidence,
        window_secs: policy.window_ms / 1000,
    }
}

/// The window ending with bucket `head` (saturating at the ends of `i64`).
pub fn window_info(policy: &CompiledPolicy, head: Option<i64>) -> WindowInfo {
    let end = head.map_or(0, |h| bucket_end_ms(policy, h));
    WindowInfo {
        start_ms: end.saturating_sub(policy.window_ms),
        end_ms: end,
        secs: policy.window_ms / 1000,
    }
}

/// The first millisecond after bucket `b` (saturating at the ends of `i64`).
fn bucket_end_ms(policy: &CompiledPolicy, b: i64) -> i64 {
    b.saturating_add(1).saturating_mul(policy.bucket_ms)
}

/// A campaign's report from its state machine and window (first and last
/// seen, epoch ms), under `policy`, against the `platform` mix.
pub fn campaign_report(
    policy: &CompiledPolicy,
    id: &str,
    category: Category,
    machine: &StateMachine,
    window: &Window,
    (first_seen_ms, last_seen_ms): (i64, i64),
    platform: &[Counts],
) -> CampaignReport {
    let info = window_info(policy, window.head());
    CampaignReport {
        campaign: id.to_string(),
        category: category.as_str().into(),
        state: machine.effective(),
        measured_state: machine.state,
        since_ms: machine.since_ms,
        level: machine.last_assessment.map(|a| a.level),
        finding: machine.last_assessment.and_then(|a| a.finding),
        override_: machine.override_.clone(),
        acknowledged: machine.acknowledged.clone(),
        window: info,
        window_complete: first_seen_ms <= info.start_ms,
        first_seen_ms,
        last_seen_ms,
        dimensions: assess::detail(policy, id, window.totals(), platform),
    }
}

/// One page of ids, gathered whatever the number of campaigns: every
/// campaign is offered once, and only the `limit` smallest matching ids after
/// the cursor are kept (a heap of at most `limit`).
pub struct Pager<'a> {
    filter: &'a Filter,
    after: Option<&'a str>,
    limit: usize,
    smallest: BinaryHeap<Box<str>>,
    total: usize,
    remaining: usize,
}

impl<'a> Pager<'a> {
    pub fn new(filter: &'a Filter, after: Option<&'a str>, limit: usize) -> Pager<'a> {
        let limit = limit.max(1);
        Pager {
            filter,
            after,
            limit,
            smallest: BinaryHeap::with_capacity(limit + 1),
            total: 0,
            remaining: 0,
        }
    }

    pub fn offer(&mut self, id: &str, state: State) {
        if !self.filter.matches(id, state) {
            return;
        }
        self.total += 1;
        if self.after.is_some_and(|a| id <= a) {
            return;
        }
        self.remaining += 1;
        keep_smallest(
            &mut self.smallest,
            self.limit,
            |top| id < &**top,
            || id.into(),
        );
    }

    /// The matching total, the page's ids in order, and the next cursor.
    pub fn finish(self) -> (usize, Vec<Box<str>>, Option<String>) {
        let ids = self.smallest.into_sorted_vec();
        let next = (self.remaining > ids.len())
            .then(|| ids.last().map(|id| id.to_string()))
            .flatten();
        (self.total, ids, next)
    }
}

/// At most `limit` campaigns not in state ok, worst first, then by id;
/// bounded like [`Pager`].
pub struct WorstFirst {
    limit: usize,
    // Ordered so that the heap's top is the entry to drop first: the least
    // severe state, then the largest id.
    kept: BinaryHeap<(std::cmp::Reverse<State>, Box<str>)>,
}

impl WorstFirst {
    pub fn new(limit: usize) -> WorstFirst {
        WorstFirst {
            limit,
            kept: BinaryHeap::new(),
        }
    }

    pub fn offer(&mut self, id: &str, state: State) {
        if state == State::Ok || self.limit == 0 {
            return;
        }
        let rank = std::cmp::Reverse(state);
        keep_smallest(
            &mut self.kept,
            self.limit,
            |top| (rank, id) < (top.0, &*top.1),
            || (rank, id.into()),
        );
    }

    pub fn finish(self) -> Vec<(String, State)> {
        self.kept
            .into_sorted_vec()
            .into_iter()
            .map(|(state, id)| (id.into(), state.0))
            .collect()
    }
}

/// Keep an item among the `limit` smallest held in `heap` (a max-heap, so
/// its top is the one to drop first): `beats_top` says whether the item is
/// smaller than the top; `make` builds it, only when it is kept.
pub fn keep_smallest<T: Ord>(
    heap: &mut BinaryHeap<T>,
    limit: usize,
    beats_top: impl FnOnce(&T) -> bool,
    make: impl FnOnce() -> T,
) {
    if heap.len() < limit {
        heap.push(make());
    } else if heap.peek().is_some_and(beats_top) {
        heap.pop();
        heap.push(make());
    }
}

impl Tracker {
    pub fn new(policy: &CompiledPolicy) -> Tracker {
        Tracker {
            campaigns: DashMap::new(),
            platform: Mutex::new(Platform {
                window: Window::new(policy.buckets, policy.total_groups),
                swept_bucket: i64::MIN,
            }),
            counters: TrackerCounters::default(),
        }
    }

    /// Number of campaigns held.
    pub fn len(&self) -> usize {
        self.campaigns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }

    /// A new policy with different dimensions or window: every window starts
    /// afresh (states and overrides are kept).
    pub fn reset_windows(&self, policy: &CompiledPolicy) {
        let mut p = self.platform.lock();
        p.window = Window::new(policy.buckets, policy.total_groups);
        for mut c in self.campaigns.iter_mut() {
            c.window = Window::new(policy.buckets, policy.total_groups);
        }
    }

    /// Count one decision and re-judge its campaign.
    ///
    /// `policy` may be one a reload has just replaced (a judge thread loads
    /// the live policy before [`Tracker::reset_windows`] and records after
    /// it): the platform's and the campaign's windows are rebuilt to the
    /// shape of the policy they are recorded under whenever theirs differs,
    /// so no group index of either policy falls outside its window. The
    /// few decisions of such a race are the only ones lost; reports, which
    /// judge nothing, read whatever shape they find.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        policy: &CompiledPolicy,
        campaign: &str,
        category: Category,
        ts_ms: i64,
        groups: &[usize],
        selected: bool,
        now_ms: i64,
    ) -> Recorded {
        let d = Seen {
            policy,
            campaign,
            category,
            ts_ms,
            bucket: ts_ms.div_euclid(policy.bucket_ms),
            groups,
            selected,
            now_ms,
        };
        let early = ts_ms > now_ms.saturating_add(policy.max_future_ms);
        let p = self.count_in_platform(&d, early);
        match p.timing {
            Timing::Late => self.counters.late.fetch_add(1, Ordering::Relaxed),
            Timing::Early => self.counters.early.fetch_add(1, Ordering::Relaxed),
            Timing::Counted => 0,
        };
        let mut entry = self.campaign_entry(&d);
        entry.count(&d, p.timing, p.head);
        let rec = entry.judge(&d, p.timing, &p.totals[..policy.total_groups]);
        // Lock order: `entry` holds its shard's write lock and `sweep` takes
        // every shard's (`len`, `retain`); the locks are not re-entrant, so
        // the entry is dropped first or this thread waits on itself forever.
        drop(entry);
        if let Some(h) = p.sweep {
            self.sweep(policy, h);
        }
        rec
    }

    /// The platform step of [`Tracker::record`]: count the decision in the
    /// platform window (unless it is early) and copy out what the campaign
    /// step needs. Holds the platform mutex, and only it, for the step.
    fn count_in_platform(&self, d: &Seen<'_>, early: bool) -> PlatformSeen {
        let mut timing = if early {
            Timing::Early
        } else {
            Timing::Counted
        };
        let mut totals = [Counts::default(); MAX_TOTAL_GROUPS];
        let mut sweep = None;
        let mut p = self.platform.lock();
        fit(&mut p.window, d.policy);
        if timing == Timing::Counted
            && p.window.add(d.bucket, d.groups, d.selected) == Placement::Late
        {
            timing = Timing::Late;
        }
        let head = p.window.head();
        let t = p.window.totals();
        totals[..t.len()].copy_from_slice(t);
        if let Some(h) = head
            && h > p.swept_bucket
        {
            p.swept_bucket = h;
            sweep = Some(h);
        }
        PlatformSeen {
            timing,
            head,
            totals,
            sweep,
        }
    }

    /// The decision's campaign, made when first seen (seen no later than the
    /// clock allows: an early decision's `ts` is not believed). The returned
    /// entry holds its shard's write lock: see the lock order on [`Tracker`].
    fn campaign_entry(&self, d: &Seen<'_>) -> RefMut<'_, Box<str>, Campaign> {
        match self.campaigns.get_mut(d.campaign) {
            Some(e) => e,
            None => {
                let seen = d.ts_ms.min(d.now_ms.saturating_add(d.policy.max_future_ms));
                self.campaigns
                    .entry(d.campaign.into())
                    .or_insert_with(|| Campaign::new(d.policy, d.category, seen, d.now_ms))
            }
        }
    }

    /// Forget campaigns in state ok, without override, idle past `idle_evict_secs`.
    fn sweep(&self, policy: &CompiledPolicy, head_bucket: i64) {
        let now_event = bucket_end_ms(policy, head_bucket);
        let before = self.campaigns.len();
        self.campaigns.retain(|_, c| {
            c.machine.state != State::Ok
                || c.machine.override_.is_some()
                || now_event.saturating_sub(c.last_seen_ms) < policy.idle_evict_ms
        });
        let gone = before.saturating_sub(self.campaigns.len());
        if gone > 0 {
            self.counters
                .evicted
                .fetch_add(gone as u64, Ordering::Relaxed);
        }
    }

    fn platform_totals(&self, policy: &CompiledPolicy) -> (Vec<Counts>, Option<i64>) {
        let p = self.platform.lock();
        let mut t = p.window.totals().to_vec();
        t.resize(policy.total_groups, Counts::default());
        (t, p.window.head())
    }

    fn report_of(
        &self,
        policy: &CompiledPolicy,
        id: &str,
        c: &mut Campaign,
        platform: &[Counts],
        head: Option<i64>,
    ) -> CampaignReport {
        if let Some(h) = head {
            c.window.advance(h);
        }
        let seen = (c.first_seen_ms, c.last_seen_ms);
        campaign_report(
            policy, id, c.category, &c.machine, &c.window, seen, platform,
        )
    }

    /// One campaign's report.
    pub fn report(&self, policy: &CompiledPolicy, id: &str) -> Option<CampaignReport> {
        let (platform, head) = self.platform_totals(policy);
        let mut c = self.campaigns.get_mut(id)?;
        Some(self.report_of(policy, id, &mut c, &platform, head))
    }

    /// All campaigns' reports, optionally only those in `state`, sorted by id.
    pub fn reports(&self, policy: &CompiledPolicy, state: Option<State>) -> Vec<CampaignReport> {
        let (platform, head) = self.platform_totals(policy);
        let mut out: Vec<CampaignReport> = self
            .campaigns
            .iter_mut()
            .filter(|c| state.is_none_or(|s| c.machine.effective() == s))
            .map(|mut c| {
                let id = c.key().to_string();
                self.report_of(policy, &id, &mut c, &platform, head)
            })
            .collect();
        out.sort_by(|a, b| a.campaign.cmp(&b.campaign));
        out
    }

    /// One page of campaign reports, by id, after the cursor `after`.
    ///
    /// Bounded whatever the number of campaigns: the entries are walked once
    /// under each shard's read lock in turn, keeping only the `limit` smallest
    /// matching ids (a heap of at most `limit` ids); the reports are then
    /// built one campaign at a time, each under its own entry's lock only.
    /// Nothing is serialised while a lock is held.
    pub fn page(
        &self,
        policy: &CompiledPolicy,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Page {
        let mut pager = Pager::new(filter, after, limit);
        for c in self.campaigns.iter() {
            pager.offer(c.key(), c.machine.effective());
        }
        let (total, ids, next) = pager.finish();
        let (platform, head) = self.platform_totals(policy);
        let campaigns = ids
            .iter()
            .filter_map(|id| {
                let mut c = self.campaigns.get_mut(&**id)?;
                Some(self.report_of(policy, id, &mut c, &platform, head))
            })
            .collect();
        Page {
            total,
            campaigns,
            next,
        }
    }

    /// Number of campaigns per effective state.
    pub fn state_counts(&self) -> [(State, usize); 3] {
        let mut n = [0usize; 3];
        for c in self.campaigns.iter() {
            n[c.machine.effective() as usize] += 1;
        }
        [
            (State::Ok, n[0]),
            (State::Flagged, n[1]),
            (State::Blocked, n[2]),
        ]
    }

    /// Ids of at most `limit` campaigns not in state ok, worst first, then by
    /// id (for capped per-campaign metrics). Bounded like [`Tracker::page`].
    pub fn non_ok(&self, limit: usize) -> Vec<(String, State)> {
        let mut worst = WorstFirst::new(limit);
        for c in self.campaigns.iter() {
            worst.offer(c.key(), c.machine.effective());
        }
        worst.finish()
    }

    /// Apply a campaign manager's override; always yields one audit alert.
    pub fn apply_override(
        &self,
        policy: &CompiledPolicy,
        id: &str,
        action: OverrideAction,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<AlertEvent, OverrideError> {
        let (by, reason) = check_override(id, by, reason)?;
        let (platform, head) = self.platform_totals(policy);
        let mut c = self
            .campaigns
            .entry(id.into())
            .or_insert_with(|| Campaign::new(policy, Category::Default, now_ms, now_ms));
        if let Some(h) = head {
            c.window.advance(h);
        }
        let since = c.machine.since_ms;
        let (before, after) = c.machine.apply_override(OverrideRecord {
            action,
            by: by.to_string(),
            reason: reason.to_string(),
            at_ms: now_ms,
        });
        let numbers = assess::detail(policy, id, c.window.totals(), &platform);
        let finding = c
            .machine
            .last_assessment
            .and_then(|a: Assessment| a.finding);
        let info = OverrideInfo {
            action,
            by: by.to_string(),
            reason: reason.to_string(),
        };
        let ctx = context(policy, id, c.category, finding.as_ref(), &numbers);
        let message = alert::override_message(&ctx, &info, before, after);
        Ok(alert_event(
            policy,
            id,
            c.category,
            finding,
            numbers,
            c.window.head(),
            now_ms,
            AlertParts {
                kind: AlertKind::Override,
                old_state: before,
                new_state: after,
                measured_state: c.machine.state,
                cause: None,
                since_ms: since,
                override_: Some(info),
                message,
            },
        ))
    }
}
