//! How the guard scales with the size of its policy: 1,000, 10,000 and
//! 50,000 removal pointers (compile, plan build, judge per record), with
//! the one-walk plan and (one array-index pointer added) without it.
//! `cargo run --release --example policy_scale`

use std::time::Instant;

use fairgate::tools::synth::Synth;
use fairgate::{CompiledPolicy, Guard, Now};

fn main() {
    let base = include_str!("../config/policy.toml");
    let mut s = Synth::new(42, 500, 5, 1_795_000_000_000);
    let recs: Vec<Vec<u8>> = (0..1000)
        .map(|i| s.next(1_795_000_000_000 + i * 20).1)
        .collect();
    for sequential in [false, true] {
        for n in [1_000usize, 10_000, 50_000] {
            let mut list: Vec<String> = (0..n).map(|i| format!("\"/x{i}\"")).collect();
            list.push("\"/audience\"".into());
            if sequential {
                // An array index: the one walk cannot reproduce it.
                list.push("\"/list/0\"".into());
            }
            let text = base.replace(
                "always = [\"/audience\"]",
                &format!("always = [{}]", list.join(", ")),
            );
            let t = Instant::now();
            let p = CompiledPolicy::from_toml(&text).expect("the test policy compiles");
            let compile = t.elapsed();
            let t = Instant::now();
            let g = Guard::new(p);
            let guard = t.elapsed();
            let t = Instant::now();
            for (i, r) in recs.iter().enumerate() {
                g.judge(None, r, Now::At(1_795_000_000_000 + i as i64 * 20));
            }
            let per = t.elapsed() / recs.len() as u32;
            let how = if g.live().plan.is_some() {
                "one walk"
            } else {
                "sequential passes"
            };
            println!(
                "{n} pointers ({how}): compile {compile:?}, guard {guard:?}, judge {per:?} per record"
            );
        }
    }
}
