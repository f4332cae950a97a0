//! Every metric fairgate exports, defined in one place.
//!
//! Naming: `fairgate_<what>_<unit>` with `_total` on counters, base units
//! (seconds, bytes), HELP text on every family; beside them, on Linux, the
//! Prometheus client's standard `process_*` families (CPU, memory, threads,
//! file descriptors). Registered on a registry that is passed in, so a test
//! can render it and assert exact lines.
//!
//! Label cardinality is bounded: labels take values from fixed sets (routes,
//! reasons, signals, states, error kinds), partitions, and — only for
//! campaigns that are flagged or blocked, capped by config — campaign ids.
//! Never a user id, decision id or consent string.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::guard::{Judgement, Route};
use crate::fairness::campaign::State;
use crate::fairness::tracker::{CampaignReport, CampaignStore};

/// All of fairgate's metric families.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Decisions by route and reason.
    pub decisions: IntCounterVec,
    /// Consent signal results by signal and result.
    pub consent_signals: IntCounterVec,
    /// Consent outcomes by outcome and reason.
    pub consent_outcomes: IntCounterVec,
    /// Consent fields given in their OpenRTB 2.6 and 2.5 places with different values.
    pub consent_placement_disagreements: IntCounterVec,
    /// Pointers removed or coarsened, by category.
    pub pointers_removed: IntCounterVec,
    /// Decisions by window timing (counted, late, early).
    pub window_decisions: IntCounterVec,
    /// Campaigns held, by effective state.
    pub campaigns: IntGaugeVec,
    /// Campaign state transitions and overrides.
    pub transitions: IntCounterVec,
    /// Per-campaign skew for flagged/blocked campaigns only (capped).
    pub campaign_skew: GaugeVec,
    /// Time to judge one decision.
    pub processing: Histogram,
    /// From the decision's `ts` to the acknowledgement of its published record.
    pub publish_lag: Histogram,
    /// Consumer lag per partition.
    pub consumer_lag: IntGaugeVec,
    /// Messages waiting in the producer queue.
    pub producer_queue: IntGauge,
    /// Failed deliveries, by topic role and whether they were retried.
    pub delivery_errors: IntCounterVec,
    /// Input records in flight (consumed, not yet committed).
    pub in_flight: IntGauge,
    /// Bytes of input records consumed, not yet acknowledged.
    pub in_flight_bytes: IntGauge,
    /// 1 while the progress watchdog finds the pipeline stalled.
    pub stalled: IntGauge,
    /// When the pipeline last consumed or completed a record (or was idle).
    pub last_progress: Gauge,
    /// Dead letters by error kind.
    pub dead_letters: IntCounterVec,
    /// Policy reloads by result.
    pub policy_reloads: IntCounterVec,
    /// The live policy version (value 1).
    pub policy_info: IntGaugeVec,
    /// Alerts published, by sink and result.
    pub alerts: IntCounterVec,
    /// Offsets committed.
    pub commits: IntCounterVec,
    /// 1 when ready to serve.
    pub ready: IntGauge,
    /// Rebalances by kind.
    pub rebalances: IntCounterVec,
    /// Decoded consent strings in the cache.
    pub consent_cache_entries: IntGauge,
    /// Bytes the consent cache holds, as it weighs them.
    pub consent_cache_bytes: IntGauge,
    /// Campaigns evicted for idleness.
    pub campaigns_evicted: IntCounter,
    /// Process start, for uptime.
    pub start_time: Gauge,
    /// Cap on per-campaign series.
    pub campaign_series_cap: usize,
    /// Campaign state on Kafka: deltas, table, owners.
    pub state: StateMetrics,
    /// The shadow policy: what it would change.
    pub shadow: ShadowMetrics,
}

/// The shadow policy (`shadow_policy`): what it would change, never published.
#[derive(Clone)]
pub struct ShadowMetrics {
    /// Decisions judged under the shadow policy as well.
    pub decisions: IntCounter,
    /// Decisions the shadow policy would change, by kind.
    pub changes: IntCounterVec,
    /// Decisions with at least one kind of change.
    pub changed: IntCounter,
    /// Decisions whose published record would differ (topic or value bytes).
    pub published_differs: IntCounter,
    /// Decisions by the route the shadow policy would give.
    pub routes: IntCounterVec,
    /// Shadow policy loads, by result.
    pub reloads: IntCounterVec,
    /// The shadow policy's version (value 1), when shadow is on.
    pub info: IntGaugeVec,
    /// The sample of changed decisions on `kafka.topics.shadow`.
    pub samples: ShadowSampleMetrics,
    /// `changes` by kind, resolved once (index `Kind as usize`).
    by_kind: [IntCounter; crate::core::diff::Kind::ALL.len()],
    /// `routes` by route, resolved once (in [`Route::ALL`] order).
    by_route: [IntCounter; Route::ALL.len()],
}

/// The shadow sample (`kafka.topics.shadow`), by result.
#[derive(Clone)]
pub struct ShadowSampleMetrics {
    /// Delivered to the topic.
    pub published: IntCounter,
    /// Dropped: over `pipeline.shadow_sample_per_sec`.
    pub rate_limited: IntCounter,
    /// Dropped: the sample producer's queue was full.
    pub queue_full: IntCounter,
    /// Not delivered (the producer or the broker refused it, or it timed out).
    pub failed: IntCounter,
}

fn shadow_families(r: &Registry) -> ShadowMetrics {
    let samples = counter(
        r,
        "fairgate_shadow_samples_total",
        "Changed decisions sampled to kafka.topics.shadow, by result (published, rate_limited, queue_full, failed); best-effort, never in the pipeline's way.",
        &["result"],
    );
    let sample = |result: &str| samples.with_label_values(&[result]);
    let changes = counter(
        r,
        "fairgate_shadow_changes_total",
        "Decisions the shadow policy would change, by kind (route, consent, consent_reason, removed, coarsened, segments_removed, campaign_state).",
        &["kind"],
    );
    let routes = counter(
        r,
        "fairgate_shadow_routes_total",
        "Decisions by the route the shadow policy would give (output, blocked, dead_letter).",
        &["route"],
    );
    let m = ShadowMetrics {
        decisions: single(
            r,
            IntCounter::new,
            "fairgate_shadow_decisions_total",
            "Decisions judged under the shadow policy as well (nothing it decides is published).",
        ),
        changed: single(
            r,
            IntCounter::new,
            "fairgate_shadow_changed_decisions_total",
            "Decisions the shadow policy would change in at least one kind.",
        ),
        published_differs: single(
            r,
            IntCounter::new,
            "fairgate_shadow_published_differs_total",
            "Decisions whose published record the shadow policy would change (another topic or other value bytes).",
        ),
        reloads: counter(
            r,
            "fairgate_shadow_reloads_total",
            "Shadow policy loads, by result (applied, off, rejected).",
            &["result"],
        ),
        info: gauge(
            r,
            "fairgate_shadow_policy_info",
            "The shadow policy (value 1), labelled with its version; absent when shadow is off.",
            &["version"],
        ),
        samples: ShadowSampleMetrics {
            published: sample("published"),
            rate_limited: sample("rate_limited"),
            queue_full: sample("queue_full"),
            failed: sample("failed"),
        },
        by_kind: crate::core::diff::Kind::ALL.map(|k| changes.with_label_values(&[k.as_str()])),
        by_route: Route::ALL.map(|r| routes.with_label_values(&[r.as_str()])),
        changes,
        routes,
    };
    for r in ["applied", "off", "rejected"] {
        m.reloads.with_label_values(&[r]);
    }
    m
}

impl ShadowMetrics {
    /// Count what the shadow said of one decision.
    pub fn observe(&self, s: &crate::core::shadow::ShadowJudged) {
        self.decisions.inc();
        self.by_route[s.route as usize].inc();
        for (changed, c) in s.compared.kinds.iter().zip(&self.by_kind) {
            if *changed {
                c.inc();
            }
        }
        if s.compared.changed() {
            self.changed.inc();
        }
        if s.compared.published_differs {
            self.published_differs.inc();
        }
    }

    /// Shadow on with `version`, or off.
    pub fn set_version(&self, version: Option<&str>) {
        self.info.reset();
        if let Some(v) = version {
            self.info.with_label_values(&[v]).set(1);
        }
    }
}

/// Campaign state on Kafka: the exposure deltas, the campaign table, the owners.
#[derive(Clone)]
pub struct StateMetrics {
    /// Count delta records published.
    pub deltas: IntCounter,
    /// From a flush's start to its last delta's acknowledgement.
    pub flush_seconds: Histogram,
    /// Table records between this instance's position and the end of the table.
    pub table_lag: IntGauge,
    /// State records read, by topic (campaigns, exposure) and result.
    pub records: IntCounterVec,
    /// Time to replay a partition's window on takeover.
    pub restore_seconds: Histogram,
    /// Exposure records replayed on takeover.
    pub restore_records: IntCounter,
    /// Campaigns and exposure partitions this instance owns.
    pub owned_campaigns: IntGauge,
    pub owned_partitions: IntGauge,
    /// Rows, tombstones and platform rows written to the table.
    pub table_writes: IntCounterVec,
}

fn state_families(r: &Registry) -> StateMetrics {
    StateMetrics {
        deltas: single(
            r,
            IntCounter::new,
            "fairgate_exposure_deltas_total",
            "Count delta records published to the exposure topic (one per campaign touched per flush, plus the platform's).",
        ),
        flush_seconds: histogram(
            r,
            "fairgate_exposure_flush_duration_seconds",
            "From the start of an exposure flush to the acknowledgement of its last delta (input offsets wait for it).",
            PUBLISH_LAG_BUCKETS.to_vec(),
        ),
        table_lag: single(
            r,
            IntGauge::new,
            "fairgate_table_lag_records",
            "Campaign-table records not yet read by this instance (its view is this far behind).",
        ),
        records: counter(
            r,
            "fairgate_state_records_total",
            "Campaign-table and exposure records read, by topic (campaigns, exposure) and result (applied, stale, skipped reasons: malformed, unknown_version, unknown_kind, bad_signature, wrong_key, groups_mismatch, replayed).",
            &["topic", "result"],
        ),
        restore_seconds: histogram(
            r,
            "fairgate_restore_duration_seconds",
            "Time to rebuild an exposure partition's windows from the exposure topic when this instance takes it over.",
            PUBLISH_LAG_BUCKETS.to_vec(),
        ),
        restore_records: single(
            r,
            IntCounter::new,
            "fairgate_restore_records_total",
            "Exposure records replayed to rebuild windows on takeover.",
        ),
        owned_campaigns: single(
            r,
            IntGauge::new,
            "fairgate_owned_campaigns",
            "Campaigns this instance owns (merges, judges and writes to the table).",
        ),
        owned_partitions: single(
            r,
            IntGauge::new,
            "fairgate_owned_exposure_partitions",
            "Exposure partitions this instance holds in the owners' group.",
        ),
        table_writes: counter(
            r,
            "fairgate_table_writes_total",
            "Records written to the campaign table, by kind (row, tombstone, platform) and result (sent, failed).",
            &["kind", "result"],
        ),
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(r, c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(r, g)
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid");
    register(r, h)
}

/// A family without labels.
fn single<M: Collector + Clone + 'static>(
    r: &Registry,
    new: fn(String, String) -> prometheus::Result<M>,
    name: &str,
    help: &str,
) -> M {
    register(r, new(name.into(), help.into()).expect("valid"))
}

fn register<M: Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

/// What happened to decisions: routes, consent, stripping, window timing.
struct DecisionFamilies {
    decisions: IntCounterVec,
    consent_signals: IntCounterVec,
    consent_outcomes: IntCounterVec,
    consent_placement_disagreements: IntCounterVec,
    pointers_removed: IntCounterVec,
    window_decisions: IntCounterVec,
    dead_letters: IntCounterVec,
}

fn decision_families(r: &Registry) -> DecisionFamilies {
    DecisionFamilies {
        decisions: counter(
            r,
            "fairgate_decisions_total",
            "Decisions handled, by route (output, blocked, dead_letter) and reason.",
            &["route", "reason"],
        ),
        consent_signals: counter(
            r,
            "fairgate_consent_signals_total",
            "Consent signals evaluated, by signal (tcf, usp, gpp, gpc, coppa) and result (allowed, denied, invalid).",
            &["signal", "result"],
        ),
        consent_outcomes: counter(
            r,
            "fairgate_consent_outcomes_total",
            "Consent results, by outcome (personalised, contextual, withheld) and reason code.",
            &["outcome", "reason"],
        ),
        consent_placement_disagreements: counter(
            r,
            "fairgate_consent_placement_disagreements_total",
            "Decisions giving a consent field in its OpenRTB 2.6 place and its 2.5 place (regs.ext, user.ext) with different values, by field (gdpr, us_privacy, consent); the 2.6 value is used.",
            &["field"],
        ),
        pointers_removed: counter(
            r,
            "fairgate_pointers_removed_total",
            "Fields removed or coarsened, by category (always, personal, child, lmt, coarsened, uncoarsenable, segment).",
            &["category"],
        ),
        window_decisions: counter(
            r,
            "fairgate_window_decisions_total",
            "Decisions by where their ts fell: counted in the window, late (older than the window) or early (ahead of the clock).",
            &["timing"],
        ),
        dead_letters: counter(
            r,
            "fairgate_dead_letters_total",
            "Records sent to the dead-letter topic, by error kind.",
            &["kind"],
        ),
    }
}

/// Campaigns: how many in each state, their transitions, skew and evictions.
struct CampaignFamilies {
    campaigns: IntGaugeVec,
    transitions: IntCounterVec,
    campaign_skew: GaugeVec,
    campaigns_evicted: IntCounter,
}

fn campaign_families(r: &Registry) -> CampaignFamilies {
    let campaign_skew = GaugeVec::new(
        Opts::new(
            "fairgate_campaign_skew_ratio",
            "Skew measure behind a flagged or blocked campaign (selection-rate ratio or share distance); only non-ok campaigns, capped by config.",
        ),
        &["campaign", "state", "dimension", "measure"],
    )
    .expect("valid");
    CampaignFamilies {
        campaigns: gauge(
            r,
            "fairgate_campaigns",
            "Campaigns tracked, by effective state (ok, flagged, blocked).",
            &["state"],
        ),
        transitions: counter(
            r,
            "fairgate_campaign_transitions_total",
            "Campaign state changes (kind=transition) and manual overrides (kind=override), by old and new state.",
            &["kind", "from", "to"],
        ),
        campaign_skew: register(r, campaign_skew),
        campaigns_evicted: single(
            r,
            IntCounter::new,
            "fairgate_campaigns_evicted_total",
            "Idle campaigns forgotten (state ok, no decision for idle_evict_secs).",
        ),
    }
}

/// Seconds to judge one decision: 2 µs to 10 ms.
const PROCESSING_BUCKETS: [f64; 11] = [
    0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005,
    0.01,
];

/// Seconds from a decision's `ts` to its acknowledgement: 1 ms to 5 min.
const PUBLISH_LAG_BUCKETS: [f64; 15] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The Kafka pipeline: timing, lag, queues, deliveries, commits, rebalances.
struct PipelineFamilies {
    processing: Histogram,
    publish_lag: Histogram,
    consumer_lag: IntGaugeVec,
    producer_queue: IntGauge,
    delivery_errors: IntCounterVec,
    in_flight: IntGauge,
    in_flight_bytes: IntGauge,
    stalled: IntGauge,
    last_progress: Gauge,
    commits: IntCounterVec,
    rebalances: IntCounterVec,
}

fn pipeline_families(r: &Registry) -> PipelineFamilies {
    PipelineFamilies {
        processing: histogram(
            r,
            "fairgate_processing_duration_seconds",
            "Time to judge one decision (parse, consent, exposure, strip, serialise).",
            PROCESSING_BUCKETS.to_vec(),
        ),
        publish_lag: histogram(
            r,
            "fairgate_decision_publish_lag_seconds",
            "From the decision's own ts to the broker's acknowledgement of its published record.",
            PUBLISH_LAG_BUCKETS.to_vec(),
        ),
        consumer_lag: gauge(
            r,
            "fairgate_consumer_lag_messages",
            "Messages between the consumer's position and the end of each input partition.",
            &["topic", "partition"],
        ),
        producer_queue: single(
            r,
            IntGauge::new,
            "fairgate_producer_queue_messages",
            "Messages waiting in the producer queue (not yet acknowledged by the broker).",
        ),
        delivery_errors: counter(
            r,
            "fairgate_delivery_errors_total",
            "Failed deliveries to a topic, by topic role (output, blocked, dead_letter, alerts) and action (retried, fatal).",
            &["topic", "action"],
        ),
        in_flight: single(
            r,
            IntGauge::new,
            "fairgate_in_flight_messages",
            "Input records consumed whose offsets are not yet committed (bounded by pipeline.max_in_flight).",
        ),
        in_flight_bytes: single(
            r,
            IntGauge::new,
            "fairgate_in_flight_bytes",
            "Bytes of input records consumed whose produced records are not yet all acknowledged (bounded by pipeline.max_in_flight_bytes).",
        ),
        stalled: single(
            r,
            IntGauge::new,
            "fairgate_pipeline_stalled",
            "1 while the pipeline has consumed and completed nothing for pipeline.stall_after_secs although records wait (in flight, or consumer lag); /readyz is 503 meanwhile.",
        ),
        last_progress: single(
            r,
            Gauge::new,
            "fairgate_pipeline_last_progress_timestamp_seconds",
            "Unix time at which the pipeline last consumed or completed a record, or had nothing to do.",
        ),
        commits: counter(
            r,
            "fairgate_offset_commits_total",
            "Offset commits, by result (ok, error).",
            &["result"],
        ),
        rebalances: counter(
            r,
            "fairgate_rebalances_total",
            "Consumer group rebalances, by kind (assign, revoke, error).",
            &["kind"],
        ),
    }
}

/// The process: policy, alerts, readiness, consent cache, start time.
struct ProcessFamilies {
    policy_reloads: IntCounterVec,
    policy_info: IntGaugeVec,
    alerts: IntCounterVec,
    ready: IntGauge,
    consent_cache_entries: IntGauge,
    consent_cache_bytes: IntGauge,
    start_time: Gauge,
}

fn process_families(r: &Registry) -> ProcessFamilies {
    ProcessFamilies {
        policy_reloads: counter(
            r,
            "fairgate_policy_reloads_total",
            "Policy reload attempts, by result (applied, rejected).",
            &["result"],
        ),
        policy_info: gauge(
            r,
            "fairgate_policy_info",
            "The live policy (value 1), labelled with its version and mode.",
            &["version", "mode"],
        ),
        alerts: counter(
            r,
            "fairgate_alerts_total",
            "Alert events, by sink (topic, webhook) and result (sent, failed, dropped).",
            &["sink", "result"],
        ),
        ready: single(
            r,
            IntGauge::new,
            "fairgate_ready",
            "1 when ready: the consumer holds its assignment, the producer is healthy and the pipeline is not stalled.",
        ),
        consent_cache_entries: single(
            r,
            IntGauge::new,
            "fairgate_consent_cache_entries",
            "Decoded consent strings held in the bounded cache.",
        ),
        consent_cache_bytes: single(
            r,
            IntGauge::new,
            "fairgate_consent_cache_bytes",
            "Bytes the consent cache holds, as it weighs them (bounded by consent.cache_bytes).",
        ),
        start_time: single(
            r,
            Gauge::new,
            "fairgate_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
        ),
    }
}

impl Metrics {
    /// Create and register every family on `registry`.
    pub fn new(registry: Registry, campaign_series_cap: usize) -> Metrics {
        // The process's own CPU, memory, threads and file descriptors under
        // their standard names (`process_cpu_seconds_total`, …): with
        // `fairgate_decisions_total` they give the CPU per decision in
        // production, the figure the benchmarks report.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector, registered once");
        let d = decision_families(&registry);
        let c = campaign_families(&registry);
        let p = pipeline_families(&registry);
        let s = process_families(&registry);
        let state = state_families(&registry);
        let shadow = shadow_families(&registry);
        let m = Metrics {
            registry,
            decisions: d.decisions,
            consent_signals: d.consent_signals,
            consent_outcomes: d.consent_outcomes,
            consent_placement_disagreements: d.consent_placement_disagreements,
            pointers_removed: d.pointers_removed,
            window_decisions: d.window_decisions,
            campaigns: c.campaigns,
            transitions: c.transitions,
            campaign_skew: c.campaign_skew,
            processing: p.processing,
            publish_lag: p.publish_lag,
            consumer_lag: p.consumer_lag,
            producer_queue: p.producer_queue,
            delivery_errors: p.delivery_errors,
            in_flight: p.in_flight,
            in_flight_bytes: p.in_flight_bytes,
            stalled: p.stalled,
            last_progress: p.last_progress,
            dead_letters: d.dead_letters,
            policy_reloads: s.policy_reloads,
            policy_info: s.policy_info,
            alerts: s.alerts,
            commits: p.commits,
            ready: s.ready,
            rebalances: p.rebalances,
            consent_cache_entries: s.consent_cache_entries,
            consent_cache_bytes: s.consent_cache_bytes,
            campaigns_evicted: c.campaigns_evicted,
            start_time: s.start_time,
            campaign_series_cap,
            state,
            shadow,
        };
        m.create_known_label_sets();
        m
    }

    /// Known label sets exist from the start, so rate() and increase() see
    /// the first event and dashboards show zeros, not gaps.
    fn create_known_label_sets(&self) {
        for s in State::ALL {
            self.campaigns.with_label_values(&[s.as_str()]).set(0);
        }
        for r in ["applied", "rejected"] {
            self.policy_reloads.with_label_values(&[r]);
        }
        for t in ["output", "blocked", "dead_letter", "alerts"] {
            for a in ["retried", "fatal", "dead_lettered"] {
                self.delivery_errors.with_label_values(&[t, a]);
            }
        }
        for r in ["ok", "error"] {
            self.commits.with_label_values(&[r]);
        }
        for k in ["assign", "revoke", "error"] {
            self.rebalances.with_label_values(&[k]);
        }
        for t in ["counted", "late", "early"] {
            self.window_decisions.with_label_values(&[t]);
        }
        for f in ["gdpr", "us_privacy", "consent"] {
            self.consent_placement_disagreements.with_label_values(&[f]);
        }
        for (sink, result) in [
            ("topic", "sent"),
            ("webhook", "sent"),
            ("webhook", "failed"),
            ("webhook", "dropped"),
        ] {
            self.alerts.with_label_values(&[sink, result]);
        }
    }

    /// Record what the guard decided for one record.
    pub fn observe(&self, j: &Judgement) {
        let f = &j.facts;
        self.decisions
            .with_label_values(&[j.route.as_str(), f.reason])
            .inc();
        if j.route == Route::DeadLetter {
            self.dead_letters.with_label_values(&[f.reason]).inc();
            return;
        }
        if let Some(v) = &f.consent {
            self.consent_outcomes
                .with_label_values(&[v.outcome.as_str(), v.reason.as_str()])
                .inc();
            for (field, disagreed) in f.placements.iter() {
                if disagreed {
                    self.consent_placement_disagreements
                        .with_label_values(&[field])
                        .inc();
                }
            }
            for (signal, result) in v.signals.iter() {
                if result != crate::core::consent::SignalResult::NotApplicable {
                    self.consent_signals
                        .with_label_values(&[signal, result.as_str()])
                        .inc();
                }
            }
        }
        for (cat, n) in [
            ("always", f.removed_always),
            ("personal", f.removed_personal),
            ("child", f.removed_child),
            ("lmt", f.removed_lmt),
            ("coarsened", f.coarsened),
            ("uncoarsenable", f.uncoarsenable),
            ("segment", f.segments),
        ] {
            if n > 0 {
                self.pointers_removed
                    .with_label_values(&[cat])
                    .inc_by(n as u64);
            }
        }
        if let Some(t) = f.timing {
            self.window_decisions.with_label_values(&[t.as_str()]).inc();
        }
        if let Some(a) = &j.alert {
            self.transitions
                .with_label_values(&["transition", a.old_state.as_str(), a.new_state.as_str()])
                .inc();
        }
    }

    /// Refresh the gauges that mirror the tracker (campaign states, capped per-campaign series).
    pub fn refresh_campaigns(
        &self,
        tracker: &dyn CampaignStore,
        reports: impl FnOnce(Vec<String>) -> Vec<CampaignReport>,
    ) {
        for (state, n) in tracker.state_counts() {
            self.campaigns
                .with_label_values(&[state.as_str()])
                .set(n as i64);
        }
        let non_ok: Vec<String> = tracker
            .non_ok(self.campaign_series_cap)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        self.campaign_skew.reset();
        for r in reports(non_ok) {
            if let Some(f) = r.finding {
                let dim = r
                    .dimensions
                    .get(f.dimension)
                    .map(|d| d.dimension.as_str())
                    .unwrap_or("");
                self.campaign_skew
                    .with_label_values(&[&r.campaign, r.state.as_str(), dim, f.measure.as_str()])
                    .set(f.value);
            }
        }
        self.campaigns_evicted.reset();
        self.campaigns_evicted.inc_by(tracker.evicted());
    }

    /// Mark `version` as the live policy.
    pub fn set_policy(&self, version: &str, mode: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[version, mode]).set(1);
    }

    /// Render in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("utf-8")
    }
}
