//! The running service: the guard, the pipeline, the HTTP port, the policy
//! watcher, the alert webhook and the signals, wired together.
//!
//! * [`app`] — the state they share; policy reloads and overrides.
//! * [`http`] — metrics, health, campaign API, overrides, policy reload.
//! * [`status_page`] — the HTML status page.
//! * [`watch`] — the policy-file watcher and the signal handler.
//! * [`webhook`] — the optional alert webhook, with retries.

pub mod app;
pub mod http;
pub mod status_page;
pub mod watch;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use app::{App, ReloadOutcome};
pub use watch::{signals, watch_policy};

use crate::clock::Clock;
use crate::config::Config;
use crate::core::guard::Guard;
use crate::fairness::alert::AlertEvent;
use crate::kafka::pipeline::{self, GuardStage, PipelineParts};
use crate::metrics::Metrics;
use crate::policy::CompiledPolicy;

/// Build the shared state from a validated config (policy loaded and checked).
pub fn build(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<App>, mpsc::Receiver<AlertEvent>)> {
    let policy = CompiledPolicy::load(&config.policy)
        .map_err(|e| anyhow::anyhow!("policy {}: {e}", config.policy.display()))?;
    let guard = Arc::new(if config.state.shared {
        Guard::with_shared_state(policy)
    } else {
        Guard::new(policy)
    });
    let metrics = Metrics::new(
        prometheus::Registry::new(),
        config.pipeline.campaign_series_cap,
    );
    let admin_token = config.admin_token();
    if admin_token.is_none() {
        warn!(env = %config.http.admin_token_env, "no admin token configured: overrides and policy reloads over HTTP are refused");
    }
    let (app, alerts) = App::new(
        guard,
        metrics,
        clock,
        Some(config.policy.clone()),
        admin_token,
    );
    if let Some(path) = &config.shadow_policy {
        app.set_shadow_path(path.clone());
        // Read here, before any input: an invalid shadow file stops the start.
        if path.exists() {
            let p = CompiledPolicy::load(path)
                .map_err(|e| anyhow::anyhow!("shadow_policy {}: {e}", path.display()))?;
            app.metrics.shadow.set_version(Some(&p.version));
            app.metrics
                .shadow
                .reloads
                .with_label_values(&["applied"])
                .inc();
            info!(version = %p.version, "shadow policy on");
            app.shadow.set(Some(p));
        }
    }
    Ok((app, alerts))
}

/// Start the state threads (state on Kafka) and wait until the table is
/// read: `Ok(None)` when state is not shared, or when cancelled meanwhile.
async fn start_state(
    config: &Config,
    app: &Arc<App>,
    fanout: Option<mpsc::Sender<AlertEvent>>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<crate::kafka::state::StateService>> {
    if app.guard.shared().is_none() {
        return Ok(None);
    }
    let s = crate::kafka::state::start(
        config,
        app.guard.clone(),
        app.metrics.clone(),
        app.clock.clone(),
        fanout,
    )
    .await
    .map_err(|problems| {
        anyhow::anyhow!(
            "campaign state on Kafka cannot start ({} problem{}):\n{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    app.set_commands(s.commands.clone());
    if !s.wait_loaded(&app.guard, cancel).await {
        s.stop().await;
        return Ok(None);
    }
    Ok(Some(s))
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

/// The tasks beside the pipeline: signals, the policy watcher, the webhook.
/// Returns where to hand alerts for the webhook, when there is one.
fn spawn_side_tasks(
    config: &Config,
    app: &Arc<App>,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Option<mpsc::Sender<AlertEvent>> {
    tasks.spawn(signals(app.clone(), cancel.clone()));
    if config.pipeline.watch_policy {
        tasks.spawn(watch_policy(
            app.clone(),
            cancel.clone(),
            Duration::from_secs(1),
            Duration::from_millis(500),
        ));
    }
    config.alerts.webhook_url.clone().map(|url| {
        let (tx, rx) = mpsc::channel(config.alerts.webhook_queue);
        tasks.spawn(webhook::run(
            url,
            config.alerts.clone(),
            rx,
            app.metrics.clone(),
            cancel.clone(),
        ));
        tx
    })
}

/// Serve a built [`App`]: HTTP, signals, policy watcher, webhook, pipeline.
pub async fn serve(
    config: Config,
    app: Arc<App>,
    alerts_rx: mpsc::Receiver<AlertEvent>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let tasks = TaskTracker::new();
    let listener = std::net::TcpListener::bind(&config.http.listen)
        .map_err(|e| anyhow::anyhow!("http.listen {}: {e}", config.http.listen))?;
    info!(address = %listener.local_addr()?, "HTTP listening (/, /metrics, /healthz, /readyz, /v1)");
    let http_cancel = CancellationToken::new();
    let http_thread = http::spawn(listener, app.clone(), http_cancel.clone())
        .map_err(|e| anyhow::anyhow!("http.listen {}: {e}", config.http.listen))?;
    let fanout = spawn_side_tasks(&config, &app, &tasks, &cancel);
    // Campaign state on Kafka: the table is read whole before any input.
    let state = match start_state(&config, &app, fanout.clone(), &cancel).await {
        Ok(Some(s)) => Some(s),
        Ok(None) if app.guard.shared().is_none() => None,
        stopped => {
            http_cancel.cancel();
            cancel.cancel();
            return stopped.map(|_| ());
        }
    };
    let mut stage = GuardStage::new(
        app.guard.clone(),
        app.metrics.clone(),
        app.clock.clone(),
        fanout.clone(),
    )
    .with_shadow(app.shadow.clone());
    let sample = crate::kafka::shadow_sample::ShadowSample::start(
        &config,
        app.shadow.clone(),
        app.metrics.shadow.samples.clone(),
    )
    .map_err(|e| anyhow::anyhow!("kafka.topics.shadow: cannot create its producer: {e}"))?;
    if let Some(s) = sample {
        stage = stage.with_shadow_sample(Arc::new(s));
    }
    let result = pipeline::run(
        PipelineParts {
            config: config.clone(),
            stage: Arc::new(stage),
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
    if let Some(s) = state {
        s.stop().await;
    }
    http_cancel.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    // A client holding a connection open past this is cut off with the process.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || http_thread.join()),
    )
    .await;
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
