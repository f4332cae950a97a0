//! Memory per campaign: RSS growth while 100,000 campaigns are tracked, beside
//! the computed size of one campaign's window and state.
//! `cargo bench --bench memory`.

use fairgate::fairness::exposure::Window;
use fairgate::{CompiledPolicy, Guard, Now};
use serde_json::json;

const POLICY: &str = include_str!("../config/policy.toml");

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let policy = CompiledPolicy::from_toml(POLICY).unwrap();
    let computed = Window::new(policy.buckets, policy.total_groups).heap_bytes();
    let guard = Guard::new(policy);
    let t0 = 1_795_000_000_000i64;
    let n = 100_000;
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            serde_json::to_vec(
                &json!({"id": "d", "ts": t0, "campaign": {"id": format!("cmp-{i:06}")},
                "regs": {"gdpr": 0}, "audience": {"sex": "female", "age_band": "25-34"}}),
            )
            .unwrap()
        })
        .collect();
    let before = rss_bytes();
    for r in &records {
        guard.judge(None, r, Now::At(t0));
    }
    let after = rss_bytes();
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!("campaigns tracked: {}", guard.tracker().len());
    println!(
        "computed bytes per campaign window (its buckets; without state, id and map overhead): {computed}"
    );
    println!(
        "measured RSS growth per campaign: {per:.0} bytes ({:.1} MiB for {n})",
        (after - before) as f64 / 1048576.0
    );
}
