//! The state the service shares between the HTTP handlers, the pipeline and
//! the watchers: the guard, metrics, health, and the two things people do to
//! a running instance (reload the policy, override a campaign).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::core::guard::Guard;
use crate::fairness::alert::AlertEvent;
use crate::fairness::campaign::OverrideAction;
use crate::fairness::tracker::OverrideError;
use crate::kafka::pipeline::Health;
use crate::metrics::Metrics;
use crate::policy::{CompiledPolicy, PolicyError, PolicyIssue};

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
            return Err(PolicyError::Invalid(vec![PolicyIssue {
                place: "policy".into(),
                message: "this instance has no policy file to reload".into(),
            }]));
        };
        let path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || CompiledPolicy::load(&path))
            .await
            .unwrap_or_else(|e| {
                Err(PolicyError::Invalid(vec![PolicyIssue {
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
        self.metrics
            .consent_cache_bytes
            .set(i64::try_from(g.live().consent.cached_bytes()).unwrap_or(i64::MAX));
        self.metrics.ready.set(i64::from(self.health.ready()));
    }
}
