//! fairgate — a streaming guardrail for ad targeting on Kafka.
//!
//! For each targeting decision fairgate checks the user's consent, strips
//! sensitive attributes, counts the exposure in rolling per-campaign,
//! per-group windows, flags or blocks campaigns whose delivery is skewed
//! across protected groups, and publishes the cleaned decision — losing none.
//!
//! # Layout
//!
//! The pure core: no I/O, no clock, no Kafka, no HTTP (time comes in as an
//! argument). `tests/architecture.rs` holds it to that, and keeps the module
//! graph free of cycles.
//!
//! * [`policy`] — the policy file: format, pointers, compilation (every error listed).
//! * [`core`] — one decision: [`core::decision`] (reading), [`core::consent`]
//!   (TCF, GPP, US Privacy, GPC, COPPA), [`core::strip`] over [`core::edit`],
//!   and [`core::guard`], the pipeline order in one place.
//! * [`fairness`] — exposure windows, skew measures, assessment, the campaign
//!   state machine, alerts, and the tracker that holds every campaign.
//!
//! Around it:
//!
//! * [`kafka`] — client settings, commit bookkeeping and the consume → guard
//!   → produce pipeline (at least once).
//! * [`service`] — the running service: shared state, HTTP API and status
//!   page, alert webhook, policy watcher, signals.
//! * [`tools`] — the commands around it: offline `check` and `diff` (what a
//!   candidate policy would change), synthetic traffic,
//!   load generator, demo, end-to-end benchmark.
//! * [`config`] — the service configuration, strict, every error listed.
//! * [`metrics`] — every Prometheus metric, defined in one place.
//! * [`clock`] — injected time.
//!
//! Dependencies point one way: `tools` → `service` → `kafka` → `metrics` →
//! `core` → `fairness` → `policy`.

#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod core;
pub mod fairness;
pub mod kafka;
pub mod metrics;
pub mod policy;
pub mod service;
pub mod tools;

pub use crate::core::guard::{Guard, Judgement, Now, Route};
pub use policy::CompiledPolicy;
