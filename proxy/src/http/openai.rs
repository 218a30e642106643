//! The OpenAI front doors: `POST /v1/chat/completions` and `POST /v1/responses`.
//!
//! A door turns the client's request into a Messages request (`translate::front`), hands it
//! to the same path `/v1/messages` takes (`messages::admit` → `route_and_forward`: keys,
//! limits, routing, fixes, the context clamp, failover, metrics, the access log), and turns
//! the Anthropic answer back into the client's protocol: a whole message, an SSE stream
//! (decoded event by event), or an error, always in OpenAI's error shape with OpenAI's
//! status (`ApiError::openai_response`).

use super::guard::{GuardedBody, REQUEST_ID};
use super::messages::{admit, forward_responses, parse_json, route_and_forward};
use crate::error::ApiError;
use crate::forward::Forwarded;
use crate::observe::access_log::AccessLog;
use crate::protocol::sse;
use crate::state::{new_id, AppState};
use crate::translate::front::{chat, responses, FrontStream};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// Anthropic's answers are small JSON bodies or SSE; one event is bounded like a backend's.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
enum Door {
    Chat,
    Responses,
}

/// What a door must remember of the request to answer in its protocol.
enum Front {
    Chat(chat::ChatFront),
    Responses(responses::ResponsesFront),
    /// Forwarded unchanged (`responsesApi: forward`): the answer is already the client's.
    Forwarded,
}

pub(super) async fn chat_completions(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(app, headers, body, Door::Chat).await
}

pub(super) async fn create_response(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(app, headers, body, Door::Responses).await
}

async fn serve(app: Arc<AppState>, headers: HeaderMap, body: Body, door: Door) -> Response {
    let request_id = new_id("req");
    let span = tracing::info_span!("request", id = %request_id);
    let mut log = AccessLog::new(request_id.clone(), Instant::now());
    log.api = match door {
        Door::Chat => "chat_completions",
        Door::Responses => "responses",
    };
    let result = match app.enter() {
        Ok(slot) => handle(&app, &headers, body, door, &mut log)
            .instrument(span.clone())
            .await
            .map(|(done, front)| (done, front, slot)),
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok((Forwarded::Streaming(resp), front, slot)) => {
            stream_out(GuardedBody::wrap(resp, slot), front)
        }
        Ok((Forwarded::Complete(resp), front, _slot)) => {
            log.status = resp.status().as_u16();
            span.in_scope(|| log.finish(&app.metrics, &app.records));
            whole_out(resp, &front).await
        }
        Err(err) => {
            log.status = err.kind.status().as_u16();
            log.error = Some(err.message.clone());
            span.in_scope(|| log.finish(&app.metrics, &app.records));
            err.openai_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        // OpenAI's name for it too: the openai SDKs expose `x-request-id` as `_request_id`.
        resp.headers_mut().insert("x-request-id", v.clone());
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// The door's request → a Messages request, then the shared path.
async fn handle(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    door: Door,
    log: &mut AccessLog,
) -> Result<(Forwarded, Front), ApiError> {
    let admitted = admit(app, headers, body, log).await?;
    let value: Value = parse_json(&admitted.body)?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (req, front) = match door {
        Door::Chat => {
            let (req, front) = chat::request(value, new_id("chatcmpl"), created)?;
            (req, Front::Chat(front))
        }
        Door::Responses => {
            let model = value["model"].as_str().unwrap_or_default();
            if admitted.forwards_responses(model) {
                let done = forward_responses(app, admitted, headers, value, log).await?;
                return Ok((done, Front::Forwarded));
            }
            let (req, front) = responses::request(value, new_id("resp"), created)?;
            (req, Front::Responses(front))
        }
    };
    let done = route_and_forward(app, admitted, headers, req, log).await?;
    Ok((done, front))
}

/// A whole answer (or an error the Messages path produced) in the door's protocol.
async fn whole_out(resp: Response, front: &Front) -> Response {
    if matches!(front, Front::Forwarded) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // The Messages path's whole answers are JSON values it built: in memory, not streamed.
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !parts.status.is_success() {
        let err = ApiError::from_anthropic_body(&value).unwrap_or_else(|| {
            ApiError::new(
                crate::error::ErrorKind::Api,
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        });
        let mut out = err.openai_response();
        // The Messages path's status stands (a 429 stays 429), but for 529.
        if parts.status.as_u16() != 529 {
            *out.status_mut() = parts.status;
        }
        for name in ["retry-after", "x-should-retry"] {
            if let Some(v) = parts.headers.get(name) {
                out.headers_mut().insert(name, v.clone());
            }
        }
        return out;
    }
    let answer = match front {
        Front::Chat(f) => chat::response(f, &value),
        Front::Responses(f) => responses::response(f, &value),
        Front::Forwarded => value,
    };
    (StatusCode::OK, Json(answer)).into_response()
}

/// Writes the decoded events; true once the Messages stream has ended (`message_stop`, an
/// `error` event, or input that is not SSE, which is cut).
fn write_events(
    decoder: &mut sse::Decoder,
    writer: &mut dyn FrontStream,
    out: &mut Vec<u8>,
) -> bool {
    while let Some(ev) = decoder.next_event() {
        let Ok(ev) = ev else {
            writer.cut(out);
            return true;
        };
        if ev.event == "ping" {
            // Neither OpenAI protocol has a ping; an SSE comment keeps a long prefill's
            // silence from idle timeouts on the way (ingress, load balancers), and every
            // SSE client skips comments (WHATWG: lines starting with `:`).
            out.extend_from_slice(b": ping\n\n");
            continue;
        }
        writer.event(ev.event, ev.data, out);
        if matches!(ev.event, "message_stop" | "error") {
            return true;
        }
    }
    false
}

/// The committed Messages stream, re-framed event by event in the door's protocol. Its end
/// without `message_stop` or `error` (a cut) ends the client's stream the door's way.
fn stream_out(resp: Response, front: Front) -> Response {
    let mut writer: Box<dyn FrontStream> = match front {
        Front::Chat(f) => Box::new(chat::ChatStream::new(f)),
        Front::Responses(f) => Box::new(responses::ResponsesStream::new(f)),
        Front::Forwarded => return resp,
    };
    let (parts, body) = resp.into_parts();
    let mut input = body.into_data_stream();
    let stream = async_stream::stream! {
        let mut decoder = sse::Decoder::new(MAX_EVENT_BYTES);
        // The client's stream is over; the input is still read to its end, so that the
        // Messages stream finishes its own bookkeeping (access line, metrics, key usage).
        let mut done = false;
        while let Some(chunk) = input.next().await {
            let Ok(bytes) = chunk else { break };
            if done {
                continue;
            }
            let mut out = Vec::new();
            decoder.feed(&bytes);
            done = write_events(&mut decoder, writer.as_mut(), &mut out);
            if !out.is_empty() {
                yield Ok::<Bytes, Infallible>(Bytes::from(out));
            }
        }
        if !done {
            let mut out = Vec::new();
            decoder.end();
            if !write_events(&mut decoder, writer.as_mut(), &mut out) {
                writer.cut(&mut out);
            }
            yield Ok(Bytes::from(out));
        }
    };
    Response::from_parts(parts, Body::from_stream(stream))
}
