//! GPP strings and US Privacy strings, reduced to the facts the policy needs.
//!
//! Only the sections that apply are decoded. The header (a table of contents:
//! which section ids follow, in order) is read here, and each section listed
//! in `gpp_sid` is decoded on its own; a section not listed is never looked
//! at beyond finding where it ends. `iab_gpp` 0.1.2 has per-section decoding
//! (`GPPString::decode_section`), but its header reader is not fit for
//! untrusted input: it sums Fibonacci numbers in a `u8` (an overflow panics
//! in a debug build and wraps in release), it reads a single id after a
//! single id from the wrong base (the spec counts each offset from the last
//! id seen), and it refuses a whole string for one section id it does not
//! know, even one that does not apply.
//!
//! The US sections (7 US National, 8–27 the states) differ in their fields,
//! but share a vocabulary: `*_notice` and `*_opt_out` fields (sale, sharing,
//! targeted advertising), `mspa_service_provider_mode`,
//! `personal_data_consent(s)`, `known_child_sensitive_data_consents`, a
//! `sensitive_data_processing` block of named categories and an optional
//! `gpc` segment. Each decoded section is read by field name and judged by
//! the rules of Prebid Server's US National module ([`judge_us`]), so every
//! state section is judged the same way, without one hand-written rule per
//! state. `iab_gpp` decodes 7–23; fairgate decodes 24–27 itself
//! ([`mspa_state_section`]), into the same shape.

use std::str::FromStr;

use iab_gpp::sections::Section;
use iab_gpp::sections::{
    usca::UsCa, usco::UsCo, usct::UsCt, usde::UsDe, usfl::UsFl, usia::UsIa, usmn::UsMn, usmt::UsMt,
    usnat::UsNat, usne::UsNe, usnh::UsNh, usnj::UsNj, usor::UsOr, ustn::UsTn, ustx::UsTx,
    usut::UsUt, usva::UsVa,
};
use serde_json::Value;

use super::tcf::{TcfFacts, decode_tcf};

/// What one US section says, by the rules Prebid Server's US National
/// privacy module enforces (`USNatTransmitUfpd`, `USNatTransmitGeo`; see
/// README "Consent"). Every field is a verdict, never a value of the string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsFacts {
    /// Opted out of sale, sharing or targeted advertising (an opt-out field of 1).
    pub opted_out: bool,
    /// A notice not given (a notice field of 2), or an opt-out field of 2
    /// ("did not opt out") beside its notice of 0 ("not applicable"): an
    /// invalid combination.
    pub notice_missing: bool,
    /// `MspaServiceProviderMode` = 1, or (sections 24–27) `MspaMode` = 2.
    pub service_provider: bool,
    /// `SensitiveDataProcessing` by Prebid's rule (README "Consent", rule 12).
    pub sensitive: bool,
    /// `PersonalDataConsents`, or a state's `AdditionalDataProcessingConsent`,
    /// other than 0 (Prebid denies on 2; fairgate on 1 too).
    pub personal_data: bool,
    /// `KnownChildSensitiveDataConsents` by Prebid's rule: the user is a known child.
    pub known_child: bool,
    /// Precise geolocation refused (1), or consented (2) without its notice (0).
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
    /// A section fairgate does not judge (fail closed when it applies).
    Unsupported,
    /// A section present in the string that does not decode.
    Undecodable,
}

/// The decoded sections of one GPP string: those asked for and present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GppFacts {
    pub sections: Vec<(u16, SectionFacts)>,
}

impl GppFacts {
    /// Facts for section id `sid`, if the string has that section and it was asked for.
    pub fn section(&self, sid: u16) -> Option<&SectionFacts> {
        self.sections
            .iter()
            .find(|(id, _)| *id == sid)
            .map(|(_, f)| f)
    }
}

/// A set of GPP section ids among 1..=63, the ids `regs.gpp_sid` may name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SectionSet(u64);

impl SectionSet {
    /// The highest section id `gpp_sid` may name.
    pub const MAX_ID: u16 = 63;

    /// Every id from 1 to 63.
    pub const ALL: SectionSet = SectionSet(!1);

    /// Add `id`; ids outside 1..=63 are not added (returns false).
    pub fn insert(&mut self, id: i64) -> bool {
        if (1..=Self::MAX_ID as i64).contains(&id) {
            self.0 |= 1 << id;
            true
        } else {
            false
        }
    }

    pub fn contains(self, id: u16) -> bool {
        id <= Self::MAX_ID && self.0 & (1 << id) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The ids, ascending.
    pub fn iter(self) -> impl Iterator<Item = u16> {
        (1..=Self::MAX_ID).filter(move |&id| self.contains(id))
    }
}

impl FromIterator<i64> for SectionSet {
    fn from_iter<I: IntoIterator<Item = i64>>(ids: I) -> SectionSet {
        let mut set = SectionSet::default();
        for id in ids {
            set.insert(id);
        }
        set
    }
}

/// Why a GPP string could not be used. The message never repeats the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GPP string cannot be decoded: {0}")]
pub struct GppDecodeError(pub &'static str);

/// Decode the sections of a GPP string that are in `wanted`. The header must
/// parse and agree with the number of sections; each wanted section is
/// decoded on its own, so a bad section only matters when it applies, and a
/// section not wanted costs nothing.
pub fn decode_gpp(s: &str, vendor: u16, wanted: SectionSet) -> Result<GppFacts, GppDecodeError> {
    let s = s.trim();
    let mut parts = s.split('~');
    let header = parts.next().unwrap_or("");
    let ids = header_ids(header, s.matches('~').count())?;
    let mut out = GppFacts::default();
    for (id, raw) in ids.into_iter().zip(parts) {
        if wanted.contains(id) {
            out.sections.push((id, section_facts(id, raw, vendor)));
        }
    }
    Ok(out)
}

/// The bits of a base64url text, six a character, most significant first.
struct Sextets<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Sextets<'_> {
    fn read(&mut self, n: usize) -> Result<u64, GppDecodeError> {
        let mut v = 0u64;
        for _ in 0..n {
            let c = *self
                .text
                .get(self.pos / 6)
                .ok_or(GppDecodeError("header truncated"))?;
            let sextet = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return Err(GppDecodeError("header is not base64url")),
            };
            v = (v << 1) | u64::from(sextet >> (5 - self.pos % 6) & 1);
            self.pos += 1;
        }
        Ok(v)
    }

    /// A Fibonacci-coded integer (1, 2, 3, 5, … least first, closed by `11`).
    /// Section ids are small: a value past 2^16 is refused, which also caps
    /// the bits one integer may take.
    fn fibonacci(&mut self) -> Result<u64, GppDecodeError> {
        let (mut f, mut next, mut total, mut last) = (1u64, 2u64, 0u64, false);
        loop {
            let bit = self.read(1)? == 1;
            if bit && last {
                return Ok(total);
            }
            if bit {
                total += f;
            }
            if total > u64::from(u16::MAX) || f > 1 << 17 {
                return Err(GppDecodeError("header section id too large"));
            }
            (f, next) = (next, f + next);
            last = bit;
        }
    }
}

/// The section ids of a GPP header (type 3, version 1, then a Fibonacci
/// range of ids, each offset counted from the last id seen), which must be
/// exactly as many as the `sections` that follow it. The ids are expanded one
/// by one, so the work stops at `sections + 1` ids however large a group the
/// header claims: it is bounded by the string's length.
fn header_ids(header: &str, sections: usize) -> Result<Vec<u16>, GppDecodeError> {
    let mut r = Sextets {
        text: header.as_bytes(),
        pos: 0,
    };
    if r.read(6)? != 3 {
        return Err(GppDecodeError("not a GPP header"));
    }
    if r.read(6)? != 1 {
        return Err(GppDecodeError("GPP version is not 1"));
    }
    let entries = r.read(12)?;
    let mut ids = Vec::with_capacity(sections.min(64));
    let mut last = 0u64;
    for _ in 0..entries {
        let group = r.read(1)? == 1;
        let start = last + r.fibonacci()?;
        let end = if group { start + r.fibonacci()? } else { start };
        if end > u64::from(u16::MAX) {
            return Err(GppDecodeError("header section id too large"));
        }
        for id in start..=end {
            if ids.len() == sections {
                return Err(GppDecodeError(
                    "header lists more sections than the string has",
                ));
            }
            ids.push(id as u16);
        }
        last = end;
    }
    if ids.len() != sections {
        return Err(GppDecodeError(
            "header lists fewer sections than the string has",
        ));
    }
    Ok(ids)
}

/// Decode one section that applies.
fn section_facts(id: u16, raw: &str, vendor: u16) -> SectionFacts {
    match id {
        // Our own TCF decoder: see tcf.rs for why.
        2 => match decode_tcf(raw, vendor) {
            Ok(f) => SectionFacts::Tcf(f),
            Err(_) => SectionFacts::Undecodable,
        },
        6 => match decode_usp(raw) {
            Ok(opted_out) => SectionFacts::Usp(opted_out.unwrap_or(false)),
            Err(_) => SectionFacts::Undecodable,
        },
        24..=27 => match mspa_state_section(id, raw) {
            Ok(v) => SectionFacts::Us(judge_us(id, &v)),
            Err(_) => SectionFacts::Undecodable,
        },
        // TCF EU v1 and TCF Canada are not judged, so not decoded either:
        // `iab_gpp` expands their vendor ranges into one entry per id claimed
        // (a few KB of ranges become hundreds of MB).
        1 | 5 => SectionFacts::Unsupported,
        _ => match us_section(id, raw) {
            None => SectionFacts::Unsupported,
            // `iab_gpp` reads an undefined value as "not applicable", which
            // would fail open: the raw fields are checked first.
            Some(Ok(_)) if holds_undefined_value(raw) => SectionFacts::Undecodable,
            Some(Ok(section)) => us_facts(id, &section),
            Some(Err(())) => SectionFacts::Undecodable,
        },
    }
}

/// Whether the core segment of a US section (ids 7–23) holds a field of
/// value 3, which the GPP US sections define for none of their fields
/// (every field after the 6-bit version is 2 bits: a notice, an opt-out, a
/// consent, an MSPA flag, or one entry of a sensitive-data or known-child
/// list, each 0 "not applicable", 1 or 2). `iab_gpp` 0.1.2 reads 3 as 0,
/// "not applicable", so an opt-out spelled 3 would read as no opt-out at
/// all. The fields are read to the segment's last whole pair: padding bits
/// a compliant encoder leaves zero, so a `11` there fails the section too
/// (stricter than a reader that ignores padding, on purpose).
fn holds_undefined_value(raw: &str) -> bool {
    let core = raw.split('.').next().unwrap_or_default();
    let mut r = Sextets {
        text: core.as_bytes(),
        pos: 6,
    };
    while r.pos + 2 <= core.len() * 6 {
        match r.read(2) {
            Ok(3) | Err(_) => return true,
            Ok(_) => {}
        }
    }
    false
}

/// A US national or state section (ids 7..=23) decoded by `iab_gpp`; `None`
/// for any other id. These sections are fixed-width fields and optional
/// one-flag segments: their decoding is bounded by their length.
fn us_section(id: u16, raw: &str) -> Option<Result<Section, ()>> {
    fn parse<T: FromStr>(raw: &str, wrap: fn(T) -> Section) -> Result<Section, ()> {
        raw.parse::<T>().map(wrap).map_err(|_| ())
    }
    Some(match id {
        7 => parse::<UsNat>(raw, Section::UsNat),
        8 => parse::<UsCa>(raw, Section::UsCa),
        9 => parse::<UsVa>(raw, Section::UsVa),
        10 => parse::<UsCo>(raw, Section::UsCo),
        11 => parse::<UsUt>(raw, Section::UsUt),
        12 => parse::<UsCt>(raw, Section::UsCt),
        13 => parse::<UsFl>(raw, Section::UsFl),
        14 => parse::<UsMt>(raw, Section::UsMt),
        15 => parse::<UsOr>(raw, Section::UsOr),
        16 => parse::<UsTx>(raw, Section::UsTx),
        17 => parse::<UsDe>(raw, Section::UsDe),
        18 => parse::<UsIa>(raw, Section::UsIa),
        19 => parse::<UsNe>(raw, Section::UsNe),
        20 => parse::<UsNh>(raw, Section::UsNh),
        21 => parse::<UsNj>(raw, Section::UsNj),
        22 => parse::<UsTn>(raw, Section::UsTn),
        23 => parse::<UsMn>(raw, Section::UsMn),
        _ => return None,
    })
}

/// Sections 24 (usmd, Maryland), 25 (usin, Indiana), 26 (usky, Kentucky)
/// and 27 (usri, Rhode Island), decoded here because `iab_gpp` 0.1.2 stops
/// at section 23. The layout is `@iabgpp/cmpapi` 3.2.0's (its
/// `Us{Md,In,Ky,Ri}CoreSegment` and the optional second segment), checked
/// against strings it made (`tests/data/consent/gpp_cases.json`):
///
/// - core: `MspaVersion` (6 bits, 1), `MspaCoveredTransaction` (2, 1 or 2),
///   `MspaMode`, `ProcessingNotice`, `SaleOptOutNotice`,
///   `TargetedAdvertisingOptOutNotice`, `SaleOptOut`,
///   `TargetedAdvertisingOptOut`, then (25–27 only)
///   `KnownChildSensitiveDataConsents`, then `AdditionalDataProcessingConsent`
///   (2 bits each);
/// - usmd: an optional GPC segment (`GpcSegmentType` 2 bits = 1, `Gpc` 1 bit);
///   usin/usky/usri: an optional sensitive-data segment of 8 × 2 bits.
///
/// Trailing padding bits are ignored; a value of 3 is undefined and fails
/// the section; so does a wrong version. The result has the shape
/// `iab_gpp` gives the other sections (snake_case names, numeric codes),
/// so [`judge_us`] reads it the same way, `MspaMode` included (2 is Service
/// Provider Mode).
pub(super) fn mspa_state_section(id: u16, raw: &str) -> Result<Value, GppDecodeError> {
    let mut segments = raw.split('.');
    let core = segments.next().unwrap_or("");
    let mut r = Sextets {
        text: core.as_bytes(),
        pos: 0,
    };
    if r.read(6)? != 1 {
        return Err(GppDecodeError("unknown section version"));
    }
    let two = |r: &mut Sextets<'_>| -> Result<u64, GppDecodeError> {
        match r.read(2)? {
            3 => Err(GppDecodeError("undefined field value")),
            v => Ok(v),
        }
    };
    let covered = two(&mut r)?;
    if covered == 0 {
        return Err(GppDecodeError("undefined field value"));
    }
    let mut core_fields = serde_json::Map::new();
    core_fields.insert("mspa_covered_transaction".into(), Value::Bool(covered == 1));
    let mut names = vec![
        "mspa_mode",
        "processing_notice",
        "sale_opt_out_notice",
        "targeted_advertising_opt_out_notice",
        "sale_opt_out",
        "targeted_advertising_opt_out",
    ];
    if id != 24 {
        names.push("known_child_sensitive_data_consents");
    }
    names.push("additional_data_processing_consent");
    for name in names {
        core_fields.insert(name.into(), two(&mut r)?.into());
    }
    let mut out = serde_json::Map::new();
    out.insert("core".into(), Value::Object(core_fields));
    if let Some(seg) = segments.next() {
        let mut r = Sextets {
            text: seg.as_bytes(),
            pos: 0,
        };
        if id == 24 {
            if r.read(2)? != 1 {
                return Err(GppDecodeError("unknown segment type"));
            }
            out.insert("gpc".into(), Value::Bool(r.read(1)? == 1));
        } else {
            let list = (0..8)
                .map(|_| two(&mut r).map(Value::from))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert("sensitive_data_processing".into(), Value::Array(list));
        }
    }
    if segments.next().is_some() {
        return Err(GppDecodeError("too many segments"));
    }
    Ok(Value::Object(out))
}

/// A decoded US section, read by field name.
fn us_facts(id: u16, section: &Section) -> SectionFacts {
    match serde_json::to_value(section) {
        Ok(v) => SectionFacts::Us(judge_us(id, &v)),
        Err(_) => SectionFacts::Undecodable,
    }
}

/// A US section's fields, gathered by name from its serialised form: the
/// scalar fields, the sensitive-data entries and the known-child entries
/// (`name` is empty where the section lists them without names).
#[derive(Default)]
struct UsFields<'a> {
    top: Vec<(&'a str, u8)>,
    sensitive: Vec<(&'a str, u8)>,
    child: Vec<(&'a str, u8)>,
    gpc: bool,
}

/// A field's value as the GPP spec codes it: 0 not applicable; 1 notice
/// given, opted out, no consent, yes; 2 notice not given, did not opt out,
/// consent, no. `iab_gpp` serialises the names, fairgate's own decoder of
/// sections 24–27 the numbers. An unknown value is 3: never "not applicable".
fn code(v: &Value) -> u8 {
    match v {
        Value::Number(n) => n.as_u64().map_or(3, |n| n.min(3) as u8),
        Value::String(s) => match s.as_str() {
            "NotApplicable" => 0,
            "Provided" | "OptedOut" | "NoConsent" | "Yes" => 1,
            "NotProvided" | "DidNotOptOut" | "Consent" | "No" => 2,
            _ => 3,
        },
        _ => 3,
    }
}

/// Entries of a list field: named (an object) or not (an array, a scalar).
fn entries<'a>(v: &'a Value, out: &mut Vec<(&'a str, u8)>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| out.push((k.as_str(), code(x)))),
        Value::Array(a) => a.iter().for_each(|x| out.push(("", code(x)))),
        other => out.push(("", code(other))),
    }
}

fn gather<'a>(v: &'a Value, f: &mut UsFields<'a>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match k.as_str() {
                    "gpc" => f.gpc |= child.as_bool() == Some(true),
                    "sensitive_data_processing" => entries(child, &mut f.sensitive),
                    k if k.starts_with("known_child") => entries(child, &mut f.child),
                    _ if child.is_object() || child.is_array() => gather(child, f),
                    // `mspa_covered_transaction` is a boolean in `iab_gpp`: not judged.
                    _ if child.is_boolean() => {}
                    k => f.top.push((k, code(child))),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| gather(x, f)),
        _ => {}
    }
}

/// How Prebid's `USNatTransmitUfpd` treats a sensitive-data category, named
/// as US National names them (states name them close enough to match by
/// these words; Prebid maps California's by position onto the same ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sensitive {
    /// Precise geolocation: judged for precise geo only (`USNatTransmitGeo`).
    Geo,
    /// Racial or ethnic origin, religion, health, sex life or orientation,
    /// citizenship, union membership, national origin (Prebid's indices 0–4,
    /// 10, 12, 14): a refusal (1) denies.
    RefusalDenies,
    /// Genetic, biometric, identification documents, financial, mail and
    /// messages, crime victim, transgender status (Prebid's 5, 6, 8, 9, 11,
    /// 13, 15) — and any category fairgate does not know, or an unnamed
    /// entry: any value but 0 denies.
    AnyDenies,
}

fn sensitive_class(name: &str) -> Sensitive {
    const REFUSAL: &[&str] = &[
        "racial",
        "ethnic",
        "religio",
        "health",
        "sex_life",
        "sexual_orientation",
        "citizenship",
        "union",
        "national_origin",
    ];
    if name.contains("geolocation") {
        Sensitive::Geo
    } else if !name.is_empty()
        && !name.contains("transgender")
        && REFUSAL.iter().any(|w| name.contains(w))
    {
        Sensitive::RefusalDenies
    } else {
        Sensitive::AnyDenies
    }
}

/// Judge a serialised US section (`id` 7 US National, else a state).
fn judge_us(id: u16, v: &Value) -> UsFacts {
    let mut f = UsFields::default();
    gather(v, &mut f);
    let field = |name: &str| f.top.iter().find(|(k, _)| *k == name).map(|&(_, c)| c);
    let mut u = UsFacts {
        gpc: f.gpc,
        ..UsFacts::default()
    };
    for &(k, c) in &f.top {
        if k.ends_with("_notice") && c == 2 {
            u.notice_missing = true;
        }
        if k.ends_with("_opt_out") {
            u.opted_out |= c == 1;
            // Did not opt out, where the notice of that opt-out is "not
            // applicable": Prebid's `checkSale`/`checkSharing`/`checkTargetedAdvertising`.
            let notice = field(&format!("{k}_notice"));
            let sharing = (k == "sharing_opt_out")
                .then(|| field("sharing_notice"))
                .flatten();
            if c == 2 && (notice == Some(0) || sharing == Some(0)) {
                u.notice_missing = true;
            }
            // An undefined value (3) in an opt-out fails closed.
            u.opted_out |= c == 3;
        }
    }
    // Sections 24–27 carry one `MspaMode` for both modes: 1 is Opt-Out
    // Option Mode, 2 Service Provider Mode (the IAB's reference encoder for
    // them, iabgpp-es #106); the others a `MspaServiceProviderMode` of 1.
    u.service_provider = field("mspa_service_provider_mode") == Some(1)
        || ((24..=27).contains(&id) && field("mspa_mode") == Some(2));
    // The state sections' `AdditionalDataProcessingConsent` is US National's
    // `PersonalDataConsents` under another name (consent to processing not
    // necessary for the disclosed purposes): judged alike (rule 13).
    u.personal_data = f.top.iter().any(|&(k, c)| {
        (k.starts_with("personal_data_consent") || k == "additional_data_processing_consent")
            && c != 0
    });
    let sdp_notice_na = [
        "sensitive_data_processing_opt_out_notice",
        "sensitive_data_limit_use_notice",
        // Iowa's name for it (section 18).
        "sensitive_data_optout_notice",
    ]
    .iter()
    .any(|n| field(n) == Some(0));
    for &(name, c) in &f.sensitive {
        match sensitive_class(name) {
            Sensitive::Geo => {
                u.precise_geo_denied |= c == 1 || c == 3 || (c == 2 && sdp_notice_na);
            }
            class => {
                u.sensitive |= (c == 2 && sdp_notice_na)
                    || c == 3
                    || match class {
                        Sensitive::RefusalDenies => c == 1,
                        _ => c != 0,
                    };
            }
        }
    }
    // US National: Prebid's `checkKnownChildSensitiveDataConsents` (any
    // refusal, or any value for the under-13 entry). A state: any value
    // but 0, as Prebid's state readers map it.
    u.known_child = f.child.iter().any(|&(name, c)| {
        if id == 7 {
            c == 1 || c == 3 || (name.contains("under_13") && c != 0)
        } else {
            c != 0
        }
    });
    u
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields the review of 2026-11-24 found read under one name only.
    #[test]
    fn state_fields_under_their_own_names_are_judged() {
        let us = |id, v: Value| judge_us(id, &v);
        // Iowa's sensitive-data opt-out notice "not applicable" beside a
        // sensitive-data consent: the invalid combination of rule 12.
        let iowa = us(
            18,
            serde_json::json!({"core": {
                "sensitive_data_optout_notice": "NotApplicable",
                "sensitive_data_processing": {"racial_or_ethnic_origin": "Consent"},
            }}),
        );
        assert!(iowa.sensitive);
        // A state's AdditionalDataProcessingConsent is PersonalDataConsents.
        for c in [1, 2] {
            let s = us(
                27,
                serde_json::json!({"core": {"additional_data_processing_consent": c}}),
            );
            assert!(s.personal_data, "{c}");
        }
        let s = us(
            27,
            serde_json::json!({"core": {"additional_data_processing_consent": 0}}),
        );
        assert!(!s.personal_data);
        // Sections 24–27: MspaMode 2 is Service Provider Mode; 1 (Opt-Out
        // Option Mode) and 0 are not. Elsewhere `mspa_mode` is not a field.
        for (id, mode, provider) in [(24, 2, true), (27, 2, true), (25, 1, false), (26, 0, false)] {
            let s = us(id, serde_json::json!({"core": {"mspa_mode": mode}}));
            assert_eq!(s.service_provider, provider, "{id} {mode}");
        }
        assert!(!us(7, serde_json::json!({"core": {"mspa_mode": 2}})).service_provider);
    }
}
