//! Responses requests forwarded unchanged, on routes with `responsesApi: forward`: to
//! backends that serve `/v1/responses` themselves (vLLM does), which then also answer what
//! the proxy's translation does not (`previous_response_id` with the backend's store,
//! gpt-oss Harmony items, hosted tools it runs).
//!
//! Everything around the exchange is the same as for any request: the route's plan and
//! rules, session affinity, endpoint choice, retries, failover before the first byte,
//! outliers, limits, the access line. The body goes out as the client sent it but for the
//! model (the backend's served name); the answer comes back as the backend sent it but for
//! the model in its response objects (the client's name), its usage read for the access
//! line and the token limits.

use super::relay::{self, StreamGuard, Timers, Waited};
use super::{
    client_auth_headers, note, rand_u64, session_header, Attempt, AttemptError, Forwarded, Life,
    Payload,
};
use crate::config::Runtime;
use crate::error::ApiError;
use crate::observe::access_log::AccessLog;
use crate::protocol::anthropic::Usage;
use crate::routing::route::{CompiledRoute, RequestFacts};
use crate::state::AppState;
use crate::upstream::{self, Item, RawEvent, UpstreamError, UpstreamStream};
use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

/// The session of a Responses client: Codex's `session-id` header, else the conversation's
/// `prompt_cache_key` (Codex's thread id) or `user`.
fn session_of(headers: &HeaderMap, body: &Value) -> Option<String> {
    session_header(headers)
        .or_else(|| body["prompt_cache_key"].as_str())
        .or_else(|| body["user"].as_str())
        .map(str::to_owned)
}

/// What the route's rules can see of a Responses request.
fn facts<'a>(headers: &'a HeaderMap, body: &'a Value, estimate: u64) -> RequestFacts<'a> {
    RequestFacts {
        model: body["model"].as_str().unwrap_or_default(),
        thinking: body.get("reasoning").is_some_and(|r| !r.is_null()),
        input_tokens: estimate,
        tools: body["tools"].as_array().is_some_and(|t| !t.is_empty()),
        headers: headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
            .collect(),
        ..Default::default()
    }
}

/// Forwards an admitted Responses request (`body` is the client's JSON, `model` in it).
pub async fn responses(
    app: &Arc<AppState>,
    rt: &Arc<Runtime>,
    route: &CompiledRoute,
    headers: &HeaderMap,
    body: Value,
    body_len: usize,
    log: &mut AccessLog,
) -> Result<Forwarded, ApiError> {
    let stream = body["stream"].as_bool().unwrap_or(false);
    let session = note(log, session_of(headers, &body), stream);
    // Bytes / 4: only the routing rules on input tokens read it; no clamp applies here.
    let estimate = (body_len / 4) as u64;
    let plan = route.plan(
        &facts(headers, &body, estimate),
        session.unwrap_or_else(rand_u64),
    );
    log.rule = plan.rule.map(str::to_owned);
    app.records.started(|| log.started_event());
    let backends = plan.backends;
    let life = Life::new(app, rt, route, headers, session, estimate, log.started);
    life.run(backends, Payload::Responses(body), log).await
}

impl Attempt<'_> {
    /// One try: the client's body with the served model to `{endpoint}/responses`.
    pub(super) async fn responses(
        &self,
        mut body: Value,
        log: &mut AccessLog,
    ) -> Result<Forwarded, AttemptError> {
        let in_flight = self.endpoint.start();
        let d = upstream::discover_at(&self.app.client, self.backend, &self.endpoint.url).await?;
        let client_model = body["model"].as_str().unwrap_or_default().to_owned();
        body["model"] = json!(d.served_model);
        let stream = body["stream"].as_bool().unwrap_or(false);
        log.capture_upstream(&body);
        let bytes = serde_json::to_vec(&body).expect("a JSON value serializes");
        let auth = client_auth_headers(self.backend, self.headers);
        let resp = self.post("/responses", bytes, &auth).await?;
        if stream {
            let timers = Timers::new(self.rt.settings.ping_interval_ms, &self.route.timeouts);
            let events = upstream::raw_events(self.backend, resp);
            let guard = StreamGuard::new(self.app.clone(), log.clone(), in_flight);
            let body = responses_body(events, client_model, guard, timers);
            return Ok(Forwarded::Streaming(relay::sse_response(body)));
        }
        let bytes = upstream::json_body(self.backend, resp).await?;
        let mut answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            AttemptError::Upstream(UpstreamError::Protocol {
                backend: self.name().to_owned(),
                detail: format!("a /v1/responses answer that is not JSON: {e}"),
            })
        })?;
        if let Some(obj) = answer.as_object_mut() {
            obj.insert("model".into(), json!(client_model));
        }
        log.usage = usage(&answer["usage"]);
        log.capture_response(&answer);
        Ok(Forwarded::Complete(Json(answer).into_response()))
    }
}

/// What a forwarded stream keeps of what passed: its last sequence number, the response id,
/// the usage, and whether the response reached a final event.
struct Passing {
    client_model: String,
    response_id: String,
    sequence: u64,
    usage: Usage,
    finished: bool,
}

impl Passing {
    /// Writes one event as it came, but for the model named in response objects.
    fn event(&mut self, ev: RawEvent, out: &mut Vec<u8>, guard: &mut StreamGuard) {
        if let Some(n) = sequence_number(&ev.data) {
            self.sequence = self.sequence.max(n);
        }
        if ev.event.ends_with(".delta") {
            guard.token();
        }
        let lifecycle = ev.event.starts_with("response.") && ev.data.contains("\"response\"");
        let Some(mut v) = lifecycle
            .then(|| serde_json::from_str::<Value>(&ev.data).ok())
            .flatten()
        else {
            return relay::write_raw(out, &ev.event, &ev.data);
        };
        let response = &mut v["response"];
        if let Some(id) = response["id"].as_str() {
            self.response_id = id.to_owned();
        }
        if response.is_object() {
            response["model"] = json!(self.client_model);
        }
        if matches!(
            ev.event.as_str(),
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            self.usage = usage(&response["usage"]);
            self.finished = true;
            // The final response object is the whole answer.
            guard.log.capture_response(response);
        }
        relay::write_raw(out, &ev.event, &v.to_string());
    }

    /// The end of a stream that failed: `error`, then `response.failed`, as the API ends one.
    fn fail(&mut self, e: &ApiError, out: &mut Vec<u8>) {
        let body = e.openai_body();
        let code = body["error"]["code"].as_str().unwrap_or("server_error");
        self.sequence += 1;
        let error = json!({"type": "error", "code": code, "message": e.message,
            "param": null, "sequence_number": self.sequence});
        relay::write_raw(out, "error", &error.to_string());
        self.sequence += 1;
        let failed = json!({"type": "response.failed", "sequence_number": self.sequence,
            "response": {"id": self.response_id, "object": "response", "status": "failed",
                "model": self.client_model, "output": [],
                "error": {"code": code, "message": e.message}}});
        relay::write_raw(out, "response.failed", &failed.to_string());
        self.finished = true;
    }
}

/// `"sequence_number": N` of an event's JSON, found without parsing all of it.
fn sequence_number(data: &str) -> Option<u64> {
    const KEY: &str = "\"sequence_number\":";
    let at = memchr::memmem::rfind(data.as_bytes(), KEY.as_bytes())? + KEY.len();
    let digits = data[at..].trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The forwarded stream: events as they came (see [`Passing`]); the route's timeouts and a
/// backend that stops before a final event end it with `error` + `response.failed`; an SSE
/// comment keeps a silent stream alive (clients ignore comments).
fn responses_body(
    mut events: UpstreamStream<RawEvent>,
    client_model: String,
    mut guard: StreamGuard,
    timers: Timers,
) -> Body {
    let backend = guard.log.backend.clone();
    let mut passing = Passing {
        client_model,
        response_id: String::new(),
        sequence: 0,
        usage: Usage::default(),
        finished: false,
    };
    let stream = async_stream::stream! {
        let started = guard.log.started;
        let mut last_data = None;
        let mut ended = false;
        while !ended {
            let mut out = Vec::new();
            let failure = match relay::wait_next(&mut events, &timers, started, last_data, &backend).await {
                Waited::Ping => { out.extend_from_slice(b": keep-alive\n\n"); None }
                Waited::Late(e) => Some(e),
                Waited::Item(mut item) => {
                    last_data = Some(Instant::now());
                    let mut batch = relay::Batch::default();
                    loop {
                        match item {
                            Some(Ok(Item::Data(ev))) => passing.event(ev, &mut out, &mut guard),
                            Some(Ok(Item::Done)) => {}
                            Some(Err(e)) => break Some(e),
                            None => {
                                ended = true;
                                break (!passing.finished).then(|| UpstreamError::Interrupted {
                                    backend: backend.clone(),
                                    detail: "connection closed before response.completed".into(),
                                });
                            }
                        }
                        match batch.next(&mut events).await {
                            Some(next) => item = next,
                            None => break None,
                        }
                    }
                }
            };
            if let Some(e) = failure {
                guard.upstream_error(&e);
                passing.fail(&e.to_api(), &mut out);
                ended = true;
            }
            if !out.is_empty() {
                yield Ok::<Bytes, Infallible>(Bytes::from(out));
            }
        }
        guard.complete(passing.usage, None);
    };
    Body::from_stream(stream)
}

/// A Responses `usage` as the access line counts tokens: `input_tokens` includes the cached
/// ones there, apart here (as Anthropic's usage keeps them).
pub(super) fn usage(u: &Value) -> Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let cached = n(&u["input_tokens_details"]["cached_tokens"]);
    Usage {
        input_tokens: n(&u["input_tokens"]).saturating_sub(cached),
        output_tokens: n(&u["output_tokens"]),
        cache_read_input_tokens: cached,
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_keeps_cached_tokens_apart() {
        let u = usage(&json!({"input_tokens": 120, "output_tokens": 7,
            "input_tokens_details": {"cached_tokens": 100}, "total_tokens": 127}));
        assert_eq!(
            (u.input_tokens, u.cache_read_input_tokens, u.output_tokens),
            (20, 100, 7)
        );
        assert_eq!(usage(&Value::Null).output_tokens, 0);
    }

    #[test]
    fn the_session_is_codexs_header_else_its_thread() {
        let mut headers = HeaderMap::new();
        let body = json!({"prompt_cache_key": "thread-1", "user": "u"});
        assert_eq!(session_of(&headers, &body).as_deref(), Some("thread-1"));
        headers.insert("session-id", "s-9".parse().unwrap());
        assert_eq!(session_of(&headers, &body).as_deref(), Some("s-9"));
        assert_eq!(session_of(&HeaderMap::new(), &json!({})), None);
    }
}
