//! What the running service listens for besides Kafka and HTTP: changes to
//! the policy file, and signals (SIGTERM and SIGINT stop, SIGHUP reloads).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::app::App;

/// Watch the policy file and the shadow policy's (polling its modification time and size, which also
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
    let one = |p: &PathBuf| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    // The shadow policy's file too: created, changed or removed, it is read again.
    let shadow = app.shadow_path().cloned();
    let stamp = |p: &PathBuf| (one(p), shadow.as_ref().and_then(one));
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
        if now != applied && seen_at.elapsed() >= debounce && now.0.is_some() {
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
