//! The admin listener: metrics, health, the config version, and the request view (the web
//! page at `/ui` and the JSON behind it at `/api/…`).
//!
//! With an admin key (`--admin-key`, `SWITCHYARD_ADMIN_KEY`), `/api/…` wants it as
//! `Authorization: Bearer <key>` and answers 401 otherwise; the page itself holds no data and
//! asks for the key. Without one the API is open, like `/metrics`: bind the admin listener to
//! a private address (the chart keeps it inside the cluster).

use crate::observe::records::{RequestRecord, DEFAULT_KEPT};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::broadcast::error::RecvError;

/// The request view: one static page, compiled in (no files or Node at run time).
const UI_HTML: &str = include_str!("ui/index.html");
/// A comment on the live feed this often keeps proxies and browsers from closing it.
const LIVE_KEEPALIVE: Duration = Duration::from_secs(15);

/// `admin_key`: `None` leaves `/api/…` open.
pub fn admin_router(state: Arc<AppState>, admin_key: Option<String>) -> Router {
    let key = Arc::new(admin_key);
    let api = Router::new()
        .route("/api/requests", get(list_requests))
        .route("/api/requests/live", get(live_requests))
        .route("/api/requests/{id}", get(get_request))
        .route_layer(middleware::from_fn(move |req: Request, next: Next| {
            let key = key.clone();
            async move { authorize(key.as_deref(), req, next).await }
        }));
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/config", get(config_version))
        .route("/ui", get(ui))
        .route("/ui/", get(ui))
        .merge(api)
        .with_state(state)
}

async fn authorize(key: Option<&str>, req: Request, next: Next) -> Response {
    let Some(key) = key else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
        return next.run(req).await;
    }
    let body = json!({"error": {"type": "authentication_error",
        "message": "the admin API wants the admin key as `Authorization: Bearer <key>`"}});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

async fn ui() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        UI_HTML,
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

/// `GET /api/requests?limit=N`: the newest N finished requests (default 100), newest first,
/// and how many are in flight now.
async fn list_requests(
    State(app): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Json<serde_json::Value> {
    let limit = q.limit.unwrap_or(100).min(DEFAULT_KEPT);
    let recent = app.records.recent(limit);
    let requests: Vec<&RequestRecord> = recent.iter().map(|r| &**r).collect();
    Json(json!({
        "requests": requests,
        "in_flight": app.in_flight(),
    }))
}

async fn get_request(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match app.records.get(&id) {
        Some(r) => Json(&*r).into_response(),
        None => {
            let body = json!({"error": {"type": "not_found_error",
                "message": format!("no recent request with id {id}")}});
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
    }
}

/// `GET /api/requests/live`: server-sent events, `event: request` with a record as each
/// request finishes; `event: lagged` with `{"missed": n}` when this reader fell behind.
async fn live_requests(State(app): State<Arc<AppState>>) -> Response {
    let mut rx = app.records.subscribe();
    let stream = async_stream::stream! {
        yield Ok::<Bytes, Infallible>(Bytes::from_static(b": live\n\n"));
        loop {
            match tokio::time::timeout(LIVE_KEEPALIVE, rx.recv()).await {
                Ok(Ok(record)) => yield Ok(event("request", &record)),
                Ok(Err(RecvError::Lagged(n))) => {
                    yield Ok(Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n")))
                }
                Ok(Err(RecvError::Closed)) => break,
                Err(_) => yield Ok(Bytes::from_static(b": keepalive\n\n")),
            }
        }
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}

fn event(name: &str, record: &RequestRecord) -> Bytes {
    let mut out = format!("event: {name}\ndata: ").into_bytes();
    serde_json::to_writer(&mut out, record).expect("a record serializes");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
    let now = app.in_flight();
    app.metrics
        .requests_in_flight
        .set(i64::try_from(now).unwrap_or(i64::MAX));
    let text = app.metrics.encode();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

async fn config_version(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({"version": app.runtime.load().version}))
}
