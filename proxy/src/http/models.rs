//! `GET /v1/models` and `GET /v1/models/{id}`.

use crate::config::Runtime;
use crate::error::{ApiError, ErrorKind};
use crate::protocol::anthropic::ModelInfo;
use crate::routing::keys::KeyEntry;
use crate::routing::route::{CompiledRoute, RequestFacts};
use crate::state::AppState;
use crate::upstream::backend::BackendRuntime;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// `GET /v1/models` (Claude Code's gateway model discovery, 3 s timeout): built from the
/// configuration alone, never waiting on a backend.
///
/// - Every exact model name of a route, `display_name` the model its backend serves
///   (`servedModel`, else what discovery already found; the id itself until then).
/// - Glob routes (`claude-*`, `*`) list no pattern, since a pattern is not a model id.
///   Instead, each backend's served model is listed when some route matches that name (so
///   `--upstream` lists e.g. `qwen3-coder`). Claude Code keeps only ids containing "claude"
///   or "anthropic": name a route's models exactly to offer them in its `/model` picker.
/// - Only models of routes the caller's key may use.
fn model_list(rt: &Runtime, key: &KeyEntry) -> Vec<ModelInfo> {
    let allowed = |model: &str| {
        rt.routes
            .resolve(model)
            .filter(|r| key.allows_route(&r.name))
    };
    let mut data: Vec<ModelInfo> = rt
        .routes
        .exact_names()
        .filter_map(|id| {
            let route = allowed(id)?;
            let served = first_backend(rt, route, id).and_then(served_model);
            Some(model_info(id.to_owned(), served))
        })
        .collect();
    for served in rt.backends.iter().filter_map(|b| served_model(b)) {
        if allowed(&served).is_some() && !data.iter().any(|m| m.id == served) {
            data.push(model_info(served, None));
        }
    }
    data
}

/// The backend a plain request for `model` goes to first.
fn first_backend<'a>(
    rt: &'a Runtime,
    route: &CompiledRoute,
    model: &str,
) -> Option<&'a BackendRuntime> {
    let facts = RequestFacts {
        model,
        ..Default::default()
    };
    let i = *route.plan(&facts, 0).backends.first()?;
    rt.backends.get(i).map(|b| &**b)
}

/// The backend's model name, if known without asking it.
fn served_model(b: &BackendRuntime) -> Option<String> {
    b.spec
        .served_model
        .clone()
        .or_else(|| b.discovered.get().map(|d| d.served_model.clone()))
}

fn model_info(id: String, display_name: Option<String>) -> ModelInfo {
    ModelInfo {
        kind: "model",
        display_name: display_name.unwrap_or_else(|| id.clone()),
        id,
        created_at: "2025-01-01T00:00:00Z",
    }
}

/// Whose shape an answer takes: Anthropic's for clients that send `anthropic-version` (the
/// Anthropic SDKs and Claude Code always do), OpenAI's for every other client (the openai
/// SDKs, Codex, Open WebUI, …), errors included.
fn anthropic_client(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

fn error_for(headers: &HeaderMap, err: ApiError) -> Response {
    if anthropic_client(headers) {
        err.into_response()
    } else {
        err.openai_response()
    }
}

/// OpenAI's model object. `created` is fixed, like Anthropic's `created_at` above: routes
/// have no creation date.
fn openai_model(m: &ModelInfo) -> Value {
    json!({"id": m.id, "object": "model", "created": 1_735_689_600, "owned_by": "switchyard"})
}

/// Same authentication as `/v1/messages`.
pub(super) async fn list_models(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let rt = app.runtime.load_full();
    let key = match rt.keys.authenticate(&headers) {
        Ok(key) => key,
        Err(e) => return error_for(&headers, e.into()),
    };
    let data = model_list(&rt, &key);
    if !anthropic_client(&headers) {
        let data: Vec<Value> = data.iter().map(openai_model).collect();
        return Json(json!({"object": "list", "data": data})).into_response();
    }
    let first = data.first().map(|m| m.id.clone());
    let last = data.last().map(|m| m.id.clone());
    Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
        .into_response()
}

pub(super) async fn get_model(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let rt = app.runtime.load_full();
    let key = match rt.keys.authenticate(&headers) {
        Ok(key) => key,
        Err(e) => return error_for(&headers, e.into()),
    };
    let route = rt.routes.resolve(&id).filter(|r| key.allows_route(&r.name));
    let Some(route) = route else {
        let err = ApiError::new(
            ErrorKind::NotFound,
            format!("model `{id}` is not served here"),
        );
        return error_for(&headers, err);
    };
    let served = first_backend(&rt, route, &id).and_then(served_model);
    let info = model_info(id, served);
    if anthropic_client(&headers) {
        Json(info).into_response()
    } else {
        Json(openai_model(&info)).into_response()
    }
}
