//! Committing input offsets: only those whose every produced record is
//! acknowledged ([`Offsets`](super::super::offsets::Offsets) decides), one
//! commit at a time.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::shared::Shared;

/// Commit the acknowledged offsets of the partitions `only` names (all when
/// `None`). The periodic commit and the commit on revocation both come here,
/// one at a time, so an older offset never lands after a newer one.
///
/// Locks: `commit_lock` for the whole call, `offsets` inside it and never
/// across the commit; places are given back after `offsets` is let go.
pub(super) fn commit_acknowledged<X: ConsumerContext, C: Consumer<X>>(
    shared: &Shared,
    consumer: &C,
    only: Option<&[i32]>,
    when: &'static str,
) {
    let _one_at_a_time = shared.commit_lock.lock();
    let mut pending = shared.offsets.lock().all_committable();
    if let Some(only) = only {
        pending.retain(|(p, _)| only.contains(p));
    }
    if pending.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, next) in &pending {
        let _ = tpl.add_partition_offset(&shared.input_topic, *p, Offset::Offset(*next));
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            shared.metrics.commits.with_label_values(&["ok"]).inc();
            let released: usize = {
                let mut offsets = shared.offsets.lock();
                pending
                    .into_iter()
                    .map(|(p, next)| offsets.committed(p, next))
                    .sum()
            };
            shared.in_flight.release(released);
        }
        Err(e) => {
            shared.metrics.commits.with_label_values(&["error"]).inc();
            warn!(target: "fairgate::kafka", error = %e, when, "offset commit failed");
        }
    }
}

/// Commit what is acknowledged, off the async runtime (a synchronous commit blocks).
pub(super) async fn commit<X: ConsumerContext + 'static>(
    shared: &Arc<Shared>,
    consumer: &Arc<StreamConsumer<X>>,
) {
    let (s, c) = (shared.clone(), consumer.clone());
    if let Err(e) = tokio::task::spawn_blocking(move || {
        commit_acknowledged(&s, c.as_ref(), None, "periodic (tried again next interval)")
    })
    .await
    {
        error!(target: "fairgate::kafka", error = %e, "commit task failed");
    }
}

/// The periodic commit, in a task beside the consume loop so a commit never
/// stalls consumption.
pub(super) struct Committer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Committer {
    pub(super) fn start<X: ConsumerContext + 'static>(
        shared: &Arc<Shared>,
        consumer: &Arc<StreamConsumer<X>>,
        every: Duration,
    ) -> Committer {
        let stop = CancellationToken::new();
        let (shared, consumer, stopped) = (shared.clone(), consumer.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stopped.cancelled() => break,
                    _ = tick.tick() => commit(&shared, &consumer).await,
                }
            }
        });
        Committer { stop, task }
    }

    /// Stop committing periodically (the drain commits by itself).
    pub(super) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
