//! Realistic synthetic decisions, for the load generator, the demo, the
//! benchmarks and the tests.
//!
//! Consent strings are the ones made by the IAB reference libraries
//! (`tests/data/consent/`, see its README). Their TCF `Created` and
//! `LastUpdated` fields are re-stamped to the generator's day so that they are
//! not expired when the demo runs years after they were made; every other bit
//! is as the IAB library wrote it.
//!
//! Campaigns are fair (every group selected at the same rate) except the
//! `skewed` ones, whose selection rate differs by sex and age band.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const TCF_CASES: &str = include_str!("../../tests/data/consent/tcf_cases.json");
const GPP_CASES: &str = include_str!("../../tests/data/consent/gpp_cases.json");

/// Groups the generator draws from (the example policy's dimensions).
pub const SEXES: [&str; 2] = ["female", "male"];
pub const AGE_BANDS: [&str; 6] = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];

const SEGMENTS: [&str; 16] = [
    "auto-intender",
    "travel-frequent",
    "sports-football",
    "finance-investor",
    "health-diabetes",
    "tech-early-adopter",
    "religion-catholic",
    "home-improvement",
    "politics-left",
    "parenting-toddlers",
    "ethnicity-hispanic",
    "fashion-luxury",
    "gaming-console",
    "sexual-orientation-lgb",
    "food-vegan",
    "union-member",
];

/// Re-stamp a TCF core segment's `Created` and `LastUpdated` (36 bits each,
/// deciseconds, after the 6-bit version) to `ds` deciseconds.
pub fn restamp_tcf(s: &str, ds: u64) -> Option<String> {
    let (core, rest) = match s.split_once('.') {
        Some((c, r)) => (c, Some(r)),
        None => (s, None),
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(core).ok()?;
    let mut set = |start: usize, len: usize, v: u64| {
        for i in 0..len {
            let bit = (v >> (len - 1 - i)) & 1;
            let pos = start + i;
            let (byte, off) = (pos / 8, 7 - pos % 8);
            if byte < bytes.len() {
                bytes[byte] = (bytes[byte] & !(1 << off)) | ((bit as u8) << off);
            }
        }
    };
    set(6, 36, ds);
    set(42, 36, ds);
    let mut out = URL_SAFE_NO_PAD.encode(&bytes);
    if let Some(r) = rest {
        out.push('.');
        out.push_str(r);
    }
    Some(out)
}

/// A deterministic generator of decision records.
pub struct Synth {
    rng: fastrand::Rng,
    campaigns: Vec<(String, Option<&'static str>, bool)>,
    tcf: Vec<String>,
    gpp: Vec<(String, Vec<i64>)>,
    seq: u64,
    /// One record in `malformed_every` is malformed (0: never).
    pub malformed_every: u64,
    /// Prefix of decision ids.
    pub id_prefix: String,
}

impl Synth {
    /// `campaigns` campaigns, the first `skewed` of them skewed; TCF strings stamped at `day_ms`.
    pub fn new(seed: u64, campaigns: usize, skewed: usize, day_ms: i64) -> Synth {
        let cats = [
            None,
            None,
            None,
            Some("housing"),
            None,
            Some("employment"),
            None,
            Some("credit"),
        ];
        let campaigns = (0..campaigns.max(1))
            .map(|i| {
                let skew = i < skewed;
                let id = if skew {
                    format!("cmp-skewed-{:02}", i + 1)
                } else {
                    format!("cmp-{:04}", i + 1)
                };
                (id, cats[i % cats.len()], skew)
            })
            .collect();
        let ds = (day_ms.max(0) / 100) as u64;
        let tcf: Vec<String> = serde_json::from_str::<Vec<Value>>(TCF_CASES)
            .expect("bundled TCF cases parse")
            .iter()
            .filter(|c| c["name"] != "old_string_2020_01_15")
            .filter_map(|c| restamp_tcf(c["tc_string"].as_str()?, ds))
            .collect();
        let gpp: Vec<(String, Vec<i64>)> = serde_json::from_str::<Vec<Value>>(GPP_CASES)
            .expect("bundled GPP cases parse")
            .iter()
            .filter_map(|c| {
                let s = c["gpp_string"].as_str()?.to_string();
                let sids: Vec<i64> = c["section_ids"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_i64)
                    .filter(|&sid| sid != 2) // TCF sections carry old dates
                    .collect();
                (!sids.is_empty()).then_some((s, sids))
            })
            .collect();
        Synth {
            rng: fastrand::Rng::with_seed(seed),
            campaigns,
            tcf,
            gpp,
            seq: 0,
            malformed_every: 0,
            id_prefix: "dec-".into(),
        }
    }

    /// Campaign ids and whether each is skewed.
    pub fn campaigns(&self) -> impl Iterator<Item = (&str, bool)> {
        self.campaigns.iter().map(|(id, _, s)| (id.as_str(), *s))
    }

    fn regs(&mut self) -> (Value, Option<String>) {
        let r = self.rng.u32(0..100);
        let tcf = || None::<String>;
        let _ = tcf;
        match r {
            // EU, TCF string (most of them consented).
            0..=54 => {
                let s = if self.rng.u32(0..100) < 70 {
                    self.tcf[self.rng.usize(0..4.min(self.tcf.len()))].clone()
                } else {
                    self.tcf[self.rng.usize(0..self.tcf.len())].clone()
                };
                (json!({"gdpr": 1, "coppa": 0, "gpc": 0}), Some(s))
            }
            // EU without a string.
            55..=57 => (json!({"gdpr": 1, "coppa": 0}), None),
            // US Privacy.
            58..=74 => {
                let usp = if self.rng.bool() { "1YNN" } else { "1YYN" };
                (
                    json!({"gdpr": 0, "coppa": 0, "us_privacy": usp, "gpc": 0}),
                    None,
                )
            }
            // GPP.
            75..=92 => {
                let (s, sids) = self.gpp[self.rng.usize(0..self.gpp.len())].clone();
                (
                    json!({"gdpr": 0, "coppa": 0, "gpp": s, "gpp_sid": sids}),
                    None,
                )
            }
            // GPC.
            93..=96 => (json!({"gdpr": 0, "coppa": 0, "gpc": 1}), None),
            // COPPA.
            _ => (json!({"gdpr": 0, "coppa": 1}), None),
        }
    }

    /// The next record: `(key, bytes)`.
    pub fn next(&mut self, ts_ms: i64) -> (String, Vec<u8>) {
        self.seq += 1;
        let ci = self.rng.usize(0..self.campaigns.len());
        let (cid, category, skewed) = self.campaigns[ci].clone();
        if self.malformed_every > 0 && self.seq.is_multiple_of(self.malformed_every) {
            let bad = match self.seq / self.malformed_every % 4 {
                0 => format!("{{\"id\":\"{}{:08}\",\"ts\":", self.id_prefix, self.seq).into_bytes(),
                1 => format!(
                    "{{\"id\":\"{}{:08}\",\"campaign\":{{\"id\":\"{cid}\"}}}}",
                    self.id_prefix, self.seq
                )
                .into_bytes(),
                2 => format!(
                    "{{\"id\":\"{}{:08}\",\"ts\":\"yesterday\",\"campaign\":{{\"id\":\"{cid}\"}}}}",
                    self.id_prefix, self.seq
                )
                .into_bytes(),
                _ => b"\xff\xfe not even text".to_vec(),
            };
            return (cid, bad);
        }
        let sex = SEXES[self.rng.usize(0..2)];
        let age_i = self.rng.usize(0..AGE_BANDS.len());
        let age = AGE_BANDS[age_i];
        let p = if skewed {
            let base = if sex == "male" { 0.62 } else { 0.22 };
            base * if age_i >= 4 { 0.6 } else { 1.0 }
        } else {
            0.4
        };
        let selected = self.rng.f64() < p;
        let (regs, tcf) = self.regs();
        let seg = |rng: &mut fastrand::Rng| {
            (0..rng.usize(2..6))
                .map(|_| json!({"id": SEGMENTS[rng.usize(0..SEGMENTS.len())]}))
                .collect::<Vec<_>>()
        };
        let data = json!([
            {"id": "dmp-1", "name": "first-party", "segment": seg(&mut self.rng)},
            {"id": "dmp-2", "name": "partner", "segment": seg(&mut self.rng)}
        ]);
        let uid = self.rng.u64(..);
        let mut user = json!({
            "id": format!("u-{uid:016x}"),
            "buyeruid": format!("b-{:012x}", self.rng.u64(..)),
            "yob": 1950 + self.rng.i64(0..55),
            "gender": if sex == "female" { "F" } else { "M" },
            "eids": [{"source": "id5-sync.com", "uids": [{"id": format!("ID5*{:020x}", uid), "atype": 1}]}],
            "data": data,
            "geo": {"lat": 52.0 + self.rng.f64(), "lon": 4.0 + self.rng.f64(), "country": "NLD", "zip": format!("{:04}AB", self.rng.u32(1000..9999))}
        });
        if let Some(s) = tcf {
            user["consent"] = Value::String(s);
        }
        let mut v = json!({
            "id": format!("{}{:08}", self.id_prefix, self.seq),
            "ts": ts_ms,
            "campaign": {"id": cid, "advertiser_id": format!("adv-{}", ci % 17)},
            "selected": selected,
            "user": user,
            "device": {
                "ip": format!("203.0.{}.{}", self.rng.u8(..), self.rng.u8(1..255)),
                "ifa": format!("{:08X}-{:04X}-4BA4-AE5B-{:012X}", self.rng.u32(..), self.rng.u16(..), self.rng.u64(..) & 0xffff_ffff_ffff),
                "ua": "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0 Mobile Safari/537.36",
                "geo": {"lat": 52.0 + self.rng.f64(), "lon": 4.0 + self.rng.f64()},
                "lmt": 0
            },
            "regs": regs,
            "audience": {"sex": sex, "age_band": age},
            "ad": {"creative_id": format!("cr-{}", self.rng.u32(1..40)), "bid_cpm": 1.25, "format": "300x250"}
        });
        if let Some(c) = category {
            v["campaign"]["category"] = Value::String(c.into());
        }
        (cid, serde_json::to_vec(&v).expect("serialises"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restamped_strings_decode_with_the_new_date() {
        let cases: Vec<Value> = serde_json::from_str(TCF_CASES).unwrap();
        let s = cases[1]["tc_string"].as_str().unwrap();
        let day = 1_795_000_000_000i64;
        let r = restamp_tcf(s, (day / 100) as u64).unwrap();
        let f = crate::core::consent::decode_tcf(&r, 755).unwrap();
        assert_eq!(f.last_updated_ms, day / 1000 * 1000);
        let orig = crate::core::consent::decode_tcf(s, 755).unwrap();
        assert_eq!(
            (f.purposes, f.vendor_consent),
            (orig.purposes, orig.vendor_consent)
        );
    }

    #[test]
    fn records_are_about_a_kilobyte_and_valid() {
        let mut s = Synth::new(7, 20, 1, 1_795_000_000_000);
        let mut total = 0;
        for i in 0..200 {
            let (_, b) = s.next(1_795_000_000_000 + i);
            crate::core::decision::Decision::parse(&b).unwrap();
            total += b.len();
        }
        let avg = total / 200;
        assert!((700..1600).contains(&avg), "average record {avg} bytes");
    }
}
