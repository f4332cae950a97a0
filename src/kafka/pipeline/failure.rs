//! What a record its topic cannot take becomes: a fatal error that stops
//! the pipeline, or, for a record refused for what it is (too large, not
//! valid there), its dead-letter form. Shared by both places a failure is
//! seen: a send refused at once (`send`) and a delivery that failed later
//! (`context`).

use rdkafka::error::KafkaError;
use tracing::warn;

use super::error::PipelineError;
use super::records::{Out, Outgoing, Token};
use super::shared::Shared;

/// Count a fatal delivery error of `token`'s record; the error that stops the pipeline.
pub(super) fn fatal(shared: &Shared, token: &Token, e: &KafkaError) -> PipelineError {
    let role = token.role.as_str();
    shared
        .metrics
        .delivery_errors
        .with_label_values(&[role, "fatal"])
        .inc();
    PipelineError::FatalDelivery {
        role,
        error: e.to_string(),
    }
}

/// `out`, a record its topic refused: its dead-letter form, to send instead. A
/// dead-letter form refused in turn is fatal (the dead-letter topic takes
/// less than [`REFUSED_PAYLOAD_BYTES`](super::records::REFUSED_PAYLOAD_BYTES)
/// and a few headers: a topic configuration to fix, not a record to skip).
/// So is a count delta refused by the exposure topic: dead-lettered, the
/// input records it counts would be committed with their counts lost (a
/// delta is a few KB; a topic that refuses one is a configuration to fix).
pub(super) fn refuse(
    shared: &Shared,
    out: &Out,
    token: &Token,
    e: &KafkaError,
) -> Result<Outgoing, PipelineError> {
    if token.refused || token.role == super::records::Role::Exposure {
        return Err(fatal(shared, token, e));
    }
    let role = token.role.as_str();
    let code = e
        .rdkafka_error_code()
        .map(|c| format!("{c:?}"))
        .unwrap_or_else(|| "refused".into());
    shared
        .metrics
        .delivery_errors
        .with_label_values(&[role, "dead_lettered"])
        .inc();
    shared
        .metrics
        .dead_letters
        .with_label_values(&["refused_by_topic"])
        .inc();
    let (partition, offset) = token.input.map_or((-1, -1), |(p, _, o)| (p, o));
    warn!(target: "fairgate::kafka", topic = role, error = %e, bytes = out.payload.len(), partition, offset, "a topic refused a record: sent to the dead-letter topic, cut to fit");
    Ok(token.refused(out, &code))
}
