//! `fairgate demo`: the whole product on one machine with nothing installed.
//!
//! An in-process Kafka-protocol broker (librdkafka's mock cluster), the load
//! generator with one skewed campaign among fair ones, and the service itself
//! (pipeline, HTTP port, status page), with a short live summary every few
//! seconds.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use super::loadgen::{self, LoadgenOptions, LoadgenStats};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::{self, App};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub policy: PathBuf,
    pub http: String,
    pub rate: u64,
    pub campaigns: usize,
    pub skewed: usize,
    /// Stop after this long (None: until Ctrl-C).
    pub duration: Option<Duration>,
    pub summary_every: Duration,
}

const TOPICS: [&str; 7] = [
    "decisions",
    "decisions.guarded",
    "decisions.blocked",
    "decisions.dlq",
    "fairgate.alerts",
    "fairgate.campaigns",
    "fairgate.exposure",
];

/// Run the demo until Ctrl-C or the duration ends.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let mock = MockCluster::new(1)?;
    let brokers = mock.bootstrap_servers();
    // One partition each: librdkafka's mock cluster serves a consumer group
    // only the first partition of a multi-partition topic (seen with 3).
    for t in TOPICS {
        mock.create_topic(t, 1, 1)?;
    }
    let token = std::env::var("FAIRGATE_ADMIN_TOKEN").unwrap_or_else(|_| "demo-token".into());
    let config = Config::from_toml(&service_config(&opts, &brokers, &token))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (app, alerts_rx) = service::build(&config, clock.clone())?;
    let cancel = CancellationToken::new();
    print_banner(&opts, &brokers, &token);

    let load = tokio::spawn({
        let run = loadgen::run(
            load_options(&opts, &brokers),
            clock,
            Arc::new(LoadgenStats::default()),
            cancel.clone(),
        );
        async move {
            if let Err(e) = run.await {
                eprintln!("fairgate demo: the load generator stopped: {e}");
            }
        }
    });
    let summary = tokio::spawn(summarise(app.clone(), opts.summary_every, cancel.clone()));
    if let Some(d) = opts.duration {
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            c.cancel();
        });
    }
    let result = service::serve(config, app, alerts_rx, cancel.clone()).await;
    cancel.cancel();
    let _ = load.await;
    let _ = summary.await;
    drop(mock);
    result
}

/// The demo's state key: random, as no other instance shares its state.
fn demo_key() -> String {
    format!("demo-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The service configuration of the demo: the mock cluster, the shipped policy.
fn service_config(opts: &DemoOptions, brokers: &str, token: &str) -> String {
    format!(
        r#"
policy = "{policy}"
[kafka]
brokers = "{brokers}"
group_id = "fairgate-demo"
[kafka.topics]
input = "decisions"
output = "decisions.guarded"
blocked = "decisions.blocked"
dead_letter = "decisions.dlq"
alerts = "fairgate.alerts"
[kafka.consumer]
"auto.offset.reset" = "earliest"
[pipeline]
max_in_flight = 5000
grace_period_secs = 5
[http]
listen = "{http}"
admin_token = "{token}"
[log]
format = "text"
level = "warn"
[state]
# One demo process: a key of its own, made at start.
key = "{state_key}"
table_refresh_ms = 2000
# The mock cluster cannot describe topic configs (the demo made the topics).
check_topic_configs = false
"#,
        policy = opts.policy.display().to_string().replace('\\', "/"),
        http = opts.http,
        state_key = demo_key(),
    )
}

fn print_banner(opts: &DemoOptions, brokers: &str, token: &str) {
    println!("fairgate demo");
    println!("  broker      in-process mock cluster at {brokers}");
    println!(
        "  load        {} decisions/s over {} campaigns, {} skewed",
        opts.rate, opts.campaigns, opts.skewed
    );
    println!("  status page http://{}/", opts.http);
    println!("  metrics     http://{}/metrics", opts.http);
    println!(
        "  campaigns   http://{}/v1/campaigns?state=flagged",
        opts.http
    );
    println!(
        "  override    curl -X POST -H 'Authorization: Bearer {token}' -d '{{\"action\":\"acknowledge\",\"by\":\"you\",\"reason\":\"looking into it\"}}' http://{}/v1/campaigns/cmp-skewed-01/override",
        opts.http
    );
    println!("  stop        Ctrl-C");
    println!();
}

fn load_options(opts: &DemoOptions, brokers: &str) -> LoadgenOptions {
    LoadgenOptions {
        brokers: brokers.to_string(),
        topic: "decisions".into(),
        rate: opts.rate,
        count: 0,
        campaigns: opts.campaigns,
        skewed: opts.skewed,
        malformed_every: 400,
        seed: 7,
        id_prefix: "dec-".into(),
        extra: Default::default(),
        pregenerate: false,
    }
}

/// Every `every`, one line: throughput, routes, campaign states.
async fn summarise(app: Arc<App>, every: Duration, cancel: CancellationToken) {
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let m = &app.metrics;
        let (out, blocked, dead) = (
            route_total(m, "output"),
            route_total(m, "blocked"),
            route_total(m, "dead_letter"),
        );
        let total = out + blocked + dead;
        let rate = (total - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (total, Instant::now());
        let states = app.guard.store().state_counts();
        let shown = app.guard.store().non_ok(SHOWN);
        let more = (states[1].1 + states[2].1).saturating_sub(shown.len());
        let mut flagged: Vec<String> = shown
            .into_iter()
            .map(|(id, s)| format!("{} ({})", printable(&id), s.as_str()))
            .collect();
        if more > 0 {
            flagged.push(format!("and {more} more"));
        }
        println!(
            "[{:>4}s] {:>6.0} decisions/s | output {} · blocked {} · dead letter {} | campaigns: {} ok, {} flagged, {} blocked | {}",
            start.elapsed().as_secs(),
            rate,
            out,
            blocked,
            dead,
            states[0].1,
            states[1].1,
            states[2].1,
            if flagged.is_empty() {
                "nothing flagged yet".to_string()
            } else {
                format!("flagged: {}", flagged.join(", "))
            }
        );
        let _ = std::io::stdout().flush();
    }
}

/// Flagged or blocked campaigns named on a summary line, at most.
const SHOWN: usize = 5;

/// A campaign id as it can be printed on a terminal: control characters
/// (escape sequences, newlines) escaped, and at most 64 characters.
fn printable(id: &str) -> String {
    let mut out = String::with_capacity(id.len().min(64));
    for (i, c) in id.chars().enumerate() {
        if i == 64 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Decisions sent to `route`, over all reasons (read back from the metrics,
/// as an SRE would).
fn route_total(metrics: &Metrics, route: &str) -> u64 {
    use prometheus::core::Collector;
    metrics
        .decisions
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "route" && l.value() == route)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn campaign_ids_cannot_drive_the_terminal() {
        assert_eq!(printable("cmp-skewed-01"), "cmp-skewed-01");
        assert_eq!(
            printable("\u{1b}[2J\u{1b}[31mred\u{7}\r\nx"),
            "\\u{1b}[2J\\u{1b}[31mred\\u{7}\\r\\nx"
        );
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m", "C1 control (CSI)");
        let long = "é".repeat(100);
        assert_eq!(printable(&long).chars().count(), 65);
        assert!(printable(&long).ends_with('…'));
    }
}
