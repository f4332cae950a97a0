//! Turning policy text into a [`CompiledPolicy`], listing every problem.

use std::collections::HashMap;
use std::path::Path;

use super::compiled::{
    Category, Coarsen, CoarsenOp, CompiledPolicy, Dimension, Limits, MAX_TOTAL_GROUPS,
};
use super::error::{PolicyError, PolicyIssue};
use super::file::{
    BaselineSpec, CoarsenMethod, CoarsenRule, ConsentPolicy, DimensionSpec, FairnessPolicy,
    LimitsSpec, Mode, StripPolicy,
};
use super::pointer::{Pointer, RemovalGroup, SegmentMatcher};
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
}
