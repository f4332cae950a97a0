//! `judge` taken apart on the core bench's records: how long each phase
//! takes, beside the sonic-rs parse and round trip it is held against. Each
//! line is the best of five rounds over the same 10,000 records, in µs per
//! record (the best, because this machine is shared and a round is only
//! ever slowed by the others).
//!
//! ```text
//! cargo run --release --example judge_phases
//! ```
//!
//! `judge_read` alone is timed over records parsed beforehand and kept, so
//! their documents have left the cache by the time each is judged: it is
//! an upper bound. `judge` minus `Decision::parse` is the cost of judging a
//! record just read.

use std::time::Instant;

use fairgate::core::decision::Decision;
use fairgate::core::outline::{self, Scan};
use fairgate::tools::synth::Synth;
use fairgate::{CompiledPolicy, Guard, Now};
use sonic_rs::JsonValueTrait;

const POLICY: &str = include_str!("../config/policy.toml");
const N: usize = 10_000;
const ROUNDS: usize = 5;
const START_MS: i64 = 1_795_000_000_000;

/// The best of [`ROUNDS`] runs of `f` over the records, in µs per record.
fn time(name: &str, mut f: impl FnMut() -> usize) {
    let mut best = f64::MAX;
    let mut keep = 0usize;
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        keep = keep.wrapping_add(std::hint::black_box(f()));
        best = best.min(t0.elapsed().as_secs_f64() * 1e6 / N as f64);
    }
    println!("{name:<22} {best:6.3} µs  ({keep})");
}

fn main() {
    let mut s = Synth::new(42, 500, 5, START_MS);
    let recs: Vec<Vec<u8>> = (0..N).map(|i| s.next(START_MS + i as i64 * 20).1).collect();
    let guard = Guard::new(CompiledPolicy::from_toml(POLICY).expect("the shipped policy"));
    let mut now = START_MS;
    let mut tick = move || {
        now += 2;
        Now::At(now)
    };

    time("sonic-rs parse", || {
        recs.iter()
            .map(|r| {
                let v: sonic_rs::Value = sonic_rs::from_slice(r).expect("json");
                usize::from(v.is_object())
            })
            .sum()
    });
    time("sonic-rs round trip", || {
        recs.iter()
            .map(|r| {
                let v: sonic_rs::Value = sonic_rs::from_slice(r).expect("json");
                sonic_rs::to_vec(&v).expect("json").len()
            })
            .sum()
    });
    time("scan and outline", || {
        recs.iter()
            .map(|r| usize::from(matches!(outline::scan(r), Scan::Unique(_))))
            .sum()
    });
    time("Decision::parse", || {
        recs.iter()
            .map(|r| usize::from(Decision::parse(r).is_ok()))
            .sum()
    });
    let parsed: Vec<_> = recs.iter().map(|r| Decision::parse(r)).collect();
    time("judge_read (cold)", || {
        parsed
            .iter()
            .zip(&recs)
            .map(|(d, r)| guard.judge_read(None, r, d, tick()).payload.len())
            .sum()
    });
    time("judge", || {
        recs.iter()
            .map(|r| guard.judge(None, r, tick()).payload.len())
            .sum()
    });
}
