//! `POST /v1/chat/completions`, shaped like `chat_completion_stream_generator_raw`
//! and `chat_completion_full_generator`
//! (`vllm/entrypoints/openai/chat_completion/serving.py`, 0.34; 0.11's
//! `serving_chat.py` has the same chunk sequence).
//!
//! Streaming (`text/event-stream; charset=utf-8`, as Starlette labels it):
//! - the route returns a lazy generator in a `StreamingResponse`, so headers
//!   go out at once; the first body bytes only after prefill, which by
//!   default grows with the prompt (`MockConfig::prefill_for`);
//! - first chunk `delta: {"role": "assistant", "content": ""}`; 0.34 passes
//!   `prompt_token_ids` and `prompt_text` explicitly to it, so
//!   `exclude_unset` keeps them as `null`;
//! - content / reasoning / tool-call deltas, one per generated piece; chunks are
//!   dumped with `exclude_unset`, so intermediate choices carry
//!   `logprobs: null, finish_reason: null` but no `stop_reason`;
//! - the finish: a final chunk (`delta: {"content": ""}`, or `{}` after tool
//!   calls) with `finish_reason` and `stop_reason`; when the budget runs out or
//!   a stop string matches, the finish rides on the last content chunk.  The
//!   budget is `min(max_tokens, max_model_len - prompt)` (`get_max_tokens`),
//!   and the scheduler's `check_stop` (`vllm/v1/core/sched/utils.py`) ends
//!   at either limit with `length`;
//! - `stream_options.include_usage`: a `choices: []` chunk with `usage`;
//!   `continuous_usage_stats`: every chunk carries `usage`;
//! - `data: [DONE]`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};

use super::errors::ApiError;
use super::generate::{self, Generation};
use super::scenario::{self, LastTurn, Piece, ScenarioInput, Script};
use super::stats::ResponseGuard;
use super::validate::{self, Prepared, ToolChoice};
use super::{random_hex, unix_now, AppState, ReasoningField, VllmRelease};

/// How long a "crashing" stream waits before cutting the connection, so the
/// bytes already produced reach the client first.
pub(crate) const CRASH_FLUSH: Duration = Duration::from_millis(50);

/// A request that passed all checks, with its scripted generation.
pub(crate) struct Planned {
    pub prepared: Prepared,
    pub script: Script,
    pub generation: Generation,
    /// Silence before the first body byte.
    pub prefill: Duration,
}

/// Runs the shared preprocessing pipeline and picks the scenario.
///
/// Injected failures (`error:CODE`, `error_once:CODE`, `/mock/fail_next`)
/// come after validation, where vLLM's admission control
/// (`QueueOverflowError`) and engine errors arise.
pub(crate) fn plan(st: &AppState, chat_body: &Value, last: LastTurn) -> Result<Planned, ApiError> {
    let cfg = &st.cfg;
    let params = validate::extract_params(chat_body);
    let prepared = validate::preprocess(cfg, chat_body, params)?;
    let roles = chat_body
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| m["role"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let forced_tool = match &prepared.params.tool_choice {
        ToolChoice::Required => Some(None),
        ToolChoice::Named(n) => Some(Some(n.clone())),
        _ => None,
    };
    let input = ScenarioInput {
        last,
        tool_names: prepared.params.tool_names.clone(),
        tools_parsed: prepared.params.tools_parsed(cfg),
        forced_tool,
        roles,
    };
    let script = scenario::build_script(&input);
    if let Some(code) = st.stats.take_fail_next() {
        return Err(ApiError::injected(code, cfg.vllm_release));
    }
    if let Some(code) = script.http_error {
        return Err(ApiError::injected(code, cfg.vllm_release));
    }
    if let Some(code) = script.http_error_once {
        if st.stats.first_error_once() {
            return Err(ApiError::injected(code, cfg.vllm_release));
        }
    }
    let generation = generate::apply(&script, prepared.max_tokens, &prepared.params.stop);
    let prefill = script
        .prefill
        .unwrap_or_else(|| cfg.prefill_for(prepared.prompt_tokens));
    Ok(Planned {
        prepared,
        script,
        generation,
        prefill,
    })
}

pub(crate) async fn chat_completions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = ResponseGuard::new(st.stats.clone());
    let parsed = validate::parse_json_body(&headers, &body);
    st.stats.record_request(
        "/v1/chat/completions",
        &headers,
        match &parsed {
            Ok(v) => v.clone(),
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        },
    );
    let planned = parsed.and_then(|body| {
        let ignored = validate::validate_chat_schema(&body)?;
        st.stats.record_ignored(&ignored);
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        plan(&st, &body, scenario::last_turn_openai(&messages))
    });
    let planned = match planned {
        Ok(p) => p,
        Err(e) => {
            guard.errored();
            return e.into_openai_response(st.cfg.vllm_release);
        }
    };
    let ctx = ChunkCtx {
        id: format!("chatcmpl-{}", random_hex()),
        created: unix_now(),
        model: st.cfg.served_model_name.clone(),
        reasoning_field: st.cfg.reasoning_field,
        prompt_tokens: planned.prepared.prompt_tokens,
        release: st.cfg.vllm_release,
    };
    if planned.prepared.params.stream {
        let opts = StreamOpts {
            include_usage: planned.prepared.params.include_usage && !planned.script.usage_null,
            continuous_usage: planned.prepared.params.continuous_usage
                && !planned.script.usage_null,
            prefill: planned.prefill,
            pace: planned.script.pace,
        };
        let stream = openai_stream(ctx, planned.generation, opts, guard);
        return sse_response(Body::from_stream(stream));
    }
    if !planned.prefill.is_zero() {
        tokio::time::sleep(planned.prefill).await;
    }
    if planned.generation.finish.is_none() {
        guard.abort();
        return crashed_json_response(format!(
            "{{\"id\":\"{}\",\"object\":\"chat.completion\"",
            ctx.id
        ));
    }
    let body = completion_json(&ctx, &planned.generation, planned.script.usage_null);
    guard.complete();
    json_response(StatusCode::OK, body)
}

/// A streaming response as Starlette's `StreamingResponse` sends it.
pub(crate) fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    resp
}

/// Per-response constants.
pub(crate) struct ChunkCtx {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub reasoning_field: ReasoningField,
    pub prompt_tokens: u32,
    pub release: VllmRelease,
}

pub(crate) struct StreamOpts {
    pub include_usage: bool,
    pub continuous_usage: bool,
    pub prefill: Duration,
    pub pace: Duration,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u32,
    total_tokens: u32,
    completion_tokens: u32,
    /// Present (as null) only in non-streaming responses (`model_dump()`).
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<Option<()>>,
}

impl UsageOut {
    fn new(prompt: u32, completion: u32) -> Self {
        UsageOut {
            prompt_tokens: prompt,
            total_tokens: prompt + completion,
            completion_tokens: completion,
            prompt_tokens_details: None,
        }
    }
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<StreamChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
    /// `null` on the first chunk in 0.34 (set explicitly, kept by `exclude_unset`).
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_token_ids: Option<Option<()>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_text: Option<Option<()>>,
}

#[derive(Serialize)]
struct StreamChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
    /// Only set on the finishing chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<Option<&'a str>>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[DeltaToolCallOut<'a>; 1]>,
}

/// vLLM's `DeltaToolCall` (field order id, type, index, function).
#[derive(Serialize)]
struct DeltaToolCallOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    index: u32,
    function: DeltaFunctionOut<'a>,
}

#[derive(Serialize)]
struct DeltaFunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

fn delta_for<'a>(piece: &'a Piece, field: ReasoningField) -> DeltaOut<'a> {
    match piece {
        Piece::Content(s) => DeltaOut {
            content: Some(s),
            ..Default::default()
        },
        Piece::Reasoning(s) => match field {
            ReasoningField::ReasoningContent => DeltaOut {
                reasoning_content: Some(s),
                ..Default::default()
            },
            ReasoningField::Reasoning => DeltaOut {
                reasoning: Some(s),
                ..Default::default()
            },
        },
        Piece::ToolHeader { index, id, name } => DeltaOut {
            tool_calls: Some([DeltaToolCallOut {
                id: Some(id),
                kind: Some("function"),
                index: *index,
                function: DeltaFunctionOut {
                    name: Some(name),
                    arguments: "",
                },
            }]),
            ..Default::default()
        },
        Piece::ToolArgs { index, args } => DeltaOut {
            tool_calls: Some([DeltaToolCallOut {
                id: None,
                kind: None,
                index: *index,
                function: DeltaFunctionOut {
                    name: None,
                    arguments: args,
                },
            }]),
            ..Default::default()
        },
    }
}

fn sse_bytes(value: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string());
    Bytes::from(format!("data: {json}\n\n"))
}

impl ChunkCtx {
    fn chunk<'a>(
        &'a self,
        delta: DeltaOut<'a>,
        finish: Option<(&'a str, Option<&'a str>)>,
        usage: Option<UsageOut>,
    ) -> Bytes {
        self.chunk_with(delta, finish, usage, false)
    }

    fn chunk_with<'a>(
        &'a self,
        delta: DeltaOut<'a>,
        finish: Option<(&'a str, Option<&'a str>)>,
        usage: Option<UsageOut>,
        first: bool,
    ) -> Bytes {
        let prompt_fields = (first && self.release == VllmRelease::V0_34).then_some(None);
        sse_bytes(&ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![StreamChoiceOut {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish.map(|f| f.0),
                stop_reason: finish.map(|f| f.1),
            }],
            usage,
            prompt_token_ids: prompt_fields,
            prompt_text: prompt_fields,
        })
    }
}

/// The SSE body of a streamed chat completion.  `guard` counts a
/// cancellation if the body is dropped before `[DONE]`.
pub(crate) fn openai_stream(
    ctx: ChunkCtx,
    generation: Generation,
    opts: StreamOpts,
    guard: ResponseGuard,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    async_stream::stream! {
        let mut guard = guard;
        if !opts.prefill.is_zero() {
            tokio::time::sleep(opts.prefill).await;
        }
        let usage = |completion: u32| {
            opts.continuous_usage
                .then(|| UsageOut::new(ctx.prompt_tokens, completion))
        };
        // vLLM sends the role chunk in the first iteration of its output loop, that is with
        // the first token (`chat_completion/serving.py`, `first_iteration`): the first
        // token's time passes before it, and the token follows at once.
        if !opts.pace.is_zero() {
            tokio::time::sleep(opts.pace).await;
        }
        let first = DeltaOut { role: Some("assistant"), content: Some(""), ..Default::default() };
        yield Ok(ctx.chunk_with(first, None, usage(0), true));
        let n = generation.pieces.len();
        let attach_last = generation.finish.as_ref().is_some_and(|f| f.on_last_piece);
        let mut first_token = true;
        for (i, piece) in generation.pieces.iter().enumerate() {
            let is_last = i + 1 == n;
            let attach = is_last && attach_last;
            if matches!(piece, Piece::Content(s) if s.is_empty()) && !attach {
                continue;
            }
            if !opts.pace.is_zero() && !std::mem::replace(&mut first_token, false) {
                tokio::time::sleep(opts.pace).await;
            }
            let tokens = (i as u32 + 1).min(generation.completion_tokens);
            let finish = if attach {
                generation.finish.as_ref().map(|f| (f.reason, f.stop_reason.as_deref()))
            } else {
                None
            };
            yield Ok(ctx.chunk(delta_for(piece, ctx.reasoning_field), finish, usage(tokens)));
        }
        let Some(finish) = generation.finish.as_ref() else {
            guard.abort();
            // Let hyper flush what was sent, then cut the connection.
            tokio::time::sleep(CRASH_FLUSH).await;
            yield Err(io::Error::other("mock vLLM: simulated engine crash"));
            return;
        };
        if !finish.on_last_piece {
            if !opts.pace.is_zero() {
                tokio::time::sleep(opts.pace).await;
            }
            let delta = if generation.has_tool_calls() && finish.tail.is_empty() {
                DeltaOut::default()
            } else {
                DeltaOut { content: Some(&finish.tail), ..Default::default() }
            };
            let reason = Some((finish.reason, finish.stop_reason.as_deref()));
            yield Ok(ctx.chunk(delta, reason, usage(generation.completion_tokens)));
        }
        if opts.include_usage {
            yield Ok(sse_bytes(&ChunkOut {
                id: &ctx.id,
                object: "chat.completion.chunk",
                created: ctx.created,
                model: &ctx.model,
                choices: Vec::new(),
                usage: Some(UsageOut::new(ctx.prompt_tokens, generation.completion_tokens)),
                prompt_token_ids: None,
                prompt_text: None,
            }));
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
        guard.complete();
    }
}

/// Assembled output of a generation.
pub(crate) struct Assembled {
    pub content: String,
    pub reasoning: String,
    /// (id, name, arguments) per tool index, in index order.
    pub tool_calls: Vec<(String, String, String)>,
}

pub(crate) fn assemble(generation: &Generation) -> Assembled {
    let mut out = Assembled {
        content: String::new(),
        reasoning: String::new(),
        tool_calls: Vec::new(),
    };
    let mut calls: Vec<(u32, String, String, String)> = Vec::new();
    for piece in &generation.pieces {
        match piece {
            Piece::Content(s) => out.content.push_str(s),
            Piece::Reasoning(s) => out.reasoning.push_str(s),
            Piece::ToolHeader { index, id, name } => {
                calls.push((*index, id.clone(), name.clone(), String::new()))
            }
            Piece::ToolArgs { index, args } => {
                if let Some(c) = calls.iter_mut().find(|c| c.0 == *index) {
                    c.3.push_str(args);
                }
            }
        }
    }
    if let Some(f) = &generation.finish {
        out.content.push_str(&f.tail);
    }
    calls.sort_by_key(|c| c.0);
    out.tool_calls = calls.into_iter().map(|c| (c.1, c.2, c.3)).collect();
    out
}

#[derive(Serialize)]
struct CompletionOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceOut; 1],
    service_tier: Option<()>,
    system_fingerprint: Option<()>,
    usage: Option<UsageOut>,
    prompt_logprobs: Option<()>,
    kv_transfer_params: Option<()>,
}

#[derive(Serialize)]
struct ChoiceOut {
    index: u32,
    message: MessageOut,
    logprobs: Option<()>,
    finish_reason: String,
    stop_reason: Option<String>,
}

/// vLLM 0.11's `ChatMessage` (`model_dump()`, so every field is present).
#[derive(Serialize)]
struct MessageOut {
    role: &'static str,
    content: Option<String>,
    refusal: Option<()>,
    annotations: Option<()>,
    audio: Option<()>,
    function_call: Option<()>,
    tool_calls: Vec<Value>,
    /// `reasoning_content` or `reasoning`, per configuration.
    #[serde(flatten)]
    reasoning: Map<String, Value>,
}

/// A JSON response from pre-serialised bytes (keeps struct field order,
/// which a `serde_json::Value` would sort).
/// `die` without streaming: the headers and `partial` (the start of a JSON answer), then
/// the connection cut, as when the engine dies mid-request.
pub(crate) fn crashed_json_response(partial: String) -> Response {
    let stream = futures::stream::iter(vec![
        Ok(Bytes::from(partial)),
        Err(io::Error::other("mock vLLM: simulated engine crash")),
    ])
    .then(|item| async move {
        if item.is_err() {
            tokio::time::sleep(CRASH_FLUSH).await;
        }
        item
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The non-streaming `chat.completion` body.
fn completion_json(ctx: &ChunkCtx, generation: &Generation, usage_null: bool) -> Vec<u8> {
    let a = assemble(generation);
    let finish = generation
        .finish
        .clone()
        .unwrap_or_else(|| generate::Finish {
            reason: "stop",
            stop_reason: None,
            on_last_piece: false,
            tail: String::new(),
        });
    let tool_calls: Vec<Value> = a
        .tool_calls
        .iter()
        .map(|(id, name, args)| {
            serde_json::json!({
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": args },
            })
        })
        .collect();
    let content = if a.content.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(a.content)
    };
    let mut reasoning = Map::new();
    reasoning.insert(
        ctx.reasoning_field.as_str().to_string(),
        if a.reasoning.is_empty() {
            Value::Null
        } else {
            Value::String(a.reasoning)
        },
    );
    let usage = (!usage_null).then(|| UsageOut {
        prompt_tokens_details: Some(None),
        ..UsageOut::new(ctx.prompt_tokens, generation.completion_tokens)
    });
    let out = CompletionOut {
        id: &ctx.id,
        object: "chat.completion",
        created: ctx.created,
        model: &ctx.model,
        choices: [ChoiceOut {
            index: 0,
            message: MessageOut {
                role: "assistant",
                content,
                refusal: None,
                annotations: None,
                audio: None,
                function_call: None,
                tool_calls,
                reasoning,
            },
            logprobs: None,
            finish_reason: finish.reason.to_string(),
            stop_reason: finish.stop_reason,
        }],
        service_tier: None,
        system_fingerprint: None,
        usage,
        prompt_logprobs: None,
        kv_transfer_params: None,
    };
    serde_json::to_vec(&out).unwrap_or_default()
}
