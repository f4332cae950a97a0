//! The two skew measures, with confidence bounds. Pure arithmetic on counts.
//!
//! * **Selection-rate ratio**: the lowest group's selection rate over the
//!   highest's (the four-fifths rule flags below 0.8). Its conservative bound
//!   is the *upper* end: `wilson_hi(lowest) / wilson_lo(highest)`. A campaign
//!   is only flagged when even that bound is below the limit.
//! * **Delivery-share distance**: the total variation distance
//!   `½·Σ|share_g − baseline_g|` between the campaign's selected shares and a
//!   baseline. Its conservative bound is the *lower* end: each group's share
//!   is replaced by the nearest point of its Wilson interval to the baseline.

use serde::Serialize;

/// Considered and selected counts of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub considered: u64,
    pub selected: u64,
}

impl Counts {
    pub fn rate(&self) -> Option<f64> {
        (self.considered > 0).then(|| self.selected as f64 / self.considered as f64)
    }
}

/// Wilson score interval for `k` successes in `n` trials at normal quantile `z`.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The selection-rate ratio of one dimension.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    /// Lowest rate over highest rate.
    pub value: f64,
    /// Conservative (upper) confidence bound of the ratio.
    pub upper: f64,
    /// Index of the group with the lowest rate.
    pub low: usize,
    /// Index of the group with the highest rate.
    pub high: usize,
}

/// Selection-rate ratio over the groups with at least `min_group` considered.
/// `None` when fewer than two groups qualify or nobody was selected.
pub fn selection_rate_ratio(groups: &[Counts], min_group: u64, z: f64) -> Option<Ratio> {
    let mut low: Option<(usize, f64)> = None;
    let mut high: Option<(usize, f64)> = None;
    let mut eligible = 0;
    for (i, c) in groups.iter().enumerate() {
        if c.considered < min_group.max(1) {
            continue;
        }
        eligible += 1;
        let r = c.selected as f64 / c.considered as f64;
        if low.is_none_or(|(_, lr)| r < lr) {
            low = Some((i, r));
        }
        if high.is_none_or(|(_, hr)| r > hr) {
            high = Some((i, r));
        }
    }
    let ((li, lr), (hi, hr)) = (low?, high?);
    if eligible < 2 || hr <= 0.0 {
        return None;
    }
    let value = lr / hr;
    let (_, low_hi) = wilson(groups[li].selected, groups[li].considered, z);
    let (high_lo, _) = wilson(groups[hi].selected, groups[hi].considered, z);
    let upper = if high_lo <= 0.0 {
        1.0
    } else {
        (low_hi / high_lo).min(1.0)
    };
    Some(Ratio {
        value,
        upper: upper.max(value),
        low: li,
        high: hi,
    })
}

/// The delivery-share distance of one dimension.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distance {
    /// Total variation distance between selected shares and the baseline.
    pub value: f64,
    /// Conservative (lower) confidence bound.
    pub lower: f64,
}

/// Total variation distance between two distributions of equal length.
pub fn total_variation(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// Delivery-share distance of `groups`' selected counts from `baseline`
/// shares. `None` below `min_selected` selected in all.
pub fn share_distance(
    groups: &[Counts],
    baseline: &[f64],
    min_selected: u64,
    z: f64,
) -> Option<Distance> {
    let total: u64 = groups.iter().map(|c| c.selected).sum();
    if total < min_selected.max(1) || groups.len() != baseline.len() {
        return None;
    }
    let mut value = 0.0;
    let mut lower = 0.0;
    for (c, &b) in groups.iter().zip(baseline) {
        let share = c.selected as f64 / total as f64;
        value += (share - b).abs();
        let (lo, hi) = wilson(c.selected, total, z);
        lower += if b < lo {
            lo - b
        } else if b > hi {
            b - hi
        } else {
            0.0
        };
    }
    Some(Distance {
        value: 0.5 * value,
        lower: 0.5 * lower,
    })
}

/// Shares of a count vector (by `considered`), or `None` when empty.
pub fn considered_shares(groups: &[Counts]) -> Option<Vec<f64>> {
    let total: u64 = groups.iter().map(|c| c.considered).sum();
    (total > 0).then(|| {
        groups
            .iter()
            .map(|c| c.considered as f64 / total as f64)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(considered: u64, selected: u64) -> Counts {
        Counts {
            considered,
            selected,
        }
    }

    #[test]
    fn wilson_matches_a_textbook_value() {
        // 81 of 263, 95%: (0.2553, 0.3662) (Newcombe 1998, table I style check).
        let (lo, hi) = wilson(81, 263, 1.959_964);
        assert!((lo - 0.2553).abs() < 1e-3, "{lo}");
        assert!((hi - 0.3662).abs() < 1e-3, "{hi}");
    }

    #[test]
    fn four_fifths_example() {
        // 48% vs 60% selected: ratio 0.8 exactly.
        let r = selection_rate_ratio(&[c(1000, 480), c(1000, 600)], 50, 1.96).unwrap();
        assert!((r.value - 0.8).abs() < 1e-12);
        assert_eq!((r.low, r.high), (0, 1));
        assert!(r.upper > r.value);
    }

    #[test]
    fn small_groups_do_not_count() {
        assert!(selection_rate_ratio(&[c(1000, 480), c(10, 9)], 50, 1.96).is_none());
    }

    #[test]
    fn distance_of_identical_mix_is_zero() {
        let d = share_distance(&[c(0, 500), c(0, 500)], &[0.5, 0.5], 100, 1.96).unwrap();
        assert_eq!(d.value, 0.0);
        assert_eq!(d.lower, 0.0);
        assert!(share_distance(&[c(0, 5), c(0, 5)], &[0.5, 0.5], 100, 1.96).is_none());
    }

    proptest! {
        #[test]
        fn ratio_equals_direct_computation(
            counts in proptest::collection::vec((1u64..5000, 0u64..5000), 2..8)
        ) {
            let groups: Vec<Counts> = counts.iter().map(|&(n, k)| c(n, k.min(n))).collect();
            let rates: Vec<f64> = groups.iter().map(|g| g.selected as f64 / g.considered as f64).collect();
            let max = rates.iter().cloned().fold(f64::MIN, f64::max);
            let min = rates.iter().cloned().fold(f64::MAX, f64::min);
            match selection_rate_ratio(&groups, 1, 1.96) {
                Some(r) => {
                    prop_assert!((r.value - min / max).abs() < 1e-12);
                    prop_assert!(r.upper >= r.value - 1e-12 && r.upper <= 1.0);
                }
                None => prop_assert!(max == 0.0),
            }
        }

        #[test]
        fn distance_equals_direct_computation(
            sel in proptest::collection::vec(0u64..5000, 2..8),
            raw in proptest::collection::vec(1u32..100, 8)
        ) {
            let groups: Vec<Counts> = sel.iter().map(|&k| c(k, k)).collect();
            let w: Vec<f64> = raw[..groups.len()].iter().map(|&x| x as f64).collect();
            let sum: f64 = w.iter().sum();
            let baseline: Vec<f64> = w.iter().map(|x| x / sum).collect();
            let total: u64 = sel.iter().sum();
            match share_distance(&groups, &baseline, 1, 1.96) {
                Some(d) => {
                    let shares: Vec<f64> = sel.iter().map(|&k| k as f64 / total as f64).collect();
                    prop_assert!((d.value - total_variation(&shares, &baseline)).abs() < 1e-12);
                    prop_assert!(d.lower <= d.value + 1e-12 && d.lower >= 0.0);
                }
                None => prop_assert_eq!(total, 0),
            }
        }
    }
}
