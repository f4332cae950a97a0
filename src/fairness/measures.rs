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
    // At k = 0 (k = n) the bound is exactly 0 (1); computed, it can miss
    // by a rounding error and leave the observed rate outside its interval.
    let lo = if k == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if k as f64 >= n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (lo, hi)
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

    /// Newcombe (1998), "Two-sided confidence intervals for the single
    /// proportion", Table I, method 3 (Wilson score, no continuity correction).
    #[test]
    fn wilson_matches_newcombes_table() {
        for (k, n, lo, hi) in [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ] {
            let (l, h) = wilson(k, n, 1.959_964);
            assert!(
                (l - lo).abs() < 1e-4 && (h - hi).abs() < 1e-4,
                "{k}/{n}: ({l}, {h})"
            );
        }
        assert_eq!(wilson(0, 0, 1.96), (0.0, 1.0));
        let (l, h) = wilson(20, 20, 1.959_964);
        assert!((l - (1.0 - 0.1611)).abs() < 1e-4 && h == 1.0, "{l} {h}");
    }

    /// The Wilson interval's ends are the roots of
    /// `(n + z²)p² − (2k + z²)p + k²/n = 0`: an oracle that shares no code
    /// with `wilson`.
    fn wilson_roots(k: u64, n: u64, z: f64) -> (f64, f64) {
        let (k, n) = (k as f64, n as f64);
        let a = n + z * z;
        let b = -(2.0 * k + z * z);
        let c = k * k / n;
        let d = (b * b - 4.0 * a * c).max(0.0).sqrt();
        (
            ((-b - d) / (2.0 * a)).max(0.0),
            ((-b + d) / (2.0 * a)).min(1.0),
        )
    }

    #[test]
    fn the_bounds_are_conservative_and_tighten_with_data() {
        // 40% against 50%: ratio 0.8. The upper bound sits above it and closes
        // in as the counts grow; at 10 million each it is within 0.002.
        let mut last = f64::INFINITY;
        for n in [100u64, 1_000, 10_000, 100_000, 10_000_000] {
            let r = selection_rate_ratio(&[c(n, n * 4 / 10), c(n, n / 2)], 1, 1.96).unwrap();
            assert!(r.upper > 0.8 && r.upper < last, "{n}: {}", r.upper);
            last = r.upper;
        }
        assert!(last - 0.8 < 0.002, "{last}");
        // A 70/30 delivery against a 50/50 baseline: distance 0.2, the lower
        // bound below it, closing in with data.
        let mut last = -1.0;
        for n in [100u64, 10_000, 10_000_000] {
            let d = share_distance(&[c(n, n * 7 / 10), c(n, n * 3 / 10)], &[0.5, 0.5], 1, 1.96)
                .unwrap();
            assert!((d.value - 0.2).abs() < 1e-9);
            assert!(d.lower < 0.2 && d.lower > last, "{n}: {}", d.lower);
            last = d.lower;
        }
        assert!(0.2 - last < 0.001, "{last}");
        // A wider interval (higher z) gives a more cautious bound.
        let g = [c(400, 120), c(400, 200)];
        let loose = selection_rate_ratio(&g, 1, 1.64).unwrap().upper;
        let strict = selection_rate_ratio(&g, 1, 2.58).unwrap().upper;
        assert!(strict > loose, "{strict} {loose}");
    }

    #[test]
    fn ratio_edge_cases() {
        // Nobody selected anywhere: no ratio. The highest group at 0 after the
        // lowest qualifies: none either.
        assert!(selection_rate_ratio(&[c(100, 0), c(100, 0)], 1, 1.96).is_none());
        // One group selected, one not at all: ratio 0, and the bound is below 1.
        let r = selection_rate_ratio(&[c(1000, 0), c(1000, 500)], 1, 1.96).unwrap();
        assert_eq!((r.value, r.low, r.high), (0.0, 0, 1));
        assert!(r.upper > 0.0 && r.upper < 0.02, "{}", r.upper);
        // A group exactly at the minimum counts; one below it does not.
        assert!(selection_rate_ratio(&[c(50, 10), c(50, 20)], 50, 1.96).is_some());
        assert!(selection_rate_ratio(&[c(49, 10), c(50, 20)], 50, 1.96).is_none());
        // Empty groups never count, even with a minimum of 0.
        assert!(selection_rate_ratio(&[c(0, 0), c(50, 20)], 0, 1.96).is_none());
        // Too few selected for a distance; exactly the minimum is enough.
        assert!(share_distance(&[c(0, 60), c(0, 39)], &[0.5, 0.5], 100, 1.96).is_none());
        assert!(share_distance(&[c(0, 60), c(0, 40)], &[0.5, 0.5], 100, 1.96).is_some());
        assert!(share_distance(&[c(0, 60), c(0, 40)], &[1.0], 1, 1.96).is_none());
        assert_eq!(
            considered_shares(&[c(30, 0), c(10, 0)]),
            Some(vec![0.75, 0.25])
        );
        assert_eq!(considered_shares(&[c(0, 0)]), None);
        assert_eq!(c(4, 1).rate(), Some(0.25));
        assert_eq!(c(0, 0).rate(), None);
    }

    proptest! {
        #[test]
        fn wilson_agrees_with_the_quadratic(k in 0u64..5000, extra in 0u64..5000, z in 0.5f64..4.0) {
            let n = k + extra + 1;
            let (lo, hi) = wilson(k, n, z);
            let (rlo, rhi) = wilson_roots(k, n, z);
            prop_assert!((lo - rlo).abs() < 1e-9 && (hi - rhi).abs() < 1e-9, "{} {} vs {} {}", lo, hi, rlo, rhi);
            let p = k as f64 / n as f64;
            prop_assert!(lo <= p && p <= hi);
        }

        #[test]
        fn ratio_equals_direct_computation(
            counts in proptest::collection::vec((1u64..5000, 0u64..5000), 2..8),
            min_group in 1u64..3000,
        ) {
            let groups: Vec<Counts> = counts.iter().map(|&(n, k)| c(n, k.min(n))).collect();
            // The groups that qualify, and their rates, computed here.
            let rated: Vec<(usize, f64)> = groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.considered >= min_group)
                .map(|(i, g)| (i, g.selected as f64 / g.considered as f64))
                .collect();
            let lowest = rated.iter().copied().reduce(|a, b| if b.1 < a.1 { b } else { a });
            let highest = rated.iter().copied().reduce(|a, b| if b.1 > a.1 { b } else { a });
            match selection_rate_ratio(&groups, min_group, 1.96) {
                Some(r) => {
                    let ((li, lr), (hi, hr)) = (lowest.unwrap(), highest.unwrap());
                    prop_assert!(rated.len() >= 2 && hr > 0.0);
                    prop_assert_eq!((r.low, r.high), (li, hi));
                    prop_assert!((r.value - lr / hr).abs() < 1e-12);
                    let (_, low_hi) = wilson_roots(groups[li].selected, groups[li].considered, 1.96);
                    let (high_lo, _) = wilson_roots(groups[hi].selected, groups[hi].considered, 1.96);
                    let expect = if high_lo <= 0.0 { 1.0 } else { (low_hi / high_lo).min(1.0) }.max(lr / hr);
                    prop_assert!((r.upper - expect).abs() < 1e-9, "{} vs {}", r.upper, expect);
                }
                None => prop_assert!(rated.len() < 2 || highest.unwrap().1 == 0.0),
            }
        }

        #[test]
        fn distance_equals_direct_computation(
            sel in proptest::collection::vec(0u64..5000, 2..8),
            raw in proptest::collection::vec(1u32..100, 8),
            min_selected in 1u64..2000,
        ) {
            let groups: Vec<Counts> = sel.iter().map(|&k| c(k, k)).collect();
            let w: Vec<f64> = raw[..groups.len()].iter().map(|&x| x as f64).collect();
            let sum: f64 = w.iter().sum();
            let baseline: Vec<f64> = w.iter().map(|x| x / sum).collect();
            let total: u64 = sel.iter().sum();
            match share_distance(&groups, &baseline, min_selected, 1.96) {
                Some(d) => {
                    prop_assert!(total >= min_selected);
                    let mut value = 0.0;
                    let mut lower = 0.0;
                    for (&k, &b) in sel.iter().zip(&baseline) {
                        value += (k as f64 / total as f64 - b).abs() / 2.0;
                        // The point of the group's interval nearest the baseline.
                        let (lo, hi) = wilson_roots(k, total, 1.96);
                        lower += (b.clamp(lo, hi) - b).abs() / 2.0;
                    }
                    prop_assert!((d.value - value).abs() < 1e-12);
                    prop_assert!((d.lower - lower).abs() < 1e-9, "{} vs {}", d.lower, lower);
                }
                None => prop_assert!(total < min_selected),
            }
        }

        #[test]
        fn total_variation_of_two_distributions(a in proptest::collection::vec(0.0f64..1.0, 1..8)) {
            let rev: Vec<f64> = a.iter().rev().copied().collect();
            let direct: f64 = a.iter().zip(&rev).map(|(x, y)| (x - y).abs()).sum::<f64>() / 2.0;
            prop_assert!((total_variation(&a, &rev) - direct).abs() < 1e-12);
            prop_assert_eq!(total_variation(&a, &a), 0.0);
        }
    }
}
