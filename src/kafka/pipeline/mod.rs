//! The at-least-once pipeline: consume → stage (the guard) → produce, never
//! losing a record.
//!
//! * Each input record takes one of `max_in_flight` places, given back only
//!   when its offset is **committed**. In-flight work is therefore bounded,
//!   and so are the duplicates a crash can cause.
//! * Every record the stage produces for an input (the guard's routed
//!   record, and an alert when its campaign changed state) is sent with a
//!   delivery token; the producer's delivery callback marks the token
//!   acknowledged in [`Offsets`](super::offsets::Offsets). An input offset
//!   becomes committable only when all its records, and all earlier offsets
//!   of its partition, are acknowledged.
//! * `QueueFull` is back-pressure: the loop waits and sends again. Delivery
//!   errors are classified: transient ones are sent again, fatal ones stop the
//!   pipeline without committing the record (it is reprocessed on restart).
//! * Acknowledgements, retries and commits are served before new input (a
//!   `biased` select).
//! * On revocation, the producer is flushed and the revoked partitions'
//!   offsets committed before they move.
//! * On cancellation (SIGTERM, SIGINT, a test): stop reading, drain retries,
//!   flush, commit, and give up after the grace period.
//!
//! One record's way through, file by file:
//!
//! * [`run`] — sets up, runs the consume loop, drains, leaves the group.
//! * `consume` — the consume loop: reads, takes a place in flight
//!   (`in_flight`), hands the record to its partition's judge thread.
//! * `worker` — judge threads: the [`Stage`] (`stage`: the trait and
//!   [`GuardStage`]), then `send` with a delivery token (`records`).
//! * `context` — librdkafka's callbacks: acknowledgements, rebalances.
//! * `commit` — acknowledged offsets committed, periodically and on revocation.
//! * `failure` — a fatal delivery error, or a refused record's dead-letter form.
//! * `flush` — exposure deltas published; the inputs they count wait for them.
//! * `drain` — the end of a run, within the grace period.
//! * `shared` — the state they share, and the lock order.
//! * `watchdog` — a pipeline that moves nothing while records wait is not ready.

mod commit;
mod consume;
mod context;
mod drain;
mod error;
mod failure;
mod flush;
mod in_flight;
mod records;
mod run;
mod send;
mod shared;
mod stage;
mod watchdog;
mod worker;

pub use error::PipelineError;
pub use records::{Out, Role, alert_out, headers_of};
pub use run::{PipelineParts, RunSummary, run};
pub use shared::Health;
pub use stage::{GuardStage, Input, Produced, Stage};
