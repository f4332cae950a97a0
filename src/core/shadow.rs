//! The shadow policy: a candidate judged beside the live policy on every
//! decision of the running service, to see what it would change. It never
//! changes what is published: its judgement is compared with the live one
//! ([`crate::core::diff::compare`], the function the offline `fairgate diff`
//! counts with) and dropped.
//!
//! The shadow guard keeps campaign windows and states of its own, in this
//! instance's memory (also when the live state is kept on Kafka): with
//! several instances each sees its share of the traffic.
//!
//! What the two policies settle alike is not done twice. The record is
//! read once ([`Guard::judge_read`]). With the same consent rules
//! ([`CompiledPolicy::same_consent`]) the live verdict is the shadow's.
//! With the same strip rules ([`CompiledPolicy::same_strip`]) and verdicts
//! that agree on what stripping reads ([`strips_alike`]), the stripped
//! record is the live one: nothing is written, and only the route, the
//! consent and the campaign state are compared
//! ([`crate::core::diff::compare_same_strip`]). The campaign is always
//! counted in the shadow's own windows.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::core::consent::{Outcome, Verdict};
use crate::core::decision::{Decision, Reject};
use crate::core::diff::{Compared, Parts, compare, compare_parts, compare_same_strip};
use crate::core::guard::{Guard, Judgement, Live, Now, Route, route_of};
use crate::core::rewrite::with_scratch;
use crate::policy::CompiledPolicy;

/// The shadow policy, when there is one. Every method takes `&self`.
#[derive(Debug, Default)]
pub struct Shadow {
    guard: ArcSwapOption<Guard>,
    /// What the live and the shadow policy have in common, for the last
    /// pair seen (recomputed when either changes).
    pairing: ArcSwapOption<Pairing>,
}

/// A live policy and a shadow policy, and what they settle alike.
#[derive(Debug)]
struct Pairing {
    /// The live policy's version as its judgements carry it (the same `Arc`).
    live: Arc<str>,
    shadow: Arc<Live>,
    same_consent: bool,
    same_strip: bool,
}

/// What the shadow said of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowJudged {
    pub compared: Compared,
    /// Where the shadow policy would have sent it.
    pub route: Route,
}

/// Whether two verdicts are alike in everything stripping reads (the
/// outcome only as personalised or not, precise geolocation, child, LMT):
/// under the same strip rules they give the same stripped record
/// (`strip::strip`, `rewrite::Plan::write`).
pub fn strips_alike(a: &Verdict, b: &Verdict) -> bool {
    let key = |v: &Verdict| {
        (
            v.outcome == Outcome::Personalised,
            v.precise_geo,
            v.child,
            v.lmt,
        )
    };
    key(a) == key(b)
}

impl Shadow {
    pub fn new() -> Shadow {
        Shadow::default()
    }

    /// Turn the shadow on with `policy` (its windows kept when a shadow with
    /// the same dimensions and window runs), or off with `None`.
    pub fn set(&self, policy: Option<CompiledPolicy>) {
        match (policy, self.guard.load_full()) {
            (None, _) => self.guard.store(None),
            (Some(p), Some(g)) => {
                g.swap_policy(p);
            }
            (Some(p), None) => self.guard.store(Some(Arc::new(Guard::new(p)))),
        }
        self.pairing.store(None);
    }

    /// The shadow policy's version, when shadow is on.
    pub fn version(&self) -> Option<String> {
        self.guard
            .load()
            .as_ref()
            .map(|g| g.live().policy.version.clone())
    }

    /// The shadow guard, when shadow is on (its campaigns, for reports).
    pub fn guard(&self) -> Option<Arc<Guard>> {
        self.guard.load_full()
    }

    /// Judge the record under the shadow policy too, at the same `now` as
    /// the judgement `live` of the live guard `live_guard`, and from the
    /// same reading `read` ([`Guard::judge_read`]), and say how the two
    /// differ.
    pub fn judge(
        &self,
        live_guard: &Guard,
        live: &Judgement,
        key: Option<&[u8]>,
        bytes: &[u8],
        read: &Result<Decision, Reject>,
        now: Now,
    ) -> Option<ShadowJudged> {
        let g = self.guard.load();
        let g = g.as_ref()?;
        if let (Ok(d), Some(verdict)) = (read, &live.facts.consent)
            && let Some(p) = self.pairing(live_guard, g, live)
        {
            return Some(beside(g, &p, live, verdict, d, now));
        }
        let j = g.judge_read(key, bytes, read, now);
        Some(ShadowJudged {
            compared: compare(live, &j),
            route: j.route,
        })
    }

    /// What the live policy that judged `live` and the shadow's have in
    /// common; none when the live policy was swapped since (that record
    /// is judged in full).
    fn pairing(&self, live_guard: &Guard, g: &Guard, live: &Judgement) -> Option<Arc<Pairing>> {
        let shadow = g.live();
        let version = &live.facts.policy_version;
        if let Some(p) = self.pairing.load_full()
            && Arc::ptr_eq(&p.live, version)
            && Arc::ptr_eq(&p.shadow, &shadow)
        {
            return Some(p);
        }
        let current = live_guard.live();
        if !Arc::ptr_eq(&current.version, version) {
            return None;
        }
        let p = Arc::new(Pairing {
            live: current.version.clone(),
            same_consent: current.policy.same_consent(&shadow.policy),
            same_strip: current.policy.same_strip(&shadow.policy),
            shadow,
        });
        self.pairing.store(Some(p.clone()));
        Some(p)
    }
}

/// The shadow's judgement of a record the live guard judged (`live`, with
/// its verdict `lv`), doing only what the two policies do not settle alike.
fn beside(
    g: &Guard,
    p: &Pairing,
    live: &Judgement,
    lv: &Verdict,
    d: &Decision<'_>,
    now: Now,
) -> ShadowJudged {
    let sl = &p.shadow;
    let policy = &sl.policy;
    let now_ms = g.now_ms(now, d.ts, policy.max_future_ms);
    let verdict = if p.same_consent {
        *lv
    } else {
        sl.consent.evaluate(&d.consent_inputs(now_ms))
    };
    let rec = g.record(policy, d, now_ms);
    let (route, _) = route_of(&verdict, rec.state);
    if p.same_strip && strips_alike(lv, &verdict) {
        return ShadowJudged {
            compared: compare_same_strip(live, route, &verdict, rec.state),
            route,
        };
    }
    // Written into this thread's buffer: compared, never kept.
    with_scratch(|payload| {
        let stripped = sl.strip_into(d, &verdict, payload);
        let compared = compare_parts(
            live,
            &Parts {
                route,
                verdict: &verdict,
                state: rec.state,
                removed: &stripped.removed_header(),
                coarsened: &stripped.coarsened.join(","),
                segments: stripped.segments,
                payload,
            },
        );
        ShadowJudged { compared, route }
    })
}
