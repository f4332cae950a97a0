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
//! * [`edit`] — copy-on-write edits of the parsed decision, written in input order.
//! * [`alert`] — alert events with the numbers and a readable sentence.
//! * [`guard`] — the pipeline order in one place: bytes in, one [`guard::Judgement`] out.
//! * [`policy`] — the policy file: parsed, validated (every error listed), compiled.
//!
//! Around it:
//!
//! * [`config`] — the service configuration, strict, every error listed.
//! * [`kafka`] — the consume → guard → produce pipeline (at least once), the load generator.
//! * [`metrics`] — every Prometheus metric, defined in one place.
//! * [`http`] — metrics, health, campaign API, overrides, policy reload, status page.
//! * [`service`] — the running service wired together: pipeline, HTTP, policy watcher, signals.
//! * [`webhook`] — optional alert webhook with retries.
//! * [`clock`] — injected time.
//! * [`check`] — the offline `fairgate check` over JSON lines.
//! * [`synth`] — realistic synthetic decisions (load generator, demo, benches).
//! * [`demo`] — the whole product on an in-process broker.
//! * [`bench_e2e`] — pass-through vs fairgate through one broker.

#![forbid(unsafe_code)]

pub mod alert;
pub mod bench_e2e;
pub mod campaign;
pub mod check;
pub mod clock;
pub mod config;
pub mod consent;
pub mod decision;
pub mod demo;
pub mod edit;
pub mod exposure;
pub mod fairness;
pub mod guard;
pub mod http;
pub mod kafka;
pub mod measures;
pub mod metrics;
pub mod policy;
pub mod service;
pub mod strip;
pub mod synth;
pub mod tracker;
pub mod webhook;

pub use guard::{Guard, Judgement, Now, Route};
pub use policy::CompiledPolicy;
