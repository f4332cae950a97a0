//! The policy: one TOML file that says what is stripped, under which consent
//! rule, and how campaign delivery is judged.
//!
//! Loading happens in three steps, so that a person fixing a policy sees every
//! problem at once:
//!
//! 1. TOML syntax (a syntax error stops here: nothing after it can be read);
//! 2. each section and each array element is deserialised on its own, so one
//!    bad entry does not hide the others (`deny_unknown_fields` everywhere);
//! 3. cross-field checks (pointers well formed, shares summing to one,
//!    thresholds ordered, baselines naming known dimensions and groups).
//!
//! The result is a [`CompiledPolicy`]: lookups prepared for the hot path.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use wildmatch::WildMatch;

/// Most groups, over all dimensions, a policy may count (keeps the hot path on the stack).
pub const MAX_TOTAL_GROUPS: usize = 64;

/// One problem found in a policy, with where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyIssue {
    /// Dotted path to the offending entry, e.g. `fairness.dimensions[1].groups`.
    pub place: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A policy that could not be loaded, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy is invalid ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<PolicyIssue>),
}

impl PolicyError {
    /// The individual problems (empty for I/O errors).
    pub fn issues(&self) -> &[PolicyIssue] {
        match self {
            PolicyError::Io { .. } => &[],
            PolicyError::Invalid(v) => v,
        }
    }
}

// ---------------------------------------------------------------------------
// The file format
// ---------------------------------------------------------------------------

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
    /// A TCF string last updated more than this many days before the decision is expired.
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
    /// Decoded consent strings kept in memory (bounded cache).
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
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

/// `[strip]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripPolicy {
    /// JSON pointers removed from every published record.
    pub always: Vec<String>,
    /// JSON pointers removed unless the consent result is personalised.
    pub unless_personalised: Vec<String>,
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
    /// For `round`: decimals kept (lat/lon: 2).
    pub decimals: Option<u32>,
    /// For `truncate`: leading characters kept (zip: 3).
    pub keep_chars: Option<usize>,
    /// For `ip`: IPv4 prefix kept, in bits.
    pub ipv4_prefix_bits: Option<u8>,
    /// For `ip`: IPv6 prefix kept, in bits.
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
    /// Segment id patterns (`*` and `?` wildcards) that are sensitive and removed one by one.
    pub sensitive: Vec<String>,
}

/// `[fairness]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessPolicy {
    /// Length of the rolling window, in seconds.
    pub window_secs: u64,
    /// Length of one bucket of the window, in seconds (window_secs must be a multiple).
    pub bucket_secs: u64,
    /// Decisions stamped more than this far ahead of the clock are counted as early and not windowed.
    #[serde(default = "default_max_future_secs")]
    pub max_future_secs: u64,
    /// Campaigns in state ok with no decision for this long (event time) are forgotten.
    #[serde(default = "default_idle_evict_secs")]
    pub idle_evict_secs: u64,
    /// Confidence level of the intervals (0.5..0.999).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// No verdict before a campaign has this many decisions considered in the window.
    pub min_campaign_considered: u64,
    /// No verdict on delivery shares before a campaign has this many selected in the window.
    pub min_campaign_selected: u64,
    /// A group takes part in the selection-rate ratio only with this many considered.
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

/// A numeric band: `min <= x <= max` maps to `group`.
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
    /// Flag when the selection-rate ratio is confidently below this (four-fifths rule: 0.8).
    pub flag_ratio: f64,
    /// Leave flagged once the ratio's upper bound is back at or above this (hysteresis).
    pub clear_ratio: f64,
    /// Block (enforce mode) when the ratio is confidently below this.
    pub block_ratio: f64,
    /// Flag when the delivery-share distance is confidently above this (VRS: 0.10).
    pub flag_distance: f64,
    /// Leave flagged once the distance's lower bound is back at or below this.
    pub clear_distance: f64,
    /// Block (enforce mode) when the distance is confidently above this.
    pub block_distance: f64,
    /// Enforce mode: a campaign flagged this long is blocked (sustained skew).
    pub block_after_secs: u64,
    /// Minimum time in a state before stepping down to a milder one.
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

// ---------------------------------------------------------------------------
// The compiled form
// ---------------------------------------------------------------------------

/// A parsed RFC 6901 JSON pointer, split into unescaped tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub text: String,
    pub tokens: Vec<String>,
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Err("the whole document cannot be a target".into());
        }
        if !text.starts_with('/') {
            return Err(format!(
                "{text:?} is not a JSON pointer (it must start with '/')"
            ));
        }
        let mut tokens = Vec::new();
        for raw in text[1..].split('/') {
            if raw.is_empty() {
                return Err(format!("{text:?} has an empty segment"));
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("{text:?} has a bad escape (only ~0 and ~1)")),
                    }
                } else {
                    out.push(c);
                }
            }
            tokens.push(out);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }
}

/// Sensitive segment ids, compiled. Patterns of the form `literal*` (most of
/// them) are matched as prefixes; the rest by `wildmatch`.
#[derive(Debug, Clone)]
pub struct SegmentMatcher {
    pub pointer: Pointer,
    pub prefixes: Vec<String>,
    pub patterns: Vec<WildMatch>,
    pub source: Vec<String>,
}

impl SegmentMatcher {
    pub fn new(pointer: Pointer, patterns: &[String]) -> SegmentMatcher {
        let mut prefixes = Vec::new();
        let mut wild = Vec::new();
        for p in patterns {
            match p.strip_suffix('*') {
                Some(lit) if !lit.contains(['*', '?']) => prefixes.push(lit.to_string()),
                _ => wild.push(WildMatch::new(p)),
            }
        }
        SegmentMatcher {
            pointer,
            prefixes,
            patterns: wild,
            source: patterns.to_vec(),
        }
    }

    /// Whether a segment id is sensitive.
    pub fn matches(&self, id: &str) -> bool {
        self.prefixes.iter().any(|p| id.starts_with(p.as_str()))
            || self.patterns.iter().any(|w| w.matches(id))
    }
}

/// Pointers that share a parent: the parent is looked up once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalGroup {
    /// Tokens of the parent.
    pub parent: Vec<String>,
    /// `(last token, full pointer text)` of each child.
    pub children: Vec<(String, String)>,
}

impl RemovalGroup {
    /// Group pointers by parent, keeping first-seen order.
    pub fn plan(pointers: &[Pointer]) -> Vec<RemovalGroup> {
        let mut out: Vec<RemovalGroup> = Vec::new();
        for p in pointers {
            let Some((last, parent)) = p.tokens.split_last() else {
                continue;
            };
            let child = (last.clone(), p.text.clone());
            match out.iter_mut().find(|g| g.parent == parent) {
                Some(g) => g.children.push(child),
                None => out.push(RemovalGroup {
                    parent: parent.to_vec(),
                    children: vec![child],
                }),
            }
        }
        out
    }
}

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
    pub always: Vec<Pointer>,
    pub unless_personalised: Vec<Pointer>,
    /// `always`, grouped by parent object (one lookup per parent on the hot path).
    pub always_plan: Vec<RemovalGroup>,
    /// `unless_personalised`, grouped by parent object.
    pub personal_plan: Vec<RemovalGroup>,
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
    /// Read, parse and validate a policy file.
    pub fn load(path: &Path) -> Result<CompiledPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parse and validate policy text, listing every problem found.
    pub fn from_toml(text: &str) -> Result<CompiledPolicy, PolicyError> {
        compile(text).map_err(PolicyError::Invalid)
    }

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

struct Issues(Vec<PolicyIssue>);

impl Issues {
    fn push(&mut self, place: impl Into<String>, message: impl Into<String>) {
        self.0.push(PolicyIssue {
            place: place.into(),
            message: message.into(),
        });
    }

    fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        place: &str,
        v: toml::Value,
    ) -> Option<T> {
        match T::deserialize(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(place, e.message().trim().to_string());
                None
            }
        }
    }

    fn pointer(&mut self, place: String, text: &str) -> Option<Pointer> {
        match Pointer::parse(text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.push(place, e);
                None
            }
        }
    }
}

/// Two-sided normal quantile for a confidence level (Acklam's rational approximation
/// of the inverse normal CDF; accurate to about 1e-9, plenty for a Wilson interval).
pub fn z_for_confidence(confidence: f64) -> f64 {
    let p = 1.0 - (1.0 - confidence) / 2.0;
    inverse_normal_cdf(p)
}

fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let plow = 0.02425;
    if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

fn compile(text: &str) -> Result<CompiledPolicy, Vec<PolicyIssue>> {
    let mut issues = Issues(Vec::new());
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let place = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                }
                None => "policy".to_string(),
            };
            return Err(vec![PolicyIssue {
                place,
                message: format!("TOML syntax error: {}", e.message().trim()),
            }]);
        }
    };

    // Step 2: each section on its own.
    let mut top = table.clone();
    for key in top.keys().cloned().collect::<Vec<_>>() {
        if !["version", "mode", "consent", "strip", "fairness"].contains(&key.as_str()) {
            issues.push(
                key.clone(),
                "unknown key (expected version, mode, consent, strip, fairness)",
            );
            top.remove(&key);
        }
    }
    let version = match top.get("version") {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(toml::Value::String(_)) => {
            issues.push("version", "must not be empty");
            None
        }
        Some(_) => {
            issues.push("version", "must be a string");
            None
        }
        None => {
            issues.push(
                "version",
                "missing (a label carried on every published record)",
            );
            None
        }
    };
    let mode = match top.get("mode") {
        None => Some(Mode::Monitor),
        Some(v) => issues.section::<Mode>("mode", v.clone()),
    };
    let mut take = |name: &str| -> Option<toml::Value> {
        match top.get(name) {
            Some(v) => Some(v.clone()),
            None => {
                issues.push(name, "missing section");
                None
            }
        }
    };
    let consent_v = take("consent");
    let strip_v = take("strip");
    let fairness_v = take("fairness");

    let consent: Option<ConsentPolicy> = consent_v.and_then(|v| issues.section("consent", v));
    let strip: Option<StripPolicy> = strip_v.and_then(|v| issues.section("strip", v));
    let fairness: Option<FairnessPolicy> = fairness_v.and_then(|v| issues.section("fairness", v));

    // Step 3: field and cross-field checks.
    let mut required_mask = 0u32;
    if let Some(c) = &consent {
        if c.vendor_id == 0 {
            issues.push(
                "consent.vendor_id",
                "must be a Global Vendor List id (1 or more)",
            );
        }
        if c.required_purposes.is_empty() {
            issues.push(
                "consent.required_purposes",
                "must name at least one purpose (TCF purposes 1..=11)",
            );
        }
        for (i, p) in c.required_purposes.iter().enumerate() {
            if !(1..=11).contains(p) {
                issues.push(
                    format!("consent.required_purposes[{i}]"),
                    format!("purpose {p} does not exist (TCF v2.2 purposes are 1..=11)"),
                );
            } else {
                required_mask |= 1 << p;
            }
        }
        if c.max_age_days == 0 {
            issues.push("consent.max_age_days", "must be at least 1");
        }
        if c.cache_entries == 0 {
            issues.push("consent.cache_entries", "must be at least 1");
        }
    }

    let mut always = Vec::new();
    let mut unless = Vec::new();
    let mut coarsen = Vec::new();
    let mut segments = None;
    if let Some(s) = &strip {
        for (i, p) in s.always.iter().enumerate() {
            if let Some(p) = issues.pointer(format!("strip.always[{i}]"), p) {
                always.push(p);
            }
        }
        for (i, p) in s.unless_personalised.iter().enumerate() {
            if let Some(p) = issues.pointer(format!("strip.unless_personalised[{i}]"), p) {
                unless.push(p);
            }
        }
        for (i, v) in s.coarsen.iter().enumerate() {
            let place = format!("strip.coarsen[{i}]");
            let Some(rule) = issues.section::<CoarsenRule>(&place, v.clone()) else {
                continue;
            };
            let Some(pointer) = issues.pointer(format!("{place}.pointer"), &rule.pointer) else {
                continue;
            };
            let op = match rule.method {
                CoarsenMethod::Ip => {
                    let v4 = rule.ipv4_prefix_bits.unwrap_or(24);
                    let v6 = rule.ipv6_prefix_bits.unwrap_or(56);
                    if v4 > 32 {
                        issues.push(format!("{place}.ipv4_prefix_bits"), "must be 0..=32");
                    }
                    if v6 > 128 {
                        issues.push(format!("{place}.ipv6_prefix_bits"), "must be 0..=128");
                    }
                    CoarsenOp::Ip {
                        v4_bits: v4,
                        v6_bits: v6,
                    }
                }
                CoarsenMethod::Round => match rule.decimals {
                    Some(d) if d <= 6 => CoarsenOp::Round { decimals: d },
                    Some(_) => {
                        issues.push(format!("{place}.decimals"), "must be 0..=6");
                        continue;
                    }
                    None => {
                        issues.push(format!("{place}.decimals"), "required for method \"round\"");
                        continue;
                    }
                },
                CoarsenMethod::Truncate => match rule.keep_chars {
                    Some(k) => CoarsenOp::Truncate { keep_chars: k },
                    None => {
                        issues.push(
                            format!("{place}.keep_chars"),
                            "required for method \"truncate\"",
                        );
                        continue;
                    }
                },
            };
            coarsen.push(Coarsen {
                pointer,
                op,
                when: rule.when,
            });
        }
        if let Some(seg) = &s.segments {
            let p = issues.pointer("strip.segments.pointer".into(), &seg.pointer);
            if seg.sensitive.is_empty() {
                issues.push(
                    "strip.segments.sensitive",
                    "lists no pattern (remove [strip.segments] to keep every segment)",
                );
            }
            for (i, pat) in seg.sensitive.iter().enumerate() {
                if pat.trim().is_empty() || pat.chars().all(|c| c == '*') {
                    issues.push(
                        format!("strip.segments.sensitive[{i}]"),
                        "pattern would match every segment",
                    );
                }
            }
            if let Some(p) = p {
                segments = Some(SegmentMatcher::new(p, &seg.sensitive));
            }
        }
        // The same pointer listed twice is harmless but suggests a mistake.
        let mut seen = HashMap::new();
        for p in always.iter().chain(unless.iter()) {
            if seen.insert(p.text.clone(), ()).is_some() {
                issues.push("strip", format!("pointer {} is listed twice", p.text));
            }
        }
    }

    let mut dimensions = Vec::new();
    let mut limits = HashMap::new();
    let mut baselines: HashMap<String, Vec<Option<Vec<f64>>>> = HashMap::new();
    let mut z = 1.96;
    if let Some(f) = &fairness {
        if f.bucket_secs == 0 {
            issues.push("fairness.bucket_secs", "must be at least 1");
        } else if f.window_secs == 0 || f.window_secs % f.bucket_secs != 0 {
            issues.push(
                "fairness.window_secs",
                format!(
                    "must be a positive multiple of bucket_secs ({})",
                    f.bucket_secs
                ),
            );
        } else if f.window_secs / f.bucket_secs > 1440 {
            issues.push(
                "fairness.window_secs",
                "more than 1440 buckets per window: use larger buckets",
            );
        }
        if !(0.5..0.9995).contains(&f.confidence) {
            issues.push("fairness.confidence", "must be between 0.5 and 0.999");
        } else {
            z = z_for_confidence(f.confidence);
        }
        if f.min_campaign_considered == 0
            || f.min_campaign_selected == 0
            || f.min_group_considered == 0
        {
            issues.push(
                "fairness",
                "min_campaign_considered, min_campaign_selected and min_group_considered must be at least 1 (no verdict on no data)",
            );
        }
        if f.dimensions.is_empty() {
            issues.push("fairness.dimensions", "at least one dimension is needed");
        }
        for (i, v) in f.dimensions.iter().enumerate() {
            let place = format!("fairness.dimensions[{i}]");
            let Some(d) = issues.section::<DimensionSpec>(&place, v.clone()) else {
                continue;
            };
            let pointer = issues.pointer(format!("{place}.pointer"), &d.pointer);
            if d.name.is_empty()
                || !d
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                issues.push(
                    format!("{place}.name"),
                    "must be non-empty letters, digits and '_' (it becomes a metric label)",
                );
            }
            if dimensions.iter().any(|x: &Dimension| x.name == d.name) {
                issues.push(
                    format!("{place}.name"),
                    format!("dimension {:?} defined twice", d.name),
                );
            }
            if d.groups.len() < 2 {
                issues.push(
                    format!("{place}.groups"),
                    "at least two groups are needed to compare",
                );
            }
            if d.groups.len() > 32 {
                issues.push(format!("{place}.groups"), "at most 32 groups");
            }
            for (gi, g) in d.groups.iter().enumerate() {
                if d.groups[..gi].contains(g) {
                    issues.push(
                        format!("{place}.groups[{gi}]"),
                        format!("group {g:?} listed twice"),
                    );
                }
            }
            let mut bands = Vec::new();
            for (bi, b) in d.bands.iter().enumerate() {
                if b.min > b.max {
                    issues.push(format!("{place}.bands[{bi}]"), "min is above max");
                }
                match d.groups.iter().position(|g| *g == b.group) {
                    Some(gi) => bands.push((b.min, b.max, gi)),
                    None => issues.push(
                        format!("{place}.bands[{bi}].group"),
                        format!("{:?} is not one of this dimension's groups", b.group),
                    ),
                }
            }
            if d.transform.is_some() && d.bands.is_empty() {
                issues.push(
                    format!("{place}.transform"),
                    "needs bands to map the number to groups",
                );
            }
            if let Some(pointer) = pointer {
                let k = d.groups.len().max(1) as f64;
                let conf = if (0.5..0.9995).contains(&f.confidence) {
                    f.confidence
                } else {
                    0.95
                };
                dimensions.push(Dimension {
                    z: z_for_confidence(1.0 - (1.0 - conf) / k),
                    name: d.name,
                    pointer,
                    groups: d.groups,
                    bands,
                    transform: d.transform,
                });
            }
        }
        let total: usize = dimensions.iter().map(|d| d.groups.len()).sum();
        if total > MAX_TOTAL_GROUPS {
            issues.push(
                "fairness.dimensions",
                format!(
                    "{total} groups in all; at most {} are counted",
                    MAX_TOTAL_GROUPS
                ),
            );
        }
        if !f.limits.contains_key("default") {
            issues.push("fairness.limits", "[fairness.limits.default] is required");
        }
        for (name, v) in &f.limits {
            let place = format!("fairness.limits.{name}");
            let Some(cat) = Category::parse(name) else {
                issues.push(
                    place,
                    "unknown category (expected default, housing, employment or credit)",
                );
                continue;
            };
            let Some(l) = issues.section::<LimitsSpec>(&place, v.clone()) else {
                continue;
            };
            for (field, x) in [
                ("flag_ratio", l.flag_ratio),
                ("clear_ratio", l.clear_ratio),
                ("block_ratio", l.block_ratio),
                ("flag_distance", l.flag_distance),
                ("clear_distance", l.clear_distance),
                ("block_distance", l.block_distance),
            ] {
                if !(0.0..=1.0).contains(&x) || x.is_nan() {
                    issues.push(format!("{place}.{field}"), "must be between 0 and 1");
                }
            }
            if !(l.block_ratio <= l.flag_ratio && l.flag_ratio <= l.clear_ratio) {
                issues.push(
                    place.clone(),
                    "ratios must be ordered block_ratio <= flag_ratio <= clear_ratio",
                );
            }
            if !(l.clear_distance <= l.flag_distance && l.flag_distance <= l.block_distance) {
                issues.push(
                    place.clone(),
                    "distances must be ordered clear_distance <= flag_distance <= block_distance",
                );
            }
            limits.insert(
                cat,
                Limits {
                    flag_ratio: l.flag_ratio,
                    clear_ratio: l.clear_ratio,
                    block_ratio: l.block_ratio,
                    flag_distance: l.flag_distance,
                    clear_distance: l.clear_distance,
                    block_distance: l.block_distance,
                    block_after_ms: (l.block_after_secs as i64).saturating_mul(1000),
                    min_dwell_ms: (l.min_dwell_secs as i64).saturating_mul(1000),
                },
            );
        }
        for (i, v) in f.baselines.iter().enumerate() {
            let place = format!("fairness.baselines[{i}]");
            let Some(b) = issues.section::<BaselineSpec>(&place, v.clone()) else {
                continue;
            };
            let Some(di) = dimensions.iter().position(|d| d.name == b.dimension) else {
                issues.push(
                    format!("{place}.dimension"),
                    format!("{:?} is not a configured dimension", b.dimension),
                );
                continue;
            };
            let dim = &dimensions[di];
            let mut shares = vec![0.0; dim.groups.len()];
            let mut ok = true;
            for (g, s) in &b.shares {
                match dim.group_index(g) {
                    Some(gi) => shares[gi] = *s,
                    None => {
                        ok = false;
                        issues.push(
                            format!("{place}.shares.{g}"),
                            format!("not a group of dimension {:?}", dim.name),
                        );
                    }
                }
                if !(0.0..=1.0).contains(s) {
                    ok = false;
                    issues.push(format!("{place}.shares.{g}"), "must be between 0 and 1");
                }
            }
            let sum: f64 = shares.iter().sum();
            if (sum - 1.0).abs() > 0.01 {
                ok = false;
                issues.push(format!("{place}.shares"), format!("sum to {sum:.3}, not 1"));
            }
            let entry = baselines
                .entry(b.campaign.clone())
                .or_insert_with(|| vec![None; 0]);
            if entry.len() < dimensions.len() {
                entry.resize(dimensions.len(), None);
            }
            if entry[di].is_some() {
                issues.push(
                    place.clone(),
                    format!(
                        "campaign {:?} already has a baseline for {:?}",
                        b.campaign, b.dimension
                    ),
                );
            }
            if ok {
                entry[di] = Some(shares);
            }
        }
    }

    if !issues.0.is_empty() {
        return Err(issues.0);
    }
    let (consent, fairness) = (consent.expect("checked"), fairness.expect("checked"));
    let mut group_offsets = Vec::with_capacity(dimensions.len());
    let mut total = 0;
    for d in &dimensions {
        group_offsets.push(total);
        total += d.groups.len();
    }
    Ok(CompiledPolicy {
        version: version.expect("checked"),
        mode: mode.expect("checked"),
        vendor_id: consent.vendor_id,
        required_purposes_mask: required_mask,
        required_purposes: consent.required_purposes,
        max_age_ms: consent.max_age_days as i64 * 86_400_000,
        gdpr_unknown: consent.gdpr_unknown,
        no_consent: consent.no_consent,
        opt_out: consent.opt_out,
        child: consent.child,
        cache_entries: consent.cache_entries,
        always_plan: RemovalGroup::plan(&always),
        personal_plan: RemovalGroup::plan(&unless),
        always,
        unless_personalised: unless,
        coarsen,
        segments,
        window_ms: (fairness.window_secs * 1000) as i64,
        bucket_ms: (fairness.bucket_secs * 1000) as i64,
        buckets: (fairness.window_secs / fairness.bucket_secs) as usize,
        max_future_ms: (fairness.max_future_secs * 1000) as i64,
        idle_evict_ms: (fairness.idle_evict_secs * 1000) as i64,
        confidence: fairness.confidence,
        z,
        min_campaign_considered: fairness.min_campaign_considered,
        min_campaign_selected: fairness.min_campaign_selected,
        min_group_considered: fairness.min_group_considered,
        dimensions,
        group_offsets,
        total_groups: total,
        limits,
        baselines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../config/policy.toml");

    #[test]
    fn example_policy_compiles() {
        let p = CompiledPolicy::from_toml(EXAMPLE).unwrap();
        assert_eq!(p.vendor_id, 755);
        assert_eq!(p.required_purposes, vec![1, 3, 4]);
        let dims: Vec<_> = p
            .dimensions
            .iter()
            .map(|d| d.pointer.text.as_str())
            .collect();
        assert!(dims.contains(&"/audience/sex"));
        assert!(dims.contains(&"/audience/age_band"));
        assert_eq!(p.buckets as i64 * p.bucket_ms, p.window_ms);
    }

    #[test]
    fn every_problem_is_listed() {
        let bad = EXAMPLE
            .replace("vendor_id = 755", "vendor_id = 0")
            .replace(
                "required_purposes = [1, 3, 4]",
                "required_purposes = [1, 3, 14]",
            )
            .replace("\"/audience\"", "\"audience\"")
            .replace("flag_ratio = 0.8", "flag_ratio = 1.8");
        let err = CompiledPolicy::from_toml(&bad).unwrap_err();
        let places: Vec<_> = err.issues().iter().map(|i| i.place.clone()).collect();
        assert!(
            places.contains(&"consent.vendor_id".to_string()),
            "{places:?}"
        );
        assert!(
            places.contains(&"consent.required_purposes[2]".to_string()),
            "{places:?}"
        );
        assert!(
            places.contains(&"strip.always[0]".to_string()),
            "{places:?}"
        );
        assert!(
            places
                .iter()
                .any(|p| p.starts_with("fairness.limits.default")),
            "{places:?}"
        );
        assert!(err.issues().len() >= 4);
    }

    #[test]
    fn unknown_fields_in_several_sections_are_all_reported() {
        let bad = EXAMPLE
            .replace("[consent]", "[consent]\nvendorid = 1")
            .replace("[fairness]", "[fairness]\nwindow = 3");
        let err = CompiledPolicy::from_toml(&bad).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("consent:"), "{text}");
        assert!(text.contains("fairness:"), "{text}");
        assert!(text.contains("vendorid"), "{text}");
        assert!(text.contains("window"), "{text}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = CompiledPolicy::from_toml("version = \"x\"\n[consent\n").unwrap_err();
        assert_eq!(err.issues()[0].place, "line 2");
    }

    #[test]
    fn pointers_parse_and_unescape() {
        let p = Pointer::parse("/a~1b/c~0d").unwrap();
        assert_eq!(p.tokens, vec!["a/b", "c~d"]);
        assert!(Pointer::parse("a/b").is_err());
        assert!(Pointer::parse("/a//b").is_err());
        assert!(Pointer::parse("/a~2").is_err());
    }

    #[test]
    fn z_matches_known_quantiles() {
        assert!((z_for_confidence(0.95) - 1.959_964).abs() < 1e-5);
        assert!((z_for_confidence(0.99) - 2.575_829).abs() < 1e-5);
    }
}
