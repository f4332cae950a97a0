//! GPP strings and US Privacy strings, reduced to the facts the policy needs.
//!
//! The US state sections (7 US National, 8.. the states) differ in their
//! fields, but share a vocabulary: `*_opt_out` fields (sale, sharing, targeted
//! advertising), `known_child_sensitive_data_consents`, a
//! `sensitive_data_processing` block and an optional `gpc` segment. Each
//! decoded section is walked by field name, so every state section the crate
//! decodes is judged the same way, without one hand-written rule per state.

use std::str::FromStr;

use iab_gpp::sections::Section;
use iab_gpp::sections::uspv1::Flag;
use iab_gpp::v1::GPPString;
use num_traits::ToPrimitive;
use serde_json::Value;

use iab_gpp::sections::SectionId;

use super::tcf::{TcfFacts, decode_tcf};

/// What one US section says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsFacts {
    /// Opted out of sale, sharing or targeted advertising.
    pub opted_out: bool,
    /// `KnownChildSensitiveDataConsents` is set: the user is a known child.
    pub known_child: bool,
    /// Precise geolocation processing opted out of, or not consented to.
    pub precise_geo_denied: bool,
    /// The section's GPC segment is set.
    pub gpc: bool,
}

/// What one section of a GPP string says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionFacts {
    Tcf(TcfFacts),
    /// US Privacy: opted out of sale.
    Usp(bool),
    Us(UsFacts),
    /// A section the decoder does not know (fail closed when it applies).
    Unsupported,
    /// A section present in the string that does not decode.
    Undecodable,
}

/// The decoded sections of one GPP string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GppFacts {
    pub sections: Vec<(u16, SectionFacts)>,
}

impl GppFacts {
    /// Facts for section id `sid`, if the string has that section.
    pub fn section(&self, sid: u16) -> Option<&SectionFacts> {
        self.sections
            .iter()
            .find(|(id, _)| *id == sid)
            .map(|(_, f)| f)
    }
}

/// Decode a GPP string. The header must parse; each section is decoded on its
/// own, so a bad section only matters when `gpp_sid` says it applies.
pub fn decode_gpp(s: &str, vendor: u16) -> Result<GppFacts, String> {
    let gpp =
        GPPString::from_str(s.trim()).map_err(|_| "GPP header cannot be decoded".to_string())?;
    let mut out = GppFacts::default();
    for id in gpp.section_ids() {
        let Some(sid) = id.to_u16() else { continue };
        if *id == SectionId::TcfEuV2 {
            // Our own TCF decoder: see tcf.rs for why.
            let raw = gpp.section(*id).unwrap_or("");
            let f = match decode_tcf(raw, vendor) {
                Ok(f) => SectionFacts::Tcf(f),
                Err(_) => SectionFacts::Undecodable,
            };
            out.sections.push((sid, f));
            continue;
        }
        let facts = match gpp.decode_section(*id) {
            Ok(section) => section_facts(&section),
            Err(iab_gpp::sections::SectionDecodeError::UnsupportedSectionId(_)) => {
                SectionFacts::Unsupported
            }
            Err(_) => SectionFacts::Undecodable,
        };
        out.sections.push((sid, facts));
    }
    Ok(out)
}

fn section_facts(section: &Section) -> SectionFacts {
    match section {
        Section::TcfEuV2(_) => SectionFacts::Unsupported, // decoded by tcf.rs instead
        Section::UspV1(u) => SectionFacts::Usp(u.opt_out_sale == Flag::Yes),
        Section::TcfEuV1(_) | Section::TcfCaV1(_) => SectionFacts::Unsupported,
        other => match serde_json::to_value(other) {
            Ok(v) => {
                let mut f = UsFacts::default();
                walk(&v, None, &mut f);
                SectionFacts::Us(f)
            }
            Err(_) => SectionFacts::Undecodable,
        },
    }
}

/// Walk a serialised US section. `within` is the name of the enclosing field.
fn walk(v: &Value, within: Option<&str>, f: &mut UsFacts) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = k.as_str();
                if key == "gpc" {
                    if child.as_bool() == Some(true) {
                        f.gpc = true;
                    }
                    continue;
                }
                if key.ends_with("_opt_out")
                    && !key.ends_with("_notice")
                    && within != Some("sensitive_data_processing")
                    && child.as_str() == Some("OptedOut")
                {
                    f.opted_out = true;
                }
                if key == "known_child_sensitive_data_consents" && !all_not_applicable(child) {
                    f.known_child = true;
                }
                if within == Some("sensitive_data_processing")
                    && key.starts_with("precise_geolocation")
                    && matches!(child.as_str(), Some("OptedOut") | Some("NoConsent"))
                {
                    f.precise_geo_denied = true;
                }
                let next = if key == "sensitive_data_processing" {
                    Some("sensitive_data_processing")
                } else {
                    within
                };
                walk(child, next, f);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, within, f);
            }
        }
        _ => {}
    }
}

fn all_not_applicable(v: &Value) -> bool {
    match v {
        Value::String(s) => s == "NotApplicable",
        Value::Object(m) => m.values().all(all_not_applicable),
        Value::Array(a) => a.iter().all(all_not_applicable),
        _ => true,
    }
}

/// A US Privacy string that is not four valid characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("US Privacy string is malformed")]
pub struct UspInvalid;

/// Decode a US Privacy string (`1YNN`). `Ok(None)`: the regime does not apply
/// (`1---`); `Ok(Some(true))`: opted out of sale.
///
/// Strict, on purpose: the string is exactly four characters, version `1`
/// then three of `Y`, `N`, `-`, as the IAB US Privacy String v1 spells them.
/// Trailing characters (`1YNNX`, `1YNN~`), surrounding whitespace and
/// lowercase (`1ynn`) are malformed, and malformed fails closed. (`iab_gpp`
/// reads the first four characters and ignores the rest.)
pub fn decode_usp(s: &str) -> Result<Option<bool>, UspInvalid> {
    let &[b'1', notice, sale, lspa] = s.as_bytes() else {
        return Err(UspInvalid);
    };
    let valid = |c: u8| matches!(c, b'Y' | b'N' | b'-');
    if !(valid(notice) && valid(sale) && valid(lspa)) {
        return Err(UspInvalid);
    }
    Ok(match (notice, sale) {
        (_, b'Y') => Some(true),
        (_, b'N') => Some(false),
        (b'-', _) => None,
        // A notice was given but the sale flag is unknown: fail closed.
        _ => Some(true),
    })
}
