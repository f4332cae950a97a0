//! The compiled policy: every lookup the hot path needs, validated and
//! prepared.

use std::collections::HashMap;

use super::file::{BandTransform, CoarsenWhen, Fallback, GdprUnknown, Mode};
use super::pointer::{Pointer, RemovalGroup, SegmentMatcher};

/// Most groups, over all dimensions, a policy may count (keeps the hot path on the stack).
pub const MAX_TOTAL_GROUPS: usize = 64;

/// A compiled coarsening.
#[derive(Debug, Clone)]
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
    pub bands: Vec<(i64, i64, usize)>,
    pub transform: Option<BandTransform>,
}

impl Dimension {
    /// Index of a group label, if counted.
    pub fn group_index(&self, label: &str) -> Option<usize> {
        self.groups.iter().position(|g| g == label)
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

    /// Whether two policies measure the same dimensions and groups over the
    /// same window, so that counted exposure can be carried across a reload.
    pub fn same_windows(&self, other: &CompiledPolicy) -> bool {
        self.window_ms == other.window_ms
            && self.bucket_ms == other.bucket_ms
            && self.dimensions.len() == other.dimensions.len()
            && self
                .dimensions
                .iter()
                .zip(&other.dimensions)
                .all(|(a, b)| a.name == b.name && a.pointer == b.pointer && a.groups == b.groups)
    }

    /// Eligible-audience baseline of a campaign for one dimension, if the policy gives one.
    pub fn baseline(&self, campaign: &str, dim: usize) -> Option<&[f64]> {
        self.baselines
            .get(campaign)
            .and_then(|v| v.get(dim))
            .and_then(|o| o.as_deref())
    }
}
