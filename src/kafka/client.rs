//! librdkafka client settings, and how a Kafka error is classified.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// librdkafka settings for the consumer: ours, then the pass-through ones.
pub fn consumer_config(
    brokers: &str,
    group: &str,
    common: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        // Offsets are committed by the pipeline, only once every record an
        // input produced is acknowledged.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // The consume loop polls continuously, even while held back by
        // max_in_flight, so a member silent for a minute is stuck. This is
        // also the rebalance timeout: how long a group waits for members that
        // vanished (a broker restart can leave one behind) before it moves on.
        .set("max.poll.interval.ms", "60000")
        // The prefetch queue (`queued.max.messages.kbytes`) stays at
        // librdkafka's 64 MiB: a 16 MiB cap here held the shipped config to
        // 43,000/s where the same run without it reached 56,000–70,000/s on
        // the end-to-end bench (the queue ran dry between fetches).
        // A guardrail sits on the request path: when a fetch finds nothing
        // new, ask again soon rather than after librdkafka's 500 ms default.
        .set("fetch.wait.max.ms", "100")
        .set("statistics.interval.ms", "5000");
    for (k, v) in common.iter().chain(extra) {
        c.set(k, v);
    }
    c
}

/// librdkafka settings for the producer: ours, then the pass-through ones.
pub fn producer_config(
    brokers: &str,
    common: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // Idempotent: retries never duplicate or reorder within a partition.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Never give up on a record by itself: a broker outage stalls the
        // pipeline (bounded by max_in_flight) instead of failing deliveries.
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5")
        .set("statistics.interval.ms", "5000");
    for (k, v) in common.iter().chain(extra) {
        c.set(k, v);
    }
    c
}

/// What to do about a Kafka error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: try again (after a pause).
    Retriable,
    /// This record, as it is, can never go to its topic (too large, or not a
    /// valid record there): it goes to the dead-letter topic in a form that
    /// fits, and the pipeline goes on.
    Refused,
    /// The record can never be delivered as is: stop without committing it.
    Fatal,
}

/// Classify a production or delivery error.
pub fn classify(e: &KafkaError) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidRecord) => {
            ErrorClass::Refused
        }
        Some(
            C::InvalidMessage
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::Fatal
            | C::UnsupportedForMessageFormat
            | C::InvalidTopic
            | C::InvalidArgument
            | C::InvalidProducerEpoch
            | C::ProducerFenced
            | C::UnknownProducerId,
        ) => ErrorClass::Fatal,
        _ => ErrorClass::Retriable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_problems_are_fatal_and_the_rest_is_retried() {
        let large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(classify(&large), ErrorClass::Refused);
        let invalid = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord);
        assert_eq!(classify(&invalid), ErrorClass::Refused);
        let auth = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(classify(&auth), ErrorClass::Fatal);
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(classify(&down), ErrorClass::Retriable);
        let leader = KafkaError::MessageProduction(RDKafkaErrorCode::NotLeaderForPartition);
        assert_eq!(classify(&leader), ErrorClass::Retriable);
    }

    #[test]
    fn offsets_are_never_committed_by_librdkafka_itself() {
        let c = consumer_config("b:9092", "g", &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        let p = producer_config("b:9092", &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(p.get("enable.idempotence"), Some("true"));
    }
}
