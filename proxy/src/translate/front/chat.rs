//! `POST /v1/chat/completions` in front (pure): an OpenAI Chat Completions request → the
//! Messages request the rest of the proxy handles, and its answer (a whole Anthropic message
//! or its SSE events) → a `chat.completion` object or `chat.completion.chunk` stream.
//!
//! Request decisions, beyond the one-to-one fields:
//! - `system`/`developer` messages before the first user, assistant or tool message form the
//!   Messages `system` (joined by blank lines); later ones stay in place as `role: system`
//!   messages (the proxy's system-message fix then places them as configured).
//! - `tool` messages become `tool_result` blocks of one user turn (a run of them, and a user
//!   message right after them, join that turn). Tool calls and results are paired as OpenAI
//!   and Anthropic both require, checked here so a mistake is named by its OpenAI path
//!   rather than by the Messages index the backend translation would report.
//! - An assistant `tool_calls[].function.arguments` string that is not a JSON object is
//!   refused (400 naming the path), as vLLM itself refuses it (its chat templates read the
//!   arguments as a mapping); `""` is taken as `{}` (a call without arguments, as streaming
//!   accumulators leave it), and an object sent as is is accepted.
//! - No `max_completion_tokens`/`max_tokens`: [`DEFAULT_MAX_TOKENS`].
//! - `reasoning_effort` → thinking (`none` turns it off, the levels turn it on with
//!   `output_config.effort`); without it, `chat_template_kwargs.enable_thinking`/`thinking`
//!   decide; without either, thinking stays off as for a Messages request without `thinking`.
//! - Parameters with no Messages field go to `openai_params` (sent to an OpenAI-protocol
//!   backend as they are), except OpenAI-platform ones no backend here serves
//!   ([`PLATFORM_ONLY`], dropped silently). `n` above 1 is refused; legacy `function`
//!   messages and assistant `function_call` are refused; legacy `functions` and the
//!   `function_call` parameter are mapped.
//!
//! Answer decisions: `reasoning_content` carries thinking (vLLM's field name); usage counts
//! cache reads and writes in `prompt_tokens` (OpenAI's `prompt_tokens` includes cached ones)
//! with reads also in `cached_tokens`; an error mid-stream is a `{"error": …}` chunk with no
//! `[DONE]` after it (the `openai` SDKs raise an `APIError` on such a chunk).

use super::{Stop, Usage};
use crate::error::{ApiError, ErrorKind};
use crate::protocol::anthropic::{
    Content, ContentBlock, Extra, ImageSource, Message, MessagesRequest, Metadata, OutputConfig,
    Role, SystemPrompt, Thinking, ThinkingKind, Tool, ToolChoice,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;

/// `max_tokens` when the client sends neither `max_completion_tokens` nor `max_tokens`.
///
/// OpenAI's and vLLM's default is "whatever the window leaves", which is not known here (the
/// route and its backend's window are chosen later). The proxy's context fit makes a large
/// value safe: it caps `max_tokens` at the window (vLLM ≥ 0.32 then lowers it to the window's
/// rest itself; older servers get an exact count first). 32,768 leaves coding tools' whole-
/// file edits and long reasoning untruncated, while staying under the size that would make
/// the fit ask older servers for an exact count on every request with a 64k+ window.
pub const DEFAULT_MAX_TOKENS: u32 = 32_768;

/// OpenAI-platform request fields with no meaning for a self-hosted backend (storage,
/// billing tier, predicted outputs, OpenAI's own metadata and hosted tools), and
/// `stream_options` (the proxy asks its backend for usage itself): dropped silently.
pub const PLATFORM_ONLY: &[&str] = &[
    "stream_options",
    "store",
    "metadata",
    "service_tier",
    "prediction",
    "prompt_cache_key",
    "safety_identifier",
    "web_search_options",
    "modalities",
    "audio",
    "verbosity",
];

/// What the answer's conversion needs to know about the client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatFront {
    /// `chatcmpl-…`, given by the caller.
    pub id: String,
    /// The client's model name, echoed in every answer.
    pub model: String,
    /// Unix seconds, given by the caller.
    pub created: u64,
    /// `stream_options.include_usage` (false unless streaming).
    pub include_usage: bool,
    pub stream: bool,
}

// ---- request ----

/// OpenAI Chat Completions request JSON → the Messages request, plus what the answer needs.
/// `id` and `created` are supplied by the caller (keeps this pure and testable). Errors are
/// 400s naming the offending field by its OpenAI path (`messages[2].tool_calls[0].id: …`).
/// Fields are read in a fixed order, so the first of several mistakes is the one named.
pub fn request(
    body: Value,
    id: String,
    created: u64,
) -> Result<(MessagesRequest, ChatFront), ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    let model = model(take(&mut body, "model"))?;
    let messages = messages(take(&mut body, "messages"))?;
    one_choice(take(&mut body, "n"))?;
    let stream = opt_bool(take(&mut body, "stream"), "stream")?.unwrap_or(false);
    let include_usage = stream && include_usage(&body);
    let mut openai_params = Map::new();
    let sampling = Sampling::take(&mut body, &mut openai_params)?;
    let metadata = user(take(&mut body, "user"))?;
    let (thinking, output_config) = thinking_fields(&mut body)?;
    let (tools, tool_choice) = tool_fields(&mut body)?;

    let (system, messages) = Turns::convert(messages)?;

    pass_through(body, &mut openai_params);

    let req = MessagesRequest {
        model: model.clone(),
        messages,
        system: (!system.is_empty()).then(|| SystemPrompt::Text(system.join("\n\n"))),
        max_tokens: sampling.max_tokens,
        stream,
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        top_k: sampling.top_k,
        stop_sequences: sampling.stop_sequences,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        thinking,
        metadata,
        output_config,
        extra: Extra::new(),
        openai_params,
    };
    let front = ChatFront {
        id,
        model,
        created,
        include_usage,
        stream,
    };
    Ok((req, front))
}

/// `reasoning_effort`, else vLLM's `chat_template_kwargs` switch → thinking and effort.
fn thinking_fields(
    body: &mut Map<String, Value>,
) -> Result<(Option<Thinking>, Option<OutputConfig>), ApiError> {
    match take(body, "reasoning_effort") {
        Some(Value::String(effort)) => reasoning(&effort),
        Some(_) => Err(invalid("reasoning_effort", "must be a string")),
        None => Ok((template_thinking(body.get("chat_template_kwargs")), None)),
    }
}

/// The fields left after the known ones go to the backend as they are (so new vLLM
/// parameters need no change here), except nulls and [`PLATFORM_ONLY`] ones.
fn pass_through(body: Map<String, Value>, openai_params: &mut Map<String, Value>) {
    for (k, v) in body {
        if !v.is_null() && !PLATFORM_ONLY.contains(&k.as_str()) {
            openai_params.insert(k, v);
        }
    }
}

/// `model`: a non-empty string.
fn model(v: Option<Value>) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None => Err(invalid("model", "field required")),
        Some(_) => Err(invalid("model", "must be a non-empty string")),
    }
}

/// `messages`: a non-empty array (its items are checked by [`Turns::convert`]).
fn messages(v: Option<Value>) -> Result<Vec<Value>, ApiError> {
    match v {
        Some(Value::Array(m)) if !m.is_empty() => Ok(m),
        Some(Value::Array(_)) => Err(invalid("messages", "at least one message is required")),
        None => Err(invalid("messages", "field required")),
        Some(_) => Err(invalid("messages", "must be an array of messages")),
    }
}

/// `n`: one answer is all a Messages request gives, so only 1 is accepted.
fn one_choice(n: Option<Value>) -> Result<(), ApiError> {
    let Some(n) = n else { return Ok(()) };
    match n.as_u64() {
        Some(1) => Ok(()),
        Some(n) if n > 1 => Err(invalid(
            "n",
            format!(
                "only one choice per request is served here (n = {n}); send {n} requests instead"
            ),
        )),
        _ => Err(invalid("n", "must be a positive integer")),
    }
}

/// `stream_options.include_usage`, read in place (the field itself is [`PLATFORM_ONLY`]).
fn include_usage(body: &Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The sampling fields a Messages request has a place for.
struct Sampling {
    max_tokens: u32,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u32>,
    stop_sequences: Option<Vec<String>>,
}

impl Sampling {
    /// Takes the sampling fields from `body`; a `top_k` with no Messages meaning goes to
    /// `openai_params`.
    fn take(
        body: &mut Map<String, Value>,
        openai_params: &mut Map<String, Value>,
    ) -> Result<Self, ApiError> {
        let max_tokens = match (
            take(body, "max_completion_tokens"),
            take(body, "max_tokens"),
        ) {
            (Some(v), _) => positive_u32(&v, "max_completion_tokens")?,
            (None, Some(v)) => positive_u32(&v, "max_tokens")?,
            (None, None) => DEFAULT_MAX_TOKENS,
        };
        let temperature = opt_f64(take(body, "temperature"), "temperature")?;
        let top_p = opt_f64(take(body, "top_p"), "top_p")?;
        let top_k = top_k(take(body, "top_k"), openai_params)?;
        let stop_sequences = stop(take(body, "stop"))?;
        Ok(Sampling {
            max_tokens,
            temperature,
            top_p,
            top_k,
            stop_sequences,
        })
    }
}

/// `top_k` of at least 1 → Messages `top_k`; vLLM's "all tokens" (-1, 0) has no Messages
/// equivalent and is left in `openai_params` for the backend to read.
fn top_k(
    v: Option<Value>,
    openai_params: &mut Map<String, Value>,
) -> Result<Option<u32>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    match v.as_i64() {
        Some(k) if k >= 1 => Ok(Some(u32::try_from(k).unwrap_or(u32::MAX))),
        Some(_) => {
            openai_params.insert("top_k".into(), v);
            Ok(None)
        }
        None => Err(invalid("top_k", "must be an integer")),
    }
}

/// `user` → Messages `metadata.user_id`.
fn user(v: Option<Value>) -> Result<Option<Metadata>, ApiError> {
    match v {
        None => Ok(None),
        Some(Value::String(user)) => Ok(Some(Metadata {
            user_id: Some(user),
            extra: Extra::new(),
        })),
        Some(_) => Err(invalid("user", "must be a string")),
    }
}

/// `tools`/`functions`, `tool_choice`/`function_call` and `parallel_tool_calls` → the
/// Messages tools and choice.
fn tool_fields(body: &mut Map<String, Value>) -> Result<(Vec<Tool>, Option<ToolChoice>), ApiError> {
    let tools = match (take(body, "tools"), take(body, "functions")) {
        (Some(t), _) => tools(t, "tools")?,
        (None, Some(f)) => tools(f, "functions")?,
        (None, None) => Vec::new(),
    };
    let choice = match (take(body, "tool_choice"), take(body, "function_call")) {
        (Some(c), _) => Some(tool_choice(c)?),
        (None, Some(c)) => Some(function_call(c)?),
        (None, None) => None,
    };
    let parallel = opt_bool(take(body, "parallel_tool_calls"), "parallel_tool_calls")?;
    // A choice without tools means nothing (OpenAI refuses it; dropping it is friendlier).
    let choice = if tools.is_empty() {
        None
    } else if parallel == Some(false) {
        Some(serial(choice))
    } else {
        choice
    };
    Ok((tools, choice))
}

/// `parallel_tool_calls: false` → the choice (`auto` when none was sent) with
/// `disable_parallel_tool_use`.
fn serial(choice: Option<ToolChoice>) -> ToolChoice {
    let mut choice = choice.unwrap_or(ToolChoice::Auto {
        extra: Extra::new(),
    });
    let (ToolChoice::Auto { extra }
    | ToolChoice::Any { extra }
    | ToolChoice::Tool { extra, .. }
    | ToolChoice::None { extra }) = &mut choice;
    extra.insert("disable_parallel_tool_use".into(), Value::Bool(true));
    choice
}

fn invalid(path: impl Display, what: impl Display) -> ApiError {
    ApiError::invalid(format!("{path}: {what}"))
}

/// Removes a field; an explicit `null` counts as absent (clients send those for defaults).
fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|v| !v.is_null())
}

/// A non-empty string at `path`; anything else is refused with `message`.
fn required(v: Option<Value>, path: impl Display, message: &str) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(invalid(path, message)),
    }
}

fn opt_bool(v: Option<Value>, path: &str) -> Result<Option<bool>, ApiError> {
    v.map(|v| {
        v.as_bool()
            .ok_or_else(|| invalid(path, "must be a boolean"))
    })
    .transpose()
}

fn opt_f64(v: Option<Value>, path: &str) -> Result<Option<f64>, ApiError> {
    v.map(|v| v.as_f64().ok_or_else(|| invalid(path, "must be a number")))
        .transpose()
}

/// A token count of at least 1; anything past `u32` is the window's problem (the proxy caps
/// `max_tokens` at the window anyway).
fn positive_u32(v: &Value, path: &str) -> Result<u32, ApiError> {
    match v.as_u64() {
        Some(n) if n >= 1 => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
        _ => Err(invalid(path, "must be an integer of at least 1")),
    }
}

/// `stop`: a string or an array of strings; empty strings stop nothing and are left out.
fn stop(v: Option<Value>) -> Result<Option<Vec<String>>, ApiError> {
    let stops = match v {
        None => return Ok(None),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s {
                Value::String(s) => Ok(s),
                _ => Err(invalid(format_args!("stop[{i}]"), "must be a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("stop", "must be a string or an array of strings")),
    };
    let stops: Vec<String> = stops.into_iter().filter(|s| !s.is_empty()).collect();
    Ok((!stops.is_empty()).then_some(stops))
}

/// `reasoning_effort` → Messages thinking and effort. `none` turns thinking off; `minimal`
/// is the lowest level a backend switch knows (`low`); the others carry over.
fn reasoning(effort: &str) -> Result<(Option<Thinking>, Option<OutputConfig>), ApiError> {
    let level = match effort {
        "none" => return Ok((Some(thinking(ThinkingKind::Disabled)), None)),
        "minimal" => "low",
        "low" | "medium" | "high" | "xhigh" | "max" => effort,
        other => {
            return Err(invalid(
                "reasoning_effort",
                format!("expected one of none, minimal, low, medium, high, xhigh (got `{other}`)"),
            ))
        }
    };
    Ok((
        Some(thinking(ThinkingKind::Adaptive)),
        Some(OutputConfig {
            effort: Some(level.to_owned()),
            extra: Extra::new(),
        }),
    ))
}

/// vLLM's own thinking switch in `chat_template_kwargs` (`enable_thinking` for Qwen3/GLM,
/// `thinking` for DeepSeek), read as the Messages switch so every backend style honours it.
fn template_thinking(kwargs: Option<&Value>) -> Option<Thinking> {
    let kwargs = kwargs?;
    let on = kwargs
        .get("enable_thinking")
        .and_then(Value::as_bool)
        .or_else(|| kwargs.get("thinking").and_then(Value::as_bool))?;
    Some(thinking(if on {
        ThinkingKind::Adaptive
    } else {
        ThinkingKind::Disabled
    }))
}

fn thinking(kind: ThinkingKind) -> Thinking {
    Thinking {
        kind,
        budget_tokens: None,
        extra: Extra::new(),
    }
}

/// A tool's or tool call's `type` at `path`: absent or `function`.
fn function_type(kind: Option<Value>, path: &str, what: &str) -> Result<(), ApiError> {
    match kind {
        None => Ok(()),
        Some(Value::String(t)) if t == "function" => Ok(()),
        Some(t) => Err(invalid(
            format_args!("{path}.type"),
            format!("only `function` {what} are supported (got {t})"),
        )),
    }
}

/// `tools` (`{"type": "function", "function": {…}}`) or legacy `functions` (`{…}` directly).
fn tools(v: Value, field: &str) -> Result<Vec<Tool>, ApiError> {
    let Value::Array(items) = v else {
        return Err(invalid(field, "must be an array"));
    };
    let legacy = field == "functions";
    let mut tools = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("{field}[{i}]");
        let Value::Object(mut item) = item else {
            return Err(invalid(&path, "must be an object"));
        };
        let (mut function, fpath) = if legacy {
            (item, path)
        } else {
            function_type(take(&mut item, "type"), &path, "tools")?;
            match take(&mut item, "function") {
                Some(Value::Object(f)) => (f, format!("{path}.function")),
                _ => return Err(invalid(format_args!("{path}.function"), "field required")),
            }
        };
        let name = required(
            take(&mut function, "name"),
            format_args!("{fpath}.name"),
            "a non-empty string is required",
        )?;
        let description = match take(&mut function, "description") {
            None => None,
            Some(Value::String(d)) => Some(d),
            Some(_) => {
                return Err(invalid(
                    format_args!("{fpath}.description"),
                    "must be a string",
                ))
            }
        };
        let schema = match take(&mut function, "parameters") {
            None => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p,
            Some(_) => {
                return Err(invalid(
                    format_args!("{fpath}.parameters"),
                    "must be a JSON Schema object",
                ))
            }
        };
        tools.push(Tool {
            name,
            kind: None,
            description,
            input_schema: Some(schema),
            defer_loading: None,
            extra: Extra::new(),
        });
    }
    Ok(tools)
}

fn tool_choice(v: Value) -> Result<ToolChoice, ApiError> {
    let extra = Extra::new();
    match &v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto { extra }),
            "none" => Ok(ToolChoice::None { extra }),
            "required" => Ok(ToolChoice::Any { extra }),
            other => Err(invalid(
                "tool_choice",
                format!("expected auto, none, required or a function (got `{other}`)"),
            )),
        },
        Value::Object(o) => {
            match o.get("type").and_then(Value::as_str) {
                Some("function") | None => {}
                Some(other) => {
                    return Err(invalid(
                        "tool_choice.type",
                        format!("only `function` is supported (got `{other}`)"),
                    ))
                }
            }
            // `{"function": {"name"}}`, or the Responses-style `{"name"}` some clients send.
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid("tool_choice.function.name", "field required"))?;
            Ok(ToolChoice::Tool {
                name: name.to_owned(),
                extra,
            })
        }
        _ => Err(invalid("tool_choice", "must be a string or an object")),
    }
}

/// The legacy `function_call` parameter: `auto`, `none` or `{"name"}`.
fn function_call(v: Value) -> Result<ToolChoice, ApiError> {
    let extra = Extra::new();
    match &v {
        Value::String(s) if s == "auto" => Ok(ToolChoice::Auto { extra }),
        Value::String(s) if s == "none" => Ok(ToolChoice::None { extra }),
        Value::Object(o) => match o.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => Ok(ToolChoice::Tool {
                name: name.to_owned(),
                extra,
            }),
            _ => Err(invalid("function_call.name", "field required")),
        },
        _ => Err(invalid(
            "function_call",
            "expected auto, none or {\"name\": …}",
        )),
    }
}

/// Builds the Messages turns from OpenAI messages, in order.
#[derive(Default)]
struct Turns {
    /// Leading system and developer texts.
    system: Vec<String>,
    out: Vec<Message>,
    /// A user, assistant or tool message has been seen: system messages stay in place.
    started: bool,
    /// The last message of `out` is a user turn opened by tool results.
    tool_turn: bool,
    /// Tool call ids of the last assistant message (what a tool message may answer).
    calls: HashSet<String>,
    /// Those not answered yet, in order, and the assistant message's index.
    awaiting: Vec<String>,
    awaiting_at: usize,
    /// System messages met while tool results were still due: placed after those results, so
    /// the results stay in the turn right after their calls.
    deferred: Vec<Message>,
}

impl Turns {
    fn convert(messages: Vec<Value>) -> Result<(Vec<String>, Vec<Message>), ApiError> {
        let mut turns = Turns {
            out: Vec::with_capacity(messages.len()),
            ..Turns::default()
        };
        for (i, m) in messages.into_iter().enumerate() {
            let Value::Object(m) = m else {
                return Err(invalid(format_args!("messages[{i}]"), "must be an object"));
            };
            turns.message(i, m)?;
        }
        // A last assistant message may keep unanswered calls (a prefill, as in Messages).
        turns.flush_deferred();
        Ok((turns.system, turns.out))
    }

    /// One message, by its role.
    fn message(&mut self, i: usize, mut m: Map<String, Value>) -> Result<(), ApiError> {
        let role = match take(&mut m, "role") {
            Some(Value::String(r)) => r,
            _ => {
                return Err(invalid(
                    format_args!("messages[{i}].role"),
                    "field required",
                ))
            }
        };
        match role.as_str() {
            "system" | "developer" => self.system_message(i, m),
            "user" => self.user_message(i, m),
            "assistant" => self.assistant_message(i, m),
            "tool" => self.tool_message(i, m),
            "function" => Err(invalid(
                format_args!("messages[{i}].role"),
                "the legacy `function` role is not supported; answer `tool_calls` with `tool` messages",
            )),
            other => Err(invalid(
                format_args!("messages[{i}].role"),
                format!("unknown role `{other}` (expected system, developer, user, assistant or tool)"),
            )),
        }
    }

    /// Before the first turn: part of the system prompt. After it: a `role: system` message
    /// in place, held back while tool calls await their results (so the results stay next
    /// to their calls).
    fn system_message(&mut self, i: usize, mut m: Map<String, Value>) -> Result<(), ApiError> {
        let text = system_text(take(&mut m, "content"), i)?;
        if !self.started {
            self.system.push(text);
            return Ok(());
        }
        let msg = Message {
            role: Role::System,
            content: Content::Text(text),
            extra: Extra::new(),
        };
        if self.awaiting.is_empty() {
            self.out.push(msg);
            self.tool_turn = false;
        } else {
            self.deferred.push(msg);
        }
        Ok(())
    }

    /// A user message: its own turn, or joined to the tool results just before it.
    fn user_message(&mut self, i: usize, mut m: Map<String, Value>) -> Result<(), ApiError> {
        self.next_turn()?;
        let content = user_content(take(&mut m, "content"), i)?;
        self.calls.clear();
        match self.out.last_mut() {
            Some(last) if self.tool_turn => push_blocks(last, content.into_blocks()),
            _ => self.out.push(Message {
                role: Role::User,
                content,
                extra: Extra::new(),
            }),
        }
        self.tool_turn = false;
        Ok(())
    }

    /// An assistant message; its tool calls become the ones the next `tool` messages answer.
    fn assistant_message(&mut self, i: usize, m: Map<String, Value>) -> Result<(), ApiError> {
        self.next_turn()?;
        if m.get("function_call").is_some_and(|f| !f.is_null()) {
            return Err(invalid(
                format_args!("messages[{i}].function_call"),
                "legacy function calls are not supported; send `tool_calls`",
            ));
        }
        let (blocks, ids) = assistant_blocks(m, i)?;
        self.tool_turn = false;
        self.calls = ids.iter().cloned().collect();
        self.awaiting = ids;
        self.awaiting_at = i;
        if blocks.is_empty() {
            return Ok(());
        }
        let content = match <[ContentBlock; 1]>::try_from(blocks) {
            Ok([ContentBlock::Text { text, .. }]) => Content::Text(text),
            Ok([block]) => Content::Blocks(vec![block]),
            Err(blocks) => Content::Blocks(blocks),
        };
        self.out.push(Message {
            role: Role::Assistant,
            content,
            extra: Extra::new(),
        });
        Ok(())
    }

    /// A `tool` message → a `tool_result` block of the user turn that follows the calls; it
    /// must answer a call of the preceding assistant message.
    fn tool_message(&mut self, i: usize, mut m: Map<String, Value>) -> Result<(), ApiError> {
        self.started = true;
        let id = required(
            take(&mut m, "tool_call_id"),
            format_args!("messages[{i}].tool_call_id"),
            "field required",
        )?;
        if !self.calls.contains(&id) {
            return Err(invalid(
                format_args!("messages[{i}].tool_call_id"),
                format!("`{id}` answers no tool call of the preceding assistant message (a `tool` message must follow the assistant message whose `tool_calls` it answers)"),
            ));
        }
        self.awaiting.retain(|a| *a != id);
        let content = tool_content(take(&mut m, "content"), i)?;
        let block = ContentBlock::ToolResult {
            tool_use_id: id,
            content,
            is_error: None,
            extra: Extra::new(),
        };
        match self.out.last_mut() {
            Some(last) if self.tool_turn => push_blocks(last, vec![block]),
            _ => {
                self.out.push(Message {
                    role: Role::User,
                    content: Content::Blocks(vec![block]),
                    extra: Extra::new(),
                });
                self.tool_turn = true;
            }
        }
        Ok(())
    }

    /// A user or assistant message: every call of the previous assistant message must have
    /// been answered (OpenAI's rule, and Anthropic's).
    fn next_turn(&mut self) -> Result<(), ApiError> {
        self.started = true;
        if !self.awaiting.is_empty() {
            return Err(invalid(
                format_args!("messages[{}].tool_calls", self.awaiting_at),
                format!(
                    "an assistant message with `tool_calls` must be followed by `tool` messages answering each `tool_call_id`; unanswered: {}",
                    self.awaiting.join(", ")
                ),
            ));
        }
        self.flush_deferred();
        Ok(())
    }

    fn flush_deferred(&mut self) {
        if !self.deferred.is_empty() {
            self.out.append(&mut self.deferred);
            self.tool_turn = false;
        }
    }
}

fn push_blocks(turn: &mut Message, more: Vec<ContentBlock>) {
    let content = std::mem::replace(&mut turn.content, Content::Blocks(Vec::new()));
    let mut blocks = content.into_blocks();
    blocks.extend(more);
    turn.content = Content::Blocks(blocks);
}

/// A content part: its `type` and its other fields.
type Part = (String, Map<String, Value>);

/// The parts of a content array, each an object with a string `type`.
fn parts(items: Vec<Value>, path: &str) -> Result<Vec<Part>, ApiError> {
    items
        .into_iter()
        .enumerate()
        .map(|(j, part)| {
            let Value::Object(mut part) = part else {
                return Err(invalid(format_args!("{path}[{j}]"), "must be an object"));
            };
            match take(&mut part, "type") {
                Some(Value::String(kind)) => Ok((kind, part)),
                _ => Err(invalid(format_args!("{path}[{j}].type"), "field required")),
            }
        })
        .collect()
}

fn part_text(mut part: Map<String, Value>, key: &str, path: &str) -> Result<String, ApiError> {
    match take(&mut part, key) {
        Some(Value::String(t)) => Ok(t),
        _ => Err(invalid(
            format_args!("{path}.{key}"),
            "a string is required",
        )),
    }
}

/// A system or developer message's text: a string or text parts (joined by newlines, as
/// vLLM joins them).
fn system_text(content: Option<Value>, i: usize) -> Result<String, ApiError> {
    let path = format!("messages[{i}].content");
    match content {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(items)) => {
            let mut texts = Vec::with_capacity(items.len());
            for (j, (kind, part)) in parts(items, &path)?.into_iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                if kind != "text" {
                    return Err(invalid(
                        format_args!("{ppath}.type"),
                        format!(
                            "system and developer messages take `text` parts only (got `{kind}`)"
                        ),
                    ));
                }
                texts.push(part_text(part, "text", &ppath)?);
            }
            Ok(texts.join("\n"))
        }
        None => Err(invalid(path, "field required")),
        Some(_) => Err(invalid(path, "must be a string or an array of parts")),
    }
}

/// A user message's content: a string, or `text` and `image_url` parts.
fn user_content(content: Option<Value>, i: usize) -> Result<Content, ApiError> {
    let path = format!("messages[{i}].content");
    match content {
        Some(Value::String(s)) => Ok(Content::Text(s)),
        Some(Value::Array(items)) => media_blocks(items, &path).map(Content::Blocks),
        None => Err(invalid(path, "field required")),
        Some(_) => Err(invalid(path, "must be a string or an array of parts")),
    }
}

/// A tool message's content: a string, or `text` (and, as Anthropic allows in tool results,
/// `image_url`) parts.
fn tool_content(content: Option<Value>, i: usize) -> Result<Option<Content>, ApiError> {
    let path = format!("messages[{i}].content");
    match content {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(Content::Text(s))),
        Some(Value::Array(items)) => media_blocks(items, &path).map(|b| Some(Content::Blocks(b))),
        Some(_) => Err(invalid(path, "must be a string or an array of parts")),
    }
}

fn media_blocks(items: Vec<Value>, path: &str) -> Result<Vec<ContentBlock>, ApiError> {
    let mut blocks = Vec::with_capacity(items.len());
    for (j, (kind, part)) in parts(items, path)?.into_iter().enumerate() {
        let ppath = format!("{path}[{j}]");
        blocks.push(match kind.as_str() {
            "text" => ContentBlock::text(part_text(part, "text", &ppath)?),
            "image_url" => image(part, &ppath)?,
            other => {
                return Err(invalid(
                    format_args!("{ppath}.type"),
                    format!("`{other}` parts are not supported here (`text` and `image_url` are)"),
                ))
            }
        });
    }
    Ok(blocks)
}

/// An `image_url` part (`{"url"}`, or the bare string some clients send): a `data:` URL
/// becomes a base64 source, an http(s) URL a URL source.
fn image(mut part: Map<String, Value>, path: &str) -> Result<ContentBlock, ApiError> {
    let upath = format!("{path}.image_url.url");
    let mut url = match take(&mut part, "image_url") {
        Some(Value::String(url)) => url,
        Some(Value::Object(mut o)) => match take(&mut o, "url") {
            Some(Value::String(url)) => url,
            _ => return Err(invalid(upath, "field required")),
        },
        _ => return Err(invalid(upath, "field required")),
    };
    let source = if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, _)) = rest.split_once(',') else {
            return Err(invalid(upath, "a data URL needs a `,` before its data"));
        };
        let mut fields = meta.split(';');
        let media_type = fields.next().unwrap_or_default().to_owned();
        if media_type.is_empty() || !fields.any(|f| f == "base64") {
            return Err(invalid(
                upath,
                "only base64 data URLs with a media type are supported (data:image/png;base64,…)",
            ));
        }
        // The data in place: an image can be megabytes.
        let start = "data:".len() + meta.len() + 1;
        url.drain(..start);
        ImageSource::Base64 {
            media_type,
            data: url,
        }
    } else if url.starts_with("https://") || url.starts_with("http://") {
        ImageSource::Url { url }
    } else {
        return Err(invalid(
            upath,
            "must be an http(s) URL or a base64 data URL",
        ));
    };
    Ok(ContentBlock::Image {
        source,
        extra: Extra::new(),
    })
}

/// An assistant message → its blocks (prior reasoning, text, tool calls) and its call ids.
fn assistant_blocks(
    mut m: Map<String, Value>,
    i: usize,
) -> Result<(Vec<ContentBlock>, Vec<String>), ApiError> {
    let mut blocks = Vec::new();
    // Prior reasoning as vLLM returns it (clients that keep it send it back).
    let reasoning = take(&mut m, "reasoning_content").or_else(|| take(&mut m, "reasoning"));
    if let Some(Value::String(r)) = reasoning.filter(|r| r.as_str().is_some_and(|r| !r.is_empty()))
    {
        blocks.push(ContentBlock::Thinking {
            thinking: r,
            signature: None,
            extra: Extra::new(),
        });
    }
    assistant_text(take(&mut m, "content"), i, &mut blocks)?;
    let ids = tool_uses(take(&mut m, "tool_calls"), i, &mut blocks)?;
    Ok((blocks, ids))
}

/// An assistant message's content (a string, `text` and `refusal` parts, or null) → text
/// blocks; empty texts are left out.
fn assistant_text(
    content: Option<Value>,
    i: usize,
    blocks: &mut Vec<ContentBlock>,
) -> Result<(), ApiError> {
    let path = format!("messages[{i}].content");
    match content {
        Some(Value::String(s)) if !s.is_empty() => blocks.push(ContentBlock::text(s)),
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            for (j, (kind, part)) in parts(items, &path)?.into_iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                let text = match kind.as_str() {
                    "text" => part_text(part, "text", &ppath)?,
                    "refusal" => part_text(part, "refusal", &ppath)?,
                    other => {
                        return Err(invalid(
                            format_args!("{ppath}.type"),
                            format!(
                            "assistant messages take `text` and `refusal` parts (got `{other}`)"
                        ),
                        ))
                    }
                };
                if !text.is_empty() {
                    blocks.push(ContentBlock::text(text));
                }
            }
        }
        Some(_) => return Err(invalid(path, "must be a string, an array of parts or null")),
    }
    Ok(())
}

/// An assistant message's `tool_calls` → `tool_use` blocks; returns their ids.
fn tool_uses(
    calls: Option<Value>,
    i: usize,
    blocks: &mut Vec<ContentBlock>,
) -> Result<Vec<String>, ApiError> {
    let calls = match calls {
        None => Vec::new(),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(invalid(
                format_args!("messages[{i}].tool_calls"),
                "must be an array",
            ))
        }
    };
    let mut ids = Vec::new();
    for (j, call) in calls.into_iter().enumerate() {
        let path = format!("messages[{i}].tool_calls[{j}]");
        let (id, name, input) = tool_call(call, &path)?;
        ids.push(id.clone());
        blocks.push(ContentBlock::ToolUse {
            id,
            name,
            input,
            extra: Extra::new(),
        });
    }
    Ok(ids)
}

/// One `tool_calls` entry → id, name and the arguments as a JSON object.
fn tool_call(call: Value, path: &str) -> Result<(String, String, Value), ApiError> {
    let Value::Object(mut call) = call else {
        return Err(invalid(path, "must be an object"));
    };
    let id = required(
        take(&mut call, "id"),
        format_args!("{path}.id"),
        "field required",
    )?;
    function_type(take(&mut call, "type"), path, "tool calls")?;
    let Some(Value::Object(mut function)) = take(&mut call, "function") else {
        return Err(invalid(format_args!("{path}.function"), "field required"));
    };
    let name = required(
        take(&mut function, "name"),
        format_args!("{path}.function.name"),
        "field required",
    )?;
    let apath = format!("{path}.function.arguments");
    let input = match take(&mut function, "arguments") {
        None => Value::Object(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err(invalid(apath, "must encode a JSON object")),
            Err(e) => {
                return Err(invalid(
                    apath,
                    format!("not valid JSON ({e}); tool call arguments must encode a JSON object"),
                ))
            }
        },
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(invalid(apath, "must be a string holding a JSON object")),
    };
    Ok((id, name, input))
}

// ---- answer ----

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match Stop::of(stop_reason) {
        Stop::Length => "length",
        Stop::ToolUse => "tool_calls",
        Stop::Refusal => "content_filter",
        Stop::Done => "stop",
    }
}

/// The usage as OpenAI reports it: cache reads and writes in `prompt_tokens`, reads also
/// in `cached_tokens`.
fn out_usage(usage: &Usage) -> OutUsage {
    let prompt = usage.prompt();
    let completion = usage.output();
    OutUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt.saturating_add(completion),
        prompt_tokens_details: CachedTokens {
            cached_tokens: usage.cache_read(),
        },
    }
}

#[derive(Debug, Serialize)]
struct OutUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
}

#[derive(Debug, Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

/// A tool call's input as OpenAI's `arguments` string.
fn arguments(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_owned(),
        v => v.to_string(),
    }
}

/// A whole Anthropic message (the JSON the proxy's Messages path answers with) → a
/// `chat.completion` object.
pub fn response(front: &ChatFront, msg: &Value) -> Value {
    let mut text: Option<String> = None;
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in msg["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text
                .get_or_insert_with(String::new)
                .push_str(block["text"].as_str().unwrap_or_default()),
            Some("thinking") => reasoning.push_str(block["thinking"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": block["id"],
                "type": "function",
                "function": {"name": block["name"], "arguments": arguments(&block["input"])},
            })),
            // redacted thinking, server tool blocks: nothing an OpenAI client can show.
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let usage = Usage::deserialize(&msg["usage"]).unwrap_or_default();
    json!({
        "id": front.id,
        "object": "chat.completion",
        "created": front.created,
        "model": front.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(msg["stop_reason"].as_str()),
            "logprobs": null,
        }],
        "usage": out_usage(&usage),
    })
}

// ---- stream ----

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// With `include_usage`: `null` on every chunk but the last (OpenAI's documented form).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a OutUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: (),
    finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

// Incoming Anthropic events: only what the conversion reads.

#[derive(Deserialize)]
struct MessageStartIn {
    message: MessageIn,
}

#[derive(Deserialize)]
struct MessageIn {
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct BlockStartIn {
    index: u64,
    content_block: BlockIn,
}

#[derive(Deserialize)]
struct BlockIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

/// A string borrowed from the event's text unless it has escapes.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct BlockDeltaIn<'a> {
    index: u64,
    #[serde(borrow)]
    delta: DeltaIn<'a>,
}

#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(default, borrow)]
    text: Option<Str<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Str<'a>>,
    #[serde(default, borrow)]
    partial_json: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct IndexIn {
    index: u64,
}

#[derive(Deserialize)]
struct MessageDeltaIn {
    #[serde(default)]
    delta: StopIn,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Default, Deserialize)]
struct StopIn {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEventIn {
    error: ErrorIn,
}

#[derive(Deserialize)]
struct ErrorIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

/// What an open Anthropic content block is.
#[derive(Debug)]
enum Block {
    Text,
    Thinking,
    Tool {
        /// The client's `tool_calls[].index`.
        index: usize,
        /// A non-empty `input` given whole in the block's start, sent as the arguments
        /// unless `input_json_delta`s follow (Anthropic's rule).
        whole_input: Option<String>,
        streamed: bool,
    },
    /// Server tool blocks and any newer kind: nothing for an OpenAI client.
    Other,
}

/// Anthropic SSE events → `chat.completion.chunk` SSE lines. Nothing is written after the
/// final `data: [DONE]` or an error chunk.
#[derive(Debug)]
pub struct ChatStream {
    front: ChatFront,
    /// The role chunk has been written.
    started: bool,
    /// The chunk with `finish_reason` has been written.
    finish_sent: bool,
    done: bool,
    /// Open blocks by Anthropic index (one at a time in practice; closed ones are removed).
    blocks: BTreeMap<u64, Block>,
    /// Tool calls started so far: the next call's `index`.
    tool_calls: usize,
    usage: Usage,
    stop_reason: Option<String>,
    /// Why the stream was ended with an error chunk, for the caller's log.
    failure: Option<ApiError>,
}

impl ChatStream {
    pub fn new(front: ChatFront) -> Self {
        Self {
            front,
            started: false,
            finish_sent: false,
            done: false,
            blocks: BTreeMap::new(),
            tool_calls: 0,
            usage: Usage::default(),
            stop_reason: None,
            failure: None,
        }
    }

    /// `[DONE]` or an error chunk has been written.
    pub fn finished(&self) -> bool {
        self.done
    }

    /// The error the client's stream was ended with, if any.
    pub fn failure(&self) -> Option<&ApiError> {
        self.failure.as_ref()
    }

    /// One Anthropic event (its `event:` name and `data:` JSON text); appends the client's
    /// bytes to `out`. A malformed event ends the stream with an error chunk.
    pub fn event(&mut self, name: &str, data: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let Err(e) = self.handle(name, data, out) {
            tracing::warn!(event = name, error = %e, "malformed event in a stream for a Chat Completions client");
            let err = ApiError::new(
                ErrorKind::Api,
                format!("malformed `{name}` event in the answer stream: {e}"),
            );
            self.fail(err, out);
        }
    }

    /// The Anthropic stream ended without `message_stop` (cut): end the client's stream with
    /// an error chunk.
    pub fn cut(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.fail(
            ApiError::new(
                ErrorKind::Api,
                "the answer's stream ended before it was complete",
            ),
            out,
        );
    }

    fn handle(&mut self, name: &str, data: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match name {
            "message_start" => {
                let ev: MessageStartIn = serde_json::from_str(data)?;
                if let Some(u) = ev.message.usage {
                    self.usage.update(u);
                }
                self.start(out);
            }
            "content_block_start" => {
                let ev: BlockStartIn = serde_json::from_str(data)?;
                self.start(out);
                self.block_start(ev, out);
            }
            "content_block_delta" => {
                let ev: BlockDeltaIn = serde_json::from_str(data)?;
                self.start(out);
                self.block_delta(ev, out);
            }
            "content_block_stop" => {
                let ev: IndexIn = serde_json::from_str(data)?;
                if let Some(Block::Tool {
                    index,
                    whole_input: Some(input),
                    streamed: false,
                }) = self.blocks.remove(&ev.index)
                {
                    self.write_delta(out, Delta::tool_arguments(index, &input));
                }
            }
            "message_delta" => {
                let ev: MessageDeltaIn = serde_json::from_str(data)?;
                if let Some(u) = ev.usage {
                    self.usage.update(u);
                }
                if ev.delta.stop_reason.is_some() {
                    self.stop_reason = ev.delta.stop_reason;
                }
                self.start(out);
                self.finish_chunk(out);
            }
            "message_stop" => {
                self.start(out);
                self.finish_chunk(out);
                if self.front.include_usage {
                    let usage = out_usage(&self.usage);
                    self.write_chunk(out, &[], Some(Some(&usage)));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
            "error" => {
                let ev: ErrorEventIn = serde_json::from_str(data)?;
                self.fail(api_error(&ev.error.kind, ev.error.message), out);
            }
            // `ping`, and event kinds newer than this code.
            _ => {}
        }
        Ok(())
    }

    fn block_start(&mut self, ev: BlockStartIn, out: &mut Vec<u8>) {
        let b = ev.content_block;
        let block = match b.kind.as_str() {
            "text" => {
                if let Some(t) = b.text.as_deref().filter(|t| !t.is_empty()) {
                    self.write_delta(out, Delta::content(t));
                }
                Block::Text
            }
            "thinking" => {
                if let Some(t) = b.thinking.as_deref().filter(|t| !t.is_empty()) {
                    self.write_delta(out, Delta::reasoning(t));
                }
                Block::Thinking
            }
            "tool_use" => {
                let index = self.tool_calls;
                self.tool_calls += 1;
                let id = b.id.unwrap_or_default();
                let name = b.name.unwrap_or_default();
                self.write_delta(
                    out,
                    Delta {
                        tool_calls: Some([ToolCallDelta {
                            index,
                            id: Some(&id),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(&name),
                                arguments: "",
                            },
                        }]),
                        ..Delta::default()
                    },
                );
                let whole_input = b
                    .input
                    .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                    .map(|i| i.to_string());
                Block::Tool {
                    index,
                    whole_input,
                    streamed: false,
                }
            }
            _ => Block::Other,
        };
        self.blocks.insert(ev.index, block);
    }

    fn block_delta(&mut self, ev: BlockDeltaIn, out: &mut Vec<u8>) {
        let d = ev.delta;
        match &*d.kind.0 {
            "text_delta" => {
                if let Some(t) = d.text.as_ref().filter(|t| !t.0.is_empty()) {
                    self.write_delta(out, Delta::content(&t.0));
                }
            }
            "thinking_delta" => {
                if let Some(t) = d.thinking.as_ref().filter(|t| !t.0.is_empty()) {
                    self.write_delta(out, Delta::reasoning(&t.0));
                }
            }
            "input_json_delta" => {
                let Some(Block::Tool {
                    index, streamed, ..
                }) = self.blocks.get_mut(&ev.index)
                else {
                    return;
                };
                *streamed = true;
                let index = *index;
                if let Some(p) = d.partial_json.as_ref().filter(|p| !p.0.is_empty()) {
                    self.write_delta(out, Delta::tool_arguments(index, &p.0));
                }
            }
            // signature_delta, citations_delta, …
            _ => {}
        }
    }

    /// The first chunk: the role, with empty content (as OpenAI and vLLM start).
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.write_delta(
            out,
            Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            },
        );
    }

    fn finish_chunk(&mut self, out: &mut Vec<u8>) {
        if self.finish_sent {
            return;
        }
        self.finish_sent = true;
        let choice = ChunkChoice {
            index: 0,
            delta: Delta::default(),
            logprobs: (),
            finish_reason: Some(finish_reason(self.stop_reason.as_deref())),
        };
        self.write_chunk(out, &[choice], self.null_usage());
    }

    fn fail(&mut self, err: ApiError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        out.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut *out, &err.openai_body())
            .expect("serializing to a Vec cannot fail");
        out.extend_from_slice(b"\n\n");
        self.done = true;
        self.failure = Some(err);
    }

    fn null_usage(&self) -> Option<Option<&'static OutUsage>> {
        self.front.include_usage.then_some(None)
    }

    fn write_delta(&self, out: &mut Vec<u8>, delta: Delta) {
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: (),
            finish_reason: None,
        };
        self.write_chunk(out, &[choice], self.null_usage());
    }

    fn write_chunk(
        &self,
        out: &mut Vec<u8>,
        choices: &[ChunkChoice],
        usage: Option<Option<&OutUsage>>,
    ) {
        let chunk = Chunk {
            id: &self.front.id,
            object: "chat.completion.chunk",
            created: self.front.created,
            model: &self.front.model,
            choices,
            usage,
        };
        out.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut *out, &chunk).expect("serializing to a Vec cannot fail");
        out.extend_from_slice(b"\n\n");
    }
}

impl<'a> Delta<'a> {
    fn content(text: &'a str) -> Self {
        Delta {
            content: Some(text),
            ..Delta::default()
        }
    }

    fn reasoning(text: &'a str) -> Self {
        Delta {
            reasoning_content: Some(text),
            ..Delta::default()
        }
    }

    fn tool_arguments(index: usize, arguments: &'a str) -> Self {
        Delta {
            tool_calls: Some([ToolCallDelta {
                index,
                id: None,
                kind: None,
                function: FunctionDelta {
                    name: None,
                    arguments,
                },
            }]),
            ..Delta::default()
        }
    }
}

/// An Anthropic error `type` (and message) as the `ApiError` it stands for, so the OpenAI
/// type and code come from the one mapping (`ApiError::openai_body`).
fn api_error(kind_name: &str, message: String) -> ApiError {
    let kind = match kind_name {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::Permission,
        "not_found_error" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_error" => ErrorKind::RateLimit,
        "overloaded_error" => ErrorKind::Overloaded,
        // `timeout_error` mid-stream is the server's timeout, not the client's upload.
        _ => ErrorKind::Api,
    };
    let message = if message.is_empty() {
        format!("the answer's stream ended with an error ({kind_name})")
    } else {
        message
    };
    ApiError::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::front::testkit::{
        self, block, error_event, feed, message_end, message_start, message_stop, ping, replay,
        text_block, thinking_block, tool_block, translated, Event,
    };
    use pretty_assertions::assert_eq;
    use switchyard_api::ThinkingStyle;

    fn convert(body: Value) -> (MessagesRequest, ChatFront) {
        request(body, "chatcmpl-1".into(), 1_700_000_000).unwrap()
    }

    fn refused(body: Value) -> String {
        let err = request(body, "chatcmpl-1".into(), 0).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        err.message
    }

    fn with_messages(messages: Value) -> Value {
        json!({"model": "qwen", "messages": messages})
    }

    /// The request the proxy would send an OpenAI-protocol backend for this one.
    fn backend_request(req: MessagesRequest) -> Value {
        testkit::backend_request(req, "served", ThinkingStyle::ChatTemplateKwargs)
    }

    fn tool_conversation() -> Value {
        json!({
            "model": "qwen-coder",
            "messages": [
                {"role": "system", "content": "You are a coding agent."},
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": "What is in src?", "name": "ana"},
                {"role": "assistant", "content": "Let me look.", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "list_dir", "arguments": "{\"path\": \"src\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "read_file", "arguments": "{\"path\":\"src/main.rs\",\"lines\":[1,20]}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "main.rs\nlib.rs"},
                {"role": "tool", "tool_call_id": "call_2",
                 "content": [{"type": "text", "text": "fn main() {}"}]},
                {"role": "user", "content": "Now summarise."}
            ],
            "tools": [
                {"type": "function", "function": {"name": "list_dir", "description": "List a directory",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
                {"type": "function", "function": {"name": "read_file", "strict": true}}
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": false,
            "max_completion_tokens": 2048,
            "max_tokens": 99,
            "temperature": 0.3,
            "top_p": 0.95,
            "stop": "<END>",
            "user": "user-42",
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    }

    #[test]
    fn multi_turn_tool_conversation_maps_to_messages() {
        let (req, front) = convert(tool_conversation());
        assert_eq!(
            front,
            ChatFront {
                id: "chatcmpl-1".into(),
                model: "qwen-coder".into(),
                created: 1_700_000_000,
                include_usage: true,
                stream: true,
            }
        );
        assert!(req.openai_params.is_empty(), "{:?}", req.openai_params);
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({
                "model": "qwen-coder",
                "system": "You are a coding agent.\n\nBe brief.",
                "max_tokens": 2048,
                "stream": true,
                "temperature": 0.3,
                "top_p": 0.95,
                "stop_sequences": ["<END>"],
                "metadata": {"user_id": "user-42"},
                "messages": [
                    {"role": "user", "content": "What is in src?"},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "call_1", "name": "list_dir", "input": {"path": "src"}},
                        {"type": "tool_use", "id": "call_2", "name": "read_file",
                         "input": {"path": "src/main.rs", "lines": [1, 20]}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "main.rs\nlib.rs"},
                        {"type": "tool_result", "tool_use_id": "call_2",
                         "content": [{"type": "text", "text": "fn main() {}"}]},
                        {"type": "text", "text": "Now summarise."}
                    ]}
                ],
                "tools": [
                    {"name": "list_dir", "description": "List a directory",
                     "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
                    {"name": "read_file", "description": null,
                     "input_schema": {"type": "object", "properties": {}}}
                ],
                "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}
            })
        );

        // And the backend gets a well-formed Chat Completions conversation back.
        let chat = backend_request(req);
        let roles: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "tool", "tool", "user"]
        );
        assert_eq!(
            chat["messages"][2]["tool_calls"][1]["function"]["arguments"],
            "{\"lines\":[1,20],\"path\":\"src/main.rs\"}"
        );
        assert_eq!(chat["parallel_tool_calls"], false);
        assert_eq!(chat["tool_choice"], "auto");
        assert_eq!(chat["stop"], json!(["<END>"]));
        assert_eq!(chat["max_tokens"], 2048);
    }

    #[test]
    fn system_messages_after_the_first_turn_stay_in_place() {
        let (req, _) = convert(with_messages(json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}},
                {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            // Between a call's results: placed after them, so the results stay one turn.
            {"role": "system", "content": "Results may be stale."},
            {"role": "tool", "tool_call_id": "c2", "content": "two"},
            {"role": "user", "content": "go on"},
            {"role": "developer", "content": "Answer in French."}
        ])));
        assert!(req.system.is_none());
        let m = serde_json::to_value(&req.messages).unwrap();
        assert_eq!(
            m,
            json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "c2", "name": "f", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
                    {"type": "tool_result", "tool_use_id": "c2", "content": "two"}]},
                {"role": "system", "content": "Results may be stale."},
                {"role": "user", "content": "go on"},
                {"role": "system", "content": "Answer in French."}
            ])
        );
        backend_request(req); // the backend translation accepts the pairing
    }

    #[test]
    fn prior_reasoning_and_refusal_parts_are_kept() {
        let (req, _) = convert(with_messages(json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "reasoning_content": "thinking it over",
             "content": [{"type": "text", "text": "Hello"}, {"type": "refusal", "refusal": "not that"}]},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "again"}
        ])));
        let m = serde_json::to_value(&req.messages).unwrap();
        assert_eq!(
            m[1]["content"],
            json!([
                {"type": "thinking", "thinking": "thinking it over"},
                {"type": "text", "text": "Hello"},
                {"type": "text", "text": "not that"}
            ])
        );
        assert_eq!(
            m.as_array().unwrap().len(),
            3,
            "the empty assistant message drops out"
        );
        let chat = backend_request(req);
        assert_eq!(chat["messages"][1]["reasoning_content"], "thinking it over");
    }

    #[test]
    fn images_become_base64_or_url_sources() {
        let (req, _) = convert(with_messages(json!([
            {"role": "user", "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.invalid/b.jpg"}},
                {"type": "image_url", "image_url": "data:image/webp;charset=x;base64,UklGRg=="}
            ]}
        ])));
        assert_eq!(
            serde_json::to_value(&req.messages[0].content).unwrap(),
            json!([
                {"type": "text", "text": "compare"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.invalid/b.jpg"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="}}
            ])
        );
        let chat = backend_request(req);
        assert_eq!(
            chat["messages"][0]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBORw0KGgo="
        );

        let bad = |url: &str| {
            refused(with_messages(json!([{"role": "user", "content": [
                {"type": "text", "text": "x"},
                {"type": "image_url", "image_url": {"url": url}}]}])))
        };
        assert!(bad("file:///etc/passwd")
            .starts_with("messages[0].content[1].image_url.url: must be an http(s) URL"));
        assert!(bad("data:image/png,rawbytes")
            .starts_with("messages[0].content[1].image_url.url: only base64 data URLs"));
        assert!(bad("data:;base64,AAAA")
            .starts_with("messages[0].content[1].image_url.url: only base64 data URLs"));
        assert_eq!(
            refused(with_messages(json!([{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "..", "format": "wav"}}]}]))),
            "messages[0].content[0].type: `input_audio` parts are not supported here (`text` and `image_url` are)"
        );
    }

    #[test]
    fn openai_only_parameters_go_to_openai_params() {
        let mut body = with_messages(json!([{"role": "user", "content": "hi"}]));
        let passed = json!({
            "seed": 7,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
            "logit_bias": {"50256": -100},
            "logprobs": true,
            "top_logprobs": 3,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "top_k": -1,
            "chat_template_kwargs": {"enable_thinking": false, "custom": 1},
            "min_tokens": 4,
        });
        for (k, v) in passed.as_object().unwrap() {
            body[k] = v.clone();
        }
        for (k, v) in [
            ("n", json!(1)),
            ("store", json!(true)),
            ("metadata", json!({"app": "x"})),
            ("service_tier", json!("auto")),
            ("prediction", json!({"type": "content", "content": "x"})),
            ("stream_options", json!({"include_usage": true})),
            ("frequency_penalty_null", Value::Null),
        ] {
            body[k] = v;
        }
        let (req, front) = convert(body);
        assert_eq!(Value::Object(req.openai_params.clone()), passed);
        assert!(
            !front.include_usage,
            "include_usage counts for streams only"
        );
        assert_eq!(req.top_k, None);
        assert_eq!(req.max_tokens, DEFAULT_MAX_TOKENS);
        assert_eq!(
            req.thinking.as_ref().map(|t| t.kind),
            Some(ThinkingKind::Disabled),
            "enable_thinking: false is read as the thinking switch"
        );
        let chat = backend_request(req);
        for k in [
            "seed",
            "response_format",
            "logit_bias",
            "min_p",
            "top_k",
            "min_tokens",
        ] {
            assert_eq!(chat[k], passed[k], "{k}");
        }
        for k in ["store", "metadata", "service_tier", "prediction", "n"] {
            assert!(chat.get(k).is_none(), "{k} must not reach the backend");
        }
        assert_eq!(chat["stream"], false);
    }

    #[test]
    fn token_limits_sampling_and_reasoning_effort() {
        let base = |extra: Value| {
            let mut b = with_messages(json!([{"role": "user", "content": "hi"}]));
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            convert(b).0
        };
        assert_eq!(base(json!({"max_tokens": 300})).max_tokens, 300);
        assert_eq!(
            base(json!({"max_tokens": 300, "max_completion_tokens": null})).max_tokens,
            300
        );
        assert_eq!(base(json!({"max_tokens": 1u64 << 40})).max_tokens, u32::MAX);
        assert_eq!(base(json!({"top_k": 20})).top_k, Some(20));
        assert_eq!(
            base(json!({"stop": ["a", "", "b"]})).stop_sequences,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(base(json!({"stop": []})).stop_sequences, None);

        let effort = |e: &str| {
            let r = base(json!({"reasoning_effort": e}));
            (
                r.thinking.map(|t| t.kind),
                r.output_config.and_then(|o| o.effort),
            )
        };
        assert_eq!(effort("none"), (Some(ThinkingKind::Disabled), None));
        assert_eq!(
            effort("minimal"),
            (Some(ThinkingKind::Adaptive), Some("low".into()))
        );
        assert_eq!(
            effort("high"),
            (Some(ThinkingKind::Adaptive), Some("high".into()))
        );
        let r = base(json!({"reasoning_effort": "medium"}));
        assert!(r.openai_params.is_empty());
        let chat = backend_request(r);
        assert_eq!(
            chat["chat_template_kwargs"],
            json!({"enable_thinking": true, "thinking": true})
        );
        assert!(base(json!({})).thinking.is_none());

        let bad = |extra: Value| {
            let mut b = with_messages(json!([{"role": "user", "content": "hi"}]));
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            refused(b)
        };
        assert_eq!(
            bad(json!({"max_completion_tokens": 0})),
            "max_completion_tokens: must be an integer of at least 1"
        );
        assert_eq!(
            bad(json!({"temperature": "hot"})),
            "temperature: must be a number"
        );
        assert_eq!(bad(json!({"stop": ["a", 1]})), "stop[1]: must be a string");
        assert_eq!(
            bad(json!({"reasoning_effort": "extreme"})),
            "reasoning_effort: expected one of none, minimal, low, medium, high, xhigh (got `extreme`)"
        );
    }

    #[test]
    fn tool_choice_variants_and_legacy_functions() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let choice = |c: Value| {
            let mut b = with_messages(json!([{"role": "user", "content": "hi"}]));
            b["tools"] = tools.clone();
            b["tool_choice"] = c;
            serde_json::to_value(convert(b).0.tool_choice).unwrap()
        };
        assert_eq!(choice(json!("auto")), json!({"type": "auto"}));
        assert_eq!(choice(json!("none")), json!({"type": "none"}));
        assert_eq!(choice(json!("required")), json!({"type": "any"}));
        assert_eq!(
            choice(json!({"type": "function", "function": {"name": "f"}})),
            json!({"type": "tool", "name": "f"})
        );

        // Without tools a choice means nothing.
        let (req, _) = convert(json!({"model": "m", "tool_choice": "required",
            "parallel_tool_calls": false, "messages": [{"role": "user", "content": "hi"}]}));
        assert!(req.tool_choice.is_none() && req.tools.is_none());

        let (req, _) = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "functions": [{"name": "g", "description": "G", "parameters": {"type": "object"}}],
            "function_call": {"name": "g"}}),
        );
        assert_eq!(
            serde_json::to_value((&req.tools, &req.tool_choice)).unwrap(),
            json!([[{"name": "g", "description": "G", "input_schema": {"type": "object"}}],
                   {"type": "tool", "name": "g"}])
        );

        let mut b = with_messages(json!([{"role": "user", "content": "hi"}]));
        b["tools"] = json!([{"type": "custom", "custom": {"name": "x"}}]);
        assert_eq!(
            refused(b),
            "tools[0].type: only `function` tools are supported (got \"custom\")"
        );
        let mut b = with_messages(json!([{"role": "user", "content": "hi"}]));
        b["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": "{}"}}]);
        assert_eq!(
            refused(b),
            "tools[0].function.parameters: must be a JSON Schema object"
        );
    }

    #[test]
    fn more_than_one_choice_is_refused() {
        let mut b = with_messages(json!([{"role": "user", "content": "hi"}]));
        b["n"] = json!(3);
        assert_eq!(
            refused(b),
            "n: only one choice per request is served here (n = 3); send 3 requests instead"
        );
    }

    #[test]
    fn bad_tool_arguments_are_refused_with_their_path() {
        let conversation = |arguments: Value| {
            with_messages(json!([
                {"role": "system", "content": "s"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "done"}
            ]))
        };
        let msg = refused(conversation(json!("{\"path\": \"src\"")));
        assert!(
            msg.starts_with("messages[2].tool_calls[0].function.arguments: not valid JSON (EOF while parsing an object"),
            "{msg}"
        );
        assert_eq!(
            refused(conversation(json!("[1, 2]"))),
            "messages[2].tool_calls[0].function.arguments: must encode a JSON object"
        );
        // An object sent as is, and an empty string (a call without arguments), are taken.
        for (args, input) in [(json!({"a": 1}), json!({"a": 1})), (json!(""), json!({}))] {
            let (req, _) = convert(conversation(args));
            assert_eq!(
                serde_json::to_value(&req.messages[1].content).unwrap()[0]["input"],
                input
            );
        }
    }

    #[test]
    fn malformed_conversations_are_refused_with_their_path() {
        let cases = [
            (json!({"messages": [{"role": "user", "content": "hi"}]}), "model: field required"),
            (json!({"model": "m"}), "messages: field required"),
            (json!({"model": "m", "messages": []}), "messages: at least one message is required"),
            (
                with_messages(json!([{"role": "robot", "content": "x"}])),
                "messages[0].role: unknown role `robot` (expected system, developer, user, assistant or tool)",
            ),
            (
                with_messages(json!([{"role": "user", "content": "hi"},
                    {"role": "function", "name": "f", "content": "x"}])),
                "messages[1].role: the legacy `function` role is not supported; answer `tool_calls` with `tool` messages",
            ),
            (
                with_messages(json!([{"role": "user", "content": "hi"},
                    {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}])),
                "messages[1].function_call: legacy function calls are not supported; send `tool_calls`",
            ),
            (
                with_messages(json!([{"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                        {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "x"},
                    {"role": "user", "content": "and?"}])),
                "messages[1].tool_calls: an assistant message with `tool_calls` must be followed by `tool` messages answering each `tool_call_id`; unanswered: c2",
            ),
            (
                with_messages(json!([{"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "c9", "content": "x"}])),
                "messages[1].tool_call_id: `c9` answers no tool call of the preceding assistant message (a `tool` message must follow the assistant message whose `tool_calls` it answers)",
            ),
            (
                with_messages(json!([{"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}])),
                "messages[1].tool_calls[0].id: field required",
            ),
            (
                with_messages(json!([{"role": "user"}])),
                "messages[0].content: field required",
            ),
            (json!([1, 2]), "the request body must be a JSON object"),
        ];
        for (body, want) in cases {
            assert_eq!(refused(body), want);
        }
        // A last assistant message may keep its calls unanswered (a prefill).
        convert(with_messages(json!([{"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}])));
    }

    fn front(include_usage: bool) -> ChatFront {
        ChatFront {
            id: "chatcmpl-abc".into(),
            model: "my-model".into(),
            created: 1_700_000_000,
            include_usage,
            stream: true,
        }
    }

    #[test]
    fn response_maps_text_thinking_tool_use_and_usage() {
        let msg = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "served",
            "content": [
                {"type": "thinking", "thinking": "The user wants ", "signature": ""},
                {"type": "thinking", "thinking": "a file.", "signature": ""},
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.rs"}},
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 40,
                      "cache_creation_input_tokens": 5, "cache_read_input_tokens": 900}
        });
        assert_eq!(
            response(&front(false), &msg),
            json!({
                "id": "chatcmpl-abc",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "my-model",
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Reading it.",
                        "reasoning_content": "The user wants a file.",
                        "tool_calls": [
                            {"id": "toolu_1", "type": "function",
                             "function": {"name": "read_file", "arguments": "{\"path\":\"a.rs\"}"}},
                            {"id": "toolu_2", "type": "function",
                             "function": {"name": "now", "arguments": "{}"}}
                        ]
                    },
                    "finish_reason": "tool_calls",
                    "logprobs": null
                }],
                "usage": {"prompt_tokens": 1005, "completion_tokens": 40, "total_tokens": 1045,
                          "prompt_tokens_details": {"cached_tokens": 900}}
            })
        );
    }

    #[test]
    fn response_without_text_has_null_content_and_each_finish_reason() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            let msg = json!({"content": [], "stop_reason": stop,
                "usage": {"input_tokens": 3, "output_tokens": 0}});
            let r = response(&front(false), &msg);
            assert_eq!(r["choices"][0]["finish_reason"], finish, "{stop}");
            assert_eq!(
                r["choices"][0]["message"],
                json!({"role": "assistant", "content": null})
            );
            assert_eq!(
                r["usage"],
                json!({"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3,
                       "prompt_tokens_details": {"cached_tokens": 0}})
            );
        }
    }

    /// `data:` lines → JSON values (`[DONE]` as the string).
    fn data_lines(out: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
        text.split_terminator("\n\n")
            .map(|frame| {
                let data = frame.strip_prefix("data: ").expect(frame);
                if data == "[DONE]" {
                    Value::String(data.into())
                } else {
                    serde_json::from_str(data).unwrap()
                }
            })
            .collect()
    }

    /// Feeds `(event name, data)` pairs and returns the chunks written.
    fn run(stream: &mut ChatStream, events: &[(&str, Value)]) -> Vec<Value> {
        data_lines(&feed(stream, events))
    }

    fn realistic_events() -> Vec<Event> {
        [
            vec![message_start(50, 200), ping()],
            thinking_block(0, &["Two files."]),
            text_block(1, &["Reading \"both\"", ".\n"]),
            tool_block(2, "toolu_a", "read", &["", "{\"path\": \"a", ".rs\"}"]),
            tool_block(3, "toolu_b", "read", &["{\"path\":", " \"b.rs\"}"]),
            message_end("tool_use", 50, 31, 200),
        ]
        .concat()
    }

    /// A chunk as the client should see it.
    fn expected(delta: Value, finish: Value, include_usage: bool) -> Value {
        let mut c = json!({"id": "chatcmpl-abc", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": "my-model",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    fn expected_sequence(include_usage: bool) -> Vec<Value> {
        let d = |delta: Value| expected(delta, Value::Null, include_usage);
        let mut want = vec![
            d(json!({"role": "assistant", "content": ""})),
            d(json!({"reasoning_content": "Two files."})),
            d(json!({"content": "Reading \"both\""})),
            d(json!({"content": ".\n"})),
            d(
                json!({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                "function": {"name": "read", "arguments": ""}}]}),
            ),
            d(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\": \"a"}}]})),
            d(json!({"tool_calls": [{"index": 0, "function": {"arguments": ".rs\"}"}}]})),
            d(
                json!({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                "function": {"name": "read", "arguments": ""}}]}),
            ),
            d(json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"path\":"}}]})),
            d(json!({"tool_calls": [{"index": 1, "function": {"arguments": " \"b.rs\"}"}}]})),
            expected(json!({}), json!("tool_calls"), include_usage),
        ];
        if include_usage {
            want.push(
                json!({"id": "chatcmpl-abc", "object": "chat.completion.chunk",
                "created": 1_700_000_000, "model": "my-model", "choices": [],
                "usage": {"prompt_tokens": 250, "completion_tokens": 31, "total_tokens": 281,
                          "prompt_tokens_details": {"cached_tokens": 200}}}),
            );
        }
        want.push(json!("[DONE]"));
        want
    }

    #[test]
    fn stream_gives_the_exact_chunk_sequence_with_usage() {
        let mut s = ChatStream::new(front(true));
        assert_eq!(run(&mut s, &realistic_events()), expected_sequence(true));
        assert!(s.finished() && s.failure().is_none());
        // Nothing after [DONE].
        assert!(run(&mut s, &realistic_events()[5..7]).is_empty());
        let mut out = Vec::new();
        s.cut(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn stream_gives_the_exact_chunk_sequence_without_usage() {
        let mut s = ChatStream::new(front(false));
        assert_eq!(run(&mut s, &realistic_events()), expected_sequence(false));
    }

    #[test]
    fn error_event_mid_stream_ends_the_stream_with_an_error_chunk() {
        let mut events = realistic_events()[..8].to_vec();
        events.push(error_event(
            "overloaded_error",
            "no token from the backend within 30000 ms",
        ));
        events.extend(realistic_events()[8..].iter().cloned());
        let mut s = ChatStream::new(front(true));
        let chunks = run(&mut s, &events);
        assert_eq!(
            chunks.len(),
            5,
            "role, reasoning, two texts, error: {chunks:#?}"
        );
        assert_eq!(
            chunks[4],
            json!({"error": {"message": "no token from the backend within 30000 ms",
                "type": "server_error", "param": null, "code": "overloaded"}})
        );
        assert!(s.finished());
        assert_eq!(s.failure().map(|e| e.kind), Some(ErrorKind::Overloaded));

        for (kind, want) in [
            (
                "invalid_request_error",
                json!(["invalid_request_error", null]),
            ),
            (
                "rate_limit_error",
                json!(["rate_limit_error", "rate_limit_exceeded"]),
            ),
            ("api_error", json!(["server_error", null])),
            ("something_new", json!(["server_error", null])),
        ] {
            let mut s = ChatStream::new(front(false));
            let c = run(&mut s, &[error_event(kind, "m")]);
            assert_eq!(
                c.len(),
                1,
                "{kind}: no role chunk is needed before an error"
            );
            assert_eq!(
                json!([c[0]["error"]["type"], c[0]["error"]["code"]]),
                want,
                "{kind}"
            );
        }
    }

    #[test]
    fn malformed_events_and_cuts_end_the_stream_with_an_error_chunk() {
        let mut s = ChatStream::new(front(false));
        let mut out = Vec::new();
        s.event(
            "message_start",
            &realistic_events()[0].1.to_string(),
            &mut out,
        );
        s.event(
            "content_block_delta",
            "{\"index\": 0, \"delta\": {\"ty",
            &mut out,
        );
        s.event("message_stop", "{}", &mut out);
        let chunks = data_lines(&out);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1]["error"]["type"], "server_error");
        assert!(chunks[1]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed `content_block_delta` event in the answer stream: EOF"));

        let mut s = ChatStream::new(front(true));
        let mut events = realistic_events();
        events.truncate(12);
        let chunks = run(&mut s, &events);
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["delta"]["tool_calls"][0]["index"],
            0
        );
        let mut out = Vec::new();
        s.cut(&mut out);
        assert_eq!(
            data_lines(&out),
            vec![
                json!({"error": {"message": "the answer's stream ended before it was complete",
                "type": "server_error", "param": null, "code": null}})
            ]
        );
    }

    #[test]
    fn a_tool_input_given_whole_in_the_block_start_is_sent_as_its_arguments() {
        let mut s = ChatStream::new(front(false));
        let whole = json!({"type": "tool_use", "id": "t", "name": "f", "input": {"q": 1}});
        let mut events = block(0, whole, vec![]);
        events.push(message_stop());
        let chunks = run(&mut s, &events);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            chunks[2]["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":1}"}}]})
        );
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[4], json!("[DONE]"));
    }

    #[test]
    fn streamed_tool_arguments_reassemble_the_original_input() {
        // A backend's tool calls, split at awkward places, through the proxy's own
        // OpenAI → Anthropic stream translation and then back out to the client.
        let inputs = [
            json!({"command": "grep -rn \"fn main\" src/ | head -n 5", "timeout": 30}),
            json!({"path": "src/lib.rs", "edits": [{"old": "a\tb", "new": "ü 🙂 \\n"}]}),
        ];
        let mut chunks = Vec::new();
        for (k, input) in inputs.iter().enumerate() {
            let args = input.to_string();
            let cut = args.len() / 3;
            let cut = (cut..).find(|&i| args.is_char_boundary(i)).unwrap();
            let pieces = [&args[..cut], &args[cut..]];
            for (p, piece) in pieces.iter().enumerate() {
                let mut call = json!({"index": k, "function": {"arguments": piece}});
                if p == 0 {
                    call["id"] = json!(format!("call_{k}"));
                    call["type"] = json!("function");
                    call["function"]["name"] = json!("tool");
                }
                chunks.push(
                    json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]},
                    "finish_reason": null}]}),
                );
            }
        }
        chunks.push(
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20}}),
        );
        let sse = translated("served", 10, chunks);
        let chunks = data_lines(&replay(&mut ChatStream::new(front(true)), &sse));
        let mut args = vec![String::new(); inputs.len()];
        let mut ids = vec![Value::Null; inputs.len()];
        for c in &chunks {
            for call in c["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let k = call["index"].as_u64().unwrap() as usize;
                if !call["id"].is_null() {
                    ids[k] = call["id"].clone();
                }
                args[k].push_str(call["function"]["arguments"].as_str().unwrap());
            }
        }
        for (k, input) in inputs.iter().enumerate() {
            let parsed: Value = serde_json::from_str(&args[k]).unwrap();
            assert_eq!(&parsed, input);
            assert_eq!(ids[k], json!(format!("call_{k}")));
        }
        let n = chunks.len();
        assert_eq!(chunks[n - 3]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[n - 2]["usage"]["completion_tokens"], 20);
        assert_eq!(chunks[n - 1], json!("[DONE]"));
    }
}
