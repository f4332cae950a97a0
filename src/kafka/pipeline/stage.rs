//! What the pipeline does to each record: a [`Stage`]. The service's stage is
//! the guard ([`GuardStage`]); the end-to-end benchmark brings its own
//! pass-through.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{error, info};

use super::records::{Out, Role, alert_out};
use crate::clock::Clock;
use crate::core::decision::{Decision, Reject};
use crate::core::guard::{Guard, Judgement, Now, Route};
use crate::core::shadow::Shadow;
use crate::fairness::alert::AlertEvent;
use crate::kafka::shadow_sample::ShadowSample;
use crate::metrics::Metrics;

/// A record as read by [`Decision::parse`], once for the live and the shadow guard.
type Read<'t> = Result<Decision<'t>, Reject>;

/// One input record, as a judge thread hands it to the stage.
#[derive(Debug)]
pub struct Input {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The first value of each header named by [`Stage::input_headers`], in
    /// that order (empty when it names none).
    pub headers: Vec<(&'static str, String)>,
}

/// One record a stage wants produced.
#[derive(Debug)]
pub struct Produced {
    pub out: Out,
    /// The event time it stands for (epoch ms), for the publish-lag histogram.
    pub event_ts_ms: Option<i64>,
}

/// What the pipeline does to each input record.
///
/// Called on the judge threads, one partition's records in order, so it may
/// block briefly but must not wait on the pipeline. The pipeline produces
/// what it returns, in order, and commits the input once all of it is
/// acknowledged; returning nothing lets the input be committed as is.
pub trait Stage: Send + Sync + 'static {
    /// The records one input becomes.
    fn process(&self, input: Input) -> Vec<Produced>;

    /// The policy version stamped on alerts the pipeline publishes for
    /// others (overrides).
    fn policy_version(&self) -> String;

    /// Input headers this stage reads. Only these are copied into
    /// [`Input::headers`]; none by default, so nothing is read for them.
    fn input_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether every input must also wait for the next [`Stage::flush`]
    /// before it is committed (the stage counts it in what it flushes).
    fn holds(&self) -> bool {
        false
    }

    /// Records to publish now for everything processed so far (the
    /// exposure deltas): called every `pipeline.exposure_flush_ms`, sooner
    /// when many inputs wait, and before partitions move or the run ends.
    fn flush(&self) -> Vec<Out> {
        Vec::new()
    }
}

/// The guard as the pipeline's stage: each record is judged and routed, and
/// a campaign's change of state is also published on the alerts topic.
pub struct GuardStage {
    guard: Arc<Guard>,
    /// Names this instance in its deltas (diagnosis only).
    instance: String,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    /// Alerts to hand to other sinks (webhook) as well.
    alert_fanout: Option<mpsc::Sender<AlertEvent>>,
    /// The shadow policy, judged beside the live one and only counted.
    shadow: Option<Arc<Shadow>>,
    /// Where changed decisions are sampled (`kafka.topics.shadow`).
    shadow_sample: Option<Arc<ShadowSample>>,
}

impl GuardStage {
    pub fn new(
        guard: Arc<Guard>,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
        alert_fanout: Option<mpsc::Sender<AlertEvent>>,
    ) -> GuardStage {
        GuardStage {
            guard,
            instance: instance_name(),
            metrics,
            clock,
            alert_fanout,
            shadow: None,
            shadow_sample: None,
        }
    }

    /// Judge every record under the shadow policy too, when there is one
    /// (it is looked up per record: turning it on or off is a reload).
    pub fn with_shadow(mut self, shadow: Arc<Shadow>) -> GuardStage {
        self.shadow = Some(shadow);
        self
    }

    /// Sample the decisions the shadow policy would change (best-effort).
    pub fn with_shadow_sample(mut self, sample: Arc<ShadowSample>) -> GuardStage {
        self.shadow_sample = Some(sample);
        self
    }

    /// The record judged under the shadow policy as well, from the same
    /// reading, and counted; what is published is `live`, untouched. A
    /// failure there costs only the count.
    fn shadow(&self, live: &Judgement, input: &Input, read: &Read<'_>, now: Now) {
        let Some(shadow) = &self.shadow else { return };
        let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shadow.judge(
                &self.guard,
                live,
                input.key.as_deref(),
                &input.payload,
                read,
                now,
            )
        }));
        match judged {
            Ok(Some(s)) => {
                self.metrics.shadow.observe(&s);
                if let Some(sample) = &self.shadow_sample {
                    sample.offer(live, &s, input.partition, input.offset);
                }
            }
            Ok(None) => {}
            Err(_) => {
                error!(target: "fairgate::kafka", partition = input.partition, offset = input.offset, "the shadow policy's guard failed on a record (a bug); not counted");
            }
        }
    }

    /// judge never panics on input (property-tested); should a bug make it,
    /// the record goes to the dead-letter topic instead of taking the thread
    /// down, and every restart with it. Returns the reading too, when the
    /// guard got through (the shadow judges from it).
    fn judge<'i>(&self, input: &'i Input, now: Now) -> (Judgement, Option<Read<'i>>) {
        let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let read = Decision::parse(&input.payload);
            let j = self
                .guard
                .judge_read(input.key.as_deref(), &input.payload, &read, now);
            (j, read)
        }));
        match judged {
            Ok((j, read)) => (j, Some(read)),
            Err(_) => {
                error!(target: "fairgate::kafka", partition = input.partition, offset = input.offset, "the guard failed on a record (a bug); it goes to the dead-letter topic");
                let j = self
                    .guard
                    .internal_error(input.key.as_deref(), &input.payload);
                (j, None)
            }
        }
    }

    /// A campaign changed state: log it, and hand it to the other sinks.
    fn announce(&self, a: AlertEvent) {
        info!(target: "fairgate::alerts", campaign = %a.campaign, from = a.old_state.as_str(), to = a.new_state.as_str(), measure = ?a.measure.map(|m| m.as_str()), value = ?a.value, "campaign state changed");
        if let Some(f) = &self.alert_fanout
            && f.try_send(a).is_err()
        {
            self.metrics
                .alerts
                .with_label_values(&["webhook", "dropped"])
                .inc();
        }
    }
}

impl Stage for GuardStage {
    /// The routed record, then an alert when the record moved its
    /// campaign's state.
    fn process(&self, input: Input) -> Vec<Produced> {
        let now = Now::At(self.clock.now_ms());
        let (j, read) = self.judge(&input, now);
        self.metrics.observe(&j);
        if let Some(read) = &read {
            self.shadow(&j, &input, read, now);
        }
        let role = match j.route {
            Route::Output => Role::Output,
            Route::Blocked => Role::Blocked,
            Route::DeadLetter => Role::DeadLetter,
        };
        let mut produced = vec![Produced {
            out: Out {
                role,
                key: j.key,
                headers: j.headers,
                payload: j.payload,
            },
            event_ts_ms: j.facts.ts_ms,
        }];
        if let Some(a) = j.alert {
            produced.push(Produced {
                out: alert_out(&a, &j.facts.policy_version),
                event_ts_ms: None,
            });
            self.announce(a);
        }
        produced
    }

    fn policy_version(&self) -> String {
        self.guard.live().version.to_string()
    }

    fn holds(&self) -> bool {
        self.guard.shared().is_some()
    }

    /// The decisions counted since the last flush, as deltas keyed by campaign.
    fn flush(&self) -> Vec<Out> {
        let Some(shared) = self.guard.shared() else {
            return Vec::new();
        };
        shared
            .counter()
            .take(&self.instance)
            .iter()
            .map(|d| Out {
                role: Role::Exposure,
                key: Some(d.campaign.as_bytes().to_vec()),
                headers: Vec::new(),
                payload: crate::fairness::wire::encode_delta(d),
            })
            .collect()
    }
}

/// This instance's name in its deltas: the host and the process id.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "fairgate".into());
    format!("{host}/{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::policy::CompiledPolicy;

    fn stage() -> GuardStage {
        let policy = CompiledPolicy::from_toml(include_str!("../../../config/policy.toml"))
            .expect("the shipped policy compiles");
        let metrics = Metrics::new(prometheus::Registry::new(), 10);
        GuardStage::new(
            Arc::new(Guard::new(policy)),
            metrics,
            Arc::new(SystemClock),
            None,
        )
    }

    fn input(payload: &[u8]) -> Input {
        Input {
            partition: 0,
            offset: 7,
            key: Some(b"original-key".to_vec()),
            payload: payload.to_vec(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_broken_record_becomes_one_dead_letter_with_its_original_bytes() {
        let s = stage();
        assert!(
            s.input_headers().is_empty(),
            "the guard reads no input header"
        );
        let produced = s.process(input(b"{\"id\":\"dec-1\",\"campaign\":"));
        assert_eq!(produced.len(), 1);
        let out = &produced[0].out;
        assert_eq!(out.role, Role::DeadLetter);
        assert_eq!(out.payload, b"{\"id\":\"dec-1\",\"campaign\":");
        assert_eq!(out.key.as_deref(), Some(&b"original-key"[..]));
        assert!(out.headers.iter().any(|(k, _)| *k == "fairgate-error-kind"));
        assert_eq!(s.policy_version(), "2026-11-23.1");
    }
}
