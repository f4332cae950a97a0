//! The shadow's sample of changed decisions, on `kafka.topics.shadow`
//! (optional; unset, nothing is sampled).
//!
//! For a decision the shadow policy would change, one record: the decision
//! and campaign ids, the kinds of change, whether the published record would
//! differ, the two policy versions and where the input record is. Never a
//! value of the decision: nothing a policy strips can be in it (README "The
//! shadow sample").
//!
//! Bounded and best-effort: at most `pipeline.shadow_sample_per_sec`
//! records a second (a token bucket of that size, so a candidate that
//! changes everything cannot flood the topic); beyond, the sample is
//! dropped and counted. The records go through a producer of their own
//! with a small queue that never blocks: a full queue drops the sample, a
//! failed delivery is counted and logged; neither touches the pipeline,
//! whose records, offsets and errors are its own.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock as RateClock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use serde::Serialize;
use tracing::warn;

use super::client::producer_config;
use crate::config::Config;
use crate::core::diff::Kind;
use crate::core::guard::{Judgement, headers};
use crate::core::shadow::{Shadow, ShadowJudged};
use crate::metrics::ShadowSampleMetrics;

/// The format name and version of a sample record.
pub const FORMAT: &str = "fairgate-shadow-sample/1";
/// Ids are cut to this many bytes (at a character boundary), as headers are.
pub const MAX_ID_BYTES: usize = 1024;

/// One sample record's value (JSON).
#[derive(Debug, Serialize)]
pub struct SampleRecord<'a> {
    pub format: &'static str,
    /// The decision's `id`.
    pub decision: &'a str,
    /// The campaign id (the published record's key).
    pub campaign: &'a str,
    /// The kinds of change, in the order of `fairgate diff`'s `changes`.
    pub changes: Vec<&'static str>,
    /// The published record would go to another topic or hold other bytes.
    pub published_differs: bool,
    pub live_policy: &'a str,
    pub shadow_policy: &'a str,
    /// Where the input record is.
    pub input_partition: i32,
    pub input_offset: i64,
}

/// `s` cut to at most [`MAX_ID_BYTES`] at a character boundary.
fn capped(s: &str) -> &str {
    &s[..s.floor_char_boundary(MAX_ID_BYTES)]
}

/// The sample record of a changed decision: its key and value; none when
/// the shadow changed nothing.
pub fn sample_record(
    live: &Judgement,
    shadow: &ShadowJudged,
    shadow_policy: &str,
    partition: i32,
    offset: i64,
) -> Option<(Vec<u8>, Vec<u8>)> {
    if !shadow.compared.changed() {
        return None;
    }
    let id = live
        .headers
        .iter()
        .find(|(k, _)| *k == headers::DECISION_ID)
        .map_or("", |(_, v)| v.as_ref());
    let key = live.key.as_deref().unwrap_or_default();
    let campaign = String::from_utf8_lossy(key);
    let record = SampleRecord {
        format: FORMAT,
        decision: capped(id),
        campaign: capped(&campaign),
        changes: Kind::ALL
            .into_iter()
            .filter(|&k| shadow.compared.kinds[k as usize])
            .map(Kind::as_str)
            .collect(),
        published_differs: shadow.compared.published_differs,
        live_policy: &live.facts.policy_version,
        shadow_policy,
        input_partition: partition,
        input_offset: offset,
    };
    let value = serde_json::to_vec(&record).expect("a sample record serialises");
    Some((capped(&campaign).as_bytes().to_vec(), value))
}

type Limiter<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as RateClock>::Instant>>;

/// The rate limit on samples: a bucket of `per_sec` tokens refilled at
/// `per_sec` a second.
pub struct Bucket<C: RateClock = DefaultClock> {
    limiter: Limiter<C>,
}

impl<C: RateClock> Bucket<C> {
    pub fn with_clock(per_sec: u32, clock: C) -> Bucket<C> {
        let n = NonZeroU32::new(per_sec.max(1)).expect("at least 1");
        Bucket {
            limiter: RateLimiter::direct_with_clock(Quota::per_second(n), clock),
        }
    }

    /// Take a token, if one is left.
    pub fn take(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

/// Counts deliveries; logs a failure at most every ten seconds (topic and
/// error only: a sample's content is never logged).
struct SampleCtx {
    metrics: ShadowSampleMetrics,
    topic: String,
    last_warned: Mutex<Option<Instant>>,
}

impl ClientContext for SampleCtx {}

impl ProducerContext for SampleCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.metrics.published.inc(),
            Err((e, _)) => {
                self.metrics.failed.inc();
                self.warn(e);
            }
        }
    }
}

impl SampleCtx {
    fn warn(&self, e: &KafkaError) {
        let mut last = self.last_warned.lock();
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            warn!(target: "fairgate::shadow", topic = %self.topic, error = %e, "shadow sample not delivered (counted in fairgate_shadow_samples_total{{result=\"failed\"}}; the pipeline is not affected)");
        }
    }
}

/// The shadow sample publisher: rate limit, then a producer of its own.
pub struct ShadowSample {
    producer: ThreadedProducer<SampleCtx>,
    topic: String,
    bucket: Bucket,
    shadow: Arc<Shadow>,
    metrics: ShadowSampleMetrics,
}

impl ShadowSample {
    /// The publisher for `kafka.topics.shadow`, when it is set.
    pub fn start(
        config: &Config,
        shadow: Arc<Shadow>,
        metrics: ShadowSampleMetrics,
    ) -> Result<Option<ShadowSample>, KafkaError> {
        let Some(topic) = config.kafka.topics.shadow.clone() else {
            return Ok(None);
        };
        let per_sec = config.pipeline.shadow_sample_per_sec;
        let k = &config.kafka;
        let queue = (per_sec.saturating_mul(10)).max(1_000).to_string();
        let producer = producer_config(&k.brokers, &k.common, &k.producer)
            // Best-effort: no idempotence, a bounded wait, a small queue.
            .set("enable.idempotence", "false")
            .set("acks", "1")
            .set("message.timeout.ms", "30000")
            .set("queue.buffering.max.messages", &queue)
            .set("linger.ms", "100")
            .create_with_context(SampleCtx {
                metrics: metrics.clone(),
                topic: topic.clone(),
                last_warned: Mutex::new(None),
            })?;
        Ok(Some(ShadowSample {
            producer,
            topic,
            bucket: Bucket::with_clock(per_sec, DefaultClock::default()),
            shadow,
            metrics,
        }))
    }

    /// A decision the shadow judged: sampled when it changed and the rate
    /// allows. Never blocks, never fails.
    pub fn offer(&self, live: &Judgement, shadow: &ShadowJudged, partition: i32, offset: i64) {
        if !shadow.compared.changed() {
            return;
        }
        if !self.bucket.take() {
            self.metrics.rate_limited.inc();
            return;
        }
        let version = self.shadow.version().unwrap_or_default();
        let Some((key, value)) = sample_record(live, shadow, &version, partition, offset) else {
            return;
        };
        let rec = BaseRecord::to(&self.topic).key(&key).payload(&value);
        if let Err((e, _)) = self.producer.send(rec) {
            match e.rdkafka_error_code() {
                Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => self.metrics.queue_full.inc(),
                _ => {
                    self.metrics.failed.inc();
                    self.producer.context().warn(&e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::diff::Compared;
    use crate::core::guard::{Facts, Route};
    use governor::clock::FakeRelativeClock;

    #[test]
    fn the_bucket_allows_its_rate_and_no_more() {
        let clock = FakeRelativeClock::default();
        let b = Bucket::with_clock(5, clock.clone());
        let taken = (0..100).filter(|_| b.take()).count();
        assert_eq!(taken, 5, "a burst of at most one second's worth");
        clock.advance(Duration::from_millis(400));
        assert_eq!(
            (0..100).filter(|_| b.take()).count(),
            2,
            "5 a second refill"
        );
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            (0..100).filter(|_| b.take()).count(),
            5,
            "never more than the bucket"
        );
    }

    fn judged(id: &str) -> Judgement {
        Judgement {
            route: Route::Output,
            key: Some(b"cmp-1".to_vec()),
            headers: vec![
                (headers::DECISION_ID, id.to_string().into()),
                (headers::REMOVED, "/user/id".into()),
            ],
            payload: b"{\"user\":{\"id\":\"u-secret\"}}".to_vec(),
            alert: None,
            facts: Facts {
                policy_version: "live-v".into(),
                ..Facts::default()
            },
        }
    }

    #[test]
    fn a_sample_holds_ids_and_kinds_only() {
        let mut compared = Compared::default();
        let unchanged = ShadowJudged {
            compared,
            route: Route::Output,
        };
        assert!(sample_record(&judged("d-1"), &unchanged, "s", 0, 1).is_none());
        compared.kinds[Kind::Consent as usize] = true;
        compared.kinds[Kind::Removed as usize] = true;
        compared.published_differs = true;
        let changed = ShadowJudged {
            compared,
            route: Route::Blocked,
        };
        let (key, value) = sample_record(&judged("d-1"), &changed, "shadow-v", 3, 42).unwrap();
        assert_eq!(key, b"cmp-1");
        let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"format": FORMAT, "decision": "d-1", "campaign": "cmp-1",
                "changes": ["consent", "removed"], "published_differs": true,
                "live_policy": "live-v", "shadow_policy": "shadow-v",
                "input_partition": 3, "input_offset": 42})
        );
        let text = String::from_utf8(value).unwrap();
        assert!(!text.contains("u-secret") && !text.contains("/user/id"));
        let long = "é".repeat(2_000);
        let (_, value) = sample_record(&judged(&long), &changed, "s", 0, 0).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(v["decision"].as_str().unwrap().len(), MAX_ID_BYTES);
    }
}
