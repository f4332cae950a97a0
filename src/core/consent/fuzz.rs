//! Fuzzing the consent path with proptest. Arbitrary strings, arbitrary
//! bytes read as text, and the IAB-made fixtures mutated (characters set,
//! inserted, removed, slices repeated, cut short) go through the decoders and
//! the whole evaluation. Nothing may panic; every input gets a verdict that
//! fails closed; and the decoders' output never outgrows their input, which,
//! with the length cap, is what bounds their work (no timing is asserted).
//! Failing cases are kept in `proptest-regressions/core/consent/fuzz.txt`.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::policy::CompiledPolicy;

const TCF: &str = include_str!("../../../tests/data/consent/tcf_cases.json");
const GPP: &str = include_str!("../../../tests/data/consent/gpp_cases.json");
const POLICY: &str = include_str!("../../../config/policy.toml");

/// The cap of the strict policy: small, so repeated slices cross it.
const CAP: usize = 1024;

fn fixtures(json: &str, field: &str) -> Vec<String> {
    let cases: Vec<Value> = serde_json::from_str(json).unwrap();
    cases
        .iter()
        .map(|c| c[field].as_str().unwrap().to_string())
        .collect()
}

/// The example policy, and a strict one: every fallback withheld, the
/// smallest string cap and cache.
fn policies() -> [CompiledPolicy; 2] {
    let strict = POLICY
        .replace("no_consent = \"contextual\"", "no_consent = \"withheld\"")
        .replace("opt_out = \"contextual\"", "opt_out = \"withheld\"")
        .replace("child = \"contextual\"", "child = \"withheld\"")
        .replace(
            "max_string_bytes = 8192",
            &format!("max_string_bytes = {CAP}"),
        )
        .replace("cache_bytes = 67108864", "cache_bytes = 1048576");
    [
        CompiledPolicy::from_toml(POLICY).unwrap(),
        CompiledPolicy::from_toml(&strict).unwrap(),
    ]
}

/// One change to a string; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, char),
    Insert(usize, char),
    Remove(usize),
    Truncate(usize),
    /// Repeat the slice at `.0` of length `.1`, `.2` times.
    Repeat(usize, usize, usize),
}

/// Characters an edit writes: base64url, the separators, US Privacy flags,
/// and some that never belong.
const CHARS: &[char] = &[
    'A', 'B', 'D', 'Q', 'g', 'w', '_', '-', '/', '+', '~', '.', '=', ' ', '\0', 'é', 'Y', 'N', 'y',
    '1', '9', 'z', '~',
];

fn edit() -> impl Strategy<Value = Edit> {
    let c = proptest::sample::select(CHARS);
    prop_oneof![
        4 => (any::<usize>(), c.clone()).prop_map(|(i, c)| Edit::Set(i, c)),
        2 => (any::<usize>(), c).prop_map(|(i, c)| Edit::Insert(i, c)),
        2 => any::<usize>().prop_map(Edit::Remove),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), 1usize..300, 1usize..20).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
    ]
}

fn apply(s: &str, edits: &[Edit]) -> String {
    let mut c: Vec<char> = s.chars().collect();
    for e in edits {
        let at = |i: usize, n: usize| if n == 0 { 0 } else { i % n };
        match *e {
            Edit::Set(i, ch) if !c.is_empty() => {
                let i = at(i, c.len());
                c[i] = ch;
            }
            Edit::Insert(i, ch) => c.insert(at(i, c.len() + 1), ch),
            Edit::Remove(i) if !c.is_empty() => {
                c.remove(at(i, c.len()));
            }
            Edit::Truncate(i) => c.truncate(at(i, c.len() + 1)),
            Edit::Repeat(i, n, k) if !c.is_empty() => {
                let start = at(i, c.len());
                let end = (start + n).min(c.len());
                let slice: Vec<char> = c[start..end].to_vec();
                for _ in 0..k {
                    c.splice(end..end, slice.iter().copied());
                }
            }
            _ => {}
        }
    }
    c.into_iter().collect()
}

/// A consent string: mostly a mutated fixture, else anything at all.
fn consent_string(pool: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (proptest::sample::select(pool), vec(edit(), 0..6)).prop_map(|(s, e)| apply(&s, &e)),
        1 => "[A-Za-z0-9_~.-]{0,400}",
        1 => ".{0,200}",
        1 => vec(any::<u8>(), 0..400).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn usp_string() -> impl Strategy<Value = String> {
    let pool = ["1YNN", "1YYN", "1---", "1Y-N", "1NNN"]
        .map(String::from)
        .to_vec();
    prop_oneof![
        3 => (proptest::sample::select(pool), vec(edit(), 0..3)).prop_map(|(s, e)| apply(&s, &e)),
        1 => ".{0,8}",
    ]
}

#[derive(Debug, Clone)]
struct Case {
    gdpr: Option<bool>,
    tcf: Option<String>,
    usp: Option<String>,
    gpp: Option<String>,
    gpp_sid: Vec<i64>,
    gpc: bool,
    coppa: bool,
    ts_ms: i64,
}

impl Case {
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            gdpr: self.gdpr,
            tcf: self.tcf.as_deref(),
            usp: self.usp.as_deref(),
            gpp: self.gpp.as_deref(),
            gpp_sid: &self.gpp_sid,
            gpc: self.gpc,
            coppa: self.coppa,
            lmt: false,
            ts_ms: self.ts_ms,
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    let tcf = fixtures(TCF, "tc_string");
    let mut gpp = fixtures(GPP, "gpp_string");
    gpp.extend(tcf.iter().map(|t| format!("DBABMA~{t}")));
    let sids = prop_oneof![
        6 => proptest::sample::select(vec![2i64, 5, 6, 7, 8, 9, 10, 23]),
        1 => -2i64..70,
    ];
    (
        proptest::option::of(any::<bool>()),
        proptest::option::weighted(0.8, consent_string(tcf.clone())),
        proptest::option::weighted(0.4, usp_string()),
        proptest::option::weighted(0.7, consent_string(gpp)),
        vec(sids, 0..5),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
        // Around the fixtures' dates: some strings fresh, some expired.
        1_700_000_000_000i64..1_760_000_000_000,
    )
        .prop_map(|(gdpr, tcf, usp, gpp, gpp_sid, gpc, coppa, ts_ms)| Case {
            gdpr,
            tcf,
            usp,
            gpp,
            gpp_sid,
            gpc,
            coppa,
            ts_ms,
        })
}

/// What every verdict must hold, whatever the input.
fn check_verdict(v: &Verdict, c: &Case, p: &CompiledPolicy) -> Result<(), TestCaseError> {
    let personalised = v.outcome == Outcome::Personalised;
    let fine = matches!(v.reason, Reason::Consented | Reason::NoRegime);
    prop_assert_eq!(personalised, fine, "{:?}", v);
    if personalised {
        for (name, s) in v.signals.iter() {
            prop_assert!(
                matches!(s, SignalResult::NotApplicable | SignalResult::Allowed),
                "{} is {:?} in a personalised verdict",
                name,
                s
            );
        }
    }
    prop_assert!(!v.precise_geo || personalised);
    // Over the cap, where it applies: invalid, never decoded into a yes.
    let tcf_applies = c.gdpr.unwrap_or(if c.gpp_sid.is_empty() {
        p.gdpr_unknown == crate::policy::GdprUnknown::Applies
    } else {
        c.gpp_sid.contains(&2)
    });
    if tcf_applies && c.tcf.as_ref().is_some_and(|s| s.len() > p.max_string_bytes) {
        prop_assert_eq!(v.signals.tcf, SignalResult::Invalid);
    }
    let gpp_applies = c.gpp_sid.iter().any(|&s| (1..=63).contains(&s));
    if gpp_applies && c.gpp.as_ref().is_some_and(|s| s.len() > p.max_string_bytes) {
        prop_assert_eq!(v.signals.gpp, SignalResult::Invalid);
    }
    // US Privacy is `1` and three of `Y`, `N`, `-`, or invalid.
    if let Some(u) = c.usp.as_ref().filter(|u| !u.is_empty()) {
        let valid = u.len() == 4 && u.starts_with('1') && u[1..].chars().all(|c| "YN-".contains(c));
        prop_assert_eq!(v.signals.usp == SignalResult::Invalid, !valid, "{:?}", u);
    }
    if v.reason == Reason::TcfTooLong {
        prop_assert!(c.tcf.as_ref().is_some_and(|s| s.len() > p.max_string_bytes));
    }
    if v.reason == Reason::GppTooLong {
        prop_assert!(c.gpp.as_ref().is_some_and(|s| s.len() > p.max_string_bytes));
    }
    Ok(())
}

/// How many range entries and bitfield bytes a decoded TCF core holds.
fn tcf_size(t: &TcfCore) -> (usize, usize) {
    let (mut ranges, mut bytes) = (0, 0);
    match &t.vendor_consents {
        VendorSet::Ranges(r) => ranges += r.len(),
        VendorSet::Bitfield { bits, .. } => bytes += bits.len(),
    }
    for (_, _, r) in &t.restrictions {
        ranges += r.len();
    }
    (ranges, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any signals give a verdict, the same from the cache as decoded afresh,
    /// and it fails closed: personalised only when no signal is invalid or
    /// denies, a string over the cap never decoded into a yes.
    #[test]
    fn any_signals_give_a_verdict_that_fails_closed(c in case()) {
        for p in policies() {
            let e = ConsentEvaluator::new(&p);
            let v = e.evaluate(&c.inputs());
            check_verdict(&v, &c, &p)?;
            prop_assert_eq!(e.evaluate(&c.inputs()), v, "from the cache");
            prop_assert_eq!(ConsentEvaluator::new(&p).evaluate(&c.inputs()), v);
            prop_assert!(e.cached_bytes() <= p.cache_bytes);
            let strict = p.no_consent == crate::policy::Fallback::Withheld;
            if strict && v.outcome != Outcome::Personalised {
                prop_assert_eq!(v.outcome, Outcome::Withheld);
            }
        }
    }

    /// The decoders never panic, and what they return never outgrows their
    /// input: a TCF range entry takes at least 17 bits of the string, a
    /// bitfield byte 8; a GPP string yields at most one section per `~`, in
    /// ascending order, only those asked for; US Privacy is four characters.
    #[test]
    fn decoders_keep_to_their_input(
        s in prop_oneof![
            consent_string(fixtures(TCF, "tc_string")),
            consent_string(fixtures(GPP, "gpp_string")),
            usp_string(),
        ],
        wanted in vec(0i64..64, 0..6),
    ) {
        let bits = s.len() * 6;
        if let Ok(t) = decode_core(&s) {
            let (ranges, bytes) = tcf_size(&t);
            prop_assert!(ranges * 17 <= bits, "{} ranges from {} bits", ranges, bits);
            prop_assert!(bytes * 8 <= bits + 8, "{} bitfield bytes from {} bits", bytes, bits);
        }
        let _ = decode_tcf(&s, 755);
        let wanted: SectionSet = wanted.into_iter().collect();
        for set in [SectionSet::ALL, wanted] {
            if let Ok(g) = decode_gpp(&s, 755, set) {
                let ids: Vec<u16> = g.sections.iter().map(|x| x.0).collect();
                prop_assert!(ids.len() <= s.matches('~').count());
                prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "{:?}", ids);
                prop_assert!(ids.iter().all(|&id| set.contains(id)), "{:?}", ids);
            }
        }
        if decode_usp(&s).is_ok() {
            prop_assert_eq!(s.len(), 4, "{:?}", s);
            prop_assert!(s.starts_with('1') && s[1..].chars().all(|c| "YN-".contains(c)), "{:?}", s);
        }
    }
}
