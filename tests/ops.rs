//! Operating fairgate without a broker: the metrics registry, the admin API
//! over real HTTP, and live policy reload.

use std::sync::Arc;

use fairgate::clock::ManualClock;
use fairgate::core::guard::headers;
use fairgate::metrics::Metrics;
use fairgate::service::App;
use fairgate::{CompiledPolicy, Guard, Now};
use serde_json::{Value, json};

const POLICY: &str = include_str!("../config/policy.toml");
const T0: i64 = 1_795_000_000_000;

fn decision(campaign: &str, sex: &str, selected: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": "d-1", "ts": T0, "campaign": {"id": campaign}, "selected": selected,
        "regs": {"gdpr": 0, "us_privacy": "1YYN"}, "user": {"id": "u-1"}, "device": {"ip": "203.0.113.17"},
        "audience": {"sex": sex}}))
    .unwrap()
}

#[test]
fn registry_renders_exact_lines() {
    let m = Metrics::new(prometheus::Registry::new(), 10);
    let g = Guard::new(CompiledPolicy::from_toml(POLICY).unwrap());
    m.observe(&g.judge(None, &decision("c1", "female", true), Now::At(T0)));
    m.observe(&g.judge(None, b"{not json", Now::At(T0)));
    m.set_policy("2026-11-23.1", "monitor");
    let text = m.render();
    for line in [
        "# HELP fairgate_decisions_total Decisions handled, by route (output, blocked, dead_letter) and reason.",
        "# TYPE fairgate_decisions_total counter",
        "fairgate_decisions_total{reason=\"usp_opt_out\",route=\"output\"} 1",
        "fairgate_decisions_total{reason=\"not_json\",route=\"dead_letter\"} 1",
        "fairgate_dead_letters_total{kind=\"not_json\"} 1",
        "fairgate_consent_outcomes_total{outcome=\"contextual\",reason=\"usp_opt_out\"} 1",
        "fairgate_consent_signals_total{result=\"denied\",signal=\"usp\"} 1",
        "fairgate_pointers_removed_total{category=\"always\"} 1",
        "fairgate_pointers_removed_total{category=\"personal\"} 1",
        "fairgate_pointers_removed_total{category=\"coarsened\"} 1",
        "fairgate_window_decisions_total{timing=\"counted\"} 1",
        "fairgate_policy_info{mode=\"monitor\",version=\"2026-11-23.1\"} 1",
        "fairgate_policy_reloads_total{result=\"rejected\"} 0",
        "fairgate_campaigns{state=\"flagged\"} 0",
        "# TYPE fairgate_processing_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
    // No value from the decision reaches a label.
    assert!(!text.contains("u-1") && !text.contains("203.0.113"));
}

/// The process's own figures are exported under their standard names, so
/// the CPU per decision and the memory held can be read in production
/// (`process_cpu_seconds_total` over `fairgate_decisions_total`).
#[cfg(target_os = "linux")]
#[test]
fn the_process_cpu_memory_and_threads_are_exported() {
    let m = Metrics::new(prometheus::Registry::new(), 10);
    let read = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    // Some CPU to count (the counter is in whole seconds): spent until the
    // process's own count shows it, not for a wall-clock time, so a busy
    // machine makes this slower but cannot make it fail.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut x = 0u64;
    let text = loop {
        for _ in 0..1_000_000 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let text = m.render();
        let counted = read(&text, "process_cpu_seconds_total").is_some_and(|v| v >= 1.0);
        if counted || std::time::Instant::now() > deadline {
            break text;
        }
    };
    let value = |name: &str| read(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
    assert!(value("process_cpu_seconds_total") >= 1.0);
    // At least this test's own memory and threads.
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_threads") >= 1.0);
    assert!(value("process_open_fds") >= 3.0);
}

/// OpenRTB 2.5 placements that disagree with 2.6 are counted by field, a
/// child's and LMT's removals by category, and the reason header names the
/// GPP section; no value of the decision reaches a label.
#[test]
fn placements_child_and_lmt_are_counted_without_values() {
    let m = Metrics::new(prometheus::Registry::new(), 10);
    let g = Guard::new(CompiledPolicy::from_toml(POLICY).unwrap());
    let d = json!({"id": "d-2", "ts": T0, "campaign": {"id": "c2"},
        "regs": {"gdpr": 0, "coppa": 1, "us_privacy": "1YNN", "ext": {"gdpr": 1, "us_privacy": "1YYN"}},
        "user": {"id": "u-2", "geo": {"lat": 52.3731, "city": "Secret City"}},
        "device": {"ip": "203.0.113.17", "ifa": "IFA-2", "lmt": 1}});
    let j = g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(T0));
    m.observe(&j);
    let text = m.render();
    for line in [
        "fairgate_consent_placement_disagreements_total{field=\"gdpr\"} 1",
        "fairgate_consent_placement_disagreements_total{field=\"us_privacy\"} 1",
        "fairgate_consent_placement_disagreements_total{field=\"consent\"} 0",
        "fairgate_pointers_removed_total{category=\"child\"} 2",
        "fairgate_consent_outcomes_total{outcome=\"contextual\",reason=\"coppa\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
    let payload = String::from_utf8(j.payload.clone()).unwrap();
    for secret in ["u-2", "Secret City", "52.3731", "IFA-2", "203.0.113.17"] {
        assert!(
            !text.contains(secret) && !payload.contains(secret),
            "{secret}"
        );
        assert!(
            j.headers.iter().all(|(_, v)| !v.contains(secret)),
            "{secret}"
        );
    }
    // A GPP section's rule: the header names the section, the label does not.
    let usnat_sale_opt_out = "DBABLA~CVVaAAAAAACA";
    let d = json!({"id": "d-3", "ts": T0, "campaign": {"id": "c2"},
        "regs": {"gpp": usnat_sale_opt_out, "gpp_sid": [7]}});
    let j = g.judge(None, &serde_json::to_vec(&d).unwrap(), Now::At(T0));
    let reason = j
        .headers
        .iter()
        .find(|(k, _)| *k == headers::CONSENT_REASON);
    assert_eq!(reason.map(|(_, v)| v.as_ref()), Some("gpp_opt_out:7"));
    m.observe(&j);
    assert!(
        m.render().lines().any(|l| l
            == "fairgate_consent_outcomes_total{outcome=\"contextual\",reason=\"gpp_opt_out\"} 1")
    );
}

struct Server {
    base: String,
    app: Arc<App>,
    alerts: tokio::sync::mpsc::Receiver<fairgate::fairness::alert::AlertEvent>,
    policy_path: std::path::PathBuf,
    client: reqwest::Client,
    /// The registry `/metrics` renders.
    registry: prometheus::Registry,
    /// Stops the server (most tests leave it to the process's end).
    cancel: tokio_util::sync::CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

async fn server() -> Server {
    server_with(fairgate::service::http::Limits::default()).await
}

async fn server_with(limits: fairgate::service::http::Limits) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "fairgate-ops-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, POLICY).unwrap();
    let guard = Arc::new(Guard::new(CompiledPolicy::load(&policy_path).unwrap()));
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(registry.clone(), 10);
    let (app, alerts) = App::new(
        guard,
        metrics,
        Arc::new(ManualClock::new(T0)),
        Some(policy_path.clone()),
        Some("s3cret-token".into()),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = tokio_util::sync::CancellationToken::new();
    let thread =
        fairgate::service::http::spawn_with(listener, app.clone(), cancel.clone(), limits).unwrap();
    Server {
        base,
        app,
        alerts,
        policy_path,
        client: reqwest::Client::new(),
        registry,
        cancel,
        thread,
    }
}

#[tokio::test]
async fn mutating_calls_need_the_bearer_token() {
    let s = server().await;
    let url = format!("{}/v1/campaigns/c1/override", s.base);
    let body = r#"{"action":"force_block","by":"ana","reason":"legal hold"}"#;
    let r = s.client.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .client
        .post(&url)
        .bearer_auth("wrong")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("bearer"));
    let r = s
        .client
        .post(format!("{}/v1/policy/reload", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_reason() {
    let s = server().await;
    let url = format!("{}/v1/campaigns/c1/override", s.base);
    for body in [
        "not json",
        r#"{"action":"delete","by":"a","reason":"b"}"#,
        r#"{"action":"clear"}"#,
    ] {
        let r = s
            .client
            .post(&url)
            .bearer_auth("s3cret-token")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(v["error"].as_str().unwrap().len() > 10, "{v}");
    }
    let r = s
        .client
        .post(&url)
        .bearer_auth("s3cret-token")
        .body(r#"{"action":"clear","by":" ","reason":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .client
        .get(format!("{}/v1/campaigns?state=sideways", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .client
        .get(format!("{}/v1/campaigns/nope", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn overrides_change_the_state_and_emit_an_audit_alert() {
    let mut s = server().await;
    s.app
        .guard
        .judge(None, &decision("c1", "male", true), Now::At(T0));
    let r = s
        .client
        .post(format!("{}/v1/campaigns/c1/override", s.base))
        .bearer_auth("s3cret-token")
        .body(r#"{"action":"force_block","by":"ana@example.com","reason":"legal hold"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let alert = s.alerts.recv().await.unwrap();
    assert_eq!(alert.campaign, "c1");
    assert_eq!(alert.new_state.as_str(), "blocked");
    assert_eq!(alert.override_.as_ref().unwrap().by, "ana@example.com");
    let c: Value = s
        .client
        .get(format!("{}/v1/campaigns/c1", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(c["state"], "blocked");
    assert_eq!(c["override"]["reason"], "legal hold");
    let j = s
        .app
        .guard
        .judge(None, &decision("c1", "male", true), Now::At(T0));
    assert_eq!(j.route, fairgate::Route::Blocked);
    let list: Value = s
        .client
        .get(format!("{}/v1/campaigns?state=blocked", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(list["count"], 1);
    let page = get_text(&s, "/").await;
    assert!(page.contains("c1") && page.contains("legal hold"));
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "fairgate_campaign_transitions_total{from=\"ok\",kind=\"override\",to=\"blocked\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_valid_policy_reloads_and_an_invalid_one_is_refused() {
    let s = server().await;
    let reload = || {
        s.client
            .post(format!("{}/v1/policy/reload", s.base))
            .bearer_auth("s3cret-token")
            .send()
    };
    std::fs::write(
        &s.policy_path,
        POLICY.replace("version = \"2026-11-23.1\"", "version = \"v2\""),
    )
    .unwrap();
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["version"], "v2");
    assert_eq!(v["kept_windows"], true);
    let header = |j: &fairgate::Judgement| {
        j.headers
            .iter()
            .find(|(k, _)| *k == headers::POLICY_VERSION)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(
        header(
            &s.app
                .guard
                .judge(None, &decision("c", "male", true), Now::At(T0))
        ),
        "v2"
    );

    std::fs::write(
        &s.policy_path,
        POLICY
            .replace("version = \"2026-11-23.1\"", "version = \"v3\"")
            .replace("vendor_id = 755", "vendor_id = 0")
            .replace("bucket_secs = 60", "bucket_secs = 7"),
    )
    .unwrap();
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["running_version"], "v2");
    assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        header(
            &s.app
                .guard
                .judge(None, &decision("c", "male", true), Now::At(T0))
        ),
        "v2"
    );
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("fairgate_policy_reloads_total{result=\"rejected\"} 1"));
    assert!(metrics.contains("fairgate_policy_reloads_total{result=\"applied\"} 1"));
    assert!(metrics.contains("fairgate_policy_info{mode=\"monitor\",version=\"v2\"} 1"));
}

#[tokio::test]
async fn the_file_watcher_reloads_on_change() {
    let s = server().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(fairgate::service::watch_policy(
        s.app.clone(),
        cancel.clone(),
        std::time::Duration::from_millis(50),
        std::time::Duration::from_millis(100),
    ));
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    std::fs::write(
        &s.policy_path,
        POLICY.replace("version = \"2026-11-23.1\"", "version = \"watched-v9\""),
    )
    .unwrap();
    let start = std::time::Instant::now();
    while s.app.guard.live().policy.version != "watched-v9" {
        assert!(start.elapsed().as_secs() < 10, "not reloaded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cancel.cancel();
}

async fn get_text(s: &Server, path: &str) -> String {
    let r = s.client.get(format!("{}{path}", s.base)).send().await;
    r.unwrap().text().await.unwrap()
}

async fn get_json(s: &Server, path: &str) -> (u16, Value) {
    let r = s
        .client
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn the_campaign_listing_is_paged_by_id_with_a_cursor_and_filters() {
    let s = server().await;
    // 2,345 campaigns, ids in an order unlike their insertion order.
    let n = 2_345;
    for i in 0..n {
        let id = format!("cmp-{:05}", (i * 7919) % n);
        s.app
            .guard
            .judge(None, &decision(&id, "male", true), Now::At(T0));
    }
    for id in ["other-1", "other-2"] {
        s.app
            .guard
            .judge(None, &decision(id, "male", true), Now::At(T0));
    }
    let (status, first) = get_json(&s, "/v1/campaigns").await;
    assert_eq!(status, 200);
    assert_eq!(first["count"], 100, "the default page");
    assert_eq!(first["total"], n + 2);
    assert_eq!(first["campaigns"][0]["campaign"], "cmp-00000");
    assert_eq!(first["next"], "cmp-00099");
    // Walk every page of the prefix filter: each id once, in order.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = get_json(
            &s,
            &format!("/v1/campaigns?prefix=cmp-&limit=1000&after={after}"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(page["total"], n);
        assert!(page["count"].as_u64().unwrap() <= 1000);
        for c in page["campaigns"].as_array().unwrap() {
            seen.push(c["campaign"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    let expected: Vec<String> = (0..n).map(|i| format!("cmp-{i:05}")).collect();
    assert_eq!(seen, expected);
    // The state filter, combined with the prefix.
    let r = s
        .client
        .post(format!("{}/v1/campaigns/other-2/override", s.base))
        .bearer_auth("s3cret-token")
        .body(r#"{"action":"force_block","by":"ana","reason":"legal hold"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, blocked) = get_json(&s, "/v1/campaigns?state=blocked&prefix=other").await;
    assert_eq!(blocked["total"], 1);
    assert_eq!(blocked["campaigns"][0]["campaign"], "other-2");
    assert_eq!(blocked["next"], Value::Null);
    let (_, none) = get_json(&s, "/v1/campaigns?state=blocked&prefix=cmp-").await;
    assert_eq!(none["total"], 0);
    // The status page is bounded too, and says how many it leaves out.
    let page = get_text(&s, "/").await;
    assert!(page.contains("other-2"), "blocked campaigns first");
    assert!(
        page.contains(&format!("and {} more", n + 1 - 50)),
        "ok campaigns capped"
    );
}

#[tokio::test]
async fn bad_listing_arguments_are_refused_with_every_problem_named() {
    let s = server().await;
    for (query, expect) in [
        (
            "limit=0",
            vec!["limit must be a whole number from 1 to 1000"],
        ),
        ("limit=1001", vec!["limit must be"]),
        ("limit=-3", vec!["limit must be"]),
        (
            "limit=ten&state=up",
            vec!["limit must be", "state must be ok, flagged or blocked"],
        ),
        (
            "after=x&prefix=y&colour=red",
            vec!["accepted: state, prefix, limit, after"],
        ),
    ] {
        let (status, v) = get_json(&s, &format!("/v1/campaigns?{query}")).await;
        assert_eq!(status, 400, "{query}");
        let e = v["error"].as_str().unwrap();
        for x in expect {
            assert!(e.contains(x), "{query}: {e:?} lacks {x:?}");
        }
    }
    let long = "a".repeat(300);
    let (status, v) = get_json(&s, &format!("/v1/campaigns?prefix={long}&after={long}")).await;
    assert_eq!(status, 400);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{v}");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_limits_count_characters() {
    let s = server().await;
    let url = format!("{}/v1/campaigns/c9/override", s.base);
    let body = json!({"action": "acknowledge", "by": "ana", "reason": "checking"}).to_string();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = s
            .client
            .post(&url)
            .header("authorization", format!("{scheme} s3cret-token"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    for wrong in [
        "Basic s3cret-token",
        "Bearers3cret-token",
        "s3cret-token",
        "Bearer s3cret-tokenx",
    ] {
        let r = s
            .client
            .post(&url)
            .header("authorization", wrong)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{wrong}");
    }
    // 512 characters of three bytes each pass; 513 do not.
    for (n, status) in [(512, 200), (513, 400)] {
        let reason = "検".repeat(n);
        let r = s
            .client
            .post(&url)
            .bearer_auth("s3cret-token")
            .body(json!({"action": "acknowledge", "by": "ana", "reason": reason}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{n} characters");
    }
}

#[tokio::test]
async fn campaigns_show_their_state_under_the_shadow_policy() {
    let s = server().await;
    let get = |path: &str| {
        let (client, url) = (s.client.clone(), format!("{}{path}", s.base));
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let bytes = decision("c1", "female", true);
    let j = s.app.guard.judge(None, &bytes, Now::At(T0));
    let v: Value = serde_json::from_str(&get("/v1/campaigns/c1").await).unwrap();
    assert!(v.get("shadow").is_none(), "shadow off: no shadow field");

    let shadow = POLICY.replace("version = \"2026-11-23.1\"", "version = \"shadow-v\"");
    s.app
        .shadow
        .set(Some(CompiledPolicy::from_toml(&shadow).unwrap()));
    let read = fairgate::core::decision::Decision::parse(&bytes);
    let judged = s
        .app
        .shadow
        .judge(&s.app.guard, &j, None, &bytes, &read, Now::At(T0));
    assert!(!judged.unwrap().compared.changed());

    let v: Value = serde_json::from_str(&get("/v1/campaigns/c1").await).unwrap();
    assert_eq!(v["shadow"]["policy_version"], "shadow-v");
    assert_eq!(v["shadow"]["state"], "ok");
    let list: Value = serde_json::from_str(&get("/v1/campaigns").await).unwrap();
    assert_eq!(list["campaigns"][0]["shadow"]["state"], "ok");
    let page = get("/").await;
    assert!(page.contains("Shadow policy <b>shadow-v</b>"), "{page}");
    assert!(page.contains("<small>shadow:</small>"));
}

/// Read until the server closes the connection (or resets it); `None` when
/// it is still open after `deadline`. What was read comes back as text.
async fn read_until_closed(
    c: &mut tokio::net::TcpStream,
    deadline: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(deadline, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

async fn connect(s: &Server) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// A connection served one request (200) and kept alive.
async fn served_and_kept(s: &Server) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = connect(s).await;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    c
}

/// Slow-loris: a connection that sends half a header (one byte a minute
/// would do), one that sends nothing, and a kept-alive one gone quiet after
/// its response each hold a descriptor only until the header-read timeout
/// (10 s) closes them.
#[tokio::test]
async fn connections_stalled_in_a_header_or_idle_are_closed() {
    use tokio::io::AsyncWriteExt;
    let s = server().await;
    let mut half = connect(&s).await;
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = connect(&s).await;
    let mut kept = connect(&s).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let deadline = std::time::Duration::from_secs(30);
    let (half, silent, kept) = tokio::join!(
        read_until_closed(&mut half, deadline),
        read_until_closed(&mut silent, deadline),
        read_until_closed(&mut kept, deadline),
    );
    assert!(half.is_some(), "half a header held the connection for 30 s");
    assert!(silent.is_some(), "a silent connection was held for 30 s");
    let kept = kept.expect("an idle kept-alive connection was held for 30 s");
    assert!(kept.starts_with("HTTP/1.1 200"), "{kept}");
}

/// Past the connection cap the server accepts nothing more: a new client
/// waits (in the kernel's backlog) and is served as soon as a slot frees.
#[tokio::test]
async fn past_the_connection_cap_a_new_client_waits_for_a_free_slot() {
    use tokio::io::AsyncWriteExt;
    let s = server_with(fairgate::service::http::Limits {
        max_connections: 2,
        header_read_timeout: std::time::Duration::from_secs(120),
    })
    .await;
    // Served once, kept alive: each connection holds its slot.
    let mut held = vec![served_and_kept(&s).await, served_and_kept(&s).await];
    let mut third = connect(&s).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let early = tokio::time::timeout(std::time::Duration::from_secs(1), third.peek(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served past a cap of 2"
    );
    drop(held.pop());
    let reply = read_until_closed(&mut third, std::time::Duration::from_secs(30))
        .await
        .expect("the waiting client was not served within 30 s of a slot freeing");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// Shutdown as before the server was served by hand: on cancel it stops
/// accepting, closes a kept-alive idle connection and its thread ends.
#[tokio::test]
async fn on_cancel_the_server_closes_idle_connections_and_stops() {
    let s = server().await;
    let mut kept = served_and_kept(&s).await;
    s.cancel.cancel();
    read_until_closed(&mut kept, std::time::Duration::from_secs(30))
        .await
        .expect("a kept-alive connection stayed open 30 s after cancel");
    let thread = s.thread;
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::task::spawn_blocking(move || thread.join()),
    )
    .await
    .expect("the HTTP thread still runs 30 s after cancel")
    .unwrap()
    .unwrap();
    let addr = s.base.trim_start_matches("http://");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// The token is checked from the headers: a client without it is refused
/// at once, before the server waits for (or reads) the body it announced.
#[tokio::test]
async fn an_unauthenticated_override_is_refused_before_its_body_is_read() {
    use tokio::io::AsyncWriteExt;
    let s = server().await;
    for auth in ["", "Authorization: Bearer wrong\r\n"] {
        let mut c = connect(&s).await;
        let head = format!(
            "POST /v1/campaigns/c1/override HTTP/1.1\r\nHost: x\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        let reply = read_until_closed(&mut c, std::time::Duration::from_secs(30))
            .await
            .expect("no answer within 30 s: the server waited for the body");
        assert!(reply.starts_with("HTTP/1.1 401"), "{auth:?}: {reply}");
    }
}

/// An override body past 16 KiB is refused with 413 and a reason, without
/// reading the rest of it.
#[tokio::test]
async fn an_override_body_over_16_kib_is_refused_with_413() {
    let s = server().await;
    let body = json!({"action": "acknowledge", "by": "ana", "reason": "x".repeat(17 * 1024)});
    let r = s
        .client
        .post(format!("{}/v1/campaigns/c1/override", s.base))
        .bearer_auth("s3cret-token")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("16384 bytes"), "{v}");
}

/// A collector that holds every scrape inside the registry's render until
/// opened: a scrape as slow as one over 100,000 campaigns, for as long as a
/// test needs.
#[derive(Clone)]
struct Gate(
    Arc<(
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicBool,
        prometheus::core::Desc,
    )>,
);

impl Gate {
    fn install(registry: &prometheus::Registry) -> Gate {
        let desc = prometheus::core::Desc::new(
            "test_gate".into(),
            "holds a scrape".into(),
            vec![],
            Default::default(),
        )
        .unwrap();
        let gate = Gate(Arc::new((0.into(), false.into(), desc)));
        registry.register(Box::new(gate.clone())).unwrap();
        gate
    }

    /// Wait (30 s at most) until `n` scrapes are held.
    async fn held(&self, n: usize) {
        let start = std::time::Instant::now();
        while self.0.0.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "{n} scrapes were not under way at once within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn open(&self) {
        self.0.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl prometheus::core::Collector for Gate {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.0.2]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        while !self.0.1.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        vec![]
    }
}

/// A scrape (a refresh over every campaign, then the render) runs off the
/// HTTP runtime's async thread: while one is held, `/healthz` and `/readyz`
/// still answer.
#[tokio::test]
async fn a_slow_scrape_does_not_hold_up_healthz_or_readyz() {
    let s = server().await;
    let gate = Gate::install(&s.registry);
    let scrape = tokio::spawn(s.client.get(format!("{}/metrics", s.base)).send());
    gate.held(1).await;
    for path in ["/healthz", "/readyz"] {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            s.client.get(format!("{}{path}", s.base)).send(),
        )
        .await;
        let status = r.map(|r| r.unwrap().status().as_u16());
        assert!(
            matches!(status, Ok(200 | 503)),
            "{path} behind a scrape: {status:?}"
        );
    }
    gate.open();
    assert_eq!(scrape.await.unwrap().unwrap().status(), 200);
}

/// The listing and the status page take a work permit; with every permit
/// held (here by scrapes) they are refused at once with 503 and
/// `Retry-After`, not queued, and served again once a permit frees.
#[tokio::test]
async fn with_every_work_permit_taken_listings_get_503_with_retry_after() {
    let s = server().await;
    let gate = Gate::install(&s.registry);
    let permits = fairgate::service::http::HTTP_BLOCKING_THREADS;
    let scrapes: Vec<_> = (0..permits)
        .map(|_| tokio::spawn(s.client.get(format!("{}/metrics", s.base)).send()))
        .collect();
    gate.held(permits).await;
    for path in ["/v1/campaigns", "/"] {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            s.client.get(format!("{}{path}", s.base)).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} waited 30 s for a permit"))
        .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert_eq!(r.headers()["retry-after"], "1", "{path}");
    }
    gate.open();
    for scrape in scrapes {
        assert_eq!(scrape.await.unwrap().unwrap().status(), 200);
    }
    let (status, page) = get_json(&s, "/v1/campaigns").await;
    assert_eq!(status, 200, "{page}");
}
