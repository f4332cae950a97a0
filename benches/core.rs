//! The guard core over a realistic mix of ~1 KB decisions, beside a bare
//! serde_json parse-and-serialise of the same records (the baseline the core
//! target is defined against) and a bare sonic-rs one (the parser the guard
//! uses: the floor it pays). `cargo bench --bench core`.
//!
//! serde_json runs at its default features: fairgate's own use of it (the
//! HTTP API, alerts, `check`, the generator) needs neither
//! `arbitrary_precision` nor `preserve_order` any more, since the decision
//! path moved to sonic-rs, so they are off for the whole build (Cargo unifies
//! features, so they could not be off for the bench alone). The sonic-rs
//! round trip is the floor `judge` is held against (target: judge ≤ 2×).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fairgate::tools::synth::Synth;
use fairgate::{CompiledPolicy, Guard, Now};

const POLICY: &str = include_str!("../config/policy.toml");
const N: usize = 10_000;
const START_MS: i64 = 1_795_000_000_000;

fn records() -> Vec<Vec<u8>> {
    let mut s = Synth::new(42, 500, 5, START_MS);
    (0..N).map(|i| s.next(START_MS + i as i64 * 20).1).collect()
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let bytes: usize = recs.iter().map(Vec::len).sum();
    eprintln!(
        "{} records, {} bytes on average",
        recs.len(),
        bytes / recs.len()
    );
    let mut g = c.benchmark_group("decisions");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("serde_json_round_trip", N), |b| {
        b.iter(|| {
            let mut out = 0usize;
            for r in &recs {
                let v: serde_json::Value = serde_json::from_slice(r).unwrap();
                out += serde_json::to_vec(&v).unwrap().len();
            }
            out
        })
    });
    g.bench_function(BenchmarkId::new("sonic_rs_round_trip", N), |b| {
        b.iter(|| {
            let mut out = 0usize;
            for r in &recs {
                let v: sonic_rs::Value = sonic_rs::from_slice(r).unwrap();
                out += sonic_rs::to_vec(&v).unwrap().len();
            }
            out
        })
    });
    let guard = Guard::new(CompiledPolicy::from_toml(POLICY).unwrap());
    g.bench_function(BenchmarkId::new("guard_judge", N), |b| {
        b.iter(|| {
            let mut out = 0usize;
            for (i, r) in recs.iter().enumerate() {
                let j = guard.judge(None, r, Now::At(START_MS + i as i64 * 20));
                out += j.payload.len();
            }
            out
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
