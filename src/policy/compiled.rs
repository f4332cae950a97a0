//! The compiled policy: every lookup the hot path needs, validated and
//! prepared.

use std::collections::HashMap;

use super::file::{BandTransform, CoarsenWhen, Fallback, GdprUnknown, Mode};
use super::pointer::{Pointer, RemovalGroup, SegmentMatcher};

/// Most groups, over all dimensions, a policy may count (keeps the hot path on the stack).
pub const MAX_TOTAL_GROUPS: usize = 64;

/// A compiled coarsening.
#[derive(Debug, Clone, PartialEq)]
pub struct Coarsen {
    pub pointer: Pointer,
    pub op: CoarsenOp,
    pub when: CoarsenWhen,
}

/// What a coarsening does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoarsenOp {
    Ip { v4_bits: u8, v6_bits: u8 },
    Round { decimals: u32 },
    Truncate { keep_chars: usize },
}

/// A compiled dimension.
#[derive(Debug, Clone)]
pub struct Dimension {
    pub name: String,
    /// Normal quantile for this dimension's per-group intervals: the policy's
    /// confidence with a Bonferroni correction over its groups, so that all of
    /// them hold at once (the lowest and highest rate are picked from many
    /// groups, and chance alone makes small groups look apart).
    pub z: f64,
    pub pointer: Pointer,
    pub groups: Vec<String>,
    /// `(min, max, group index)` of each band; no two overlap (refused
    /// when compiled), so a number is in at most one.
    pub bands: Vec<(i64, i64, usize)>,
    pub transform: Option<BandTransform>,
}

impl Dimension {
    /// Index of a group label, if counted.
    pub fn group_index(&self, label: &str) -> Option<usize> {
        self.groups.iter().position(|g| g == label)
    }

    /// Whether `other` counts every decision in the same group: same name,
    /// field, groups, and mapping of numbers to groups (bands, transform).
    /// Counts made under one can be judged under the other.
    pub fn counts_like(&self, other: &Dimension) -> bool {
        self.name == other.name
            && self.pointer == other.pointer
            && self.groups == other.groups
            && self.bands == other.bands
            && self.transform == other.transform
    }
}

/// Limits ready for use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub flag_ratio: f64,
    pub clear_ratio: f64,
    pub block_ratio: f64,
    pub flag_distance: f64,
    pub clear_distance: f64,
    pub block_distance: f64,
    pub block_after_ms: i64,
    pub min_dwell_ms: i64,
}

/// Campaign categories that may carry stricter limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Default,
    Housing,
    Employment,
    Credit,
}

impl Category {
    pub const SPECIAL: [&'static str; 3] = ["housing", "employment", "credit"];

    pub fn parse(s: &str) -> Option<Category> {
        match s {
            "default" => Some(Category::Default),
            "housing" => Some(Category::Housing),
            "employment" => Some(Category::Employment),
            "credit" => Some(Category::Credit),
            _ => None,
        }
    }

    /// The category of a campaign from its `campaign.category`; anything else is `Default`.
    pub fn of_campaign(label: Option<&str>) -> Category {
        match label {
            Some("housing") => Category::Housing,
            Some("employment") => Category::Employment,
            Some("credit") => Category::Credit,
            _ => Category::Default,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Default => "default",
            Category::Housing => "housing",
            Category::Employment => "employment",
            Category::Credit => "credit",
        }
    }
}

/// Everything the core needs from a policy, validated and prepared.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub version: String,
    pub mode: Mode,
    pub vendor_id: u16,
    /// Bit `p` set for each required purpose `p`.
    pub required_purposes_mask: u32,
    pub required_purposes: Vec<u8>,
    pub max_age_ms: i64,
    pub gdpr_unknown: GdprUnknown,
    pub no_consent: Fallback,
    pub opt_out: Fallback,
    pub child: Fallback,
    pub cache_entries: usize,
    /// Memory budget of the decoded-string cache, in bytes.
    pub cache_bytes: u64,
    /// Longest TCF or GPP string decoded, in bytes.
    pub max_string_bytes: usize,
    pub always: Vec<Pointer>,
    pub unless_personalised: Vec<Pointer>,
    /// `always`, grouped by parent object (one lookup per parent on the hot path).
    pub always_plan: Vec<RemovalGroup>,
    /// `unless_personalised`, grouped by parent object.
    pub personal_plan: Vec<RemovalGroup>,
    /// Removed when the user is a child (COPPA, known child).
    pub when_child: Vec<Pointer>,
    /// Removed when `device.lmt = 1`.
    pub when_lmt: Vec<Pointer>,
    /// `when_child`, grouped by parent object.
    pub child_plan: Vec<RemovalGroup>,
    /// `when_lmt`, grouped by parent object.
    pub lmt_plan: Vec<RemovalGroup>,
    pub coarsen: Vec<Coarsen>,
    pub segments: Option<SegmentMatcher>,
    pub window_ms: i64,
    pub bucket_ms: i64,
    pub buckets: usize,
    pub max_future_ms: i64,
    pub idle_evict_ms: i64,
    pub confidence: f64,
    /// The normal quantile of `confidence` (two-sided), used by the Wilson interval.
    pub z: f64,
    pub min_campaign_considered: u64,
    pub min_campaign_selected: u64,
    pub min_group_considered: u64,
    pub dimensions: Vec<Dimension>,
    /// Offset of each dimension's first group in a flat per-group array.
    pub group_offsets: Vec<usize>,
    pub total_groups: usize,
    pub limits: HashMap<Category, Limits>,
    /// campaign id -> dimension index -> shares per group.
    pub baselines: HashMap<String, Vec<Option<Vec<f64>>>>,
}

impl CompiledPolicy {
    /// The limits for a campaign category (falling back to `default`).
    pub fn limits_for(&self, category: Category) -> &Limits {
        self.limits
            .get(&category)
            .or_else(|| self.limits.get(&Category::Default))
            .expect("validated: default limits exist")
    }

    /// Whether two policies measure the same dimensions and groups, mapped
    /// the same way (bands, transform), over the same window, so that
    /// counted exposure can be carried across a reload.
    pub fn same_windows(&self, other: &CompiledPolicy) -> bool {
        self.window_ms == other.window_ms
            && self.bucket_ms == other.bucket_ms
            && self.dimensions.len() == other.dimensions.len()
            && self
                .dimensions
                .iter()
                .zip(&other.dimensions)
                .all(|(a, b)| a.counts_like(b))
    }

    /// Whether `other` gives every decision the same consent verdict: the
    /// same settings of the consent evaluator (the cache's size aside).
    /// The shadow policy reuses the live verdict when it does.
    pub fn same_consent(&self, other: &CompiledPolicy) -> bool {
        self.rules().0 == other.rules().0
    }

    /// Whether `other` strips and coarsens every decision the same way,
    /// given the same verdict. The shadow policy reuses the live stripped
    /// record when it does and the two verdicts agree on what stripping reads.
    pub fn same_strip(&self, other: &CompiledPolicy) -> bool {
        self.rules().1 == other.rules().1
    }

    /// Every field, sorted into what decides consent, what decides
    /// stripping, and the rest (fairness, version, cache sizes). No field
    /// is skipped with `..`: a field added to the policy must be sorted here.
    fn rules(&self) -> (ConsentRules<'_>, StripRules<'_>) {
        let CompiledPolicy {
            version: _,
            mode: _,
            vendor_id,
            required_purposes_mask,
            required_purposes: _,
            max_age_ms,
            gdpr_unknown,
            no_consent,
            opt_out,
            child,
            cache_entries: _,
            cache_bytes: _,
            max_string_bytes,
            always,
            unless_personalised,
            always_plan,
            personal_plan,
            when_child,
            when_lmt,
            child_plan,
            lmt_plan,
            coarsen,
            segments,
            window_ms: _,
            bucket_ms: _,
            buckets: _,
            max_future_ms: _,
            idle_evict_ms: _,
            confidence: _,
            z: _,
            min_campaign_considered: _,
            min_campaign_selected: _,
            min_group_considered: _,
            dimensions: _,
            group_offsets: _,
            total_groups: _,
            limits: _,
            baselines: _,
        } = self;
        (
            ConsentRules {
                vendor_id,
                required_purposes_mask,
                max_age_ms,
                gdpr_unknown,
                no_consent,
                opt_out,
                child,
                max_string_bytes,
            },
            StripRules {
                always,
                unless_personalised,
                always_plan,
                personal_plan,
                when_child,
                when_lmt,
                child_plan,
                lmt_plan,
                coarsen,
                segments: segments.as_ref().map(|s| (&s.pointer, &s.source)),
            },
        )
    }

    /// The name of dimension `i`, or `"unknown"` past this policy's
    /// dimensions (a finding read from the campaign table may be another
    /// policy's: a rollout, a reload that dropped a dimension).
    pub fn dimension_name(&self, i: usize) -> &str {
        self.dimensions
            .get(i)
            .map_or("unknown", |d| d.name.as_str())
    }

    /// Eligible-audience baseline of a campaign for one dimension, if the policy gives one.
    pub fn baseline(&self, campaign: &str, dim: usize) -> Option<&[f64]> {
        self.baselines
            .get(campaign)
            .and_then(|v| v.get(dim))
            .and_then(|o| o.as_deref())
    }
}

/// What a policy's consent verdicts depend on ([`CompiledPolicy::same_consent`]).
#[derive(PartialEq)]
struct ConsentRules<'a> {
    vendor_id: &'a u16,
    required_purposes_mask: &'a u32,
    max_age_ms: &'a i64,
    gdpr_unknown: &'a GdprUnknown,
    no_consent: &'a Fallback,
    opt_out: &'a Fallback,
    child: &'a Fallback,
    max_string_bytes: &'a usize,
}

/// What a policy's stripping depends on ([`CompiledPolicy::same_strip`]);
/// segment patterns by their source (the matcher is built from it).
#[derive(PartialEq)]
struct StripRules<'a> {
    always: &'a [Pointer],
    unless_personalised: &'a [Pointer],
    always_plan: &'a [RemovalGroup],
    personal_plan: &'a [RemovalGroup],
    when_child: &'a [Pointer],
    when_lmt: &'a [Pointer],
    child_plan: &'a [RemovalGroup],
    lmt_plan: &'a [RemovalGroup],
    coarsen: &'a [Coarsen],
    segments: Option<(&'a Pointer, &'a Vec<String>)>,
}
