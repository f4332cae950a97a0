//! The commands around the service: offline replay, synthetic traffic, the
//! demo and the end-to-end benchmark. None of it is on the service's path.
//!
//! * [`check`] — `fairgate check`: the core over a file of JSON lines, offline.
//! * [`diff`] — `fairgate diff`: recorded decisions judged under the current
//!   policy and a candidate, and what would change (JSON and HTML reports).
//! * [`topic`] — `fairgate diff --topic`: a topic's decisions within a time
//!   range, read-only, merged in an order fixed by what the topic holds.
//! * [`synth`] — realistic synthetic decisions (load generator, demo, benches).
//! * [`loadgen`] — synthetic decisions to a Kafka topic at a set rate.
//! * [`demo`] — the whole product on librdkafka's in-process mock cluster.
//! * [`bench_e2e`] — the product's own pass-through comparison, in one process
//!   (the end-to-end benchmark proper is `scripts/bench-e2e`).

pub mod bench_e2e;
pub mod check;
pub mod demo;
pub mod diff;
pub mod loadgen;
pub mod synth;
pub mod topic;
