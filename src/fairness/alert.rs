//! Alert events for campaign managers: one per state transition and one per
//! manual override, carrying the numbers behind it and a sentence a person
//! can read.

use serde::{Deserialize, Serialize};

use crate::fairness::assess::{DimensionNumbers, Finding, Measure};
use crate::fairness::campaign::{Cause, OverrideAction, State};
use crate::policy::{Category, Limits, Mode};

/// What kind of event this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Transition,
    Override,
}

/// The window the numbers were counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowInfo {
    pub start_ms: i64,
    pub end_ms: i64,
    pub secs: i64,
}

/// Who overrode, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverrideInfo {
    pub action: OverrideAction,
    pub by: String,
    pub reason: String,
}

/// One alert event (the `fairgate.alerts` topic, JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub kind: AlertKind,
    pub campaign: String,
    pub category: &'static str,
    pub old_state: State,
    pub new_state: State,
    /// The state the measures say, when an override decides routing.
    pub measured_state: State,
    pub cause: Option<Cause>,
    pub measure: Option<Measure>,
    pub dimension: Option<String>,
    pub value: Option<f64>,
    /// Conservative confidence bound of the value.
    pub bound: Option<f64>,
    pub threshold: Option<f64>,
    pub confidence: f64,
    pub numbers: Vec<DimensionNumbers>,
    pub window: WindowInfo,
    pub policy_version: String,
    pub mode: Mode,
    /// When this happened (epoch ms).
    pub at_ms: i64,
    /// When the previous state began (epoch ms).
    pub since_ms: i64,
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<OverrideInfo>,
    /// What happened, and what happens next, in words.
    pub message: String,
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn minutes(ms: i64) -> String {
    let m = ms / 60_000;
    if m >= 1 {
        format!("{m} minute{}", if m == 1 { "" } else { "s" })
    } else {
        format!("{} seconds", ms / 1000)
    }
}

/// Everything the sentence needs.
pub struct Context<'a> {
    pub campaign: &'a str,
    pub category: Category,
    pub finding: Option<&'a Finding>,
    pub numbers: &'a [DimensionNumbers],
    pub limits: &'a Limits,
    pub mode: Mode,
    pub confidence: f64,
    pub window_secs: i64,
}

fn evidence(ctx: &Context<'_>) -> String {
    let Some(f) = ctx.finding else {
        return "There are not yet enough decisions in the window for a verdict.".into();
    };
    let Some(dim) = ctx.numbers.get(f.dimension) else {
        return String::new();
    };
    let conf = format!("{:.0}%", ctx.confidence * 100.0);
    match f.measure {
        Measure::SelectionRateRatio => {
            let mut rated: Vec<_> = dim
                .groups
                .iter()
                .filter_map(|g| g.selection_rate.map(|r| (g, r)))
                .collect();
            rated.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (lo, hi) = match (rated.first(), rated.last()) {
                (Some(lo), Some(hi)) => (lo, hi),
                _ => return String::new(),
            };
            format!(
                "By {}, the group \"{}\" was selected at {} ({} of {}) and \"{}\" at {} ({} of {}): a selection-rate ratio of {:.2} (at most {:.2} with {} confidence; limit {:.2}).",
                dim.dimension,
                lo.0.group,
                pct(lo.1),
                lo.0.selected,
                lo.0.considered,
                hi.0.group,
                pct(hi.1),
                hi.0.selected,
                hi.0.considered,
                f.value,
                f.bound,
                conf,
                f.threshold
            )
        }
        Measure::ShareDistance => {
            let worst = dim
                .groups
                .iter()
                .filter_map(|g| Some((g, g.share? - g.baseline_share?)))
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
            let detail = worst
                .map(|(g, diff)| {
                    format!(
                        " \"{}\" received {} of deliveries against a baseline of {} ({}{:.1} points).",
                        g.group,
                        pct(g.share.unwrap_or(0.0)),
                        pct(g.baseline_share.unwrap_or(0.0)),
                        if diff >= 0.0 { "+" } else { "" },
                        diff * 100.0
                    )
                })
                .unwrap_or_default();
            format!(
                "By {}, delivery shares are {:.2} away from the baseline (at least {:.2} with {} confidence; limit {:.2}).{}",
                dim.dimension, f.value, f.bound, conf, f.threshold, detail
            )
        }
    }
}

fn next_steps(ctx: &Context<'_>, state: State) -> String {
    let c = ctx.campaign;
    match state {
        State::Ok => "Its decisions flow without a flag. Nothing to do.".to_string(),
        State::Flagged => {
            let block = if ctx.mode == Mode::Enforce {
                format!(
                    " In enforce mode it will be blocked if the skew lasts {} or gets severe (ratio below {:.2} or distance above {:.2}).",
                    minutes(ctx.limits.block_after_ms),
                    ctx.limits.block_ratio,
                    ctx.limits.block_distance
                )
            } else {
                " The policy is in monitor mode: it will not be blocked.".into()
            };
            format!(
                "Its decisions still flow, with a fairgate-flag header.{block} It returns to ok once the numbers no longer show a ratio below {:.2} or a distance above {:.2} with confidence. Acknowledge or override: POST /v1/campaigns/{c}/override.",
                ctx.limits.clear_ratio, ctx.limits.clear_distance
            )
        }
        State::Blocked => format!(
            "Its decisions go to the blocked topic and are not delivered. It steps back to flagged when the skew is no longer confident. To let it through: POST /v1/campaigns/{c}/override with action force_allow."
        ),
    }
}

/// The sentence for a measured transition.
pub fn transition_message(ctx: &Context<'_>, from: State, to: State, cause: Cause) -> String {
    let cat = if ctx.category == Category::Default {
        String::new()
    } else {
        format!(
            " ({} — a special ad category with stricter limits)",
            ctx.category.as_str()
        )
    };
    let why = match cause {
        Cause::Skew => "its delivery is skewed across a protected group".to_string(),
        Cause::SevereSkew => "its delivery is severely skewed across a protected group".to_string(),
        Cause::SustainedSkew => format!(
            "its delivery has stayed skewed for {}",
            minutes(ctx.limits.block_after_ms)
        ),
        Cause::Eased => "the skew is no longer confident".to_string(),
        Cause::Recovered => "every measure is back within its limit".to_string(),
        Cause::MonitorMode => "the policy is in monitor mode, which never blocks".to_string(),
    };
    format!(
        "Campaign {}{cat} went from {} to {}: {why}, counted over the last {}. {} {}",
        ctx.campaign,
        from.as_str(),
        to.as_str().to_uppercase(),
        minutes(ctx.window_secs * 1000),
        evidence(ctx),
        next_steps(ctx, to)
    )
}

/// The sentence for an override.
pub fn override_message(
    ctx: &Context<'_>,
    info: &OverrideInfo,
    before: State,
    after: State,
) -> String {
    let what = match info.action {
        OverrideAction::Acknowledge => format!("acknowledged its {} state", before.as_str()),
        OverrideAction::ForceAllow => "forced it to be allowed whatever the measures say".into(),
        OverrideAction::ForceBlock => "forced it to be blocked whatever the measures say".into(),
        OverrideAction::Clear => "cleared the override: the measures decide again".into(),
    };
    format!(
        "Campaign {}: {} {what} (reason: {}). State {} → {}. {}",
        ctx.campaign,
        info.by,
        info.reason,
        before.as_str(),
        after.as_str(),
        next_steps(ctx, after)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fairness::assess::{BaselineSource, GroupNumbers};

    fn group(name: &str, considered: u64, selected: u64, share: f64, base: f64) -> GroupNumbers {
        GroupNumbers {
            group: name.into(),
            considered,
            selected,
            selection_rate: Some(selected as f64 / considered as f64),
            share: Some(share),
            baseline_share: Some(base),
        }
    }

    fn numbers() -> Vec<DimensionNumbers> {
        vec![DimensionNumbers {
            dimension: "sex".into(),
            groups: vec![
                group("male", 1000, 600, 0.6, 0.4),
                group("female", 1000, 300, 0.3, 0.4),
                group("other", 1000, 100, 0.1, 0.2),
            ],
            considered: 3000,
            selected: 1000,
            selection_rate_ratio: Some(1.0 / 6.0),
            selection_rate_ratio_upper: Some(0.25),
            share_distance: Some(0.2),
            share_distance_lower: Some(0.15),
            baseline: Some(BaselineSource::Platform),
        }]
    }

    const LIMITS: Limits = Limits {
        flag_ratio: 0.8,
        clear_ratio: 0.85,
        block_ratio: 0.5,
        flag_distance: 0.1,
        clear_distance: 0.08,
        block_distance: 0.25,
        block_after_ms: 1_800_000,
        min_dwell_ms: 300_000,
    };

    fn ctx<'a>(
        finding: Option<&'a Finding>,
        numbers: &'a [DimensionNumbers],
        category: Category,
        mode: Mode,
    ) -> Context<'a> {
        Context {
            campaign: "cmp-7",
            category,
            finding,
            numbers,
            limits: &LIMITS,
            mode,
            confidence: 0.95,
            window_secs: 3600,
        }
    }

    /// The sentences campaign managers read, word for word.
    #[test]
    fn transition_messages_say_what_happened_why_and_what_to_do() {
        let n = numbers();
        let ratio = Finding {
            dimension: 0,
            measure: Measure::SelectionRateRatio,
            value: 1.0 / 6.0,
            bound: 0.25,
            threshold: 0.8,
        };
        let m = transition_message(
            &ctx(Some(&ratio), &n, Category::Default, Mode::Monitor),
            State::Ok,
            State::Flagged,
            Cause::Skew,
        );
        assert_eq!(
            m,
            "Campaign cmp-7 went from ok to FLAGGED: its delivery is skewed across a protected group, counted over the last 60 minutes. \
             By sex, the group \"other\" was selected at 10.0% (100 of 1000) and \"male\" at 60.0% (600 of 1000): a selection-rate ratio of 0.17 (at most 0.25 with 95% confidence; limit 0.80). \
             Its decisions still flow, with a fairgate-flag header. The policy is in monitor mode: it will not be blocked. \
             It returns to ok once the numbers no longer show a ratio below 0.85 or a distance above 0.08 with confidence. \
             Acknowledge or override: POST /v1/campaigns/cmp-7/override."
        );
        let distance = Finding {
            dimension: 0,
            measure: Measure::ShareDistance,
            value: 0.2,
            bound: 0.15,
            threshold: 0.1,
        };
        let m = transition_message(
            &ctx(Some(&distance), &n, Category::Housing, Mode::Enforce),
            State::Flagged,
            State::Blocked,
            Cause::SustainedSkew,
        );
        assert_eq!(
            m,
            "Campaign cmp-7 (housing — a special ad category with stricter limits) went from flagged to BLOCKED: its delivery has stayed skewed for 30 minutes, counted over the last 60 minutes. \
             By sex, delivery shares are 0.20 away from the baseline (at least 0.15 with 95% confidence; limit 0.10). \"male\" received 60.0% of deliveries against a baseline of 40.0% (+20.0 points). \
             Its decisions go to the blocked topic and are not delivered. It steps back to flagged when the skew is no longer confident. \
             To let it through: POST /v1/campaigns/cmp-7/override with action force_allow."
        );
        // The group furthest from its baseline is named, below it too.
        let mut under = numbers();
        under[0].groups[2].baseline_share = Some(0.5);
        let m = transition_message(
            &ctx(Some(&distance), &under, Category::Default, Mode::Monitor),
            State::Ok,
            State::Flagged,
            Cause::Skew,
        );
        assert!(
            m.contains(
                "\"other\" received 10.0% of deliveries against a baseline of 50.0% (-40.0 points)."
            ),
            "{m}"
        );
        let enforce = ctx(Some(&ratio), &n, Category::Default, Mode::Enforce);
        let m = transition_message(&enforce, State::Blocked, State::Flagged, Cause::Eased);
        assert!(
            m.contains("went from blocked to FLAGGED: the skew is no longer confident"),
            "{m}"
        );
        assert!(m.contains(" In enforce mode it will be blocked if the skew lasts 30 minutes or gets severe (ratio below 0.50 or distance above 0.25)."), "{m}");
        let none = ctx(None, &n, Category::Default, Mode::Monitor);
        let m = transition_message(&none, State::Flagged, State::Ok, Cause::Recovered);
        assert_eq!(
            m,
            "Campaign cmp-7 went from flagged to OK: every measure is back within its limit, counted over the last 60 minutes. \
             There are not yet enough decisions in the window for a verdict. Its decisions flow without a flag. Nothing to do."
        );
        for (cause, why) in [
            (
                Cause::SevereSkew,
                "its delivery is severely skewed across a protected group",
            ),
            (
                Cause::MonitorMode,
                "the policy is in monitor mode, which never blocks",
            ),
        ] {
            assert!(transition_message(&none, State::Ok, State::Flagged, cause).contains(why));
        }
        // A finding for a dimension the numbers do not have says nothing wrong.
        let stray = Finding {
            dimension: 3,
            ..ratio
        };
        let m = transition_message(
            &ctx(Some(&stray), &n, Category::Default, Mode::Monitor),
            State::Ok,
            State::Flagged,
            Cause::Skew,
        );
        assert!(m.contains("60 minutes.  Its decisions"), "{m}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(minutes(60_000), "1 minute");
        assert_eq!(minutes(120_000), "2 minutes");
        assert_eq!(minutes(59_999), "59 seconds");
        assert_eq!(pct(0.1234), "12.3%");
    }

    #[test]
    fn override_messages_name_who_and_why() {
        let n = numbers();
        let c = ctx(None, &n, Category::Default, Mode::Monitor);
        let info = |action| OverrideInfo {
            action,
            by: "ana".into(),
            reason: "legal hold".into(),
        };
        let m = override_message(
            &c,
            &info(OverrideAction::ForceBlock),
            State::Ok,
            State::Blocked,
        );
        assert!(m.starts_with("Campaign cmp-7: ana forced it to be blocked whatever the measures say (reason: legal hold). State ok → blocked. Its decisions go to the blocked topic"), "{m}");
        let m = override_message(
            &c,
            &info(OverrideAction::Acknowledge),
            State::Flagged,
            State::Flagged,
        );
        assert!(m.starts_with("Campaign cmp-7: ana acknowledged its flagged state (reason: legal hold). State flagged → flagged."), "{m}");
        let m = override_message(
            &c,
            &info(OverrideAction::ForceAllow),
            State::Blocked,
            State::Ok,
        );
        assert!(
            m.contains("ana forced it to be allowed whatever the measures say"),
            "{m}"
        );
        let m = override_message(&c, &info(OverrideAction::Clear), State::Ok, State::Ok);
        assert!(
            m.contains("ana cleared the override: the measures decide again"),
            "{m}"
        );
    }
}
