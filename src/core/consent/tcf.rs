//! TCF v2.2 strings (bare, from `user.consent`, or the GPP section 2), reduced
//! to the facts the policy needs for the platform's own vendor id.
//!
//! The core segment is decoded here rather than by `iab_gpp`. Checked against
//! strings made by `@iabtcf/core` (tests/data/consent), `iab_gpp` 0.1.2 reads
//! the publisher-restrictions section with the vendor-section encoding (a max
//! id and a bitfield/range flag) instead of the TCF one (an entry count and
//! ranges), so it returns wrong vendor ids, or fails, on any string that
//! carries a publisher restriction. The layout below is the IAB TCF v2.2 core
//! segment, field for field; trailing padding bits are ignored.
//!
//! The work is bounded by the string's length: every field is read once, bit
//! by bit, and vendor ranges are kept as `(start, end)` pairs, never expanded
//! into one entry per id (a 33-bit entry may claim 65,535 vendors). No list is
//! reserved beyond what the bits left could still hold, so memory stays
//! proportional to the input too. The string's length itself is capped by the
//! policy (`consent.max_string_bytes`) before it gets here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a TCF string says about the platform's vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcfFacts {
    /// Bit `p` set when purpose `p` has consent.
    pub purposes: u32,
    /// Bit `p` set when purpose `p` has legitimate-interest transparency
    /// (`PurposesLITransparency`): the user did not object.
    pub purposes_li: u32,
    /// Special Feature 1 (precise geolocation) opted in.
    pub special_feature_1: bool,
    /// The platform's vendor id has consent.
    pub vendor_consent: bool,
    /// The platform's vendor id has legitimate interest (the vendor LI section).
    pub vendor_li: bool,
    /// Bit `p` set when a publisher restriction of type 0 (not allowed)
    /// forbids purpose `p` to the vendor.
    pub restricted_purposes: u32,
    /// Bit `p` set when a publisher restriction of type 1 (require consent)
    /// applies to the vendor for purpose `p`: legitimate interest does not count.
    pub require_consent: u32,
    /// Bit `p` set when a publisher restriction of type 2 (require legitimate
    /// interest) applies to the vendor for purpose `p`: consent does not count.
    pub require_li: u32,
    /// `PurposeOneTreatment`: purpose 1 was not disclosed (fairgate still
    /// needs its consent when the policy requires purpose 1).
    pub purpose_one_treatment: bool,
    /// `LastUpdated`, epoch ms (TCF stores deciseconds; kept to the second).
    pub last_updated_ms: i64,
    /// `Created`, epoch ms.
    pub created_ms: i64,
}

/// Why a TCF string could not be used. The message never repeats the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TCF string cannot be decoded: {0}")]
pub struct TcfDecodeError(pub &'static str);

/// A set of vendor ids as encoded: a bitfield or a list of ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorSet {
    /// Bit `i` (from the most significant of byte 0) is vendor `i + 1`.
    Bitfield {
        max: u16,
        bits: Vec<u8>,
    },
    Ranges(Vec<(u16, u16)>),
}

impl VendorSet {
    pub fn contains(&self, id: u16) -> bool {
        match self {
            VendorSet::Bitfield { max, bits } => {
                if id == 0 || id > *max {
                    return false;
                }
                let i = (id - 1) as usize;
                bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
            }
            VendorSet::Ranges(r) => r.iter().any(|&(s, e)| (s..=e).contains(&id)),
        }
    }

    pub fn is_range(&self) -> bool {
        matches!(self, VendorSet::Ranges(_))
    }
}

/// A publisher restriction: (purpose, restriction type, vendor ranges).
pub type Restriction = (u8, u8, Vec<(u16, u16)>);

/// The decoded core segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcfCore {
    pub created_ds: u64,
    pub last_updated_ds: u64,
    pub policy_version: u8,
    /// Bit `i` set when special feature `i` is opted in.
    pub special_features: u32,
    /// Bit `p` set when purpose `p` has consent.
    pub purposes: u32,
    /// Bit `p` set when purpose `p` has legitimate-interest transparency.
    pub purposes_li: u32,
    pub purpose_one_treatment: bool,
    pub vendor_consents: VendorSet,
    pub vendor_li: VendorSet,
    /// (purpose, restriction type, vendor ranges)
    pub restrictions: Vec<Restriction>,
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u64, TcfDecodeError> {
        if self.pos + n > self.data.len() * 8 {
            return Err(TcfDecodeError("truncated"));
        }
        let mut v = 0u64;
        for _ in 0..n {
            let byte = self.data[self.pos / 8];
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | bit as u64;
            self.pos += 1;
        }
        Ok(v)
    }

    fn flags(&mut self, n: usize) -> Result<u32, TcfDecodeError> {
        // Bit i of the field (1-based id i+1) becomes bit i+1 of the mask.
        let raw = self.read(n)? as u32;
        let mut mask = 0u32;
        for i in 0..n {
            if raw & (1 << (n - 1 - i)) != 0 {
                mask |= 1 << (i + 1);
            }
        }
        Ok(mask)
    }

    /// Bits not read yet.
    fn left(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    fn ranges(&mut self) -> Result<Vec<(u16, u16)>, TcfDecodeError> {
        let n = self.read(12)? as usize;
        // An entry takes at least 17 bits: reserve no more than can follow.
        let mut out = Vec::with_capacity(n.min(self.left() / 17));
        for _ in 0..n {
            let is_range = self.read(1)? == 1;
            let start = self.read(16)? as u16;
            let end = if is_range {
                self.read(16)? as u16
            } else {
                start
            };
            if start == 0 || end < start {
                return Err(TcfDecodeError("bad vendor range"));
            }
            out.push((start, end));
        }
        Ok(out)
    }

    fn vendor_section(&mut self) -> Result<VendorSet, TcfDecodeError> {
        let max = self.read(16)? as u16;
        if self.read(1)? == 1 {
            let r = self.ranges()?;
            if r.iter().any(|&(_, e)| e > max) {
                return Err(TcfDecodeError("vendor range above MaxVendorId"));
            }
            Ok(VendorSet::Ranges(r))
        } else {
            let n = max as usize;
            let mut bits = vec![0u8; n.div_ceil(8)];
            for i in 0..n {
                if self.read(1)? == 1 {
                    bits[i / 8] |= 0x80 >> (i % 8);
                }
            }
            Ok(VendorSet::Bitfield { max, bits })
        }
    }
}

/// Decode the core segment of a TCF v2 string.
pub fn decode_core(s: &str) -> Result<TcfCore, TcfDecodeError> {
    let core = s.trim().split('.').next().unwrap_or("");
    let core = core.trim_end_matches('=');
    if core.is_empty() {
        return Err(TcfDecodeError("empty"));
    }
    let data = URL_SAFE_NO_PAD
        .decode(core)
        .map_err(|_| TcfDecodeError("not base64url"))?;
    let mut b = Bits {
        data: &data,
        pos: 0,
    };
    if b.read(6)? != 2 {
        return Err(TcfDecodeError("not a TCF v2 string"));
    }
    let created_ds = b.read(36)?;
    let last_updated_ds = b.read(36)?;
    b.read(12)?; // CmpId
    b.read(12)?; // CmpVersion
    b.read(6)?; // ConsentScreen
    b.read(12)?; // ConsentLanguage
    b.read(12)?; // VendorListVersion
    let policy_version = b.read(6)? as u8;
    b.read(1)?; // IsServiceSpecific
    b.read(1)?; // UseNonStandardTexts
    let special_features = b.flags(12)?;
    let purposes = b.flags(24)?;
    let purposes_li = b.flags(24)?;
    let purpose_one_treatment = b.read(1)? == 1;
    b.read(12)?; // PublisherCC
    let vendor_consents = b.vendor_section()?;
    let vendor_li = b.vendor_section()?;
    let n = b.read(12)? as usize;
    // A restriction takes at least 20 bits.
    let mut restrictions = Vec::with_capacity(n.min(b.left() / 20));
    for _ in 0..n {
        let purpose = b.read(6)? as u8;
        let kind = b.read(2)? as u8;
        restrictions.push((purpose, kind, b.ranges()?));
    }
    Ok(TcfCore {
        created_ds,
        last_updated_ds,
        policy_version,
        special_features,
        purposes,
        purposes_li,
        purpose_one_treatment,
        vendor_consents,
        vendor_li,
        restrictions,
    })
}

/// Decode a TCF v2 string and reduce it to the facts about `vendor`.
pub fn decode_tcf(s: &str, vendor: u16) -> Result<TcfFacts, TcfDecodeError> {
    let core = decode_core(s)?;
    // Per restriction type (0 not allowed, 1 require consent, 2 require
    // legitimate interest), the purposes restricted for `vendor`. Type 3 is
    // undefined in TCF v2.2 and ignored, as the policy's table has no row for it.
    let mut by_type = [0u32; 4];
    for (purpose, kind, ranges) in &core.restrictions {
        if *purpose < 32 && ranges.iter().any(|&(s, e)| (s..=e).contains(&vendor)) {
            by_type[usize::from(*kind & 3)] |= 1 << purpose;
        }
    }
    Ok(TcfFacts {
        purposes: core.purposes,
        purposes_li: core.purposes_li,
        special_feature_1: core.special_features & (1 << 1) != 0,
        vendor_consent: core.vendor_consents.contains(vendor),
        vendor_li: core.vendor_li.contains(vendor),
        restricted_purposes: by_type[0],
        require_consent: by_type[1],
        require_li: by_type[2],
        purpose_one_treatment: core.purpose_one_treatment,
        last_updated_ms: (core.last_updated_ds / 10) as i64 * 1000,
        created_ms: (core.created_ds / 10) as i64 * 1000,
    })
}
