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

use super::app::App;
use super::status_page;
use crate::fairness::campaign::{OverrideAction, State as CampaignState};

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

async fn status_page(State(app): State<Arc<App>>) -> Html<String> {
    let live = app.guard.live();
    let all = app.guard.campaigns(None);
    Html(status_page::render(
        &live.policy.version,
        live.policy.mode.as_str(),
        app.health.ready(),
        &all,
    ))
}
