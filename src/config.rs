//! The service configuration (`config/fairgate.toml`): Kafka, topics, delivery,
//! HTTP, logging. Strict (`deny_unknown_fields`), units in names, and every
//! problem reported at once before the process connects to anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path of the policy file (relative paths are relative to this config file).
    pub policy: PathBuf,
    /// Path of the shadow policy file (relative as `policy`): while this file
    /// exists, every decision is judged under it as well and what it would
    /// change is counted (`fairgate_shadow_*`); nothing it decides is
    /// published. Read with every policy reload: creating or removing the
    /// file turns shadow on or off without a restart.
    pub shadow_policy: Option<PathBuf>,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub state: StateConfig,
}

/// `[state]`: campaign state on Kafka (the campaign table and the exposure
/// topic), the same on every instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Keep campaign state on Kafka (true, the default) or in this
    /// instance's memory only (false: one instance, keyed by campaign).
    #[serde(default = "d_true")]
    pub shared: bool,
    /// The consumer group of the campaigns' owners (default: `<group_id>.owners`).
    pub owner_group_id: Option<String>,
    /// The key table rows and override commands are signed with (at least
    /// 16 bytes), else read from the variable named by `key_env`.
    pub key: Option<String>,
    #[serde(default = "d_state_key_env")]
    pub key_env: String,
    /// A campaign's row is written again at least this often while it
    /// receives decisions (and at once on a change of state or override).
    #[serde(default = "d_table_refresh_ms")]
    pub table_refresh_ms: u64,
    /// How often owners judge what the deltas changed.
    #[serde(default = "d_judge_interval_ms")]
    pub judge_interval_ms: u64,
    /// Check at start that the campaign table is compacted and the exposure
    /// topic keeps a window (DescribeConfigs). Off only for a broker that
    /// cannot describe configs (the demo's in-process mock cluster), where
    /// the check would wait for its timeout and then be skipped anyway.
    #[serde(default = "d_true")]
    pub check_topic_configs: bool,
}

fn d_state_key_env() -> String {
    "FAIRGATE_STATE_KEY".into()
}
fn d_table_refresh_ms() -> u64 {
    30_000
}
fn d_judge_interval_ms() -> u64 {
    250
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            shared: true,
            owner_group_id: None,
            key: None,
            key_env: d_state_key_env(),
            table_refresh_ms: d_table_refresh_ms(),
            judge_interval_ms: d_judge_interval_ms(),
            check_topic_configs: true,
        }
    }
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group id; instances with the same id share the input partitions.
    pub group_id: String,
    pub topics: Topics,
    /// librdkafka settings for both clients (TLS, SASL, client.id, ...), passed through as is.
    #[serde(default)]
    pub common: BTreeMap<String, String>,
    /// librdkafka settings for the consumer only.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka settings for the producer only.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

/// `[kafka.topics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    pub input: String,
    pub output: String,
    pub blocked: String,
    pub dead_letter: String,
    pub alerts: String,
    /// The campaign table (compacted), keyed by campaign id.
    #[serde(default = "d_campaigns_topic")]
    pub campaigns: String,
    /// Count deltas and override commands, keyed by campaign id; retained
    /// at least as long as the policy's window.
    #[serde(default = "d_exposure_topic")]
    pub exposure: String,
    /// Optional: a sample of the decisions the shadow policy would change
    /// (ids and kinds of change only, at most `pipeline.shadow_sample_per_sec`
    /// a second), keyed by campaign id. Unset: no sample.
    #[serde(default)]
    pub shadow: Option<String>,
}

fn d_campaigns_topic() -> String {
    "fairgate.campaigns".into()
}
fn d_exposure_topic() -> String {
    "fairgate.exposure".into()
}

/// Delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Offsets committed only after every produced record is acknowledged.
    #[default]
    AtLeastOnce,
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Delivery guarantee (`at_least_once`).
    #[serde(default)]
    pub delivery: Delivery,
    /// Input records consumed but not yet committed, at most: bounds the
    /// duplicates a crash can cause (everything uncommitted is read again).
    #[serde(default = "d_max_in_flight")]
    pub max_in_flight: usize,
    /// Bytes of input records consumed but not yet acknowledged, at most:
    /// bounds the memory the pipeline holds (payloads are let go at
    /// acknowledgement; what waits for a commit is an offset).
    #[serde(default = "d_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// Threads that judge records, each owning a share of the partitions (a
    /// partition's records are judged in order by one thread). Unset: one per CPU.
    #[serde(default)]
    pub workers: Option<usize>,
    /// How often acknowledged offsets are committed, in milliseconds.
    #[serde(default = "d_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// On SIGTERM/SIGINT: time allowed to flush and commit before exiting, in seconds.
    #[serde(default = "d_grace_period_secs")]
    pub grace_period_secs: u64,
    /// Per-campaign metric series are exported for at most this many flagged or blocked campaigns.
    #[serde(default = "d_campaign_series_cap")]
    pub campaign_series_cap: usize,
    /// Watch the policy file and reload it on change (debounced).
    #[serde(default = "d_true")]
    pub watch_policy: bool,
    /// The pipeline is stalled (not ready, `fairgate_pipeline_stalled` 1)
    /// when it has consumed and completed nothing for this long while
    /// records wait, in seconds.
    #[serde(default = "d_stall_after_secs")]
    pub stall_after_secs: u64,
    /// Count deltas are published at least this often (and sooner when a
    /// quarter of `max_in_flight` records wait on them); an input offset is
    /// committed only after the deltas that count it are acknowledged.
    #[serde(default = "d_exposure_flush_ms")]
    pub exposure_flush_ms: u64,
    /// Shadow sample records (`kafka.topics.shadow`) published per second,
    /// at most (also the largest burst); the rest are dropped and counted.
    #[serde(default = "d_shadow_sample_per_sec")]
    pub shadow_sample_per_sec: u32,
}

fn d_shadow_sample_per_sec() -> u32 {
    100
}

fn d_exposure_flush_ms() -> u64 {
    1_000
}

fn d_stall_after_secs() -> u64 {
    15
}

/// Enough that the bound never sets the throughput: places come back at
/// each commit (every `commit_interval_ms`), so throughput is at most
/// `max_in_flight` / (commit interval + commit round trip), here over
/// 200,000/s even at a 150 ms cycle.
fn d_max_in_flight() -> usize {
    50_000
}

fn d_max_in_flight_bytes() -> usize {
    64 << 20
}
fn d_commit_interval_ms() -> u64 {
    100
}
fn d_grace_period_secs() -> u64 {
    20
}
fn d_campaign_series_cap() -> usize {
    50
}
fn d_true() -> bool {
    true
}

impl PipelineConfig {
    /// Judge threads to run: as configured, else one per CPU.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            delivery: Delivery::AtLeastOnce,
            max_in_flight: d_max_in_flight(),
            max_in_flight_bytes: d_max_in_flight_bytes(),
            workers: None,
            commit_interval_ms: d_commit_interval_ms(),
            grace_period_secs: d_grace_period_secs(),
            campaign_series_cap: d_campaign_series_cap(),
            watch_policy: true,
            stall_after_secs: d_stall_after_secs(),
            exposure_flush_ms: d_exposure_flush_ms(),
            shadow_sample_per_sec: d_shadow_sample_per_sec(),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP port (metrics, health, API, status page).
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Bearer token for mutating calls. Prefer `admin_token_env`.
    pub admin_token: Option<String>,
    /// Environment variable holding the bearer token.
    #[serde(default = "d_token_env")]
    pub admin_token_env: String,
}

fn d_listen() -> String {
    "0.0.0.0:9464".into()
}
fn d_token_env() -> String {
    "FAIRGATE_ADMIN_TOKEN".into()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: d_listen(),
            admin_token: None,
            admin_token_env: d_token_env(),
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (one object per line) or `text`.
    #[serde(default)]
    pub format: LogFormat,
    /// Filter, e.g. `info` or `fairgate=debug,rdkafka=warn` (overridden by RUST_LOG).
    #[serde(default = "d_level")]
    pub level: String,
}

fn d_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            level: d_level(),
        }
    }
}

/// `[alerts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Optional webhook: every alert event is POSTed here as JSON.
    pub webhook_url: Option<String>,
    /// Attempts per alert before it is counted as failed.
    #[serde(default = "d_attempts")]
    pub webhook_max_attempts: u32,
    /// Timeout of one webhook attempt, in milliseconds.
    #[serde(default = "d_webhook_timeout_ms")]
    pub webhook_timeout_ms: u64,
    /// Alerts waiting for the webhook, at most (beyond: dropped and counted).
    #[serde(default = "d_webhook_queue")]
    pub webhook_queue: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url: None,
            webhook_max_attempts: d_attempts(),
            webhook_timeout_ms: d_webhook_timeout_ms(),
            webhook_queue: d_webhook_queue(),
        }
    }
}

fn d_attempts() -> u32 {
    5
}
fn d_webhook_timeout_ms() -> u64 {
    2_000
}
fn d_webhook_queue() -> usize {
    1_000
}

/// A config that cannot be used, with every problem.
#[derive(Debug, thiserror::Error)]
#[error("configuration is invalid ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<String>);

const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "transactional.id",
];

impl Config {
    /// Read and validate; relative policy path resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
        let mut c = Self::from_toml(&text)?;
        if c.policy.is_relative()
            && let Some(dir) = path.parent()
        {
            c.policy = dir.join(&c.policy);
        }
        if let Some(shadow) = &c.shadow_policy
            && shadow.is_relative()
            && let Some(dir) = path.parent()
        {
            c.shadow_policy = Some(dir.join(shadow));
        }
        Ok(c)
    }

    /// Parse and validate config text, listing every problem found.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let (c, mut problems) = parse(text)?;
        problems.extend(c.problems());
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(ConfigError(problems))
        }
    }

    /// Every problem of a parsed config, section by section, in file order.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        check_topics(&self.kafka.topics, &mut problems);
        check_kafka(&self.kafka, &mut problems);
        check_pipeline(&self.pipeline, &mut problems);
        check_http(&self.http, &mut problems);
        check_alerts(&self.alerts, &mut problems);
        check_log(&self.log, &mut problems);
        check_state(self, &mut problems);
        problems
    }

    /// The state key: the config value, else the environment variable.
    pub fn state_key(&self) -> Option<String> {
        self.state
            .key
            .clone()
            .or_else(|| std::env::var(&self.state.key_env).ok())
            .filter(|t| !t.is_empty())
    }

    /// The state key, or the problem with it: shared state needs one of at
    /// least 16 bytes, the same on every instance, or no instance could
    /// trust another's rows.
    pub fn state_key_or_problem(&self) -> Result<String, String> {
        match self.state_key() {
            Some(k) if k.len() >= crate::fairness::wire::MIN_KEY_BYTES => Ok(k),
            Some(k) => Err(format!(
                "state.key (or the variable {}): must be at least {} bytes, got {}",
                self.state.key_env,
                crate::fairness::wire::MIN_KEY_BYTES,
                k.len()
            )),
            None => Err(format!(
                "state.key: shared state (state.shared = true) needs a key of at least {} bytes, the same on every instance: set the variable {} or state.key",
                crate::fairness::wire::MIN_KEY_BYTES,
                self.state.key_env
            )),
        }
    }

    /// The owners' consumer group.
    pub fn owner_group(&self) -> String {
        self.state
            .owner_group_id
            .clone()
            .unwrap_or_else(|| format!("{}.owners", self.kafka.group_id))
    }

    /// The admin token: the config value, else the environment variable.
    pub fn admin_token(&self) -> Option<String> {
        self.http
            .admin_token
            .clone()
            .or_else(|| std::env::var(&self.http.admin_token_env).ok())
            .filter(|t| !t.is_empty())
    }
}

/// Shape problems listed at most (each costs one more read of the file).
const MAX_SHAPE_PROBLEMS: usize = 32;

/// TOML syntax and shape (types, `deny_unknown_fields`), each problem with
/// its line. A syntax error ends the reading (nothing after it can be read
/// reliably); a shape error does not: its lines are blanked and the file
/// read again, up to [`MAX_SHAPE_PROBLEMS`] times, so that every wrong
/// setting is named at once, and the range checks still run on the others
/// (a setting blanked takes its default there, and is not named twice).
/// The config returned comes with the shape problems found: usable for the
/// range checks only when there are none.
fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    // Syntax alone (numbers are kept as text here, so a `u64` past `i64` is
    // not a syntax error; it is one of shape, or of range, below).
    if let Err(e) = toml::de::DeTable::parse(text) {
        return Err(ConfigError(vec![located(text, e.span(), e.message())]));
    }
    let mut problems = Vec::new();
    let mut current = text.to_string();
    let mut blanked: Vec<String> = Vec::new();
    for _ in 0..MAX_SHAPE_PROBLEMS {
        let e = match toml::from_str::<Config>(&current) {
            Ok(c) => return Ok((c, problems)),
            Err(e) => e,
        };
        let message = e.message().trim();
        // A required setting blanked for an earlier problem: named already.
        if blanked
            .iter()
            .any(|k| message == format!("missing field `{k}`"))
        {
            break;
        }
        problems.push(located(&current, e.span(), message));
        match e.span().and_then(|span| blank(&current, span)) {
            Some((next, key)) if toml::de::DeTable::parse(&next).is_ok() => {
                current = next;
                blanked.push(key);
            }
            _ => break,
        }
    }
    Err(ConfigError(problems))
}

/// `message`, preceded by the line of `span` in `text`.
fn located(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    let place = span
        .map(|s| {
            format!(
                "line {}: ",
                text[..s.start.min(text.len())].matches('\n').count() + 1
            )
        })
        .unwrap_or_default();
    format!("{place}{}", message.trim())
}

/// `text` with the whole lines of `span` blanked (spaces, so that every
/// later line keeps its number), and the key those lines set; `None` when
/// they are not `key = value` lines (a table header: blanking it would move
/// its settings to another table).
fn blank(text: &str, span: std::ops::Range<usize>) -> Option<(String, String)> {
    let start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text
        .get(span.end..)?
        .find('\n')
        .map_or(text.len(), |i| span.end + i);
    let first = text[start..].lines().next()?.trim_start();
    let (key, _) = first.split_once('=')?;
    if first.starts_with('[') || first.starts_with('#') || start >= end {
        return None;
    }
    let key = key
        .trim()
        .rsplit('.')
        .next()?
        .trim()
        .trim_matches('"')
        .to_string();
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.extend(
        text[start..end]
            .chars()
            .map(|c| if c == '\n' { c } else { ' ' }),
    );
    out.push_str(&text[end..]);
    Some((out, key))
}

/// `[kafka.topics]`: valid Kafka topic names, no two the same.
fn check_topics(t: &Topics, problems: &mut Vec<String>) {
    let names = [
        ("kafka.topics.input", &t.input),
        ("kafka.topics.output", &t.output),
        ("kafka.topics.blocked", &t.blocked),
        ("kafka.topics.dead_letter", &t.dead_letter),
        ("kafka.topics.alerts", &t.alerts),
        ("kafka.topics.campaigns", &t.campaigns),
        ("kafka.topics.exposure", &t.exposure),
    ];
    let names: Vec<(&str, &String)> = names
        .into_iter()
        .chain(t.shadow.as_ref().map(|s| ("kafka.topics.shadow", s)))
        .collect();
    for (i, (field, name)) in names.iter().enumerate() {
        if name.is_empty()
            || name.len() > 249
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        {
            problems.push(format!(
                "{field}: {name:?} is not a valid topic name (letters, digits, '.', '_', '-'; 1..249)"
            ));
        }
        if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
            problems.push(format!("{field}: same topic as {other} ({name:?})"));
        }
    }
}

/// `[kafka]`: brokers and group set, and no setting fairgate manages itself.
fn check_kafka(k: &KafkaConfig, problems: &mut Vec<String>) {
    if k.brokers.trim().is_empty() {
        problems.push("kafka.brokers: must list at least one host:port".into());
    }
    if k.group_id.trim().is_empty() {
        problems.push("kafka.group_id: must not be empty".into());
    }
    for (section, map) in [
        ("kafka.common", &k.common),
        ("kafka.consumer", &k.consumer),
        ("kafka.producer", &k.producer),
    ] {
        for key in map.keys() {
            if MANAGED.contains(&key.as_str()) {
                problems.push(format!(
                    "{section}.\"{key}\": set by fairgate itself (delivery guarantees depend on it); use kafka.brokers / kafka.group_id"
                ));
            }
        }
    }
}

/// `[pipeline]`: bounds of each setting.
fn check_pipeline(p: &PipelineConfig, problems: &mut Vec<String>) {
    if p.max_in_flight == 0 || p.max_in_flight > 1_000_000 {
        problems.push("pipeline.max_in_flight: must be 1..=1000000".into());
    }
    if !((1 << 20)..=(16 << 30)).contains(&p.max_in_flight_bytes) {
        problems.push(format!(
            "pipeline.max_in_flight_bytes: must be between 1048576 (1 MiB) and 17179869184 (16 GiB), got {}",
            p.max_in_flight_bytes
        ));
    }
    if p.workers.is_some_and(|w| w == 0 || w > 256) {
        problems.push("pipeline.workers: must be 1..=256 (or unset for one per CPU)".into());
    }
    if p.commit_interval_ms == 0 || p.commit_interval_ms > 60_000 {
        problems.push("pipeline.commit_interval_ms: must be 1..=60000".into());
    }
    in_range(
        problems,
        "pipeline.grace_period_secs",
        p.grace_period_secs,
        1..=3600,
    );
    in_range(
        problems,
        "pipeline.shadow_sample_per_sec",
        p.shadow_sample_per_sec,
        1..=10_000,
    );
    if p.campaign_series_cap > 10_000 {
        problems.push(format!(
            "pipeline.campaign_series_cap: must be 0..=10000 (each campaign is a set of metric series), got {}",
            p.campaign_series_cap
        ));
    }
    in_range(
        problems,
        "pipeline.stall_after_secs",
        p.stall_after_secs,
        5..=3600,
    );
}

/// `[state]` and `pipeline.exposure_flush_ms`: bounds, and a state key when
/// state is shared (without one no instance could trust another's rows).
fn check_state(c: &Config, problems: &mut Vec<String>) {
    let s = &c.state;
    in_range(
        problems,
        "pipeline.exposure_flush_ms",
        c.pipeline.exposure_flush_ms,
        10..=60_000,
    );
    in_range(
        problems,
        "state.table_refresh_ms",
        s.table_refresh_ms,
        100..=3_600_000,
    );
    in_range(
        problems,
        "state.judge_interval_ms",
        s.judge_interval_ms,
        10..=60_000,
    );
    if s.owner_group_id
        .as_deref()
        .is_some_and(|g| g.trim().is_empty() || g == c.kafka.group_id)
    {
        problems.push(
            "state.owner_group_id: must not be empty nor the input's group (kafka.group_id)".into(),
        );
    }
    // A key from the environment is checked at start (`Config::state_key_or_problem`).
    if let Some(k) = &s.key
        && k.len() < crate::fairness::wire::MIN_KEY_BYTES
    {
        problems.push(format!(
            "state.key: must be at least {} bytes, got {}",
            crate::fairness::wire::MIN_KEY_BYTES,
            k.len()
        ));
    }
}

/// `[http]`: the listen address parses.
fn check_http(h: &HttpConfig, problems: &mut Vec<String>) {
    if h.listen.parse::<SocketAddr>().is_err() {
        problems.push(format!(
            "http.listen: {:?} is not an address such as 0.0.0.0:9464",
            h.listen
        ));
    }
}

/// Note `value` outside `range` as a problem of `field`, naming both.
fn in_range<T>(problems: &mut Vec<String>, field: &str, value: T, range: RangeInclusive<T>)
where
    T: PartialOrd + std::fmt::Display,
{
    if !range.contains(&value) {
        problems.push(format!(
            "{field}: must be {}..={}, got {value}",
            range.start(),
            range.end()
        ));
    }
}

/// `[alerts]`: an http(s) webhook, bounded attempts, timeout and queue.
fn check_alerts(a: &AlertsConfig, problems: &mut Vec<String>) {
    if let Some(url) = &a.webhook_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        problems.push("alerts.webhook_url: must start with http:// or https://".into());
    }
    in_range(
        problems,
        "alerts.webhook_max_attempts",
        a.webhook_max_attempts,
        1..=100,
    );
    in_range(
        problems,
        "alerts.webhook_timeout_ms",
        a.webhook_timeout_ms,
        10..=600_000,
    );
    in_range(
        problems,
        "alerts.webhook_queue",
        a.webhook_queue,
        1..=1_000_000,
    );
}

/// `[log]`: the level is a filter `tracing` accepts.
fn check_log(l: &LogConfig, problems: &mut Vec<String>) {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&l.level) {
        problems.push(format!("log.level: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config/fairgate.toml");

    #[test]
    fn example_config_is_valid() {
        let c = Config::from_toml(EXAMPLE).unwrap();
        assert_eq!(c.kafka.topics.input, "decisions");
        assert!(c.pipeline.worker_count() >= 1, "unset: one per CPU");
    }

    #[test]
    fn numbers_that_would_fail_later_are_refused_now() {
        // Each of these once passed the check and then panicked at start
        // (a webhook queue of 0), at SIGTERM (a grace period past what an
        // `Instant` holds), or could never deliver (a 0 ms timeout).
        let bad = EXAMPLE
            .replace("webhook_queue = 1000", "webhook_queue = 0")
            .replace("webhook_timeout_ms = 2000", "webhook_timeout_ms = 0")
            .replace(
                "webhook_max_attempts = 5",
                "webhook_max_attempts = 4294967295",
            )
            .replace(
                "grace_period_secs = 20",
                "grace_period_secs = 18446744073709551615",
            )
            .replace(
                "campaign_series_cap = 50",
                "campaign_series_cap = 18446744073709551615",
            );
        let e = Config::from_toml(&bad).unwrap_err().to_string();
        for field in [
            "alerts.webhook_queue",
            "alerts.webhook_timeout_ms",
            "alerts.webhook_max_attempts",
            "pipeline.grace_period_secs",
            "pipeline.campaign_series_cap",
        ] {
            assert!(e.contains(field), "{field} not named in: {e}");
        }
    }

    /// A wrong type or an unknown setting does not hide the rest: each is
    /// named with its line, and the range checks still run on the others.
    #[test]
    fn shape_problems_do_not_hide_the_others() {
        let bad = EXAMPLE
            .replace("max_in_flight = 50000\n", "max_in_flight = \"5\"\n")
            .replace("webhook_queue = 1000", "webhook_queu = 1000")
            .replace("grace_period_secs = 20", "grace_period_secs = -3")
            .replace("listen = \"0.0.0.0:9464\"", "listen = \"nowhere\"");
        let e = Config::from_toml(&bad).unwrap_err();
        let line = |needle: &str| 1 + bad[..bad.find(needle).unwrap()].matches('\n').count();
        let text = e.to_string();
        assert_eq!(e.0.len(), 4, "{text}");
        for (needle, what) in [
            ("max_in_flight = \"5\"", "invalid type"),
            ("webhook_queu =", "unknown field `webhook_queu`"),
            ("grace_period_secs = -3", "invalid value"),
        ] {
            let want = format!("line {}: ", line(needle));
            assert!(
                e.0.iter().any(|p| p.starts_with(&want) && p.contains(what)),
                "{want}{what} not in: {text}"
            );
        }
        assert!(text.contains("http.listen"), "{text}");
        // A required setting of the wrong type is named once, not again
        // as missing.
        let e = Config::from_toml(&EXAMPLE.replace("group_id = \"fairgate\"", "group_id = 7"))
            .unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert!(e.0[0].contains("invalid type"), "{e}");
        // A syntax error ends the reading: one problem.
        let e = Config::from_toml(&format!("{EXAMPLE}\n[pipeline\n")).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
    }

    /// Every setting of the example, one at a time and all at once, given
    /// values of every other shape: the config is refused or read, never a
    /// panic, and each wrong setting is named at most once.
    #[test]
    fn any_setting_of_any_shape_is_refused_or_read_never_a_panic() {
        let wrong = [
            "\"x\"",
            "1.5",
            "[]",
            "{}",
            "-1",
            "true",
            "18446744073709551616",
        ];
        let settings: Vec<usize> = EXAMPLE
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim_start().starts_with(['#', '[']) && l.contains(" = "))
            .map(|(i, _)| i)
            .collect();
        assert!(settings.len() > 20, "the example has its settings");
        let with = |lines: &[usize], value: &str| {
            EXAMPLE
                .lines()
                .enumerate()
                .map(|(i, l)| match l.split_once(" = ") {
                    Some((k, _)) if lines.contains(&i) => format!("{k} = {value}"),
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        for value in wrong {
            for &i in &settings {
                let _ = Config::from_toml(&with(&[i], value));
            }
            if let Err(e) = Config::from_toml(&with(&settings, value)) {
                let mut named = e.0.clone();
                named.sort();
                named.dedup();
                assert_eq!(named.len(), e.0.len(), "a problem named twice: {e}");
            }
        }
    }

    #[test]
    fn all_problems_are_listed() {
        let bad = EXAMPLE
            .replace("output = \"decisions.guarded\"", "output = \"decisions\"")
            .replace("max_in_flight = 50000\n", "max_in_flight = 0\n")
            .replace("# workers = 2", "workers = 0")
            .replace("listen = \"0.0.0.0:9464\"", "listen = \"nowhere\"");
        let e = Config::from_toml(&bad).unwrap_err();
        assert_eq!(e.0.len(), 4, "{e}");
        assert!(e.to_string().contains("kafka.topics.output"));
        assert!(e.to_string().contains("pipeline.workers"));
    }

    #[test]
    fn the_shadow_sample_topic_is_checked_with_the_others() {
        let with = |topic: &str, rate: &str| {
            EXAMPLE
                .replacen(
                    "[kafka.topics]\n",
                    &format!("[kafka.topics]\nshadow = \"{topic}\"\n"),
                    1,
                )
                .replacen(
                    "[pipeline]\n",
                    &format!("[pipeline]\nshadow_sample_per_sec = {rate}\n"),
                    1,
                )
        };
        let c = Config::from_toml(&with("fairgate.shadow", "50")).unwrap();
        assert_eq!(c.kafka.topics.shadow.as_deref(), Some("fairgate.shadow"));
        assert_eq!(c.pipeline.shadow_sample_per_sec, 50);
        assert_eq!(
            Config::from_toml(EXAMPLE).unwrap().kafka.topics.shadow,
            None
        );
        let e = Config::from_toml(&with("decisions.guarded", "0")).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(
            e.0[0].contains("kafka.topics.shadow: same topic as kafka.topics.output"),
            "{e}"
        );
        assert!(
            e.0[1].contains("pipeline.shadow_sample_per_sec: must be 1..=10000, got 0"),
            "{e}"
        );
        let e = Config::from_toml(&with("bad topic", "1")).unwrap_err();
        assert!(
            e.0[0].contains("kafka.topics.shadow: \"bad topic\" is not a valid topic name"),
            "{e}"
        );
    }

    #[test]
    fn managed_settings_are_refused() {
        let bad = EXAMPLE.replace(
            "\n[kafka.consumer]\n",
            "\n[kafka.consumer]\n\"enable.auto.commit\" = \"true\"\n",
        );
        let e = Config::from_toml(&bad).unwrap_err();
        assert!(e.to_string().contains("enable.auto.commit"), "{e}");
    }
}
