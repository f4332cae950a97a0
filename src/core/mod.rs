//! The decision core, in pipeline order: read the decision, judge its
//! consent, strip what the policy names, and route it. Pure: no I/O, no
//! clock, no Kafka (time comes in as an argument).
//!
//! * [`decision`] — reading and validating the input message.
//! * [`consent`] — TCF v2.2, US Privacy, GPP, GPC, COPPA → personalised,
//!   contextual or withheld, with a reason code; a bounded decode cache.
//! * [`strip`] — removing and coarsening what the policy names.
//! * [`rewrite`] — the same, and writing the result, in one walk of the
//!   parsed decision (the guard's fast path where the policy allows).
//! * [`outline`] — one read of the record's text: whether a key repeats,
//!   and where each entry lies, so that what stripping leaves untouched is
//!   copied, not re-serialised.
//! * [`edit`] — copy-on-write edits of the parsed decision, written in input order.
//! * [`diff`] — two judgements of one decision compared (current and
//!   candidate policy), tallied over a replay (`fairgate diff`).
//! * [`shadow`] — a candidate policy judged beside the live one in the
//!   running service, what it would change counted, nothing published.
//! * [`guard`] — the pipeline order in one place: bytes in, one
//!   [`guard::Judgement`] out (consent, exposure and campaign state, strip, route).

pub mod consent;
pub mod decision;
pub mod diff;
pub mod edit;
pub mod guard;
pub mod outline;
pub mod rewrite;
pub mod shadow;
pub mod strip;
pub mod view;
