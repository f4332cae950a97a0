//! Fills an exposure topic as instances would over a full window, to
//! measure how long an owner takes to rebuild the windows (restore):
//!
//!   cargo run --release --example restore_probe -- --brokers B --topic T \
//!       --campaigns 1000 --per-campaign 360 [--window-secs 3600]
//!
//! Writes `per-campaign` deltas for each of `campaigns` campaigns, their
//! timestamps spread evenly over the last `window-secs` (so that the owner's
//! lookup by time finds them all), each counting decisions in the bucket of
//! its time, with the shipped policy's groups. Then start `fairgate run` on
//! the topic and read `fairgate_restore_duration_seconds` or its log line
//! "exposure partition replayed".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use fairgate::fairness::wire::{Delta, encode_delta};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 1000)]
    campaigns: usize,
    #[arg(long, default_value_t = 360)]
    per_campaign: usize,
    #[arg(long, default_value_t = 3600)]
    window_secs: i64,
    /// Groups per bucket (the shipped policy: 2 + 6).
    #[arg(long, default_value_t = 8)]
    groups: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let start = now - a.window_secs * 1000 + 60_000;
    let span = a.window_secs * 1000 - 120_000;
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("linger.ms", "20")
        .create()?;
    let mut n = 0u64;
    for k in 0..a.per_campaign {
        let ts = start + span * k as i64 / a.per_campaign.max(1) as i64;
        for c in 0..a.campaigns {
            let id = format!("cmp-{c:05}");
            let mut cells = vec![[0u32, 0u32]; a.groups];
            for (g, cell) in cells.iter_mut().enumerate() {
                *cell = [5 + (g as u32 % 3), 2];
            }
            let d = Delta {
                campaign: id.clone(),
                category: "default".into(),
                instance: "restore-probe".into(),
                first_ms: ts,
                last_ms: ts,
                groups: a.groups,
                buckets: vec![(ts.div_euclid(60_000), cells)],
            };
            let bytes = encode_delta(&d);
            let mut rec = BaseRecord::to(&a.topic)
                .key(&id)
                .payload(&bytes)
                .timestamp(ts);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
            n += 1;
        }
    }
    p.flush(Duration::from_secs(120))?;
    println!(
        "{n} deltas for {} campaigns over {} s",
        a.campaigns, a.window_secs
    );
    Ok(())
}
