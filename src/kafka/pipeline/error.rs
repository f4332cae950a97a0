//! Why the pipeline stopped with an error.

use rdkafka::error::KafkaError;

/// Why the pipeline stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "fatal delivery error to the {role} topic: {error} (record not committed; it is reprocessed on restart)"
    )]
    FatalDelivery { role: &'static str, error: String },
    #[error("cannot start a judge thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(
        "a judge thread stopped unexpectedly (records not committed; they are reprocessed on restart)"
    )]
    WorkerStopped,
}
