//! Kafka: client settings, the consume → guard → produce pipeline.
//!
//! * [`client`] — librdkafka settings for our clients, and error classification.
//! * [`offsets`] — which input offsets may be committed (pure).
//! * [`pipeline`] — the at-least-once loop.
//! * [`state`] — campaign state on Kafka: table reader, owners, topic checks.
//! * [`shadow_sample`] — the shadow's sample of changed decision ids, best-effort.

pub mod client;
pub mod offsets;
pub mod pipeline;
pub mod shadow_sample;
pub mod state;

pub use client::{ErrorClass, classify, consumer_config, producer_config};
