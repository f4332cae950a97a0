//! Exposure fairness: counting each campaign's delivery per protected group
//! in rolling windows, measuring its skew, and the campaign states that
//! follow. Pure: no I/O, no clock (time comes in as an argument).
//!
//! * [`exposure`] — rolling windows of time buckets by the decision's `ts`.
//! * [`event_time`] — the clock read from the decisions' `ts` when replaying,
//!   robust to outliers.
//! * [`measures`] — selection-rate ratio, delivery-share distance, Wilson intervals.
//! * [`assess`] — judging a campaign's counts against the policy's limits.
//! * [`campaign`] — the ok / flagged / blocked state machine with hysteresis, overrides.
//! * [`alert`] — alert events with the numbers and a readable sentence.
//! * [`tracker`] — all campaigns' windows and states, shareable across threads
//!   (one instance on its own, and `check`).
//! * [`wire`] — the campaign table's and the exposure topic's records.
//! * [`counter`] — decisions summed per campaign, bucket and group between flushes.
//! * [`table`] — the campaign table as read: what routing and the API answer from.
//! * [`owner`] — the campaigns an instance owns: deltas merged, judged, rows written.

pub mod alert;
pub mod assess;
pub mod campaign;
pub mod counter;
pub mod event_time;
pub mod exposure;
pub mod measures;
pub mod owner;
pub mod table;
pub mod tracker;
pub mod wire;
