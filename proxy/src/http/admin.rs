//! The admin listener: metrics, health, the config version, and the request view (the web
//! page at `/ui` and the JSON behind it at `/api/…`).
//!
//! With an admin key (`--admin-key`, `SWITCHYARD_ADMIN_KEY`), `/api/…` wants it as
//! `Authorization: Bearer <key>` and answers 401 otherwise; the page itself holds no data and
//! asks for the key. Without one the API is open, like `/metrics`: bind the admin listener to
//! a private address (the chart keeps it inside the cluster).

use crate::error::{ApiError, ErrorKind};
use crate::observe::history::{History, HistoryError};
use crate::observe::record::{now_ms, RequestRecord};
use crate::observe::records::{Live, DEFAULT_KEPT};
use crate::routing::balance::EndpointStatus;
use crate::state::AppState;
use crate::translate::stream::write_sse;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
        .route("/api/usage", get(usage))
        .route("/api/health", get(health))
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
    ApiError::new(
        ErrorKind::Authentication,
        "the admin API wants the admin key as `Authorization: Bearer <key>`",
    )
    .into_response()
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

/// Most records one `/api/requests` answer holds.
const MAX_LIST: usize = 10_000;

/// `GET /api/requests?limit=N`: the newest N finished requests (default 100), newest first,
/// and how many are in flight now. With a history they come from it (so they outlive a
/// restart), merged with this proxy's records in memory: the writer commits in batches, so
/// the last few milliseconds' requests may not be in the database yet.
async fn list_requests(State(app): State<Arc<AppState>>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).min(MAX_LIST);
    let in_flight = app.in_flight();
    let recent = app.records.recent(limit.min(DEFAULT_KEPT));
    let stored = match from_history(&app, move |h| h.recent(limit)).await {
        Some(Ok(stored)) => stored,
        Some(Err(e)) => return e,
        None => {
            let requests: Vec<&RequestRecord> = recent.iter().map(|r| &**r).collect();
            return Json(json!({"requests": requests, "in_flight": in_flight, "source": "memory"}))
                .into_response();
        }
    };
    let requests = newest_of(&recent, stored, limit);
    Json(json!({
        "requests": requests,
        "in_flight": in_flight,
        "source": "history",
        "dropped": app.records.history().map_or(0, |h| h.dropped()),
    }))
    .into_response()
}

/// Records in memory and rows of the history as one list, each request once, newest first.
fn newest_of(memory: &[Arc<RequestRecord>], stored: Vec<Value>, limit: usize) -> Vec<Value> {
    let mut out: Vec<Value> = memory
        .iter()
        .filter_map(|r| serde_json::to_value(&**r).ok())
        .collect();
    let ids: HashSet<&str> = memory.iter().map(|r| r.id.as_str()).collect();
    out.extend(
        stored
            .into_iter()
            .filter(|v| !v["id"].as_str().is_some_and(|id| ids.contains(id))),
    );
    // Stable: ties keep memory's order (newest first), then the history's.
    out.sort_by_key(|v| std::cmp::Reverse(v["time_ms"].as_u64().unwrap_or(0)));
    out.truncate(limit);
    out
}

/// `GET /api/requests/{id}`: the record, and under `content` what the request carried
/// (client request, upstream body, answer) when it was captured and is still recent.
async fn get_request(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let record = match app.records.get(&id) {
        Some(r) => Some(serde_json::to_value(&*r).unwrap_or_default()),
        None => {
            let wanted = id.clone();
            match from_history(&app, move |h| h.get(&wanted)).await {
                Some(Ok(found)) => found,
                Some(Err(e)) => return e,
                None => None,
            }
        }
    };
    let Some(mut record) = record else {
        return ApiError::new(
            ErrorKind::NotFound,
            format!("no recent request with id {id}"),
        )
        .into_response();
    };
    // Content lives beside the record, in memory only (observe::records).
    if let Some(fields) = record.as_object_mut() {
        fields.insert("content".into(), json!(app.records.content(&id).as_deref()));
    }
    Json(record).into_response()
}

#[derive(Deserialize)]
struct UsageQuery {
    window: Option<String>,
}

/// `GET /api/usage?window=1h|24h|7d` (default 24h): requests, failures and tokens per model,
/// route, backend and key over the window, most requests first.
async fn usage(State(app): State<Arc<AppState>>, Query(q): Query<UsageQuery>) -> Response {
    let window = q.window.as_deref().unwrap_or("24h");
    let span = match window {
        "1h" => Duration::from_secs(3600),
        "24h" => Duration::from_secs(86_400),
        "7d" => Duration::from_secs(7 * 86_400),
        other => {
            return ApiError::invalid(format!("window must be 1h, 24h or 7d, not {other:?}"))
                .into_response()
        }
    };
    let since = now_ms().saturating_sub(span.as_millis() as u64);
    let (rows, source) = match from_history(&app, move |h| h.usage(since)).await {
        Some(Ok(rows)) => (rows, "history"),
        Some(Err(e)) => return e,
        None => (app.records.usage(since), "memory"),
    };
    Json(json!({"window": window, "since_ms": since, "source": source, "rows": rows}))
        .into_response()
}

/// `GET /api/health`: each backend with what discovery found and each endpoint's state (in,
/// ejected or cooling, and the last failure), the config version and its recent changes.
async fn health(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let rt = app.runtime.load();
    let now = Instant::now();
    let backends: Vec<serde_json::Value> = rt
        .backends
        .iter()
        .map(|b| {
            let endpoints: Vec<EndpointStatus> =
                b.endpoints.iter().map(|e| e.status(now)).collect();
            json!({
                "name": b.spec.name,
                "protocol": b.spec.protocol,
                "base_url": b.base_url,
                "discovered": b.discovered.get().map(|d| json!({
                    "served_model": d.served_model,
                    "context_window": d.context_window,
                    "clamps_max_tokens": d.clamps_max_tokens,
                })),
                "endpoints": endpoints,
            })
        })
        .collect();
    Json(json!({
        "config_version": rt.version,
        "ready": app.ready.load(Ordering::Relaxed),
        "in_flight": app.in_flight(),
        "backends": backends,
        "reloads": app.reloads(),
    }))
}

/// Runs a history read off the async threads: `None` without a history; a failed read is a
/// 500 that names it.
async fn from_history<T: Send + 'static>(
    app: &Arc<AppState>,
    read: impl FnOnce(&History) -> Result<T, HistoryError> + Send + 'static,
) -> Option<Result<T, Response>> {
    app.records.history()?;
    let app = app.clone();
    let joined = tokio::task::spawn_blocking(move || {
        read(
            app.records
                .history()
                .expect("checked above; set once, never unset"),
        )
    })
    .await;
    let message = match joined {
        Ok(Ok(v)) => return Some(Ok(v)),
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("request history read failed: {e}"),
    };
    tracing::warn!(error = %message, "admin API");
    Some(Err(ApiError::new(ErrorKind::Api, message).into_response()))
}

/// `GET /api/requests/live`: server-sent events, `event: started` (id, model, route, …) as a
/// request is routed, `event: request` with its record as it finishes; `event: lagged` with
/// `{"missed": n}` when this reader fell behind.
async fn live_requests(State(app): State<Arc<AppState>>) -> Response {
    let mut rx = app.records.subscribe();
    let stream = async_stream::stream! {
        yield Ok::<Bytes, Infallible>(Bytes::from_static(b": live\n\n"));
        loop {
            match tokio::time::timeout(LIVE_KEEPALIVE, rx.recv()).await {
                Ok(Ok(Live::Started(s))) => yield Ok(event("started", &*s)),
                Ok(Ok(Live::Finished(record))) => yield Ok(event("request", &*record)),
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

fn event(name: &str, record: &impl serde::Serialize) -> Bytes {
    let mut out = Vec::new();
    write_sse(&mut out, name, |out| {
        serde_json::to_writer(out, record).expect("a record serializes")
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::access_log::AccessLog;

    fn record(id: &str, time_ms: u64) -> Arc<RequestRecord> {
        let mut r = AccessLog::new(id.into(), Instant::now()).to_record(1, "");
        r.time_ms = time_ms;
        Arc::new(r)
    }

    #[test]
    fn the_list_merges_memory_and_history_newest_first_each_request_once() {
        // In memory: the newest two, one not committed yet (b).
        let memory = [record("b", 30), record("a", 20)];
        let stored = vec![
            json!({"id": "a", "time_ms": 20}),
            json!({"id": "x", "time_ms": 25}),
            json!({"id": "y", "time_ms": 10}),
        ];
        let ids = |list: Vec<Value>| -> Vec<String> {
            list.iter()
                .map(|v| v["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            ids(newest_of(&memory, stored.clone(), 10)),
            ["b", "x", "a", "y"]
        );
        assert_eq!(ids(newest_of(&memory, stored, 2)), ["b", "x"]);
        // A restarted proxy: nothing in memory yet, the history alone.
        assert_eq!(
            ids(newest_of(&[], vec![json!({"id": "y", "time_ms": 10})], 5)),
            ["y"]
        );
    }
}
