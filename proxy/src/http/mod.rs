//! The client-facing HTTP API (Anthropic Messages; OpenAI Chat Completions and Responses in
//! `openai`, through the same path) and the admin listener (`admin`: metrics, health, the
//! request view).
//!
//! A request reads top-down: `messages` (keys, limits, parse, route) → `forward` (plan,
//! endpoint, retries, fallbacks; `fixes` → `translate` → `upstream`) → `relay` for streams.
//! Every error on the way is an `ApiError`, rendered once as Anthropic error JSON; every
//! answer of the API listener, unknown paths and wrong methods included, carries a
//! `request-id` (one layer, `stamp_request_id`).

pub mod serve;

pub mod admin;

pub mod count_tokens;
pub mod guard;
pub mod messages;
pub mod models;
pub mod openai;

use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use count_tokens::count_tokens;
use guard::guarded;
use messages::messages;
use models::{get_model, list_models};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn api_router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/", get(root).head(root))
        .route("/api/hello", get(hello))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(openai::create_response))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    guarded(routes).with_state(state)
}

async fn root(method: Method) -> Response {
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    Json(json!({"name": "switchyard-proxy", "status": "ok"})).into_response()
}

/// Claude Code's connection warm-up probe (`HEAD /api/hello`, also `GET`): no I/O, no auth.
/// Axum answers `HEAD` from the `GET` handler, without the body.
async fn hello() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

/// A known path with the wrong method: Anthropic error JSON instead of axum's empty 405.
async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

pub use admin::admin_router;
