//! What a candidate policy would change: two judgements of the same
//! decision (current policy, candidate policy) compared, and tallied over a
//! replay. Pure: the `fairgate diff` command ([`crate::tools::diff`]) reads
//! the lines, runs both guards and writes the report.
//!
//! A change is recorded by kind ([`Kind`]): the route, the consent outcome
//! and its reason, the pointers removed or coarsened, the number of
//! sensitive segments removed, the campaign state the decision was routed
//! by. Examples are decision ids only, never values: the report carries
//! nothing a policy strips. Per campaign, the states under both policies
//! are followed decision by decision, so that the report says when the two
//! began to disagree.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::consent::Verdict;
use crate::core::guard::{Judgement, Route, headers};
use crate::fairness::campaign::State;
use crate::fairness::tracker::CampaignReport;

/// A kind of change to one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Output ↔ blocked.
    Route,
    /// Personalised, contextual or withheld.
    Consent,
    /// The consent reason code (with its GPP section).
    ConsentReason,
    /// The pointers removed (`fairgate-removed`).
    Removed,
    /// The pointers coarsened (`fairgate-coarsened`).
    Coarsened,
    /// How many sensitive segments were removed.
    SegmentsRemoved,
    /// The campaign state the decision was routed by.
    CampaignState,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Route,
        Kind::Consent,
        Kind::ConsentReason,
        Kind::Removed,
        Kind::Coarsened,
        Kind::SegmentsRemoved,
        Kind::CampaignState,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Route => "route",
            Kind::Consent => "consent",
            Kind::ConsentReason => "consent_reason",
            Kind::Removed => "removed",
            Kind::Coarsened => "coarsened",
            Kind::SegmentsRemoved => "segments_removed",
            Kind::CampaignState => "campaign_state",
        }
    }
}

/// A number under each policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Both {
    pub current: u64,
    pub candidate: u64,
}

/// A number under each policy, and how many more (or fewer, negative) under the candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delta {
    pub current: u64,
    pub candidate: u64,
    pub difference: i64,
}

impl From<Both> for Delta {
    fn from(b: Both) -> Delta {
        Delta {
            current: b.current,
            candidate: b.candidate,
            difference: b.candidate as i64 - b.current as i64,
        }
    }
}

/// One value under the current policy and another under the candidate, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub count: u64,
}

/// A pointer removed (or coarsened) under one policy and not the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointerChange {
    pub pointer: String,
    /// Decisions in which only the current policy touches it.
    pub current_only: u64,
    /// Decisions in which only the candidate touches it.
    pub candidate_only: u64,
}

/// The changes of one kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindReport {
    pub kind: Kind,
    /// Decisions with a change of this kind.
    pub count: u64,
    /// By value under each policy (route, consent, reason, segments, state).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// By pointer (removed, coarsened).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pointers: Vec<PointerChange>,
    /// The first decision ids with this change, in replay order.
    pub examples: Vec<String>,
}

#[derive(Debug, Default)]
struct KindTally {
    count: u64,
    examples: Vec<String>,
    transitions: BTreeMap<(String, String), u64>,
    pointers: BTreeMap<String, (u64, u64)>,
}

/// A stretch of the replay in which a campaign's state differed under the two policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// State under the current policy.
    pub from: State,
    /// State under the candidate.
    pub to: State,
    /// `ts` of the first decision judged so.
    pub first_ts_ms: i64,
    pub first_decision: String,
    /// The campaign's decisions judged so (in this stretch).
    pub decisions: u64,
}

#[derive(Debug, Default)]
struct CampaignTally {
    decisions: u64,
    changed: u64,
    alerts: Both,
    last: Option<(State, State)>,
    /// Start of the current stretch of disagreement: `ts` and decision id.
    since: Option<(i64, String)>,
    divergences: Vec<Divergence>,
}

/// At most this many divergences kept per campaign (the count of the rest is kept).
pub const MAX_DIVERGENCES: usize = 100;

/// The tally of a replay: feed it each decision's two judgements with [`Tally::add`].
#[derive(Debug)]
pub struct Tally {
    examples: usize,
    lines: u64,
    changed: u64,
    published_differs: u64,
    output: Both,
    blocked: Both,
    dead_letter: Both,
    alerts: Both,
    kinds: [KindTally; Kind::ALL.len()],
    campaigns: BTreeMap<String, CampaignTally>,
    divergences_dropped: u64,
}

fn header<'a>(j: &'a Judgement, name: &str) -> &'a str {
    j.headers
        .iter()
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v.as_ref())
}

fn count_route(b: &mut Both, r: Route, current: bool, want: Route) {
    if r == want {
        if current {
            b.current += 1;
        } else {
            b.candidate += 1;
        }
    }
}

/// How one decision's two judgements differ: the offline diff and the
/// live shadow count with this one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compared {
    /// By [`Kind`] (index `kind as usize`).
    pub kinds: [bool; Kind::ALL.len()],
    /// Another topic, or other value bytes.
    pub published_differs: bool,
}

impl Compared {
    /// Any kind of change.
    pub fn changed(&self) -> bool {
        self.kinds.iter().any(|&k| k)
    }
}

/// The header a pointer kind is read from.
fn pointer_header(kind: Kind) -> &'static str {
    if kind == Kind::Removed {
        headers::REMOVED
    } else {
        headers::COARSENED
    }
}

/// The value of one kind in one judgement, as the report shows it.
fn value(kind: Kind, j: &Judgement) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    match kind {
        Kind::Route => Cow::Borrowed(j.route.as_str()),
        Kind::Consent => Cow::Borrowed(j.facts.consent.map_or("none", |v| v.outcome.as_str())),
        Kind::ConsentReason => Cow::Borrowed(header(j, headers::CONSENT_REASON)),
        Kind::Removed | Kind::Coarsened => Cow::Borrowed(header(j, pointer_header(kind))),
        Kind::SegmentsRemoved => Cow::Owned(j.facts.segments.to_string()),
        Kind::CampaignState => Cow::Borrowed(j.facts.state.map_or("none", State::as_str)),
    }
}

/// Compare two judgements of the same input. Dead letters under both differ in nothing.
pub fn compare(cur: &Judgement, cand: &Judgement) -> Compared {
    let mut c = Compared {
        published_differs: cur.route != cand.route || cur.payload != cand.payload,
        ..Compared::default()
    };
    if cur.route == Route::DeadLetter && cand.route == Route::DeadLetter {
        return c;
    }
    for kind in Kind::ALL {
        c.kinds[kind as usize] = match kind {
            Kind::SegmentsRemoved => cur.facts.segments != cand.facts.segments,
            _ => value(kind, cur) != value(kind, cand),
        };
    }
    c
}

/// [`compare`] when the candidate's published value and its removed,
/// coarsened and segment counts are known to be the current judgement's
/// (the same strip rules, and verdicts that agree on everything stripping
/// reads): then only the route, the consent outcome and reason, and the
/// campaign state can differ, and they are compared as facts, without
/// headers or bytes. Gives what [`compare`] gives on the two full
/// judgements (`tests/diff.rs` holds the two together).
pub fn compare_same_strip(
    cur: &Judgement,
    route: Route,
    verdict: &Verdict,
    state: State,
) -> Compared {
    let mut c = Compared {
        published_differs: cur.route != route,
        ..Compared::default()
    };
    let (outcome, reason) = match &cur.facts.consent {
        Some(v) => (Some(v.outcome), Some((v.reason, v.section))),
        None => (None, None),
    };
    c.kinds[Kind::Route as usize] = cur.route != route;
    c.kinds[Kind::Consent as usize] = outcome != Some(verdict.outcome);
    c.kinds[Kind::ConsentReason as usize] = reason != Some((verdict.reason, verdict.section));
    c.kinds[Kind::CampaignState as usize] = cur.facts.state != Some(state);
    c
}

/// What the candidate published for one decision, as [`compare_parts`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub route: Route,
    pub verdict: &'a Verdict,
    pub state: State,
    /// The `fairgate-removed` and `fairgate-coarsened` values ("" for none).
    pub removed: &'a str,
    pub coarsened: &'a str,
    pub segments: usize,
    pub payload: &'a [u8],
}

/// [`compare`] of the current judgement with a candidate given by its parts,
/// without building the candidate's headers. Gives what [`compare`] gives
/// on the two full judgements (`tests/diff.rs` holds the two together).
pub fn compare_parts(cur: &Judgement, cand: &Parts<'_>) -> Compared {
    let mut c = compare_same_strip(cur, cand.route, cand.verdict, cand.state);
    c.published_differs = cur.route != cand.route || cur.payload != cand.payload;
    c.kinds[Kind::Removed as usize] = header(cur, headers::REMOVED) != cand.removed;
    c.kinds[Kind::Coarsened as usize] = header(cur, headers::COARSENED) != cand.coarsened;
    c.kinds[Kind::SegmentsRemoved as usize] = cur.facts.segments != cand.segments;
    c
}

impl Tally {
    /// A tally keeping up to `examples` decision ids per kind of change.
    pub fn new(examples: usize) -> Tally {
        Tally {
            examples,
            lines: 0,
            changed: 0,
            published_differs: 0,
            output: Both::default(),
            blocked: Both::default(),
            dead_letter: Both::default(),
            alerts: Both::default(),
            kinds: Default::default(),
            campaigns: BTreeMap::new(),
            divergences_dropped: 0,
        }
    }

    /// Count one input line judged under the current policy (`cur`) and the candidate (`cand`).
    pub fn add(&mut self, cur: &Judgement, cand: &Judgement) {
        self.lines += 1;
        for (j, is_cur) in [(cur, true), (cand, false)] {
            count_route(&mut self.output, j.route, is_cur, Route::Output);
            count_route(&mut self.blocked, j.route, is_cur, Route::Blocked);
            count_route(&mut self.dead_letter, j.route, is_cur, Route::DeadLetter);
        }
        self.alerts.current += u64::from(cur.alert.is_some());
        self.alerts.candidate += u64::from(cand.alert.is_some());
        let c = compare(cur, cand);
        self.published_differs += u64::from(c.published_differs);
        if cur.route == Route::DeadLetter && cand.route == Route::DeadLetter {
            return;
        }
        let id = header(cur, headers::DECISION_ID);
        let id = if id.is_empty() {
            header(cand, headers::DECISION_ID)
        } else {
            id
        };
        for kind in Kind::ALL.into_iter().filter(|&k| c.kinds[k as usize]) {
            match kind {
                Kind::Removed | Kind::Coarsened => {
                    let name = pointer_header(kind);
                    self.note_pointers(kind, id, header(cur, name), header(cand, name));
                }
                _ => self.note(kind, id, &value(kind, cur), &value(kind, cand)),
            }
        }
        let changed = c.changed();
        self.changed += u64::from(changed);
        if let Some(key) = cur.key.as_deref().or(cand.key.as_deref()) {
            self.campaign(key, id, cur, cand, changed);
        }
    }

    fn kind(&mut self, kind: Kind, id: &str) -> &mut KindTally {
        let examples = self.examples;
        let k = &mut self.kinds[kind as usize];
        k.count += 1;
        if k.examples.len() < examples {
            k.examples.push(id.to_string());
        }
        k
    }

    fn note(&mut self, kind: Kind, id: &str, from: &str, to: &str) {
        let k = self.kind(kind, id);
        *k.transitions
            .entry((from.to_string(), to.to_string()))
            .or_default() += 1;
    }

    fn note_pointers(&mut self, kind: Kind, id: &str, cur: &str, cand: &str) {
        let k = self.kind(kind, id);
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        };
        let (a, b) = (split(cur), split(cand));
        for p in a.iter().filter(|p| !b.contains(p)) {
            k.pointers.entry(p.clone()).or_default().0 += 1;
        }
        for p in b.iter().filter(|p| !a.contains(p)) {
            k.pointers.entry(p.clone()).or_default().1 += 1;
        }
    }

    /// Follow the campaign's state under both policies.
    fn campaign(&mut self, key: &[u8], id: &str, cur: &Judgement, cand: &Judgement, changed: bool) {
        let key = String::from_utf8_lossy(key);
        if !self.campaigns.contains_key(key.as_ref()) {
            self.campaigns
                .insert(key.to_string(), CampaignTally::default());
        }
        let c = self
            .campaigns
            .get_mut(key.as_ref())
            .expect("inserted above");
        c.decisions += 1;
        c.changed += u64::from(changed);
        c.alerts.current += u64::from(cur.alert.is_some());
        c.alerts.candidate += u64::from(cand.alert.is_some());
        let (Some(a), Some(b)) = (cur.facts.state, cand.facts.state) else {
            return;
        };
        if a != b && c.last != Some((a, b)) {
            c.since = Some((cur.facts.ts_ms.unwrap_or_default(), id.to_string()));
        } else if a == b {
            c.since = None;
        }
        if a != b {
            if c.last == Some((a, b)) {
                if let Some(d) = c.divergences.last_mut() {
                    d.decisions += 1;
                }
            } else if c.divergences.len() < MAX_DIVERGENCES {
                c.divergences.push(Divergence {
                    from: a,
                    to: b,
                    first_ts_ms: cur.facts.ts_ms.unwrap_or_default(),
                    first_decision: id.to_string(),
                    decisions: 1,
                });
            } else {
                self.divergences_dropped += 1;
            }
        }
        c.last = Some((a, b));
    }

    /// The report: the tally with each policy's campaign reports at the end of the replay.
    pub fn finish(
        self,
        current: &[CampaignReport],
        candidate: &[CampaignReport],
        late: Both,
        early: Both,
    ) -> (Totals, Vec<KindReport>, Vec<CampaignDiff>) {
        let totals = Totals {
            lines: self.lines,
            changed: self.changed,
            published_differs: self.published_differs,
            output: self.output.into(),
            blocked: self.blocked.into(),
            dead_letter: self.dead_letter,
            alerts: self.alerts,
            late,
            early,
            flips: 0,
            divergences_dropped: self.divergences_dropped,
        };
        let kinds = Kind::ALL
            .iter()
            .zip(self.kinds)
            .map(|(&kind, k)| KindReport {
                kind,
                count: k.count,
                transitions: k
                    .transitions
                    .into_iter()
                    .map(|((from, to), count)| Transition { from, to, count })
                    .collect(),
                pointers: k
                    .pointers
                    .into_iter()
                    .map(|(pointer, (a, b))| PointerChange {
                        pointer,
                        current_only: a,
                        candidate_only: b,
                    })
                    .collect(),
                examples: k.examples,
            })
            .collect();
        let campaigns = campaign_diffs(self.campaigns, current, candidate);
        let totals = Totals {
            flips: campaigns.iter().filter(|c| c.flip.is_some()).count() as u64,
            ..totals
        };
        (totals, kinds, campaigns)
    }
}

/// The totals of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Input lines.
    pub lines: u64,
    /// Decisions with at least one kind of change.
    pub changed: u64,
    /// Decisions whose published record would differ: another topic, or other value bytes.
    pub published_differs: u64,
    pub output: Delta,
    pub blocked: Delta,
    pub dead_letter: Both,
    pub alerts: Both,
    pub late: Both,
    pub early: Both,
    /// Campaigns whose state at the end differs.
    pub flips: u64,
    /// Divergences not listed (over [`MAX_DIVERGENCES`] for a campaign).
    pub divergences_dropped: u64,
}

/// One dimension's measures of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measures {
    pub dimension: String,
    pub selection_rate_ratio: Option<f64>,
    pub selection_rate_ratio_upper: Option<f64>,
    pub share_distance: Option<f64>,
    pub share_distance_lower: Option<f64>,
}

/// A campaign under one policy at the end of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignSide {
    pub state: State,
    pub measured_state: State,
    /// The most serious finding, or the measure closest to its limit.
    pub finding: Option<crate::fairness::assess::Finding>,
    pub considered: u64,
    pub selected: u64,
    pub measures: Vec<Measures>,
}

impl CampaignSide {
    fn of(r: &CampaignReport) -> CampaignSide {
        CampaignSide {
            state: r.state,
            measured_state: r.measured_state,
            finding: r.finding,
            considered: r.dimensions.first().map_or(0, |d| d.considered),
            selected: r.dimensions.first().map_or(0, |d| d.selected),
            measures: r
                .dimensions
                .iter()
                .map(|d| Measures {
                    dimension: d.dimension.clone(),
                    selection_rate_ratio: d.selection_rate_ratio,
                    selection_rate_ratio_upper: d.selection_rate_ratio_upper,
                    share_distance: d.share_distance,
                    share_distance_lower: d.share_distance_lower,
                })
                .collect(),
        }
    }
}

/// A campaign's state at the end differs: current → candidate, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flip {
    pub from: State,
    pub to: State,
    /// `ts` of the first decision of the stretch of disagreement that lasts to the end.
    pub since_ts_ms: i64,
    pub since_decision: String,
}

/// One campaign under both policies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignDiff {
    pub campaign: String,
    pub category: String,
    /// Its decisions in the replay (dead letters excepted).
    pub decisions: u64,
    /// Those with at least one kind of change.
    pub changed: u64,
    pub alerts: Both,
    /// At the end of the replay (none: forgotten, idle).
    pub current: Option<CampaignSide>,
    pub candidate: Option<CampaignSide>,
    pub flip: Option<Flip>,
    /// Every stretch in which the states differed, in replay order.
    pub divergences: Vec<Divergence>,
}

fn campaign_diffs(
    tallies: BTreeMap<String, CampaignTally>,
    current: &[CampaignReport],
    candidate: &[CampaignReport],
) -> Vec<CampaignDiff> {
    fn find<'a>(rs: &'a [CampaignReport], id: &str) -> Option<&'a CampaignReport> {
        rs.binary_search_by(|r| r.campaign.as_str().cmp(id))
            .ok()
            .map(|i| &rs[i])
    }
    tallies
        .into_iter()
        .map(|(id, t)| {
            let (a, b) = (find(current, &id), find(candidate, &id));
            let category = a.or(b).map_or(String::new(), |r| r.category.to_string());
            let flip = match (t.last, t.since) {
                (Some((x, y)), Some((ts, decision))) if x != y => Some(Flip {
                    from: x,
                    to: y,
                    since_ts_ms: ts,
                    since_decision: decision,
                }),
                _ => None,
            };
            CampaignDiff {
                campaign: id,
                category,
                decisions: t.decisions,
                changed: t.changed,
                alerts: t.alerts,
                current: a.map(CampaignSide::of),
                candidate: b.map(CampaignSide::of),
                flip,
                divergences: t.divergences,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::guard::Facts;

    fn judged(id: &str, ts: i64, state: State, removed: &str) -> Judgement {
        let mut headers = vec![(headers::DECISION_ID, id.to_string().into())];
        if !removed.is_empty() {
            headers.push((headers::REMOVED, removed.to_string().into()));
        }
        Judgement {
            route: if state == State::Blocked {
                Route::Blocked
            } else {
                Route::Output
            },
            key: Some(b"cmp-1".to_vec()),
            headers,
            payload: b"{}".to_vec(),
            alert: None,
            facts: Facts {
                state: Some(state),
                ts_ms: Some(ts),
                ..Facts::default()
            },
        }
    }

    #[test]
    fn a_flip_dates_from_the_last_stretch_of_disagreement() {
        use State::*;
        let mut t = Tally::new(1);
        let steps = [
            (Ok, Ok),
            (Ok, Flagged),
            (Ok, Flagged),
            (Ok, Ok),
            (Flagged, Blocked),
            (Ok, Flagged),
            (Ok, Flagged),
        ];
        for (i, (a, b)) in steps.into_iter().enumerate() {
            let id = format!("d{i}");
            t.add(
                &judged(&id, i as i64, a, "/a"),
                &judged(&id, i as i64, b, "/b"),
            );
        }
        let (totals, kinds, campaigns) = t.finish(&[], &[], Both::default(), Both::default());
        assert_eq!(totals.flips, 1);
        assert_eq!(totals.changed, 7, "the pointers differ everywhere");
        assert_eq!(totals.published_differs, 1, "one decision routed elsewhere");
        let c = &campaigns[0];
        let flip = c.flip.as_ref().unwrap();
        assert_eq!((flip.from, flip.to), (Ok, Flagged));
        assert_eq!((flip.since_ts_ms, flip.since_decision.as_str()), (5, "d5"));
        let stretches: Vec<(State, State, i64, u64)> = c
            .divergences
            .iter()
            .map(|d| (d.from, d.to, d.first_ts_ms, d.decisions))
            .collect();
        assert_eq!(
            stretches,
            [
                (Ok, Flagged, 1, 2),
                (Flagged, Blocked, 4, 1),
                (Ok, Flagged, 5, 2)
            ]
        );
        let removed = &kinds[Kind::Removed as usize];
        assert_eq!(removed.examples, ["d0"], "one example kept");
        assert_eq!(
            removed.pointers,
            [
                PointerChange {
                    pointer: "/a".into(),
                    current_only: 7,
                    candidate_only: 0
                },
                PointerChange {
                    pointer: "/b".into(),
                    current_only: 0,
                    candidate_only: 7
                }
            ]
        );
        let state = &kinds[Kind::CampaignState as usize];
        assert_eq!(state.count, 5);
    }
}
