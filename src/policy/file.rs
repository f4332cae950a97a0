//! The policy file format, as written: what each section may hold and its
//! defaults. Arrays whose entries are checked one by one (`strip.coarsen`,
//! `fairness.dimensions`, `fairness.limits`, `fairness.baselines`) are kept as
//! raw TOML here, so that one bad entry does not hide the others.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The policy file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// A version label carried on every published record (`fairgate-policy-version`).
    pub version: String,
    /// `monitor` (flag only, never block) or `enforce` (block severe or sustained skew).
    #[serde(default)]
    pub mode: Mode,
    /// Consent rules.
    pub consent: ConsentPolicy,
    /// What is removed or coarsened.
    pub strip: StripPolicy,
    /// Exposure accounting and skew limits.
    pub fairness: FairnessPolicy,
}

/// Whether fairgate may block campaigns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Flag skewed campaigns and alert; never block.
    #[default]
    Monitor,
    /// Flag, and block severe or sustained skew.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }
}

/// What happens to a decision when a consent rule is not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Every personal field removed; the decision still flows to output.
    Contextual,
    /// The decision is routed to the blocked topic.
    Withheld,
}

/// Whether GDPR applies when `regs.gdpr` is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GdprUnknown {
    /// Fail closed: treat the decision as under GDPR (a TCF string is then required).
    #[default]
    Applies,
    /// Treat an absent `regs.gdpr` as 0.
    DoesNotApply,
}

/// `[consent]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentPolicy {
    /// The platform's own IAB Global Vendor List id (vendor consent is checked for it).
    pub vendor_id: u16,
    /// TCF purposes that personalised targeting needs (1..=11).
    pub required_purposes: Vec<u8>,
    /// A TCF string last updated more than this many days before the decision is expired (1..=3650).
    #[serde(default = "default_max_age_days")]
    pub max_age_days: u32,
    /// What an absent `regs.gdpr` means.
    #[serde(default)]
    pub gdpr_unknown: GdprUnknown,
    /// Action when TCF consent is missing, expired, undecodable or insufficient.
    pub no_consent: Fallback,
    /// Action on an opt-out (US Privacy, GPP US sections, GPC).
    #[serde(default = "contextual")]
    pub opt_out: Fallback,
    /// Action for COPPA or a known child.
    #[serde(default = "contextual")]
    pub child: Fallback,
    /// Decoded consent strings kept in memory, at most (bounded cache; 1..=1000000).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Memory the decoded-string cache may take, in bytes (each entry weighed
    /// by its string's length plus its decoded facts).
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: u64,
    /// Longest TCF (`user.consent`) or GPP (`regs.gpp`) string decoded, in
    /// bytes; a longer one is not decoded and fails closed.
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
}

fn default_max_age_days() -> u32 {
    390
}
fn contextual() -> Fallback {
    Fallback::Contextual
}
fn default_cache_entries() -> usize {
    65_536
}
fn default_cache_bytes() -> u64 {
    64 << 20
}
fn default_max_string_bytes() -> usize {
    8_192
}

/// `[strip]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripPolicy {
    /// JSON pointers removed from every published record.
    pub always: Vec<String>,
    /// JSON pointers removed unless the consent result is personalised.
    pub unless_personalised: Vec<String>,
    /// JSON pointers removed (not coarsened) when the user is a child:
    /// `regs.coppa = 1` or a known child in a GPP US section.
    #[serde(default)]
    pub when_child: Vec<String>,
    /// JSON pointers removed when `device.lmt = 1` (Limit Ad Tracking).
    #[serde(default)]
    pub when_lmt: Vec<String>,
    /// Fields coarsened rather than removed.
    #[serde(default)]
    pub coarsen: Vec<toml::Value>,
    /// Sensitive segment removal.
    pub segments: Option<SegmentPolicy>,
}

/// One `[[strip.coarsen]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoarsenRule {
    /// JSON pointer of the field.
    pub pointer: String,
    /// `ip`, `round` or `truncate`.
    pub method: CoarsenMethod,
    /// For `round`: decimals kept (lat/lon: 2; 0..=6).
    pub decimals: Option<u32>,
    /// For `truncate`: leading characters kept (zip: 3; 0..=16).
    pub keep_chars: Option<usize>,
    /// For `ip`: IPv4 prefix kept, in bits (0..=32).
    pub ipv4_prefix_bits: Option<u8>,
    /// For `ip`: IPv6 prefix kept, in bits (0..=128).
    pub ipv6_prefix_bits: Option<u8>,
    /// `unless_precise_geo` (default: coarsen only when precise geolocation is not allowed) or `always`.
    #[serde(default)]
    pub when: CoarsenWhen,
}

/// How a field is coarsened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoarsenMethod {
    Ip,
    Round,
    Truncate,
}

/// When a coarsening applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CoarsenWhen {
    #[default]
    UnlessPreciseGeo,
    Always,
}

/// `[strip.segments]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentPolicy {
    /// Pointer to the array of data providers, each with a `segment` array (`/user/data`).
    pub pointer: String,
    /// Segment id patterns (`*` and `?` wildcards) that are sensitive and removed one by one:
    /// 1 to 1000 of them, ASCII, at most 256 bytes, each with at least 3 letters or digits;
    /// normalised like segment ids (case, separators) before matching.
    pub sensitive: Vec<String>,
}

/// `[fairness]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessPolicy {
    /// Length of the rolling window, in seconds (60..=2592000, a minute to 30 days).
    pub window_secs: u64,
    /// Length of one bucket of the window, in seconds (1..=86400; window_secs must be a
    /// multiple, of at most 1440 buckets).
    pub bucket_secs: u64,
    /// Decisions stamped more than this far ahead of the clock are counted as early and not
    /// windowed (0..=3600, and at most half of window_secs).
    #[serde(default = "default_max_future_secs")]
    pub max_future_secs: u64,
    /// Campaigns in state ok with no decision for this long (event time) are forgotten
    /// (window_secs..=7776000, i.e. up to 90 days).
    #[serde(default = "default_idle_evict_secs")]
    pub idle_evict_secs: u64,
    /// Confidence level of the intervals (0.5..0.999).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// No verdict before a campaign has this many decisions considered in the window (1..=1000000).
    pub min_campaign_considered: u64,
    /// No verdict on delivery shares before a campaign has this many selected in the window
    /// (1..=1000000).
    pub min_campaign_selected: u64,
    /// A group takes part in the selection-rate ratio only with this many considered (1..=1000000).
    pub min_group_considered: u64,
    /// Protected dimensions measured.
    pub dimensions: Vec<toml::Value>,
    /// Limits per campaign category: `default`, and optionally `housing`, `employment`, `credit`.
    pub limits: BTreeMap<String, toml::Value>,
    /// Eligible-audience baselines per campaign (else the platform-wide mix is used).
    #[serde(default)]
    pub baselines: Vec<toml::Value>,
}

fn default_max_future_secs() -> u64 {
    300
}
fn default_idle_evict_secs() -> u64 {
    7200
}
fn default_confidence() -> f64 {
    0.95
}

/// One `[[fairness.dimensions]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionSpec {
    /// Name used in reports, alerts and metrics (`sex`).
    pub name: String,
    /// JSON pointer to the group label in the input (`/audience/sex`).
    pub pointer: String,
    /// The groups counted; other values are ignored for this dimension.
    pub groups: Vec<String>,
    /// Map a number to a group instead of reading a label (e.g. `/user/yob`).
    #[serde(default)]
    pub bands: Vec<BandSpec>,
    /// `age_from_year`: the number is a year of birth, turned into an age at the decision's `ts`.
    pub transform: Option<BandTransform>,
}

/// A numeric band: `min <= x <= max` maps to `group` (ages 0..=150 with `age_from_year`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandSpec {
    pub group: String,
    pub min: i64,
    pub max: i64,
}

/// Transformation applied to a numeric field before banding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BandTransform {
    AgeFromYear,
}

/// `[fairness.limits.<category>]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Flag when the selection-rate ratio is confidently below this (four-fifths rule: 0.8;
    /// above 0, at most 1).
    pub flag_ratio: f64,
    /// Leave flagged once the ratio's upper bound is back at or above this (hysteresis).
    pub clear_ratio: f64,
    /// Block (enforce mode) when the ratio is confidently below this.
    pub block_ratio: f64,
    /// Flag when the delivery-share distance is confidently above this (VRS: 0.10; at least 0,
    /// below 1).
    pub flag_distance: f64,
    /// Leave flagged once the distance's lower bound is back at or below this.
    pub clear_distance: f64,
    /// Block (enforce mode) when the distance is confidently above this.
    pub block_distance: f64,
    /// Enforce mode: a campaign flagged this long is blocked (sustained skew; 0..=2592000).
    pub block_after_secs: u64,
    /// Minimum time in a state before stepping down to a milder one (0..=2592000).
    pub min_dwell_secs: u64,
}

/// One `[[fairness.baselines]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    /// Campaign id.
    pub campaign: String,
    /// Dimension name.
    pub dimension: String,
    /// Share of each group in the campaign's eligible audience; sums to 1.
    pub shares: BTreeMap<String, f64>,
}
