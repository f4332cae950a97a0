//! Campaign states — ok, flagged, blocked — with hysteresis, and manual
//! overrides. Pure: time comes in as an argument.
//!
//! * `ok → flagged` when a measure is confidently past its flag limit.
//! * `flagged → blocked` (enforce mode only) when a measure is confidently past
//!   its block limit, or the campaign has stayed skewed for `block_after_secs`.
//! * `blocked → flagged` when the skew is no longer confident (or the policy
//!   went back to monitor mode), after `min_dwell_secs`.
//! * `flagged → ok` when no measure is confidently past its *clear* limit
//!   (the clear limit sits on the safe side of the flag limit), after
//!   `min_dwell_secs`.
//!
//! Both directions compare the same conservative bound, against two limits a
//! margin apart, and leaving also needs a dwell time: a campaign hovering at a
//! limit does not flap, and a small campaign is never held flagged by noise.

use serde::{Deserialize, Serialize};

use crate::fairness::assess::{Assessment, Level};
use crate::policy::{Limits, Mode};

/// A campaign's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Flagged,
    Blocked,
}

impl State {
    pub const ALL: [State; 3] = [State::Ok, State::Flagged, State::Blocked];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Flagged => "flagged",
            State::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        match s {
            "ok" => Some(State::Ok),
            "flagged" => Some(State::Flagged),
            "blocked" => Some(State::Blocked),
            _ => None,
        }
    }
}

/// What a campaign manager can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideAction {
    /// Seen; the state and its consequences stay.
    Acknowledge,
    /// Publish the campaign's decisions as ok, whatever the measures say.
    ForceAllow,
    /// Route the campaign's decisions to blocked, whatever the measures say.
    ForceBlock,
    /// Remove any override and acknowledgement; the measures decide again.
    Clear,
}

impl OverrideAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideAction::Acknowledge => "acknowledge",
            OverrideAction::ForceAllow => "force_allow",
            OverrideAction::ForceBlock => "force_block",
            OverrideAction::Clear => "clear",
        }
    }
}

/// An override in force, with who set it and why (kept for audit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideRecord {
    pub action: OverrideAction,
    pub by: String,
    pub reason: String,
    pub at_ms: i64,
}

/// A change of measured state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// When the previous state began.
    pub prev_since_ms: i64,
    /// Why it happened.
    pub cause: Cause,
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A measure is confidently past the flag limit.
    Skew,
    /// A measure is confidently past the block limit.
    SevereSkew,
    /// Skewed for longer than `block_after_secs`.
    SustainedSkew,
    /// The skew is no longer confident.
    Eased,
    /// Every measure is back within the clear limits.
    Recovered,
    /// The policy is in monitor mode, which never blocks.
    MonitorMode,
}

/// The state machine of one campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachine {
    pub state: State,
    pub since_ms: i64,
    /// Start of the current run of skew (for `block_after_secs`).
    pub skewed_since_ms: Option<i64>,
    pub override_: Option<OverrideRecord>,
    pub acknowledged: Option<OverrideRecord>,
    pub last_assessment: Option<Assessment>,
}

impl StateMachine {
    pub fn new(now_ms: i64) -> StateMachine {
        StateMachine {
            state: State::Ok,
            since_ms: now_ms,
            skewed_since_ms: None,
            override_: None,
            acknowledged: None,
            last_assessment: None,
        }
    }

    /// The state that decides routing: an override wins over the measures.
    pub fn effective(&self) -> State {
        match self.override_.as_ref().map(|o| o.action) {
            Some(OverrideAction::ForceAllow) => State::Ok,
            Some(OverrideAction::ForceBlock) => State::Blocked,
            _ => self.state,
        }
    }

    /// Feed one assessment; returns the transition, if any.
    pub fn step(
        &mut self,
        a: &Assessment,
        limits: &Limits,
        mode: Mode,
        now_ms: i64,
    ) -> Option<Transition> {
        self.last_assessment = Some(*a);
        let skewed = matches!(a.level, Level::Skewed | Level::Severe);
        if skewed {
            self.skewed_since_ms.get_or_insert(now_ms);
        } else if a.level != Level::Insufficient {
            self.skewed_since_ms = None;
        }
        let dwelt = now_ms.saturating_sub(self.since_ms) >= limits.min_dwell_ms;
        let enforce = mode == Mode::Enforce;
        let sustained = self
            .skewed_since_ms
            .is_some_and(|s| now_ms.saturating_sub(s) >= limits.block_after_ms);
        let next = match self.state {
            State::Ok => match a.level {
                Level::Severe if enforce => Some((State::Blocked, Cause::SevereSkew)),
                Level::Severe | Level::Skewed => Some((State::Flagged, Cause::Skew)),
                _ => None,
            },
            State::Flagged => match a.level {
                Level::Severe if enforce => Some((State::Blocked, Cause::SevereSkew)),
                Level::Skewed if enforce && sustained => {
                    Some((State::Blocked, Cause::SustainedSkew))
                }
                Level::Fair if dwelt => Some((State::Ok, Cause::Recovered)),
                _ => None,
            },
            State::Blocked => {
                if !enforce {
                    Some((State::Flagged, Cause::MonitorMode))
                } else {
                    match a.level {
                        Level::Fair | Level::Uncertain if dwelt => {
                            Some((State::Flagged, Cause::Eased))
                        }
                        _ => None,
                    }
                }
            }
        };
        let (to, cause) = next?;
        let t = Transition {
            from: self.state,
            to,
            prev_since_ms: self.since_ms,
            cause,
        };
        self.state = to;
        self.since_ms = now_ms;
        if to == State::Ok {
            self.acknowledged = None;
        }
        if t.from == State::Blocked && to == State::Flagged {
            // A fresh run: sustained skew must be sustained again.
            self.skewed_since_ms = skewed.then_some(now_ms);
        }
        Some(t)
    }

    /// Apply a manual override. Returns the effective state before and after.
    pub fn apply_override(&mut self, rec: OverrideRecord) -> (State, State) {
        let before = self.effective();
        match rec.action {
            OverrideAction::Acknowledge => self.acknowledged = Some(rec),
            OverrideAction::ForceAllow | OverrideAction::ForceBlock => self.override_ = Some(rec),
            OverrideAction::Clear => {
                self.override_ = None;
                self.acknowledged = None;
            }
        }
        (before, self.effective())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fairness::assess::{Finding, Measure};

    fn limits() -> Limits {
        Limits {
            flag_ratio: 0.8,
            clear_ratio: 0.85,
            block_ratio: 0.5,
            flag_distance: 0.1,
            clear_distance: 0.08,
            block_distance: 0.25,
            block_after_ms: 60_000,
            min_dwell_ms: 10_000,
        }
    }

    fn at(level: Level) -> Assessment {
        Assessment {
            level,
            finding: Some(Finding {
                dimension: 0,
                measure: Measure::SelectionRateRatio,
                value: 0.7,
                bound: 0.75,
                threshold: 0.8,
            }),
        }
    }

    #[test]
    fn monitor_mode_never_blocks() {
        let mut m = StateMachine::new(0);
        let t = m
            .step(&at(Level::Severe), &limits(), Mode::Monitor, 1)
            .unwrap();
        assert_eq!((t.from, t.to), (State::Ok, State::Flagged));
        for i in 0..1000 {
            assert!(
                m.step(&at(Level::Severe), &limits(), Mode::Monitor, 2 + i * 1000)
                    .is_none()
            );
        }
        assert_eq!(m.state, State::Flagged);
    }

    #[test]
    fn enforce_blocks_severe_at_once_and_sustained_later() {
        let mut m = StateMachine::new(0);
        let t = m
            .step(&at(Level::Severe), &limits(), Mode::Enforce, 1)
            .unwrap();
        assert_eq!(t.to, State::Blocked);

        let mut m = StateMachine::new(0);
        assert_eq!(
            m.step(&at(Level::Skewed), &limits(), Mode::Enforce, 0)
                .unwrap()
                .to,
            State::Flagged
        );
        assert!(
            m.step(&at(Level::Skewed), &limits(), Mode::Enforce, 59_999)
                .is_none()
        );
        let t = m
            .step(&at(Level::Skewed), &limits(), Mode::Enforce, 60_000)
            .unwrap();
        assert_eq!((t.to, t.cause), (State::Blocked, Cause::SustainedSkew));
    }

    #[test]
    fn recovery_needs_dwell_and_clear_limit() {
        let mut m = StateMachine::new(0);
        m.step(&at(Level::Skewed), &limits(), Mode::Monitor, 0);
        assert!(
            m.step(&at(Level::Fair), &limits(), Mode::Monitor, 5_000)
                .is_none()
        );
        assert!(
            m.step(&at(Level::Uncertain), &limits(), Mode::Monitor, 20_000)
                .is_none()
        );
        let t = m
            .step(&at(Level::Fair), &limits(), Mode::Monitor, 20_001)
            .unwrap();
        assert_eq!((t.from, t.to), (State::Flagged, State::Ok));
    }

    #[test]
    fn overrides_win_and_clear_restores() {
        let mut m = StateMachine::new(0);
        m.step(&at(Level::Skewed), &limits(), Mode::Monitor, 0);
        let rec = |action| OverrideRecord {
            action,
            by: "ana".into(),
            reason: "checked".into(),
            at_ms: 1,
        };
        assert_eq!(
            m.apply_override(rec(OverrideAction::ForceAllow)),
            (State::Flagged, State::Ok)
        );
        assert_eq!(
            m.apply_override(rec(OverrideAction::ForceBlock)),
            (State::Ok, State::Blocked)
        );
        assert_eq!(
            m.apply_override(rec(OverrideAction::Clear)),
            (State::Blocked, State::Flagged)
        );
        assert_eq!(
            m.apply_override(rec(OverrideAction::Acknowledge)),
            (State::Flagged, State::Flagged)
        );
        assert!(m.acknowledged.is_some());
    }

    /// The names are what the API's `?state=` filter and the override
    /// requests accept, and what alerts and metrics show.
    /// Times at the ends of `i64` neither overflow nor panic: a state
    /// entered at the latest time has not dwelt, one entered at the
    /// earliest has dwelt (and been skewed) long enough.
    #[test]
    fn extreme_times_saturate() {
        let mut m = StateMachine::new(i64::MAX);
        m.step(&at(Level::Skewed), &limits(), Mode::Enforce, i64::MIN);
        assert_eq!(m.state, State::Flagged);
        assert_eq!(
            m.step(&at(Level::Fair), &limits(), Mode::Enforce, i64::MIN),
            None
        );
        let mut m = StateMachine::new(i64::MIN);
        m.step(&at(Level::Skewed), &limits(), Mode::Enforce, i64::MIN);
        let t = m.step(&at(Level::Skewed), &limits(), Mode::Enforce, i64::MAX);
        assert_eq!(t.map(|t| t.cause), Some(Cause::SustainedSkew));
    }

    #[test]
    fn names_round_trip() {
        for (s, name) in [
            (State::Ok, "ok"),
            (State::Flagged, "flagged"),
            (State::Blocked, "blocked"),
        ] {
            assert_eq!(s.as_str(), name);
            assert_eq!(State::parse(name), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
        for bad in ["", "OK", "Flagged", "sideways"] {
            assert_eq!(State::parse(bad), None);
        }
        for (a, name) in [
            (OverrideAction::Acknowledge, "acknowledge"),
            (OverrideAction::ForceAllow, "force_allow"),
            (OverrideAction::ForceBlock, "force_block"),
            (OverrideAction::Clear, "clear"),
        ] {
            assert_eq!(a.as_str(), name);
            assert_eq!(serde_json::to_value(a).unwrap(), name);
        }
    }
}
