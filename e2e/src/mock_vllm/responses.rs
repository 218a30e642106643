//! `POST /v1/responses` (OpenAI Responses API as vLLM serves it), plus the
//! `GET /v1/responses/{id}` and `POST /v1/responses/{id}/cancel` routes, which
//! with the default configuration can only answer 404.
//!
//! Read from vLLM 0.34.0's wheel: `vllm/entrypoints/openai/responses/`
//! (`api_router.py`, `serving.py`, `protocol.py`, `streaming_events.py`,
//! `utils.py`), `vllm/renderers/online_renderer.py` (`render_responses`) and
//! `vllm/renderers/params.py` (`TokenizeParams`).  Output item and event
//! shapes are the `openai` SDK's pydantic models dumped with
//! `model_dump_json(by_alias=True)` (every field, `null`s included), in the
//! field order of `openai` 2.25.0, the oldest SDK 0.34 accepts
//! (`Requires-Dist: openai>=2.25.0`); newer SDKs add more `null` fields
//! (`phase` is already in 2.25; 3.x adds `async`, `caller`, ...).  Only the
//! non-Harmony path is imitated (`SimpleContext`, a Qwen-style model with a
//! reasoning parser and, per `MockConfig::tool_parser`, a tool parser); the
//! gpt-oss Harmony path and `VLLM_USE_EXPERIMENTAL_PARSER_CONTEXT` are not.
//!
//! Request handling, in vLLM's order (`OpenAIServingResponses._create_responses`):
//! 1. `validate_json_request` + pydantic (`ResponsesRequest`).  Its
//!    `model_validator(mode="before")` hooks raise `VLLMValidationError`,
//!    which is no `ValueError`, so pydantic lets it through to the app's
//!    `VLLMError` handler: a 400 `BadRequestError` whose message ends in
//!    ` (parameter=P)`: `validate_background` ("background can only be used
//!    when `store` is true"), `validate_prompt` ("prompt template is not
//!    supported"), `check_tool_usage` (`required`/named choice without tools).
//! 2. `_check_model`: 404 `NotFoundError`, as on the other routes.
//! 3. `_validate_create_responses_input`: `background` with `store` (default
//!    true) while the store is off -> 400 `invalid_request_error`.
//! 4. `store`: `VLLM_ENABLE_RESPONSES_API_STORE` defaults to 0 (`envs.py`),
//!    so `store=true` is silently turned off and nothing is ever stored; a
//!    `previous_response_id` is therefore always unknown: 404
//!    `invalid_request_error`, `Response with id '<id>' not found.`,
//!    `param: "response_id"` (`_make_not_found_error`).
//! 5. `render_responses` -> `construct_input_messages`: `instructions` becomes
//!    a leading system message, a string `input` a user message, items are
//!    converted to chat messages (`utils.py`,
//!    `_construct_message_from_response_item`); the chat template is rendered
//!    with the function tools in chat form (`construct_tool_dicts`).  Then
//!    `TokenizeParams` from `ResponsesRequest.build_tok_params`
//!    (`max_output_tokens` > window refused; prompt > window refused with the
//!    "at least L+1" wording, `parameter=input_tokens`).
//! 6. `_validate_generator_input`: a prompt of exactly `max_model_len`
//!    tokens gets `The engine prompt length P exceeds the max_model_len L.
//!    Please reduce prompt.` (400, `invalid_request_error`, `param: "input"`).
//! 7. `get_max_tokens` / `to_sampling_params`: the budget is
//!    `min(max_output_tokens, L - P)` and is what the response reports as
//!    `max_output_tokens`.
//!
//! Streaming (`responses_stream_generator`, non-Harmony
//! `_process_simple_streaming_events` + `SimpleStreamingEventProcessor`):
//! `event: <type>\ndata: <json>\n\n` frames (`_convert_stream_to_sse_events`),
//! no `[DONE]`.  `response.created` and `response.in_progress` go out before
//! the engine produces anything (so before the prefill silence); then per
//! output item `output_item.added` (+ `content_part.added` for text and
//! reasoning), deltas (`output_text.delta`, `reasoning_text.delta`,
//! `function_call_arguments.delta` -- 0.34 does stream tool calls on this
//! path), and on a change of item `output_text.done`/`reasoning_text.done`/
//! `function_call_arguments.done`, `content_part.done`, `output_item.done`;
//! finally `response.completed` (or `response.incomplete` when the budget ran
//! out).  `sequence_number` counts every event from 0.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use super::chat::{assemble, crashed_json_response, json_response, sse_response, CRASH_FLUSH};
use super::errors::ApiError;
use super::generate::{self, Generation};
use super::scenario::{self, Piece, ScenarioInput, Script};
use super::stats::ResponseGuard;
use super::tokens::count_prompt_tokens;
use super::{random_hex, unix_now, validate, AppState, MockConfig};

pub(crate) const PATH: &str = "/v1/responses";

// ---------------------------------------------------------------------------
// Ordered JSON: pydantic dumps fields in declaration order; serde_json's
// `Value` would sort them.

/// A JSON object that keeps its field order.
#[derive(Clone, Default)]
pub(crate) struct Obj(Vec<(&'static str, J)>);

/// A JSON value whose objects keep their field order.
#[derive(Clone)]
pub(crate) enum J {
    V(Value),
    O(Obj),
    A(Vec<J>),
}

impl Obj {
    fn f(mut self, key: &'static str, value: impl Into<J>) -> Self {
        self.0.push((key, value.into()));
        self
    }
}

impl From<Obj> for J {
    fn from(o: Obj) -> J {
        J::O(o)
    }
}

impl From<Value> for J {
    fn from(v: Value) -> J {
        J::V(v)
    }
}

impl From<Vec<J>> for J {
    fn from(a: Vec<J>) -> J {
        J::A(a)
    }
}

/// Any JSON scalar (or `null`).
fn v(x: impl Into<Value>) -> J {
    J::V(x.into())
}

fn null() -> J {
    J::V(Value::Null)
}

fn empty() -> J {
    J::A(Vec::new())
}

impl Serialize for Obj {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, val) in &self.0 {
            m.serialize_entry(k, val)?;
        }
        m.end()
    }
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::V(x) => x.serialize(s),
            J::O(o) => o.serialize(s),
            J::A(a) => a.serialize(s),
        }
    }
}

// ---------------------------------------------------------------------------
// The request.

/// The parts of a `ResponsesRequest` the mock acts on, after validation.
struct ResponsesReq {
    body: Value,
    stream: bool,
    /// `tool_choice` after `check_tool_usage` (`"none"` when there are no tools).
    tool_choice: Value,
    /// Function tools in chat form, for the template (`construct_tool_dicts`).
    chat_tools: Vec<Value>,
    /// Names of the function tools.
    tool_names: Vec<String>,
    max_output_tokens: Option<i64>,
    stop: Vec<String>,
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn bool_field(body: &Value, key: &str, default: bool) -> bool {
    match body.get(key) {
        None | Some(Value::Null) => default,
        Some(v) => validate::lax_bool(v).unwrap_or(default),
    }
}

/// `VLLMValidationError(message, parameter=P)` with no value: `str(exc)` is
/// `message (parameter=P)` (`vllm/exceptions.py`).
fn vllm_error(message: &str, parameter: &str) -> ApiError {
    let mut e = ApiError::bad_request(format!("{message} (parameter={parameter})"));
    e.param = Some(parameter.to_string());
    e
}

/// `create_error_response(err_type="invalid_request_error", ...)`.
fn invalid_request(status: StatusCode, message: String, param: &str) -> ApiError {
    let mut e = ApiError::new(status, "invalid_request_error", message);
    e.param = Some(param.to_string());
    e
}

/// The `model_validator(mode="before")` hooks of `ResponsesRequest` that can
/// refuse a request (`protocol.py`), and `check_tool_usage`'s defaulting of
/// `tool_choice`.  Pydantic runs "before" model validators last-defined
/// first, so `check_tool_usage` is checked before `validate_prompt` and
/// `validate_background`.
fn before_validators(body: &Value) -> Result<Value, ApiError> {
    let tool_choice = check_tool_usage(body)?;
    // validate_prompt
    if body.get("prompt").is_some_and(|p| !p.is_null()) {
        return Err(vllm_error("prompt template is not supported", "prompt"));
    }
    // validate_background
    if truthy(body.get("background")) && !bool_field(body, "store", true) {
        return Err(vllm_error(
            "background can only be used when `store` is true",
            "background",
        ));
    }
    Ok(tool_choice)
}

/// `check_tool_usage`: `tool_choice` defaults to `"auto"`, which becomes
/// `"none"` without tools; `"required"` or a named function needs tools
/// (and the named one among them).  Returns the resulting `tool_choice`.
fn check_tool_usage(body: &Value) -> Result<Value, ApiError> {
    let tools = body.get("tools").and_then(Value::as_array);
    let has_tools = tools.is_some_and(|t| !t.is_empty());
    let mut tool_choice = body
        .get("tool_choice")
        .cloned()
        .unwrap_or_else(|| json!("auto"));
    let named = tool_choice.is_object()
        && matches!(
            tool_choice.get("type").and_then(Value::as_str),
            Some("function" | "custom")
        );
    const NOT_FOUND: &str = "Tool choice 'function' not found in 'tools' parameter.";
    if !has_tools {
        if tool_choice == "auto" || tool_choice == "none" {
            tool_choice = json!("none");
        } else if tool_choice == "required" {
            return Err(vllm_error(
                "Tool choice 'required' must be specified with 'tools' parameter.",
                "tool_choice",
            ));
        } else if named {
            return Err(vllm_error(NOT_FOUND, "tool_choice"));
        }
    } else if named {
        // `_resolve_named_tool_choice` (flat names only; namespaces are not imitated).
        let name = tool_choice
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let known = tools
            .into_iter()
            .flatten()
            .any(|t| !name.is_empty() && t.get("name").and_then(Value::as_str) == Some(name));
        if !known {
            return Err(vllm_error(NOT_FOUND, "tool_choice"));
        }
    }
    Ok(tool_choice)
}

/// Steps 1 (after JSON decoding) of the module docs.
fn parse_request(body: Value) -> Result<(ResponsesReq, Vec<String>), ApiError> {
    if !body.is_object() {
        validate::validate_responses_schema(&body)?;
    }
    let tool_choice = before_validators(&body)?;
    let ignored = validate::validate_responses_schema(&body)?;
    let (chat_tools, tool_names) = chat_tools(&body);
    let req = ResponsesReq {
        stream: bool_field(&body, "stream", false),
        max_output_tokens: validate::lax_int(body.get("max_output_tokens")),
        tool_choice,
        chat_tools,
        tool_names,
        stop: stop_strings(&body),
        body,
    };
    Ok((req, ignored))
}

/// The request's function tools in chat form, for the template
/// (`construct_tool_dicts`), and their names.
fn chat_tools(body: &Value) -> (Vec<Value>, Vec<String>) {
    let tools = body.get("tools").and_then(Value::as_array);
    // `iter_response_function_tool_dicts` + `convert_tool_responses_to_completions_format`:
    // `FunctionDefinition` keeps `description`/`parameters` (even `null`) and
    // drops `strict` when unset.
    let mut chat_tools = Vec::new();
    let mut tool_names = Vec::new();
    for t in tools.into_iter().flatten() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            continue;
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut function = json!({
            "name": name,
            "description": t.get("description").cloned().unwrap_or(Value::Null),
            "parameters": t.get("parameters").cloned().unwrap_or(Value::Null),
        });
        if let Some(strict) = t.get("strict").filter(|s| !s.is_null()) {
            function["strict"] = strict.clone();
        }
        chat_tools.push(json!({"type": "function", "function": function}));
        tool_names.push(name);
    }
    (chat_tools, tool_names)
}

/// `stop` as a list: a string is one stop string; non-strings in a list
/// are skipped.
fn stop_strings(body: &Value) -> Vec<String> {
    match body.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Content parts as the chat renderer sees them: `input_text`/`output_text`
/// are text parts (`renderers/chat_utils/chat_message.py`).
fn chat_content(content: Option<&Value>) -> Value {
    match content {
        Some(Value::Array(parts)) => Value::Array(
            parts
                .iter()
                .map(|p| match p.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text") => {
                        json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))})
                    }
                    _ => p.clone(),
                })
                .collect(),
        ),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

fn first_text(list: Option<&Value>) -> Option<String> {
    let first = list.and_then(Value::as_array).and_then(|a| a.first())?;
    Some(match first {
        Value::String(s) => s.clone(),
        other => other
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

/// `construct_input_messages` / `_construct_message_from_response_item`
/// (`responses/utils.py`): Responses `input` to chat messages.
fn input_messages(body: &Value) -> Result<Vec<Value>, ApiError> {
    let mut messages: Vec<Value> = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        if !instructions.is_empty() {
            messages.push(json!({"role": "system", "content": instructions}));
        }
    }
    let items = match body.get("input") {
        Some(Value::String(s)) => {
            messages.push(json!({"role": "user", "content": s}));
            return Ok(messages);
        }
        Some(Value::Array(items)) => items,
        _ => return Ok(messages),
    };
    for item in items {
        push_input_item(&mut messages, item)?;
    }
    Ok(messages)
}

/// One input item to a chat message, or merged into the previous one.
fn push_input_item(messages: &mut Vec<Value>, item: &Value) -> Result<(), ApiError> {
    let role = item.get("role").and_then(Value::as_str);
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(if role.is_some() { "message" } else { "" });
    match kind {
        "function_call" | "custom_tool_call" => push_tool_call(messages, tool_call(item, kind)),
        "reasoning" => push_reasoning(messages, item)?,
        "message" if role == Some("assistant") => push_assistant_text(messages, item),
        "function_call_output" | "custom_tool_call_output" => messages.push(json!({
            "role": "tool",
            "content": chat_content(item.get("output")),
            "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
        })),
        _ if role.is_some() => {
            let mut m = item.clone();
            m["content"] = chat_content(item.get("content"));
            if let Some(o) = m.as_object_mut() {
                o.remove("type");
            }
            messages.push(m);
        }
        other => {
            return Err(vllm_error(
                &format!("Unsupported input item type: {other}"),
                "input",
            ))
        }
    }
    Ok(())
}

/// The previous message, if it is an assistant one: tool calls, reasoning
/// and text of consecutive items merge into it.
fn prev_assistant(messages: &mut [Value]) -> Option<&mut Value> {
    messages
        .last_mut()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
}

/// A `function_call` or `custom_tool_call` item as a chat tool call.
fn tool_call(item: &Value, kind: &str) -> Value {
    let name = item.get("name").and_then(Value::as_str).unwrap_or("");
    let name = match item.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() => format!("{ns}__{name}"),
        _ => name.to_string(),
    };
    let arguments = if kind == "function_call" {
        item.get("arguments").cloned().unwrap_or(json!(""))
    } else {
        // `encode_custom_tool_input`: `json.dumps({"input": payload}, ensure_ascii=False)`.
        let payload = item.get("input").and_then(Value::as_str).unwrap_or("");
        Value::String(format!(
            "{{\"input\": {}}}",
            super::tokens::py_json_dumps(&json!(payload), false)
        ))
    };
    json!({
        "id": item.get("call_id").cloned().unwrap_or(Value::Null),
        "function": {"name": name, "arguments": arguments},
        "type": "function",
    })
}

/// Consecutive calls join one assistant message's `tool_calls`.
fn push_tool_call(messages: &mut Vec<Value>, call: Value) {
    match prev_assistant(messages) {
        Some(prev) => match prev.get_mut("tool_calls").and_then(Value::as_array_mut) {
            Some(calls) => calls.push(call),
            None => prev["tool_calls"] = json!([call]),
        },
        None => messages.push(json!({"role": "assistant", "tool_calls": [call]})),
    }
}

/// Encrypted reasoning cannot be replayed; the text is the first content
/// part, else the first summary part.
fn push_reasoning(messages: &mut Vec<Value>, item: &Value) -> Result<(), ApiError> {
    if truthy(item.get("encrypted_content")) {
        return Err(vllm_error("Encrypted content is not supported.", "input"));
    }
    let text = first_text(item.get("content").filter(|c| truthy(Some(c))))
        .or_else(|| first_text(item.get("summary")))
        .unwrap_or_default();
    match prev_assistant(messages) {
        Some(prev) if prev.get("reasoning").is_none() => prev["reasoning"] = Value::String(text),
        _ => messages.push(json!({"role": "assistant", "reasoning": text})),
    }
    Ok(())
}

/// Text joins the previous assistant message unless that one has content.
fn push_assistant_text(messages: &mut Vec<Value>, item: &Value) {
    let text = match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        other => first_text(other).unwrap_or_default(),
    };
    match prev_assistant(messages) {
        Some(prev) if prev.get("content").is_none_or(Value::is_null) => {
            prev["content"] = Value::String(text)
        }
        _ => messages.push(json!({"role": "assistant", "content": text})),
    }
}

// ---------------------------------------------------------------------------
// Planning: validation, scenario, generation.

struct Planned {
    req: ResponsesReq,
    prompt_tokens: u32,
    /// `sampling_params.max_tokens`.
    budget: u32,
    script: Script,
    generation: Generation,
    prefill: Duration,
}

/// The context checks of 0.34 for this route (steps 5-7 of the module docs).
fn check_context(cfg: &MockConfig, prompt: u32, requested: Option<i64>) -> Result<u32, ApiError> {
    let l = i64::from(cfg.max_model_len);
    let p = i64::from(prompt);
    // `TokenizeParams.__post_init__`, `max_output_tokens_param="max_output_tokens"`,
    // `max_total_tokens_param="max_model_len"` (`ResponsesRequest.build_tok_params`).
    if let Some(m) = requested.filter(|m| *m > l) {
        return Err(ApiError::vllm_validation(
            &format!(
                "max_output_tokens={m} cannot be greater than max_model_len={l}. Please request fewer output tokens."
            ),
            "max_output_tokens",
            m,
        ));
    }
    // `_token_len_check`: `truncation` defaults to "disabled", so the
    // prompt is encoded up to `L + 1` tokens and refused "at least L+1".
    if p > l {
        let n = l + 1;
        return Err(ApiError::vllm_validation(
            &format!(
                "This model's maximum context length is {l} tokens. However, your prompt contains at least {n} input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt."
            ),
            "input_tokens",
            n,
        ));
    }
    // `OpenAIServingResponses._validate_generator_input`.
    if p >= l {
        return Err(invalid_request(
            StatusCode::BAD_REQUEST,
            format!(
                "The engine prompt length {p} exceeds the max_model_len {l}. Please reduce prompt."
            ),
            "input",
        ));
    }
    // `get_max_tokens` then `to_sampling_params` (`min(max_output_tokens, default)`),
    // then `SamplingParams._verify_args`.
    let budget = requested.map_or(l - p, |m| m.min(l - p));
    if budget < 1 {
        return Err(ApiError::vllm_validation(
            &format!("max_tokens must be at least 1, got {budget}."),
            "max_tokens",
            budget,
        ));
    }
    Ok(budget as u32)
}

/// Steps 1-7 of the module docs, then the scenario: everything that can
/// refuse the request happens before a response starts.
fn plan(st: &AppState, body: Value) -> Result<Planned, ApiError> {
    let cfg = &st.cfg;
    let (req, ignored) = parse_request(body)?;
    st.stats.record_ignored(&ignored);
    validate::check_model(cfg, &req.body)?;
    check_store_off(&req.body)?;
    let messages = input_messages(&req.body)?;
    let prompt_tokens = render_prompt(cfg, &req, &messages)?;
    let budget = check_context(cfg, prompt_tokens, req.max_output_tokens)?;
    let script = scenario::build_script(&scenario_input(cfg, &req, &messages));
    check_injected_errors(st, &script)?;
    let mut generation = generate::apply(&script, budget, &req.stop);
    contiguous_tool_calls(&mut generation.pieces);
    let prefill = script
        .prefill
        .unwrap_or_else(|| cfg.prefill_for(prompt_tokens));
    Ok(Planned {
        req,
        prompt_tokens,
        budget,
        script,
        generation,
        prefill,
    })
}

/// Steps 3-4 of the module docs: the store is off, so nothing that needs
/// it can be served.
fn check_store_off(body: &Value) -> Result<(), ApiError> {
    let store = bool_field(body, "store", true);
    // `_validate_create_responses_input`: the store is off (the default).
    if store && truthy(body.get("background")) {
        return Err(invalid_request(
            StatusCode::BAD_REQUEST,
            "This vLLM engine does not support `store=True` and therefore does not support the background mode. To enable these features, set the environment variable `VLLM_ENABLE_RESPONSES_API_STORE=1` when launching the vLLM server.".to_string(),
            "background",
        ));
    }
    if truthy(body.get("previous_input_messages"))
        && body
            .get("previous_response_id")
            .is_some_and(|v| !v.is_null())
    {
        return Err(invalid_request(
            StatusCode::BAD_REQUEST,
            "Only one of `previous_input_messages` and `previous_response_id` can be set."
                .to_string(),
            "previous_response_id",
        ));
    }
    // Nothing is ever stored, so every `previous_response_id` is unknown.
    if let Some(id) = body.get("previous_response_id").and_then(Value::as_str) {
        return Err(not_found(id));
    }
    Ok(())
}

/// Step 5 of the module docs: the chat template over the messages and the
/// function tools; returns the prompt's token count.
fn render_prompt(
    cfg: &MockConfig,
    req: &ResponsesReq,
    messages: &[Value],
) -> Result<u32, ApiError> {
    let mut chat_body = json!({ "model": cfg.served_model_name, "messages": messages });
    if !req.chat_tools.is_empty() {
        chat_body["tools"] = Value::Array(req.chat_tools.clone());
    }
    validate::check_template(cfg, &chat_body)?;
    Ok(count_prompt_tokens(&chat_body))
}

/// What the scenario sees of the request, tool parsing included.
fn scenario_input(cfg: &MockConfig, req: &ResponsesReq, messages: &[Value]) -> ScenarioInput {
    let roles = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap_or("").to_string())
        .collect();
    // Tool parsing (`Parser.parse` / `parse_delta`): "none" never parses;
    // "auto" needs `--enable-auto-tool-choice` (no 400 on this route when it
    // is missing: the calls just stay text); "required" and named choices
    // are forced by structured outputs.
    let (tools_parsed, forced_tool) = match &req.tool_choice {
        Value::String(s) if s == "none" => (false, None),
        Value::String(s) if s == "required" => (true, Some(None)),
        Value::Object(o) => (
            true,
            Some(o.get("name").and_then(Value::as_str).map(str::to_string)),
        ),
        _ => (cfg.tool_parser, None),
    };
    ScenarioInput {
        last: scenario::last_turn_openai(messages),
        tool_names: req.tool_names.clone(),
        tools_parsed,
        forced_tool,
        roles,
    }
}

/// HTTP errors the test asked for: `fail_next`, then the script's own.
fn check_injected_errors(st: &AppState, script: &Script) -> Result<(), ApiError> {
    let release = st.cfg.vllm_release;
    if let Some(code) = st.stats.take_fail_next() {
        return Err(ApiError::injected(code, release));
    }
    if let Some(code) = script.http_error {
        return Err(ApiError::injected(code, release));
    }
    if let Some(code) = script.http_error_once {
        if st.stats.first_error_once() {
            return Err(ApiError::injected(code, release));
        }
    }
    Ok(())
}

/// vLLM's tool parsers finish one call before they start the next, and
/// `SimpleStreamingEventProcessor` opens a new `function_call` item whenever
/// the tool index changes (`needs_transition`); the chat scripts interleave
/// argument fragments of parallel calls, so here they are regrouped per call
/// (stable, same pieces, same token count).
fn contiguous_tool_calls(pieces: &mut [Piece]) {
    let slots: Vec<usize> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, Piece::ToolHeader { .. } | Piece::ToolArgs { .. }))
        .map(|(i, _)| i)
        .collect();
    let mut calls: Vec<Piece> = slots.iter().map(|&i| pieces[i].clone()).collect();
    calls.sort_by_key(|p| match p {
        Piece::ToolHeader { index, .. } | Piece::ToolArgs { index, .. } => *index,
        _ => 0,
    });
    for (slot, piece) in slots.into_iter().zip(calls) {
        pieces[slot] = piece;
    }
}

fn not_found(id: &str) -> ApiError {
    invalid_request(
        StatusCode::NOT_FOUND,
        format!("Response with id '{id}' not found."),
        "response_id",
    )
}

// ---------------------------------------------------------------------------
// The `ResponsesResponse` object.

/// Per-response constants.
struct RespCtx {
    id: String,
    created_at: u64,
    model: String,
    body: Value,
    tool_choice: Value,
    budget: u32,
    prompt_tokens: u32,
    usage_null: bool,
}

fn echo(body: &Value, key: &str) -> J {
    v(body.get(key).cloned().unwrap_or(Value::Null))
}

fn float_or(body: &Value, key: &str, default: f64) -> J {
    let x = match body.get(key) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    v(x.unwrap_or(default))
}

/// A request tool as the response echoes it: `FunctionTool` dumped with
/// every field (openai 2.25 order); other tool types as given.
fn echo_tool(t: &Value) -> J {
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return v(t.clone());
    }
    let g = |k: &str| v(t.get(k).cloned().unwrap_or(Value::Null));
    Obj::default()
        .f("name", g("name"))
        .f("parameters", g("parameters"))
        .f("strict", g("strict"))
        .f("type", v("function"))
        .f("defer_loading", g("defer_loading"))
        .f("description", g("description"))
        .into()
}

/// `ResponsesResponse.from_request(...).model_dump(mode="json", by_alias=True)`
/// (`protocol.py`).  Sampling fields come from `SamplingParams`: the
/// request's value, else vLLM's defaults without a generation config
/// (`temperature`/`top_p` 1.0, penalties 0.0).
fn response_obj(ctx: &RespCtx, output: Vec<J>, status: &str, usage: Option<J>) -> Obj {
    let b = &ctx.body;
    Obj::default()
        .f("id", v(ctx.id.clone()))
        .f("created_at", v(ctx.created_at))
        .f("incomplete_details", incomplete_details(status))
        .f("instructions", echo(b, "instructions"))
        .f("metadata", echo(b, "metadata"))
        .f("model", v(ctx.model.clone()))
        .f("object", v("response"))
        .f("output", J::A(output))
        .f("parallel_tool_calls", flag(b, "parallel_tool_calls", true))
        .f("temperature", float_or(b, "temperature", 1.0))
        .f("tool_choice", v(ctx.tool_choice.clone()))
        .f("tools", echo_tools(b))
        .f("top_p", float_or(b, "top_p", 1.0))
        .f("background", flag(b, "background", false))
        .f("max_output_tokens", v(ctx.budget))
        .f("max_tool_calls", echo(b, "max_tool_calls"))
        .f("previous_response_id", echo(b, "previous_response_id"))
        .f("prompt", null())
        .f("prompt_cache_options", prompt_cache_options(b))
        .f("prompt_cache_key", echo(b, "prompt_cache_key"))
        .f("prompt_cache_retention", prompt_cache_retention(b))
        .f("reasoning", reasoning_param(b))
        .f("safety_identifier", echo(b, "safety_identifier"))
        .f("service_tier", echo_or(b, "service_tier", "auto"))
        .f("status", v(status))
        .f("text", text_param(b))
        .f("top_logprobs", top_logprobs(b))
        .f("truncation", echo_or(b, "truncation", "disabled"))
        .f("usage", usage.unwrap_or_else(null))
        .f("user", echo(b, "user"))
        // `metrics` is excluded while None (`exclude_if`).
        .f("presence_penalty", float_or(b, "presence_penalty", 0.0))
        .f("frequency_penalty", float_or(b, "frequency_penalty", 0.0))
        .f("kv_transfer_params", null())
        .f("ec_transfer_params", null())
        .f("input_messages", null())
        .f("output_messages", null())
}

/// A request field as given, else the default vLLM reports.
fn echo_or(body: &Value, key: &str, default: &str) -> J {
    v(body.get(key).cloned().unwrap_or_else(|| json!(default)))
}

/// A boolean field read as laxly as pydantic does.
fn flag(body: &Value, key: &str, default: bool) -> J {
    v(bool_field(body, key, default))
}

fn incomplete_details(status: &str) -> J {
    if status == "incomplete" {
        J::from(Obj::default().f("reason", v("max_output_tokens")))
    } else {
        null()
    }
}

fn echo_tools(body: &Value) -> J {
    let tools: Vec<J> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|ts| ts.iter().map(echo_tool).collect())
        .unwrap_or_default();
    J::A(tools)
}

/// `top_logprobs` is reported only when logprobs were asked for, `0` if
/// the request gave no number.
fn top_logprobs(body: &Value) -> J {
    let include_logprobs = body
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "message.output_text.logprobs"));
    if include_logprobs {
        v(validate::lax_int(body.get("top_logprobs")).unwrap_or(0))
    } else {
        null()
    }
}

/// The request's cache options, with the defaults (`implicit`, `30m`) filled in.
fn prompt_cache_options(body: &Value) -> J {
    match body.get("prompt_cache_options").filter(|o| o.is_object()) {
        Some(o) => J::from(
            Obj::default()
                .f("mode", echo_or(o, "mode", "implicit"))
                .f("ttl", echo_or(o, "ttl", "30m"))
                .f("comparison_response_id", echo(o, "comparison_response_id")),
        ),
        None => null(),
    }
}

/// `"in-memory"` is accepted and reported as `"in_memory"`.
fn prompt_cache_retention(body: &Value) -> J {
    match body.get("prompt_cache_retention") {
        Some(r) if r == "in-memory" => v("in_memory"),
        _ => echo(body, "prompt_cache_retention"),
    }
}

fn reasoning_param(body: &Value) -> J {
    match body.get("reasoning").filter(|r| r.is_object()) {
        Some(r) => J::from(
            Obj::default()
                .f("effort", echo(r, "effort"))
                .f("generate_summary", echo(r, "generate_summary"))
                .f("summary", echo(r, "summary")),
        ),
        None => null(),
    }
}

fn text_param(body: &Value) -> J {
    match body.get("text").filter(|t| t.is_object()) {
        Some(t) => J::from(
            Obj::default()
                .f("format", echo(t, "format"))
                .f("verbosity", echo(t, "verbosity")),
        ),
        None => null(),
    }
}

/// `ResponseUsage` as `responses_full_generator` fills it for a
/// `SimpleContext`: no prefix-cache hits in the mock (`cached_tokens` 0),
/// per-turn lists empty ("not implemented yet for SimpleContext"),
/// `reasoning_tokens` from the reasoning parser's `count_reasoning_tokens`
/// (one per reasoning piece here).
fn usage_obj(ctx: &RespCtx, generation: &Generation) -> Option<J> {
    if ctx.usage_null {
        return None;
    }
    let output = generation.completion_tokens;
    let reasoning = generation
        .pieces
        .iter()
        .filter(|p| matches!(p, Piece::Reasoning(_)))
        .count() as u32;
    Some(
        Obj::default()
            .f("input_tokens", v(ctx.prompt_tokens))
            .f(
                "input_tokens_details",
                Obj::default()
                    .f("cached_tokens", v(0))
                    .f("cache_write_tokens", v(0))
                    .f("input_tokens_per_turn", empty())
                    .f("cached_tokens_per_turn", empty()),
            )
            .f("output_tokens", v(output))
            .f(
                "output_tokens_details",
                Obj::default()
                    .f("reasoning_tokens", v(reasoning))
                    .f("tool_output_tokens", v(0))
                    .f("output_tokens_per_turn", empty())
                    .f("tool_output_tokens_per_turn", empty()),
            )
            .f("total_tokens", v(ctx.prompt_tokens + output))
            .into(),
    )
}

/// `ResponseOutputText` (`logprobs` is `[]` in `content_part.added`, `null`
/// elsewhere unless logprobs were requested).
fn output_text(text: &str, logprobs: J) -> Obj {
    Obj::default()
        .f("annotations", empty())
        .f("text", v(text))
        .f("type", v("output_text"))
        .f("logprobs", logprobs)
}

/// `Content` of a `ResponseReasoningItem` (also the streamed part).
fn reasoning_text(text: &str) -> Obj {
    Obj::default()
        .f("text", v(text))
        .f("type", v("reasoning_text"))
}

/// `ResponseOutputMessage`.
fn message_item(id: &str, content: Vec<J>, status: &str) -> Obj {
    Obj::default()
        .f("id", v(id))
        .f("content", J::A(content))
        .f("role", v("assistant"))
        .f("status", v(status))
        .f("type", v("message"))
        .f("phase", null())
}

/// `ResponseReasoningItem`.
fn reasoning_item(id: &str, text: Option<&str>, status: J) -> Obj {
    let content = match text {
        Some(t) => J::A(vec![reasoning_text(t).into()]),
        None => null(),
    };
    Obj::default()
        .f("id", v(id))
        .f("summary", empty())
        .f("type", v("reasoning"))
        .f("content", content)
        .f("encrypted_content", null())
        .f("status", status)
}

/// `ResponseFunctionToolCall` (and `...Item`, same fields in 2.25).
fn function_call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Obj {
    Obj::default()
        .f("arguments", v(arguments))
        .f("call_id", v(call_id))
        .f("name", v(name))
        .f("type", v("function_call"))
        .f("id", v(id))
        .f("namespace", null())
        .f("status", v(status))
}

/// Non-streaming output items: `_make_response_output_items` with a parser,
/// i.e. `build_response_output_items` (`utils.py`): reasoning (status
/// `null`), then the message if there is text (status `completed` when tool
/// calls follow, else the finish's), then one `function_call` per call (the
/// last one carries the finish's status).  No item at all when nothing came
/// out.
fn output_items(generation: &Generation, status: &str) -> Vec<J> {
    let a = assemble(generation);
    let mut out = Vec::new();
    if !a.reasoning.is_empty() {
        out.push(
            reasoning_item(&format!("rs_{}", random_hex()), Some(&a.reasoning), null()).into(),
        );
    }
    if !a.content.is_empty() {
        let st = if a.tool_calls.is_empty() {
            status
        } else {
            "completed"
        };
        out.push(
            message_item(
                &format!("msg_{}", random_hex()),
                vec![output_text(&a.content, null()).into()],
                st,
            )
            .into(),
        );
    }
    let n = a.tool_calls.len();
    for (i, (call_id, name, args)) in a.tool_calls.iter().enumerate() {
        let st = if i + 1 == n { status } else { "completed" };
        out.push(
            function_call_item(&format!("fc_{}", random_hex()), call_id, name, args, st).into(),
        );
    }
    out
}

// ---------------------------------------------------------------------------
// Streaming: `SimpleStreamingEventProcessor`.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Current {
    None,
    Content,
    Reasoning,
    ToolCall,
}

struct Processor {
    seq: u64,
    output_index: u32,
    current: Current,
    item_id: String,
    text: String,
    call_id: String,
    call_name: String,
    call_index: Option<u32>,
    /// Items sent in `output_item.done`; the final response reuses them.
    items: Vec<J>,
}

impl Processor {
    fn new() -> Self {
        Processor {
            seq: 0,
            output_index: 0,
            current: Current::None,
            item_id: String::new(),
            text: String::new(),
            call_id: String::new(),
            call_name: String::new(),
            call_index: None,
            items: Vec::new(),
        }
    }

    /// One SSE frame; `fields` go before `sequence_number` and `type`, which
    /// every SDK event class declares last (some, e.g. text events, declare
    /// fields after `sequence_number`: those are passed in `after`).
    fn event(&mut self, kind: &'static str, fields: Obj, after: Obj) -> String {
        let mut o = fields.f("sequence_number", v(self.seq));
        o.0.extend(after.0);
        let o = o.f("type", v(kind));
        self.seq += 1;
        format!(
            "event: {kind}\ndata: {}\n\n",
            serde_json::to_string(&o).unwrap_or_default()
        )
    }

    fn oi(&self) -> J {
        v(self.output_index)
    }

    /// `emit_simple_*_open`.
    fn open(&mut self, target: Current, piece: &Piece, out: &mut String) {
        self.current = target;
        self.text.clear();
        match target {
            Current::Content => self.open_message(out),
            Current::Reasoning => self.open_reasoning(out),
            Current::ToolCall => self.open_function_call(piece, out),
            Current::None => {}
        }
    }

    fn open_message(&mut self, out: &mut String) {
        self.item_id = format!("msg_{}", random_hex());
        let item = message_item(&self.item_id, Vec::new(), "in_progress");
        self.item_event("response.output_item.added", item, out);
        self.part_event("response.content_part.added", output_text("", empty()), out);
    }

    fn open_reasoning(&mut self, out: &mut String) {
        self.item_id = format!("rs_{}", random_hex());
        let item = reasoning_item(&self.item_id, None, v("in_progress"));
        self.item_event("response.output_item.added", item, out);
        self.part_event("response.content_part.added", reasoning_text(""), out);
    }

    /// A call opened by its arguments alone (no header seen) gets a fresh
    /// id and no name.
    fn open_function_call(&mut self, piece: &Piece, out: &mut String) {
        let (index, id, name) = match piece {
            Piece::ToolHeader { index, id, name } => (*index, id.clone(), name.clone()),
            Piece::ToolArgs { index, .. } => (
                *index,
                format!("chatcmpl-tool-{}", random_hex()),
                String::new(),
            ),
            _ => (0, String::new(), String::new()),
        };
        self.item_id = format!("fc_{}", random_hex());
        self.call_id = id;
        self.call_name = name;
        self.call_index = Some(index);
        let item = function_call_item(
            &self.item_id,
            &self.call_id,
            &self.call_name,
            "",
            "in_progress",
        );
        self.item_event("response.output_item.added", item, out);
    }

    /// `response.output_item.added` / `.done`.
    fn item_event(&mut self, kind: &'static str, item: Obj, out: &mut String) {
        let e = self.event(
            kind,
            Obj::default().f("item", item).f("output_index", self.oi()),
            Obj::default(),
        );
        out.push_str(&e);
    }

    /// `response.content_part.added` / `.done` of the current item.
    fn part_event(&mut self, kind: &'static str, part: Obj, out: &mut String) {
        let e = self.event(
            kind,
            Obj::default()
                .f("content_index", v(0))
                .f("item_id", v(self.item_id.clone()))
                .f("output_index", self.oi())
                .f("part", part),
            Obj::default(),
        );
        out.push_str(&e);
    }

    /// `emit_simple_*_done` (`close_current`).
    fn close(&mut self, status: &str, out: &mut String) {
        let item: Obj = match self.current {
            Current::None => return,
            Current::Content => self.close_message(status, out),
            Current::Reasoning => self.close_reasoning(status, out),
            Current::ToolCall => self.close_function_call(status, out),
        };
        self.item_event("response.output_item.done", item.clone(), out);
        self.items.push(item.into());
        self.output_index += 1;
        self.current = Current::None;
    }

    /// An empty message item is done with no content part.
    fn close_message(&mut self, status: &str, out: &mut String) -> Obj {
        let id = self.item_id.clone();
        let text = self.text.clone();
        let e = self.event(
            "response.output_text.done",
            Obj::default()
                .f("content_index", v(0))
                .f("item_id", v(id.clone()))
                .f("logprobs", empty())
                .f("output_index", self.oi()),
            Obj::default().f("text", v(text.clone())),
        );
        out.push_str(&e);
        let part = output_text(&text, null());
        self.part_event("response.content_part.done", part.clone(), out);
        let content = if text.is_empty() {
            Vec::new()
        } else {
            vec![part.into()]
        };
        message_item(&id, content, status)
    }

    fn close_reasoning(&mut self, status: &str, out: &mut String) -> Obj {
        let id = self.item_id.clone();
        let text = self.text.clone();
        let e = self.event(
            "response.reasoning_text.done",
            Obj::default()
                .f("content_index", v(0))
                .f("item_id", v(id.clone()))
                .f("output_index", self.oi()),
            Obj::default().f("text", v(text.clone())),
        );
        out.push_str(&e);
        self.part_event("response.content_part.done", reasoning_text(&text), out);
        reasoning_item(&id, Some(&text), v(status))
    }

    fn close_function_call(&mut self, status: &str, out: &mut String) -> Obj {
        let e = self.event(
            "response.function_call_arguments.done",
            Obj::default()
                .f("arguments", v(self.text.clone()))
                .f("item_id", v(self.item_id.clone()))
                .f("name", v(self.call_name.clone()))
                .f("output_index", self.oi()),
            Obj::default(),
        );
        out.push_str(&e);
        function_call_item(
            &self.item_id,
            &self.call_id,
            &self.call_name,
            &self.text,
            status,
        )
    }

    /// One engine output: `resolve_target_state`, `needs_transition`,
    /// `emit_delta`.  Returns the SSE frames it produced.
    fn feed(&mut self, piece: &Piece) -> String {
        let mut out = String::new();
        let Some(target) = target_state(piece) else {
            return out;
        };
        if self.needs_transition(target, piece) {
            self.close("completed", &mut out);
            self.open(target, piece, &mut out);
        }
        self.emit_delta(piece, &mut out);
        out
    }

    /// A change of item kind, or a tool call with another index.
    fn needs_transition(&self, target: Current, piece: &Piece) -> bool {
        let index = match piece {
            Piece::ToolHeader { index, .. } | Piece::ToolArgs { index, .. } => Some(*index),
            _ => None,
        };
        let switch_tool = target == Current::ToolCall
            && index.is_some()
            && self.call_index.is_some()
            && index != self.call_index;
        self.current != target || switch_tool
    }

    /// The piece's text joins the current item and goes out as a delta event.
    fn emit_delta(&mut self, piece: &Piece, out: &mut String) {
        let e = match piece {
            Piece::Content(s) => {
                self.text.push_str(s);
                self.event(
                    "response.output_text.delta",
                    Obj::default()
                        .f("content_index", v(0))
                        .f("delta", v(s.clone()))
                        .f("item_id", v(self.item_id.clone()))
                        .f("logprobs", empty())
                        .f("output_index", self.oi()),
                    Obj::default(),
                )
            }
            Piece::Reasoning(s) => {
                self.text.push_str(s);
                self.event(
                    "response.reasoning_text.delta",
                    Obj::default()
                        .f("content_index", v(0))
                        .f("delta", v(s.clone()))
                        .f("item_id", v(self.item_id.clone()))
                        .f("output_index", self.oi()),
                    Obj::default(),
                )
            }
            // The header carries no arguments: no delta event.
            Piece::ToolHeader { .. } => return,
            Piece::ToolArgs { args, .. } if args.is_empty() => return,
            Piece::ToolArgs { args, .. } => {
                self.text.push_str(args);
                self.event(
                    "response.function_call_arguments.delta",
                    Obj::default()
                        .f("delta", v(args.clone()))
                        .f("item_id", v(self.item_id.clone()))
                        .f("output_index", self.oi()),
                    Obj::default(),
                )
            }
        };
        out.push_str(&e);
    }
}

/// `resolve_target_state`: the kind of item a piece belongs to; `None` for
/// a piece that is no state.
fn target_state(piece: &Piece) -> Option<Current> {
    match piece {
        Piece::ToolHeader { .. } | Piece::ToolArgs { .. } => Some(Current::ToolCall),
        Piece::Reasoning(_) => Some(Current::Reasoning),
        // `if delta_message.content:` -- empty text is no state.
        Piece::Content(s) if !s.is_empty() => Some(Current::Content),
        Piece::Content(_) => None,
    }
}

/// The first two events: `ResponsesResponse` with `output: []`,
/// `status: "in_progress"`, `usage: null`.
fn opening_events(ctx: &RespCtx, proc: &mut Processor) -> String {
    let initial = response_obj(ctx, Vec::new(), "in_progress", None);
    let mut out = proc.event(
        "response.created",
        Obj::default().f("response", initial.clone()),
        Obj::default(),
    );
    out.push_str(&proc.event(
        "response.in_progress",
        Obj::default().f("response", initial),
        Obj::default(),
    ));
    out
}

fn responses_stream(
    ctx: RespCtx,
    generation: Generation,
    prefill: Duration,
    pace: Duration,
    guard: ResponseGuard,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    async_stream::stream! {
        let mut guard = guard;
        let mut proc = Processor::new();
        // Yielded before the engine is awaited, so before the prefill.
        yield Ok(Bytes::from(opening_events(&ctx, &mut proc)));
        if !prefill.is_zero() {
            tokio::time::sleep(prefill).await;
        }
        let mut first = true;
        for piece in &generation.pieces {
            if !pace.is_zero() && !std::mem::replace(&mut first, false) {
                tokio::time::sleep(pace).await;
            }
            let frames = proc.feed(piece);
            if !frames.is_empty() {
                yield Ok(Bytes::from(frames));
            }
        }
        let Some(finish) = generation.finish.as_ref() else {
            guard.abort();
            tokio::time::sleep(CRASH_FLUSH).await;
            yield Err(io::Error::other("mock vLLM: simulated engine crash"));
            return;
        };
        let mut out = String::new();
        if !finish.tail.is_empty() {
            out.push_str(&proc.feed(&Piece::Content(finish.tail.clone())));
        }
        // `close_current(response_item_status(finish_reason))`.
        let status = if finish.reason == "length" { "incomplete" } else { "completed" };
        proc.close(status, &mut out);
        let items = std::mem::take(&mut proc.items);
        let response = response_obj(&ctx, items, status, usage_obj(&ctx, &generation));
        let kind = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
        out.push_str(&proc.event(kind, Obj::default().f("response", response), Obj::default()));
        yield Ok(Bytes::from(out));
        guard.complete();
    }
}

// ---------------------------------------------------------------------------
// Handlers.

/// `POST /v1/responses` (`create_responses` in `api_router.py`).
pub(crate) async fn create(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = ResponseGuard::new(st.stats.clone());
    let parsed = validate::parse_json_body(&headers, &body);
    st.stats.record_request(
        PATH,
        &headers,
        match &parsed {
            Ok(v) => v.clone(),
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        },
    );
    let planned = match parsed.and_then(|body| plan(&st, body)) {
        Ok(p) => p,
        Err(e) => {
            guard.errored();
            return e.into_openai_response(st.cfg.vllm_release);
        }
    };
    let Planned {
        req,
        prompt_tokens,
        budget,
        script,
        generation,
        prefill,
    } = planned;
    let ctx = RespCtx {
        // `ResponsesRequest.request_id` default: `resp_{random_uuid()}`.
        id: format!("resp_{}", random_hex()),
        created_at: unix_now(),
        model: st.cfg.served_model_name.clone(),
        tool_choice: req.tool_choice,
        budget,
        prompt_tokens,
        usage_null: script.usage_null,
        body: req.body,
    };
    if req.stream {
        let stream = responses_stream(ctx, generation, prefill, script.pace, guard);
        return sse_response(Body::from_stream(stream));
    }
    if !prefill.is_zero() {
        tokio::time::sleep(prefill).await;
    }
    full_response(&ctx, &generation, guard)
}

/// `responses_full_generator`: the whole `ResponsesResponse` as one JSON
/// body, once the engine is done.
fn full_response(ctx: &RespCtx, generation: &Generation, mut guard: ResponseGuard) -> Response {
    let Some(finish) = generation.finish.as_ref() else {
        return crashed_response(ctx, guard);
    };
    // `responses_full_generator`: "incomplete" when the budget ran out.
    let status = if finish.reason == "length" {
        "incomplete"
    } else {
        "completed"
    };
    let output = output_items(generation, status);
    let usage = usage_obj(ctx, generation);
    let body = response_obj(ctx, output, status, usage);
    guard.complete();
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// `die` without streaming: headers, a partial body, then the cut.
fn crashed_response(ctx: &RespCtx, mut guard: ResponseGuard) -> Response {
    guard.abort();
    crashed_json_response(format!(
        "{{\"id\":\"{}\",\"created_at\":{}",
        ctx.id, ctx.created_at
    ))
}

/// `GET /v1/responses/{response_id}` (`retrieve_responses`): with the store
/// off nothing is ever stored, so always `_make_not_found_error`.
pub(crate) async fn retrieve(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    not_found(&id).into_openai_response(st.cfg.vllm_release)
}

/// `POST /v1/responses/{response_id}/cancel` (`cancel_responses`): likewise 404.
pub(crate) async fn cancel(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    not_found(&id).into_openai_response(st.cfg.vllm_release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_chat_messages() {
        let body = json!({
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "think"}]},
                {"type": "function_call", "call_id": "c1", "name": "Bash", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            ]
        });
        let m = input_messages(&body).unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[1]["content"], json!([{"type": "text", "text": "hi"}]));
        assert_eq!(m[2]["reasoning"], "think");
        assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "Bash");
        assert_eq!(
            m[3],
            json!({"role": "tool", "content": "ok", "tool_call_id": "c1"})
        );
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn unsupported_item_type() {
        let body = json!({"input": [{"type": "item_reference", "id": "x"}]});
        let e = input_messages(&body).unwrap_err();
        assert_eq!(
            e.message,
            "Unsupported input item type: item_reference (parameter=input)"
        );
    }

    #[test]
    fn parallel_calls_are_regrouped() {
        let h = |i: u32| Piece::ToolHeader {
            index: i,
            id: format!("id{i}"),
            name: "Bash".into(),
        };
        let a = |i: u32, s: &str| Piece::ToolArgs {
            index: i,
            args: s.into(),
        };
        let mut p = vec![
            Piece::Reasoning("r".into()),
            h(0),
            h(1),
            a(0, "{"),
            a(1, "{"),
            a(0, "}"),
            a(1, "}"),
        ];
        contiguous_tool_calls(&mut p);
        assert_eq!(
            p,
            vec![
                Piece::Reasoning("r".into()),
                h(0),
                a(0, "{"),
                a(0, "}"),
                h(1),
                a(1, "{"),
                a(1, "}"),
            ]
        );
    }
}
