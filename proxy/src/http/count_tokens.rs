//! `POST /v1/messages/count_tokens`.

use super::messages::{self, deserialize, edit_context, parse_json, resolve, validate_request};
use crate::error::ApiError;
use crate::fixes::context::estimate_prompt_tokens;
use crate::forward::{self};
use crate::protocol::anthropic::MessagesRequest;
use crate::state::AppState;
use crate::translate::request::{to_openai, BackendShape};
use crate::upstream;
use crate::upstream::backend::BackendRuntime;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use switchyard_api::Protocol;

/// Exact via the backend's `/tokenize` (vLLM) on the translated prompt, else the estimate.
///
/// Limits: a place under `maxInFlight` and the body limits as for `messages`, then the
/// key's requests-per-minute quota (`KeyEntry::admit_count`: not its token quota or
/// concurrency). The backend's cost is bounded by [`CountCache`].
pub(super) async fn count_tokens(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let _slot = app.enter()?;
    let rt = app.runtime.load_full();
    let key = rt.keys.authenticate(&headers)?;
    let bytes = messages::read_body_within(&app, &headers, body, &rt.settings).await?;
    key.admit_count()?;
    // count_tokens takes a Messages body without `max_tokens`.
    let mut v: Value = parse_json(&bytes)?;
    if let Some(obj) = v.as_object_mut() {
        obj.entry("max_tokens").or_insert(json!(1));
    }
    let mut req: MessagesRequest = deserialize(v)?;
    validate_request(&req)?;
    let route = resolve(&rt, &req.model)?;
    key.authorize_route(&route.name)?;
    let (estimate, _) = edit_context(&mut req);
    let plan = route.plan(&forward::facts(&req, &headers, estimate), 0);
    let Some(backend) = plan.backends.first().map(|i| rt.backends[*i].clone()) else {
        return Ok(Json(json!({"input_tokens": estimate})));
    };
    crate::fixes::apply(&mut req, backend.spec.system_messages);
    let estimate = estimate_prompt_tokens(&req);
    let exact = exact_count(&app, &backend, req).await?;
    Ok(Json(json!({"input_tokens": exact.unwrap_or(estimate)})))
}

/// The backend's own count of the translated prompt (Chat Completions backends), `None`
/// when it cannot be had now (the estimate is answered then).
async fn exact_count(
    app: &AppState,
    backend: &BackendRuntime,
    req: MessagesRequest,
) -> Result<Option<u64>, ApiError> {
    let discovered = match upstream::discover(&app.client, backend).await {
        Ok(d) if backend.spec.protocol == Protocol::Openai => d,
        _ => return Ok(None),
    };
    let shape = BackendShape {
        served_model: &discovered.served_model,
        thinking: backend.spec.thinking,
        parameters: &backend.spec.parameters,
    };
    let chat = to_openai(req, 1, &shape)?.request;
    Ok(app.counts.count(&app.client, backend, &chat).await)
}
