//! Consent: from a decision's signals (TCF v2.2, US Privacy, GPP, GPC, COPPA)
//! to one result — personalised, contextual or withheld — with a reason code.
//!
//! Consent is never assumed. A string that is missing where it is needed,
//! malformed, undecodable or expired counts as no consent. Decoding uses the
//! `iab_gpp` crate (checked against strings made by the IAB's reference
//! libraries, see `tests/data/consent/`); decoded strings are cached in a
//! bounded cache because the same strings recur across many decisions.

mod gpp;
mod tcf;

use std::sync::Arc;

use quick_cache::sync::Cache;
use serde::Serialize;

pub use gpp::{GppFacts, SectionFacts, UsFacts, decode_gpp, decode_usp};
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
    TcfExpired,
    TcfPurpose,
    TcfVendor,
    TcfRestricted,
    UspOptOut,
    UspInvalid,
    GppMissing,
    GppUndecodable,
    GppSectionMissing,
    GppSectionUnsupported,
    GppSidInvalid,
    GppOptOut,
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
            Reason::TcfExpired => "tcf_expired",
            Reason::TcfPurpose => "tcf_purpose",
            Reason::TcfVendor => "tcf_vendor",
            Reason::TcfRestricted => "tcf_restricted",
            Reason::UspOptOut => "usp_opt_out",
            Reason::UspInvalid => "usp_invalid",
            Reason::GppMissing => "gpp_missing",
            Reason::GppUndecodable => "gpp_undecodable",
            Reason::GppSectionMissing => "gpp_section_missing",
            Reason::GppSectionUnsupported => "gpp_section_unsupported",
            Reason::GppSidInvalid => "gpp_sid_invalid",
            Reason::GppOptOut => "gpp_opt_out",
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
    /// Precise geolocation may flow (personalised, no child, TCF Special Feature 1 where TCF applies).
    pub precise_geo: bool,
    pub signals: Signals,
}

/// The consent signals of one decision, borrowed from it. Type checking of
/// these fields happens when the decision is read (`decision.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    /// `regs.gdpr`: `Some(true)` applies, `Some(false)` does not, `None` absent.
    pub gdpr: Option<bool>,
    /// `user.consent`, the TCF string.
    pub tcf: Option<&'a str>,
    /// `regs.us_privacy`.
    pub usp: Option<&'a str>,
    /// `regs.gpp`.
    pub gpp: Option<&'a str>,
    /// `regs.gpp_sid`: section ids that apply to this decision.
    pub gpp_sid: &'a [i64],
    /// `regs.gpc = 1`.
    pub gpc: bool,
    /// `regs.coppa = 1`.
    pub coppa: bool,
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
    no_consent: Fallback,
    opt_out: Fallback,
    child: Fallback,
    tcf_cache: Cache<Box<str>, Result<TcfFacts, ()>>,
    gpp_cache: Cache<Box<str>, Arc<Result<GppFacts, ()>>>,
}

impl std::fmt::Debug for ConsentEvaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentEvaluator")
            .field("vendor_id", &self.vendor_id)
            .field("tcf_cached", &self.tcf_cache.len())
            .field("gpp_cached", &self.gpp_cache.len())
            .finish()
    }
}

struct Acc {
    outcome: Outcome,
    reason: Reason,
    child: bool,
}

impl Acc {
    /// Keep the strictest result; on a tie the first reason found stays.
    fn deny(&mut self, outcome: Outcome, reason: Reason) {
        if outcome > self.outcome {
            self.outcome = outcome;
            self.reason = reason;
        }
    }
}

impl ConsentEvaluator {
    pub fn new(policy: &CompiledPolicy) -> ConsentEvaluator {
        let entries = policy.cache_entries.max(16);
        ConsentEvaluator {
            vendor_id: policy.vendor_id,
            required_mask: policy.required_purposes_mask,
            max_age_ms: policy.max_age_ms,
            gdpr_unknown: policy.gdpr_unknown,
            no_consent: policy.no_consent,
            opt_out: policy.opt_out,
            child: policy.child,
            tcf_cache: Cache::new(entries),
            gpp_cache: Cache::new(entries / 4 + 16),
        }
    }

    /// Number of decoded strings currently cached.
    pub fn cached(&self) -> usize {
        self.tcf_cache.len() + self.gpp_cache.len()
    }

    fn tcf(&self, s: &str) -> Result<TcfFacts, ()> {
        if let Some(hit) = self.tcf_cache.get(s) {
            return hit;
        }
        let facts = decode_tcf(s, self.vendor_id).map_err(|_| ());
        self.tcf_cache.insert(s.into(), facts);
        facts
    }

    fn gpp(&self, s: &str) -> Arc<Result<GppFacts, ()>> {
        if let Some(hit) = self.gpp_cache.get(s) {
            return hit;
        }
        let facts = Arc::new(decode_gpp(s, self.vendor_id).map_err(|_| ()));
        self.gpp_cache.insert(s.into(), facts.clone());
        facts
    }

    /// Judge TCF facts against the policy. `None` means consent is sufficient.
    fn judge_tcf(&self, facts: &TcfFacts, ts_ms: i64) -> Option<Reason> {
        if facts.last_updated_ms + self.max_age_ms < ts_ms {
            return Some(Reason::TcfExpired);
        }
        if facts.purposes & self.required_mask != self.required_mask {
            return Some(Reason::TcfPurpose);
        }
        if !facts.vendor_consent {
            return Some(Reason::TcfVendor);
        }
        if facts.restricted_purposes & self.required_mask != 0 {
            return Some(Reason::TcfRestricted);
        }
        None
    }

    /// Evaluate one decision's signals.
    pub fn evaluate(&self, inp: &Inputs<'_>) -> Verdict {
        let mut acc = Acc {
            outcome: Outcome::Personalised,
            reason: Reason::NoRegime,
            child: false,
        };
        let mut signals = Signals::default();
        let mut any_regime = false;
        let mut tcf_applies = false;
        let mut sf1 = false;
        let mut geo_denied = false;
        let no_consent = Outcome::from_fallback(self.no_consent);
        let opt_out = Outcome::from_fallback(self.opt_out);
        let child = Outcome::from_fallback(self.child);

        if inp.coppa {
            signals.coppa = SignalResult::Denied;
            acc.child = true;
            acc.deny(child, Reason::Coppa);
            any_regime = true;
        }

        // TCF v2.2 under GDPR.
        let gdpr = inp
            .gdpr
            .unwrap_or(self.gdpr_unknown == GdprUnknown::Applies);
        if gdpr {
            any_regime = true;
            tcf_applies = true;
            match inp.tcf {
                None => {
                    signals.tcf = SignalResult::Invalid;
                    acc.deny(no_consent, Reason::TcfMissing);
                }
                Some("") => {
                    signals.tcf = SignalResult::Invalid;
                    acc.deny(no_consent, Reason::TcfMissing);
                }
                Some(s) => match self.tcf(s) {
                    Err(()) => {
                        signals.tcf = SignalResult::Invalid;
                        acc.deny(no_consent, Reason::TcfUndecodable);
                    }
                    Ok(f) => {
                        sf1 = f.special_feature_1;
                        match self.judge_tcf(&f, inp.ts_ms) {
                            None => signals.tcf = SignalResult::Allowed,
                            Some(Reason::TcfExpired) => {
                                signals.tcf = SignalResult::Invalid;
                                acc.deny(no_consent, Reason::TcfExpired);
                            }
                            Some(r) => {
                                signals.tcf = SignalResult::Denied;
                                acc.deny(no_consent, r);
                            }
                        }
                    }
                },
            }
        }

        // US Privacy.
        if let Some(s) = inp.usp {
            match decode_usp(s) {
                Err(_) => {
                    signals.usp = SignalResult::Invalid;
                    acc.deny(opt_out, Reason::UspInvalid);
                    any_regime = true;
                }
                Ok(None) => {}
                Ok(Some(opted_out)) => {
                    any_regime = true;
                    if opted_out {
                        signals.usp = SignalResult::Denied;
                        acc.deny(opt_out, Reason::UspOptOut);
                    } else {
                        signals.usp = SignalResult::Allowed;
                    }
                }
            }
        }

        // GPP: only the sections listed in gpp_sid apply.
        if !inp.gpp_sid.is_empty() || inp.gpp.is_some() {
            let applicable: Vec<i64> = inp.gpp_sid.iter().copied().filter(|&s| s > 0).collect();
            if inp.gpp_sid.iter().any(|&s| s <= 0 || s > 63) {
                signals.gpp = SignalResult::Invalid;
                acc.deny(opt_out.max(no_consent), Reason::GppSidInvalid);
            }
            if !applicable.is_empty() {
                any_regime = true;
                match inp.gpp {
                    None | Some("") => {
                        signals.gpp = SignalResult::Invalid;
                        acc.deny(opt_out.max(no_consent), Reason::GppMissing);
                    }
                    Some(s) => {
                        let facts = self.gpp(s);
                        match facts.as_ref() {
                            Err(()) => {
                                signals.gpp = SignalResult::Invalid;
                                acc.deny(opt_out.max(no_consent), Reason::GppUndecodable);
                            }
                            Ok(g) => {
                                let mut result = SignalResult::Allowed;
                                for sid in applicable {
                                    match g.section(sid as u16) {
                                        None => {
                                            result = SignalResult::Invalid;
                                            acc.deny(
                                                opt_out.max(no_consent),
                                                Reason::GppSectionMissing,
                                            );
                                        }
                                        Some(SectionFacts::Unsupported) => {
                                            result = SignalResult::Invalid;
                                            acc.deny(
                                                opt_out.max(no_consent),
                                                Reason::GppSectionUnsupported,
                                            );
                                        }
                                        Some(SectionFacts::Undecodable) => {
                                            result = SignalResult::Invalid;
                                            acc.deny(
                                                opt_out.max(no_consent),
                                                Reason::GppUndecodable,
                                            );
                                        }
                                        Some(SectionFacts::Tcf(f)) => {
                                            tcf_applies = true;
                                            sf1 |= f.special_feature_1;
                                            if let Some(r) = self.judge_tcf(f, inp.ts_ms) {
                                                result = SignalResult::Denied;
                                                acc.deny(no_consent, r);
                                            }
                                        }
                                        Some(SectionFacts::Usp(opted_out)) => {
                                            if *opted_out {
                                                result = SignalResult::Denied;
                                                acc.deny(opt_out, Reason::GppOptOut);
                                            }
                                        }
                                        Some(SectionFacts::Us(u)) => {
                                            if u.known_child {
                                                result = SignalResult::Denied;
                                                acc.child = true;
                                                acc.deny(child, Reason::KnownChild);
                                            }
                                            if u.opted_out {
                                                result = SignalResult::Denied;
                                                acc.deny(opt_out, Reason::GppOptOut);
                                            }
                                            if u.gpc {
                                                signals.gpc = SignalResult::Denied;
                                                acc.deny(opt_out, Reason::Gpc);
                                            }
                                            geo_denied |= u.precise_geo_denied;
                                        }
                                    }
                                }
                                if signals.gpp != SignalResult::Invalid {
                                    signals.gpp = result;
                                }
                            }
                        }
                    }
                }
            }
        }

        if inp.gpc {
            any_regime = true;
            signals.gpc = SignalResult::Denied;
            acc.deny(opt_out, Reason::Gpc);
        }

        if acc.outcome == Outcome::Personalised {
            acc.reason = if any_regime {
                Reason::Consented
            } else {
                Reason::NoRegime
            };
        }
        let precise_geo = acc.outcome == Outcome::Personalised
            && !acc.child
            && !geo_denied
            && (!tcf_applies || sf1);
        Verdict {
            outcome: acc.outcome,
            reason: acc.reason,
            precise_geo,
            signals,
        }
    }
}

#[cfg(test)]
mod tests;
