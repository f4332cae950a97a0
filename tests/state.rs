//! Campaign state on Kafka, against the test broker (nisshi): several
//! instances of `fairgate run` share one view of every campaign through the
//! campaigns table and the exposure topic, whatever the input's key, and
//! keep it across restarts, crashes and overrides. Every test has its own
//! topics and groups.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use fairgate::Guard;
use fairgate::core::guard::Now;
use fairgate::policy::CompiledPolicy;
use serde_json::Value;

/// Only a hang takes this long.
const HANG: Duration = Duration::from_secs(180);

fn campaign(port: u16, id: &str) -> Option<Value> {
    let (status, body) = http(port, "GET", &format!("/v1/campaigns/{id}"), None);
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// One instance's files: its config (HTTP on a port of its own) and log.
struct Instance {
    config: PathBuf,
    port: u16,
    dir: PathBuf,
    name: String,
    runs: usize,
}

impl Instance {
    fn new(t: &TestTopics, dir: &Path, policy: &Path, name: &str) -> Instance {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            t.config_toml(policy, 5000, 10).replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{port}\""),
            ),
        )
        .unwrap();
        Instance {
            config,
            port,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            runs: 0,
        }
    }

    fn start(&mut self) -> Child {
        self.runs += 1;
        Child::start(
            &self.config,
            self.dir.join(format!("{}-{}.log", self.name, self.runs)),
        )
    }

    /// Wait until `/readyz` says ready (the table is read, input assigned).
    fn wait_ready(&self) {
        let start = Instant::now();
        while http(self.port, "GET", "/readyz", None).0 != 200 {
            assert!(
                start.elapsed() < HANG,
                "hang guard: {} never ready",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn write_policy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, edit(POLICY.to_string())).unwrap();
    p
}

/// Decisions over `campaigns` campaigns (the first `skewed` skewed), each
/// keyed by a random id, as an ad platform keys by request.
fn random_keyed(
    n: usize,
    campaigns: usize,
    skewed: usize,
    seed: u64,
) -> Vec<(String, String, Vec<u8>)> {
    let now = fairgate::clock::Clock::now_ms(&fairgate::clock::SystemClock);
    let mut s = fairgate::tools::synth::Synth::new(seed, campaigns, skewed, now);
    // Ids unique across calls: `collect` counts distinct ids.
    s.id_prefix = format!("dec-{seed}x");
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let (_campaign, bytes) = s.next(now + i as i64 / 10);
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let id = v["id"].as_str().unwrap().to_string();
            (id, format!("req-{:016x}", rng.u64(..)), bytes)
        })
        .collect()
}

/// Per campaign, per dimension and group: (considered, selected), counted
/// directly by an in-process guard that keeps its own windows.
fn direct_counts(
    policy: &Path,
    records: &[(String, String, Vec<u8>)],
) -> HashMap<String, Vec<(String, String, u64, u64)>> {
    let g = Guard::new(CompiledPolicy::load(policy).unwrap());
    let now = fairgate::clock::Clock::now_ms(&fairgate::clock::SystemClock);
    for (_, k, b) in records {
        g.judge(Some(k.as_bytes()), b, Now::At(now));
    }
    g.campaigns(None)
        .into_iter()
        .map(|r| {
            let cells = r
                .dimensions
                .iter()
                .flat_map(|d| {
                    d.groups.iter().map(|gr| {
                        (
                            d.dimension.clone(),
                            gr.group.clone(),
                            gr.considered,
                            gr.selected,
                        )
                    })
                })
                .collect();
            (r.campaign, cells)
        })
        .collect()
}

fn counts_of(report: &Value) -> Vec<(String, String, u64, u64)> {
    report["dimensions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| {
            let dim = d["dimension"].as_str().unwrap_or("").to_string();
            d["groups"].as_array().into_iter().flatten().map(move |g| {
                (
                    dim.clone(),
                    g["group"].as_str().unwrap_or("").to_string(),
                    g["considered"].as_u64().unwrap_or(0),
                    g["selected"].as_u64().unwrap_or(0),
                )
            })
        })
        .collect()
}

/// Three instances, input keyed at random over 6 partitions, one skewed
/// campaign with half of all decisions: every campaign's counts in the
/// table equal a direct count of the input on all three instances (counts
/// merged across instances and judge threads, never split), the hot
/// campaign is flagged, and the three `/v1/campaigns` listings agree.
#[test]
fn three_instances_keyed_at_random_share_one_count_of_every_campaign() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("state-three");
    rt.block_on(t.create(6));
    let dir = scratch("state-three");
    let policy = write_policy(&dir, |p| p);
    let mut instances: Vec<Instance> = (0..3)
        .map(|i| Instance::new(&t, &dir, &policy, &format!("i{i}")))
        .collect();
    let _running: Vec<Child> = instances.iter_mut().map(Instance::start).collect();
    let t0 = Instant::now();
    for i in &instances {
        i.wait_ready();
    }
    eprintln!("ready after {:?}", t0.elapsed());
    // Half the decisions are the skewed campaign's (two campaigns, one
    // skewed), the rest spread over more campaigns.
    let mut records = random_keyed(6_000, 2, 1, 71);
    records.extend(random_keyed(6_000, 10, 0, 72));
    produce(&t.input, &records);
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(3),
        HANG,
    );
    assert_eq!(seen.len(), records.len(), "every decision routed once");
    eprintln!("routed after {:?}", t0.elapsed());
    let direct = direct_counts(&policy, &records);
    assert!(direct.len() >= 11, "{} campaigns", direct.len());
    let start = Instant::now();
    'converge: loop {
        assert!(
            start.elapsed() < HANG,
            "hang guard: the table never matched the direct count"
        );
        for i in &instances {
            for (id, cells) in &direct {
                match campaign(i.port, id) {
                    Some(r) if &counts_of(&r) == cells => {}
                    _ => {
                        std::thread::sleep(Duration::from_millis(250));
                        continue 'converge;
                    }
                }
            }
        }
        break;
    }
    eprintln!("converged after {:?}", t0.elapsed());
    let hot = campaign(instances[0].port, "cmp-skewed-01").unwrap();
    assert_eq!(hot["state"], "flagged", "{hot}");
    // The listings agree, campaign by campaign, once refreshed.
    let listing = |port| {
        let (s, body) = http(port, "GET", "/v1/campaigns?limit=1000", None);
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["campaign"].as_str().unwrap().to_string(),
                    c["state"].clone(),
                    counts_of(c),
                )
            })
            .collect::<Vec<_>>()
    };
    let first = listing(instances[0].port);
    assert_eq!(first.len(), direct.len());
    for i in &instances[1..] {
        assert_eq!(
            listing(i.port),
            first,
            "{} lists the same campaigns",
            i.name
        );
    }
}

fn state_of(port: u16, id: &str) -> Option<String> {
    campaign(port, id).and_then(|r| r["state"].as_str().map(str::to_string))
}

fn wait_state(port: u16, id: &str, want: &str) {
    let start = Instant::now();
    while state_of(port, id).as_deref() != Some(want) {
        assert!(
            start.elapsed() < HANG,
            "hang guard: {id} never {want}: {:?}",
            campaign(port, id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn total_considered(report: &Value) -> u64 {
    report["dimensions"][0]["considered"].as_u64().unwrap_or(0)
}

/// Enforce mode, and a skewed campaign blocked after 1 s of sustained skew.
fn enforcing(p: String) -> String {
    let p = p.replace("mode = \"monitor\"", "mode = \"enforce\"");
    let mut out = String::new();
    for line in p.lines() {
        if line.trim_start().starts_with("block_after_secs") {
            out.push_str("block_after_secs = 1\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Where each decision id landed.
fn routes(seen: &[Seen], t: &TestTopics) -> HashMap<String, String> {
    seen.iter()
        .filter(|s| s.topic != t.alerts)
        .filter_map(|s| Some((id_of(&s.payload)?, s.topic.clone())))
        .collect()
}

/// Every instance restarted: a campaign blocked by its measures before is
/// blocked on its first decision after, an override set before still holds,
/// and the windows hold what was counted before the restart.
#[test]
fn restarting_every_instance_keeps_blocks_overrides_and_windows() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("state-restart");
    rt.block_on(t.create(3));
    let dir = scratch("state-restart");
    let policy = write_policy(&dir, enforcing);
    let mut instances: Vec<Instance> = (0..2)
        .map(|i| Instance::new(&t, &dir, &policy, &format!("i{i}")))
        .collect();
    let mut running: Vec<Child> = instances.iter_mut().map(Instance::start).collect();
    for i in &instances {
        i.wait_ready();
    }
    let (a, b) = (instances[0].port, instances[1].port);
    // Skewed enough to be blocked (severe at once, or flagged and then
    // sustained for block_after_secs: more decisions keep it assessed).
    let mut before = random_keyed(5_000, 2, 1, 81);
    produce(&t.input, &before);
    let start = Instant::now();
    let mut wave = 0;
    while state_of(b, "cmp-skewed-01").as_deref() != Some("blocked") {
        assert!(
            start.elapsed() < HANG,
            "hang guard: never blocked: {:?}",
            campaign(b, "cmp-skewed-01")
        );
        std::thread::sleep(Duration::from_millis(1500));
        wave += 1;
        let more = random_keyed(300, 2, 1, 1000 + wave);
        produce(&t.input, &more);
        before.extend(more);
    }
    // A campaign manager blocks the other campaign on instance A.
    let (s, body) = http(
        a,
        "POST",
        "/v1/campaigns/cmp-0002/override",
        Some(r#"{"action":"force_block","by":"ana","reason":"checking its audience"}"#),
    );
    assert_eq!(s, 200, "{body}");
    wait_state(b, "cmp-0002", "blocked");
    collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        before.len(),
        Duration::from_secs(2),
        HANG,
    );
    let counted_before = total_considered(&campaign(b, "cmp-skewed-01").unwrap());
    assert!(counted_before > 0);

    for c in &mut running {
        c.term();
    }
    for c in &mut running {
        assert!(
            c.wait_exit(Duration::from_secs(30)).is_some(),
            "{}",
            c.log_text()
        );
    }
    drop(running);
    let _running: Vec<Child> = instances.iter_mut().map(Instance::start).collect();
    for i in &instances {
        i.wait_ready();
    }
    // Before any new decision: the table read at start says so on both.
    for port in [a, b] {
        assert_eq!(state_of(port, "cmp-skewed-01").as_deref(), Some("blocked"));
        let r = campaign(port, "cmp-0002").unwrap();
        assert_eq!(r["state"], "blocked", "{r}");
        assert_eq!(r["override"]["action"], "force_block", "{r}");
    }
    let after = random_keyed(2_000, 2, 1, 83);
    produce(&t.input, &after);
    let all: Vec<_> = before.iter().chain(&after).cloned().collect();
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        all.len(),
        Duration::from_secs(3),
        HANG,
    );
    let landed = routes(&seen, &t);
    for (id, _, bytes) in &after {
        let v: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let topic = landed.get(id).unwrap_or_else(|| panic!("{id} not routed"));
        if topic != &t.dead_letter {
            assert_eq!(
                topic, &t.blocked,
                "{id} of {} after the restart",
                v["campaign"]["id"]
            );
        }
    }
    // The window holds what was counted before the restart, and after.
    let direct = direct_counts(&policy, &all);
    let start = Instant::now();
    loop {
        let r = campaign(a, "cmp-skewed-01").unwrap();
        if counts_of(&r) == direct["cmp-skewed-01"] {
            assert!(total_considered(&r) > counted_before);
            break;
        }
        assert!(
            start.elapsed() < HANG,
            "hang guard: window never complete: {r}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An override posted to one instance changes routing on another within
/// moments (p50 and max printed), and its audit alert is emitted once.
#[test]
fn an_override_on_one_instance_routes_on_another() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("state-override");
    rt.block_on(t.create(3));
    let dir = scratch("state-override");
    let policy = write_policy(&dir, |p| p);
    let mut instances: Vec<Instance> = (0..2)
        .map(|i| Instance::new(&t, &dir, &policy, &format!("i{i}")))
        .collect();
    let _running: Vec<Child> = instances.iter_mut().map(Instance::start).collect();
    for i in &instances {
        i.wait_ready();
    }
    let (a, b) = (instances[0].port, instances[1].port);
    let mut waits = Vec::new();
    let posts = 6;
    for k in 0..posts {
        let action = if k % 2 == 0 {
            "force_block"
        } else {
            "force_allow"
        };
        let body = format!(r#"{{"action":"{action}","by":"ana","reason":"try {k}"}}"#);
        let start = Instant::now();
        let (s, resp) = http(a, "POST", "/v1/campaigns/cmp-0001/override", Some(&body));
        assert_eq!(s, 200, "{resp}");
        loop {
            let r = campaign(b, "cmp-0001");
            if r.as_ref().is_some_and(|r| {
                r["override"]["action"] == action && r["override"]["reason"] == format!("try {k}")
            }) {
                break;
            }
            assert!(
                start.elapsed() < HANG,
                "hang guard: override {k} never reached B: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        waits.push(start.elapsed());
    }
    waits.sort();
    eprintln!(
        "override posted to A, seen by B's routing: p50 {:?}, max {:?} over {posts}",
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
    // The last override blocks cmp-0001 everywhere: decisions keyed at
    // random (read by both instances) all go to blocked.
    let (s, resp) = http(
        a,
        "POST",
        "/v1/campaigns/cmp-0001/override",
        Some(r#"{"action":"force_block","by":"ana","reason":"final"}"#),
    );
    assert_eq!(s, 200, "{resp}");
    assert!(resp.contains("\"applied\":true"), "{resp}");
    let start = Instant::now();
    while campaign(b, "cmp-0001").is_none_or(|r| r["override"]["reason"] != "final") {
        assert!(start.elapsed() < HANG);
        std::thread::sleep(Duration::from_millis(20));
    }
    let records: Vec<_> = random_keyed(3_000, 4, 0, 91)
        .into_iter()
        .filter(|(_, _, b)| String::from_utf8_lossy(b).contains("\"cmp-0001\""))
        .collect();
    assert!(records.len() > 300);
    produce(&t.input, &records);
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter, &t.alerts],
        records.len() + posts + 1,
        Duration::from_secs(3),
        HANG,
    );
    let landed = routes(&seen, &t);
    for (id, _, _) in &records {
        assert_eq!(landed.get(id), Some(&t.blocked), "{id}");
    }
    let overrides = seen
        .iter()
        .filter(|s| s.topic == t.alerts)
        .filter_map(|s| serde_json::from_slice::<Value>(&s.payload).ok())
        .filter(|v| v["kind"] == "override")
        .count();
    assert_eq!(overrides, posts + 1, "one audit alert per override");
}

/// The exposure partition a campaign's deltas go to, read off the topic.
fn exposure_partition(t: &TestTopics, campaign: &str) -> i32 {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &t.brokers)
        .set("group.id", unique("probe"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[&t.exposure]).unwrap();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < HANG,
            "no delta of {campaign} on the exposure topic"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200))
            && m.key() == Some(campaign.as_bytes())
        {
            return m.partition();
        }
    }
}

/// The exposure partitions an instance holds, from its log.
fn owned_partitions(log: &str) -> Vec<i64> {
    let mut owned: Vec<i64> = Vec::new();
    for v in log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let msg = v["fields"]["message"]
            .as_str()
            .or(v["message"].as_str())
            .unwrap_or("");
        let parts = v["fields"]["partitions"]
            .as_str()
            .or(v["partitions"].as_str())
            .unwrap_or("[]");
        let list: Vec<i64> = parts
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        if msg.starts_with("exposure partitions assigned") {
            owned.extend(list);
        } else if msg.starts_with("exposure partitions revoked") {
            owned.retain(|p| !list.contains(p));
        }
    }
    owned
}

/// SIGKILL the owner of a skewed campaign mid-run: another instance takes
/// its exposure partition over, rebuilds the window from the exposure
/// topic, and the campaign's state is unchanged. Prints the takeover time,
/// and how many decisions the crash counted twice (at least once: bounded
/// by the killed instance's in-flight limit).
#[test]
fn sigkill_the_owner_of_a_skewed_campaign_and_another_takes_over() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("state-sigkill");
    rt.block_on(t.create(3));
    let dir = scratch("state-sigkill");
    let policy = write_policy(&dir, |p| p);
    let mut instances: Vec<Instance> = (0..3)
        .map(|i| Instance::new(&t, &dir, &policy, &format!("i{i}")))
        .collect();
    let mut running: Vec<Child> = instances.iter_mut().map(Instance::start).collect();
    for i in &instances {
        i.wait_ready();
    }
    let mut records = random_keyed(6_000, 2, 1, 101);
    produce(&t.input, &records);
    wait_state(instances[0].port, "cmp-skewed-01", "flagged");
    let part = exposure_partition(&t, "cmp-skewed-01") as i64;
    let owner = (0..3)
        .find(|&i| owned_partitions(&running[i].log_text()).contains(&part))
        .unwrap_or_else(|| panic!("no instance owns exposure partition {part}"));
    let survivor = instances[(owner + 1) % 3].port;
    let before = campaign(survivor, "cmp-skewed-01").unwrap();
    let killed_at = fairgate::clock::Clock::now_ms(&fairgate::clock::SystemClock);
    let marks: Vec<usize> = running.iter().map(|c| c.log_text().len()).collect();
    let t0 = Instant::now();
    running[owner].kill9();
    // Decisions keep coming while the group notices.
    let mut took_over = None;
    for wave in 0..60u64 {
        let more = random_keyed(200, 2, 1, 200 + wave);
        produce(&t.input, &more);
        records.extend(more);
        if took_over.is_none() && replayed_elsewhere(&running, &marks, owner, part) {
            took_over = Some(t0.elapsed());
        }
        if took_over.is_some() && wave >= 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let took_over = took_over
        .unwrap_or_else(|| panic!("nobody took exposure partition {part} over and replayed it"));
    let after = campaign(survivor, "cmp-skewed-01").unwrap();
    assert_eq!(after["state"], "flagged", "state unchanged: {after}");
    assert_eq!(
        after["since_ms"], before["since_ms"],
        "the same flag, not a new one: {after}"
    );
    // Counts: every decision at least once; a crash counts at most the
    // killed instance's in-flight limit twice.
    collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(3),
        HANG,
    );
    let direct: u64 = direct_counts(&policy, &records)["cmp-skewed-01"]
        .iter()
        .filter(|c| c.0 == "sex")
        .map(|c| c.2)
        .sum();
    let start = Instant::now();
    let counted = loop {
        let r = campaign(survivor, "cmp-skewed-01").unwrap();
        let n = total_considered(&r);
        if n >= direct {
            break n;
        }
        assert!(
            start.elapsed() < HANG,
            "hang guard: counted {n} of {direct}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "owner killed at {killed_at}: partition {part} taken over after {took_over:?}; counted {counted} of {direct} decisions ({} twice)",
        counted - direct
    );
    assert!(
        counted - direct <= 5_000,
        "excess {} beyond max_in_flight",
        counted - direct
    );
}

/// Another live instance holds `part` and has replayed it since the kill
/// (its log says so after `marks`).
fn replayed_elsewhere(running: &[Child], marks: &[usize], killed: usize, part: i64) -> bool {
    running.iter().enumerate().any(|(i, c)| {
        let log = c.log_text();
        i != killed
            && owned_partitions(&log).contains(&part)
            && log[marks[i].min(log.len())..]
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| {
                    let f = if v["fields"].is_object() {
                        &v["fields"]
                    } else {
                        &v
                    };
                    f["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("exposure partition replayed"))
                        && f["partition"].as_i64() == Some(part)
                })
    })
}

/// Produce raw records (key, value; `None` a tombstone) and wait for them.
fn produce_raw_state(brokers: &str, topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let p: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .unwrap();
    for (k, v) in records {
        let mut r = BaseRecord::to(topic).key(k);
        if let Some(v) = v {
            r = r.payload(v);
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn metric(port: u16, line_prefix: &str) -> f64 {
    let (_, body) = http(port, "GET", "/metrics", None);
    body.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// Hostile writes to both state topics: garbage, records of an unknown
/// format version, rows and override commands forged without the state key.
/// Each is skipped, counted and logged; the instance keeps running; a
/// blocked campaign stays blocked (a write to a topic alone cannot unblock it).
#[test]
fn forged_and_broken_state_records_are_skipped_and_cannot_unblock_a_campaign() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("state-hostile");
    rt.block_on(t.create(2));
    let dir = scratch("state-hostile");
    let policy = write_policy(&dir, |p| p);
    let mut inst = Instance::new(&t, &dir, &policy, "i0");
    let mut child = inst.start();
    inst.wait_ready();
    let (s, body) = http(
        inst.port,
        "POST",
        "/v1/campaigns/cmp-0001/override",
        Some(r#"{"action":"force_block","by":"ana","reason":"under review"}"#),
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"applied\":true"), "{body}");
    let forged_row = format!(
        r#"{{"v":1,"kind":"campaign","mac":"AAAA","body":{}}}"#,
        serde_json::to_string(&campaign(inst.port, "cmp-0001").unwrap())
            .unwrap()
            .replace("\"blocked\"", "\"ok\"")
    );
    let k = |s: &str| s.as_bytes().to_vec();
    let v = |s: &str| Some(s.as_bytes().to_vec());
    produce_raw_state(
        &t.brokers,
        &t.campaigns,
        &[
            (k("cmp-0001"), Some(forged_row.into_bytes())),
            (
                k("cmp-0001"),
                v(r#"{"v":1,"kind":"campaign","body":{"campaign":"cmp-0001"}}"#),
            ),
            (k("cmp-0001"), v(r#"{"v":7,"kind":"campaign","body":{}}"#)),
            (k("cmp-0001"), v("not json at all")),
            (vec![0xff, 0xfe], v("{}")),
            (k("cmp-0001"), Some(vec![0u8; 100_000])),
        ],
    );
    let unsigned = r#"{"v":1,"kind":"override","body":{"id":"x1","campaign":"cmp-0001","action":"force_allow","by":"mallory","reason":"trust me","at_ms":9999999999999}}"#;
    let forged = r#"{"v":1,"kind":"override","mac":"bm90IGEgbWFj","body":{"id":"x2","campaign":"cmp-0001","action":"clear","by":"mallory","reason":"trust me","at_ms":9999999999999}}"#;
    produce_raw_state(
        &t.brokers,
        &t.exposure,
        &[
            (k("cmp-0001"), v(unsigned)),
            (k("cmp-0001"), v(forged)),
            (k("cmp-0001"), v(r#"{"v":2,"kind":"delta","body":{}}"#)),
            (
                k("cmp-0001"),
                v(
                    r#"{"v":1,"kind":"delta","body":{"campaign":"cmp-0002","category":"x","instance":"m","first_ms":0,"last_ms":0,"groups":8,"buckets":[]}}"#,
                ),
            ),
            (k("cmp-0001"), v("[[[[")),
            (k("cmp-0001"), None),
        ],
    );
    let start = Instant::now();
    let skipped = |topic: &str, result: &str| {
        metric(
            inst.port,
            &format!("fairgate_state_records_total{{result=\"{result}\",topic=\"{topic}\"}}"),
        )
    };
    while skipped("exposure", "bad_signature") < 2.0 || skipped("campaigns", "bad_signature") < 2.0
    {
        assert!(
            start.elapsed() < HANG,
            "hang guard: forged records never counted: {}",
            child.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(skipped("campaigns", "unknown_version") >= 1.0);
    assert!(
        skipped("campaigns", "malformed") >= 3.0,
        "garbage, a bad key, a huge value"
    );
    assert!(skipped("exposure", "unknown_version") >= 1.0);
    assert!(skipped("exposure", "wrong_key") >= 1.0);
    assert!(skipped("exposure", "malformed") >= 2.0);
    assert!(child.child.try_wait().unwrap().is_none(), "still running");
    let r = campaign(inst.port, "cmp-0001").unwrap();
    assert_eq!(r["state"], "blocked", "{r}");
    assert_eq!(r["override"]["by"], "ana", "{r}");
    // And routing agrees: its decisions go to blocked.
    let records: Vec<_> = random_keyed(800, 3, 0, 121)
        .into_iter()
        .filter(|(_, _, b)| String::from_utf8_lossy(b).contains("\"cmp-0001\""))
        .collect();
    produce(&t.input, &records);
    let seen = collect(
        &[&t.output, &t.blocked, &t.dead_letter],
        records.len(),
        Duration::from_secs(2),
        HANG,
    );
    let landed = routes(&seen, &t);
    for (id, _, _) in &records {
        assert_eq!(landed.get(id), Some(&t.blocked), "{id}");
    }
    let log = child.log_text();
    assert!(log.contains("record skipped"), "skips are logged");
    assert!(
        !log.contains("mallory") && !log.contains("trust me"),
        "no record content in the log"
    );
}

/// The state topics are checked at start: a missing exposure topic and a
/// campaign table that is not compacted are refused, each named.
#[test]
fn unfit_state_topics_are_refused_at_start_with_every_problem_named() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("state-unfit");
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &t.brokers)
        .create()
        .unwrap();
    // The five pipeline topics and a campaigns topic that is not compacted;
    // no exposure topic.
    let mut topics: Vec<NewTopic> = t
        .all()
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
        .collect();
    topics.push(
        NewTopic::new(&t.campaigns, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "delete"),
    );
    rt.block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .unwrap();
    let dir = scratch("state-unfit");
    let policy = write_policy(&dir, |p| p);
    let mut inst = Instance::new(&t, &dir, &policy, "i0");
    let mut child = inst.start();
    assert!(
        child.wait_exit(Duration::from_secs(60)).is_some(),
        "refused, not started: {}",
        child.log_text()
    );
    let log = child.log_text();
    assert!(
        log.contains("kafka.topics.exposure") && log.contains("does not exist"),
        "{log}"
    );
    // Now the exposure topic exists: the table that is not compacted is named.
    rt.block_on(admin.create_topics(
        &[NewTopic::new(&t.exposure, 1, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))
    .unwrap();
    let mut child = inst.start();
    match child.wait_exit(Duration::from_secs(60)) {
        Some(_) => {
            let log = child.log_text();
            assert!(
                log.contains("cleanup.policy") && log.contains("compact"),
                "{log}"
            );
        }
        // A broker that cannot describe topic configs lets it start (logged).
        None => assert!(
            child.log_text().contains("not checked"),
            "{}",
            child.log_text()
        ),
    }
}

/// A burst ends while the judge threads still work through much of it: the
/// exposure deltas of what they judge after input stops are flushed as they
/// finish, so the whole burst is committed soon after it is judged, not at
/// the next periodic flush (here a minute away, and no flush is due by
/// count: a quarter of max_in_flight is more than the burst).
#[test]
fn a_burst_is_committed_once_judged_not_at_the_next_periodic_flush() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestTopics::new("state-burst");
    rt.block_on(t.create(6));
    let dir = scratch("state-burst");
    let policy = write_policy(&dir, |p| p);
    let mut i = Instance::new(&t, &dir, &policy, "burst");
    let toml = std::fs::read_to_string(&i.config).unwrap().replace(
        "max_in_flight = 5000\n",
        "max_in_flight = 200000\nexposure_flush_ms = 60000\n",
    );
    assert!(toml.contains("exposure_flush_ms = 60000"));
    std::fs::write(&i.config, toml).unwrap();
    let _running = i.start();
    i.wait_ready();
    let records = random_keyed(30_000, 20, 1, 91);
    produce(&t.input, &records);
    let produced = Instant::now();
    let want = records.len() as i64;
    loop {
        let done = committed_total(&t.brokers, &t.group, &t.input, 6);
        if done == want {
            break;
        }
        // The first periodic flush after start is a minute after it: by
        // then only that flush could have committed the tail.
        assert!(
            produced.elapsed() < Duration::from_secs(45),
            "{done} of {want} committed 45 s after the burst: the tail waits for the periodic flush"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "committed {:?} after the burst was produced",
        produced.elapsed()
    );
}
