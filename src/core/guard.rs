//! The guard: the pipeline order in one place.
//!
//! ```text
//! bytes ─ parse/validate ─┬─ consent ─ exposure+state ─ strip ─ route ─ serialize
//!                         └─ (bad input) ─────────────────────────── dead letter
//! ```
//!
//! [`Guard::judge`] turns one input record into exactly one [`Judgement`]:
//! a route (output, blocked, dead letter), a key, headers and a payload, plus
//! an alert when the decision moved its campaign's state. It does no I/O and
//! reads no clock; the Kafka loop, the offline `check` and the benches all
//! call it the same way.

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::core::consent::{ConsentEvaluator, Outcome, Verdict};
use crate::core::decision::{self, Decision, Root};
use crate::core::edit::Node;
use crate::core::rewrite::{Plan, with_scratch};
use crate::core::strip::{self, Stripped};
use crate::core::view::{View, lookup};
use crate::fairness::alert::AlertEvent;
use crate::fairness::assess::Finding;
use crate::fairness::campaign::{OverrideAction, State};
use crate::fairness::event_time::EventClock;
use crate::fairness::table::SharedCampaigns;
use crate::fairness::tracker::{
    CampaignReport, CampaignStore, Filter, OverrideError, Page, Recorded, Timing, Tracker,
};
use crate::policy::{BandTransform, Category, CompiledPolicy, MAX_TOTAL_GROUPS};

/// Header names on published records.
pub mod headers {
    /// personalised | contextual | withheld
    pub const CONSENT: &str = "fairgate-consent";
    /// Reason code of the consent result (e.g. `tcf_vendor`, `usp_opt_out`),
    /// and after a colon the GPP section that gave it (`gpp_notice:7`).
    pub const CONSENT_REASON: &str = "fairgate-consent-reason";
    /// Comma-separated JSON pointers removed from this record (never values).
    pub const REMOVED: &str = "fairgate-removed";
    /// Comma-separated JSON pointers coarsened in this record.
    pub const COARSENED: &str = "fairgate-coarsened";
    /// Number of sensitive segments removed.
    pub const SEGMENTS_REMOVED: &str = "fairgate-segments-removed";
    /// Version of the policy that judged the record.
    pub const POLICY_VERSION: &str = "fairgate-policy-version";
    /// ok | flagged | blocked
    pub const CAMPAIGN_STATE: &str = "fairgate-campaign-state";
    /// On flagged and blocked campaigns: the measure behind the state.
    pub const FLAG: &str = "fairgate-flag";
    /// Why a record went to blocked or dead letter.
    pub const REASON: &str = "fairgate-reason";
    /// The decision id (not personal: it names the decision, not the user).
    pub const DECISION_ID: &str = "fairgate-decision-id";
    /// late | early when the decision's `ts` put it outside the window.
    pub const TIMING: &str = "fairgate-timing";
    /// Dead letter: what was wrong, naming the field, never its value.
    pub const ERROR: &str = "fairgate-error";
    /// Dead letter: stable error kind.
    pub const ERROR_KIND: &str = "fairgate-error-kind";
}

/// Where a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Output,
    Blocked,
    DeadLetter,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Output, Route::Blocked, Route::DeadLetter];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Output => "output",
            Route::Blocked => "blocked",
            Route::DeadLetter => "dead_letter",
        }
    }
}

/// What the guard decided for one record, ready to publish.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub route: Route,
    /// Campaign id (dead letter: the original key).
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// Stripped decision JSON (dead letter: the original bytes).
    pub payload: Vec<u8>,
    pub alert: Option<AlertEvent>,
    /// Facts for metrics; never values.
    pub facts: Facts,
}

/// What happened to one record, for metrics and logs. Holds no input values.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `consented`, `campaign_blocked`, `consent_withheld`, error kind…
    pub reason: &'static str,
    pub consent: Option<Verdict>,
    /// Consent fields given differently in their OpenRTB 2.6 and 2.5 places.
    pub placements: decision::Placements,
    pub removed_always: usize,
    pub removed_personal: usize,
    /// Removed because the user is a child (`strip.when_child`).
    pub removed_child: usize,
    /// Removed because `device.lmt = 1` (`strip.when_lmt`).
    pub removed_lmt: usize,
    pub coarsened: usize,
    pub uncoarsenable: usize,
    pub segments: usize,
    pub timing: Option<Timing>,
    pub state: Option<State>,
    pub ts_ms: Option<i64>,
    pub policy_version: Arc<str>,
}

/// The current time for one call: the wall clock as read by the caller, or
/// event time for replaying recorded traffic: read from the decisions' own
/// `ts`, so that no outlier moves it far ([`crate::fairness::event_time`];
/// prime it with [`Guard::prime_event_time`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Now {
    At(i64),
    EventTime,
}

/// The live policy and what is built from it.
#[derive(Debug)]
pub struct Live {
    pub policy: CompiledPolicy,
    pub consent: ConsentEvaluator,
    pub version: Arc<str>,
    /// Stripping and writing in one walk, when the policy allows it
    /// ([`crate::core::rewrite`]); else the sequential passes.
    pub plan: Option<Plan>,
}

impl Live {
    /// Strip `doc` under this policy and `verdict`, writing the result to
    /// `out`: in one walk where the policy allows; otherwise the
    /// sequential passes edit a copy-on-write view. Untouched parts are
    /// written straight from the parsed document, or (in one walk, given
    /// `source`, the text `doc` was parsed from) copied from the text.
    pub fn strip_into(
        &self,
        d: &Decision<'_>,
        verdict: &Verdict,
        out: &mut Vec<u8>,
    ) -> Stripped<'_> {
        match (&self.plan, d.source()) {
            (Some(plan), Some(src)) => plan.write_text(&self.policy, src, verdict, out),
            (Some(plan), None) => plan.write(&self.policy, &d.document(), verdict, out),
            (None, _) => {
                let doc = d.document();
                let mut edited = Node::Doc(&doc);
                let stripped = strip::strip(&self.policy, &mut edited, verdict);
                edited.write(out);
                stripped
            }
        }
    }

    fn new(policy: CompiledPolicy) -> Live {
        Live {
            consent: ConsentEvaluator::new(&policy),
            version: policy.version.as_str().into(),
            plan: Plan::new(&policy),
            policy,
        }
    }
}

/// What a policy swap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swapped {
    /// Counted exposure carried over (same dimensions and window).
    pub kept_windows: bool,
}

/// The decision core. Cheap to share (`Arc<Guard>`); every method takes `&self`.
#[derive(Debug)]
pub struct Guard {
    live: ArcSwap<Live>,
    tracker: Tracker,
    /// Campaign state kept on Kafka (`state.shared`): decisions are counted
    /// into its counter and routed by its table; `tracker` is then unused.
    shared: Option<Arc<SharedCampaigns>>,
    event_time: parking_lot::Mutex<EventClock>,
    /// Held across a policy swap: two reloads at once (the file watcher and
    /// the admin call) would interleave their window resets and publishes.
    swapping: parking_lot::Mutex<()>,
}

fn flag_value(policy: &CompiledPolicy, f: Option<&Finding>, acknowledged: bool) -> String {
    use std::fmt::Write as _;
    let Some(f) = f else {
        return format!("override;acknowledged={acknowledged}");
    };
    // Built piece by piece: this header is written for every decision of a
    // flagged campaign.
    let dimension = policy.dimension_name(f.dimension);
    let mut out = String::with_capacity(96 + dimension.len());
    out.push_str("measure=");
    out.push_str(f.measure.as_str());
    out.push_str(";dimension=");
    out.push_str(dimension);
    out.push_str(";value=");
    push_fixed3(&mut out, f.value);
    out.push_str(";bound=");
    push_fixed3(&mut out, f.bound);
    let _ = write!(out, ";threshold={}", f.threshold);
    out.push_str(if acknowledged {
        ";acknowledged=true"
    } else {
        ";acknowledged=false"
    });
    out
}

/// `x` as `format!("{x:.3}")` writes it. Where scaling by 1,000 and
/// rounding could give another digit than the exact decimal rounding (a
/// negative, huge or non-finite value, or thousandths within a hair of a
/// tie), the formatter itself is called.
fn push_fixed3(out: &mut String, x: f64) {
    use std::fmt::Write as _;
    let m = x * 1000.0;
    if !(0.0..1e9).contains(&m) || x.is_sign_negative() || (m.fract() - 0.5).abs() < 1e-6 {
        let _ = write!(out, "{x:.3}");
        return;
    }
    let r = m.round() as u64;
    let mut buf = itoa::Buffer::new();
    out.push_str(buf.format(r / 1000));
    out.push('.');
    let frac = r % 1000;
    out.push(char::from(b'0' + (frac / 100) as u8));
    out.push(char::from(b'0' + (frac / 10 % 10) as u8));
    out.push(char::from(b'0' + (frac % 10) as u8));
}

impl Guard {
    pub fn new(policy: CompiledPolicy) -> Guard {
        let tracker = Tracker::new(&policy);
        Guard {
            live: ArcSwap::from_pointee(Live::new(policy)),
            tracker,
            shared: None,
            event_time: parking_lot::Mutex::new(EventClock::new()),
            swapping: parking_lot::Mutex::new(()),
        }
    }

    /// A guard whose campaign state is kept on Kafka: it counts into the
    /// shared counter and routes by the campaign table (fed elsewhere).
    pub fn with_shared_state(policy: CompiledPolicy) -> Guard {
        let shared = Arc::new(SharedCampaigns::new(&policy));
        Guard {
            shared: Some(shared),
            ..Guard::new(policy)
        }
    }

    /// The campaign state kept on Kafka, when it is.
    pub fn shared(&self) -> Option<&Arc<SharedCampaigns>> {
        self.shared.as_ref()
    }

    /// Where campaign reports come from: the table when state is shared,
    /// else this instance's tracker.
    pub fn store(&self) -> &dyn CampaignStore {
        match &self.shared {
            Some(s) => &s.table,
            None => &self.tracker,
        }
    }

    /// The live policy.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Replace the policy (already validated: a `CompiledPolicy` cannot be
    /// invalid). Windows are kept when dimensions (groups, bands and
    /// transform included) and window are unchanged.
    pub fn swap_policy(&self, policy: CompiledPolicy) -> Swapped {
        let _one_at_a_time = self.swapping.lock();
        let old = self.live.load();
        let kept = old.policy.same_windows(&policy);
        if !kept {
            self.tracker.reset_windows(&policy);
            if let Some(s) = &self.shared {
                s.reset_counter(&policy);
            }
        }
        self.live.store(Arc::new(Live::new(policy)));
        Swapped { kept_windows: kept }
    }

    /// Group index (flat) of each dimension the decision has a counted label for.
    fn groups(policy: &CompiledPolicy, d: &Decision, out: &mut [usize; MAX_TOTAL_GROUPS]) -> usize {
        match d.root() {
            Root::Text(v) => Self::groups_in(policy, v, d.ts, out),
            Root::Parsed(v) => Self::groups_in(policy, v, d.ts, out),
        }
    }

    fn groups_in<'a, V: View<'a>>(
        policy: &CompiledPolicy,
        root: V,
        ts: i64,
        out: &mut [usize; MAX_TOTAL_GROUPS],
    ) -> usize {
        let mut n = 0;
        for (i, dim) in policy.dimensions.iter().enumerate() {
            let Some(v) = lookup(root, &dim.pointer.tokens) else {
                continue;
            };
            let gi = if dim.bands.is_empty() {
                v.as_str().and_then(|s| dim.group_index(s))
            } else {
                let x = v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
                x.and_then(|x| {
                    // A year far outside `i64` of today's is in no band.
                    let x = match dim.transform {
                        Some(BandTransform::AgeFromYear) => year_of(ts).checked_sub(x)?,
                        None => x,
                    };
                    dim.bands
                        .iter()
                        .find(|(lo, hi, _)| (*lo..=*hi).contains(&x))
                        .map(|b| b.2)
                })
            };
            if let Some(gi) = gi {
                out[n] = policy.group_offsets[i] + gi;
                n += 1;
            }
        }
        n
    }

    /// The dead-letter judgement for a record the guard failed on (a bug):
    /// the record is kept, not lost, and the pipeline goes on.
    pub fn internal_error(&self, key: Option<&[u8]>, bytes: &[u8]) -> Judgement {
        self.dead_letter(
            &self.live.load(),
            key,
            bytes,
            crate::core::decision::Reject::Internal,
        )
    }

    fn dead_letter(
        &self,
        live: &Live,
        key: Option<&[u8]>,
        bytes: &[u8],
        err: crate::core::decision::Reject,
    ) -> Judgement {
        let kind = err.kind();
        Judgement {
            route: Route::DeadLetter,
            key: key.map(<[u8]>::to_vec),
            headers: vec![
                (headers::ERROR, err.to_string().into()),
                (headers::ERROR_KIND, kind.into()),
                (headers::REASON, kind.into()),
                (headers::POLICY_VERSION, live.version.to_string().into()),
            ],
            payload: bytes.to_vec(),
            alert: None,
            facts: Facts {
                reason: kind,
                policy_version: live.version.clone(),
                ..Facts::default()
            },
        }
    }

    /// Judge one input record. Never panics on input; never loses it.
    ///
    /// The pipeline order: parse and validate (or dead-letter), consent,
    /// count and re-judge the campaign, strip, route, headers, serialize.
    pub fn judge(&self, key: Option<&[u8]>, bytes: &[u8], now: Now) -> Judgement {
        self.judge_read(key, bytes, &Decision::parse(bytes), now)
    }

    /// [`Guard::judge`] of a record already read: `read` is
    /// [`Decision::parse`] of `bytes` (reading does not depend on the
    /// policy, so a shadow guard judges the same reading).
    pub fn judge_read(
        &self,
        key: Option<&[u8]>,
        bytes: &[u8],
        read: &Result<Decision, decision::Reject>,
        now: Now,
    ) -> Judgement {
        let live = self.live.load();
        let policy = &live.policy;
        let d = match read {
            Ok(d) => d,
            Err(e) => return self.dead_letter(&live, key, bytes, e.clone()),
        };
        let now_ms = self.now_ms(now, d.ts, policy.max_future_ms);
        let verdict = live.consent.evaluate(&d.consent_inputs(now_ms));
        let rec = self.record(policy, d, now_ms);

        let (payload, stripped) = with_scratch(|buf| {
            let stripped = live.strip_into(d, &verdict, buf);
            (buf.to_vec(), stripped)
        });
        let (route, reason) = route_of(&verdict, rec.state);
        let headers = published_headers(&live, d, &verdict, &rec, &stripped, route, reason);
        let facts = Facts {
            reason,
            consent: Some(verdict),
            placements: d.disagreements,
            removed_always: stripped.always.len(),
            removed_personal: stripped.personal.len(),
            removed_child: stripped.child.len(),
            removed_lmt: stripped.lmt.len(),
            coarsened: stripped.coarsened.len(),
            uncoarsenable: stripped.uncoarsenable.len(),
            segments: stripped.segments,
            timing: Some(rec.timing),
            state: Some(rec.state),
            ts_ms: Some(d.ts),
            policy_version: live.version.clone(),
        };
        Judgement {
            route,
            key: Some(d.campaign_id.as_bytes().to_vec()),
            headers,
            payload,
            alert: rec.alert,
            facts,
        }
    }

    /// Count the decision in its campaign's window and re-judge the campaign.
    pub fn record(&self, policy: &CompiledPolicy, d: &Decision, now_ms: i64) -> Recorded {
        let mut groups = [0usize; MAX_TOTAL_GROUPS];
        let n = Self::groups(policy, d, &mut groups);
        let category = Category::of_campaign(d.category.as_deref());
        if let Some(s) = &self.shared {
            return count_shared(s, policy, d, category, &groups[..n], now_ms);
        }
        self.tracker.record(
            policy,
            &d.campaign_id,
            category,
            d.ts,
            &groups[..n],
            d.selected,
            now_ms,
        )
    }

    /// The current time for one call: the caller's, or event time with this
    /// decision's `ts` observed.
    pub fn now_ms(&self, now: Now, ts: i64, max_future_ms: i64) -> i64 {
        match now {
            Now::At(ms) => ms,
            Now::EventTime => self.event_time.lock().observe(ts, max_future_ms),
        }
    }

    /// A decision `ts` read ahead of judging (replays): the first decisions
    /// are then judged in event time against the ones around them, so that a
    /// first decision stamped far ahead cannot set the clock.
    pub fn prime_event_time(&self, ts: i64) {
        self.event_time.lock().prime(ts);
    }

    /// Report of one campaign under the live policy.
    pub fn campaign(&self, id: &str) -> Option<CampaignReport> {
        self.store().report(&self.live.load().policy, id)
    }

    /// Reports of all campaigns, optionally in one state (this instance's
    /// tracker; `check` and tests).
    pub fn campaigns(&self, state: Option<State>) -> Vec<CampaignReport> {
        self.tracker.reports(&self.live.load().policy, state)
    }

    /// One page of campaign reports under the live policy (see [`Tracker::page`]).
    pub fn campaign_page(&self, filter: &Filter, after: Option<&str>, limit: usize) -> Page {
        self.store()
            .page(&self.live.load().policy, filter, after, limit)
    }

    /// A campaign manager's override; returns the audit alert.
    pub fn override_campaign(
        &self,
        id: &str,
        action: OverrideAction,
        by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<AlertEvent, OverrideError> {
        self.tracker
            .apply_override(&self.live.load().policy, id, action, by, reason, now_ms)
    }
}

/// [`Guard::record`] when state is shared: the decision is added to the
/// counter (unless its `ts` is outside the window by the clock: late or
/// early) and routed by the campaign's row in the table. Transitions and
/// their alerts come from the campaign's owner, not from here.
fn count_shared(
    s: &SharedCampaigns,
    policy: &CompiledPolicy,
    d: &Decision,
    category: Category,
    groups: &[usize],
    now_ms: i64,
) -> Recorded {
    let bucket = d.ts.div_euclid(policy.bucket_ms);
    let now_bucket = now_ms.div_euclid(policy.bucket_ms);
    let timing = if d.ts > now_ms.saturating_add(policy.max_future_ms) {
        Timing::Early
    } else if bucket <= now_bucket.saturating_sub(policy.buckets as i64) {
        Timing::Late
    } else {
        Timing::Counted
    };
    let seen = d.ts.min(now_ms.saturating_add(policy.max_future_ms));
    s.counter().add(
        &d.campaign_id,
        category,
        seen,
        (timing == Timing::Counted).then_some(bucket),
        groups,
        d.selected,
    );
    let r = s.table.route(&d.campaign_id);
    Recorded {
        state: r.state,
        timing,
        finding: if r.state == State::Ok {
            None
        } else {
            r.finding
        },
        acknowledged: r.acknowledged,
        alert: None,
    }
}

/// Where a judged decision goes, and the reason given for it: withheld
/// consent first, then a blocked campaign, else the output.
pub fn route_of(verdict: &Verdict, state: State) -> (Route, &'static str) {
    if verdict.outcome == Outcome::Withheld {
        (Route::Blocked, "consent_withheld")
    } else if state == State::Blocked {
        (Route::Blocked, "campaign_blocked")
    } else {
        (Route::Output, verdict.reason.as_str())
    }
}

/// The headers of a judged (not dead-lettered) record, in publishing order.
fn published_headers(
    live: &Live,
    d: &Decision,
    verdict: &Verdict,
    rec: &Recorded,
    stripped: &Stripped<'_>,
    route: Route,
    reason: &'static str,
) -> Vec<(&'static str, Cow<'static, str>)> {
    let mut h: Vec<(&'static str, Cow<'static, str>)> = Vec::with_capacity(10);
    h.push((headers::DECISION_ID, d.id.clone().into()));
    h.push((headers::POLICY_VERSION, live.version.to_string().into()));
    h.push((headers::CONSENT, verdict.outcome.as_str().into()));
    h.push((headers::CONSENT_REASON, verdict.reason_header().into()));
    h.push((headers::CAMPAIGN_STATE, rec.state.as_str().into()));
    let removed = stripped.removed_header();
    if !removed.is_empty() {
        h.push((headers::REMOVED, removed.into()));
    }
    if !stripped.coarsened.is_empty() {
        h.push((headers::COARSENED, stripped.coarsened.join(",").into()));
    }
    if stripped.segments > 0 {
        h.push((
            headers::SEGMENTS_REMOVED,
            stripped.segments.to_string().into(),
        ));
    }
    if rec.state != State::Ok {
        let flag = flag_value(&live.policy, rec.finding.as_ref(), rec.acknowledged);
        h.push((headers::FLAG, flag.into()));
    }
    if route == Route::Blocked {
        h.push((headers::REASON, reason.into()));
    }
    if rec.timing != Timing::Counted {
        h.push((headers::TIMING, rec.timing.as_str().into()));
    }
    h
}

/// Calendar year of an epoch-ms timestamp (UTC), for age bands.
fn year_of(ts_ms: i64) -> i64 {
    // Days since 1970-01-01 to civil year (Howard Hinnant's algorithm).
    let z = ts_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flagged row written under another policy (a rollout, a reload
    /// that dropped a dimension) names a dimension this policy lacks: the
    /// flag says so instead of failing every decision of the campaign.
    #[test]
    fn a_finding_of_another_policy_flags_with_an_unknown_dimension() {
        let policy = CompiledPolicy::from_toml(include_str!("../../config/policy.toml")).unwrap();
        let f = Finding {
            dimension: policy.dimensions.len() + 3,
            measure: crate::fairness::assess::Measure::SelectionRateRatio,
            value: 0.5,
            bound: 0.6,
            threshold: 0.8,
        };
        let flag = flag_value(&policy, Some(&f), false);
        assert!(flag.contains(";dimension=unknown;"), "{flag}");
        let alert = crate::fairness::tracker::alert_event(
            &policy,
            "c",
            Category::Default,
            Some(f),
            Vec::new(),
            None,
            0,
            crate::fairness::tracker::AlertParts {
                kind: crate::fairness::alert::AlertKind::Override,
                old_state: State::Flagged,
                new_state: State::Flagged,
                measured_state: State::Flagged,
                cause: None,
                since_ms: 0,
                override_: None,
                message: String::new(),
            },
        );
        assert_eq!(alert.dimension.as_deref(), Some("unknown"));
    }

    #[test]
    fn fixed3_writes_what_the_formatter_writes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![
            0.0,
            -0.0,
            0.0005,
            0.0015,
            0.0625,
            1.0005,
            999_999.999_5,
            -1.25,
        ];
        values.extend([f64::NAN, f64::INFINITY, 1e300, 5e-324, 0.9995, 2.0 / 3.0]);
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
            values.push(unit * [1.0, 10.0, 1e4, 1e7][(seed & 3) as usize]);
            // Ties and near-ties of the thousandths.
            values.push((seed % 100_000) as f64 / 1000.0 + 0.0005);
        }
        for v in values {
            let mut got = String::new();
            push_fixed3(&mut got, v);
            assert_eq!(got, format!("{v:.3}"), "{v:e}");
        }
    }

    #[test]
    fn years() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(1_763_884_800_123), 2025);
        assert_eq!(year_of(1_704_067_199_000), 2023);
        assert_eq!(year_of(1_704_067_200_000), 2024);
    }
}
