//! Judging a campaign's windowed counts against the policy's limits.
//!
//! [`assess`] is on the hot path (run for every decision) and allocates
//! nothing; [`detail`] builds the full per-group numbers for reports, the
//! HTTP API and alert events.

use serde::{Deserialize, Serialize};

use crate::fairness::measures::{self, Counts, Distance, Ratio};
use crate::policy::{CompiledPolicy, Limits};

/// Which measure a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    SelectionRateRatio,
    ShareDistance,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::SelectionRateRatio => "selection_rate_ratio",
            Measure::ShareDistance => "share_distance",
        }
    }
}

/// How skewed a campaign is right now, with confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Not enough data for any verdict.
    Insufficient,
    /// Every measure's confidence bound is back within its clear limit.
    Fair,
    /// Between the clear and the flag limit, or past it without confidence.
    Uncertain,
    /// Confidently past a flag limit.
    Skewed,
    /// Confidently past a block limit.
    Severe,
}

/// The measure behind a level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub dimension: usize,
    pub measure: Measure,
    /// Point value of the measure.
    pub value: f64,
    /// Its conservative confidence bound (upper for the ratio, lower for the distance).
    pub bound: f64,
    /// The limit it was compared with.
    pub threshold: f64,
}

/// The outcome of judging a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assessment {
    pub level: Level,
    /// The most serious finding (for Skewed/Severe), or the measure closest to its limit.
    pub finding: Option<Finding>,
}

/// Where the delivery-share baseline comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    /// The campaign's eligible audience, from the policy.
    Policy,
    /// The platform-wide mix of considered decisions in the same window.
    Platform,
}

const MAX_GROUPS: usize = 32;

const NOTHING: [Counts; MAX_GROUPS] = [Counts {
    considered: 0,
    selected: 0,
}; MAX_GROUPS];

/// The counts of dimension `dim` in flat per-group `counts`; nothing
/// counted when `counts` is too short to hold them (counts made under a
/// policy with fewer groups, in a reload racing the judge threads).
fn dim_counts<'a>(policy: &CompiledPolicy, dim: usize, counts: &'a [Counts]) -> &'a [Counts] {
    let off = policy.group_offsets[dim];
    let len = policy.dimensions[dim].groups.len();
    counts
        .get(off..off.saturating_add(len))
        .unwrap_or(&NOTHING[..len.min(MAX_GROUPS)])
}

/// Dimension `dim`'s baseline shares: the policy's for the campaign, else
/// the platform's mix (from flat per-group `platform` counts) in `buf`.
fn baseline_into<'a>(
    policy: &'a CompiledPolicy,
    campaign: &str,
    dim: usize,
    platform: &[Counts],
    buf: &'a mut [f64; MAX_GROUPS],
) -> Option<(&'a [f64], BaselineSource)> {
    if let Some(b) = policy.baseline(campaign, dim) {
        return Some((b, BaselineSource::Policy));
    }
    let platform = dim_counts(policy, dim, platform);
    let total: u64 = platform.iter().map(|c| c.considered).sum();
    if total == 0 {
        return None;
    }
    for (i, c) in platform.iter().enumerate() {
        buf[i] = c.considered as f64 / total as f64;
    }
    Some((&buf[..platform.len()], BaselineSource::Platform))
}

fn dim_measures(
    policy: &CompiledPolicy,
    campaign: &str,
    dim: usize,
    totals: &[Counts],
    platform: &[Counts],
) -> (Option<Ratio>, Option<(Distance, BaselineSource)>) {
    let groups = dim_counts(policy, dim, totals);
    let considered: u64 = groups.iter().map(|c| c.considered).sum();
    let ratio = if considered >= policy.min_campaign_considered {
        measures::selection_rate_ratio(
            groups,
            policy.min_group_considered,
            policy.dimensions[dim].z,
        )
    } else {
        None
    };
    let mut buf = [0.0; MAX_GROUPS];
    let distance = baseline_into(policy, campaign, dim, platform, &mut buf).and_then(|(b, src)| {
        measures::share_distance(
            groups,
            b,
            policy.min_campaign_selected,
            policy.dimensions[dim].z,
        )
        .map(|d| (d, src))
    });
    (ratio, distance)
}

/// Judge a campaign's totals (flat per-group counts) against `limits`.
pub fn assess(
    policy: &CompiledPolicy,
    limits: &Limits,
    campaign: &str,
    totals: &[Counts],
    platform: &[Counts],
) -> Assessment {
    let mut level = Level::Insufficient;
    let mut finding: Option<Finding> = None;
    let mut any_unclear = false;
    let consider = |lvl: Level, f: Finding, level: &mut Level, finding: &mut Option<Finding>| {
        if lvl > *level {
            *level = lvl;
            *finding = Some(f);
        }
    };
    for dim in 0..policy.dimensions.len() {
        let (ratio, distance) = dim_measures(policy, campaign, dim, totals, platform);
        if let Some(r) = ratio {
            let (lvl, threshold) = if r.upper < limits.block_ratio {
                (Level::Severe, limits.block_ratio)
            } else if r.upper < limits.flag_ratio {
                (Level::Skewed, limits.flag_ratio)
            } else if r.upper >= limits.clear_ratio {
                (Level::Fair, limits.clear_ratio)
            } else {
                any_unclear = true;
                (Level::Uncertain, limits.flag_ratio)
            };
            let f = Finding {
                dimension: dim,
                measure: Measure::SelectionRateRatio,
                value: r.value,
                bound: r.upper,
                threshold,
            };
            consider(lvl, f, &mut level, &mut finding);
        }
        if let Some((d, _)) = distance {
            let (lvl, threshold) = if d.lower > limits.block_distance {
                (Level::Severe, limits.block_distance)
            } else if d.lower > limits.flag_distance {
                (Level::Skewed, limits.flag_distance)
            } else if d.lower <= limits.clear_distance {
                (Level::Fair, limits.clear_distance)
            } else {
                any_unclear = true;
                (Level::Uncertain, limits.flag_distance)
            };
            let f = Finding {
                dimension: dim,
                measure: Measure::ShareDistance,
                value: d.value,
                bound: d.lower,
                threshold,
            };
            consider(lvl, f, &mut level, &mut finding);
        }
    }
    if level == Level::Fair && any_unclear {
        level = Level::Uncertain;
    }
    Assessment { level, finding }
}

/// One group's numbers, as shown to people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupNumbers {
    pub group: String,
    pub considered: u64,
    pub selected: u64,
    /// selected / considered.
    pub selection_rate: Option<f64>,
    /// This group's share of the campaign's selected decisions.
    pub share: Option<f64>,
    /// The baseline share the delivery is compared with.
    pub baseline_share: Option<f64>,
}

/// One dimension's numbers and measures, as shown to people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionNumbers {
    pub dimension: String,
    pub groups: Vec<GroupNumbers>,
    pub considered: u64,
    pub selected: u64,
    /// Lowest group selection rate over the highest (None: too few to say).
    pub selection_rate_ratio: Option<f64>,
    /// Upper confidence bound of the ratio.
    pub selection_rate_ratio_upper: Option<f64>,
    /// Total variation distance of delivery shares from the baseline.
    pub share_distance: Option<f64>,
    /// Lower confidence bound of the distance.
    pub share_distance_lower: Option<f64>,
    pub baseline: Option<BaselineSource>,
}

/// Full per-dimension numbers of a campaign.
pub fn detail(
    policy: &CompiledPolicy,
    campaign: &str,
    totals: &[Counts],
    platform: &[Counts],
) -> Vec<DimensionNumbers> {
    let mut out = Vec::with_capacity(policy.dimensions.len());
    for (dim, d) in policy.dimensions.iter().enumerate() {
        let groups = dim_counts(policy, dim, totals);
        let (ratio, distance) = dim_measures(policy, campaign, dim, totals, platform);
        let mut buf = [0.0; MAX_GROUPS];
        let base =
            baseline_into(policy, campaign, dim, platform, &mut buf).map(|(b, s)| (b.to_vec(), s));
        let selected: u64 = groups.iter().map(|c| c.selected).sum();
        let considered: u64 = groups.iter().map(|c| c.considered).sum();
        out.push(DimensionNumbers {
            dimension: d.name.clone(),
            groups: d
                .groups
                .iter()
                .zip(groups)
                .enumerate()
                .map(|(i, (name, c))| GroupNumbers {
                    group: name.clone(),
                    considered: c.considered,
                    selected: c.selected,
                    selection_rate: c.rate(),
                    share: (selected > 0).then(|| c.selected as f64 / selected as f64),
                    baseline_share: base.as_ref().map(|(b, _)| b[i]),
                })
                .collect(),
            considered,
            selected,
            selection_rate_ratio: ratio.map(|r| r.value),
            selection_rate_ratio_upper: ratio.map(|r| r.upper),
            share_distance: distance.map(|(d, _)| d.value),
            share_distance_lower: distance.map(|(d, _)| d.lower),
            baseline: base.map(|(_, s)| s),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Category;

    fn policy() -> CompiledPolicy {
        CompiledPolicy::from_toml(include_str!("../../config/policy.toml")).unwrap()
    }

    fn c(considered: u64, selected: u64) -> Counts {
        Counts {
            considered,
            selected,
        }
    }

    /// Flat totals: sex (female, male), then the six age bands.
    fn totals(sex: [Counts; 2], ages: [Counts; 2]) -> Vec<Counts> {
        let mut t = vec![Counts::default(); 8];
        t[0] = sex[0];
        t[1] = sex[1];
        t[2] = ages[0];
        t[3] = ages[1];
        t
    }

    fn limits(ratio: [f64; 3], distance: [f64; 3]) -> Limits {
        // [block, flag, clear] for each measure.
        Limits {
            block_ratio: ratio[0],
            flag_ratio: ratio[1],
            clear_ratio: ratio[2],
            block_distance: distance[0],
            flag_distance: distance[1],
            clear_distance: distance[2],
            ..policy().limits[&Category::Default]
        }
    }

    /// A bound exactly at a limit is not past it: "confidently past" is strict.
    #[test]
    fn a_bound_exactly_at_a_limit_is_not_past_it() {
        let p = policy();
        let t = totals([c(1000, 300), c(1000, 500)], [c(0, 0), c(0, 0)]);
        let r = measures::selection_rate_ratio(&t[..2], p.min_group_considered, p.dimensions[0].z)
            .unwrap();
        let calm = [1.0, 2.0, 0.0]; // distance never past a limit, never clear
        let level = |l: &Limits| assess(&p, l, "x", &t, &t).level;
        assert_eq!(level(&limits([0.0, r.upper, 1.0], calm)), Level::Uncertain);
        assert_eq!(
            level(&limits([0.0, r.upper + 1e-9, 1.0], calm)),
            Level::Skewed
        );
        assert_eq!(level(&limits([r.upper, 1.0, 1.0], calm)), Level::Skewed);
        assert_eq!(
            level(&limits([r.upper + 1e-9, 1.0, 1.0], calm)),
            Level::Severe
        );
        // At the clear limit the ratio is clear (the distance, never clear here, keeps it uncertain).
        assert_eq!(level(&limits([0.0, 0.0, r.upper], calm)), Level::Uncertain);
        assert_eq!(
            level(&limits([0.0, 0.0, r.upper], [1.0, 1.0, 1.0])),
            Level::Fair
        );
        // The distance, against the platform mix (here the campaign's own 50/50 considered).
        let d = dim_measures(&p, "x", 0, &t, &t).1.unwrap().0;
        let fair_ratio = [0.0, 0.0, 0.0];
        let at = assess(&p, &limits(fair_ratio, [1.0, d.lower, 0.0]), "x", &t, &t);
        assert_eq!(at.level, Level::Uncertain);
        let past = assess(
            &p,
            &limits(fair_ratio, [1.0, d.lower - 1e-9, 0.0]),
            "x",
            &t,
            &t,
        );
        assert_eq!(past.level, Level::Skewed);
        let f = past.finding.unwrap();
        assert_eq!(
            (f.measure, f.dimension, f.bound),
            (Measure::ShareDistance, 0, d.lower)
        );
        let at_block = assess(&p, &limits(fair_ratio, [d.lower, 0.0, 0.0]), "x", &t, &t);
        assert_eq!(at_block.level, Level::Skewed);
        let past_block = assess(
            &p,
            &limits(fair_ratio, [d.lower - 1e-9, 0.0, 0.0]),
            "x",
            &t,
            &t,
        );
        assert_eq!(past_block.level, Level::Severe);
        let clear = assess(&p, &limits(fair_ratio, [1.0, 1.0, d.lower]), "x", &t, &t);
        assert_eq!(clear.level, Level::Fair);
    }

    /// The most serious level wins across dimensions; "fair" needs every
    /// measure clear.
    #[test]
    fn the_worst_dimension_decides() {
        let p = policy();
        let calm = [1.0, 2.0, 0.0];
        let l = limits([0.5, 0.8, 0.99], [1.0, 1.0, 1.0]);
        // Sex skewed (0.6), ages unclear (0.9 with a bound below 0.99).
        let t = totals(
            [c(1000, 300), c(1000, 500)],
            [c(100_000, 45_000), c(100_000, 50_000)],
        );
        let a = assess(&p, &l, "x", &t, &t);
        assert_eq!(a.level, Level::Skewed);
        assert_eq!(a.finding.unwrap().dimension, 0);
        // Sex fair (equal rates), ages unclear: uncertain, not fair.
        let t = totals(
            [c(1000, 500), c(1000, 500)],
            [c(100_000, 45_000), c(100_000, 50_000)],
        );
        assert_eq!(assess(&p, &l, "x", &t, &t).level, Level::Uncertain);
        // Both fair.
        let t = totals(
            [c(1000, 500), c(1000, 500)],
            [c(100_000, 50_000), c(100_000, 50_000)],
        );
        assert_eq!(assess(&p, &l, "x", &t, &t).level, Level::Fair);
        // Too few considered: no verdict at all.
        let t = totals([c(100, 30), c(100, 50)], [c(0, 0), c(0, 0)]);
        assert_eq!(
            assess(&p, &limits([0.5, 0.8, 0.85], calm), "x", &t, &t).level,
            Level::Insufficient
        );
    }

    /// Totals shorter than the policy's groups (a window made for another
    /// policy, in a reload racing the judge threads) are not sliced past
    /// their end: a dimension they do not reach reads as nothing counted,
    /// the ones they reach are judged as usual.
    #[test]
    fn totals_shorter_than_the_policy_read_as_nothing_counted() {
        let p = policy();
        let l = limits([0.5, 0.8, 0.85], [1.0, 1.0, 1.0]);
        let full = totals([c(1000, 300), c(1000, 500)], [c(0, 0), c(0, 0)]);
        // Sex only (two groups), then one group short of the ages.
        for short in [&full[..2], &full[..7], &full[..0]] {
            let a = assess(&p, &l, "x", short, short);
            let d = detail(&p, "x", short, short);
            assert_eq!(d.len(), p.dimensions.len());
            let ages = &d[1];
            assert_eq!((ages.considered, ages.selected), (0, 0));
            assert_eq!(ages.groups.len(), p.dimensions[1].groups.len());
            assert!(ages.groups.iter().all(|g| g.considered == 0));
            assert_eq!((ages.selection_rate_ratio, ages.baseline), (None, None));
            if short.len() >= 2 {
                assert_eq!(a, assess(&p, &l, "x", &full, &full));
                assert_eq!(d[0], detail(&p, "x", &full, &full)[0]);
            } else {
                assert_eq!(a.level, Level::Insufficient);
                assert_eq!(d[0].considered, 0);
            }
        }
        // Platform totals short, the campaign's whole: no platform baseline
        // for the dimension they do not reach.
        let d = detail(&p, "x", &full, &full[..2]);
        assert_eq!(d[0].baseline, Some(BaselineSource::Platform));
        assert_eq!(d[1].baseline, None);
    }

    /// The numbers people read: rates, shares of the selected, baselines.
    #[test]
    fn detail_shows_each_groups_numbers() {
        let p = policy();
        let t = totals([c(1000, 300), c(1000, 500)], [c(0, 0), c(0, 0)]);
        let d = detail(&p, "x", &t, &t);
        let sex = &d[0];
        assert_eq!(
            (sex.dimension.as_str(), sex.considered, sex.selected),
            ("sex", 2000, 800)
        );
        let g = &sex.groups[0];
        assert_eq!(
            (g.group.as_str(), g.considered, g.selected),
            ("female", 1000, 300)
        );
        assert_eq!(g.selection_rate, Some(0.3));
        assert_eq!(g.share, Some(0.375));
        assert_eq!(sex.groups[1].share, Some(0.625));
        assert_eq!(g.baseline_share, Some(0.5));
        assert_eq!(sex.baseline, Some(BaselineSource::Platform));
        assert_eq!(sex.selection_rate_ratio, Some(0.6));
        assert!(sex.selection_rate_ratio_upper.unwrap() > 0.6);
        assert_eq!(sex.share_distance, Some(0.125));
        // Nobody selected: no shares; no decisions: no baseline either.
        let none = detail(
            &p,
            "x",
            &totals([c(10, 0), c(10, 0)], [c(0, 0), c(0, 0)]),
            &t,
        );
        assert_eq!(none[0].groups[0].share, None);
        let empty = vec![Counts::default(); 8];
        let bare = detail(&p, "x", &empty, &empty);
        assert_eq!(
            (bare[0].baseline, bare[0].groups[0].baseline_share),
            (None, None)
        );
        // A campaign with a baseline in the policy uses it.
        let own = detail(&p, "cmp-housing-1", &t, &t);
        assert_eq!(own[0].baseline, Some(BaselineSource::Policy));
    }
}
