//! The state the service shares between the HTTP handlers, the pipeline and
//! the watchers: the guard, metrics, health, and the two things people do to
//! a running instance (reload the policy, override a campaign).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::core::guard::Guard;
use crate::core::shadow::Shadow;
use crate::fairness::alert::AlertEvent;
use crate::fairness::campaign::OverrideAction;
use crate::fairness::tracker::OverrideError;
use crate::kafka::pipeline::Health;
use crate::kafka::state::Commands;
use crate::metrics::Metrics;
use crate::policy::{CompiledPolicy, PolicyError, PolicyIssue};

/// An override taken: its audit alert, and whether this instance's routing
/// already shows it (always, when state is not shared).
#[derive(Debug)]
pub struct Applied {
    pub alert: AlertEvent,
    pub applied: bool,
}

/// How long an override request waits for its campaign's row to show it.
const WAIT_APPLIED: std::time::Duration = std::time::Duration::from_secs(5);

/// A unique id for an override command: time, process and a random part.
fn command_id(now_ms: i64) -> String {
    format!(
        "{now_ms:x}-{:x}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    )
}

/// What a reload did.
#[derive(Debug, serde::Serialize)]
pub struct ReloadOutcome {
    pub result: &'static str,
    pub version: String,
    pub kept_windows: bool,
    /// The shadow policy after the reload (when one is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowOutcome>,
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
    /// Override commands to the campaigns' owners (state on Kafka).
    commands: std::sync::OnceLock<Arc<Commands>>,
    /// The shadow policy (on while its file exists); the pipeline judges with it too.
    pub shadow: Arc<Shadow>,
    shadow_path: std::sync::OnceLock<PathBuf>,
    /// When the campaign gauges were last refreshed; locked while a refresh
    /// runs, so scrapes at once walk the campaigns once.
    campaigns_refreshed: parking_lot::Mutex<Option<std::time::Instant>>,
}

/// How old the campaign gauges may be at a scrape: walking every campaign
/// (100,000 of them) once a second at most, however often scrapes come.
const CAMPAIGN_GAUGES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a shadow reload did: `on` with the version, `off` (no file), or
/// `rejected` (the running shadow, if any, stays).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShadowOutcome {
    pub result: &'static str,
    pub version: Option<String>,
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
                commands: std::sync::OnceLock::new(),
                shadow: Arc::new(Shadow::new()),
                shadow_path: std::sync::OnceLock::new(),
                campaigns_refreshed: parking_lot::Mutex::new(None),
            }),
            alerts_rx,
        )
    }

    /// The shadow policy's file (set once at start, when configured).
    pub fn set_shadow_path(&self, path: PathBuf) {
        let _ = self.shadow_path.set(path);
    }

    /// The shadow policy's file, when configured.
    pub fn shadow_path(&self) -> Option<&PathBuf> {
        self.shadow_path.get()
    }

    /// Read the shadow policy file: absent, shadow off; valid, shadow on
    /// with it; invalid, every problem logged and counted, and the running
    /// shadow (or none) stays. `Err` only for an invalid file.
    pub async fn reload_shadow(&self, trigger: &'static str) -> Result<ShadowOutcome, PolicyError> {
        let Some(path) = self.shadow_path.get().cloned() else {
            return Ok(ShadowOutcome {
                result: "off",
                version: None,
            });
        };
        let loaded = tokio::task::spawn_blocking(move || {
            if !path.exists() {
                return Ok(None);
            }
            CompiledPolicy::load(&path).map(Some)
        })
        .await
        .unwrap_or_else(|e| {
            Err(PolicyError::Invalid(vec![PolicyIssue {
                place: "shadow_policy".into(),
                message: format!("reload task failed: {e}"),
            }]))
        });
        let m = &self.metrics.shadow;
        match loaded {
            Ok(p) => {
                let version = p.as_ref().map(|p| p.version.clone());
                let result = if p.is_some() { "applied" } else { "off" };
                self.shadow.set(p);
                m.reloads.with_label_values(&[result]).inc();
                m.set_version(version.as_deref());
                info!(trigger, result, version = ?version, "shadow policy read");
                Ok(ShadowOutcome { result, version })
            }
            Err(e) => {
                m.reloads.with_label_values(&["rejected"]).inc();
                let problems: Vec<String> = e.issues().iter().map(ToString::to_string).collect();
                error!(trigger, problems = ?problems, error = %e, "shadow policy refused; the running shadow stays");
                Err(e)
            }
        }
    }

    /// Reload the policy file: validate in full, then swap; on any error the
    /// running policy stays and every problem is logged and returned. The
    /// shadow policy file is read again too ([`App::reload_shadow`]).
    pub async fn reload_policy(&self, trigger: &'static str) -> Result<ReloadOutcome, PolicyError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let shadow = match self.shadow_path.get() {
            Some(_) => Some(self.reload_shadow(trigger).await.unwrap_or(ShadowOutcome {
                result: "rejected",
                version: self.shadow.version(),
            })),
            None => None,
        };
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
                    shadow,
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

    /// Where override commands go (state on Kafka); set once at start.
    pub fn set_commands(&self, c: Arc<Commands>) {
        let _ = self.commands.set(c);
    }

    /// A campaign manager's override: applied, and its audit alert published.
    ///
    /// With state on Kafka the override is a signed command to the
    /// campaign's owner, which applies it and writes the campaign's row;
    /// every instance routes by that row. This returns once the command is
    /// on the exposure topic and, when `applied` is true, this instance's
    /// table shows it (within `WAIT_APPLIED`). The audit alert is published
    /// here, once, whichever instance owns the campaign.
    pub async fn apply_override(
        &self,
        campaign: &str,
        action: OverrideAction,
        by: &str,
        reason: &str,
    ) -> Result<Applied, OverrideError> {
        // Room for the audit alert first: once the pipeline takes no more
        // alerts (it is shutting down), the override is refused before it
        // is applied, so that an applied override always has its alert.
        let Ok(room) = self.alerts_tx.reserve().await else {
            return Err(OverrideError::Unavailable(
                "this instance is shutting down; send the override to another one".into(),
            ));
        };
        let mut applied = true;
        let alert = match self.guard.shared() {
            Some(shared) => {
                let Some(commands) = self.commands.get() else {
                    return Err(OverrideError::Unavailable(
                        "campaign state is not started yet".into(),
                    ));
                };
                let live = self.guard.live();
                let id = command_id(self.clock.now_ms());
                let (cmd, alert) = shared.table.prepare_override(
                    &live.policy,
                    campaign,
                    action,
                    by,
                    reason,
                    self.clock.now_ms(),
                    id.clone(),
                )?;
                commands
                    .send(&cmd)
                    .await
                    .map_err(OverrideError::Unavailable)?;
                let start = std::time::Instant::now();
                let seen = || {
                    shared
                        .table
                        .get(campaign)
                        .is_some_and(|r| r.applied.contains(&id))
                };
                while !seen() && start.elapsed() < WAIT_APPLIED {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                applied = seen();
                if !applied {
                    warn!(
                        campaign,
                        "override sent to the campaign's owner, not yet in this instance's table"
                    );
                }
                alert
            }
            None => {
                self.guard
                    .override_campaign(campaign, action, by, reason, self.clock.now_ms())?
            }
        };
        self.metrics
            .transitions
            .with_label_values(&[
                "override",
                alert.old_state.as_str(),
                alert.new_state.as_str(),
            ])
            .inc();
        info!(campaign, action = action.as_str(), by, "campaign override");
        room.send(alert.clone());
        Ok(Applied { alert, applied })
    }

    /// Refresh gauges that mirror in-memory state (called before each
    /// scrape). The campaign gauges walk every campaign, so they are
    /// refreshed at most once per [`CAMPAIGN_GAUGES_MAX_AGE`]; a blocking
    /// call: run it off the async threads.
    pub fn refresh_metrics(&self) {
        let g = &self.guard;
        {
            let mut refreshed = self.campaigns_refreshed.lock();
            if refreshed.is_none_or(|t| t.elapsed() >= CAMPAIGN_GAUGES_MAX_AGE) {
                self.metrics.refresh_campaigns(g.store(), |ids| {
                    ids.iter().filter_map(|id| g.campaign(id)).collect()
                });
                *refreshed = Some(std::time::Instant::now());
            }
        }
        self.metrics
            .consent_cache_entries
            .set(g.live().consent.cached() as i64);
        self.metrics
            .consent_cache_bytes
            .set(i64::try_from(g.live().consent.cached_bytes()).unwrap_or(i64::MAX));
        self.metrics.ready.set(i64::from(self.health.ready()));
    }
}
