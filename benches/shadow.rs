//! The shadow policy's cost per decision: the service's guard stage (judge,
//! metrics) over ~1 KB synthetic decisions with shadow off; on with a
//! candidate that adds a required purpose (consent judged again, and the
//! decisions it changes stripped again); and on with a candidate that only
//! tightens a fairness limit (the live verdict and stripped record reused);
//! and on with one that also removes `/ad` (every decision stripped and
//! written again: the most a shadow costs).
//! `cargo bench --bench shadow`. Kafka's own cost per record (consume,
//! produce) is not in these figures.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fairgate::clock::ManualClock;
use fairgate::core::shadow::Shadow;
use fairgate::kafka::pipeline::{GuardStage, Input, Stage};
use fairgate::metrics::Metrics;
use fairgate::tools::synth::Synth;
use fairgate::{CompiledPolicy, Guard};

const POLICY: &str = include_str!("../config/policy.toml");
const N: usize = 10_000;
const START_MS: i64 = 1_795_000_000_000;

/// The guard stage, with a shadow policy made from the shipped one by `edit`.
fn stage(shadow: Option<fn(&str) -> String>) -> GuardStage {
    let policy = CompiledPolicy::from_toml(POLICY).unwrap();
    let s = GuardStage::new(
        Arc::new(Guard::new(policy)),
        Metrics::new(prometheus::Registry::new(), 10),
        Arc::new(ManualClock::new(START_MS + N as i64 * 20)),
        None,
    );
    let Some(edit) = shadow else { return s };
    let candidate = edit(POLICY);
    let sh = Arc::new(Shadow::new());
    sh.set(Some(CompiledPolicy::from_toml(&candidate).unwrap()));
    s.with_shadow(sh)
}

fn bench(c: &mut Criterion) {
    let mut s = Synth::new(42, 500, 5, START_MS);
    let recs: Vec<Vec<u8>> = (0..N).map(|i| s.next(START_MS + i as i64 * 20).1).collect();
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    let purpose: fn(&str) -> String = |p| {
        p.replace(
            "required_purposes = [1, 3, 4]",
            "required_purposes = [1, 2, 3, 4]",
        )
    };
    let limit: fn(&str) -> String =
        |p| p.replace("flag_ratio = 0.8          #", "flag_ratio = 0.82 #");
    let strip: fn(&str) -> String = |p| {
        p.replace(
            "always = [\"/audience\"]",
            "always = [\"/audience\", \"/ad\"]",
        )
    };
    for (name, on) in [
        ("shadow_off", None),
        ("shadow_on", Some(purpose)),
        ("shadow_on_limit", Some(limit)),
        ("shadow_on_strip", Some(strip)),
    ] {
        let st = stage(on);
        g.bench_function(BenchmarkId::new(name, N), |b| {
            b.iter(|| {
                let mut out = 0usize;
                for (i, r) in recs.iter().enumerate() {
                    let p = st.process(Input {
                        partition: 0,
                        offset: i as i64,
                        key: None,
                        payload: r.clone(),
                        headers: Vec::new(),
                    });
                    out += p.len();
                }
                out
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
