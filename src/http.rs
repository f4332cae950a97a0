//! The HTTP port: metrics, health, campaign states, overrides, policy reload
//! and a plain server-rendered status page.
//!
//! | method | path | auth |
//! |---|---|---|
//! | GET | `/` | — status page (HTML) |
//! | GET | `/metrics` | — Prometheus text format |
//! | GET | `/healthz` | — alive |
//! | GET | `/readyz` | — 200 only when the consumer holds its assignment and the producer is healthy |
//! | GET | `/v1/campaigns?state=flagged` | — campaigns with their per-group numbers |
//! | GET | `/v1/campaigns/{id}` | — one campaign |
//! | POST | `/v1/campaigns/{id}/override` | bearer — acknowledge, force_allow, force_block, clear |
//! | POST | `/v1/policy/reload` | bearer — reload the policy file |

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::campaign::{OverrideAction, State as CampaignState};
use crate::service::App;
use crate::tracker::CampaignReport;

/// Build the router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/campaigns", get(list_campaigns))
        .route("/v1/campaigns/{id}", get(get_campaign))
        .route("/v1/campaigns/{id}/override", post(override_campaign))
        .route("/v1/policy/reload", post(reload_policy))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(app)
}

/// Serve until `cancel` fires.
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>, cancel: CancellationToken) {
    let r = axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "HTTP server stopped");
    }
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
        .and_then(|v| v.strip_prefix("Bearer "))
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

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.refresh_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
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
}

async fn list_campaigns(
    State(app): State<Arc<App>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "unknown query parameter (only `state` is accepted)",
        );
    };
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => match CampaignState::parse(s) {
            Some(st) => Some(st),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "state must be ok, flagged or blocked (got {:?})",
                        truncate(s)
                    ),
                );
            }
        },
    };
    let campaigns = app.guard.campaigns(state);
    axum::Json(json!({"count": campaigns.len(), "campaigns": campaigns})).into_response()
}

async fn get_campaign(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.guard.campaign(&id) {
        Some(r) => axum::Json(r).into_response(),
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

async fn override_campaign(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r;
    }
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
        Ok(alert) => axum::Json(json!({"applied": true, "alert": alert})).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn reload_policy(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r;
    }
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

// ---------------------------------------------------------------------------
// Status page
// ---------------------------------------------------------------------------

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn num(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into())
}

fn why(r: &CampaignReport) -> String {
    if let Some(o) = &r.override_ {
        return format!(
            "Overridden ({}) by {}: {}",
            o.action.as_str(),
            o.by,
            o.reason
        );
    }
    match (&r.finding, r.state) {
        (_, CampaignState::Ok) => {
            "Within limits, or not enough decisions yet for a verdict.".into()
        }
        (Some(f), _) => {
            let dim = r
                .dimensions
                .get(f.dimension)
                .map(|d| d.dimension.as_str())
                .unwrap_or("?");
            match f.measure {
                crate::fairness::Measure::SelectionRateRatio => format!(
                    "By {dim}: selection-rate ratio {:.2} (at most {:.2} with confidence), limit {:.2}.",
                    f.value, f.bound, f.threshold
                ),
                crate::fairness::Measure::ShareDistance => format!(
                    "By {dim}: delivery-share distance {:.2} (at least {:.2} with confidence), limit {:.2}.",
                    f.value, f.bound, f.threshold
                ),
            }
        }
        (None, _) => "—".into(),
    }
}

fn campaign_html(r: &CampaignReport, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "<section class=\"campaign {state}\" id=\"c-{id}\"><h3>{id} <span class=\"badge {state}\">{state}</span> <small>{cat}</small></h3><p class=\"why\">{why}</p>",
        id = esc(&r.campaign),
        state = r.state.as_str(),
        cat = esc(r.category),
        why = esc(&why(r)),
    );
    for d in &r.dimensions {
        let _ = write!(
            out,
            "<table><caption>{} — ratio {} · distance {}</caption><tr><th>group</th><th>considered</th><th>selected</th><th>rate</th><th>share</th><th>baseline</th></tr>",
            esc(&d.dimension),
            num(d.selection_rate_ratio),
            num(d.share_distance)
        );
        for g in &d.groups {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.group),
                g.considered,
                g.selected,
                pct(g.selection_rate),
                pct(g.share),
                pct(g.baseline_share)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

async fn status_page(State(app): State<Arc<App>>) -> Html<String> {
    use std::fmt::Write;
    let live = app.guard.live();
    let all = app.guard.campaigns(None);
    let mut page = String::with_capacity(16 * 1024);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\"><title>fairgate — status</title><style>{CSS}</style></head><body><header><h1>fairgate</h1><p>Policy <b>{}</b> ({} mode) · {} campaigns tracked · ready: {}</p></header>",
        esc(&live.policy.version),
        live.policy.mode.as_str(),
        all.len(),
        if app.health.ready() { "yes" } else { "no" }
    );
    for state in [
        CampaignState::Blocked,
        CampaignState::Flagged,
        CampaignState::Ok,
    ] {
        let list: Vec<&CampaignReport> = all.iter().filter(|r| r.state == state).collect();
        let _ = write!(
            page,
            "<h2>{} ({})</h2>",
            match state {
                CampaignState::Blocked => "Blocked",
                CampaignState::Flagged => "Flagged",
                CampaignState::Ok => "Ok",
            },
            list.len()
        );
        if list.is_empty() {
            page.push_str("<p class=\"none\">None.</p>");
        }
        for r in list
            .iter()
            .take(if state == CampaignState::Ok { 50 } else { 500 })
        {
            campaign_html(r, &mut page);
        }
    }
    page.push_str("<footer>Numbers are counted over the policy's rolling window on this instance. JSON: <a href=\"/v1/campaigns\">/v1/campaigns</a> · <a href=\"/metrics\">/metrics</a></footer></body></html>");
    Html(page)
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{margin:0}header p{color:#555}\
section.campaign{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:.6em 0}\
section.flagged{border-color:#e0a800;background:#fffbea}section.blocked{border-color:#c0392b;background:#fdecea}\
.badge{font-size:.75em;padding:.1em .5em;border-radius:1em;color:#fff;background:#27ae60}.badge.flagged{background:#e0a800}.badge.blocked{background:#c0392b}\
table{border-collapse:collapse;margin:.3em 0 .6em}td,th{border-bottom:1px solid #eee;padding:.15em .7em;text-align:right}td:first-child,th:first-child{text-align:left}\
caption{text-align:left;font-weight:600}.why{margin:.2em 0}.none{color:#888}footer{margin-top:2em;color:#777}";
