//! The policy: one TOML file that says what is stripped, under which consent
//! rule, and how campaign delivery is judged.
//!
//! Loading happens in three steps, so that a person fixing a policy sees every
//! problem at once:
//!
//! 1. TOML syntax (a syntax error stops here: nothing after it can be read);
//! 2. each section and each array element is deserialised on its own, so one
//!    bad entry does not hide the others (`deny_unknown_fields` everywhere);
//! 3. cross-field checks (pointers well formed, shares summing to one,
//!    thresholds ordered, baselines naming known dimensions and groups).
//!
//! The result is a [`CompiledPolicy`]: lookups prepared for the hot path.
//!
//! # Layout
//!
//! * `file` — the format as written: [`PolicyFile`] and its sections;
//! * `compile` — text to [`CompiledPolicy`], one function per section, each
//!   returning its compiled part and listing its problems;
//! * `compiled` — the compiled form the core reads;
//! * `pointer` — JSON pointers, removal plans, the sensitive-segment matcher;
//! * `quantile` — the normal quantile behind every confidence interval;
//! * `error` — [`PolicyIssue`] and [`PolicyError`].
//!
//! Every item is re-exported here: use `crate::policy::X`.

mod compile;
mod compiled;
mod error;
mod file;
mod pointer;
mod quantile;

pub use compiled::{
    Category, Coarsen, CoarsenOp, CompiledPolicy, Dimension, Limits, MAX_TOTAL_GROUPS,
};
pub use error::{PolicyError, PolicyIssue};
pub use file::{
    BandSpec, BandTransform, BaselineSpec, CoarsenMethod, CoarsenRule, CoarsenWhen, ConsentPolicy,
    DimensionSpec, FairnessPolicy, Fallback, GdprUnknown, LimitsSpec, Mode, PolicyFile,
    SegmentPolicy, StripPolicy,
};
pub use pointer::{
    Pointer, RemovalGroup, SegmentMatcher, fold_key, key_matches, normalise_segment_id,
};
pub use quantile::z_for_confidence;
