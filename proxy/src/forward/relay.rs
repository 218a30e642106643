//! Streaming response bodies, once a stream is committed to the client.
//!
//! While the backend is silent the body sends `ping` every `pingIntervalMs`; a backend that
//! fails, stalls past the route's timeouts or closes early ends the stream with an `error`
//! event (never a hang, never a silent cut). Dropping the body (client gone) drops the
//! upstream response, which closes its connection: vLLM aborts the request.

use crate::fixes::context::reaches_window;
use crate::observe::access_log::AccessLog;
use crate::observe::capture::Assembler;
use crate::protocol::anthropic::{self, StopReason, Usage};
use crate::routing::balance::InFlight;
use crate::state::AppState;
use crate::translate::stream::{error_event, ping, write_sse, StreamTranslator};
use crate::upstream::{Item, RawEvent, UpstreamError, UpstreamStream};
use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_api::Timeouts;

/// Most upstream chunks folded into one client write.
const BATCH: usize = 64;
/// Scheduler rounds to wait for the upstream connection's task to hand over the next chunk
/// it already has (it takes two: measured with a debug counter, 4,925 of 4,934 chunks).
const REQUEUES: usize = 3;

/// Collects the upstream items that are already on hand, for one client write.
///
/// hyper's client connection task hands a body over one HTTP chunk at a time (its body
/// channel holds one chunk and waits for the reader to want the next), and vLLM writes each
/// SSE event as its own chunk, so `now_or_never` alone sees one event per wake-up even when
/// a whole burst sits in the socket buffer. Yielding once lets that task decode the next
/// chunk; a yield that brings nothing ends the batch. The cost is a task switch per event
/// instead of a client `writev` per event; a paced stream pays one yield (µs) per token.
#[derive(Default)]
pub(super) struct Batch {
    taken: usize,
}

impl Batch {
    pub(super) async fn next<S: futures::Stream + Unpin>(
        &mut self,
        s: &mut S,
    ) -> Option<Option<S::Item>> {
        if self.taken >= BATCH {
            return None;
        }
        let item = match s.next().now_or_never() {
            Some(item) => item,
            None => {
                let mut got = None;
                for _ in 0..REQUEUES {
                    requeue().await;
                    got = s.next().now_or_never();
                    if got.is_some() {
                        break;
                    }
                }
                got?
            }
        };
        self.taken += 1;
        Some(item)
    }
}

/// Returns to the scheduler once, queued behind the tasks already woken (the upstream
/// connection's). Unlike `tokio::task::yield_now`, which waits for the next I/O poll, this
/// comes back as soon as they have run.
async fn requeue() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut queued, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Stream timers: ping cadence and the route's deadlines.
#[derive(Debug, Clone)]
pub struct Timers {
    pub ping_every: Duration,
    pub first_token: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl Timers {
    pub fn new(ping_every_ms: u64, t: &Timeouts) -> Self {
        Self {
            ping_every: Duration::from_millis(ping_every_ms.max(1)),
            first_token: Duration::from_millis(t.first_token_ms),
            idle: Duration::from_millis(t.idle_ms),
            total: Duration::from_millis(t.total_ms),
        }
    }
}

/// How long to wait for the next upstream item, and what it means if nothing comes: a
/// `ping` is due (`None`), or a deadline of the route passes (its description).
fn next_wait(
    timers: &Timers,
    started: Instant,
    last_data: Option<Instant>,
) -> (Duration, Option<&'static str>) {
    let now = Instant::now();
    let total_left = (started + timers.total).saturating_duration_since(now);
    let (left, what) = match last_data {
        None => (
            (started + timers.first_token).saturating_duration_since(now),
            "no first token within the route's firstTokenMs",
        ),
        Some(t) => (
            (t + timers.idle).saturating_duration_since(now),
            "backend silent for longer than the route's idleMs",
        ),
    };
    let (left, what) = if total_left < left {
        (total_left, "request exceeded the route's totalMs")
    } else {
        (left, what)
    };
    if left <= timers.ping_every {
        (left, Some(what))
    } else {
        (timers.ping_every, None)
    }
}

/// What waiting for the next upstream item brought: the item, a due `ping`, or a deadline of
/// the route passed (the backend's timeout).
pub(super) enum Waited<T> {
    Item(T),
    Ping,
    Late(UpstreamError),
}

/// The next item of `s`, within the route's timers (see [`next_wait`]).
pub(super) async fn wait_next<S: futures::Stream + Unpin>(
    s: &mut S,
    timers: &Timers,
    started: Instant,
    last_data: Option<Instant>,
    backend: &str,
) -> Waited<Option<S::Item>> {
    let (wait, deadline) = next_wait(timers, started, last_data);
    match tokio::time::timeout(wait, s.next()).await {
        Ok(item) => Waited::Item(item),
        Err(_) => match deadline {
            None => Waited::Ping,
            Some(what) => Waited::Late(UpstreamError::Timeout {
                backend: backend.to_owned(),
                detail: what.into(),
            }),
        },
    }
}

/// Bookkeeping of a committed stream. Dropped before `complete`: the client went away.
pub struct StreamGuard {
    app: Arc<AppState>,
    pub(super) log: AccessLog,
    _in_flight: InFlight,
    done: bool,
    /// Rebuilds the answer from the Messages stream, when its content is captured.
    assembler: Option<Assembler>,
}

impl StreamGuard {
    pub fn new(app: Arc<AppState>, log: AccessLog, in_flight: InFlight) -> Self {
        app.metrics.active_streams.inc();
        Self {
            app,
            log,
            _in_flight: in_flight,
            done: false,
            assembler: None,
        }
    }

    /// A guard that also rebuilds the answer from the Anthropic stream it is shown (only when
    /// the request's content is captured).
    pub fn reassembling(mut self) -> Self {
        if self.log.capture.is_some() {
            self.assembler = Some(Assembler::default());
        }
        self
    }

    /// The bytes of SSE that go to the client next.
    pub(super) fn sent(&mut self, out: &[u8]) {
        if let Some(a) = self.assembler.as_mut() {
            a.feed(out);
        }
    }

    fn finish(&mut self) {
        if let Some(a) = self.assembler.take() {
            self.log.capture_response(&a.finish());
        }
        self.log.finish(&self.app.metrics, &self.app.records);
    }

    pub(super) fn token(&mut self) {
        if self.log.ttft.is_none() {
            self.log.ttft = Some(self.log.started.elapsed());
        }
    }

    pub(super) fn upstream_error(&mut self, e: &UpstreamError) {
        crate::forward::count_upstream_error(&self.app, &self.log.backend, e);
        tracing::warn!(request_id = %self.log.request_id, error = %e, "backend failed after the stream was committed");
        self.log.error = Some(e.to_string());
    }

    pub(super) fn complete(&mut self, usage: Usage, stop: Option<StopReason>) {
        self.done = true;
        // The client got 200 and a stream, even when it ended with an `error` event (that
        // is in `error` of the access line).
        self.log.status = StatusCode::OK.as_u16();
        self.log.usage = usage;
        self.log.stop_reason = stop;
        self.finish();
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.app.metrics.active_streams.dec();
        if !self.done {
            self.app.metrics.client_disconnects.inc();
            self.log.error = Some("client disconnected; upstream request cancelled".into());
            self.finish();
        }
    }
}

pub fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
        .expect("static response parts are valid")
}

/// The translated OpenAI stream; `first` holds what was written before committing.
pub fn openai_body(
    mut chunks: UpstreamStream<crate::protocol::openai::ChatChunk>,
    mut tr: StreamTranslator,
    first: Vec<u8>,
    mut guard: StreamGuard,
    timers: Timers,
) -> Body {
    let backend = guard.log.backend.clone();
    let stream = async_stream::stream! {
        let started = guard.log.started;
        let mut last_data = guard.log.ttft.map(|_| Instant::now());
        guard.sent(&first);
        yield Ok::<Bytes, Infallible>(Bytes::from(first));
        while !tr.finished() {
            let mut out = Vec::new();
            match wait_next(&mut chunks, &timers, started, last_data, &backend).await {
                Waited::Ping => ping(&mut out),
                Waited::Late(e) => {
                    guard.upstream_error(&e);
                    tr.fail(&e.to_api(), &mut out);
                }
                Waited::Item(item) => {
                    // Room for a few events, taken once there is something to write (an
                    // idle stream holds no buffer): growing from empty cost four reallocs a
                    // token.
                    out.reserve(1024);
                    if feed(item, &mut tr, &mut out, &mut guard, &backend) {
                        last_data = Some(Instant::now());
                    }
                    // Chunks that are already here go out in the same write: one syscall
                    // for a burst instead of one per token.
                    let mut batch = Batch::default();
                    while !tr.finished() {
                        let Some(item) = batch.next(&mut chunks).await else { break };
                        feed(item, &mut tr, &mut out, &mut guard, &backend);
                    }
                }
            }
            if !out.is_empty() {
                guard.sent(&out);
                yield Ok(Bytes::from(out));
            }
        }
        if tr.text_tool_calls > 0 {
            guard.log.fixed_because("text_tool_calls", super::recovered_note(tr.text_tool_calls as usize));
        }
        if tr.anomalies > 0 {
            tracing::warn!(fragments = tr.anomalies, "tool-call fragments arrived after their call was closed");
        }
        guard.complete(tr.usage(), tr.stop_reason());
    };
    Body::from_stream(stream)
}

/// Applies one upstream item to the translator; true when it carried data.
fn feed(
    item: Option<Result<Item<crate::protocol::openai::ChatChunk>, UpstreamError>>,
    tr: &mut StreamTranslator,
    out: &mut Vec<u8>,
    guard: &mut StreamGuard,
    backend: &str,
) -> bool {
    let failure = match item {
        Some(Ok(Item::Data(chunk))) => {
            tr.on_chunk(chunk, out);
            guard.token();
            let Some(e) = tr.failure() else {
                return true;
            };
            // The translator ended the stream itself (a chunk it cannot use): logged and
            // counted as the backend's failure.
            guard.upstream_error(&UpstreamError::Protocol {
                backend: backend.to_owned(),
                detail: e.message.clone(),
            });
            return false;
        }
        Some(Ok(Item::Done)) => {
            tr.finish(out);
            return false;
        }
        Some(Err(e)) => e,
        None => UpstreamError::Interrupted {
            backend: backend.to_owned(),
            detail: "connection closed without [DONE]".into(),
        },
    };
    guard.upstream_error(&failure);
    tr.fail(&failure.to_api(), out);
    false
}

/// Relays an Anthropic-protocol stream, fixing what clients trip on: a missing or null
/// `usage`, and the backend's model name in place of the one the client asked for.
pub struct Relay {
    client_model: String,
    started: bool,
    stopped: bool,
    usage: Usage,
    stop: Option<StopReason>,
    window_bound: bool,
    window: Option<u32>,
}

impl Relay {
    /// A `max_tokens` stop is reported as `model_context_window_exceeded` when the window
    /// bound the answer: by the proxy's fit, or as the usage shows against `window`.
    pub fn window_bound(mut self, window_bound: bool, window: Option<u32>) -> Self {
        self.window_bound = window_bound;
        self.window = window;
        self
    }

    pub fn new(client_model: String, prompt_estimate: u64) -> Self {
        Self {
            client_model,
            started: false,
            stopped: false,
            usage: Usage {
                input_tokens: prompt_estimate,
                ..Usage::default()
            },
            stop: None,
            window_bound: false,
            window: None,
        }
    }

    /// Our own `message_start`, when the stream is committed before the backend's.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        self.started = true;
        let mut msg =
            anthropic::MessageResponse::new(crate::state::new_id("msg"), self.client_model.clone());
        msg.usage = self.usage;
        write_raw(
            out,
            "message_start",
            &json!({"type": "message_start", "message": msg}).to_string(),
        );
    }

    pub fn event(&mut self, ev: RawEvent, out: &mut Vec<u8>) {
        match ev.event.as_str() {
            "message_start" => {
                if self.started {
                    return; // ours already went out
                }
                self.started = true;
                let mut v: Value = serde_json::from_str(&ev.data).unwrap_or_else(|_| json!({}));
                v["message"]["model"] = json!(self.client_model);
                for (k, default) in [("type", "message"), ("role", "assistant")] {
                    if v["message"].get(k).is_none() {
                        v["message"][k] = json!(default);
                    }
                }
                self.usage = ensure_usage(&mut v["message"]["usage"]);
                write_raw(out, "message_start", &v.to_string());
            }
            "message_delta" => {
                if !self.started {
                    self.start(out);
                }
                let mut v: Value = serde_json::from_str(&ev.data).unwrap_or_else(|_| json!({}));
                let delta = ensure_usage(&mut v["usage"]);
                self.usage.output_tokens = delta.output_tokens;
                let input = self.usage.input_tokens.max(delta.input_tokens);
                let fills = reaches_window(input + delta.output_tokens, self.window);
                self.stop = fix_stop(&mut v["delta"], self.window_bound || fills);
                write_raw(out, "message_delta", &v.to_string());
            }
            name => {
                if !self.started {
                    self.start(out);
                }
                write_raw(out, name, &ev.data);
            }
        }
    }

    pub fn stop_event(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(out);
        }
        self.stopped = true;
        write_raw(out, "message_stop", "{\"type\":\"message_stop\"}");
    }
}

/// The relayed Anthropic stream; `first` is the backend's first event, if it came in time.
pub fn anthropic_body(
    mut events: UpstreamStream<RawEvent>,
    mut relay: Relay,
    first: Option<Item<RawEvent>>,
    mut guard: StreamGuard,
    timers: Timers,
) -> Body {
    let backend = guard.log.backend.clone();
    let stream = async_stream::stream! {
        let started = guard.log.started;
        let mut out = Vec::new();
        let mut last_data = None;
        match first {
            Some(Item::Data(ev)) => { relay.event(ev, &mut out); last_data = Some(Instant::now()); }
            Some(Item::Done) => relay.stop_event(&mut out),
            None => relay.start(&mut out),
        }
        guard.sent(&out);
        yield Ok::<Bytes, Infallible>(Bytes::from(out));
        let mut failed = false;
        while !relay.stopped && !failed {
            let mut out = Vec::new();
            let failure = match wait_next(&mut events, &timers, started, last_data, &backend).await {
                Waited::Ping => { ping(&mut out); None }
                Waited::Late(e) => Some(e),
                Waited::Item(item) => {
                    last_data = Some(Instant::now());
                    let mut failure = relay_item(item, &mut relay, &mut out, &mut guard, &backend);
                    let mut batch = Batch::default();
                    while failure.is_none() && !relay.stopped {
                        let Some(item) = batch.next(&mut events).await else { break };
                        failure = relay_item(item, &mut relay, &mut out, &mut guard, &backend);
                    }
                    failure
                }
            };
            if let Some(e) = failure {
                guard.upstream_error(&e);
                error_event(&mut out, &e.to_api());
                failed = true;
            }
            if !out.is_empty() {
                guard.sent(&out);
                yield Ok(Bytes::from(out));
            }
        }
        guard.complete(relay.usage, relay.stop);
    };
    Body::from_stream(stream)
}

/// Applies one upstream event to the relay; the failure that ends the stream, if any.
fn relay_item(
    item: Option<Result<Item<RawEvent>, UpstreamError>>,
    relay: &mut Relay,
    out: &mut Vec<u8>,
    guard: &mut StreamGuard,
    backend: &str,
) -> Option<UpstreamError> {
    match item {
        Some(Ok(Item::Data(ev))) => {
            if ev.event == "content_block_delta" {
                guard.token();
            }
            relay.event(ev, out);
            None
        }
        Some(Ok(Item::Done)) => {
            relay.stop_event(out);
            None
        }
        Some(Err(e)) => Some(e),
        None => Some(UpstreamError::Interrupted {
            backend: backend.to_owned(),
            detail: "connection closed before message_stop".into(),
        }),
    }
}

/// Anthropic's `stop_reason`/`stop_sequence` pair, as clients expect it: vLLM's native route
/// drops a null `stop_sequence` from whole answers (`exclude_none`) and, before 0.30, from
/// `message_delta` (`vllm/entrypoints/anthropic/serving.py`); a window-bound `max_tokens`
/// stop becomes `model_context_window_exceeded`.
fn fix_stop(v: &mut Value, window_bound: bool) -> Option<StopReason> {
    if !v.is_object() {
        *v = json!({});
    }
    let stop = serde_json::from_value::<StopReason>(v["stop_reason"].clone())
        .ok()
        .map(|r| r.window_bound(window_bound));
    if let Some(r) = stop {
        v["stop_reason"] = json!(r);
    }
    if v.get("stop_sequence").is_none() {
        v["stop_sequence"] = Value::Null;
    }
    stop
}

/// A whole message from an Anthropic-protocol backend, as the client gets it: its model
/// name, numeric usage, the stop pair fixed. `None` when the body is not a JSON object.
pub fn relay_message(
    bytes: &[u8],
    client_model: &str,
    window_bound: bool,
    window: Option<u32>,
) -> Option<(Value, Usage, Option<StopReason>)> {
    let mut msg: Value = serde_json::from_slice(bytes).ok()?;
    let obj = msg.as_object_mut()?;
    obj.insert("model".into(), json!(client_model));
    let usage = ensure_usage(obj.entry("usage").or_insert(Value::Null));
    let fills = reaches_window(usage.input_tokens + usage.output_tokens, window);
    let stop = fix_stop(&mut msg, window_bound || fills);
    Some((msg, usage, stop))
}

pub(super) fn write_raw(out: &mut Vec<u8>, event: &str, data: &str) {
    write_sse(out, event, |out| out.extend_from_slice(data.as_bytes()));
}

/// Replaces a missing or partly null `usage` with numbers, and returns it.
pub fn ensure_usage(v: &mut Value) -> Usage {
    if !v.is_object() {
        *v = json!({});
    }
    let obj = v.as_object_mut().expect("just made an object");
    for key in [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ] {
        let entry = obj.entry(key).or_insert(json!(0));
        if !entry.is_u64() {
            *entry = json!(0);
        }
    }
    serde_json::from_value(v.clone()).unwrap_or_default()
}
