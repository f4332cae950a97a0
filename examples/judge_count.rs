//! The same records and work as `benches/core.rs`, a fixed number of times,
//! for counting rather than timing: run it under `perf stat -e
//! instructions:u` to compare changes on a shared, noisy machine, where
//! instruction counts hold still and wall times do not.
//!
//! ```text
//! cargo build --release --example judge_count
//! perf stat -e instructions:u,cycles:u target/release/examples/judge_count judge 20
//! perf stat -e instructions:u,cycles:u target/release/examples/judge_count sonic 20
//! perf stat -e instructions:u,cycles:u target/release/examples/judge_count setup 20
//! ```
//! `setup` only builds the records and the guard: subtract it from the others.

use fairgate::tools::synth::Synth;
use fairgate::{CompiledPolicy, Guard, Now};

const POLICY: &str = include_str!("../config/policy.toml");
const N: usize = 10_000;
const START_MS: i64 = 1_795_000_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "judge".into());
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut s = Synth::new(42, 500, 5, START_MS);
    let recs: Vec<Vec<u8>> = (0..N).map(|i| s.next(START_MS + i as i64 * 20).1).collect();
    let guard = Guard::new(CompiledPolicy::from_toml(POLICY).expect("the shipped policy"));
    let t0 = std::time::Instant::now();
    let mut out = 0usize;
    for _ in 0..rounds {
        for (i, r) in recs.iter().enumerate() {
            out += match what.as_str() {
                "judge" => guard
                    .judge(None, r, Now::At(START_MS + i as i64 * 20))
                    .payload
                    .len(),
                "sonic" => {
                    let v: sonic_rs::Value = sonic_rs::from_slice(r).expect("json");
                    sonic_rs::to_vec(&v).expect("json").len()
                }
                "setup" => r.len(),
                other => panic!("judge, sonic or setup, not {other}"),
            };
        }
    }
    let per = t0.elapsed().as_secs_f64() * 1e6 / (rounds * N) as f64;
    println!("{what}: {per:.2} µs per decision ({out} bytes out)");
}
