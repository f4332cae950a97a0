//! The `fairgate` command: parses arguments, sets up logging, hands over to the library.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fairgate::clock::SystemClock;
use fairgate::config::{Config, LogFormat};
use fairgate::tools::bench_e2e::BenchOptions;
use fairgate::tools::check;
use fairgate::tools::loadgen::{self, LoadgenOptions, LoadgenStats};
use fairgate::{CompiledPolicy, Guard};
use tokio_util::sync::CancellationToken;

/// mimalloc: records are allocated by the consume loop and freed on judge
/// and producer threads; glibc's allocator spent a fifth of the judge
/// threads' time on that traffic.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fairgate",
    version,
    about = "A streaming guardrail for ad targeting on Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the guard on Kafka: consume, judge, publish.
    Run(RunArgs),
    /// The whole product with nothing installed: in-process broker, load, pipeline, HTTP.
    Demo(DemoArgs),
    /// Produce realistic decisions to a topic at a set rate.
    Loadgen(LoadgenArgs),
    /// Run the guard over a file of JSON-lines decisions, offline.
    Check(CheckArgs),
    /// What a candidate policy would change: recorded decisions judged under both.
    Diff(DiffArgs),
    /// End-to-end benchmark: pass-through vs fairgate through one broker.
    BenchE2e(BenchE2eArgs),
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write synthetic decisions as JSON lines (for trying policies).
    Generate(GenerateArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The service configuration.
    #[arg(long, default_value = "config/fairgate.toml")]
    config: PathBuf,
    /// Only validate the configuration and the policy, then exit.
    #[arg(long)]
    check: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// The policy file.
    #[arg(long, default_value = "config/policy.toml")]
    policy: PathBuf,
    /// HTTP address (status page, metrics, API).
    #[arg(long, default_value = "127.0.0.1:9464")]
    http: String,
    /// Decisions per second.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Campaigns.
    #[arg(long, default_value_t = 12)]
    campaigns: usize,
    /// Skewed campaigns among them.
    #[arg(long, default_value_t = 1)]
    skewed: usize,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Seconds between summary lines.
    #[arg(long, default_value_t = 5)]
    summary_secs: u64,
}

#[derive(Args)]
struct LoadgenArgs {
    /// bootstrap.servers
    #[arg(long)]
    brokers: String,
    /// Topic to produce to.
    #[arg(long, default_value = "decisions")]
    topic: String,
    /// Decisions per second (0: as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How many decisions (0: until Ctrl-C).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Campaigns.
    #[arg(long, default_value_t = 20)]
    campaigns: usize,
    /// Skewed campaigns among them.
    #[arg(long, default_value_t = 1)]
    skewed: usize,
    /// One in this many is malformed (0: none).
    #[arg(long, default_value_t = 0)]
    malformed_every: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of the decision ids (a run told apart from an earlier one on the same topic).
    #[arg(long, default_value = "dec-")]
    id_prefix: String,
    /// Make every decision before sending the first (memory: ~1.2 KB each),
    /// so a paced run can reach rates that making them as it goes cannot.
    /// Needs a --count.
    #[arg(long)]
    pregenerate: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// The policy file.
    #[arg(long)]
    policy: PathBuf,
    /// Input file of JSON lines, or `-` for standard input.
    #[arg(long, default_value = "-")]
    input: String,
    /// Write alert events here, as JSON lines.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Write a per-campaign report here, as one JSON document.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Judge as if the clock read this (epoch ms); default: event time.
    #[arg(long)]
    now_ms: Option<i64>,
}

#[derive(Args)]
struct DiffArgs {
    /// The policy in force.
    #[arg(long)]
    policy: PathBuf,
    /// The candidate policy.
    #[arg(long)]
    candidate: PathBuf,
    /// Input file of JSON lines, or `-` for standard input (the default
    /// unless `--topic` is given).
    #[arg(long, conflicts_with = "topic")]
    input: Option<String>,
    /// Read the decisions from this topic instead, within `--from`..`--to`.
    #[arg(long, requires_all = ["brokers", "from", "to"])]
    topic: Option<String>,
    /// bootstrap.servers of the topic's cluster.
    #[arg(long, requires = "topic")]
    brokers: Option<String>,
    /// Start of the range: epoch milliseconds or RFC 3339 (`2026-11-23T10:00:00Z`);
    /// each partition from its first record with a timestamp at or after it.
    #[arg(long, requires = "topic")]
    from: Option<String>,
    /// End of the range, excluded: epoch milliseconds or RFC 3339; each
    /// partition up to its first record at or after it, or its end when the read began.
    #[arg(long, requires = "topic")]
    to: Option<String>,
    /// Seconds to wait for the brokers (metadata, offsets, and any stretch without a record).
    #[arg(long, default_value_t = 30, requires = "topic")]
    timeout_secs: u64,
    /// A librdkafka setting for the topic's consumer, `KEY=VALUE` (TLS, SASL; repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", requires = "topic")]
    kafka: Vec<String>,
    /// Judge as if the clock read this (epoch ms); default: event time.
    #[arg(long)]
    now_ms: Option<i64>,
    /// Write the report as one JSON document here (default: standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Example decision ids kept per kind of change.
    #[arg(long, default_value_t = 10)]
    examples: usize,
}

#[derive(Args)]
struct BenchE2eArgs {
    /// bootstrap.servers
    #[arg(long)]
    brokers: String,
    /// Decisions for the throughput passes.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Partitions of the benchmark topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Paced rate of the latency phase (decisions/s).
    #[arg(long, default_value_t = 2_000)]
    latency_rate: u64,
    /// Decisions in the latency phase.
    #[arg(long, default_value_t = 20_000)]
    latency_count: u64,
    /// The policy file.
    #[arg(long, default_value = "config/policy.toml")]
    policy: PathBuf,
    /// The configuration whose settings (pipeline, librdkafka) every pass
    /// uses; only brokers, group, topics and the HTTP address are replaced.
    #[arg(long, default_value = "config/fairgate.toml")]
    config: PathBuf,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct GenerateArgs {
    /// How many decisions.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// How many campaigns.
    #[arg(long, default_value_t = 20)]
    campaigns: usize,
    /// How many of them are skewed.
    #[arg(long, default_value_t = 1)]
    skewed: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timestamp of the first decision (epoch ms).
    #[arg(long, default_value_t = 1_795_000_000_000)]
    start_ms: i64,
    /// Milliseconds between decisions.
    #[arg(long, default_value_t = 50)]
    step_ms: i64,
    /// One in this many is malformed (0: none).
    #[arg(long, default_value_t = 0)]
    malformed_every: u64,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file; lists every problem found.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    // A panic on a judge thread is caught and its record dead-lettered; its
    // message could quote the record, so only the place is reported.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        if thread
            .name()
            .is_some_and(|n| n.starts_with("fairgate-judge"))
        {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::error!(target: "fairgate::kafka", thread = thread.name(), at, "panic while judging a record (message withheld: it may quote the record)");
        } else {
            default_hook(info);
        }
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fairgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(a) => run_service(a.config, a.check),
        Command::Demo(a) => demo(a),
        Command::BenchE2e(a) => bench_e2e(
            BenchOptions {
                brokers: a.brokers,
                count: a.count,
                partitions: a.partitions,
                latency_rate: a.latency_rate,
                latency_count: a.latency_count,
                policy: a.policy,
                config: a.config,
            },
            a.json,
        ),
        Command::Loadgen(a) => loadgen(LoadgenOptions {
            brokers: a.brokers,
            topic: a.topic,
            rate: a.rate,
            count: a.count,
            campaigns: a.campaigns,
            skewed: a.skewed,
            malformed_every: a.malformed_every,
            seed: a.seed,
            id_prefix: a.id_prefix,
            extra: Default::default(),
            pregenerate: a.pregenerate,
        }),
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => policy_check(&file),
        Command::Check(a) => check(
            &a.policy,
            &a.input,
            a.alerts.as_deref(),
            a.report.as_deref(),
            a.now_ms,
        ),
        Command::Diff(a) => diff(a),
        Command::Generate(a) => generate(a),
    }
}

/// `fairgate demo`: the whole product on librdkafka's mock cluster.
fn demo(a: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text, "warn");
    runtime()?.block_on(fairgate::tools::demo::run(
        fairgate::tools::demo::DemoOptions {
            policy: a.policy,
            http: a.http,
            rate: a.rate,
            campaigns: a.campaigns,
            skewed: a.skewed,
            duration: a.duration_secs.map(Duration::from_secs),
            summary_every: Duration::from_secs(a.summary_secs.max(1)),
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `fairgate generate`: synthetic decisions as JSON lines on stdout.
fn generate(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    let mut s = fairgate::tools::synth::Synth::new(a.seed, a.campaigns, a.skewed, a.start_ms);
    s.malformed_every = a.malformed_every;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for i in 0..a.count {
        let (_, bytes) = s.next(a.start_ms + i as i64 * a.step_ms);
        out.write_all(&bytes)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `fairgate run`: load and check the configuration and the policy (every
/// problem listed), then serve until a signal.
fn run_service(config: PathBuf, check: bool) -> anyhow::Result<ExitCode> {
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fairgate: {}: {e}", config.display());
            return Ok(ExitCode::from(2));
        }
    };
    let policy = match CompiledPolicy::load(&cfg.policy) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fairgate: {}: {e}", cfg.policy.display());
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(shadow) = cfg.shadow_policy.as_ref().filter(|p| p.exists())
        && let Err(e) = CompiledPolicy::load(shadow)
    {
        eprintln!("fairgate: shadow_policy {}: {e}", shadow.display());
        return Ok(ExitCode::from(2));
    }
    if check {
        if cfg.state.shared
            && let Err(problem) = cfg.state_key_or_problem()
        {
            eprintln!("fairgate: {}: {problem}", config.display());
            return Ok(ExitCode::from(2));
        }
        println!(
            "{}: ok — input {} → output {}, policy {} ({})",
            config.display(),
            cfg.kafka.topics.input,
            cfg.kafka.topics.output,
            policy.version,
            cfg.policy.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(cfg.log.format, &cfg.log.level);
    let cancel = CancellationToken::new();
    runtime()?.block_on(fairgate::service::run(cfg, Arc::new(SystemClock), cancel))?;
    Ok(ExitCode::SUCCESS)
}

/// `fairgate bench-e2e`: print the figures, and write them as JSON if asked.
fn bench_e2e(opts: BenchOptions, json: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text, "warn");
    let r = runtime()?.block_on(fairgate::tools::bench_e2e::run(opts))?;
    println!(
        "pass-through {:.0}/s, fairgate {:.0}/s, ratio {:.3}",
        r.pass_through_per_second, r.fairgate_per_second, r.throughput_ratio
    );
    println!(
        "latency at {}/s: pass-through p50 {:.1} ms p99 {:.1} ms; fairgate p50 {:.1} ms p99 {:.1} ms; added p50 {:+.1} ms, p99 {:+.1} ms",
        r.latency_rate,
        r.pass_through_latency_ms.p50,
        r.pass_through_latency_ms.p99,
        r.fairgate_latency_ms.p50,
        r.fairgate_latency_ms.p99,
        r.added_latency_ms_p50,
        r.added_latency_ms_p99
    );
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&r)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `fairgate loadgen`: produce until the count is reached or Ctrl-C.
fn loadgen(opts: LoadgenOptions) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text, "warn");
    if opts.pregenerate && opts.count == 0 {
        anyhow::bail!(
            "--pregenerate needs a --count (every decision is made before the first is sent)"
        );
    }
    let stats = Arc::new(LoadgenStats::default());
    let cancel = CancellationToken::new();
    let start = std::time::Instant::now();
    runtime()?.block_on(async {
        let c = cancel.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            c.cancel();
        });
        loadgen::run(opts, Arc::new(SystemClock), stats.clone(), cancel).await
    })?;
    let ms = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
    eprintln!(
        "fairgate loadgen: {} sent, {} acknowledged, {} failed in {:.1}s (made beforehand in {:.3}s; sent in {:.3}s)",
        stats.sent.load(Ordering::Relaxed),
        stats.acked.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        ms(&stats.generating_ms),
        ms(&stats.sending_ms),
    );
    Ok(ExitCode::SUCCESS)
}

/// `fairgate policy check`: exit 0 when valid, 1 with every problem listed.
fn policy_check(file: &Path) -> anyhow::Result<ExitCode> {
    match CompiledPolicy::load(file) {
        Ok(p) => {
            println!(
                "{}: ok — policy {} ({} mode), {} dimension(s), {} pointer(s) stripped",
                file.display(),
                p.version,
                p.mode.as_str(),
                p.dimensions.len(),
                p.always.len() + p.unless_personalised.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// `fairgate check`: the guard over JSON lines, judged lines on stdout.
fn check(
    policy: &Path,
    input: &str,
    alerts: Option<&Path>,
    report: Option<&Path>,
    now_ms: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let p = CompiledPolicy::load(policy).with_context(|| format!("policy {}", policy.display()))?;
    let guard = Guard::new(p);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut alert_file = match alerts {
        Some(path) => Some(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let alert_sink = alert_file.as_mut().map(|w| w as &mut dyn Write);
    let totals = if input == "-" {
        check::run(
            &guard,
            std::io::stdin().lock(),
            &mut out,
            alert_sink,
            now_ms,
        )?
    } else {
        let f = File::open(input).with_context(|| format!("opening {input}"))?;
        check::run(&guard, BufReader::new(f), &mut out, alert_sink, now_ms)?
    };
    if let Some(mut w) = alert_file {
        w.flush()?;
    }
    eprintln!(
        "fairgate check: {} lines: {} output, {} blocked, {} dead letter; {} alerts; {} late, {} early",
        totals.lines,
        totals.output,
        totals.blocked,
        totals.dead_letter,
        totals.alerts,
        totals.late,
        totals.early
    );
    if let Some(path) = report {
        let doc = check::report(&guard, totals);
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer_pretty(BufWriter::new(f), &doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The topic and range of `fairgate diff --topic`, or what is wrong with the arguments.
fn topic_range(a: &DiffArgs, topic: &str) -> Result<fairgate::tools::topic::TopicRange, String> {
    use fairgate::tools::topic::parse_time;
    let time = |name: &str, v: &Option<String>| {
        parse_time(v.as_deref().unwrap_or_default()).map_err(|e| format!("--{name}: {e}"))
    };
    let settings = a
        .kafka
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("-X {kv:?}: expected KEY=VALUE")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if a.timeout_secs == 0 {
        return Err("--timeout-secs: must be at least 1".into());
    }
    Ok(fairgate::tools::topic::TopicRange {
        brokers: a.brokers.clone().unwrap_or_default(),
        topic: topic.to_string(),
        from_ms: time("from", &a.from)?,
        to_ms: time("to", &a.to)?,
        timeout: Duration::from_secs(a.timeout_secs),
        buffer: 1024,
        settings,
    })
}

/// The diff report over the input `--input` or `--topic` names; `Err`
/// with the exit code when the topic arguments or the topic are wrong (said
/// on stderr).
fn diff_report(
    a: &DiffArgs,
    current: &Guard,
    candidate: &Guard,
) -> anyhow::Result<Result<fairgate::tools::diff::DiffReport, ExitCode>> {
    let report = match (&a.topic, a.input.as_deref()) {
        (Some(topic), _) => {
            let range = match topic_range(a, topic) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("fairgate diff: {e}");
                    return Ok(Err(ExitCode::from(2)));
                }
            };
            let reader = match range.open() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("fairgate diff: {e}");
                    return Ok(Err(ExitCode::from(1)));
                }
            };
            fairgate::tools::diff::run_lines(current, candidate, reader, a.now_ms, a.examples)
                .with_context(|| format!("reading topic {topic:?}"))?
        }
        (None, None | Some("-")) => fairgate::tools::diff::run(
            current,
            candidate,
            std::io::stdin().lock(),
            a.now_ms,
            a.examples,
        )?,
        (None, Some(path)) => {
            let f = File::open(path).with_context(|| format!("opening {path}"))?;
            fairgate::tools::diff::run(
                current,
                candidate,
                BufReader::with_capacity(1 << 20, f),
                a.now_ms,
                a.examples,
            )?
        }
    };
    Ok(Ok(report))
}

/// `fairgate diff`: both policies loaded (every problem of each listed,
/// exit 2), every line judged under both, the report written.
fn diff(a: DiffArgs) -> anyhow::Result<ExitCode> {
    let (current, candidate) = (
        CompiledPolicy::load(&a.policy),
        CompiledPolicy::load(&a.candidate),
    );
    let (current, candidate) = match (current, candidate) {
        (Ok(c), Ok(n)) => (c, n),
        (c, n) => {
            if let Err(e) = c {
                eprintln!("fairgate diff: policy {}: {e}", a.policy.display());
            }
            if let Err(e) = n {
                eprintln!("fairgate diff: candidate {}: {e}", a.candidate.display());
            }
            return Ok(ExitCode::from(2));
        }
    };
    let (current, candidate) = (Guard::new(current), Guard::new(candidate));
    let report = match diff_report(&a, &current, &candidate)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let json = fairgate::tools::diff::to_json(&report);
    match &a.json {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(&json)?,
    }
    if let Some(path) = &a.html {
        std::fs::write(path, fairgate::tools::diff::to_html(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let t = &report.totals;
    eprintln!(
        "fairgate diff: {} lines: {} changed, {} published differently; output {} → {} ({:+}), \
         blocked {} → {}, dead letter {} / {}; {} campaign(s) flip",
        t.lines,
        t.changed,
        t.published_differs,
        t.output.current,
        t.output.candidate,
        t.output.difference,
        t.blocked.current,
        t.blocked.candidate,
        t.dead_letter.current,
        t.dead_letter.candidate,
        t.flips
    );
    Ok(ExitCode::SUCCESS)
}
