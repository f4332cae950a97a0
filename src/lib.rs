//! fairgate — a streaming guardrail for ad targeting on Kafka.
//!
//! For each targeting decision fairgate checks the user's consent, strips
//! sensitive attributes, counts the exposure in rolling per-campaign,
//! per-group windows, flags or blocks campaigns whose delivery is skewed
//! across protected groups, and publishes the cleaned decision — losing none.
//!
//! # Layout
//!
//! The pure core (no I/O, no clock, no Kafka), in pipeline order:
//!
//! * [`decision`] — reading and validating the input message.
//! * [`consent`] — TCF v2.2, US Privacy, GPP, GPC, COPPA → personalised,
//!   contextual or withheld, with a reason code; a bounded decode cache.
//! * [`exposure`] — rolling windows of time buckets by the decision's `ts`.
//! * [`measures`] — selection-rate ratio, delivery-share distance, Wilson intervals.
//! * [`fairness`] — judging a campaign's counts against the policy's limits.
//! * [`campaign`] — the ok / flagged / blocked state machine with hysteresis, overrides.
//! * [`tracker`] — all campaigns' windows and states, shareable across threads.
//! * [`strip`] — removing and coarsening what the policy names.
//! * [`alert`] — alert events with the numbers and a readable sentence.
//! * [`guard`] — the pipeline order in one place: bytes in, one [`guard::Judgement`] out.
//! * [`policy`] — the policy file: parsed, validated (every error listed), compiled.
//!
//! Around it:
//!
//! * [`check`] — the offline `fairgate check` over JSON lines.
//! * [`synth`] — realistic synthetic decisions (load generator, demo, benches).

#![forbid(unsafe_code)]

pub mod alert;
pub mod campaign;
pub mod check;
pub mod consent;
pub mod decision;
pub mod exposure;
pub mod fairness;
pub mod guard;
pub mod measures;
pub mod policy;
pub mod strip;
pub mod synth;
pub mod tracker;

pub use guard::{Guard, Judgement, Now, Route};
pub use policy::CompiledPolicy;
