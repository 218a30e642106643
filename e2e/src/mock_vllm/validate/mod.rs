//! Request checks in the order vLLM applies them:
//!
//! 1. `validate_json_request` (content type) and FastAPI's JSON decoding.
//! 2. pydantic validation of `ChatCompletionRequest` (`protocol.py`): the
//!    `model_validator(mode="before")` hooks first (stream options, tool
//!    usage, generation prompt), then field types.  Reported as FastAPI
//!    validation errors (400, type `Bad Request`, pydantic error list).
//! 3. `serving_chat.create_chat_completion`: model check (404), the
//!    `"auto"` tool-choice check, chat template rendering (Jinja errors),
//!    then the context-length checks ([`check_context`]; 0.11's
//!    `_validate_input`), then `SamplingParams` (`max_tokens >= 1`).
//!
//! The pydantic error lists are an approximation: real pydantic reports one
//! entry per member of the message/content-part unions; the mock reports one
//! entry per problem with the same `type`/`loc`/`msg` vocabulary.

mod schema;

use axum::http::HeaderMap;
use serde_json::Value;

use super::errors::{ApiError, Loc, PyVal, PydanticError};
use super::tokens::count_prompt_tokens;
use super::{MockConfig, VllmRelease};
use schema::body_loc;
pub(crate) use schema::{
    lax_bool, lax_int, validate_chat_schema, validate_responses_schema, validate_tokenize,
};

/// `tool_choice` after vLLM's `check_tool_usage` defaulting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    /// No tools, or `"none"`.
    None,
    /// `"auto"` (explicit, or defaulted because `tools` was given).
    Auto,
    /// Explicit `null` with tools: no "auto" check, but parsed like auto.
    Null,
    /// `"required"`.
    Required,
    /// `{"type": "function", "function": {"name": ...}}`.
    Named(String),
}

/// The parts of a chat request the mock acts on.
#[derive(Debug, Clone)]
pub(crate) struct ChatParams {
    pub stream: bool,
    pub include_usage: bool,
    pub continuous_usage: bool,
    /// `max_completion_tokens or max_tokens` (Python `or`).
    pub max_tokens: Option<i64>,
    pub stop: Vec<String>,
    pub tool_names: Vec<String>,
    pub tool_choice: ToolChoice,
}

impl ChatParams {
    /// Whether a structured tool call can come back (a parser is configured
    /// or guided decoding forces one).
    pub fn tools_parsed(&self, cfg: &MockConfig) -> bool {
        match self.tool_choice {
            ToolChoice::None => false,
            ToolChoice::Auto | ToolChoice::Null => cfg.tool_parser,
            ToolChoice::Required | ToolChoice::Named(_) => true,
        }
    }
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub params: ChatParams,
    pub prompt_tokens: u32,
    /// Effective generation budget: `min(max_tokens, max_model_len - prompt)`.
    pub max_tokens: u32,
}

/// Roles Qwen's chat templates render; anything else (including
/// `developer` and `function`) hits `raise_exception('Unexpected message role.')`.
const TEMPLATE_ROLES: &[&str] = &["system", "user", "assistant", "tool"];

/// vLLM's `validate_json_request` dependency plus FastAPI's body decoding.
pub(crate) fn parse_json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type != "application/json" {
        // RequestValidationError(errors=["Unsupported Media Type: ..."]);
        // str(exc) is the repr of that list.
        return Err(ApiError::validation_text(&[
            "Unsupported Media Type: Only 'application/json' is allowed",
        ]));
    }
    if body.is_empty() {
        return Err(ApiError::validation(&[PydanticError::new(
            "missing",
            body_loc(&[]),
            "Field required",
            PyVal::None,
        )]));
    }
    serde_json::from_slice::<Value>(body).map_err(|err| json_decode_error(body, &err))
}

/// FastAPI's `json_invalid` error, with Python's `json` message wording.
fn json_decode_error(body: &[u8], err: &serde_json::Error) -> ApiError {
    let text = String::from_utf8_lossy(body);
    let serde_msg = err.to_string();
    let msg = if serde_msg.contains("trailing characters") {
        "Extra data"
    } else if serde_msg.contains("key must be a string") {
        "Expecting property name enclosed in double quotes"
    } else if serde_msg.contains("expected `:`") {
        "Expecting ':' delimiter"
    } else if serde_msg.contains("expected `,` or") {
        "Expecting ',' delimiter"
    } else if serde_msg.contains("EOF while parsing a string") {
        "Unterminated string starting at"
    } else if serde_msg.contains("control character") {
        "Invalid control character at"
    } else {
        "Expecting value"
    };
    // serde reports 1-based line/column; Python reports a character offset.
    let mut pos = 0usize;
    for (i, line) in text.split('\n').enumerate() {
        if i + 1 == err.line() {
            pos += err.column().saturating_sub(1).min(line.chars().count());
            break;
        }
        pos += line.chars().count() + 1;
    }
    ApiError::validation(&[PydanticError::new(
        "json_invalid",
        body_loc(&[Loc::Index(pos)]),
        "JSON decode error",
        PyVal::Dict(vec![]),
    )
    .with_ctx(vec![("error", PyVal::str(msg))])])
}

/// Reads the fields the mock acts on (after validation).
pub(crate) fn extract_params(body: &Value) -> ChatParams {
    let stream = body.get("stream").and_then(lax_bool).unwrap_or(false);
    let opts = body.get("stream_options").filter(|o| o.is_object());
    // vLLM's StreamOptions: include_usage defaults to True once the object is given.
    let include_usage = opts.is_some_and(|o| {
        o.get("include_usage")
            .map(|v| lax_bool(v).unwrap_or(false))
            .unwrap_or(true)
    });
    let continuous_usage = opts.is_some_and(|o| {
        o.get("continuous_usage_stats")
            .and_then(lax_bool)
            .unwrap_or(false)
    });
    let mct = lax_int(body.get("max_completion_tokens"));
    let mt = lax_int(body.get("max_tokens"));
    // `request.max_completion_tokens or request.max_tokens`
    let max_tokens = match mct {
        Some(v) if v != 0 => Some(v),
        _ => mt,
    };
    let stop = match body.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tool_names = tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect();
    let tool_choice = match body.get("tool_choice") {
        None if !tools.is_empty() => ToolChoice::Auto,
        None => ToolChoice::None,
        Some(Value::Null) if !tools.is_empty() => ToolChoice::Null,
        Some(Value::Null) => ToolChoice::None,
        Some(v) if v == "auto" => ToolChoice::Auto,
        Some(v) if v == "required" && !tools.is_empty() => ToolChoice::Required,
        Some(Value::Object(o)) => ToolChoice::Named(
            o.get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        Some(_) => ToolChoice::None,
    };
    ChatParams {
        stream,
        include_usage,
        continuous_usage,
        max_tokens,
        stop,
        tool_names,
        tool_choice,
    }
}

/// `_check_model`: a missing or empty model means "the served model"
/// (`_is_model_supported`, `vllm/entrypoints/serve/engine/serving.py`).
pub(crate) fn check_model(cfg: &MockConfig, body: &Value) -> Result<(), ApiError> {
    match body.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() && m != cfg.served_model_name => Err(ApiError::model_not_found(
            m,
            &cfg.served_model_name,
            cfg.vllm_release,
        )),
        _ => Ok(()),
    }
}

/// What rendering the chat template can raise.
///
/// With `strict_system`, the template behaves like Qwen3's:
/// `raise_exception('System message must be at the beginning.')` for any
/// system message that is not the first one.
pub(crate) fn check_template(cfg: &MockConfig, body: &Value) -> Result<(), ApiError> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Ok(());
    };
    for (i, msg) in messages.iter().enumerate() {
        let role = msg.get("role").and_then(Value::as_str).unwrap_or("");
        if cfg.strict_system && role == "system" && i != 0 {
            return Err(ApiError::template(
                "System message must be at the beginning.",
                cfg.vllm_release,
            ));
        }
        if !TEMPLATE_ROLES.contains(&role) {
            return Err(ApiError::template(
                "Unexpected message role.",
                cfg.vllm_release,
            ));
        }
    }
    Ok(())
}

/// Step 3: everything `serving_chat.create_chat_completion` checks after
/// pydantic, shared by `/v1/chat/completions` and `/v1/messages`.
pub(crate) fn preprocess(
    cfg: &MockConfig,
    body: &Value,
    params: ChatParams,
) -> Result<Prepared, ApiError> {
    check_model(cfg, body)?;
    if params.tool_choice == ToolChoice::Auto && !cfg.tool_parser {
        return Err(ApiError::bad_request(
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
        ));
    }
    check_template(cfg, body)?;
    let prompt = count_prompt_tokens(body);
    let max_tokens = match cfg.vllm_release {
        VllmRelease::V0_11 => check_context_v0_11(cfg.max_model_len, prompt, &params)?,
        release => check_context(cfg.max_model_len, prompt, body, release)?,
    };
    Ok(Prepared {
        params,
        prompt_tokens: prompt,
        max_tokens,
    })
}

/// The requested output budget as 0.30+ read it (`build_tok_params`,
/// `vllm/entrypoints/openai/chat_completion/protocol.py`):
/// `max_completion_tokens` if set, else `max_tokens`, with the parameter name
/// the errors quote.  `/v1/messages` sets both, so it quotes
/// `max_completion_tokens`.
fn requested_output(body: &Value) -> (&'static str, Option<i64>) {
    match body.get("max_completion_tokens").filter(|v| !v.is_null()) {
        Some(v) => ("max_completion_tokens", lax_int(Some(v))),
        None => ("max_tokens", lax_int(body.get("max_tokens"))),
    }
}

/// The context-window checks of 0.30 and 0.34, in vLLM's order; returns the
/// generation budget.
///
/// 1. `TokenizeParams.__post_init__` (`vllm/renderers/params.py`): an output
///    budget above the window is refused,
///    `max_tokens=M cannot be greater than max_model_len=L.` (0.31+; 0.22.1–0.30
///    print `max_model_len=max_total_tokens=L` from a `{max_total_tokens=}`
///    f-string).
/// 2. `_token_len_check`: the chat prompt is rendered to text and encoded with
///    `truncation=True, max_length=max_input_tokens + 1` (`get_encode_kwargs`),
///    so an over-long prompt is only ever counted to one token past the limit
///    and the count is reported as `at least` that.
///    * 0.34 (0.32+): `max_input_tokens = L`, so only a prompt that alone
///      exceeds the window fails, always with `N = L + 1`.
///    * 0.30: `max_input_tokens = L - M` (`M = max_tokens or 0`), so
///      `N = L - M + 1` and the total `at least L + 1`: a lower bound
///      back-computed from M, never the true size.
/// 3. `get_max_tokens` (`vllm/entrypoints/serve/utils/api_utils.py`): the
///    budget is `min(L - P, M)`; `max_tokens` absent means `L - P`.  A prompt
///    of exactly `L` tokens leaves 0, refused by `SamplingParams._verify_args`
///    (`max_tokens must be at least 1, got 0.`).
fn check_context(
    max_len: u32,
    prompt: u32,
    body: &Value,
    release: VllmRelease,
) -> Result<u32, ApiError> {
    let l = i64::from(max_len);
    let p = i64::from(prompt);
    let (param, requested) = requested_output(body);
    if let Some(m) = requested.filter(|m| *m > l) {
        let total = match release {
            VllmRelease::V0_30 => format!("max_model_len=max_total_tokens={l}"),
            _ => format!("max_model_len={l}"),
        };
        return Err(ApiError::vllm_validation(
            &format!(
                "{param}={m} cannot be greater than {total}. Please request fewer output tokens."
            ),
            param,
            m,
        ));
    }
    match release {
        VllmRelease::V0_30 => {
            let m = requested.unwrap_or(0);
            let max_input = l - m;
            if p > max_input {
                let n = max_input + 1;
                return Err(ApiError::vllm_validation(
                    &format!(
                        "This model's maximum context length is {l} tokens. However, you requested {m} output tokens and your prompt contains at least {n} input tokens, for a total of at least {} tokens. Please reduce the length of the input prompt or the number of requested output tokens.",
                        n + m
                    ),
                    "input_tokens",
                    n,
                ));
            }
        }
        _ => {
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
        }
    }
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

/// vLLM 0.10/0.11's `_validate_input` (`serving_engine.py`): exact counts,
/// raised as `ValueError` and formatted with a trailing `" None"`.
fn check_context_v0_11(max_len: u32, prompt: u32, params: &ChatParams) -> Result<u32, ApiError> {
    if prompt >= max_len {
        return Err(ApiError::preprocessing(&format!(
            "This model's maximum context length is {max_len} tokens. However, your request has {prompt} input tokens. Please reduce the length of the input messages."
        )));
    }
    if let Some(mt) = params.max_tokens {
        if i64::from(prompt) + mt > i64::from(max_len) {
            return Err(ApiError::preprocessing(&format!(
                "'max_tokens' or 'max_completion_tokens' is too large: {mt}. This model's maximum context length is {max_len} tokens and your request has {prompt} input tokens ({mt} > {max_len} - {prompt})."
            )));
        }
        // SamplingParams._verify_args, returned as str(e) without the cause.
        if mt < 1 {
            return Err(ApiError::bad_request(format!(
                "max_tokens must be at least 1, got {mt}."
            )));
        }
    }
    let room = max_len - prompt;
    Ok(params
        .max_tokens
        .map(|mt| (mt as u64).min(u64::from(room)) as u32)
        .unwrap_or(room))
}

/// The context check of `/v1/messages/count_tokens`: none in 0.34
/// (`_CountTokensChatRequest.build_tok_params` uses `max_total_tokens=None`,
/// "like /tokenize"); through 0.33 a plain `ChatCompletionRequest` without
/// `max_tokens`, so 0.30's `_token_len_check` with `M = 0`.
pub(crate) fn check_count_tokens_window(cfg: &MockConfig, prompt: u32) -> Result<(), ApiError> {
    if cfg.vllm_release != VllmRelease::V0_30 || prompt <= cfg.max_model_len {
        return Ok(());
    }
    let l = i64::from(cfg.max_model_len);
    let n = l + 1;
    Err(ApiError::vllm_validation(
        &format!(
            "This model's maximum context length is {l} tokens. However, you requested 0 output tokens and your prompt contains at least {n} input tokens, for a total of at least {n} tokens. Please reduce the length of the input prompt or the number of requested output tokens."
        ),
        "input_tokens",
        n,
    ))
}
