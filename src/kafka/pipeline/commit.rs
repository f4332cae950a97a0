//! Committing input offsets: only those whose every produced record is
//! acknowledged ([`Offsets`](super::super::offsets::Offsets) decides), one
//! commit at a time.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::types::RDKafkaErrorCode;
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
/// Returns false when the group no longer knows this member (the commit
/// was refused with `UnknownMemberId` or `IllegalGeneration`).
pub(super) fn commit_acknowledged<X: ConsumerContext, C: Consumer<X>>(
    shared: &Shared,
    consumer: &C,
    only: Option<&[i32]>,
    when: &'static str,
) -> bool {
    let _one_at_a_time = shared.commit_lock.lock();
    let mut pending = shared.offsets.lock().all_committable();
    if let Some(only) = only {
        pending.retain(|(p, _)| only.contains(p));
    }
    if pending.is_empty() {
        return true;
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
            true
        }
        Err(e) => {
            shared.metrics.commits.with_label_values(&["error"]).inc();
            warn!(target: "fairgate::kafka", error = %e, when, "offset commit failed");
            !matches!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::UnknownMemberId | RDKafkaErrorCode::IllegalGeneration)
            )
        }
    }
}

/// How long commits may be refused as from a member the group does not
/// know before the consumer leaves and joins again.
const REJOIN_AFTER: Duration = Duration::from_secs(10);

/// Commit what is acknowledged, off the async runtime (a synchronous commit blocks).
/// Returns false when the group no longer knows this member.
pub(super) async fn commit<X: ConsumerContext + 'static>(
    shared: &Arc<Shared>,
    consumer: &Arc<StreamConsumer<X>>,
) -> bool {
    let (s, c) = (shared.clone(), consumer.clone());
    match tokio::task::spawn_blocking(move || {
        commit_acknowledged(&s, c.as_ref(), None, "periodic (tried again next interval)")
    })
    .await
    {
        Ok(known) => known,
        Err(e) => {
            error!(target: "fairgate::kafka", error = %e, "commit task failed");
            true
        }
    }
}

/// The group refuses this member's commits (it lost the member, e.g. a
/// broker restart forgot the group) and librdkafka has not joined again:
/// leave and join again, so the partitions are assigned afresh. What was
/// not committed is read again (duplicates within `max_in_flight`).
fn rejoin<X: ConsumerContext + 'static>(shared: &Shared, consumer: &StreamConsumer<X>) {
    warn!(target: "fairgate::kafka", after_secs = REJOIN_AFTER.as_secs(), "commits refused: the group no longer knows this member; leaving and joining again");
    consumer.unsubscribe();
    if let Err(e) = consumer.subscribe(&[&shared.input_topic]) {
        error!(target: "fairgate::kafka", error = %e, "cannot subscribe again after leaving the group");
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
            let mut refused_since: Option<std::time::Instant> = None;
            loop {
                tokio::select! {
                    biased;
                    _ = stopped.cancelled() => break,
                    _ = tick.tick() => {
                        if commit(&shared, &consumer).await {
                            refused_since = None;
                        } else if refused_since.get_or_insert_with(std::time::Instant::now).elapsed() >= REJOIN_AFTER {
                            refused_since = None;
                            let (s, c) = (shared.clone(), consumer.clone());
                            let _ = tokio::task::spawn_blocking(move || rejoin(&s, &c)).await;
                        }
                    }
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
