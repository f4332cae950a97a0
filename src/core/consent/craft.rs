//! Test helpers: consent strings written bit by bit, to craft the worst
//! cases a decoder can be handed (huge vendor ranges, long GPP headers)
//! without an IAB library at hand.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bits written most significant first, as the IAB encodings read them.
#[derive(Default)]
pub struct BitWriter {
    bits: Vec<bool>,
}

impl BitWriter {
    pub fn new() -> BitWriter {
        BitWriter::default()
    }

    /// `value` in `n` bits.
    pub fn int(&mut self, value: u64, n: usize) -> &mut Self {
        for i in (0..n).rev() {
            self.bits.push(value >> i & 1 == 1);
        }
        self
    }

    pub fn bit(&mut self, b: bool) -> &mut Self {
        self.bits.push(b);
        self
    }

    /// `value` (1 or more) in the GPP Fibonacci code: one bit per Fibonacci
    /// number 1, 2, 3, 5, … (least first), then a closing 1.
    pub fn fib(&mut self, value: u64) -> &mut Self {
        assert!(value >= 1);
        let mut fibs = vec![1u64, 2];
        while fibs[fibs.len() - 1] + fibs[fibs.len() - 2] <= value {
            fibs.push(fibs[fibs.len() - 1] + fibs[fibs.len() - 2]);
        }
        let mut code = vec![false; fibs.len()];
        let mut rest = value;
        for i in (0..fibs.len()).rev() {
            if fibs[i] <= rest {
                code[i] = true;
                rest -= fibs[i];
            }
        }
        while code.last() == Some(&false) {
            code.pop();
        }
        self.bits.extend(code);
        self.bits.push(true);
        self
    }

    /// Base64url without padding, the bits padded with zeros to whole bytes.
    pub fn base64(&self) -> String {
        let mut bytes = vec![0u8; self.bits.len().div_ceil(8)];
        for (i, &b) in self.bits.iter().enumerate() {
            if b {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// A GPP header listing `ids` (ascending), one single entry each.
pub fn gpp_header(ids: &[u64]) -> String {
    let mut w = BitWriter::new();
    w.int(3, 6).int(1, 6).int(ids.len() as u64, 12);
    let mut last = 0;
    for &id in ids {
        w.bit(false).fib(id - last);
        last = id;
    }
    w.base64()
}

/// A TCF v2 core segment: every purpose and special feature given, then
/// `body` writes the vendor sections and publisher restrictions.
pub fn tcf_core(body: impl FnOnce(&mut BitWriter)) -> String {
    let mut w = BitWriter::new();
    // Version 2; Created and LastUpdated 2024-06-15 (deciseconds).
    w.int(2, 6).int(17_184_402_000, 36).int(17_184_402_000, 36);
    w.int(10, 12).int(1, 12).int(1, 6).int(4 * 64 + 13, 12); // CMP, screen, "EN"
    w.int(300, 12).int(4, 6).bit(true).bit(false); // GVL version, policy 4, service specific
    w.int(0xfff, 12)
        .int(0xff_ffff, 24)
        .int(0, 24)
        .bit(false)
        .int(3 * 64 + 4, 12); // SF, purposes, LI, P1T, "DE"
    body(&mut w);
    w.base64()
}

/// The vendor-section range encoding: MaxVendorId, IsRange = 1, `entries`
/// ranges each covering `1..=65535` (the largest a range can claim).
pub fn huge_vendor_ranges(w: &mut BitWriter, entries: usize) {
    w.int(65_535, 16).bit(true).int(entries as u64, 12);
    for _ in 0..entries {
        w.bit(true).int(1, 16).int(65_535, 16);
    }
}

/// The largest TCF string under `cap` bytes whose vendor consents, vendor
/// legitimate interests and publisher restrictions are all ranges claiming
/// every vendor id: as many range entries as a string of that size holds.
pub fn tcf_max_ranges(cap: usize) -> String {
    // The core header is 213 bits, a vendor section 29 bits before its
    // entries, each range entry 33 bits, each restriction 20 bits before its
    // one entry; base64 carries 6 bits a character.
    let bits = cap * 6 - 213 - 2 * 29 - 12;
    let vendor = (bits / 33 / 3).min(4095);
    let mut restrictions = ((bits - 2 * vendor * 33) / (20 + 33)).min(4095);
    loop {
        let s = tcf_core(|w| {
            huge_vendor_ranges(w, vendor);
            huge_vendor_ranges(w, vendor);
            w.int(restrictions as u64, 12);
            for i in 0..restrictions {
                w.int(1 + (i % 11) as u64, 6).int(0, 2).int(1, 12);
                w.bit(true).int(1, 16).int(65_535, 16);
            }
        });
        if s.len() <= cap {
            return s;
        }
        restrictions -= 1;
    }
}

/// A TCF Canada (GPP section 5) core segment whose express-consent vendors
/// are `entries` ranges of `1..=65535`: what `iab_gpp` 0.1.2 expands into
/// one `u16` per id claimed.
pub fn tcf_ca_huge(entries: usize) -> String {
    let mut w = BitWriter::new();
    w.int(1, 6).int(17_184_402_000, 36).int(17_184_402_000, 36);
    w.int(10, 12)
        .int(1, 12)
        .int(1, 6)
        .int(4 * 64 + 13, 12)
        .int(300, 12);
    w.int(1, 6).bit(false).int(0, 12).int(0, 24).int(0, 24);
    // OptimizedIntRange: MaxVendorId, IsIntRange = 1, then an int range.
    w.int(65_535, 16).bit(true).int(entries as u64, 12);
    for _ in 0..entries {
        w.bit(true).int(1, 16).int(65_535, 16);
    }
    w.int(0, 16).bit(false); // implied consents: empty bitfield
    w.int(0, 12); // no publisher restrictions
    w.base64()
}

/// A TCF Canada section whose disclosed-vendors segment holds one Fibonacci
/// group from 60,000 to 70,000: past the largest vendor id, and past what
/// `iab_gpp` 0.1.2 can add in a `u16` (a debug build panics).
pub fn tcf_ca_overflowing() -> String {
    let mut w = BitWriter::new();
    w.int(1, 3)
        .bit(true)
        .int(1, 12)
        .bit(true)
        .fib(60_000)
        .fib(10_000);
    format!("{}.{}", tcf_ca_huge(0), w.base64())
}
