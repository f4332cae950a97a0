//! Turning policy text into a [`CompiledPolicy`], listing every problem.
//!
//! One function per section (top level, `[consent]`, `[strip]`,
//! `[fairness]`), each taking what it needs, noting what is wrong in
//! [`Issues`] and returning its compiled part. [`Parts::finish`] builds the
//! policy only when every part is present and no problem was found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::compiled::{
    Category, Coarsen, CoarsenOp, CompiledPolicy, Dimension, Limits, MAX_TOTAL_GROUPS,
};
use super::error::{PolicyError, PolicyIssue};
use super::file::{
    BandTransform, BaselineSpec, CoarsenMethod, CoarsenRule, ConsentPolicy, DimensionSpec,
    FairnessPolicy, LimitsSpec, Mode, SegmentPolicy, StripPolicy,
};
use super::pointer::{Pointer, RemovalGroup, SegmentMatcher, normalise_segment_id};
use super::quantile::z_for_confidence;

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
}

/// Wrong settings named per section or entry, at most (each costs one more
/// read of it).
const MAX_SHAPE_PROBLEMS: usize = 32;

/// The shipped policy's section `name`: a setting of the right type for
/// every required one, put in place of a wrong one so that the rest of the
/// section is still checked ([`Issues::section_like`]).
fn sample_section(name: &str) -> Option<&'static toml::Table> {
    static SHIPPED: std::sync::OnceLock<Option<toml::Table>> = std::sync::OnceLock::new();
    SHIPPED
        .get_or_init(|| include_str!("../../config/policy.toml").parse().ok())
        .as_ref()?
        .get(name)?
        .as_table()
}

/// The problems found so far, each with its place.
#[derive(Default)]
struct Issues(Vec<PolicyIssue>);

impl Issues {
    fn push(&mut self, place: impl Into<String>, message: impl Into<String>) {
        self.0.push(PolicyIssue {
            place: place.into(),
            message: message.into(),
        });
    }

    /// Deserialise one section or array entry; its problems are noted, not
    /// returned.
    fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        place: &str,
        v: toml::Value,
    ) -> Option<T> {
        self.section_like::<T>(place, v, None)
    }

    /// [`Issues::section`], reading past a wrong setting so that it does not
    /// hide the others: the setting is named (`place.key`), then left out
    /// (it takes its default) or, where it is required, replaced by the
    /// setting of the same name in `sample` (the shipped policy's section),
    /// and the rest read again; its checks run on what was written
    /// correctly. A setting required and not in `sample`, or a problem no
    /// one setting causes (one missing), ends the section: its problem is
    /// named and the section is not read.
    fn section_like<T: serde::de::DeserializeOwned>(
        &mut self,
        place: &str,
        mut v: toml::Value,
        sample: Option<&toml::Table>,
    ) -> Option<T> {
        let mut left_out: Vec<String> = Vec::new();
        for _ in 0..MAX_SHAPE_PROBLEMS {
            let message = match T::deserialize(v.clone()) {
                Ok(t) => return Some(t),
                Err(e) => e.message().trim().to_string(),
            };
            // A setting left out for an earlier problem: named already.
            if left_out
                .iter()
                .any(|k| message == format!("missing field `{k}`"))
            {
                return None;
            }
            let Some(table) = v.as_table() else {
                self.push(place, message);
                return None;
            };
            // The setting whose absence changes the problem is its cause
            // (serde stops at the first wrong setting it reads).
            let cause = table.keys().find(|k| {
                let mut t = table.clone();
                t.remove(*k);
                T::deserialize(toml::Value::Table(t))
                    .err()
                    .is_none_or(|e| e.message().trim() != message)
            });
            let Some(key) = cause.cloned() else {
                self.push(place, message);
                return None;
            };
            self.push(format!("{place}.{key}"), message);
            let mut t = table.clone();
            match sample.and_then(|s| s.get(&key)) {
                Some(good) => t.insert(key, good.clone()),
                None => {
                    left_out.push(key.clone());
                    t.remove(&key)
                }
            };
            v = toml::Value::Table(t);
        }
        None
    }

    /// Note a number outside `lo..=hi`, naming the range (`note` says what
    /// it is, e.g. " (30 days)") and the value found. Whether it was inside.
    fn range(
        &mut self,
        place: impl Into<String>,
        x: u64,
        (lo, hi): (u64, u64),
        note: &str,
    ) -> bool {
        let ok = (lo..=hi).contains(&x);
        if !ok {
            self.push(
                place,
                format!("must be between {lo} and {hi}{note}, got {x}"),
            );
        }
        ok
    }

    /// The same for a fraction: inside `lo..=hi`, and not NaN.
    fn fraction(&mut self, place: impl Into<String>, x: f64, lo: f64, hi: f64) -> bool {
        let ok = (lo..=hi).contains(&x);
        if !ok {
            self.push(place, format!("must be between {lo} and {hi}, got {x}"));
        }
        ok
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

/// The three steps of the module doc. Each section is compiled on its own
/// into its part; the parts become a policy only when none is missing and no
/// problem was found anywhere.
fn compile(text: &str) -> Result<CompiledPolicy, Vec<PolicyIssue>> {
    // Step 1: TOML syntax.
    let table = parse(text)?;
    // Step 2: each section on its own.
    let mut issues = Issues::default();
    let top = known_keys(table, &mut issues);
    let version = version(&top, &mut issues);
    let mode = mode(&top, &mut issues);
    let sections = sections(&top, &mut issues);
    // Step 3: field and cross-field checks, section by section.
    let consent = sections.consent.map(|c| consent(c, &mut issues));
    let strip = sections.strip.map(|s| strip(&s, &mut issues));
    let fairness = sections.fairness.and_then(|f| fairness(f, &mut issues));
    Parts {
        version,
        mode,
        consent,
        strip,
        fairness,
    }
    .finish(issues)
}

// ---------------------------------------------------------------------------
// Top level: syntax, keys, version, mode, sections
// ---------------------------------------------------------------------------

/// A syntax error is the only problem reported: nothing after it can be read.
fn parse(text: &str) -> Result<toml::Table, Vec<PolicyIssue>> {
    text.parse().map_err(|e: toml::de::Error| {
        let place = match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            }
            None => "policy".to_string(),
        };
        vec![PolicyIssue {
            place,
            message: format!("TOML syntax error: {}", e.message().trim()),
        }]
    })
}

/// The top-level table without (and with a problem for) keys a policy does not have.
fn known_keys(mut top: toml::Table, issues: &mut Issues) -> toml::Table {
    for key in top.keys().cloned().collect::<Vec<_>>() {
        if !["version", "mode", "consent", "strip", "fairness"].contains(&key.as_str()) {
            issues.push(
                key.clone(),
                "unknown key (expected version, mode, consent, strip, fairness)",
            );
            top.remove(&key);
        }
    }
    top
}

fn version(top: &toml::Table, issues: &mut Issues) -> Option<String> {
    match top.get("version") {
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
    }
}

fn mode(top: &toml::Table, issues: &mut Issues) -> Option<Mode> {
    match top.get("mode") {
        None => Some(Mode::Monitor),
        Some(v) => issues.section::<Mode>("mode", v.clone()),
    }
}

/// The three sections as written; `None` where missing or malformed.
struct Sections {
    consent: Option<ConsentPolicy>,
    strip: Option<StripPolicy>,
    fairness: Option<FairnessPolicy>,
}

/// Missing sections are listed first, then the problems inside each section.
fn sections(top: &toml::Table, issues: &mut Issues) -> Sections {
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
    Sections {
        consent: consent_v
            .and_then(|v| issues.section_like("consent", v, sample_section("consent"))),
        strip: strip_v.and_then(|v| issues.section_like("strip", v, sample_section("strip"))),
        fairness: fairness_v
            .and_then(|v| issues.section_like("fairness", v, sample_section("fairness"))),
    }
}

// ---------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------

// Every number in a policy has a range that makes sense; a value outside it
// is refused with the range in the message. Besides guarding against typos,
// the ranges keep every time in milliseconds, every window and every count
// far from the ends of `i64` and `u64` (see README "Exposure and skew").

/// `consent.max_age_days`: a day to ten years (IAB: re-ask after 13 months).
const MAX_AGE_DAYS: (u64, u64) = (1, 3650);
/// `consent.cache_entries`.
const CACHE_ENTRIES: (u64, u64) = (1, 1_000_000);
/// `strip.coarsen[].keep_chars`: a truncation that keeps more is no coarsening.
const KEEP_CHARS: (u64, u64) = (0, 16);
/// `fairness.window_secs`: a minute to 30 days.
const WINDOW_SECS: (u64, u64) = (60, 2_592_000);
/// `fairness.bucket_secs`: a second to a day.
const BUCKET_SECS: (u64, u64) = (1, 86_400);
/// Buckets per window (each costs memory per campaign).
const MAX_BUCKETS: u64 = 1440;
/// `fairness.max_future_secs`: at most an hour, and at most half the window.
const MAX_FUTURE_SECS: u64 = 3600;
/// `fairness.idle_evict_secs`: at least the window (a campaign forgotten
/// sooner would lose counts still in its window), at most 90 days.
const IDLE_EVICT_MAX_SECS: u64 = 7_776_000;
/// `fairness.min_*`: a verdict needs data, and one that needs more than a
/// million decisions is never given.
const MIN_COUNT: (u64, u64) = (1, 1_000_000);
/// `block_after_secs` and `min_dwell_secs`: up to 30 days.
const DURATION_SECS: (u64, u64) = (0, 2_592_000);
/// Ages a band of `age_from_year` may name.
const AGE: (i64, i64) = (0, 150);

/// Seconds as milliseconds, saturating (the ranges keep it exact).
fn ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

// ---------------------------------------------------------------------------
// [consent]
// ---------------------------------------------------------------------------

/// `[consent]` checked: as written, plus the required purposes as a bit mask.
struct ConsentPart {
    spec: ConsentPolicy,
    /// Bit `p` set for each required purpose `p`.
    required_mask: u32,
}

fn consent(c: ConsentPolicy, issues: &mut Issues) -> ConsentPart {
    let mut required_mask = 0u32;
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
    issues.range(
        "consent.max_age_days",
        u64::from(c.max_age_days),
        MAX_AGE_DAYS,
        " (ten years)",
    );
    issues.range(
        "consent.cache_entries",
        c.cache_entries as u64,
        CACHE_ENTRIES,
        "",
    );
    consent_bounds(&c, issues);
    ConsentPart {
        spec: c,
        required_mask,
    }
}

/// Allowed `consent.max_string_bytes`. Real TCF strings with every GVL
/// vendor are a few KB (browsers cap a cookie at 4 KB); 1 KiB already fits a
/// bitfield of 1,000 vendors. Above 64 KiB a string is no consent string.
const MAX_STRING_BYTES: (u64, u64) = (1_024, 65_536);

/// Allowed `consent.cache_bytes`: at least 1 MiB, so a string at the largest
/// `max_string_bytes` (64 KiB) still fits a cache shard; at most 64 GiB.
const CACHE_BYTES: (u64, u64) = (1 << 20, 64 << 30);

/// The `[consent]` settings that bound decoding work and memory.
fn consent_bounds(c: &ConsentPolicy, issues: &mut Issues) {
    issues.range(
        "consent.max_string_bytes",
        c.max_string_bytes as u64,
        MAX_STRING_BYTES,
        " (bytes)",
    );
    issues.range(
        "consent.cache_bytes",
        c.cache_bytes,
        CACHE_BYTES,
        " (bytes: 1 MiB to 64 GiB)",
    );
}

// ---------------------------------------------------------------------------
// [strip]
// ---------------------------------------------------------------------------

/// `[strip]` compiled: every well-formed pointer, coarsening and segment matcher.
struct StripPart {
    always: Vec<Pointer>,
    unless: Vec<Pointer>,
    child: Vec<Pointer>,
    lmt: Vec<Pointer>,
    coarsen: Vec<Coarsen>,
    segments: Option<SegmentMatcher>,
}

fn strip(s: &StripPolicy, issues: &mut Issues) -> StripPart {
    let always = pointers("strip.always", &s.always, issues);
    let unless = pointers("strip.unless_personalised", &s.unless_personalised, issues);
    let child = pointers("strip.when_child", &s.when_child, issues);
    let lmt = pointers("strip.when_lmt", &s.when_lmt, issues);
    let mut coarsen = Vec::new();
    for (i, v) in s.coarsen.iter().enumerate() {
        if let Some(c) = coarsen_rule(&format!("strip.coarsen[{i}]"), v, issues) {
            coarsen.push(c);
        }
    }
    let segments = s.segments.as_ref().and_then(|seg| segments(seg, issues));
    listed_twice(&always, &unless, issues);
    listed_twice(&[], &child, issues);
    listed_twice(&[], &lmt, issues);
    StripPart {
        always,
        unless,
        child,
        lmt,
        coarsen,
        segments,
    }
}

/// The pointers of one list that parse (`place` is the list's, e.g. `strip.always`).
fn pointers(place: &str, texts: &[String], issues: &mut Issues) -> Vec<Pointer> {
    let mut out = Vec::new();
    for (i, p) in texts.iter().enumerate() {
        if let Some(p) = issues.pointer(format!("{place}[{i}]"), p) {
            out.push(p);
        }
    }
    out
}

/// One `[[strip.coarsen]]` entry; its operation is checked only once its pointer parses.
fn coarsen_rule(place: &str, v: &toml::Value, issues: &mut Issues) -> Option<Coarsen> {
    let rule = issues.section::<CoarsenRule>(place, v.clone())?;
    let pointer = issues.pointer(format!("{place}.pointer"), &rule.pointer)?;
    let op = coarsen_op(place, &rule, issues)?;
    Some(Coarsen {
        pointer,
        op,
        when: rule.when,
    })
}

/// The operation of a coarsening. Bad IP prefixes are reported but still
/// compiled; `round` and `truncate` without their setting are not compiled.
fn coarsen_op(place: &str, rule: &CoarsenRule, issues: &mut Issues) -> Option<CoarsenOp> {
    match rule.method {
        CoarsenMethod::Ip => {
            let v4 = rule.ipv4_prefix_bits.unwrap_or(24);
            let v6 = rule.ipv6_prefix_bits.unwrap_or(56);
            issues.range(format!("{place}.ipv4_prefix_bits"), v4.into(), (0, 32), "");
            issues.range(format!("{place}.ipv6_prefix_bits"), v6.into(), (0, 128), "");
            Some(CoarsenOp::Ip {
                v4_bits: v4,
                v6_bits: v6,
            })
        }
        CoarsenMethod::Round => match rule.decimals {
            Some(d) if d <= 6 => Some(CoarsenOp::Round { decimals: d }),
            Some(d) => {
                issues.range(format!("{place}.decimals"), d.into(), (0, 6), "");
                None
            }
            None => {
                issues.push(format!("{place}.decimals"), "required for method \"round\"");
                None
            }
        },
        CoarsenMethod::Truncate => match rule.keep_chars {
            Some(k) => issues
                .range(format!("{place}.keep_chars"), k as u64, KEEP_CHARS, "")
                .then_some(CoarsenOp::Truncate { keep_chars: k }),
            None => {
                issues.push(
                    format!("{place}.keep_chars"),
                    "required for method \"truncate\"",
                );
                None
            }
        },
    }
}

/// Most sensitive segment patterns, and the longest one (in bytes).
const MAX_PATTERNS: usize = 1000;
const MAX_PATTERN_LEN: usize = 256;
/// Letters or digits a sensitive pattern needs: fewer, and it names a shape
/// (`*?`, `*a*`) rather than a category, matching every segment or most.
const MIN_PATTERN_ALNUM: usize = 3;

/// `[strip.segments]`: the matcher, if its pointer parses.
fn segments(seg: &SegmentPolicy, issues: &mut Issues) -> Option<SegmentMatcher> {
    let p = issues.pointer("strip.segments.pointer".into(), &seg.pointer);
    if seg.sensitive.is_empty() {
        issues.push(
            "strip.segments.sensitive",
            "lists no pattern (remove [strip.segments] to keep every segment)",
        );
    }
    if seg.sensitive.len() > MAX_PATTERNS {
        issues.push(
            "strip.segments.sensitive",
            format!(
                "must list between 1 and {MAX_PATTERNS} patterns, got {}",
                seg.sensitive.len()
            ),
        );
    }
    for (i, pat) in seg.sensitive.iter().enumerate() {
        if let Some(why) = pattern_problem(pat) {
            issues.push(format!("strip.segments.sensitive[{i}]"), why);
        }
    }
    Some(SegmentMatcher::new(p?, &seg.sensitive))
}

/// What is wrong with one sensitive pattern, if anything. Patterns are
/// normalised like segment ids (case, separators) before they are matched.
fn pattern_problem(pat: &str) -> Option<String> {
    if pat.len() > MAX_PATTERN_LEN {
        return Some(format!(
            "must be at most {MAX_PATTERN_LEN} bytes long, got {}",
            pat.len()
        ));
    }
    let Some(norm) = normalise_segment_id(pat) else {
        return Some(
            "must be ASCII: a segment id with any other character is removed whatever the patterns"
                .into(),
        );
    };
    let alnum = norm.bytes().filter(u8::is_ascii_alphanumeric).count();
    if alnum < MIN_PATTERN_ALNUM {
        return Some(format!(
            "pattern would match every segment or most: it needs at least {MIN_PATTERN_ALNUM} letters or digits besides `*` and `?`, got {alnum}"
        ));
    }
    None
}

/// The same pointer listed twice is harmless but suggests a mistake.
fn listed_twice(always: &[Pointer], unless: &[Pointer], issues: &mut Issues) {
    let mut seen = HashSet::new();
    for p in always.iter().chain(unless) {
        if !seen.insert(p.text.as_str()) {
            issues.push("strip", format!("pointer {} is listed twice", p.text));
        }
    }
}

// ---------------------------------------------------------------------------
// [fairness]
// ---------------------------------------------------------------------------

/// `[fairness]` compiled. There is one only when the window and the confidence
/// are usable; the other problems are listed all the same.
struct FairnessPart {
    spec: FairnessPolicy,
    window: Window,
    /// The normal quantile of `spec.confidence`.
    z: f64,
    dimensions: Vec<Dimension>,
    limits: HashMap<Category, Limits>,
    baselines: Baselines,
}

/// campaign id -> dimension index -> shares per group.
type Baselines = HashMap<String, Vec<Option<Vec<f64>>>>;

fn fairness(f: FairnessPolicy, issues: &mut Issues) -> Option<FairnessPart> {
    let window = window(f.window_secs, f.bucket_secs, issues);
    times(&f, window.as_ref(), issues);
    let z = confidence(f.confidence, issues);
    for (field, x) in [
        ("min_campaign_considered", f.min_campaign_considered),
        ("min_campaign_selected", f.min_campaign_selected),
        ("min_group_considered", f.min_group_considered),
    ] {
        issues.range(
            format!("fairness.{field}"),
            x,
            MIN_COUNT,
            " (no verdict on no data)",
        );
    }
    let dimensions = dimensions(&f.dimensions, f.confidence, issues);
    let limits = limits(&f.limits, issues);
    let baselines = baselines(&f.baselines, &dimensions, issues);
    Some(FairnessPart {
        window: window?,
        z: z?,
        dimensions,
        limits,
        baselines,
        spec: f,
    })
}

/// A window that is a whole number of buckets.
struct Window {
    window_secs: u64,
    bucket_secs: u64,
    buckets: u64,
}

fn window(window_secs: u64, bucket_secs: u64, issues: &mut Issues) -> Option<Window> {
    let window_ok = issues.range(
        "fairness.window_secs",
        window_secs,
        WINDOW_SECS,
        " (a minute to 30 days)",
    );
    let bucket_ok = issues.range("fairness.bucket_secs", bucket_secs, BUCKET_SECS, " (a day)");
    if !(window_ok && bucket_ok) {
        return None;
    }
    if !window_secs.is_multiple_of(bucket_secs) {
        issues.push(
            "fairness.window_secs",
            format!("must be a multiple of bucket_secs ({bucket_secs}), got {window_secs}"),
        );
        return None;
    }
    let buckets = window_secs / bucket_secs;
    if buckets > MAX_BUCKETS {
        issues.push(
            "fairness.window_secs",
            format!(
                "must be at most {MAX_BUCKETS} buckets of bucket_secs ({bucket_secs}), got {buckets}: use larger buckets"
            ),
        );
        return None;
    }
    Some(Window {
        window_secs,
        bucket_secs,
        buckets,
    })
}

/// `max_future_secs` and `idle_evict_secs`, against the window when it is
/// usable: a decision may be early by at most half the window, and a
/// campaign is forgotten no sooner than its counts leave the window.
fn times(f: &FairnessPolicy, window: Option<&Window>, issues: &mut Issues) {
    let window_secs = window.map(|w| w.window_secs);
    let future_max = window_secs.map_or(MAX_FUTURE_SECS, |w| (w / 2).min(MAX_FUTURE_SECS));
    issues.range(
        "fairness.max_future_secs",
        f.max_future_secs,
        (0, future_max),
        &format!(" (half of window_secs, at most {MAX_FUTURE_SECS})"),
    );
    let evict_min = window_secs.unwrap_or(WINDOW_SECS.0);
    issues.range(
        "fairness.idle_evict_secs",
        f.idle_evict_secs,
        (evict_min, IDLE_EVICT_MAX_SECS),
        " (window_secs to 90 days)",
    );
}

/// Whether a confidence level is accepted.
fn usable_confidence(confidence: f64) -> bool {
    (0.5..0.9995).contains(&confidence)
}

/// The normal quantile of the confidence level, if the level is usable.
fn confidence(confidence: f64, issues: &mut Issues) -> Option<f64> {
    if !usable_confidence(confidence) {
        issues.push(
            "fairness.confidence",
            format!("must be between 0.5 and 0.999, got {confidence}"),
        );
        return None;
    }
    Some(z_for_confidence(confidence))
}

/// `[[fairness.dimensions]]`: every entry whose pointer parses, in order.
fn dimensions(specs: &[toml::Value], confidence: f64, issues: &mut Issues) -> Vec<Dimension> {
    if specs.is_empty() {
        issues.push("fairness.dimensions", "at least one dimension is needed");
    }
    let mut dims = Vec::new();
    for (i, v) in specs.iter().enumerate() {
        let place = format!("fairness.dimensions[{i}]");
        if let Some(d) = dimension(&place, v, confidence, &dims, issues) {
            dims.push(d);
        }
    }
    let total: usize = dims.iter().map(|d| d.groups.len()).sum();
    if total > MAX_TOTAL_GROUPS {
        issues.push(
            "fairness.dimensions",
            format!(
                "{total} groups in all; at most {} are counted",
                MAX_TOTAL_GROUPS
            ),
        );
    }
    dims
}

/// One dimension, checked against those compiled before it.
fn dimension(
    place: &str,
    v: &toml::Value,
    confidence: f64,
    before: &[Dimension],
    issues: &mut Issues,
) -> Option<Dimension> {
    let d = issues.section::<DimensionSpec>(place, v.clone())?;
    let pointer = issues.pointer(format!("{place}.pointer"), &d.pointer);
    dimension_name(place, &d.name, before, issues);
    dimension_groups(place, &d.groups, issues);
    let bands = bands(place, &d, issues);
    if d.transform.is_some() && d.bands.is_empty() {
        issues.push(
            format!("{place}.transform"),
            "needs bands to map the number to groups",
        );
    }
    let pointer = pointer?;
    // Bonferroni over the groups; an unusable confidence is reported
    // elsewhere, the usual 0.95 stands in meanwhile.
    let k = d.groups.len().max(1) as f64;
    let conf = if usable_confidence(confidence) {
        confidence
    } else {
        0.95
    };
    Some(Dimension {
        z: z_for_confidence(1.0 - (1.0 - conf) / k),
        name: d.name,
        pointer,
        groups: d.groups,
        bands,
        transform: d.transform,
    })
}

/// The name becomes a metric label, and names the dimension in baselines.
fn dimension_name(place: &str, name: &str, before: &[Dimension], issues: &mut Issues) {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        issues.push(
            format!("{place}.name"),
            "must be non-empty letters, digits and '_' (it becomes a metric label)",
        );
    }
    if before.iter().any(|x| x.name == name) {
        issues.push(
            format!("{place}.name"),
            format!("dimension {name:?} defined twice"),
        );
    }
}

fn dimension_groups(place: &str, groups: &[String], issues: &mut Issues) {
    if groups.len() < 2 {
        issues.push(
            format!("{place}.groups"),
            "at least two groups are needed to compare",
        );
    }
    if groups.len() > 32 {
        issues.push(format!("{place}.groups"), "at most 32 groups");
    }
    for (gi, g) in groups.iter().enumerate() {
        if groups[..gi].contains(g) {
            issues.push(
                format!("{place}.groups[{gi}]"),
                format!("group {g:?} listed twice"),
            );
        }
    }
}

/// `(min, max, group index)` of each band naming one of the dimension's groups.
fn bands(place: &str, d: &DimensionSpec, issues: &mut Issues) -> Vec<(i64, i64, usize)> {
    let mut bands = Vec::new();
    for (bi, b) in d.bands.iter().enumerate() {
        if b.min > b.max {
            issues.push(format!("{place}.bands[{bi}]"), "min is above max");
        }
        if d.transform == Some(BandTransform::AgeFromYear) {
            for (field, x) in [("min", b.min), ("max", b.max)] {
                if !(AGE.0..=AGE.1).contains(&x) {
                    issues.push(
                        format!("{place}.bands[{bi}].{field}"),
                        format!("must be an age between {} and {}, got {x}", AGE.0, AGE.1),
                    );
                }
            }
        }
        match d.groups.iter().position(|g| *g == b.group) {
            Some(gi) => bands.push((b.min, b.max, gi)),
            None => issues.push(
                format!("{place}.bands[{bi}].group"),
                format!("{:?} is not one of this dimension's groups", b.group),
            ),
        }
        // A number in two bands would count in whichever is listed first,
        // silently: refused (a band with min above max is reported above).
        for (bj, a) in d.bands[..bi].iter().enumerate() {
            if a.min <= a.max && b.min <= b.max && a.min <= b.max && b.min <= a.max {
                issues.push(
                    format!("{place}.bands[{bi}]"),
                    format!(
                        "band {}..={} ({:?}) overlaps bands[{bj}] {}..={} ({:?}) in dimension {:?}: a number may be in one band only",
                        b.min, b.max, b.group, a.min, a.max, a.group, d.name
                    ),
                );
            }
        }
    }
    bands
}

/// `[fairness.limits.<category>]`: `default` is required.
fn limits(specs: &BTreeMap<String, toml::Value>, issues: &mut Issues) -> HashMap<Category, Limits> {
    if !specs.contains_key("default") {
        issues.push("fairness.limits", "[fairness.limits.default] is required");
    }
    let mut out = HashMap::new();
    for (name, v) in specs {
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
        check_limits(&place, &l, issues);
        out.insert(cat, compiled_limits(&l));
    }
    out
}

/// Every ratio and distance in 0..=1, the flag limits able to flag, the
/// thresholds ordered, and the durations in range.
fn check_limits(place: &str, l: &LimitsSpec, issues: &mut Issues) {
    for (field, x) in [
        ("flag_ratio", l.flag_ratio),
        ("clear_ratio", l.clear_ratio),
        ("block_ratio", l.block_ratio),
        ("flag_distance", l.flag_distance),
        ("clear_distance", l.clear_distance),
        ("block_distance", l.block_distance),
    ] {
        issues.fraction(format!("{place}.{field}"), x, 0.0, 1.0);
    }
    // No ratio is below 0 and no distance above 1: such a limit never flags.
    if l.flag_ratio == 0.0 {
        issues.push(
            format!("{place}.flag_ratio"),
            "must be above 0 (no ratio is below 0: it would never flag), got 0",
        );
    }
    if l.flag_distance == 1.0 {
        issues.push(
            format!("{place}.flag_distance"),
            "must be below 1 (no distance is above 1: it would never flag), got 1",
        );
    }
    if !(l.block_ratio <= l.flag_ratio && l.flag_ratio <= l.clear_ratio) {
        issues.push(
            place,
            "ratios must be ordered block_ratio <= flag_ratio <= clear_ratio",
        );
    }
    if !(l.clear_distance <= l.flag_distance && l.flag_distance <= l.block_distance) {
        issues.push(
            place,
            "distances must be ordered clear_distance <= flag_distance <= block_distance",
        );
    }
    for (field, x) in [
        ("block_after_secs", l.block_after_secs),
        ("min_dwell_secs", l.min_dwell_secs),
    ] {
        issues.range(format!("{place}.{field}"), x, DURATION_SECS, " (30 days)");
    }
}

fn compiled_limits(l: &LimitsSpec) -> Limits {
    Limits {
        flag_ratio: l.flag_ratio,
        clear_ratio: l.clear_ratio,
        block_ratio: l.block_ratio,
        flag_distance: l.flag_distance,
        clear_distance: l.clear_distance,
        block_distance: l.block_distance,
        block_after_ms: ms(l.block_after_secs),
        min_dwell_ms: ms(l.min_dwell_secs),
    }
}

/// `[[fairness.baselines]]`, against the compiled dimensions.
fn baselines(specs: &[toml::Value], dims: &[Dimension], issues: &mut Issues) -> Baselines {
    let mut out = Baselines::new();
    for (i, v) in specs.iter().enumerate() {
        let place = format!("fairness.baselines[{i}]");
        if let Some(b) = issues.section::<BaselineSpec>(&place, v.clone()) {
            baseline(&place, b, dims, &mut out, issues);
        }
    }
    out
}

/// One campaign's baseline for one dimension, at most one per pair.
fn baseline(
    place: &str,
    b: BaselineSpec,
    dims: &[Dimension],
    out: &mut Baselines,
    issues: &mut Issues,
) {
    let Some(di) = dims.iter().position(|d| d.name == b.dimension) else {
        issues.push(
            format!("{place}.dimension"),
            format!("{:?} is not a configured dimension", b.dimension),
        );
        return;
    };
    let shares = shares(place, &b, &dims[di], issues);
    let entry = out.entry(b.campaign.clone()).or_default();
    if entry.len() < dims.len() {
        entry.resize(dims.len(), None);
    }
    if entry[di].is_some() {
        issues.push(
            place,
            format!(
                "campaign {:?} already has a baseline for {:?}",
                b.campaign, b.dimension
            ),
        );
    }
    if let Some(shares) = shares {
        entry[di] = Some(shares);
    }
}

/// The shares in the dimension's group order, if each names a group, lies in
/// 0..=1, and they sum to one.
fn shares(place: &str, b: &BaselineSpec, dim: &Dimension, issues: &mut Issues) -> Option<Vec<f64>> {
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
        ok &= issues.fraction(format!("{place}.shares.{g}"), *s, 0.0, 1.0);
    }
    let sum: f64 = shares.iter().sum();
    if (sum - 1.0).abs() > 0.01 {
        ok = false;
        issues.push(format!("{place}.shares"), format!("sum to {sum:.3}, not 1"));
    }
    ok.then_some(shares)
}

// ---------------------------------------------------------------------------
// Assembly
// ---------------------------------------------------------------------------

/// Every part of a policy, each `None` where its section could not be compiled
/// (a problem was then listed for it).
struct Parts {
    version: Option<String>,
    mode: Option<Mode>,
    consent: Option<ConsentPart>,
    strip: Option<StripPart>,
    fairness: Option<FairnessPart>,
}

impl Parts {
    /// The policy, when every part is there and no problem was found.
    fn finish(self, issues: Issues) -> Result<CompiledPolicy, Vec<PolicyIssue>> {
        match self {
            Parts {
                version: Some(version),
                mode: Some(mode),
                consent: Some(consent),
                strip: Some(strip),
                fairness: Some(fairness),
            } if issues.0.is_empty() => Ok(assemble(version, mode, consent, strip, fairness)),
            // A missing part always comes with its problem.
            _ => Err(issues.0),
        }
    }
}

fn assemble(
    version: String,
    mode: Mode,
    consent: ConsentPart,
    strip: StripPart,
    fairness: FairnessPart,
) -> CompiledPolicy {
    let (c, f, w) = (consent.spec, fairness.spec, fairness.window);
    let (group_offsets, total_groups) = group_offsets(&fairness.dimensions);
    CompiledPolicy {
        version,
        mode,
        vendor_id: c.vendor_id,
        required_purposes_mask: consent.required_mask,
        required_purposes: c.required_purposes,
        max_age_ms: c.max_age_days as i64 * 86_400_000,
        gdpr_unknown: c.gdpr_unknown,
        no_consent: c.no_consent,
        opt_out: c.opt_out,
        child: c.child,
        cache_entries: c.cache_entries,
        cache_bytes: c.cache_bytes,
        max_string_bytes: c.max_string_bytes,
        always_plan: RemovalGroup::plan(&strip.always),
        personal_plan: RemovalGroup::plan(&strip.unless),
        child_plan: RemovalGroup::plan(&strip.child),
        lmt_plan: RemovalGroup::plan(&strip.lmt),
        when_child: strip.child,
        when_lmt: strip.lmt,
        always: strip.always,
        unless_personalised: strip.unless,
        coarsen: strip.coarsen,
        segments: strip.segments,
        window_ms: ms(w.window_secs),
        bucket_ms: ms(w.bucket_secs),
        buckets: w.buckets as usize,
        max_future_ms: ms(f.max_future_secs),
        idle_evict_ms: ms(f.idle_evict_secs),
        confidence: f.confidence,
        z: fairness.z,
        min_campaign_considered: f.min_campaign_considered,
        min_campaign_selected: f.min_campaign_selected,
        min_group_considered: f.min_group_considered,
        dimensions: fairness.dimensions,
        group_offsets,
        total_groups,
        limits: fairness.limits,
        baselines: fairness.baselines,
    }
}

/// Offset of each dimension's first group in a flat per-group array, and the
/// number of groups in all.
fn group_offsets(dimensions: &[Dimension]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(dimensions.len());
    let mut total = 0;
    for d in dimensions {
        offsets.push(total);
        total += d.groups.len();
    }
    (offsets, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/policy.toml");

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

    /// A setting of the wrong type, or unknown, does not hide the other
    /// problems of its section (a review found `no_consent = "block"`
    /// hiding `vendor_id = 0`, and `window_secs = 3600.0` every check of
    /// the dimensions).
    #[test]
    fn a_wrong_setting_does_not_hide_the_rest_of_its_section() {
        let bad = EXAMPLE
            .replace("no_consent = \"contextual\"", "no_consent = \"block\"")
            .replace("vendor_id = 755", "vendor_id = 0")
            .replace("max_age_days = 390", "max_age_days = \"13 months\"")
            .replace("cache_entries = 65536", "cache_entrys = 65536")
            .replace("window_secs = 3600", "window_secs = 3600.0")
            .replace(
                "pointer = \"/audience/age_band\"",
                "pointer = \"audience/age_band\"",
            );
        let err = CompiledPolicy::from_toml(&bad).unwrap_err();
        let places: Vec<&str> = err.issues().iter().map(|i| i.place.as_str()).collect();
        for want in [
            "consent.no_consent",
            "consent.vendor_id",
            "consent.max_age_days",
            "consent.cache_entrys",
            "fairness.window_secs",
            "fairness.dimensions[1].pointer",
        ] {
            assert!(places.contains(&want), "{want} not in {places:?}");
        }
        // Each once, and nothing said of a setting replaced to read on.
        assert_eq!(places.len(), 6, "{err}");
        // A problem no one setting causes still ends the section, once.
        let missing = EXAMPLE.replace("vendor_id = 755\n", "");
        let err = CompiledPolicy::from_toml(&missing).unwrap_err();
        assert_eq!(err.issues().len(), 1, "{err}");
        assert!(err.to_string().contains("vendor_id"), "{err}");
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
        assert!(text.contains("consent.vendorid:"), "{text}");
        assert!(text.contains("fairness.window:"), "{text}");
        assert!(text.contains("vendorid"), "{text}");
        assert!(text.contains("window"), "{text}");
    }

    /// The example policy with `from` replaced by `to` (which must occur).
    fn edited(from: &str, to: &str) -> String {
        assert!(EXAMPLE.contains(from), "example policy lacks {from:?}");
        EXAMPLE.replacen(from, to, 1)
    }

    /// The example policy with the `[[fairness.dimensions]]` entries replaced.
    fn with_dimensions(dims: &str) -> String {
        let start = EXAMPLE.find("[[fairness.dimensions]]").unwrap();
        let end = EXAMPLE.find("# A dimension may also band").unwrap();
        format!("{}{dims}\n{}", &EXAMPLE[..start], &EXAMPLE[end..])
            .replace("[[fairness.baselines]]\ncampaign = \"cmp-housing-1\"\ndimension = \"sex\"\nshares = { female = 0.5, male = 0.5 }", "")
    }

    const SEX: &str = "[[fairness.dimensions]]\nname = \"sex\"\npointer = \"/audience/sex\"\ngroups = [\"female\", \"male\"]\n";

    /// Each rule on its own: the one bad value is refused, naming its place.
    #[test]
    fn each_rule_names_its_place() {
        let sensitive_start = EXAMPLE.find("sensitive = [").unwrap();
        let sensitive_end = sensitive_start + EXAMPLE[sensitive_start..].find(']').unwrap() + 1;
        let no_patterns = format!(
            "{}sensitive = []{}",
            &EXAMPLE[..sensitive_start],
            &EXAMPLE[sensitive_end..]
        );
        let banded = |bands: &str| {
            with_dimensions(&format!(
                "{SEX}[[fairness.dimensions]]\nname = \"yob\"\npointer = \"/user/yob\"\ngroups = [\"young\", \"old\"]\n{bands}\n"
            ))
        };
        let groups = |n: usize| {
            let g: Vec<String> = (0..n).map(|i| format!("\"g{i}\"")).collect();
            with_dimensions(&format!(
                "[[fairness.dimensions]]\nname = \"many\"\npointer = \"/a\"\ngroups = [{}]\n",
                g.join(", ")
            ))
        };
        let cases: Vec<(String, &str)> = vec![
            (format!("extra = 1\n{EXAMPLE}"), "extra"),
            (
                edited("version = \"2026-11-23.1\"", "version = \" \""),
                "version",
            ),
            (
                edited("version = \"2026-11-23.1\"", "version = 3"),
                "version",
            ),
            (edited("version = \"2026-11-23.1\"", ""), "version"),
            (edited("mode = \"monitor\"", "mode = \"loud\""), "mode"),
            (edited("[consent]", "[consent_x]"), "consent"),
            (
                edited("[consent]", "[consent]\nvendorid = 1"),
                "consent.vendorid",
            ),
            (
                edited("vendor_id = 755", "vendor_id = 0"),
                "consent.vendor_id",
            ),
            (
                edited("required_purposes = [1, 3, 4]", "required_purposes = []"),
                "consent.required_purposes",
            ),
            (
                edited(
                    "required_purposes = [1, 3, 4]",
                    "required_purposes = [1, 0]",
                ),
                "consent.required_purposes[1]",
            ),
            (
                edited("required_purposes = [1, 3, 4]", "required_purposes = [12]"),
                "consent.required_purposes[0]",
            ),
            (
                edited("max_age_days = 390", "max_age_days = 0"),
                "consent.max_age_days",
            ),
            (
                edited("cache_entries = 65536", "cache_entries = 0"),
                "consent.cache_entries",
            ),
            (
                edited("always = [\"/audience\"]", "always = [\"audience\"]"),
                "strip.always[0]",
            ),
            (
                edited("  \"/user/id\",", "  \"user/id\","),
                "strip.unless_personalised[0]",
            ),
            (
                edited(
                    "always = [\"/audience\"]",
                    "always = [\"/audience\", \"/user/id\"]",
                ),
                "strip",
            ),
            (
                edited("pointer = \"/device/ip\"\n", "pointer = \"device/ip\"\n"),
                "strip.coarsen[0].pointer",
            ),
            (
                edited("ipv4_prefix_bits = 24", "ipv4_prefix_bits = 33"),
                "strip.coarsen[0].ipv4_prefix_bits",
            ),
            (
                edited("ipv6_prefix_bits = 56", "ipv6_prefix_bits = 129"),
                "strip.coarsen[0].ipv6_prefix_bits",
            ),
            (
                edited("decimals = 2", "decimals = 7"),
                "strip.coarsen[2].decimals",
            ),
            (edited("decimals = 2", ""), "strip.coarsen[2].decimals"),
            (edited("keep_chars = 3", ""), "strip.coarsen[6].keep_chars"),
            (
                edited("method = \"ip\"              #", "method = \"shred\" #"),
                "strip.coarsen[0]",
            ),
            (
                edited("pointer = \"/user/data\"", "pointer = \"user/data\""),
                "strip.segments.pointer",
            ),
            (no_patterns, "strip.segments.sensitive"),
            (
                edited("\"health-*\",", "\"**\","),
                "strip.segments.sensitive[0]",
            ),
            (
                edited("\"health-*\",", "\"  \","),
                "strip.segments.sensitive[0]",
            ),
            (
                edited("\"health-*\",", "\"*?\","),
                "strip.segments.sensitive[0]",
            ),
            (
                edited("\"health-*\",", "\"*a-*\","),
                "strip.segments.sensitive[0]",
            ),
            (
                edited("\"health-*\",", "\"h\u{e9}alth-*\","),
                "strip.segments.sensitive[0]",
            ),
            (
                edited("\"health-*\",", &format!("\"{}*\",", "h".repeat(256))),
                "strip.segments.sensitive[0]",
            ),
            (
                edited("\"health-*\",", &"\"health-*\",".repeat(1001)),
                "strip.segments.sensitive",
            ),
            (
                edited("bucket_secs = 60", "bucket_secs = 0"),
                "fairness.bucket_secs",
            ),
            (
                edited("window_secs = 3600", "window_secs = 3601"),
                "fairness.window_secs",
            ),
            (
                edited("window_secs = 3600", "window_secs = 0"),
                "fairness.window_secs",
            ),
            (
                edited("window_secs = 3600", "window_secs = 86460"),
                "fairness.window_secs",
            ),
            (
                edited("confidence = 0.95", "confidence = 0.4999"),
                "fairness.confidence",
            ),
            (
                edited("confidence = 0.95", "confidence = 0.9995"),
                "fairness.confidence",
            ),
            (
                edited(
                    "min_campaign_considered = 300",
                    "min_campaign_considered = 0",
                ),
                "fairness.min_campaign_considered",
            ),
            (
                edited("min_campaign_selected = 300", "min_campaign_selected = 0"),
                "fairness.min_campaign_selected",
            ),
            (
                edited("min_group_considered = 50", "min_group_considered = 0"),
                "fairness.min_group_considered",
            ),
            (
                edited(
                    "min_group_considered = 50",
                    "min_group_considered = 1000001",
                ),
                "fairness.min_group_considered",
            ),
            (
                edited("window_secs = 3600", "window_secs = 59"),
                "fairness.window_secs",
            ),
            (
                edited("window_secs = 3600", "window_secs = 2592060")
                    .replace("bucket_secs = 60", "bucket_secs = 1860"),
                "fairness.window_secs",
            ),
            (
                edited("bucket_secs = 60", "bucket_secs = 86401"),
                "fairness.bucket_secs",
            ),
            (
                edited("max_future_secs = 300", "max_future_secs = 1801"),
                "fairness.max_future_secs",
            ),
            (
                edited(
                    "max_future_secs = 300",
                    "max_future_secs = 9223372036854775807",
                ),
                "fairness.max_future_secs",
            ),
            (
                edited("idle_evict_secs = 7200", "idle_evict_secs = 3599"),
                "fairness.idle_evict_secs",
            ),
            (
                edited("idle_evict_secs = 7200", "idle_evict_secs = 7776001"),
                "fairness.idle_evict_secs",
            ),
            (
                edited("block_after_secs = 1800", "block_after_secs = 2592001"),
                "fairness.limits.default.block_after_secs",
            ),
            (
                edited(
                    "min_dwell_secs = 300\n",
                    "min_dwell_secs = 9223372036854775807\n",
                ),
                "fairness.limits.default.min_dwell_secs",
            ),
            (
                edited("flag_ratio = 0.8 ", "flag_ratio = 0.0 ").replacen(
                    "block_ratio = 0.5",
                    "block_ratio = 0.0",
                    1,
                ),
                "fairness.limits.default.flag_ratio",
            ),
            (
                edited("flag_distance = 0.10", "flag_distance = 1.0").replacen(
                    "block_distance = 0.25",
                    "block_distance = 1.0",
                    1,
                ),
                "fairness.limits.default.flag_distance",
            ),
            (
                edited("max_age_days = 390", "max_age_days = 3651"),
                "consent.max_age_days",
            ),
            (
                edited("cache_entries = 65536", "cache_entries = 1000001"),
                "consent.cache_entries",
            ),
            (
                edited("keep_chars = 3", "keep_chars = 17"),
                "strip.coarsen[6].keep_chars",
            ),
            (
                with_dimensions("").replacen(
                    "min_group_considered = 50",
                    "min_group_considered = 50\ndimensions = []",
                    1,
                ),
                "fairness.dimensions",
            ),
            (
                edited("groups = [\"female\", \"male\"]", "groups = [\"female\"]"),
                "fairness.dimensions[0].groups",
            ),
            (
                edited(
                    "groups = [\"female\", \"male\"]",
                    "groups = [\"male\", \"male\"]",
                ),
                "fairness.dimensions[0].groups[1]",
            ),
            (groups(33), "fairness.dimensions[0].groups"),
            (
                edited("name = \"sex\"", "name = \"s-x\""),
                "fairness.dimensions[0].name",
            ),
            (
                edited("name = \"sex\"", "name = \"\""),
                "fairness.dimensions[0].name",
            ),
            (
                edited("name = \"age_band\"", "name = \"sex\""),
                "fairness.dimensions[1].name",
            ),
            (
                edited("pointer = \"/audience/sex\"", "pointer = \"audience/sex\""),
                "fairness.dimensions[0].pointer",
            ),
            (
                banded("bands = [{ group = \"young\", min = 40, max = 30 }]"),
                "fairness.dimensions[1].bands[0]",
            ),
            (
                banded("bands = [{ group = \"teen\", min = 0, max = 19 }]"),
                "fairness.dimensions[1].bands[0].group",
            ),
            (
                banded("transform = \"age_from_year\""),
                "fairness.dimensions[1].transform",
            ),
            (
                banded(
                    "transform = \"age_from_year\"\nbands = [{ group = \"young\", min = -1, max = 30 }]",
                ),
                "fairness.dimensions[1].bands[0].min",
            ),
            (
                banded(
                    "transform = \"age_from_year\"\nbands = [{ group = \"old\", min = 30, max = 151 }]",
                ),
                "fairness.dimensions[1].bands[0].max",
            ),
            (
                edited("[fairness.limits.default]", "[fairness.limits.other]"),
                "fairness.limits",
            ),
            (
                edited("[fairness.limits.default]", "[fairness.limits.other]"),
                "fairness.limits.other",
            ),
            (
                edited("flag_ratio = 0.8 ", "flag_ratio = 1.8 "),
                "fairness.limits.default.flag_ratio",
            ),
            (
                edited("flag_ratio = 0.8 ", "flag_ratio = nan "),
                "fairness.limits.default.flag_ratio",
            ),
            (
                edited("block_distance = 0.25", "block_distance = -0.1"),
                "fairness.limits.default.block_distance",
            ),
            (
                edited("block_ratio = 0.5", "block_ratio = 0.81"),
                "fairness.limits.default",
            ),
            (
                edited("clear_ratio = 0.85", "clear_ratio = 0.79"),
                "fairness.limits.default",
            ),
            (
                edited("clear_distance = 0.08", "clear_distance = 0.11"),
                "fairness.limits.default",
            ),
            (
                edited("block_distance = 0.25", "block_distance = 0.09"),
                "fairness.limits.default",
            ),
            (
                edited("min_dwell_secs = 300\n", "min_dwell_secs = \"x\"\n"),
                "fairness.limits.default",
            ),
            (
                edited("dimension = \"sex\"", "dimension = \"gender\""),
                "fairness.baselines[0].dimension",
            ),
            (
                edited("female = 0.5, male = 0.5", "female = 0.5, other = 0.5"),
                "fairness.baselines[0].shares.other",
            ),
            (
                edited("female = 0.5, male = 0.5", "female = 1.5, male = -0.5"),
                "fairness.baselines[0].shares.female",
            ),
            (
                edited("female = 0.5, male = 0.5", "female = 0.5, male = 0.4"),
                "fairness.baselines[0].shares",
            ),
            (
                edited(
                    "[[fairness.baselines]]",
                    "[[fairness.baselines]]\ncampaign = \"cmp-housing-1\"\ndimension = \"sex\"\nshares = { female = 0.5, male = 0.5 }\n\n[[fairness.baselines]]",
                ),
                "fairness.baselines[1]",
            ),
            (
                edited(
                    "[[fairness.baselines]]",
                    "[[fairness.baselines]]\nweight = 1",
                ),
                "fairness.baselines[0].weight",
            ),
        ];
        for (text, place) in &cases {
            let err = CompiledPolicy::from_toml(text).expect_err(place);
            let places: Vec<&str> = err.issues().iter().map(|i| i.place.as_str()).collect();
            // The place, or (a wrong setting in it) one of its settings.
            assert!(
                places
                    .iter()
                    .any(|p| p == place || p.starts_with(&format!("{place}."))),
                "expected {place}, got {places:?}"
            );
        }
    }

    /// Bands of one dimension may not overlap (a number would be in two
    /// groups, counted in whichever is listed first): refused, naming the
    /// dimension and both bands, with every other problem still listed.
    /// Bands that touch without overlapping are accepted.
    #[test]
    fn overlapping_bands_are_refused_naming_both() {
        let banded = |bands: &str| {
            with_dimensions(&format!(
                "{SEX}[[fairness.dimensions]]\nname = \"yob\"\npointer = \"/user/yob\"\ngroups = [\"young\", \"mid\", \"old\"]\nbands = [{bands}]\n"
            ))
        };
        let err = CompiledPolicy::from_toml(
            &banded(
                "{ group = \"young\", min = 0, max = 34 }, { group = \"old\", min = 60, max = 130 }, \
                 { group = \"mid\", min = 30, max = 60 }",
            )
            .replacen("vendor_id = 755", "vendor_id = 0", 1),
        )
        .unwrap_err();
        let issues: Vec<String> = err.issues().iter().map(|i| i.to_string()).collect();
        let overlaps: Vec<&PolicyIssue> = err
            .issues()
            .iter()
            .filter(|i| i.message.contains("overlap"))
            .collect();
        assert_eq!(overlaps.len(), 2, "{issues:?}");
        assert_eq!(overlaps[0].place, "fairness.dimensions[1].bands[2]");
        for (i, other) in overlaps.iter().zip(["bands[0]", "bands[1]"]) {
            assert!(i.message.contains("\"yob\""), "{issues:?}");
            assert!(i.message.contains(other), "{issues:?}");
        }
        assert!(overlaps[0].message.contains("0..=34"), "{issues:?}");
        assert!(overlaps[0].message.contains("30..=60"), "{issues:?}");
        assert!(overlaps[1].message.contains("60..=130"), "{issues:?}");
        assert!(
            err.issues().iter().any(|i| i.place == "consent.vendor_id"),
            "{issues:?}"
        );
        // One band inside another, listed either way round.
        for bands in [
            "{ group = \"young\", min = 0, max = 130 }, { group = \"old\", min = 40, max = 50 }",
            "{ group = \"old\", min = 40, max = 50 }, { group = \"young\", min = 0, max = 130 }",
            "{ group = \"old\", min = 40, max = 40 }, { group = \"old\", min = 40, max = 40 }",
        ] {
            let err = CompiledPolicy::from_toml(&banded(bands)).unwrap_err();
            assert_eq!(err.issues().len(), 1, "{:?}", err.issues());
            assert!(err.issues()[0].message.contains("overlap"));
        }
        // Touching, in any order, and across the whole of `i64`: accepted.
        CompiledPolicy::from_toml(&banded(
            "{ group = \"old\", min = 35, max = 9223372036854775807 }, \
             { group = \"young\", min = -9223372036854775808, max = 17 }, { group = \"mid\", min = 18, max = 34 }",
        ))
        .unwrap();
    }

    /// Values at the edge of each range are accepted.
    #[test]
    fn values_at_the_edge_of_each_range_are_accepted() {
        let groups: Vec<String> = (0..32).map(|i| format!("\"g{i}\"")).collect();
        let big = with_dimensions(&format!(
            "[[fairness.dimensions]]\nname = \"a\"\npointer = \"/a\"\ngroups = [{0}]\n[[fairness.dimensions]]\nname = \"b\"\npointer = \"/b\"\ngroups = [{0}]\n",
            groups.join(", ")
        ));
        for text in [
            edited("vendor_id = 755", "vendor_id = 1"),
            edited(
                "required_purposes = [1, 3, 4]",
                "required_purposes = [1, 11]",
            ),
            edited("max_age_days = 390", "max_age_days = 1"),
            edited("cache_entries = 65536", "cache_entries = 1"),
            edited("mode = \"monitor\"", ""),
            edited("ipv4_prefix_bits = 24", "ipv4_prefix_bits = 32"),
            edited("ipv6_prefix_bits = 56", "ipv6_prefix_bits = 128"),
            edited("decimals = 2", "decimals = 6"),
            edited("window_secs = 3600", "window_secs = 86400")
                .replace("idle_evict_secs = 7200", "idle_evict_secs = 86400"),
            edited("window_secs = 3600", "window_secs = 60")
                .replace("max_future_secs = 300", "max_future_secs = 30")
                .replace("idle_evict_secs = 7200", "idle_evict_secs = 60"),
            edited("window_secs = 3600", "window_secs = 2592000")
                .replace("bucket_secs = 60", "bucket_secs = 1800")
                .replace("idle_evict_secs = 7200", "idle_evict_secs = 7776000"),
            edited("bucket_secs = 60", "bucket_secs = 3600"),
            edited("max_future_secs = 300", "max_future_secs = 1800"),
            edited("max_future_secs = 300", "max_future_secs = 0"),
            edited("idle_evict_secs = 7200", "idle_evict_secs = 3600"),
            edited(
                "min_group_considered = 50",
                "min_group_considered = 1000000",
            ),
            edited("block_after_secs = 1800", "block_after_secs = 2592000")
                .replace("min_dwell_secs = 300\n", "min_dwell_secs = 0\n"),
            edited("max_age_days = 390", "max_age_days = 3650"),
            edited("cache_entries = 65536", "cache_entries = 1000000"),
            edited("keep_chars = 3", "keep_chars = 16"),
            edited("keep_chars = 3", "keep_chars = 0"),
            edited("flag_ratio = 0.8 ", "flag_ratio = 0.01 ")
                .replace("block_ratio = 0.5", "block_ratio = 0.0"),
            edited("confidence = 0.95", "confidence = 0.5"),
            edited("confidence = 0.95", "confidence = 0.9994"),
            edited("min_group_considered = 50", "min_group_considered = 1"),
            edited("clear_ratio = 0.85", "clear_ratio = 0.8"),
            edited("block_ratio = 0.5", "block_ratio = 0.8"),
            edited("flag_ratio = 0.8 ", "flag_ratio = 1.0 ")
                .replace("clear_ratio = 0.85", "clear_ratio = 1.0"),
            edited("clear_distance = 0.08", "clear_distance = 0.0"),
            edited("block_distance = 0.25", "block_distance = 0.1"),
            edited("female = 0.5, male = 0.5", "female = 0.505, male = 0.5"),
            big,
        ] {
            if let Err(e) = CompiledPolicy::from_toml(&text) {
                panic!("refused: {e}\n{text}");
            }
        }
        // A mode left out is monitor; 65 groups in all are too many.
        assert_eq!(
            CompiledPolicy::from_toml(&edited("mode = \"monitor\"", ""))
                .unwrap()
                .mode,
            Mode::Monitor
        );
        let g: Vec<String> = (0..32).map(|i| format!("\"g{i}\"")).collect();
        let too_many = with_dimensions(&format!(
            "[[fairness.dimensions]]\nname = \"a\"\npointer = \"/a\"\ngroups = [{0}]\n[[fairness.dimensions]]\nname = \"b\"\npointer = \"/b\"\ngroups = [{0}]\n{SEX}",
            g.join(", ")
        ));
        let err = CompiledPolicy::from_toml(&too_many).unwrap_err();
        assert!(
            err.issues()
                .iter()
                .any(|i| i.place == "fairness.dimensions" && i.message.contains("66 groups")),
            "{err}"
        );
    }

    /// What the example policy compiles to, number by number.
    #[test]
    fn the_example_compiles_to_these_numbers() {
        let p = CompiledPolicy::from_toml(EXAMPLE).unwrap();
        assert_eq!(p.version, "2026-11-23.1");
        assert_eq!(p.mode, Mode::Monitor);
        assert_eq!(p.required_purposes_mask, (1 << 1) | (1 << 3) | (1 << 4));
        assert_eq!(p.max_age_ms, 390 * 86_400_000);
        assert_eq!(p.cache_entries, 65536);
        assert_eq!(
            (p.window_ms, p.bucket_ms, p.buckets),
            (3_600_000, 60_000, 60)
        );
        assert_eq!((p.max_future_ms, p.idle_evict_ms), (300_000, 7_200_000));
        assert_eq!(
            (
                p.min_campaign_considered,
                p.min_campaign_selected,
                p.min_group_considered
            ),
            (300, 300, 50)
        );
        assert!((p.z - 1.959_964).abs() < 1e-5);
        assert_eq!(p.group_offsets, vec![0, 2]);
        assert_eq!(p.total_groups, 8);
        assert_eq!(p.always.len(), 1);
        assert_eq!(p.unless_personalised.len(), 14);
        assert_eq!(p.coarsen.len(), 8);
        assert!(p.segments.is_some());
        let l = &p.limits[&Category::Default];
        assert_eq!(
            (l.flag_ratio, l.clear_ratio, l.block_ratio),
            (0.8, 0.85, 0.5)
        );
        assert_eq!(
            (l.flag_distance, l.clear_distance, l.block_distance),
            (0.10, 0.08, 0.25)
        );
        assert_eq!((l.block_after_ms, l.min_dwell_ms), (1_800_000, 300_000));
        assert_eq!(p.limits.len(), 4);
        assert_eq!(
            p.baselines["cmp-housing-1"],
            vec![Some(vec![0.5, 0.5]), None]
        );
        let mode =
            CompiledPolicy::from_toml(&edited("mode = \"monitor\"", "mode = \"enforce\"")).unwrap();
        assert_eq!(mode.mode, Mode::Enforce);
    }

    /// Numbers that once passed the check and crashed or disabled the core
    /// are refused, each naming its range and the value, all at once.
    #[test]
    fn numbers_out_of_range_name_the_range_and_are_listed_together() {
        let text = edited("window_secs = 3600", "window_secs = 2305843009213693952")
            .replace("bucket_secs = 60", "bucket_secs = 2305843009213693952")
            .replace(
                "max_future_secs = 300",
                "max_future_secs = 9223372036854775807",
            )
            .replace(
                "block_after_secs = 1800",
                "block_after_secs = 9223372036854775807",
            )
            .replacen("\"health-*\",", "\"*?\",", 1);
        let err = CompiledPolicy::from_toml(&text).unwrap_err();
        let lines: Vec<String> = err.issues().iter().map(|i| i.to_string()).collect();
        for want in [
            "fairness.window_secs: must be between 60 and 2592000 (a minute to 30 days), got 2305843009213693952",
            "fairness.bucket_secs: must be between 1 and 86400 (a day), got 2305843009213693952",
            "fairness.max_future_secs: must be between 0 and 3600 (half of window_secs, at most 3600), got 9223372036854775807",
            "fairness.limits.default.block_after_secs: must be between 0 and 2592000 (30 days), got 9223372036854775807",
            "strip.segments.sensitive[0]: pattern would match every segment or most: it needs at least 3 letters or digits besides `*` and `?`, got 0",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want}\nnot in {lines:#?}");
        }
        assert_eq!(lines.len(), 5, "{lines:#?}");
        // Against a usable window, max_future_secs is bounded by half of it.
        let err =
            CompiledPolicy::from_toml(&edited("max_future_secs = 300", "max_future_secs = 1801"))
                .unwrap_err();
        assert_eq!(
            err.issues()[0].to_string(),
            "fairness.max_future_secs: must be between 0 and 1800 (half of window_secs, at most 3600), got 1801"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = CompiledPolicy::from_toml("version = \"x\"\n[consent\n").unwrap_err();
        assert_eq!(err.issues()[0].place, "line 2");
    }
}
