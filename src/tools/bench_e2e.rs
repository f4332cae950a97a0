//! The product's own pass-through comparison: the same decisions through the
//! same broker, once through fairgate's pipeline with the guard taken out and
//! once through fairgate, in one process, with the settings of a given
//! configuration (the shipped one by default). It shares fairgate's limits,
//! so it shows what the guard costs inside the pipeline, not what the
//! pipeline costs; `scripts/bench-e2e` compares fairgate with an independent
//! rdkafka pass-through (`examples/passthrough.rs`) in separate processes.
//!
//! 1. **Throughput**: `count` decisions are produced to an input topic first;
//!    each pass drains them with its own consumer group. Passes run in the
//!    order pass-through, fairgate, fairgate, pass-through (ABBA), so that
//!    broker warm-up favours neither; each side's figure is its mean.
//! 2. **Latency**: with each pipeline caught up, `latency_count` more
//!    decisions are produced at `latency_rate`/s; a record's latency is its
//!    output timestamp minus its input timestamp (both CreateTime, set by the
//!    producers on this machine). fairgate's added latency is the difference
//!    of the two distributions at p50 and p99.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::core::guard::Guard;
use crate::kafka::pipeline::{
    self, GuardStage, Health, Input, Out, PipelineParts, Produced, Role, Stage,
};
use crate::metrics::Metrics;
use crate::policy::CompiledPolicy;
use crate::tools::loadgen::{self, LoadgenOptions, LoadgenStats};

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub brokers: String,
    pub count: u64,
    pub partitions: i32,
    pub latency_rate: u64,
    pub latency_count: u64,
    pub policy: std::path::PathBuf,
    /// The configuration whose settings every pass uses.
    pub config: std::path::PathBuf,
}

/// One pass.
#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub kind: &'static str,
    pub records: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub decisions: u64,
    pub passes: Vec<Pass>,
    pub pass_through_per_second: f64,
    pub fairgate_per_second: f64,
    pub throughput_ratio: f64,
    pub latency_rate: u64,
    pub latency_records: u64,
    pub pass_through_latency_ms: Percentiles,
    pub fairgate_latency_ms: Percentiles,
    pub added_latency_ms_p50: f64,
    pub added_latency_ms_p99: f64,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub n: usize,
}

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: *v.last().unwrap(),
        n: v.len(),
    }
}

/// The configuration of one pass: `base` (the shipped configuration, by
/// default) with only the brokers, group, topics and HTTP address replaced.
fn config(base: &Config, brokers: &str, input: &str, out: &str, group: &str) -> Config {
    let mut c = base.clone();
    c.kafka.brokers = brokers.to_string();
    c.kafka.group_id = group.to_string();
    c.kafka.topics.input = input.to_string();
    c.kafka.topics.output = out.to_string();
    c.kafka.topics.blocked = format!("{out}.blocked");
    c.kafka.topics.dead_letter = format!("{out}.dlq");
    c.kafka.topics.alerts = format!("{out}.alerts");
    c.http.listen = "127.0.0.1:0".into();
    c
}

/// The baseline: each input to the output topic unchanged, its decision-id
/// header carried over (the latency phase matches records by it).
struct PassThrough;

const DECISION_ID: &str = "fairgate-decision-id";

impl Stage for PassThrough {
    fn process(&self, input: Input) -> Vec<Produced> {
        vec![Produced {
            out: Out {
                role: Role::Output,
                key: input.key,
                headers: input
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k, v.into()))
                    .collect(),
                payload: input.payload,
            },
            event_ts_ms: None,
        }]
    }

    fn policy_version(&self) -> String {
        String::new()
    }

    fn input_headers(&self) -> &'static [&'static str] {
        &[DECISION_ID]
    }
}

/// The two kinds of pass.
const PASS_THROUGH: &str = "pass_through";
const FAIRGATE: &str = "fairgate";

struct Running {
    health: Arc<Health>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<pipeline::RunSummary, pipeline::PipelineError>>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Start a pipeline of `kind` (the guard loaded afresh from `policy`).
fn start(cfg: Config, kind: &str, policy: &std::path::Path) -> anyhow::Result<Running> {
    let health = Arc::new(Health::default());
    let cancel = CancellationToken::new();
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let metrics = Metrics::new(prometheus::Registry::new(), 10);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stage: Arc<dyn Stage> = if kind == FAIRGATE {
        let g = Arc::new(Guard::new(CompiledPolicy::load(policy)?));
        Arc::new(GuardStage::new(g, metrics.clone(), clock.clone(), None))
    } else {
        Arc::new(PassThrough)
    };
    let task = tokio::spawn(pipeline::run(
        PipelineParts {
            config: cfg,
            stage,
            metrics,
            health: health.clone(),
            clock,
            alerts: rx,
            alert_fanout: None,
        },
        cancel.clone(),
    ));
    // No overrides here: the loop treats the closed channel as "no alerts".
    drop(_tx);
    Ok(Running {
        health,
        cancel,
        task,
    })
}

async fn wait_completed(h: &Health, n: u64, limit: Duration) -> bool {
    let start = Instant::now();
    while h.completed.load(Ordering::Relaxed) < n {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn create_topics(brokers: &str, names: &[String], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        if let Err((t, e)) = r {
            anyhow::bail!("creating {t}: {e}");
        }
    }
    Ok(())
}

/// The decision id of a record read back: its header, else its payload's `id`.
fn decision_id(m: &impl Message) -> Option<String> {
    m.headers()
        .and_then(|h| {
            h.iter()
                .find(|x| x.key == DECISION_ID)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .or_else(|| {
            let p = m.payload()?;
            let v: serde_json::Value = serde_json::from_slice(p).ok()?;
            v["id"].as_str().map(str::to_string)
        })
}

/// Read `topic` from the start: decision id → CreateTime (ms).
fn timestamps(brokers: &str, topic: &str, limit: Duration) -> HashMap<String, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-read-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    // Read to the end offsets as they are now: every record counts, those
    // without a decision id too (the malformed ones), so the read ends as
    // soon as the topic is read rather than at the time limit.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    if let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(10)) {
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            if let Ok((_, high)) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                && high > 0
            {
                ends.insert(p.id(), high);
            }
        }
    }
    c.subscribe(&[topic]).expect("subscribe");
    let mut out = HashMap::new();
    let start = Instant::now();
    while start.elapsed() < limit && !ends.is_empty() {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            if let (Some(id), Some(ts)) = (decision_id(&m), m.timestamp().to_millis()) {
                out.insert(id, ts);
            }
            if ends
                .get(&m.partition())
                .is_some_and(|&end| m.offset() + 1 >= end)
            {
                ends.remove(&m.partition());
            }
        }
    }
    out
}

/// This run's topics: one input, and a set of outputs for each kind of pass.
struct BenchTopics {
    input: String,
    pass_through: String,
    fairgate: String,
}

impl BenchTopics {
    fn new(run_id: i64) -> BenchTopics {
        BenchTopics {
            input: format!("bench-{run_id}.in"),
            pass_through: format!("bench-{run_id}.pass"),
            fairgate: format!("bench-{run_id}.guard"),
        }
    }

    fn output(&self, kind: &str) -> &str {
        if kind == FAIRGATE {
            &self.fairgate
        } else {
            &self.pass_through
        }
    }

    fn all(&self) -> Vec<String> {
        let mut names = vec![self.input.clone()];
        for o in [&self.pass_through, &self.fairgate] {
            for suffix in ["", ".blocked", ".dlq", ".alerts"] {
                names.push(format!("{o}{suffix}"));
            }
        }
        names
    }
}

/// Run the benchmark.
pub async fn run(opts: BenchOptions) -> anyhow::Result<Report> {
    let _ = CompiledPolicy::load(&opts.policy)?;
    let base = Config::load(&opts.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", opts.config.display()))?;
    let run_id = SystemClock.now_ms() % 100_000_000;
    let topics = BenchTopics::new(run_id);
    create_topics(&opts.brokers, &topics.all(), opts.partitions).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    eprintln!("producing {} decisions to {}", opts.count, topics.input);
    let lg = LoadgenOptions {
        brokers: opts.brokers.clone(),
        topic: topics.input.clone(),
        rate: 0,
        count: opts.count,
        campaigns: 200,
        skewed: 3,
        malformed_every: 1000,
        seed: 5,
        id_prefix: "dec-".into(),
        extra: BTreeMap::new(),
        pregenerate: false,
    };
    produce(lg.clone(), &clock).await?;
    let (passes, guard, plain) = throughput(&opts, &base, &topics, run_id).await?;
    let paced = LoadgenOptions {
        rate: opts.latency_rate,
        count: opts.latency_count,
        seed: 6,
        id_prefix: "dec-lat-".into(),
        ..lg
    };
    paced_load(&opts, paced, &clock, guard, plain).await?;
    let (pass_through, fairgate) = latencies(&opts, &topics).await?;
    Ok(report(&opts, passes, pass_through, fairgate))
}

async fn produce(lg: LoadgenOptions, clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let stats = Arc::new(LoadgenStats::default());
    loadgen::run(lg, clock.clone(), stats, CancellationToken::new()).await?;
    Ok(())
}

/// The throughput passes, ABBA. Returns them, and one pipeline of each kind
/// still running (caught up) for the latency phase.
async fn throughput(
    opts: &BenchOptions,
    base: &Config,
    topics: &BenchTopics,
    run_id: i64,
) -> anyhow::Result<(Vec<Pass>, Running, Running)> {
    let mut passes = Vec::new();
    let (mut guard, mut plain) = (None, None);
    for (i, kind) in [PASS_THROUGH, FAIRGATE, FAIRGATE, PASS_THROUGH]
        .into_iter()
        .enumerate()
    {
        let group = format!("bench-{run_id}-{i}");
        let cfg = config(
            base,
            &opts.brokers,
            &topics.input,
            topics.output(kind),
            &group,
        );
        let (pass, r) = one_pass(opts, cfg, kind).await?;
        passes.push(pass);
        // Keep one of each running for the latency phase.
        match i {
            1 => guard = Some(r),
            3 => plain = Some(r),
            _ => r.stop().await,
        }
    }
    let both = guard.zip(plain).expect("both kinds ran");
    Ok((passes, both.0, both.1))
}

/// One pass: a pipeline of `kind` drains the `count` decisions.
async fn one_pass(
    opts: &BenchOptions,
    cfg: Config,
    kind: &'static str,
) -> anyhow::Result<(Pass, Running)> {
    let r = start(cfg, kind, &opts.policy)?;
    while !r.health.assigned.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t0 = Instant::now();
    if !wait_completed(&r.health, opts.count, Duration::from_secs(600)).await {
        anyhow::bail!("{kind} pass did not finish in 10 minutes");
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{kind}: {} decisions in {secs:.2}s = {:.0}/s",
        opts.count,
        opts.count as f64 / secs
    );
    let pass = Pass {
        kind,
        records: opts.count,
        seconds: secs,
        per_second: opts.count as f64 / secs,
    };
    Ok((pass, r))
}

/// The latency load through both running pipelines; stops them once caught up.
async fn paced_load(
    opts: &BenchOptions,
    paced: LoadgenOptions,
    clock: &Arc<dyn Clock>,
    guard: Running,
    plain: Running,
) -> anyhow::Result<()> {
    eprintln!(
        "latency: {} decisions at {}/s through both",
        opts.latency_count, opts.latency_rate
    );
    let before = (
        guard.health.completed.load(Ordering::Relaxed),
        plain.health.completed.load(Ordering::Relaxed),
    );
    produce(paced, clock).await?;
    let limit = Duration::from_secs(120);
    wait_completed(&guard.health, before.0 + opts.latency_count, limit).await;
    wait_completed(&plain.health, before.1 + opts.latency_count, limit).await;
    guard.stop().await;
    plain.stop().await;
    Ok(())
}

/// Latency percentiles of the paced records: pass-through, fairgate.
async fn latencies(
    opts: &BenchOptions,
    topics: &BenchTopics,
) -> anyhow::Result<(Percentiles, Percentiles)> {
    let (b, i2, p2, g2) = (
        opts.brokers.clone(),
        topics.input.clone(),
        topics.pass_through.clone(),
        topics.fairgate.clone(),
    );
    let (ins, pass_out, guard_out) = tokio::task::spawn_blocking(move || {
        (
            timestamps(&b, &i2, Duration::from_secs(120)),
            timestamps(&b, &p2, Duration::from_secs(120)),
            timestamps(&b, &g2, Duration::from_secs(120)),
        )
    })
    .await?;
    // Only the paced records count for latency.
    let lat = |out: &HashMap<String, i64>| {
        percentiles(
            out.iter()
                .filter(|(id, _)| id.starts_with("dec-lat-"))
                .filter_map(|(id, t)| Some((t - *ins.get(id)?) as f64))
                .collect(),
        )
    };
    Ok((lat(&pass_out), lat(&guard_out)))
}

fn report(opts: &BenchOptions, passes: Vec<Pass>, lp: Percentiles, lg: Percentiles) -> Report {
    let mean = |k: &str| {
        let v: Vec<f64> = passes
            .iter()
            .filter(|p| p.kind == k)
            .map(|p| p.per_second)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (pt, fg) = (mean(PASS_THROUGH), mean(FAIRGATE));
    Report {
        decisions: opts.count,
        passes,
        pass_through_per_second: pt,
        fairgate_per_second: fg,
        throughput_ratio: fg / pt,
        latency_rate: opts.latency_rate,
        latency_records: opts.latency_count,
        pass_through_latency_ms: lp,
        fairgate_latency_ms: lg,
        added_latency_ms_p50: lg.p50 - lp.p50,
        added_latency_ms_p99: lg.p99 - lp.p99,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_through_copies_the_record_and_its_decision_id() {
        let s = PassThrough;
        assert_eq!(s.input_headers(), &[DECISION_ID]);
        let produced = s.process(Input {
            partition: 2,
            offset: 9,
            key: Some(b"cmp-1".to_vec()),
            payload: b"{\"id\":\"dec-1\"}".to_vec(),
            headers: vec![(DECISION_ID, "dec-1".into())],
        });
        assert_eq!(produced.len(), 1);
        let out = &produced[0].out;
        assert_eq!(out.role, Role::Output);
        assert_eq!(out.key.as_deref(), Some(&b"cmp-1"[..]));
        assert_eq!(out.payload, b"{\"id\":\"dec-1\"}");
        assert_eq!(out.headers, vec![(DECISION_ID, "dec-1".into())]);
    }
}
