//! The HTTP port: metrics, health, campaign states, overrides, policy reload
//! and a plain server-rendered status page.
//!
//! | method | path | auth |
//! |---|---|---|
//! | GET | `/` | — status page (HTML) |
//! | GET | `/metrics` | — Prometheus text format |
//! | GET | `/healthz` | — alive |
//! | GET | `/readyz` | — 200 only when the consumer holds its assignment, the producer is healthy and the pipeline is not stalled |
//! | GET | `/v1/campaigns?state=flagged&prefix=cmp-&limit=100&after=ID` | — one page of campaigns, by id, with their per-group numbers |
//! | GET | `/v1/campaigns/{id}` | — one campaign |
//! | POST | `/v1/campaigns/{id}/override` | bearer — acknowledge, force_allow, force_block, clear (a JSON body of at most 16 KiB) |
//! | POST | `/v1/policy/reload` | bearer — reload the policy file |
//!
//! The bearer token is checked before a body is read.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::fairness::tracker::OverrideError;
use tokio_util::sync::CancellationToken;

use super::app::App;
use super::status_page;
use crate::fairness::campaign::{OverrideAction, State as CampaignState};
use crate::fairness::tracker::{CampaignReport, Filter};

/// The largest override body accepted (a small JSON object); larger is 413.
pub const MAX_OVERRIDE_BODY: usize = 16 * 1024;

/// What the handlers share: the app, and the permits for work on the HTTP
/// runtime's blocking pool (a listing, a status page, a scrape).
#[derive(Clone)]
struct Http {
    app: Arc<App>,
    work: Arc<Semaphore>,
}

impl FromRef<Http> for Arc<App> {
    fn from_ref(http: &Http) -> Arc<App> {
        http.app.clone()
    }
}

impl Http {
    /// A permit for a listing or a status page, or at once a 503 with
    /// `Retry-After` when every permit is taken: nothing queues, so no
    /// page is built for a client that has given up waiting.
    #[allow(clippy::result_large_err)] // the error is the response itself
    fn try_work(&self) -> Result<OwnedSemaphorePermit, Response> {
        self.work.clone().try_acquire_owned().map_err(|_| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                axum::Json(json!({"error": "busy building other pages; retry in a second"})),
            )
                .into_response()
        })
    }
}

/// Build the router. The mutating routes check the bearer token before
/// anything reads the request's body.
pub fn router(app: Arc<App>) -> Router {
    let http = Http {
        app: app.clone(),
        work: Arc::new(Semaphore::new(HTTP_BLOCKING_THREADS)),
    };
    let mutating = Router::new()
        .route(
            "/v1/campaigns/{id}/override",
            post(override_campaign).layer(DefaultBodyLimit::max(MAX_OVERRIDE_BODY)),
        )
        .route("/v1/policy/reload", post(reload_policy))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/campaigns", get(list_campaigns))
        .route("/v1/campaigns/{id}", get(get_campaign))
        .merge(mutating)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(http)
}

/// The bearer token, checked from the headers alone: a refused call is
/// answered without its body being read.
async fn require_token(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    match authorize(&app, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// Limits on the connections the HTTP port holds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; past it the port stops accepting (new
    /// connections wait in the kernel's backlog) until one closes.
    pub max_connections: usize,
    /// Time a client has to send a request's whole header, counted from the
    /// moment the server waits for it: on a new connection and between the
    /// requests of a kept-alive one, so it is the idle timeout too.
    pub header_read_timeout: Duration,
}

/// Connections served at once unless [`Limits`] says otherwise.
pub const MAX_CONNECTIONS: usize = 1024;
/// The header-read (and idle) timeout unless [`Limits`] says otherwise.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Serve on a thread of its own, with its own small runtime, until `cancel`
/// fires: nothing a client asks for (a large listing, many slow clients)
/// takes a thread from the pipeline's runtime. Heavy handlers run on this
/// runtime's blocking pool, at most [`HTTP_BLOCKING_THREADS`] at a time.
pub fn spawn(
    listener: std::net::TcpListener,
    app: Arc<App>,
    cancel: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    spawn_with(listener, app, cancel, Limits::default())
}

/// [`spawn`] with other [`Limits`] (tests use small ones).
pub fn spawn_with(
    listener: std::net::TcpListener,
    app: Arc<App>,
    cancel: CancellationToken,
    limits: Limits,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(HTTP_BLOCKING_THREADS)
        .thread_name("fairgate-http-work")
        .build()?;
    std::thread::Builder::new()
        .name("fairgate-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => serve_with(l, app, cancel, limits).await,
                    Err(e) => tracing::error!(error = %e, "HTTP listener unusable"),
                }
            });
        })
}

/// Listings, status pages and scrapes built at once, at most. A listing or
/// status page past it is answered 503 with `Retry-After: 1`; a scrape waits
/// (without a thread) for its turn.
pub const HTTP_BLOCKING_THREADS: usize = 2;

/// Serve until `cancel` fires, with the default [`Limits`].
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>, cancel: CancellationToken) {
    serve_with(listener, app, cancel, Limits::default()).await;
}

/// Serve until `cancel` fires: then stop accepting, close the listener, let
/// every connection finish the request it is serving (idle ones close at
/// once) and return when all have closed.
///
/// Each connection holds a permit of `limits.max_connections`; while none
/// is free the loop does not accept, so a flood waits in the kernel's
/// backlog rather than costing a descriptor each here, and a held slot
/// frees within the header-read timeout unless its client is sending
/// requests. HTTP/1 only, as axum is built here.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    cancel: CancellationToken,
    limits: Limits,
) {
    let router = router(app);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// An accept that failed: a connection reset before it was taken is
/// skipped; anything else (out of descriptors) is logged and the loop
/// pauses a second, as `axum::serve` does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "HTTP accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// Bearer-token check, compared in constant time.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per refused call
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &app.admin_token else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "no admin token is configured on this instance; mutating calls are refused",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(json!({"error": "missing or wrong bearer token"})),
        )
            .into_response())
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme name
/// is case-insensitive (RFC 7235 §2.1, RFC 6750 §2.1); one or more spaces
/// separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// A scrape: the gauges refreshed and the registry rendered on the blocking
/// pool (the campaign gauges walk every campaign, at most once a second),
/// so `/healthz` and `/readyz` never wait behind it. A scrape waits for a
/// work permit rather than being refused (a refused scrape is a gap on the
/// dashboards); waiting ones hold no thread and are bounded by the
/// connection cap.
async fn metrics(State(http): State<Http>) -> Response {
    let Ok(permit) = http.work.clone().acquire_owned().await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the scrape failed");
    };
    let app = http.app;
    let text = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        app.refresh_metrics();
        app.metrics.render()
    })
    .await;
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the scrape failed"),
    }
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let h = &app.health;
    use std::sync::atomic::Ordering::Relaxed;
    let body = json!({
        "ready": h.ready(),
        "pipeline_running": h.running.load(Relaxed),
        "partitions_assigned": h.assigned.load(Relaxed),
        "producer_healthy": h.producer_ok.load(Relaxed),
        "fatal": *h.fatal.lock(),
        "stalled": *h.stalled.lock(),
    });
    let status = if h.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    prefix: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

/// Campaigns on one page of `/v1/campaigns` unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// The largest `limit` a page may ask for.
pub const MAX_PAGE: usize = 1000;
/// The longest `prefix` or `after` accepted (campaign ids are at most 256 bytes).
const MAX_ID_ARG: usize = 256;

/// The listing's query, checked: every problem named at once.
fn list_request(q: ListQuery) -> Result<(Filter, Option<String>, usize), Vec<String>> {
    let mut problems = Vec::new();
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => CampaignState::parse(s).or_else(|| {
            problems.push(format!(
                "state must be ok, flagged or blocked (got {:?})",
                truncate(s)
            ));
            None
        }),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                problems.push(format!(
                    "limit must be a whole number from 1 to {MAX_PAGE} (got {:?})",
                    truncate(l)
                ));
                DEFAULT_PAGE
            }
        },
    };
    for (name, v) in [("prefix", &q.prefix), ("after", &q.after)] {
        if v.as_ref().is_some_and(|v| v.len() > MAX_ID_ARG) {
            problems.push(format!("{name} is longer than {MAX_ID_ARG} bytes"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let filter = Filter {
        state,
        prefix: q.prefix.filter(|p| !p.is_empty()),
    };
    Ok((filter, q.after.filter(|a| !a.is_empty()), limit))
}

/// `/v1/campaigns`: one page of campaigns by id. The page is built on the
/// blocking pool of the HTTP runtime, never on the pipeline's threads, with
/// a work permit ([`Http::try_work`]).
async fn list_campaigns(
    State(http): State<Http>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "unknown or repeated query parameter (accepted: state, prefix, limit, after)",
        );
    };
    let (filter, after, limit) = match list_request(q) {
        Ok(r) => r,
        Err(problems) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": problems.join("; "), "errors": problems})),
            )
                .into_response();
        }
    };
    let permit = match http.try_work() {
        Ok(p) => p,
        Err(busy) => return busy,
    };
    let app = http.app;
    let page = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let page = app.guard.campaign_page(&filter, after.as_deref(), limit);
        let campaigns: Vec<Value> = page
            .campaigns
            .iter()
            .map(|r| with_shadow(&app, r))
            .collect();
        serde_json::to_vec(&json!({
            "count": page.campaigns.len(),
            "total": page.total,
            "next": page.next,
            "campaigns": campaigns,
        }))
    })
    .await;
    match page {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the listing failed"),
    }
}

/// A campaign report, with its state under the shadow policy (`"shadow"`)
/// while shadow is on: this instance's own count, judged by the shadow policy.
fn with_shadow(app: &App, r: &CampaignReport) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(g) = app.shadow.guard() {
        let s = g.campaign(&r.campaign);
        v["shadow"] = json!({
            "policy_version": g.live().policy.version,
            "state": s.as_ref().map(|s| s.state),
            "measured_state": s.as_ref().map(|s| s.measured_state),
            "finding": s.as_ref().and_then(|s| s.finding),
        });
    }
    v
}

async fn get_campaign(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.guard.campaign(&id) {
        Some(r) => axum::Json(with_shadow(&app, &r)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "campaign not tracked on this instance (no decision seen in the window, or its partition is owned by another instance)",
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    action: OverrideAction,
    by: String,
    reason: String,
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Authorized by [`require_token`] before this runs.
async fn override_campaign(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the override body is larger than {MAX_OVERRIDE_BODY} bytes"),
            );
        }
        Err(e) => return error(e.status(), format!("the body could not be read: {e}")),
    };
    let body: OverrideBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body must be JSON {{\"action\": \"acknowledge\"|\"force_allow\"|\"force_block\"|\"clear\", \"by\": \"...\", \"reason\": \"...\"}}: {e}"
                ),
            );
        }
    };
    match app
        .apply_override(&id, body.action, &body.by, &body.reason)
        .await
    {
        // `applied`: this instance routes by it already; false when the
        // owner has not written it back within 5 s (it still will).
        Ok(a) => axum::Json(json!({"applied": a.applied, "alert": a.alert})).into_response(),
        Err(e @ OverrideError::Unavailable(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Authorized by [`require_token`] before this runs.
async fn reload_policy(State(app): State<Arc<App>>) -> Response {
    match app.reload_policy("admin").await {
        Ok(o) => axum::Json(o).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "result": "rejected",
                "running_version": app.guard.live().policy.version,
                "errors": e.issues().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "error": e.to_string(),
            })),
        )
            .into_response(),
    }
}

/// The status page: blocked and flagged campaigns first, a bounded number
/// of each state, built on the blocking pool like the listing.
async fn status_page(State(http): State<Http>) -> Response {
    let permit = match http.try_work() {
        Ok(p) => p,
        Err(busy) => return busy,
    };
    let app = http.app;
    let page = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let live = app.guard.live();
        let counts = app.guard.store().state_counts();
        let sections: Vec<status_page::Section> = [
            (CampaignState::Blocked, status_page::SHOWN_NOT_OK),
            (CampaignState::Flagged, status_page::SHOWN_NOT_OK),
            (CampaignState::Ok, status_page::SHOWN_OK),
        ]
        .into_iter()
        .map(|(state, shown)| {
            let filter = Filter {
                state: Some(state),
                prefix: None,
            };
            status_page::Section {
                state,
                total: counts[state as usize].1,
                campaigns: app.guard.campaign_page(&filter, None, shown).campaigns,
            }
        })
        .collect();
        let shadow = app.shadow.guard().map(|g| status_page::ShadowStates {
            version: g.live().policy.version.clone(),
            states: sections
                .iter()
                .flat_map(|s| &s.campaigns)
                .filter_map(|r| Some((r.campaign.clone(), g.campaign(&r.campaign)?.state)))
                .collect(),
        });
        status_page::render(
            &live.policy.version,
            live.policy.mode.as_str(),
            app.health.ready(),
            &sections,
            shadow.as_ref(),
        )
    })
    .await;
    match page {
        Ok(html) => Html(html).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the status page failed"),
    }
}
