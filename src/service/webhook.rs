//! Optional alert webhook: every alert event is POSTed as JSON, retried with
//! exponential backoff. It runs beside the pipeline and never blocks it: the
//! pipeline hands alerts over a bounded queue and counts what does not fit.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::AlertsConfig;
use crate::fairness::alert::AlertEvent;
use crate::metrics::Metrics;

/// Deliver alerts from `rx` to `url` until cancelled.
pub async fn run(
    url: String,
    cfg: AlertsConfig,
    mut rx: mpsc::Receiver<AlertEvent>,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.webhook_timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build webhook client; alerts go to the alerts topic only");
            return;
        }
    };
    loop {
        let alert = tokio::select! {
            _ = cancel.cancelled() => return,
            a = rx.recv() => match a { Some(a) => a, None => return },
        };
        let body = match serde_json::to_vec(&alert) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let mut delay = Duration::from_millis(200);
        let mut sent = false;
        for attempt in 1..=cfg.webhook_max_attempts {
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().is_success() => {
                    sent = true;
                    break;
                }
                Ok(resp) => {
                    warn!(campaign = %alert.campaign, status = resp.status().as_u16(), attempt, "alert webhook refused the alert");
                }
                Err(e) => {
                    warn!(campaign = %alert.campaign, error = %e.without_url(), attempt, "alert webhook unreachable");
                }
            }
            if attempt < cfg.webhook_max_attempts {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
        metrics
            .alerts
            .with_label_values(&["webhook", if sent { "sent" } else { "failed" }])
            .inc();
    }
}
