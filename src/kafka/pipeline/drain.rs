//! The drain: after the consume loop stops, let the judge threads finish
//! what they hold, finish re-sends, wait for every acknowledgement and
//! commit, all within the grace period.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;
use tracing::debug;

use super::commit::commit;
use super::consume::ConsumeLoop;
use super::error::PipelineError;
use super::send::send_async;

/// How much of the grace period the drain may take: nine tenths, leaving the
/// rest for the last commit and leaving the group, so that the run ends
/// within the grace period even when the drain cannot finish.
fn drain_budget(grace: Duration) -> Duration {
    grace - grace / 10
}

/// Until everything read is acknowledged and committed (returns true), the
/// drain's share of the grace period ends, or an error stops the pipeline (returned). The judge
/// threads' queues are closed already.
pub(super) async fn drain(
    lp: &mut ConsumeLoop,
    threads: &[JoinHandle<()>],
) -> Result<bool, PipelineError> {
    let deadline = Instant::now() + drain_budget(lp.shared.grace);
    // No new alerts (an override is refused from now on, before it is
    // applied); those already queued, or whose room is taken, are published
    // below like any other record.
    lp.alerts.close();
    while Instant::now() < deadline {
        while let Ok(a) = lp.alerts.try_recv() {
            lp.publish_alert(Some(a)).await?;
        }
        let resent = send_retries(lp).await;
        if let Ok(e) = lp.fatal_rx.try_recv() {
            return Err(e);
        }
        resent?;
        let judging = threads.iter().filter(|t| !t.is_finished()).count();
        // Everything is judged: publish the last deltas, so that what they
        // count can be committed.
        if judging == 0 && lp.shared.holds.as_ref().is_some_and(|h| h.len() > 0) {
            lp.flush().await?;
        }
        let in_queue = lp.producer.in_flight_count();
        if judging == 0 && in_queue == 0 && lp.retry_rx.is_empty() && lp.alerts.is_empty() {
            commit(&lp.shared, &lp.consumer).await;
            if lp.shared.offsets.lock().all_committable().is_empty() {
                return Ok(true);
            }
        }
        debug!(target: "fairgate::kafka", judging, in_queue, held = lp.shared.offsets.lock().held(), "draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(false)
}

/// Send again what failed transiently, at once: no back-off while draining,
/// the grace period is the bound. Returns the last error, if any.
async fn send_retries(lp: &mut ConsumeLoop) -> Result<(), PipelineError> {
    let mut failed = None;
    while let Ok(r) = lp.retry_rx.try_recv() {
        if let Err(e) = send_async(&lp.shared, &lp.producer, &lp.topics, r).await {
            failed = Some(e);
        }
    }
    failed.map_or(Ok(()), Err)
}
