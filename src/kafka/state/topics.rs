//! The state topics checked at start, with every problem named: both exist,
//! the campaign table is compacted, and the exposure topic keeps records at
//! least as long as the policy's window (else a restore cannot rebuild it).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use tracing::warn;

use crate::config::Config;
use crate::policy::CompiledPolicy;

/// Check the campaigns and exposure topics. A broker that cannot describe
/// topic configs is logged and let through (the checks it allows still ran).
pub async fn check_topics(config: &Config, policy: &CompiledPolicy) -> Result<(), Vec<String>> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.kafka.brokers);
    for (k, v) in &config.kafka.common {
        cc.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = cc
        .create()
        .map_err(|e| vec![format!("admin client: {e}")])?;
    let problems = missing(&admin, config)?;
    if !problems.is_empty() {
        return Err(problems);
    }
    if !config.state.check_topic_configs {
        return Ok(());
    }
    let problems = unfit(&admin, config, policy).await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The state topics that do not exist.
fn missing(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
) -> Result<Vec<String>, Vec<String>> {
    let t = &config.kafka.topics;
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| {
            vec![format!(
                "kafka.brokers {:?}: cannot read metadata: {e}",
                config.kafka.brokers
            )]
        })?;
    let mut problems = Vec::new();
    for (field, name, how) in [
        (
            "kafka.topics.campaigns",
            &t.campaigns,
            "compacted: cleanup.policy=compact",
        ),
        (
            "kafka.topics.exposure",
            &t.exposure,
            "retention.ms at least the policy's window",
        ),
    ] {
        let exists = md
            .topics()
            .iter()
            .any(|x| x.name() == name && x.error().is_none() && !x.partitions().is_empty());
        if !exists {
            problems.push(format!(
                "{field}: topic {name:?} does not exist; create it ({how}), keyed by campaign id"
            ));
        }
    }
    Ok(problems)
}

/// A campaign table that is not compacted; an exposure topic that keeps
/// records for less than the window.
async fn unfit(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
    policy: &CompiledPolicy,
) -> Vec<String> {
    let t = &config.kafka.topics;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(3)));
    let topics = [
        ResourceSpecifier::Topic(&t.campaigns),
        ResourceSpecifier::Topic(&t.exposure),
    ];
    let results = match admin.describe_configs(&topics, &opts).await {
        Ok(r) => r,
        Err(e) => {
            warn!(target: "fairgate::state", error = %e, "cannot describe the state topics' configs; compaction and retention not checked");
            return Vec::new();
        }
    };
    let mut problems = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let name = if i == 0 { &t.campaigns } else { &t.exposure };
        let res = match r {
            Ok(res) => res,
            Err(e) => {
                warn!(target: "fairgate::state", topic = %name, error = %e, "cannot describe this topic's config; not checked");
                continue;
            }
        };
        let value = |k: &str| res.get(k).and_then(|e| e.value.clone());
        if i == 0 {
            let cleanup = value("cleanup.policy").unwrap_or_default();
            let retention = value("retention.ms").and_then(|v| v.parse::<i64>().ok());
            problems.extend(table_topic_problem(name, &cleanup, retention));
        } else if let Some(ms) = value("retention.ms").and_then(|v| v.parse::<i64>().ok()) {
            let need = policy.window_ms.saturating_add(policy.max_future_ms);
            if ms >= 0 && ms < need {
                problems.push(format!(
                    "kafka.topics.exposure: topic {name:?} keeps records {ms} ms (retention.ms), less than the policy's window plus max_future ({need} ms): a restore could not rebuild the windows"
                ));
            }
        }
    }
    problems
}

/// What is wrong with the campaign table's topic config, if anything. It
/// must be compacted, and not also deleted by age: a campaign without
/// traffic (a paused campaign someone force-blocked) has its row written
/// once, and deleting it by age would forget the override.
fn table_topic_problem(name: &str, cleanup: &str, retention_ms: Option<i64>) -> Option<String> {
    let has = |p: &str| cleanup.split(',').any(|c| c.trim() == p);
    if !has("compact") {
        return Some(format!(
            "kafka.topics.campaigns: topic {name:?} has cleanup.policy={cleanup:?}; it must be compacted (cleanup.policy=compact), or old rows pile up and forgotten ones come back"
        ));
    }
    match retention_ms {
        Some(ms) if has("delete") && ms >= 0 => Some(format!(
            "kafka.topics.campaigns: topic {name:?} has cleanup.policy={cleanup:?} with retention.ms={ms}: rows not rewritten for that long (a campaign without traffic, and its override) would be deleted; use cleanup.policy=compact (or retention.ms=-1)"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::table_topic_problem;

    #[test]
    fn the_campaign_table_must_be_compacted_and_not_deleted_by_age() {
        assert_eq!(table_topic_problem("t", "compact", Some(604_800_000)), None);
        assert_eq!(table_topic_problem("t", "compact,delete", Some(-1)), None);
        let deleted = table_topic_problem("t", "delete", Some(1000)).unwrap();
        assert!(deleted.contains("must be compacted"), "{deleted}");
        let both = table_topic_problem("t", "compact, delete", Some(604_800_000)).unwrap();
        assert!(both.contains("retention.ms=604800000"), "{both}");
    }
}
