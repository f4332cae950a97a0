//! The running service: the guard, the pipeline, the HTTP port, the policy
//! watcher, the alert webhook and the signals, wired together.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::alert::AlertEvent;
use crate::campaign::OverrideAction;
use crate::clock::Clock;
use crate::config::Config;
use crate::guard::Guard;
use crate::kafka::pipeline::{self, Health, PipelineParts, Stage};
use crate::metrics::Metrics;
use crate::policy::{CompiledPolicy, PolicyError};
use crate::tracker::OverrideError;

/// What a reload did.
#[derive(Debug, serde::Serialize)]
pub struct ReloadOutcome {
    pub result: &'static str,
    pub version: String,
    pub kept_windows: bool,
}

/// State shared by the HTTP handlers, the pipeline and the watchers.
pub struct App {
    pub guard: Arc<Guard>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub clock: Arc<dyn Clock>,
    pub policy_path: Option<PathBuf>,
    pub admin_token: Option<String>,
    /// Alerts to publish (overrides); the pipeline produces them.
    pub alerts_tx: mpsc::Sender<AlertEvent>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl App {
    pub fn new(
        guard: Arc<Guard>,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
        policy_path: Option<PathBuf>,
        admin_token: Option<String>,
    ) -> (Arc<App>, mpsc::Receiver<AlertEvent>) {
        let (alerts_tx, alerts_rx) = mpsc::channel(1024);
        let live = guard.live();
        metrics.set_policy(&live.policy.version, live.policy.mode.as_str());
        metrics.start_time.set(clock.now_ms() as f64 / 1000.0);
        (
            Arc::new(App {
                guard,
                metrics,
                health: Arc::new(Health::default()),
                clock,
                policy_path,
                admin_token,
                alerts_tx,
                reload_lock: tokio::sync::Mutex::new(()),
            }),
            alerts_rx,
        )
    }

    /// Reload the policy file: validate in full, then swap; on any error the
    /// running policy stays and every problem is logged and returned.
    pub async fn reload_policy(&self, trigger: &'static str) -> Result<ReloadOutcome, PolicyError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let Some(path) = &self.policy_path else {
            return Err(PolicyError::Invalid(vec![crate::policy::PolicyIssue {
                place: "policy".into(),
                message: "this instance has no policy file to reload".into(),
            }]));
        };
        let path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || CompiledPolicy::load(&path))
            .await
            .unwrap_or_else(|e| {
                Err(PolicyError::Invalid(vec![crate::policy::PolicyIssue {
                    place: "policy".into(),
                    message: format!("reload task failed: {e}"),
                }]))
            });
        match loaded {
            Ok(p) => {
                let version = p.version.clone();
                let mode = p.mode;
                let swapped = self.guard.swap_policy(p);
                self.metrics
                    .policy_reloads
                    .with_label_values(&["applied"])
                    .inc();
                self.metrics.set_policy(&version, mode.as_str());
                info!(trigger, version = %version, kept_windows = swapped.kept_windows, "policy reloaded");
                Ok(ReloadOutcome {
                    result: "applied",
                    version,
                    kept_windows: swapped.kept_windows,
                })
            }
            Err(e) => {
                self.metrics
                    .policy_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                let problems: Vec<String> = e.issues().iter().map(ToString::to_string).collect();
                error!(trigger, problems = ?problems, error = %e, "policy reload refused; the running policy stays");
                Err(e)
            }
        }
    }

    /// A campaign manager's override: applied, and its audit alert published.
    pub async fn apply_override(
        &self,
        campaign: &str,
        action: OverrideAction,
        by: &str,
        reason: &str,
    ) -> Result<AlertEvent, OverrideError> {
        let alert =
            self.guard
                .override_campaign(campaign, action, by, reason, self.clock.now_ms())?;
        self.metrics
            .transitions
            .with_label_values(&[
                "override",
                alert.old_state.as_str(),
                alert.new_state.as_str(),
            ])
            .inc();
        info!(campaign, action = action.as_str(), by, "campaign override");
        if self.alerts_tx.send(alert.clone()).await.is_err() {
            warn!("alert channel closed; override alert not published");
        }
        Ok(alert)
    }

    /// Refresh gauges that mirror in-memory state (called before each scrape).
    pub fn refresh_metrics(&self) {
        let g = &self.guard;
        self.metrics.refresh_campaigns(g.tracker(), |ids| {
            ids.iter().filter_map(|id| g.campaign(id)).collect()
        });
        self.metrics
            .consent_cache_entries
            .set(g.live().consent.cached() as i64);
        self.metrics.ready.set(i64::from(self.health.ready()));
    }
}

/// Watch the policy file (polling its modification time and size, which also
/// sees Kubernetes ConfigMap symlink swaps) and reload once it has been stable
/// for `debounce`.
pub async fn watch_policy(
    app: Arc<App>,
    cancel: CancellationToken,
    every: Duration,
    debounce: Duration,
) {
    let Some(path) = app.policy_path.clone() else {
        return;
    };
    let stamp = |p: &PathBuf| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let mut applied = stamp(&path);
    let mut seen = applied;
    let mut seen_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = stamp(&path);
        if now != seen {
            seen = now;
            seen_at = tokio::time::Instant::now();
            continue;
        }
        if now != applied && seen_at.elapsed() >= debounce && now.is_some() {
            applied = now;
            let _ = app.reload_policy("file_change").await;
        }
    }
}

/// Cancel `cancel` on SIGTERM or SIGINT; reload the policy on SIGHUP.
pub async fn signals(app: Arc<App>, cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = term.recv() => { info!(signal = "SIGTERM", "shutting down"); cancel.cancel(); return; }
            _ = int.recv() => { info!(signal = "SIGINT", "shutting down"); cancel.cancel(); return; }
            _ = hup.recv() => { let _ = app.reload_policy("sighup").await; }
        }
    }
}

/// Build the shared state from a validated config (policy loaded and checked).
pub fn build(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<App>, mpsc::Receiver<AlertEvent>)> {
    let policy = CompiledPolicy::load(&config.policy)
        .map_err(|e| anyhow::anyhow!("policy {}: {e}", config.policy.display()))?;
    let guard = Arc::new(Guard::new(policy));
    let metrics = Metrics::new(
        prometheus::Registry::new(),
        config.pipeline.campaign_series_cap,
    );
    let admin_token = config.admin_token();
    if admin_token.is_none() {
        warn!(env = %config.http.admin_token_env, "no admin token configured: overrides and policy reloads over HTTP are refused");
    }
    Ok(App::new(
        guard,
        metrics,
        clock,
        Some(config.policy.clone()),
        admin_token,
    ))
}

/// Run the service until a signal or a fatal error.
pub async fn run(
    config: Config,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (app, alerts_rx) = build(&config, clock)?;
    serve(config, app, alerts_rx, cancel).await
}

/// Serve a built [`App`]: HTTP, signals, policy watcher, webhook, pipeline.
pub async fn serve(
    config: Config,
    app: Arc<App>,
    alerts_rx: mpsc::Receiver<AlertEvent>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let tasks = TaskTracker::new();
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {}: {e}", config.http.listen))?;
    info!(address = %listener.local_addr()?, "HTTP listening (/, /metrics, /healthz, /readyz, /v1)");
    let http_cancel = CancellationToken::new();
    tasks.spawn(crate::http::serve(
        listener,
        app.clone(),
        http_cancel.clone(),
    ));
    tasks.spawn(signals(app.clone(), cancel.clone()));
    if config.pipeline.watch_policy {
        tasks.spawn(watch_policy(
            app.clone(),
            cancel.clone(),
            Duration::from_secs(1),
            Duration::from_millis(500),
        ));
    }
    let fanout = config.alerts.webhook_url.clone().map(|url| {
        let (tx, rx) = mpsc::channel(config.alerts.webhook_queue);
        tasks.spawn(crate::webhook::run(
            url,
            config.alerts.clone(),
            rx,
            app.metrics.clone(),
            cancel.clone(),
        ));
        tx
    });
    let result = pipeline::run(
        PipelineParts {
            config: config.clone(),
            stage: Stage::Guard(app.guard.clone()),
            metrics: app.metrics.clone(),
            health: app.health.clone(),
            clock: app.clock.clone(),
            alerts: alerts_rx,
            alert_fanout: fanout,
        },
        cancel.clone(),
    )
    .await;
    cancel.cancel();
    http_cancel.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    match result {
        Ok(s) => {
            info!(
                consumed = s.consumed,
                delivered = s.delivered,
                drained = s.drained,
                "fairgate stopped"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
