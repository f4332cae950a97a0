//! The shadow policy: a candidate judged beside the live policy on every
//! decision of the running service, to see what it would change. It never
//! changes what is published: its judgement is compared with the live one
//! ([`crate::core::diff::compare`], the function the offline `fairgate diff`
//! counts with) and dropped.
//!
//! The shadow guard keeps campaign windows and states of its own, in this
//! instance's memory (also when the live state is kept on Kafka): with
//! several instances each sees its share of the traffic.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::core::decision::{Decision, Reject};
use crate::core::diff::{Compared, compare};
use crate::core::guard::{Guard, Judgement, Now, Route};
use crate::policy::CompiledPolicy;

/// The shadow policy, when there is one. Every method takes `&self`.
#[derive(Debug, Default)]
pub struct Shadow {
    guard: ArcSwapOption<Guard>,
}

/// What the shadow said of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowJudged {
    pub compared: Compared,
    /// Where the shadow policy would have sent it.
    pub route: Route,
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
    /// the live judgement `live` and from the same reading `read`
    /// ([`Guard::judge_read`]), and say how the two differ.
    pub fn judge(
        &self,
        live: &Judgement,
        key: Option<&[u8]>,
        bytes: &[u8],
        read: &Result<Decision, Reject>,
        now: Now,
    ) -> Option<ShadowJudged> {
        let g = self.guard.load();
        let g = g.as_ref()?;
        let j = g.judge_read(key, bytes, read, now);
        Some(ShadowJudged {
            compared: compare(live, &j),
            route: j.route,
        })
    }
}
