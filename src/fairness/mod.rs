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
//! * [`tracker`] — all campaigns' windows and states, shareable across threads.

pub mod alert;
pub mod assess;
pub mod campaign;
pub mod event_time;
pub mod exposure;
pub mod measures;
pub mod tracker;
