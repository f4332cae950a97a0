//! Consent: from a decision's signals (TCF v2.2, US Privacy, GPP, GPC, COPPA,
//! LMT) to one result — personalised, contextual or withheld — with a reason
//! code (and the GPP section whose rule gave it). Every signal that applies
//! is judged and the strictest result is kept, right by right; the rules and
//! their sources are tabled in README "Consent".
//!
//! Consent is never assumed. A string that is missing where it is needed,
//! malformed, undecodable, expired or longer than the policy allows counts as
//! no consent. Decoding uses the `iab_gpp` crate for the US sections 7–23 and
//! fairgate's own readers for TCF, the GPP header, sections 24–27 and US Privacy (checked
//! against strings made by the IAB's reference libraries, see
//! `tests/data/consent/`). Only what applies is decoded: TCF where GDPR
//! applies, and of a GPP string only the sections `gpp_sid` lists. Decoded
//! strings are cached, because the same strings recur across many decisions,
//! in a cache bounded in entries and in bytes.

mod gpp;
mod tcf;

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use serde::Serialize;

pub use gpp::{
    GppDecodeError, GppFacts, SectionFacts, SectionSet, UsFacts, UspInvalid, decode_gpp, decode_usp,
};
pub use tcf::{TcfCore, TcfDecodeError, TcfFacts, VendorSet, decode_core, decode_tcf};

use crate::policy::{CompiledPolicy, Fallback, GdprUnknown};

/// What a decision may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// All consent needed is there: personal fields may flow.
    Personalised,
    /// Every personal field is removed; the decision still flows.
    Contextual,
    /// The decision is routed to the blocked topic.
    Withheld,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Personalised => "personalised",
            Outcome::Contextual => "contextual",
            Outcome::Withheld => "withheld",
        }
    }

    fn from_fallback(f: Fallback) -> Outcome {
        match f {
            Fallback::Contextual => Outcome::Contextual,
            Fallback::Withheld => Outcome::Withheld,
        }
    }
}

/// Why the result is what it is. Stable codes: they appear in headers and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every applicable signal allows personalisation.
    Consented,
    /// No privacy regime applies to the decision.
    NoRegime,
    TcfMissing,
    TcfUndecodable,
    /// Longer than `consent.max_string_bytes`: not decoded.
    TcfTooLong,
    TcfExpired,
    TcfPurpose,
    TcfVendor,
    TcfRestricted,
    UspOptOut,
    UspInvalid,
    GppMissing,
    GppUndecodable,
    /// Longer than `consent.max_string_bytes`: not decoded.
    GppTooLong,
    GppSectionMissing,
    GppSectionUnsupported,
    GppSidInvalid,
    GppOptOut,
    /// A US section's notice not given (2), or an opt-out of 2 beside its notice of 0.
    GppNotice,
    /// A US section's `MspaServiceProviderMode` = 1.
    GppServiceProvider,
    /// A US section's `SensitiveDataProcessing`, by Prebid's rule.
    GppSensitive,
    /// A US section's `PersonalDataConsents` set.
    GppPersonalData,
    Gpc,
    Coppa,
    KnownChild,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Consented => "consented",
            Reason::NoRegime => "no_regime",
            Reason::TcfMissing => "tcf_missing",
            Reason::TcfUndecodable => "tcf_undecodable",
            Reason::TcfTooLong => "tcf_too_long",
            Reason::TcfExpired => "tcf_expired",
            Reason::TcfPurpose => "tcf_purpose",
            Reason::TcfVendor => "tcf_vendor",
            Reason::TcfRestricted => "tcf_restricted",
            Reason::UspOptOut => "usp_opt_out",
            Reason::UspInvalid => "usp_invalid",
            Reason::GppMissing => "gpp_missing",
            Reason::GppUndecodable => "gpp_undecodable",
            Reason::GppTooLong => "gpp_too_long",
            Reason::GppSectionMissing => "gpp_section_missing",
            Reason::GppSectionUnsupported => "gpp_section_unsupported",
            Reason::GppSidInvalid => "gpp_sid_invalid",
            Reason::GppOptOut => "gpp_opt_out",
            Reason::GppNotice => "gpp_notice",
            Reason::GppServiceProvider => "gpp_service_provider",
            Reason::GppSensitive => "gpp_sensitive",
            Reason::GppPersonalData => "gpp_personal_data",
            Reason::Gpc => "gpc",
            Reason::Coppa => "coppa",
            Reason::KnownChild => "known_child",
        }
    }
}

/// How one signal came out, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignalResult {
    /// The signal is not present, or its regime does not apply.
    #[default]
    NotApplicable,
    /// Present and allows personalisation.
    Allowed,
    /// Present and denies (no consent, opt-out, child).
    Denied,
    /// Present but malformed, undecodable or expired.
    Invalid,
}

impl SignalResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalResult::NotApplicable => "not_applicable",
            SignalResult::Allowed => "allowed",
            SignalResult::Denied => "denied",
            SignalResult::Invalid => "invalid",
        }
    }
}

/// Per-signal results of one evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Signals {
    pub tcf: SignalResult,
    pub usp: SignalResult,
    pub gpp: SignalResult,
    pub gpc: SignalResult,
    pub coppa: SignalResult,
}

impl Signals {
    /// `(signal name, result)` pairs, for metrics.
    pub fn iter(&self) -> [(&'static str, SignalResult); 5] {
        [
            ("tcf", self.tcf),
            ("usp", self.usp),
            ("gpp", self.gpp),
            ("gpc", self.gpc),
            ("coppa", self.coppa),
        ]
    }
}

/// The consent result for one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: Reason,
    /// Precise geolocation may flow (personalised, no child, no `device.lmt`,
    /// TCF Special Feature 1 in every TCF string that applies, no US section refusing it).
    pub precise_geo: bool,
    /// The GPP section whose rule gave `reason`, when one did (an id of 1..=63).
    pub section: Option<u16>,
    /// A child: `regs.coppa = 1` or a known child in a GPP US section.
    pub child: bool,
    /// `device.lmt = 1`: device ids are removed whatever the outcome.
    pub lmt: bool,
    pub signals: Signals,
}

impl Verdict {
    /// The `fairgate-consent-reason` header: the reason code, and after a
    /// colon the GPP section that gave it (`gpp_notice:7`, `tcf_vendor:2`).
    /// Both come from closed sets (the codes, and section ids 1..=63), never
    /// from the input's text.
    pub fn reason_header(&self) -> String {
        match self.section {
            Some(sid) => format!("{}:{sid}", self.reason.as_str()),
            None => self.reason.as_str().to_string(),
        }
    }
}

/// The consent signals of one decision, borrowed from it. Type checking of
/// these fields happens when the decision is read (`decision.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    /// `regs.gdpr` (or, absent, `regs.ext.gdpr`): `Some(true)` applies,
    /// `Some(false)` does not, `None` absent (then `gpp_sid` decides).
    pub gdpr: Option<bool>,
    /// `user.consent` (or, absent, `user.ext.consent`), the TCF string.
    pub tcf: Option<&'a str>,
    /// `regs.us_privacy` (or, absent, `regs.ext.us_privacy`).
    pub usp: Option<&'a str>,
    /// `regs.gpp`.
    pub gpp: Option<&'a str>,
    /// `regs.gpp_sid`: section ids that apply to this decision.
    pub gpp_sid: &'a [i64],
    /// `regs.gpc = 1`.
    pub gpc: bool,
    /// `regs.coppa = 1`.
    pub coppa: bool,
    /// `device.lmt = 1`.
    pub lmt: bool,
    /// Decision time, epoch ms (for TCF expiry).
    pub ts_ms: i64,
}

/// Evaluates consent under one policy, caching decoded strings.
///
/// The cache lives with the policy: a reloaded policy gets a fresh cache, so
/// a change of vendor id or purposes can never read stale facts.
pub struct ConsentEvaluator {
    vendor_id: u16,
    required_mask: u32,
    max_age_ms: i64,
    gdpr_unknown: GdprUnknown,
    /// What a decision becomes without the consent it needs.
    no_consent: Outcome,
    /// What a decision becomes when the user opts out.
    opt_out: Outcome,
    /// What a decision becomes when the user is a child.
    child: Outcome,
    /// Longer TCF and GPP strings are not decoded.
    max_string_bytes: usize,
    cache: Cache<Key, Decoded, Weigh>,
}

impl std::fmt::Debug for ConsentEvaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentEvaluator")
            .field("vendor_id", &self.vendor_id)
            .field("cached", &self.cache.len())
            .field("cached_bytes", &self.cache.weight())
            .finish()
    }
}

/// What a cached string was decoded as: a TCF string, or a GPP string for
/// one set of applicable sections (the sections decoded depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Tcf,
    Gpp(SectionSet),
}

/// A cache key. Its `Hash` must equal [`KeyRef`]'s: the same fields in the
/// same order (`Box<str>` and `&str` hash as `str`).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: Kind,
    text: Box<str>,
}

/// A cache key borrowed from the decision, to look up without allocating.
#[derive(Hash)]
struct KeyRef<'a> {
    kind: Kind,
    text: &'a str,
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.kind == key.kind && self.text == &*key.text
    }
}

#[derive(Clone)]
enum Decoded {
    Tcf(Result<TcfFacts, ()>),
    Gpp(Arc<Result<GppFacts, ()>>),
}

/// Bytes an entry holds besides its string: the key and value themselves
/// and the cache's own bookkeeping per entry (hash table slot, list links,
/// the string's allocation header), rounded up.
const ENTRY_OVERHEAD_BYTES: u64 = 128;

/// Weighs a cache entry in bytes: its string plus an estimate of its facts,
/// and never less than `floor` (the byte budget over the entry budget), so the
/// cache holds at most `cache_entries` strings and at most `cache_bytes` bytes.
#[derive(Clone)]
struct Weigh {
    floor: u64,
}

impl Weighter<Key, Decoded> for Weigh {
    fn weight(&self, key: &Key, value: &Decoded) -> u64 {
        entry_bytes(key, value).max(self.floor)
    }
}

/// What an entry holds on the heap, estimated from above.
fn entry_bytes(key: &Key, value: &Decoded) -> u64 {
    let facts = match value {
        Decoded::Tcf(_) => 0,
        Decoded::Gpp(g) => {
            let sections = g.as_ref().as_ref().map_or(0, |g| g.sections.capacity());
            // The Arc's counts, its Result, and the section list.
            16 + std::mem::size_of::<Result<GppFacts, ()>>()
                + sections * std::mem::size_of::<(u16, SectionFacts)>()
        }
    };
    ENTRY_OVERHEAD_BYTES + key.text.len() as u64 + facts as u64
}

/// Purposes TCF v2.2 lets a vendor process on legitimate interest (TCF
/// Policies, Appendix A; `@iabtcf/core`'s GVL refuses LI for the others):
/// 2, 7, 8, 9, 10 and 11. Purposes 1 and 3–6 need consent.
const LI_PURPOSES: u32 = 1 << 2 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11;

/// Whether purpose `p` has a legal basis for the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    Met,
    /// A publisher restriction leaves the purpose no basis at all.
    Restricted,
    /// No purpose-level signal for any basis that counts.
    NoPurpose,
    /// The purpose signal is there, the vendor's is not.
    NoVendor,
}

/// The legal basis of purpose `p`, with the publisher restrictions when
/// `restrictions` is set (without them, to tell whether they decided).
fn purpose_basis(f: &TcfFacts, p: u32, restrictions: bool) -> Basis {
    let bit = 1u32 << p;
    let li_allowed = LI_PURPOSES & bit != 0;
    let (consent, li) = if !restrictions {
        (true, li_allowed)
    } else if f.restricted_purposes & bit != 0 {
        return Basis::Restricted;
    } else {
        // Type 2 takes consent away, type 1 legitimate interest; both (a
        // contradiction) leave nothing.
        let consent = f.require_li & bit == 0;
        let li = li_allowed && f.require_consent & bit == 0;
        if !consent && !li {
            return Basis::Restricted;
        }
        (consent, li)
    };
    let by_consent = consent && f.purposes & bit != 0;
    let by_li = li && f.purposes_li & bit != 0;
    if (by_consent && f.vendor_consent) || (by_li && f.vendor_li) {
        Basis::Met
    } else if by_consent || by_li {
        Basis::NoVendor
    } else {
        Basis::NoPurpose
    }
}

/// What the signals read so far say; `evaluate` passes it through one
/// function per signal, then turns it into the verdict.
struct Acc {
    outcome: Outcome,
    reason: Reason,
    /// The GPP section that gave `reason`.
    section: Option<u16>,
    lmt: bool,
    /// A signal says the user is a child.
    child: bool,
    signals: Signals,
    /// A privacy regime applies (so personalised means "consented").
    any_regime: bool,
    /// TCF applies, through GDPR or a GPP TCF section.
    tcf_applies: bool,
    /// TCF Special Feature 1 (precise geolocation) is opted in, in every
    /// TCF string read (the strictest string wins).
    sf1: bool,
    /// A US GPP section denies precise geolocation.
    geo_denied: bool,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            outcome: Outcome::Personalised,
            reason: Reason::NoRegime,
            section: None,
            lmt: false,
            child: false,
            signals: Signals::default(),
            any_regime: false,
            tcf_applies: false,
            sf1: true,
            geo_denied: false,
        }
    }

    /// Keep the strictest result; on a tie the first reason found stays.
    fn deny(&mut self, outcome: Outcome, reason: Reason) {
        self.deny_in(outcome, reason, None);
    }

    /// As [`Acc::deny`], for a rule of GPP section `section`.
    fn deny_in(&mut self, outcome: Outcome, reason: Reason, section: Option<u16>) {
        if outcome > self.outcome {
            self.outcome = outcome;
            self.reason = reason;
            self.section = section;
        }
    }

    fn verdict(mut self) -> Verdict {
        if self.outcome == Outcome::Personalised {
            self.reason = if self.any_regime {
                Reason::Consented
            } else {
                Reason::NoRegime
            };
        }
        if self.outcome == Outcome::Personalised {
            self.section = None;
        }
        let precise_geo = self.outcome == Outcome::Personalised
            && !self.child
            && !self.lmt
            && !self.geo_denied
            && (!self.tcf_applies || self.sf1);
        Verdict {
            outcome: self.outcome,
            reason: self.reason,
            precise_geo,
            section: self.section,
            child: self.child,
            lmt: self.lmt,
            signals: self.signals,
        }
    }
}

impl ConsentEvaluator {
    pub fn new(policy: &CompiledPolicy) -> ConsentEvaluator {
        let budget = policy.cache_bytes;
        let entries = (policy.cache_entries.max(1) as u64).min(budget / ENTRY_OVERHEAD_BYTES);
        let floor = budget / entries.max(1);
        ConsentEvaluator {
            vendor_id: policy.vendor_id,
            required_mask: policy.required_purposes_mask,
            max_age_ms: policy.max_age_ms,
            gdpr_unknown: policy.gdpr_unknown,
            no_consent: Outcome::from_fallback(policy.no_consent),
            opt_out: Outcome::from_fallback(policy.opt_out),
            child: Outcome::from_fallback(policy.child),
            max_string_bytes: policy.max_string_bytes,
            cache: Cache::with_weighter(entries as usize, budget, Weigh { floor }),
        }
    }

    /// Number of decoded strings currently cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// What the cached entries weigh, in bytes (at most `consent.cache_bytes`).
    pub fn cached_bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// The bytes of the strings the cache holds, counted one by one (tests
    /// check the weights against them).
    #[cfg(test)]
    fn held_string_bytes(&self) -> u64 {
        self.cache.iter().map(|(k, _)| k.text.len() as u64).sum()
    }

    fn decoded_tcf(&self, s: &str) -> Result<TcfFacts, ()> {
        let key = KeyRef {
            kind: Kind::Tcf,
            text: s,
        };
        if let Some(Decoded::Tcf(hit)) = self.cache.get(&key) {
            return hit;
        }
        let facts = decode_tcf(s, self.vendor_id).map_err(|_| ());
        self.insert(key, Decoded::Tcf(facts));
        facts
    }

    fn decoded_gpp(&self, s: &str, wanted: SectionSet) -> Arc<Result<GppFacts, ()>> {
        let key = KeyRef {
            kind: Kind::Gpp(wanted),
            text: s,
        };
        if let Some(Decoded::Gpp(hit)) = self.cache.get(&key) {
            return hit;
        }
        let facts = Arc::new(decode_gpp(s, self.vendor_id, wanted).map_err(|_| ()));
        self.insert(key, Decoded::Gpp(facts.clone()));
        facts
    }

    fn insert(&self, key: KeyRef<'_>, value: Decoded) {
        let key = Key {
            kind: key.kind,
            text: key.text.into(),
        };
        self.cache.insert(key, value);
    }

    /// Judge TCF facts against the policy. `None` means consent is sufficient.
    ///
    /// Each required purpose needs a legal basis for the platform's vendor,
    /// as the TCF v2.2 policy defines them: consent (the purpose's consent
    /// and the vendor's), or — only for the purposes the policy lets rest on
    /// legitimate interest, 2 and 7–11 — legitimate interest (the purpose's
    /// LI transparency and the vendor's LI). A publisher restriction for the
    /// vendor narrows that: type 0 forbids the purpose, type 1 leaves only
    /// consent, type 2 only legitimate interest (so a purpose that needs
    /// consent becomes unavailable). When several purposes fail, the reason
    /// is, in this order: a purpose signal missing, the vendor's signal
    /// missing, a restriction (a restriction decides only where the purpose
    /// would pass without it).
    fn judge_tcf(&self, facts: &TcfFacts, ts_ms: i64) -> Option<Reason> {
        if facts.last_updated_ms + self.max_age_ms < ts_ms {
            return Some(Reason::TcfExpired);
        }
        let (mut purpose, mut vendor, mut restricted) = (false, false, false);
        for p in (1..32).filter(|p| self.required_mask & (1 << p) != 0) {
            match purpose_basis(facts, p, true) {
                Basis::Met => {}
                _ if purpose_basis(facts, p, false) == Basis::Met => restricted = true,
                Basis::Restricted => restricted = true,
                Basis::NoPurpose => purpose = true,
                Basis::NoVendor => vendor = true,
            }
        }
        if purpose {
            Some(Reason::TcfPurpose)
        } else if vendor {
            Some(Reason::TcfVendor)
        } else if restricted {
            Some(Reason::TcfRestricted)
        } else {
            None
        }
    }

    /// Evaluate one decision's signals.
    ///
    /// The signals are read in a fixed order — COPPA, TCF under GDPR, US
    /// Privacy, GPP, GPC — and the order decides which reason wins when two
    /// signals call for the same outcome: the first reason found stays.
    pub fn evaluate(&self, inp: &Inputs<'_>) -> Verdict {
        let mut acc = Acc::new();
        acc.lmt = inp.lmt;
        self.coppa(inp, &mut acc);
        self.tcf_under_gdpr(inp, &mut acc);
        self.us_privacy(inp, &mut acc);
        self.gpp(inp, &mut acc);
        self.gpc(inp, &mut acc);
        acc.verdict()
    }

    /// `regs.coppa = 1`: a child, whatever else says.
    fn coppa(&self, inp: &Inputs<'_>, acc: &mut Acc) {
        if inp.coppa {
            acc.signals.coppa = SignalResult::Denied;
            acc.child = true;
            acc.deny(self.child, Reason::Coppa);
            acc.any_regime = true;
        }
    }

    /// Whether GDPR applies: `regs.gdpr` (or `regs.ext.gdpr`) when present;
    /// else exactly when `gpp_sid` lists section 2 (TCF EU), when it lists
    /// anything; else the policy's `gdpr_unknown`.
    fn gdpr_applies(&self, inp: &Inputs<'_>) -> bool {
        match inp.gdpr {
            Some(applies) => applies,
            None if !inp.gpp_sid.is_empty() => inp.gpp_sid.contains(&2),
            None => self.gdpr_unknown == GdprUnknown::Applies,
        }
    }

    /// TCF v2.2, where GDPR applies. Without `user.consent`, a GPP section 2
    /// that `gpp_sid` lists is the TCF string (judged with the GPP sections).
    fn tcf_under_gdpr(&self, inp: &Inputs<'_>, acc: &mut Acc) {
        if !self.gdpr_applies(inp) {
            return;
        }
        acc.any_regime = true;
        acc.tcf_applies = true;
        let missing = matches!(inp.tcf, None | Some(""));
        if missing && inp.gpp_sid.contains(&2) {
            return;
        }
        let (result, reason) = match inp.tcf {
            None | Some("") => (SignalResult::Invalid, Some(Reason::TcfMissing)),
            Some(s) if s.len() > self.max_string_bytes => {
                (SignalResult::Invalid, Some(Reason::TcfTooLong))
            }
            Some(s) => match self.decoded_tcf(s) {
                Err(()) => (SignalResult::Invalid, Some(Reason::TcfUndecodable)),
                Ok(f) => {
                    acc.sf1 &= f.special_feature_1;
                    match self.judge_tcf(&f, inp.ts_ms) {
                        None => (SignalResult::Allowed, None),
                        Some(Reason::TcfExpired) => {
                            (SignalResult::Invalid, Some(Reason::TcfExpired))
                        }
                        Some(r) => (SignalResult::Denied, Some(r)),
                    }
                }
            },
        };
        acc.signals.tcf = result;
        if let Some(r) = reason {
            acc.deny(self.no_consent, r);
        }
    }

    /// US Privacy (`regs.us_privacy`); a string that says "not applicable"
    /// is no regime, and so is an empty one (absent).
    fn us_privacy(&self, inp: &Inputs<'_>, acc: &mut Acc) {
        let Some(s) = inp.usp.filter(|s| !s.is_empty()) else {
            return;
        };
        match decode_usp(s) {
            Err(_) => {
                acc.signals.usp = SignalResult::Invalid;
                acc.deny(self.opt_out, Reason::UspInvalid);
                acc.any_regime = true;
            }
            Ok(None) => {}
            Ok(Some(opted_out)) => {
                acc.any_regime = true;
                if opted_out {
                    acc.signals.usp = SignalResult::Denied;
                    acc.deny(self.opt_out, Reason::UspOptOut);
                } else {
                    acc.signals.usp = SignalResult::Allowed;
                }
            }
        }
    }

    /// GPP: only the sections listed in `gpp_sid` apply, and only they are
    /// decoded. They are judged in ascending order of id, each once, however
    /// `gpp_sid` orders or repeats them.
    fn gpp(&self, inp: &Inputs<'_>, acc: &mut Acc) {
        if inp.gpp_sid.is_empty() && inp.gpp.is_none() {
            return;
        }
        let invalid = self.opt_out.max(self.no_consent);
        let mut applicable = SectionSet::default();
        for &sid in inp.gpp_sid {
            if !applicable.insert(sid) {
                acc.signals.gpp = SignalResult::Invalid;
                acc.deny(invalid, Reason::GppSidInvalid);
            }
        }
        if applicable.is_empty() {
            return;
        }
        acc.any_regime = true;
        let Some(s) = inp.gpp.filter(|s| !s.is_empty()) else {
            acc.signals.gpp = SignalResult::Invalid;
            acc.deny(invalid, Reason::GppMissing);
            return;
        };
        if s.len() > self.max_string_bytes {
            acc.signals.gpp = SignalResult::Invalid;
            acc.deny(invalid, Reason::GppTooLong);
            return;
        }
        let facts = self.decoded_gpp(s, applicable);
        let Ok(g) = facts.as_ref() else {
            acc.signals.gpp = SignalResult::Invalid;
            acc.deny(invalid, Reason::GppUndecodable);
            return;
        };
        // The last section that is not allowed gives the signal's result.
        let mut result = SignalResult::Allowed;
        for sid in applicable.iter() {
            if let Some(r) = self.gpp_section(sid, g.section(sid), inp.ts_ms, acc) {
                result = r;
            }
        }
        if acc.signals.gpp != SignalResult::Invalid {
            acc.signals.gpp = result;
        }
    }

    /// One applicable GPP section, `sid`. Returns the GPP signal's result
    /// when this section changes it (invalid or denied), `None` when it allows.
    fn gpp_section(
        &self,
        sid: u16,
        section: Option<&SectionFacts>,
        ts_ms: i64,
        acc: &mut Acc,
    ) -> Option<SignalResult> {
        let invalid = self.opt_out.max(self.no_consent);
        let at = Some(sid);
        match section {
            None => {
                acc.deny_in(invalid, Reason::GppSectionMissing, at);
                Some(SignalResult::Invalid)
            }
            Some(SectionFacts::Unsupported) => {
                acc.deny_in(invalid, Reason::GppSectionUnsupported, at);
                Some(SignalResult::Invalid)
            }
            Some(SectionFacts::Undecodable) => {
                acc.deny_in(invalid, Reason::GppUndecodable, at);
                Some(SignalResult::Invalid)
            }
            Some(SectionFacts::Tcf(f)) => {
                acc.tcf_applies = true;
                acc.sf1 &= f.special_feature_1;
                let r = self.judge_tcf(f, ts_ms)?;
                acc.deny_in(self.no_consent, r, at);
                Some(SignalResult::Denied)
            }
            Some(SectionFacts::Usp(opted_out)) => {
                if !*opted_out {
                    return None;
                }
                acc.deny_in(self.opt_out, Reason::GppOptOut, at);
                Some(SignalResult::Denied)
            }
            Some(SectionFacts::Us(u)) => self.gpp_us_section(sid, u, acc),
        }
    }

    /// A US national or state GPP section, by Prebid's US National rules:
    /// known child, service provider mode, a notice not given, an opt-out,
    /// sensitive data, personal data consents, GPC; and precise geolocation.
    /// The first rule that denies names the reason.
    fn gpp_us_section(&self, sid: u16, u: &UsFacts, acc: &mut Acc) -> Option<SignalResult> {
        let at = Some(sid);
        if u.known_child {
            acc.child = true;
            acc.deny_in(self.child, Reason::KnownChild, at);
        }
        let rules = [
            (u.service_provider, Reason::GppServiceProvider),
            (u.notice_missing, Reason::GppNotice),
            (u.opted_out, Reason::GppOptOut),
            (u.sensitive, Reason::GppSensitive),
            (u.personal_data, Reason::GppPersonalData),
        ];
        let mut denied = u.known_child;
        for (applies, reason) in rules {
            if applies {
                denied = true;
                acc.deny_in(self.opt_out, reason, at);
            }
        }
        if u.gpc {
            acc.signals.gpc = SignalResult::Denied;
            acc.deny_in(self.opt_out, Reason::Gpc, at);
        }
        acc.geo_denied |= u.precise_geo_denied;
        denied.then_some(SignalResult::Denied)
    }

    /// `regs.gpc = 1`: the user opts out.
    fn gpc(&self, inp: &Inputs<'_>, acc: &mut Acc) {
        if inp.gpc {
            acc.any_regime = true;
            acc.signals.gpc = SignalResult::Denied;
            acc.deny(self.opt_out, Reason::Gpc);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod craft;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod rules;
