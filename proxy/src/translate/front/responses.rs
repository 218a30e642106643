//! `POST /v1/responses` in front: OpenAI's Responses API (the protocol of the Codex CLI) into the
//! Messages request, and the Anthropic answer (a whole message, or the SSE events the proxy
//! produces) back out as a Response object or the Responses event stream. Pure.
//!
//! Request:
//! - `input`: a string (one user message) or items. Messages (`type: "message"`, or no `type` with
//!   a `role`): `user` and `assistant` become turns; `developer`/`system` messages before the first
//!   turn join `instructions` in the system prompt (Codex sends no `instructions`: its system
//!   prompt is the first `developer` item, see `fixtures/codex/README.md`), later ones stay in
//!   place as `role: system` messages (the proxy's system-message placement applies).
//!   `function_call`, `custom_tool_call` (input `{"input": <text>}`) and `local_shell_call` (input:
//!   the exec action) become assistant `tool_use` blocks (id = `call_id`); their `*_output` items
//!   user `tool_result` blocks. Consecutive items of one role are one turn; tool results lead their
//!   turn. `reasoning` items become assistant `thinking` blocks (text: the summaries, else the
//!   `reasoning_text` content; signature: `encrypted_content`), so reasoning of earlier tool calls
//!   reaches templates that keep it (gpt-oss). `web_search_call` items are dropped (the search ran
//!   on OpenAI's side; nothing here can use them). Any other item type, and `item_reference` (no
//!   stored items), is a 400 naming `input[i]`.
//! - No response is stored: `previous_response_id`, `conversation`, stored `prompt`s and
//!   `background` are refused (400) with a request to send the whole conversation. Codex sends the
//!   whole history over HTTP (`store: false`; `previous_response_id` exists only on its WebSocket
//!   transport). `store: true` is accepted, nothing is stored, and the answer says `store: false`.
//!   `include` is read for `reasoning.encrypted_content` only.
//! - `tools`: `function` (flat: `name`, `description`, `parameters`) as they are; `custom`
//!   (freeform, Codex's `apply_patch`) as a function taking `{"input": string}` whose description
//!   carries the grammar; `namespace` (Codex's groups: `multi_agent_v1`, MCP servers) flattened to
//!   `<namespace><name>` (`__` between them unless the namespace ends in `_`); `local_shell` as a
//!   function `local_shell` taking the exec action. Hosted tools (`web_search*`, `file_search`,
//!   `computer*`, `code_interpreter`, `image_generation`, `mcp`, `tool_search`) run on OpenAI's
//!   servers and cannot run behind vLLM: dropped. `defer_loading` is ignored (the tool is offered
//!   at once).
//! - `tool_choice` `auto`/`none`/`required`/`{"type": "function"|"custom", "name"}`/
//!   `allowed_tools` (its mode); `parallel_tool_calls: false` → `disable_parallel_tool_use`.
//! - `max_output_tokens` → `max_tokens`, [`DEFAULT_MAX_OUTPUT_TOKENS`] when absent (Codex never
//!   sends it; the context fit lowers it to what the window holds). `temperature`, `top_p` as they
//!   are. `reasoning`: absent → thinking off (Anthropic's default); present → adaptive thinking
//!   with `effort` as `output_config.effort` (`minimal` → `low`), `effort: "none"` → thinking
//!   disabled. (Codex sends `reasoning: {"summary": "auto"}` for models it does not know, plus
//!   `effort` when configured: reasoning is on unless `model_reasoning_effort = "none"`.)
//!   `text.format` `json_schema`/`json_object` → the Chat Completions `response_format`.
//!   `metadata.user_id` (session affinity, vLLM's `user`) ← `prompt_cache_key` (Codex: the
//!   conversation id), else `safety_identifier`, else `user`.
//!
//! Answer: `thinking` → a `reasoning` item whose summary is the thinking text (Codex shows
//! summaries, and sends them back; it drops `reasoning_text` content when it replays reasoning),
//! with `encrypted_content` = the signature when asked for and not empty; `text` → a `message` with
//! one `output_text`; `tool_use` → `function_call` (custom tools: `custom_tool_call` with the
//! `input` text; `local_shell`: `local_shell_call`; namespaced tools carry `namespace`).
//! `max_tokens` and window stops → `incomplete` (`max_output_tokens`), the last item `incomplete`;
//! `refusal` → `incomplete` (`content_filter`). Usage: `input_tokens` = input + cache reads + cache
//! writes, `cached_tokens` = cache reads, `cache_write_tokens` = cache writes, `reasoning_tokens` 0
//! (not reported by the backends).
//!
//! Stream: `response.created`, `response.in_progress`, then per item `output_item.added`, its part
//! and delta events, `output_item.done`, and `response.completed` (or `.incomplete`) with every
//! item and the usage. An item's `output_item.done` waits for the next block or the stop reason (it
//! carries the item's final status), so a failed answer never hands a client a tool call to run.
//! Failures: `error` then `response.failed` (`server_error`, retried by Codex;
//! `context_length_exceeded` for "prompt is too long", which Codex reports as the context window
//! being full; `rate_limit_exceeded`), nothing after.

use super::{Stop, Usage};
use crate::error::ApiError;
use crate::protocol::anthropic::{
    Content, ContentBlock, Extra, ImageSource, Message, MessagesRequest, Metadata, OutputConfig,
    Role, SystemPrompt, Thinking, ThinkingKind, Tool, ToolChoice,
};
use crate::translate::stream::write_sse;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

/// `max_tokens` when the client sends no `max_output_tokens` (Claude Code's usual figure; the
/// context fit lowers it to the window's rest).
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 32_000;

/// Tools that run on OpenAI's servers: nothing behind the proxy can run them.
const HOSTED_TOOLS: &[&str] = &[
    "file_search",
    "computer",
    "computer_use",
    "computer_use_preview",
    "code_interpreter",
    "image_generation",
    "mcp",
    "tool_search",
];

/// How a freeform tool's description ends: the model calls it as a function.
const CUSTOM_NOTE: &str = "Call this tool as a function: pass its raw input text, unchanged, \
                           as the string argument `input`.";

/// The tool a `local_shell` declaration becomes.
const LOCAL_SHELL: &str = "local_shell";

/// What the answer needs from the request: ids, the client's model and the fields a Response
/// object repeats.
#[derive(Debug, Clone)]
pub struct ResponsesFront {
    /// `resp_…`, chosen by the caller.
    pub id: String,
    /// The model the client asked for (echoed, whatever the route serves).
    pub model: String,
    pub created_at: u64,
    pub stream: bool,
    /// Request fields every Response object repeats (`instructions`, `tools`, `tool_choice`,
    /// `parallel_tool_calls`, `temperature`, `top_p`, `max_output_tokens`, `reasoning`,
    /// `text`, `metadata`, `store`, …), as the client sent them.
    pub echo: Map<String, Value>,
    /// `include` asked for `reasoning.encrypted_content`.
    pub encrypted_reasoning: bool,
    names: ToolNames,
}

/// Tool names whose calls go back as something other than a plain `function_call`.
#[derive(Debug, Clone, Default)]
struct ToolNames {
    /// Freeform tools: their calls are `custom_tool_call`s with the `input` text.
    custom: HashSet<String>,
    /// Flattened name → (namespace, name inside it).
    namespaced: HashMap<String, (String, String)>,
    /// The client declared `local_shell`.
    local_shell: bool,
}

impl ToolNames {
    fn kind(&self, name: &str) -> Kind {
        if self.custom.contains(name) {
            Kind::Custom
        } else if self.local_shell && name == LOCAL_SHELL {
            Kind::LocalShell
        } else {
            Kind::Function
        }
    }

    /// The call's name and namespace, as the client declared them.
    fn split<'a>(&'a self, flat: &'a str) -> (&'a str, Option<&'a str>) {
        match self.namespaced.get(flat) {
            Some((ns, name)) => (name, Some(ns)),
            None => (flat, None),
        }
    }
}

fn invalid(path: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("{path}: {message}"))
}

fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(&format!("{path}{key}"), "expected a string")),
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, ApiError> {
    opt_str(obj, key, path)?.ok_or_else(|| invalid(&format!("{path}{key}"), "field required"))
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(key, "expected a boolean")),
    }
}

fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(key, "expected a number")),
    }
}

fn present(obj: &Map<String, Value>, key: &str) -> bool {
    obj.get(key).is_some_and(|v| !v.is_null())
}

/// A client's `POST /v1/responses` body → the Messages request, and what its answer needs.
/// Fields are checked in a fixed order, so the first of several mistakes is the one named.
pub fn request(
    body: Value,
    id: String,
    created_at: u64,
) -> Result<(MessagesRequest, ResponsesFront), ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid("request body: expected a JSON object"));
    };
    refuse_stored(&body)?;
    let model = req_str(&body, "model", "")?.to_owned();
    let stream = opt_bool(&body, "stream")?.unwrap_or(false);
    let parallel = opt_bool(&body, "parallel_tool_calls")?;
    let temperature = opt_f64(&body, "temperature")?;
    let top_p = opt_f64(&body, "top_p")?;
    let max_tokens = max_output_tokens(&body)?;
    let encrypted_reasoning = encrypted_reasoning(&body)?;
    let (thinking, output_config) = reasoning(body.get("reasoning"))?;
    let mut openai_params = Map::new();
    if let Some(format) = text_format(body.get("text"))? {
        openai_params.insert("response_format".into(), format);
    }
    let metadata = session_user(&body)?;
    let mut names = ToolNames::default();
    let (tools, tool_choice) = tool_fields(&body, parallel, &mut names)?;
    let (system, messages) = conversation(&mut body)?;
    let echo = echo(body, parallel);

    let req = MessagesRequest {
        model: model.clone(),
        messages,
        system: system.map(SystemPrompt::Text),
        max_tokens,
        stream,
        temperature,
        top_p,
        top_k: None,
        stop_sequences: None,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        thinking,
        metadata,
        output_config,
        extra: Extra::new(),
        openai_params,
    };
    let front = ResponsesFront {
        id,
        model,
        created_at,
        stream,
        echo,
        encrypted_reasoning,
        names,
    };
    Ok((req, front))
}

/// Fields that need stored responses, conversations or prompts, or a background run: none
/// exist here, so each is refused with what to send instead.
fn refuse_stored(body: &Map<String, Value>) -> Result<(), ApiError> {
    for key in ["previous_response_id", "conversation"] {
        if present(body, key) {
            return Err(invalid(
                key,
                "this gateway stores no responses or conversations; \
                 send the whole conversation in `input` (with `store: false`)",
            ));
        }
    }
    if present(body, "prompt") {
        return Err(invalid(
            "prompt",
            "stored prompts are not available on this gateway; send `instructions` and `input`",
        ));
    }
    if opt_bool(body, "background")? == Some(true) {
        return Err(invalid(
            "background",
            "background responses are not supported (nothing is stored); use `stream`",
        ));
    }
    Ok(())
}

/// `max_output_tokens` → `max_tokens`; [`DEFAULT_MAX_OUTPUT_TOKENS`] when absent.
fn max_output_tokens(body: &Map<String, Value>) -> Result<u32, ApiError> {
    match body.get("max_output_tokens") {
        None | Some(Value::Null) => Ok(DEFAULT_MAX_OUTPUT_TOKENS),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid("max_output_tokens", "expected a positive integer")),
    }
}

/// Whether `include` asks for `reasoning.encrypted_content` (the only entry read).
fn encrypted_reasoning(body: &Map<String, Value>) -> Result<bool, ApiError> {
    match body.get("include") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Array(items)) => Ok(items
            .iter()
            .any(|v| v.as_str() == Some("reasoning.encrypted_content"))),
        Some(_) => Err(invalid("include", "expected an array of strings")),
    }
}

/// The session's user id for affinity (`metadata.user_id`, vLLM's `user`):
/// `prompt_cache_key` (Codex: the conversation id), else `safety_identifier`, else `user`;
/// each must be a string if sent.
fn session_user(body: &Map<String, Value>) -> Result<Option<Metadata>, ApiError> {
    let user = ["prompt_cache_key", "safety_identifier", "user"]
        .into_iter()
        .map(|key| opt_str(body, key, ""))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty());
    Ok(user.map(|user_id| Metadata {
        user_id: Some(user_id.to_owned()),
        extra: Extra::new(),
    }))
}

/// `tools` and `tool_choice` (a choice without tools means nothing and is dropped).
fn tool_fields(
    body: &Map<String, Value>,
    parallel: Option<bool>,
    names: &mut ToolNames,
) -> Result<(Vec<Tool>, Option<ToolChoice>), ApiError> {
    let tools = tools(body.get("tools"), names)?;
    let tool_choice = match tools.is_empty() {
        true => None,
        false => tool_choice(body.get("tool_choice"), parallel)?,
    };
    Ok((tools, tool_choice))
}

/// `instructions` and `input` → the system prompt and the turns (`input` is taken out of
/// `body`: it is not echoed, and can be large).
fn conversation(body: &mut Map<String, Value>) -> Result<(Option<String>, Vec<Message>), ApiError> {
    let mut turns = Turns::default();
    if let Some(instructions) = opt_str(body, "instructions", "")? {
        if !instructions.is_empty() {
            turns.system.push(instructions.to_owned());
        }
    }
    match body.remove("input") {
        None | Some(Value::Null) => return Err(invalid("input", "field required")),
        Some(text @ Value::String(_)) => turns.push(Role::User, content_blocks("input", text)?),
        Some(Value::Array(items)) => {
            let mut calls = Calls::default();
            for (i, item) in items.into_iter().enumerate() {
                input_item(i, item, &mut turns, &mut calls)?;
            }
            calls.all_answered()?;
        }
        Some(_) => return Err(invalid("input", "expected a string or an array of items")),
    }
    let (system, messages) = turns.finish();
    if messages.is_empty() {
        return Err(invalid(
            "input",
            "no user or assistant message (at least one is required)",
        ));
    }
    Ok((system, messages))
}

/// The request fields every Response object repeats, as the client sent them (defaults for
/// the absent ones), and the fixed values of what this gateway does not do.
fn echo(mut body: Map<String, Value>, parallel: Option<bool>) -> Map<String, Value> {
    let mut echo = Map::new();
    for key in [
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "user",
        "prompt_cache_key",
        "safety_identifier",
    ] {
        echo.insert(key.into(), body.remove(key).unwrap_or(Value::Null));
    }
    let keep = |v: Option<Value>, default: Value| v.filter(|v| !v.is_null()).unwrap_or(default);
    echo.insert("tools".into(), keep(body.remove("tools"), json!([])));
    echo.insert(
        "tool_choice".into(),
        keep(body.remove("tool_choice"), json!("auto")),
    );
    echo.insert(
        "text".into(),
        keep(body.remove("text"), json!({"format": {"type": "text"}})),
    );
    echo.insert("metadata".into(), keep(body.remove("metadata"), json!({})));
    echo.insert(
        "parallel_tool_calls".into(),
        json!(parallel.unwrap_or(true)),
    );
    echo.insert("previous_response_id".into(), Value::Null);
    echo.insert("store".into(), json!(false));
    echo.insert("background".into(), json!(false));
    echo.insert("truncation".into(), json!("disabled"));
    echo
}

/// `reasoning` → Anthropic thinking and effort (see the module documentation).
fn reasoning(value: Option<&Value>) -> Result<(Option<Thinking>, Option<OutputConfig>), ApiError> {
    let obj = match value {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(Value::Object(obj)) => obj,
        Some(_) => return Err(invalid("reasoning", "expected an object")),
    };
    let thinking = |kind| Thinking {
        kind,
        budget_tokens: None,
        extra: Extra::new(),
    };
    let effort = match opt_str(obj, "effort", "reasoning.")? {
        None => None,
        Some("none") => return Ok((Some(thinking(ThinkingKind::Disabled)), None)),
        Some("minimal" | "low") => Some("low"),
        Some(e @ ("medium" | "high" | "xhigh")) => Some(e),
        Some(other) => {
            return Err(invalid(
                "reasoning.effort",
                format!("expected none, minimal, low, medium, high or xhigh, got `{other}`"),
            ))
        }
    };
    let config = effort.map(|e| OutputConfig {
        effort: Some(e.to_owned()),
        extra: Extra::new(),
    });
    Ok((Some(thinking(ThinkingKind::Adaptive)), config))
}

/// `text.format` → the Chat Completions `response_format`, when it asks for JSON.
fn text_format(value: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(format) = value.and_then(|t| t.get("format")).filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let Value::Object(format) = format else {
        return Err(invalid("text.format", "expected an object"));
    };
    match req_str(format, "type", "text.format.")? {
        "text" => Ok(None),
        "json_object" => Ok(Some(json!({"type": "json_object"}))),
        "json_schema" => {
            let schema = format
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| invalid("text.format.schema", "expected a JSON schema object"))?;
            let mut inner = Map::new();
            let name = opt_str(format, "name", "text.format.")?.unwrap_or("response");
            inner.insert("name".into(), json!(name));
            inner.insert("schema".into(), schema.clone());
            for key in ["strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    inner.insert(key.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": inner})))
        }
        other => Err(invalid(
            "text.format.type",
            format!("expected text, json_schema or json_object, got `{other}`"),
        )),
    }
}

/// A namespaced tool's name as the model sees it.
fn flat_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() || namespace.ends_with('_') {
        format!("{namespace}{name}")
    } else {
        format!("{namespace}__{name}")
    }
}

/// `tools` → the Messages tools; hosted tools are dropped, and the names whose calls go back
/// as something other than `function_call` are noted in `names`.
fn tools(value: Option<&Value>, names: &mut ToolNames) -> Result<Vec<Tool>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("tools", "expected an array")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let path = format!("tools[{i}]");
        let Value::Object(t) = t else {
            return Err(invalid(&path, "expected an object"));
        };
        let kind = req_str(t, "type", &format!("{path}."))?;
        match kind {
            "function" | "custom" => out.push(tool(t, kind, &path, None, names)?),
            "namespace" => namespace_tools(t, &path, names, &mut out)?,
            "local_shell" => {
                names.local_shell = true;
                out.push(local_shell_tool());
            }
            k if k.starts_with("web_search") || HOSTED_TOOLS.contains(&k) => {}
            other => {
                return Err(invalid(
                    &format!("{path}.type"),
                    format!(
                        "unsupported tool type `{other}` \
                         (this gateway runs function, custom, namespace and local_shell tools)"
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// A `namespace` tool's `function` and `custom` tools, flattened into `out`.
fn namespace_tools(
    t: &Map<String, Value>,
    path: &str,
    names: &mut ToolNames,
    out: &mut Vec<Tool>,
) -> Result<(), ApiError> {
    let ns = req_str(t, "name", &format!("{path}."))?;
    let Some(Value::Array(inner)) = t.get("tools") else {
        return Err(invalid(&format!("{path}.tools"), "expected an array"));
    };
    for (j, nt) in inner.iter().enumerate() {
        let npath = format!("{path}.tools[{j}]");
        let Value::Object(nt) = nt else {
            return Err(invalid(&npath, "expected an object"));
        };
        match req_str(nt, "type", &format!("{npath}."))? {
            k @ ("function" | "custom") => out.push(tool(nt, k, &npath, Some(ns), names)?),
            other => {
                return Err(invalid(
                    &format!("{npath}.type"),
                    format!("unsupported tool type `{other}` in a namespace"),
                ))
            }
        }
    }
    Ok(())
}

/// The function a `local_shell` declaration becomes: it takes the exec action's fields.
fn local_shell_tool() -> Tool {
    Tool {
        name: LOCAL_SHELL.into(),
        kind: None,
        description: Some("Runs a command on the user's machine and returns its output.".into()),
        input_schema: Some(json!({
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"},
                    "description": "The program and its arguments."},
                "working_directory": {"type": "string"},
                "timeout_ms": {"type": "integer"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "user": {"type": "string"}
            },
            "required": ["command"]
        })),
        defer_loading: None,
        extra: Extra::new(),
    }
}

/// One `function` or `custom` tool (inside `namespace` when given).
fn tool(
    t: &Map<String, Value>,
    kind: &str,
    path: &str,
    namespace: Option<&str>,
    names: &mut ToolNames,
) -> Result<Tool, ApiError> {
    let p = format!("{path}.");
    let name = req_str(t, "name", &p)?;
    let mut description = opt_str(t, "description", &p)?
        .unwrap_or_default()
        .to_owned();
    let flat = match namespace {
        Some(ns) => {
            let flat = flat_name(ns, name);
            names
                .namespaced
                .insert(flat.clone(), (ns.to_owned(), name.to_owned()));
            flat
        }
        None => name.to_owned(),
    };
    let schema = if kind == "custom" {
        names.custom.insert(flat.clone());
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&custom_note(t));
        json!({
            "type": "object",
            "properties": {"input": {"type": "string", "description": "The raw input text."}},
            "required": ["input"],
            "additionalProperties": false
        })
    } else {
        function_parameters(t, &p)?
    };
    Ok(Tool {
        name: flat,
        kind: None,
        description: (!description.is_empty()).then_some(description),
        input_schema: Some(schema),
        defer_loading: None,
        extra: Extra::new(),
    })
}

/// What a freeform tool's description gains: how to call it as a function, and its grammar
/// when it has one (the model sees no other trace of the `format`).
fn custom_note(t: &Map<String, Value>) -> String {
    match t
        .get("format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        Some("grammar") => {
            let syntax = t["format"]
                .get("syntax")
                .and_then(Value::as_str)
                .unwrap_or("lark");
            let definition = t["format"]
                .get("definition")
                .and_then(Value::as_str)
                .unwrap_or_default();
            format!("{CUSTOM_NOTE} The text must follow this {syntax} grammar:\n{definition}")
        }
        _ => CUSTOM_NOTE.to_owned(),
    }
}

/// A function tool's `parameters`; none means a function without arguments.
fn function_parameters(t: &Map<String, Value>, p: &str) -> Result<Value, ApiError> {
    match t.get("parameters") {
        None | Some(Value::Null) => Ok(json!({"type": "object", "properties": {}})),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(invalid(
            &format!("{p}parameters"),
            "expected a JSON schema object",
        )),
    }
}

fn tool_choice(
    value: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<ToolChoice>, ApiError> {
    let mut extra = Extra::new();
    if parallel == Some(false) {
        extra.insert("disable_parallel_tool_use".into(), Value::Bool(true));
    }
    let choice = match value {
        None | Some(Value::Null) => {
            return Ok((!extra.is_empty()).then_some(ToolChoice::Auto { extra }))
        }
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto { extra },
            "required" => ToolChoice::Any { extra },
            "none" => ToolChoice::None {
                extra: Extra::new(),
            },
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!("expected auto, none, required or an object, got `{other}`"),
                ))
            }
        },
        Some(Value::Object(obj)) => match req_str(obj, "type", "tool_choice.")? {
            "function" | "custom" => {
                let name = req_str(obj, "name", "tool_choice.")?;
                let name = match opt_str(obj, "namespace", "tool_choice.")? {
                    Some(ns) => flat_name(ns, name),
                    None => name.to_owned(),
                };
                ToolChoice::Tool { name, extra }
            }
            "allowed_tools" => match opt_str(obj, "mode", "tool_choice.")? {
                Some("required") => ToolChoice::Any { extra },
                _ => ToolChoice::Auto { extra },
            },
            other => {
                return Err(invalid(
                    "tool_choice.type",
                    format!(
                        "unsupported tool choice `{other}` (function, custom or allowed_tools)"
                    ),
                ))
            }
        },
        Some(_) => return Err(invalid("tool_choice", "expected a string or an object")),
    };
    Ok(Some(choice))
}

/// The conversation as it is built: system text, then turns.
#[derive(Default)]
struct Turns {
    system: Vec<String>,
    messages: Vec<Message>,
}

impl Turns {
    /// Adds blocks to the conversation, into the last turn when it has the same role.
    fn push(&mut self, role: Role, blocks: Vec<ContentBlock>) {
        if blocks.is_empty() {
            return;
        }
        if let Some(last) = self.messages.last_mut() {
            if last.role == role && role != Role::System {
                if let Content::Blocks(prev) = &mut last.content {
                    prev.extend(blocks);
                    return;
                }
            }
        }
        self.messages.push(Message {
            role,
            content: Content::Blocks(blocks),
            extra: Extra::new(),
        });
    }

    /// A developer or system message: system prompt before the first turn, in place after.
    fn system_text(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        if self.messages.is_empty() {
            self.system.push(text);
        } else {
            self.messages.push(Message {
                role: Role::System,
                content: Content::Text(text),
                extra: Extra::new(),
            });
        }
    }

    fn finish(mut self) -> (Option<String>, Vec<Message>) {
        for m in &mut self.messages {
            // Tool results lead their turn (Anthropic's rule; vLLM needs them right after
            // the calls).
            if let (Role::User, Content::Blocks(blocks)) = (m.role, &mut m.content) {
                blocks.sort_by_key(|b| !matches!(b, ContentBlock::ToolResult { .. }));
            }
        }
        let system = (!self.system.is_empty()).then(|| self.system.join("\n\n"));
        (system, self.messages)
    }
}

/// Tool calls of the input still waiting for their output: call id → item index.
#[derive(Default)]
struct Calls {
    open: BTreeMap<String, usize>,
}

impl Calls {
    fn call(&mut self, id: &str, index: usize) {
        self.open.insert(id.to_owned(), index);
    }

    fn output(&mut self, id: &str, index: usize) -> Result<(), ApiError> {
        match self.open.remove(id) {
            Some(_) => Ok(()),
            None => Err(invalid(
                &format!("input[{index}].call_id"),
                format!("no tool call found for the output with call_id `{id}`"),
            )),
        }
    }

    fn all_answered(&self) -> Result<(), ApiError> {
        match self.open.iter().min_by_key(|(_, i)| **i) {
            None => Ok(()),
            Some((id, i)) => Err(invalid(
                &format!("input[{i}]"),
                format!("no tool output found for the call with call_id `{id}`"),
            )),
        }
    }
}

/// One `input` item → blocks of the conversation, by the item's type.
fn input_item(i: usize, item: Value, turns: &mut Turns, calls: &mut Calls) -> Result<(), ApiError> {
    let path = format!("input[{i}]");
    let p = format!("{path}.");
    let Value::Object(item) = item else {
        return Err(invalid(&path, "expected an object"));
    };
    let kind = match opt_str(&item, "type", &p)? {
        Some(kind) => kind.to_owned(),
        None if item.contains_key("role") => "message".to_owned(),
        None => return Err(invalid(&format!("{p}type"), "field required")),
    };
    match kind.as_str() {
        "message" => message_item(&path, item, turns),
        "reasoning" => reasoning_item(&p, &item, turns),
        "function_call" | "custom_tool_call" | "local_shell_call" => {
            let block = call_item(&kind, &p, item)?;
            if let ContentBlock::ToolUse { id, .. } = &block {
                calls.call(id, i);
            }
            turns.push(Role::Assistant, vec![block]);
            Ok(())
        }
        "function_call_output" | "custom_tool_call_output" | "local_shell_call_output" => {
            let call_id = call_id(&item, &p, kind == "local_shell_call_output")?;
            calls.output(&call_id, i)?;
            turns.push(Role::User, vec![output_item(call_id, &p, item)?]);
            Ok(())
        }
        // A search that ran on OpenAI's side: its results went to OpenAI's model only.
        "web_search_call" => Ok(()),
        "item_reference" => Err(invalid(
            &path,
            "item references need stored responses; this gateway stores none: send the whole item",
        )),
        other => Err(invalid(
            &format!("{p}type"),
            format!("unsupported input item type `{other}`"),
        )),
    }
}

/// A `message` item: a user or assistant turn, or system text (see [`Turns::system_text`]).
fn message_item(
    path: &str,
    mut item: Map<String, Value>,
    turns: &mut Turns,
) -> Result<(), ApiError> {
    let p = format!("{path}.");
    let role = req_str(&item, "role", &p)?.to_owned();
    let content = item.remove("content").unwrap_or(Value::Null);
    match role.as_str() {
        "user" => turns.push(Role::User, content_blocks(path, content)?),
        "assistant" => turns.push(Role::Assistant, content_blocks(path, content)?),
        "system" | "developer" => {
            let texts: Vec<String> = content_blocks(path, content)?
                .into_iter()
                .map(|b| match b {
                    ContentBlock::Text { text, .. } => Ok(text),
                    _ => Err(invalid(
                        &format!("{p}content"),
                        format!("{role} messages take text only"),
                    )),
                })
                .collect::<Result<_, _>>()?;
            turns.system_text(texts.join("\n\n"));
        }
        other => {
            return Err(invalid(
                &format!("{p}role"),
                format!("expected user, assistant, system or developer, got `{other}`"),
            ))
        }
    }
    Ok(())
}

/// A `reasoning` item → an assistant `thinking` block (summaries, else the `reasoning_text`
/// content; signature: `encrypted_content`), so templates that keep reasoning see it.
fn reasoning_item(p: &str, item: &Map<String, Value>, turns: &mut Turns) -> Result<(), ApiError> {
    let mut text = summary_text(item.get("summary"), "summary_text");
    if text.is_empty() {
        text = summary_text(item.get("content"), "reasoning_text");
    }
    let signature = opt_str(item, "encrypted_content", p)?
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if !text.is_empty() || signature.is_some() {
        turns.push(
            Role::Assistant,
            vec![ContentBlock::Thinking {
                thinking: text,
                signature,
                extra: Extra::new(),
            }],
        );
    }
    Ok(())
}

/// A `function_call`, `custom_tool_call` or `local_shell_call` item → a `tool_use` block.
fn call_item(kind: &str, p: &str, mut item: Map<String, Value>) -> Result<ContentBlock, ApiError> {
    let call_id = call_id(&item, p, kind == "local_shell_call")?;
    let (name, input) = match kind {
        "function_call" => {
            let arguments = opt_str(&item, "arguments", p)?.unwrap_or("{}");
            // Not an object (a model's broken call): an empty one, the only input
            // every backend takes.
            let input = match serde_json::from_str::<Value>(arguments) {
                Ok(v @ Value::Object(_)) => v,
                _ => json!({}),
            };
            (called_name(&item, p)?, input)
        }
        "custom_tool_call" => {
            let input = opt_str(&item, "input", p)?.unwrap_or_default();
            (called_name(&item, p)?, json!({ "input": input }))
        }
        _ => {
            let mut action = match item.remove("action") {
                Some(Value::Object(a)) => a,
                _ => return Err(invalid(&format!("{p}action"), "expected an object")),
            };
            action.remove("type");
            (LOCAL_SHELL.to_owned(), Value::Object(action))
        }
    };
    Ok(ContentBlock::ToolUse {
        id: call_id,
        name,
        input,
        extra: Extra::new(),
    })
}

/// A call's `*_output` item (its `call_id` already checked) → a `tool_result` block.
fn output_item(
    call_id: String,
    p: &str,
    mut item: Map<String, Value>,
) -> Result<ContentBlock, ApiError> {
    let (content, is_error) = match item.remove("output") {
        None | Some(Value::Null) => (None, None),
        Some(Value::String(s)) => (Some(Content::Text(s)), None),
        Some(v @ Value::Array(_)) => (
            Some(Content::Blocks(content_blocks(&format!("{p}output"), v)?)),
            None,
        ),
        // `{content, success}`: an older Codex payload shape.
        Some(Value::Object(o)) if o.get("content").is_some_and(Value::is_string) => (
            o["content"].as_str().map(|s| Content::Text(s.to_owned())),
            (o.get("success") == Some(&Value::Bool(false))).then_some(true),
        ),
        Some(_) => {
            return Err(invalid(
                &format!("{p}output"),
                "expected a string or an array of content parts",
            ))
        }
    };
    Ok(ContentBlock::ToolResult {
        tool_use_id: call_id,
        content,
        is_error,
        extra: Extra::new(),
    })
}

/// A call or output item's `call_id`; `local_shell` items may carry it in `id` only.
fn call_id(item: &Map<String, Value>, p: &str, local_shell: bool) -> Result<String, ApiError> {
    match opt_str(item, "call_id", p)? {
        Some(id) => Ok(id.to_owned()),
        None if local_shell => Ok(req_str(item, "id", p)?.to_owned()),
        None => Err(invalid(&format!("{p}call_id"), "field required")),
    }
}

/// A call item's tool name as the model knows it (namespaced tools flattened).
fn called_name(item: &Map<String, Value>, p: &str) -> Result<String, ApiError> {
    let name = req_str(item, "name", p)?;
    Ok(match opt_str(item, "namespace", p)? {
        Some(ns) if !ns.is_empty() => flat_name(ns, name),
        _ => name.to_owned(),
    })
}

/// The texts of a reasoning item's parts of one type, joined by blank lines.
fn summary_text(parts: Option<&Value>, kind: &str) -> String {
    let Some(Value::Array(parts)) = parts else {
        return String::new();
    };
    parts
        .iter()
        .filter(|p| {
            let t = p.get("type").and_then(Value::as_str);
            t == Some(kind) || t == Some("text")
        })
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A message's `content` (or a tool output's parts) → content blocks; empty texts dropped.
fn content_blocks(path: &str, content: Value) -> Result<Vec<ContentBlock>, ApiError> {
    let parts = match content {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) if s.is_empty() => return Ok(Vec::new()),
        Value::String(s) => return Ok(vec![ContentBlock::text(s)]),
        Value::Array(parts) => parts,
        _ => {
            return Err(invalid(
                &format!("{path}.content"),
                "expected a string or an array of content parts",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let pp = format!("{path}.content[{j}].");
        let Value::Object(mut part) = part else {
            return Err(invalid(
                &format!("{path}.content[{j}]"),
                "expected an object",
            ));
        };
        let kind = req_str(&part, "type", &pp)?.to_owned();
        match kind.as_str() {
            "input_text" | "output_text" | "text" | "refusal" => {
                let key = if kind == "refusal" { "refusal" } else { "text" };
                match part.remove(key) {
                    Some(Value::String(text)) if !text.is_empty() => {
                        out.push(ContentBlock::text(text))
                    }
                    Some(Value::String(_)) => {}
                    _ => return Err(invalid(&format!("{pp}{key}"), "expected a string")),
                }
            }
            "input_image" => out.push(image_part(&part, &pp)?),
            "input_file" => out.push(file_part(&part, &pp, &format!("{path}.content[{j}]"))?),
            other => {
                return Err(invalid(
                    &format!("{pp}type"),
                    format!("unsupported content type `{other}`"),
                ))
            }
        }
    }
    Ok(out)
}

/// An `input_image` part (`pp`: its path with the dot) → an image block from its URL or
/// data URL; uploaded files (`file_id`) are not available here.
fn image_part(part: &Map<String, Value>, pp: &str) -> Result<ContentBlock, ApiError> {
    let Some(url) = opt_str(part, "image_url", pp)? else {
        return Err(invalid(
            &format!("{pp}image_url"),
            "required (uploaded files are not available on this gateway: \
             send a URL or a data URL)",
        ));
    };
    let source = match parse_data_url(url) {
        Some((media_type, data)) => ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        },
        None if url.starts_with("data:") => {
            return Err(invalid(
                &format!("{pp}image_url"),
                "expected a base64 data URL",
            ))
        }
        None => ImageSource::Url {
            url: url.to_owned(),
        },
    };
    Ok(ContentBlock::Image {
        source,
        extra: Extra::new(),
    })
}

/// An `input_file` part (`pp`: its path with the dot, `path`: without) → a document block
/// from `file_data` or `file_url`; uploaded files (`file_id`) are not available here.
fn file_part(part: &Map<String, Value>, pp: &str, path: &str) -> Result<ContentBlock, ApiError> {
    let source = if let Some(data) = opt_str(part, "file_data", pp)? {
        match parse_data_url(data) {
            Some((media_type, data)) => {
                json!({"type": "base64", "media_type": media_type, "data": data})
            }
            None => {
                return Err(invalid(
                    &format!("{pp}file_data"),
                    "expected a base64 data URL",
                ))
            }
        }
    } else if let Some(url) = opt_str(part, "file_url", pp)? {
        json!({"type": "url", "url": url})
    } else {
        return Err(invalid(
            path,
            "send `file_data` or `file_url` \
             (uploaded files are not available on this gateway)",
        ));
    };
    Ok(ContentBlock::Document {
        source,
        extra: Extra::new(),
    })
}

/// `data:<media type>;base64,<data>` → (media type, data).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

// ---- answers ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Reasoning,
    Function,
    Custom,
    LocalShell,
    /// A block with no Responses counterpart (`redacted_thinking`, server tool blocks).
    Skipped,
}

/// An output item as it is built from one Anthropic content block.
#[derive(Debug)]
struct Item {
    kind: Kind,
    output_index: usize,
    id: String,
    /// Message text, thinking text, or the call's arguments (JSON text).
    text: String,
    signature: String,
    call_id: String,
    /// The name the model used (flattened for namespaced tools).
    name: String,
}

impl Item {
    fn new(front: &ResponsesFront, kind: Kind, output_index: usize) -> Self {
        let prefix = match kind {
            Kind::Message => "msg",
            Kind::Reasoning => "rs",
            Kind::Function => "fc",
            Kind::Custom => "ctc",
            Kind::LocalShell => "lsh",
            Kind::Skipped => "",
        };
        let base = front.id.strip_prefix("resp_").unwrap_or(&front.id);
        Item {
            kind,
            output_index,
            id: format!("{prefix}_{base}_{output_index}"),
            text: String::new(),
            signature: String::new(),
            call_id: String::new(),
            name: String::new(),
        }
    }

    /// The call's arguments, `{}` when the model sent none.
    fn arguments(&self) -> &str {
        if self.text.trim().is_empty() {
            "{}"
        } else {
            &self.text
        }
    }

    /// A custom tool's raw input: the `input` string of the arguments the model wrote.
    fn custom_input(&self) -> String {
        match serde_json::from_str::<Value>(self.arguments()) {
            Ok(Value::Object(mut args)) => match args.remove("input") {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None if args.len() == 1 => match args.into_iter().next() {
                    Some((_, Value::String(s))) => s,
                    Some((_, other)) => other.to_string(),
                    None => String::new(),
                },
                None => String::new(),
            },
            _ => self.text.clone(),
        }
    }

    /// The item in its final form (`status` for the kinds that carry one).
    fn done(&self, front: &ResponsesFront, status: &str) -> Value {
        match self.kind {
            Kind::Message => json!({
                "type": "message", "id": self.id, "role": "assistant", "status": status,
                "content": [{"type": "output_text", "text": self.text, "annotations": []}],
            }),
            Kind::Reasoning => {
                let mut item = json!({
                    "type": "reasoning", "id": self.id,
                    "summary": [{"type": "summary_text", "text": self.text}],
                });
                if front.encrypted_reasoning && !self.signature.is_empty() {
                    item["encrypted_content"] = json!(self.signature);
                }
                item
            }
            Kind::Function => {
                let (name, ns) = front.names.split(&self.name);
                let mut item = json!({
                    "type": "function_call", "id": self.id, "call_id": self.call_id,
                    "name": name, "arguments": self.arguments(), "status": status,
                });
                if let Some(ns) = ns {
                    item["namespace"] = json!(ns);
                }
                item
            }
            Kind::Custom => {
                let (name, ns) = front.names.split(&self.name);
                let mut item = json!({
                    "type": "custom_tool_call", "id": self.id, "call_id": self.call_id,
                    "name": name, "input": self.custom_input(),
                });
                if let Some(ns) = ns {
                    item["namespace"] = json!(ns);
                }
                item
            }
            Kind::LocalShell => self.local_shell_done(status),
            Kind::Skipped => Value::Null,
        }
    }

    /// A `local_shell_call` item: the model's arguments read back as the exec action (fields
    /// of the wrong type left null, as the client would find them missing).
    fn local_shell_done(&self, status: &str) -> Value {
        let args: Map<String, Value> = match serde_json::from_str(self.arguments()) {
            Ok(Value::Object(args)) => args,
            _ => Map::new(),
        };
        let command = match args.get("command") {
            Some(Value::Array(parts)) => json!(parts
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                .collect::<Vec<_>>()),
            Some(Value::String(s)) => json!([s]),
            _ => json!([]),
        };
        let field = |key: &str, ok: fn(&Value) -> bool| {
            args.get(key)
                .filter(|v| ok(v))
                .cloned()
                .unwrap_or(Value::Null)
        };
        json!({
            "type": "local_shell_call", "id": self.id, "call_id": self.call_id,
            "status": status,
            "action": {
                "type": "exec", "command": command,
                "timeout_ms": field("timeout_ms", Value::is_u64),
                "working_directory": field("working_directory", Value::is_string),
                "env": field("env", Value::is_object),
                "user": field("user", Value::is_string),
            },
        })
    }
}

/// The usage as a Response reports it: `input_tokens` with cache reads and writes.
fn usage_json(usage: &Usage) -> Value {
    let input = usage.prompt();
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read(),
            "cache_write_tokens": usage.cache_creation(),
        },
        "output_tokens": usage.output(),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input.saturating_add(usage.output()),
    })
}

/// The Response status for an Anthropic stop reason, and why it is incomplete.
fn status_for(stop_reason: Option<&str>) -> (&'static str, Option<&'static str>) {
    match Stop::of(stop_reason) {
        Stop::Length => ("incomplete", Some("max_output_tokens")),
        Stop::Refusal => ("incomplete", Some("content_filter")),
        Stop::Done | Stop::ToolUse => ("completed", None),
    }
}

/// A Response object, serialized straight from borrowed parts.
#[derive(Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'a str,
    error: Option<Value>,
    incomplete_details: Option<Value>,
    model: &'a str,
    output: &'a [Value],
    usage: Option<Value>,
    #[serde(flatten)]
    echo: &'a Map<String, Value>,
}

fn response_object<'a>(
    front: &'a ResponsesFront,
    status: &'a str,
    output: &'a [Value],
    usage: Option<Value>,
) -> ResponseObject<'a> {
    ResponseObject {
        id: &front.id,
        object: "response",
        created_at: front.created_at,
        status,
        error: None,
        incomplete_details: None,
        model: &front.model,
        output,
        usage,
        echo: &front.echo,
    }
}

/// A whole Anthropic message (`content` blocks, `stop_reason`, `usage`) → a Response object.
pub fn response(front: &ResponsesFront, msg: &Value) -> Value {
    let (status, reason) = status_for(msg.get("stop_reason").and_then(Value::as_str));
    let blocks = msg.get("content").and_then(Value::as_array);
    let mut items: Vec<Item> = Vec::new();
    for block in blocks.into_iter().flatten() {
        let kind = match block.get("type").and_then(Value::as_str) {
            Some("text") => Kind::Message,
            Some("thinking") => Kind::Reasoning,
            Some("tool_use") => front.names.kind(
                block
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            _ => continue,
        };
        let mut item = Item::new(front, kind, items.len());
        let s = |key: &str| {
            block
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match kind {
            Kind::Message => item.text = s("text"),
            Kind::Reasoning => {
                item.text = s("thinking");
                item.signature = s("signature");
            }
            _ => {
                item.call_id = s("id");
                item.name = s("name");
                item.text = match block.get("input") {
                    Some(Value::String(args)) => args.clone(),
                    Some(input) => input.to_string(),
                    None => String::new(),
                };
            }
        }
        items.push(item);
    }
    let last = items.len().checked_sub(1);
    let output: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let s = if Some(i) == last && status == "incomplete" {
                "incomplete"
            } else {
                "completed"
            };
            item.done(front, s)
        })
        .collect();
    let usage = usage_json(&Usage::read(msg.get("usage")));
    let mut obj = response_object(front, status, &output, Some(usage));
    obj.incomplete_details = reason.map(|r| json!({ "reason": r }));
    serde_json::to_value(&obj).expect("a Response object serializes")
}

// ---- the event stream ----

/// Every Responses SSE event: its `type`, its fields, its `sequence_number`.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    body: &'a T,
    sequence_number: u64,
}

/// An event's `type` from its data, for streams that send no `event:` lines.
fn event_type(data: &str) -> String {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// Text a block starts with (Anthropic sends it empty; a relayed backend may not).
fn initial_text(kind: Kind, block: &Value) -> String {
    let s = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
    match kind {
        Kind::Message => s("text").to_owned(),
        Kind::Reasoning => s("thinking").to_owned(),
        Kind::Function | Kind::Custom | Kind::LocalShell => match block.get("input") {
            Some(Value::Object(o)) if !o.is_empty() => block["input"].to_string(),
            _ => String::new(),
        },
        Kind::Skipped => String::new(),
    }
}

fn emit<T: Serialize>(seq: &mut u64, out: &mut Vec<u8>, kind: &str, body: &T) {
    let env = Envelope {
        kind,
        body,
        sequence_number: *seq,
    };
    *seq += 1;
    write_sse(out, kind, |out| {
        serde_json::to_writer(out, &env).expect("serializing to a Vec cannot fail")
    });
}

/// The per-token events (text, summary text, arguments), without a map per token.
#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
    logprobs: [u8; 0],
}

#[derive(Serialize)]
struct SummaryDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: u32,
    delta: &'a str,
}

#[derive(Serialize)]
struct ArgumentsDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

#[derive(Serialize)]
struct WithResponse<'a> {
    response: ResponseObject<'a>,
}

#[derive(Deserialize)]
struct DeltaEvent<'a> {
    index: u64,
    #[serde(borrow)]
    delta: Delta<'a>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Cow<'a, str>,
    #[serde(default, borrow)]
    thinking: Cow<'a, str>,
    #[serde(default, borrow)]
    partial_json: Cow<'a, str>,
    #[serde(default, borrow)]
    signature: Cow<'a, str>,
}

/// Anthropic SSE events in, Responses SSE events out, for one answer.
#[derive(Debug)]
pub struct ResponsesStream {
    front: ResponsesFront,
    seq: u64,
    started: bool,
    finished: bool,
    /// Blocks still open, by Anthropic index.
    open: BTreeMap<u64, Item>,
    /// A closed item whose `output_item.done` waits for its status (the stop reason).
    pending: Option<Item>,
    /// Items done, in output order.
    output: Vec<Value>,
    next_output: usize,
    usage: Usage,
    stop_reason: Option<String>,
}

impl ResponsesStream {
    pub fn new(front: ResponsesFront) -> Self {
        Self {
            front,
            seq: 0,
            started: false,
            finished: false,
            open: BTreeMap::new(),
            pending: None,
            output: Vec::new(),
            next_output: 0,
            usage: Usage::default(),
            stop_reason: None,
        }
    }

    /// The answer has been ended (`response.completed`, `.incomplete` or `.failed`).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// One Anthropic event (its `event:` name, its `data:` JSON) → Responses events in `out`.
    /// Unknown or malformed events are skipped; nothing follows the end of the answer.
    pub fn event(&mut self, name: &str, data: &str, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let probed;
        let name = if name.is_empty() {
            probed = event_type(data);
            probed.as_str()
        } else {
            name
        };
        match name {
            "content_block_delta" => {
                if let Ok(ev) = serde_json::from_str::<DeltaEvent>(data) {
                    self.start(out);
                    self.delta(ev, out);
                }
            }
            "message_start" => {
                self.start(out);
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    let usage = v.get("message").and_then(|m| m.get("usage"));
                    self.usage.update(Usage::read(usage));
                }
            }
            "content_block_start" => {
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    self.start(out);
                    self.block_start(&v, out);
                }
            }
            "content_block_stop" => self.block_stop(data, out),
            "message_delta" => self.message_delta(data, out),
            "message_stop" => self.finish(out),
            "error" => self.backend_error(data, out),
            _ => {} // `ping`, and anything new
        }
    }

    /// `content_block_stop`: the open item of that index is closed.
    fn block_stop(&mut self, data: &str, out: &mut Vec<u8>) {
        if let Some(index) = serde_json::from_str::<Value>(data)
            .ok()
            .and_then(|v| v.get("index").and_then(Value::as_u64))
        {
            self.start(out);
            if let Some(item) = self.open.remove(&index) {
                self.close(item, out);
            }
        }
    }

    /// `message_delta`: usage and the stop reason, which gives the waiting item its status.
    fn message_delta(&mut self, data: &str, out: &mut Vec<u8>) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        self.start(out);
        self.usage.update(Usage::read(v.get("usage")));
        if let Some(reason) = v
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str)
        {
            self.stop_reason = Some(reason.to_owned());
        }
        let (status, _) = status_for(self.stop_reason.as_deref());
        self.flush(status, out);
    }

    /// An `error` event (bare or wrapped in `{"error": …}`): the response fails.
    fn backend_error(&mut self, data: &str, out: &mut Vec<u8>) {
        let v = serde_json::from_str::<Value>(data).unwrap_or(Value::Null);
        let err = v.get("error").unwrap_or(&v);
        let kind = err
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("api_error");
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the backend failed");
        self.fail(error_code(kind, message), message, out);
    }

    /// The Anthropic stream ended without `message_stop`: `error` and `response.failed`.
    pub fn cut(&mut self, out: &mut Vec<u8>) {
        if !self.finished {
            self.fail(
                "server_error",
                "the answer stream ended before the response was complete",
                out,
            );
        }
    }

    /// `response.created` and `response.in_progress`, once.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            let body = WithResponse {
                response: response_object(&self.front, "in_progress", &[], None),
            };
            emit(&mut self.seq, out, kind, &body);
        }
    }

    /// `content_block_start`: a new item (the previous one's `output_item.done` goes first),
    /// its `output_item.added` and first part, and any text the block starts with.
    fn block_start(&mut self, v: &Value, out: &mut Vec<u8>) {
        let (Some(index), Some(block)) = (
            v.get("index").and_then(Value::as_u64),
            v.get("content_block"),
        ) else {
            return;
        };
        self.flush("completed", out);
        let kind = self.block_kind(block);
        let output_index = self.next_output;
        if kind != Kind::Skipped {
            self.next_output += 1;
        }
        let mut item = Item::new(&self.front, kind, output_index);
        if let Some(added) = self.added_item(&mut item, block) {
            emit(
                &mut self.seq,
                out,
                "response.output_item.added",
                &json!({"output_index": output_index, "item": added}),
            );
        }
        self.part_added(&item, out);
        let initial = initial_text(kind, block);
        if !initial.is_empty() {
            self.append(&mut item, &initial, out);
        }
        self.open.insert(index, item);
    }

    /// The item kind of a content block (a tool call's by how its tool was declared).
    fn block_kind(&self, block: &Value) -> Kind {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => Kind::Message,
            Some("thinking") => Kind::Reasoning,
            Some("tool_use") => self.front.names.kind(
                block
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            _ => Kind::Skipped,
        }
    }

    /// The item as `output_item.added` shows it, if it is shown at its start (a tool call's
    /// id and name are kept in `item`). A local shell call is added at the block's end, once
    /// its action is known.
    fn added_item(&self, item: &mut Item, block: &Value) -> Option<Value> {
        match item.kind {
            Kind::Message => Some(json!({
                "type": "message", "id": item.id, "role": "assistant",
                "status": "in_progress", "content": [],
            })),
            Kind::Reasoning => Some(json!({"type": "reasoning", "id": item.id, "summary": []})),
            Kind::Function | Kind::Custom | Kind::LocalShell => {
                let s = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
                item.call_id = s("id").to_owned();
                item.name = s("name").to_owned();
                let (name, ns) = self.front.names.split(&item.name);
                let mut added = match item.kind {
                    Kind::Function => json!({
                        "type": "function_call", "id": item.id, "call_id": item.call_id,
                        "name": name, "arguments": "", "status": "in_progress",
                    }),
                    Kind::Custom => json!({
                        "type": "custom_tool_call", "id": item.id, "call_id": item.call_id,
                        "name": name, "input": "",
                    }),
                    // Added once its action is known, at the block's end.
                    _ => Value::Null,
                };
                if let (Some(ns), Value::Object(added)) = (ns, &mut added) {
                    added.insert("namespace".into(), json!(ns));
                }
                (!added.is_null()).then_some(added)
            }
            Kind::Skipped => None,
        }
    }

    /// The empty text or summary part a message or reasoning item's deltas go into.
    fn part_added(&mut self, item: &Item, out: &mut Vec<u8>) {
        let (id, output_index) = (item.id.as_str(), item.output_index);
        match item.kind {
            Kind::Message => emit(
                &mut self.seq,
                out,
                "response.content_part.added",
                &json!({"item_id": id, "output_index": output_index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}}),
            ),
            Kind::Reasoning => emit(
                &mut self.seq,
                out,
                "response.reasoning_summary_part.added",
                &json!({"item_id": id, "output_index": output_index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""}}),
            ),
            _ => {}
        }
    }

    fn delta(&mut self, ev: DeltaEvent, out: &mut Vec<u8>) {
        let Some(mut item) = self.open.remove(&ev.index) else {
            return;
        };
        let d = &ev.delta;
        match (d.kind.as_ref(), item.kind) {
            ("text_delta", Kind::Message) => self.append(&mut item, &d.text, out),
            ("thinking_delta", Kind::Reasoning) => self.append(&mut item, &d.thinking, out),
            ("signature_delta", Kind::Reasoning) => item.signature.push_str(&d.signature),
            ("input_json_delta", Kind::Function | Kind::Custom | Kind::LocalShell) => {
                self.append(&mut item, &d.partial_json, out)
            }
            _ => {}
        }
        self.open.insert(ev.index, item);
    }

    /// Adds text to an item and streams it (custom tools and local shell calls are sent whole).
    fn append(&mut self, item: &mut Item, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        item.text.push_str(text);
        let (id, output_index) = (item.id.as_str(), item.output_index);
        match item.kind {
            Kind::Message => emit(
                &mut self.seq,
                out,
                "response.output_text.delta",
                &TextDelta {
                    item_id: id,
                    output_index,
                    content_index: 0,
                    delta: text,
                    logprobs: [],
                },
            ),
            Kind::Reasoning => emit(
                &mut self.seq,
                out,
                "response.reasoning_summary_text.delta",
                &SummaryDelta {
                    item_id: id,
                    output_index,
                    summary_index: 0,
                    delta: text,
                },
            ),
            Kind::Function => emit(
                &mut self.seq,
                out,
                "response.function_call_arguments.delta",
                &ArgumentsDelta {
                    item_id: id,
                    output_index,
                    delta: text,
                },
            ),
            Kind::Custom | Kind::LocalShell | Kind::Skipped => {}
        }
    }

    /// A block ended: its closing events; the item waits in `pending` for its status.
    fn close(&mut self, item: Item, out: &mut Vec<u8>) {
        let (id, oi) = (item.id.as_str(), item.output_index);
        match item.kind {
            Kind::Message => self.close_message(&item, out),
            Kind::Reasoning => self.close_reasoning(&item, out),
            Kind::Function => emit(
                &mut self.seq,
                out,
                "response.function_call_arguments.done",
                &json!({"item_id": id, "output_index": oi, "arguments": item.arguments()}),
            ),
            Kind::Custom => self.close_custom(&item, out),
            Kind::LocalShell => emit(
                &mut self.seq,
                out,
                "response.output_item.added",
                &json!({"output_index": oi, "item": item.done(&self.front, "in_progress")}),
            ),
            Kind::Skipped => return,
        }
        self.flush("completed", out);
        self.pending = Some(item);
    }

    /// A message's `output_text.done` and `content_part.done`, with the whole text.
    fn close_message(&mut self, item: &Item, out: &mut Vec<u8>) {
        let (id, oi) = (item.id.as_str(), item.output_index);
        emit(
            &mut self.seq,
            out,
            "response.output_text.done",
            &json!({"item_id": id, "output_index": oi, "content_index": 0,
                "text": item.text, "logprobs": []}),
        );
        emit(
            &mut self.seq,
            out,
            "response.content_part.done",
            &json!({"item_id": id, "output_index": oi, "content_index": 0,
                "part": {"type": "output_text", "text": item.text, "annotations": []}}),
        );
    }

    /// A reasoning item's summary text and summary part done, with the whole text.
    fn close_reasoning(&mut self, item: &Item, out: &mut Vec<u8>) {
        let (id, oi) = (item.id.as_str(), item.output_index);
        emit(
            &mut self.seq,
            out,
            "response.reasoning_summary_text.done",
            &json!({"item_id": id, "output_index": oi, "summary_index": 0,
                "text": item.text}),
        );
        emit(
            &mut self.seq,
            out,
            "response.reasoning_summary_part.done",
            &json!({"item_id": id, "output_index": oi, "summary_index": 0,
                "part": {"type": "summary_text", "text": item.text}}),
        );
    }

    /// A custom tool call's input, sent whole now that the arguments are complete (the model
    /// wrote JSON; the client expects the raw text).
    fn close_custom(&mut self, item: &Item, out: &mut Vec<u8>) {
        let (id, oi) = (item.id.as_str(), item.output_index);
        let input = item.custom_input();
        if !input.is_empty() {
            emit(
                &mut self.seq,
                out,
                "response.custom_tool_call_input.delta",
                &ArgumentsDelta {
                    item_id: id,
                    output_index: oi,
                    delta: &input,
                },
            );
        }
        emit(
            &mut self.seq,
            out,
            "response.custom_tool_call_input.done",
            &json!({"item_id": id, "output_index": oi, "input": input}),
        );
    }

    /// The waiting item's `output_item.done`, with `status`.
    fn flush(&mut self, status: &str, out: &mut Vec<u8>) {
        if let Some(item) = self.pending.take() {
            let done = item.done(&self.front, status);
            emit(
                &mut self.seq,
                out,
                "response.output_item.done",
                &json!({"output_index": item.output_index, "item": done}),
            );
            self.output.push(done);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        // Blocks a malformed stream left open end here.
        while let Some((_, item)) = self.open.pop_first() {
            self.close(item, out);
        }
        let (status, reason) = status_for(self.stop_reason.as_deref());
        self.flush(status, out);
        let mut response = response_object(
            &self.front,
            status,
            &self.output,
            Some(usage_json(&self.usage)),
        );
        response.incomplete_details = reason.map(|r| json!({ "reason": r }));
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        emit(&mut self.seq, out, kind, &WithResponse { response });
        self.finished = true;
    }

    /// `error`, then `response.failed` with the items already done (an item not yet done,
    /// e.g. a tool call, is not handed to the client).
    fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.open.clear();
        self.pending = None;
        emit(
            &mut self.seq,
            out,
            "error",
            &json!({"code": code, "message": message, "param": null}),
        );
        let mut response = response_object(&self.front, "failed", &self.output, None);
        response.error = Some(json!({"code": code, "message": message}));
        emit(
            &mut self.seq,
            out,
            "response.failed",
            &WithResponse { response },
        );
        self.finished = true;
    }
}

/// The OpenAI error code for an Anthropic error type: the codes Codex acts on
/// (`context_length_exceeded` compacts, `server_error` and `rate_limit_exceeded` retry).
fn error_code(kind: &str, message: &str) -> &'static str {
    match kind {
        "invalid_request_error" if message.starts_with("prompt is too long") => {
            "context_length_exceeded"
        }
        "invalid_request_error" => "invalid_prompt",
        "rate_limit_error" => "rate_limit_exceeded",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::front::testkit::{
        backend_request, backend_translation, block, error_event, feed, message_end, message_start,
        ping, replay, text_block, thinking_block, tool_block, translated, Event,
    };
    use std::path::Path;
    use switchyard_api::{SystemMessagePlacement, ThinkingStyle};

    /// Compares `got` with `tests/golden/responses/<name>`; `UPDATE_GOLDEN=1` rewrites it.
    fn golden(name: &str, got: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/responses");
        let path = dir.join(name);
        if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            want,
            got,
            "{} differs: run with UPDATE_GOLDEN=1 and review the diff",
            path.display()
        );
    }

    fn pretty(v: &Value) -> String {
        serde_json::to_string_pretty(v).unwrap() + "\n"
    }

    /// The shape Codex sends to a custom provider (`codex-rs/codex-api/src/common.rs`
    /// `ResponsesApiRequest`): instructions, developer and user messages, an earlier tool loop
    /// with the freeform `apply_patch` and the `shell` function, reasoning, `store: false`.
    fn codex_request() -> Value {
        json!({
            "model": "qwen3-coder",
            "instructions": "You are a coding agent running in the Codex CLI.",
            "input": [
                {"type": "message", "role": "developer", "content": [
                    {"type": "input_text", "text": "<permissions instructions>workspace-write</permissions instructions>"}]},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "<environment_context>\n  <cwd>/work/app</cwd>\n</environment_context>"}]},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "Add a README, then list the files."}]},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Write the file, then list."}],
                    "content": null, "encrypted_content": null},
                {"type": "custom_tool_call", "status": "completed", "call_id": "call_patch",
                    "name": "apply_patch", "input": "*** Begin Patch\n*** Add File: README.md\n+# App\n*** End Patch\n"},
                {"type": "custom_tool_call_output", "call_id": "call_patch",
                    "output": "Success. Updated the following files:\nA README.md\n"},
                {"type": "function_call", "name": "shell",
                    "arguments": "{\"command\":[\"bash\",\"-lc\",\"ls\"],\"workdir\":\"/work/app\"}",
                    "call_id": "call_ls"},
                {"type": "function_call_output", "call_id": "call_ls",
                    "output": "Exit code: 0\nOutput:\nREADME.md\nsrc\n"},
                {"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Added README.md; the directory holds README.md and src."}]},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "Now run the tests."}]}
            ],
            "tools": [
                {"type": "function", "name": "shell", "description": "Runs a shell command.",
                    "strict": false, "parameters": {"type": "object", "properties": {
                        "command": {"type": "array", "items": {"type": "string"}},
                        "workdir": {"type": "string"}}, "required": ["command"],
                        "additionalProperties": false}},
                {"type": "custom", "name": "apply_patch", "description": "Edits files with a patch.",
                    "format": {"type": "grammar", "syntax": "lark",
                        "definition": "start: begin_patch hunk+ end_patch"}},
                {"type": "function", "name": "update_plan", "description": "Updates the plan.",
                    "strict": false, "parameters": {"type": "object", "properties": {
                        "plan": {"type": "array", "items": {"type": "object"}}}, "required": ["plan"]}},
                {"type": "web_search"}
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": false,
            "reasoning": {"effort": "high", "summary": "auto"},
            "store": false,
            "stream": true,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "0199e5a4-6c1f-7d22-9a3b-5b8e1f0c2d11"
        })
    }

    fn translate(body: Value) -> (MessagesRequest, ResponsesFront) {
        request(body, "resp_abc".into(), 1_700_000_000).unwrap()
    }

    fn refused(body: Value) -> String {
        let err = request(body, "resp_abc".into(), 0).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::InvalidRequest);
        err.message
    }

    #[test]
    fn codex_request_maps_to_the_exact_messages_request() {
        let (req, front) = translate(codex_request());
        assert!(req.openai_params.is_empty());
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({
                "model": "qwen3-coder",
                "system": "You are a coding agent running in the Codex CLI.\n\n<permissions instructions>workspace-write</permissions instructions>",
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "<environment_context>\n  <cwd>/work/app</cwd>\n</environment_context>"},
                        {"type": "text", "text": "Add a README, then list the files."}]},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "Write the file, then list."},
                        {"type": "tool_use", "id": "call_patch", "name": "apply_patch",
                            "input": {"input": "*** Begin Patch\n*** Add File: README.md\n+# App\n*** End Patch\n"}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_patch",
                            "content": "Success. Updated the following files:\nA README.md\n"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "call_ls", "name": "shell",
                            "input": {"command": ["bash", "-lc", "ls"], "workdir": "/work/app"}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_ls",
                            "content": "Exit code: 0\nOutput:\nREADME.md\nsrc\n"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Added README.md; the directory holds README.md and src."}]},
                    {"role": "user", "content": [{"type": "text", "text": "Now run the tests."}]}
                ],
                "max_tokens": 32000,
                "stream": true,
                "tools": [
                    {"name": "shell", "description": "Runs a shell command.",
                        "input_schema": {"type": "object", "properties": {
                            "command": {"type": "array", "items": {"type": "string"}},
                            "workdir": {"type": "string"}}, "required": ["command"],
                            "additionalProperties": false}},
                    {"name": "apply_patch",
                        "description": "Edits files with a patch.\n\nCall this tool as a function: pass its raw input text, unchanged, as the string argument `input`. The text must follow this lark grammar:\nstart: begin_patch hunk+ end_patch",
                        "input_schema": {"type": "object",
                            "properties": {"input": {"type": "string", "description": "The raw input text."}},
                            "required": ["input"], "additionalProperties": false}},
                    {"name": "update_plan", "description": "Updates the plan.",
                        "input_schema": {"type": "object", "properties": {
                            "plan": {"type": "array", "items": {"type": "object"}}}, "required": ["plan"]}}
                ],
                "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
                "thinking": {"type": "adaptive"},
                "metadata": {"user_id": "0199e5a4-6c1f-7d22-9a3b-5b8e1f0c2d11"},
                "output_config": {"effort": "high"}
            })
        );
        assert_eq!(front.id, "resp_abc");
        assert_eq!(front.model, "qwen3-coder");
        assert!(front.stream && front.encrypted_reasoning);
        assert_eq!(front.echo["parallel_tool_calls"], false);
        assert_eq!(front.echo["store"], false);
        assert_eq!(
            front.echo["tools"].as_array().unwrap().len(),
            4,
            "tools echoed as sent"
        );
        assert_eq!(
            front.echo["reasoning"],
            json!({"effort": "high", "summary": "auto"})
        );
    }

    /// The whole way to vLLM: Responses request → Messages request → Claude Code fixes →
    /// Chat Completions request, kept as a golden file.
    #[test]
    fn codex_request_golden_through_to_chat_completions() {
        let (mut req, _) = translate(codex_request());
        let messages = serde_json::to_value(&req).unwrap();
        crate::fixes::apply(&mut req, SystemMessagePlacement::Inline);
        let served = "Qwen/Qwen3-Coder-30B-A3B-Instruct";
        let chat = backend_translation(req, served, ThinkingStyle::ChatTemplateKwargs);
        assert!(chat.dropped.is_empty(), "{:?}", chat.dropped);
        let chat = serde_json::to_value(&chat.request).unwrap();
        assert_eq!(chat["parallel_tool_calls"], false);
        assert_eq!(
            chat["chat_template_kwargs"],
            json!({"enable_thinking": true, "thinking": true})
        );
        assert_eq!(
            chat["messages"][2]["reasoning_content"],
            "Write the file, then list."
        );
        assert_eq!(chat["messages"][3]["tool_call_id"], "call_patch");
        golden(
            "codex_request.json",
            &pretty(
                &json!({"responses": codex_request(), "messages": messages, "chat_completions": chat}),
            ),
        );
    }

    #[test]
    fn stored_state_is_refused_and_store_true_accepted() {
        let base = || json!({"model": "m", "input": "hi"});
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            b
        };
        let msg = refused(with("previous_response_id", json!("resp_1")));
        assert!(
            msg.starts_with("previous_response_id: this gateway stores no responses"),
            "{msg}"
        );
        assert!(
            msg.contains("send the whole conversation in `input`"),
            "{msg}"
        );
        assert!(refused(with("conversation", json!("conv_1"))).starts_with("conversation: "));
        assert!(refused(with("prompt", json!({"id": "pmpt_1"}))).starts_with("prompt: "));
        assert!(refused(with("background", json!(true))).starts_with("background: "));
        // Null is no value; `store: true` stores nothing and says so.
        let (req, front) = translate(json!({"model": "m", "input": "hi",
            "previous_response_id": null, "store": true}));
        assert_eq!(front.echo["store"], false);
        assert!(!req.stream);
        assert_eq!(req.max_tokens, DEFAULT_MAX_OUTPUT_TOKENS);
        assert!(req.thinking.is_none() && req.tools.is_none() && req.tool_choice.is_none());
    }

    #[test]
    fn malformed_input_gets_a_400_naming_the_field() {
        let input = |items: Value| json!({"model": "m", "input": items});
        let cases = [
            (json!({"input": "hi"}), "model: field required"),
            (json!({"model": "m"}), "input: field required"),
            (
                input(json!(7)),
                "input: expected a string or an array of items",
            ),
            (input(json!([])), "input: no user or assistant message"),
            (
                input(json!([{"content": "x"}])),
                "input[0].type: field required",
            ),
            (
                input(json!([{"type": "message", "role": "tool", "content": "x"}])),
                "input[0].role: expected user, assistant, system or developer, got `tool`",
            ),
            (
                input(json!(["hi", {"type": "computer_call", "call_id": "c"}])),
                "input[0]: expected an object",
            ),
            (
                input(
                    json!([{"role": "user", "content": "hi"}, {"type": "computer_call", "call_id": "c"}]),
                ),
                "input[1].type: unsupported input item type `computer_call`",
            ),
            (
                input(
                    json!([{"role": "user", "content": "hi"}, {"type": "item_reference", "id": "fc_1"}]),
                ),
                "input[1]: item references need stored responses",
            ),
            (
                input(json!([{"role": "user", "content": "hi"},
                {"type": "function_call", "name": "f", "arguments": "{}"}])),
                "input[1].call_id: field required",
            ),
            (
                input(json!([{"role": "user", "content": "hi"},
                {"type": "function_call_output", "call_id": "c9", "output": "x"}])),
                "input[1].call_id: no tool call found for the output with call_id `c9`",
            ),
            (
                input(json!([{"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c2", "output": "x"}])),
                "input[1]: no tool output found for the call with call_id `c1`",
            ),
            (
                input(
                    json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
                ),
                "input[0].content[0].type: unsupported content type `input_audio`",
            ),
            (
                input(
                    json!([{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]),
                ),
                "input[0].content[0].image_url: required",
            ),
            (
                input(json!([{"role": "user", "content": [{"type": "input_text"}]}])),
                "input[0].content[0].text: expected a string",
            ),
            (
                input(json!([{"role": "developer", "content": [
                {"type": "input_image", "image_url": "https://x.invalid/a.png"}]}])),
                "input[0].content: developer messages take text only",
            ),
            (
                json!({"model": "m", "input": "hi", "reasoning": {"effort": "max"}}),
                "reasoning.effort: expected none, minimal, low, medium, high or xhigh, got `max`",
            ),
            (
                json!({"model": "m", "input": "hi", "max_output_tokens": 0}),
                "max_output_tokens: expected a positive integer",
            ),
            (
                json!({"model": "m", "input": "hi", "temperature": "hot"}),
                "temperature: expected a number",
            ),
            (
                json!({"model": "m", "input": "hi", "tools": [{"type": "shell"}]}),
                "tools[0].type: unsupported tool type `shell`",
            ),
            (
                json!({"model": "m", "input": "hi", "tools": [{"type": "function"}]}),
                "tools[0].name: field required",
            ),
            (
                json!({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}],
                "tool_choice": "sometimes"}),
                "tool_choice: expected auto, none, required",
            ),
            (
                json!({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema"}}}),
                "text.format.schema: expected a JSON schema object",
            ),
            (json!([1]), "request body: expected a JSON object"),
        ];
        for (body, want) in cases {
            let got = refused(body.clone());
            assert!(got.starts_with(want), "{body}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn items_merge_into_turns_and_keep_their_content() {
        let (req, _) = translate(json!({"model": "m", "input": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
                {"type": "input_image", "image_url": "https://x.invalid/a.png"},
                {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
                {"type": "input_text", "text": ""}]},
            {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_sh", "status": "completed",
                "action": {"type": "exec", "command": ["ls"], "timeout_ms": 1000,
                    "working_directory": null, "env": null, "user": null}},
            {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "raw"}]},
            {"type": "reasoning", "summary": []},
            {"type": "function_call", "call_id": "call_ns", "name": "lookup", "namespace": "mcp__db__",
                "arguments": "not json"},
            {"role": "user", "content": "meanwhile"},
            {"type": "local_shell_call_output", "id": "call_sh", "output": "a\nb\n"},
            {"type": "function_call_output", "call_id": "call_ns", "output": [
                {"type": "input_text", "text": "row 1"},
                {"type": "input_image", "image_url": "data:image/jpeg;base64,BBBB"}]},
            {"role": "developer", "content": "Sandbox changed."},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
                "action": {"type": "search", "query": "x"}},
            {"type": "message", "role": "assistant", "id": "msg_9", "status": "completed",
                "content": [{"type": "output_text", "text": "Done.", "annotations": []},
                    {"type": "refusal", "refusal": "No more."}]}
        ]}));
        assert_eq!(
            serde_json::to_value(&req.messages).unwrap(),
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.invalid/a.png"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_sh", "name": "local_shell",
                        "input": {"command": ["ls"], "timeout_ms": 1000,
                            "working_directory": null, "env": null, "user": null}},
                    {"type": "thinking", "thinking": "raw"},
                    {"type": "tool_use", "id": "call_ns", "name": "mcp__db__lookup", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_sh", "content": "a\nb\n"},
                    {"type": "tool_result", "tool_use_id": "call_ns", "content": [
                        {"type": "text", "text": "row 1"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BBBB"}}]},
                    {"type": "text", "text": "meanwhile"}]},
                {"role": "system", "content": "Sandbox changed."},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Done."}, {"type": "text", "text": "No more."}]}
            ])
        );
        assert_eq!(
            serde_json::to_value(&req.system).unwrap(),
            json!("Be brief.")
        );
        // A bare string is one user message.
        let (req, _) = translate(json!({"model": "m", "input": "hello"}));
        assert_eq!(
            serde_json::to_value(&req.messages).unwrap(),
            json!([{"role": "user", "content": [{"type": "text", "text": "hello"}]}])
        );
    }

    #[test]
    fn tools_tool_choice_and_parameters() {
        let (req, front) = translate(json!({"model": "m", "input": "hi",
            "tools": [
                {"type": "namespace", "name": "mcp__db__", "description": "DB tools", "tools": [
                    {"type": "function", "name": "query", "parameters": {"type": "object"}}]},
                {"type": "namespace", "name": "files", "tools": [
                    {"type": "custom", "name": "write", "format": {"type": "text"}}]},
                {"type": "local_shell"},
                {"type": "function", "name": "bare"},
                {"type": "web_search_preview"}, {"type": "file_search", "vector_store_ids": []},
                {"type": "image_generation"}, {"type": "mcp", "server_label": "x"}
            ],
            "tool_choice": {"type": "function", "name": "query", "namespace": "mcp__db__"},
            "max_output_tokens": 512, "temperature": 0.3, "top_p": 0.8,
            "reasoning": {"effort": "minimal"},
            "text": {"format": {"type": "json_schema", "name": "answer", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}, "verbosity": "low"},
            "safety_identifier": "user-7", "user": "legacy"
        }));
        let tools = serde_json::to_value(req.tools.as_ref().unwrap()).unwrap();
        let names: Vec<&str> = tools
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["mcp__db__query", "files__write", "local_shell", "bare"]
        );
        assert_eq!(
            tools[3]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(tools[3]["description"], Value::Null);
        assert_eq!(tools[2]["input_schema"]["required"], json!(["command"]));
        assert_eq!(tools[1]["description"], CUSTOM_NOTE);
        assert_eq!(
            serde_json::to_value(&req.tool_choice).unwrap(),
            json!({"type": "tool", "name": "mcp__db__query"})
        );
        assert_eq!(req.max_tokens, 512);
        assert_eq!((req.temperature, req.top_p), (Some(0.3), Some(0.8)));
        assert_eq!(
            serde_json::to_value(&req.output_config).unwrap(),
            json!({"effort": "low"})
        );
        assert_eq!(req.metadata.unwrap().user_id.as_deref(), Some("user-7"));
        assert_eq!(
            Value::Object(req.openai_params),
            json!({"response_format": {"type": "json_schema", "json_schema": {
                "name": "answer", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}})
        );
        assert!(front.names.local_shell);
        assert_eq!(front.names.split("files__write"), ("write", Some("files")));
        assert_eq!(front.names.kind("files__write"), Kind::Custom);

        let choice = |c: Value, parallel: Value| {
            let (req, _) = translate(json!({"model": "m", "input": "hi",
                "tools": [{"type": "function", "name": "f"}], "tool_choice": c,
                "parallel_tool_calls": parallel}));
            serde_json::to_value(&req.tool_choice).unwrap()
        };
        assert_eq!(choice(json!("auto"), json!(true)), json!({"type": "auto"}));
        assert_eq!(
            choice(json!("required"), Value::Null),
            json!({"type": "any"})
        );
        assert_eq!(choice(json!("none"), json!(false)), json!({"type": "none"}));
        assert_eq!(
            choice(
                json!({"type": "allowed_tools", "mode": "required", "tools": []}),
                json!(false)
            ),
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(choice(Value::Null, Value::Null), Value::Null);

        // Effort `none` turns thinking off; `reasoning` without effort turns it on.
        let thinking = |r: Value| {
            let (req, _) = translate(json!({"model": "m", "input": "hi", "reasoning": r}));
            (
                serde_json::to_value(&req.thinking).unwrap(),
                serde_json::to_value(&req.output_config).unwrap(),
            )
        };
        assert_eq!(
            thinking(json!({"effort": "none"})),
            (json!({"type": "disabled"}), Value::Null)
        );
        assert_eq!(
            thinking(json!({"summary": "auto"})),
            (json!({"type": "adaptive"}), Value::Null)
        );
        assert_eq!(thinking(Value::Null), (Value::Null, Value::Null));
    }

    fn answer_front(body: Value) -> ResponsesFront {
        request(body, "resp_7f".into(), 1_700_000_000).unwrap().1
    }

    fn tool_front() -> ResponsesFront {
        answer_front(
            json!({"model": "gpt-5-codex", "input": "hi", "stream": true,
            "include": ["reasoning.encrypted_content"],
            "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}},
                {"type": "custom", "name": "apply_patch", "format": {"type": "text"}}]}),
        )
    }

    #[test]
    fn whole_answer_with_reasoning_text_and_tool_call() {
        let front = tool_front();
        let msg = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "served",
            "content": [
                {"type": "thinking", "thinking": "Run it.", "signature": "sig-1"},
                {"type": "text", "text": "Running the tests."},
                {"type": "tool_use", "id": "call_1", "name": "shell", "input": {"command": ["cargo", "test"]}},
                {"type": "tool_use", "id": "call_2", "name": "apply_patch", "input": {"input": "*** Begin Patch\n"}},
                {"type": "redacted_thinking", "data": "xx"}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 800, "output_tokens": 40,
                "cache_creation_input_tokens": 50, "cache_read_input_tokens": 150}
        });
        let got = response(&front, &msg);
        let want = json!({
            "id": "resp_7f", "object": "response", "created_at": 1_700_000_000,
            "status": "completed", "error": null, "incomplete_details": null,
            "model": "gpt-5-codex",
            "output": [
                {"type": "reasoning", "id": "rs_7f_0",
                    "summary": [{"type": "summary_text", "text": "Run it."}],
                    "encrypted_content": "sig-1"},
                {"type": "message", "id": "msg_7f_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "Running the tests.", "annotations": []}]},
                {"type": "function_call", "id": "fc_7f_2", "call_id": "call_1", "name": "shell",
                    "arguments": "{\"command\":[\"cargo\",\"test\"]}", "status": "completed"},
                {"type": "custom_tool_call", "id": "ctc_7f_3", "call_id": "call_2",
                    "name": "apply_patch", "input": "*** Begin Patch\n"}
            ],
            "usage": {"input_tokens": 1000,
                "input_tokens_details": {"cached_tokens": 150, "cache_write_tokens": 50},
                "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 1040},
            "instructions": null, "max_output_tokens": null, "temperature": null, "top_p": null,
            "reasoning": null, "user": null, "prompt_cache_key": null, "safety_identifier": null,
            "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}},
                {"type": "custom", "name": "apply_patch", "format": {"type": "text"}}],
            "tool_choice": "auto", "text": {"format": {"type": "text"}}, "metadata": {},
            "parallel_tool_calls": true, "previous_response_id": null, "store": false,
            "background": false, "truncation": "disabled"
        });
        assert_eq!(got, want);
        golden("answer.json", &pretty(&got));
    }

    #[test]
    fn max_tokens_answer_is_incomplete() {
        let front = answer_front(json!({"model": "m", "input": "hi"}));
        for (stop, reason) in [
            ("max_tokens", "max_output_tokens"),
            ("model_context_window_exceeded", "max_output_tokens"),
            ("refusal", "content_filter"),
        ] {
            let got = response(
                &front,
                &json!({
                "content": [{"type": "thinking", "thinking": "a", "signature": ""},
                    {"type": "text", "text": "cut sh"}],
                "stop_reason": stop, "usage": {"input_tokens": 5, "output_tokens": 9}}),
            );
            assert_eq!(got["status"], "incomplete");
            assert_eq!(got["incomplete_details"], json!({"reason": reason}));
            assert_eq!(got["output"][1]["status"], "incomplete", "the cut item");
            assert!(got["output"][0].get("encrypted_content").is_none());
            assert_eq!(got["usage"]["total_tokens"], 14);
        }
        // Nothing usable: no items, numeric usage.
        let got = response(&front, &json!({"stop_reason": "end_turn"}));
        assert_eq!(got["status"], "completed");
        assert_eq!(got["output"], json!([]));
        assert_eq!(got["usage"]["input_tokens"], 0);
    }

    /// Parses SSE bytes into (event, data), checking the framing, that each `event:` name is
    /// the data's `type`, and that sequence numbers count up from 0.
    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"));
        let ev: Vec<(String, Value)> = text
            .split("\n\n")
            .filter(|s| !s.is_empty())
            .map(|block| {
                let (name, data) = block.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.as_str());
                (name, data)
            })
            .collect();
        for (i, (_, data)) in ev.iter().enumerate() {
            assert_eq!(
                data["sequence_number"], i as u64,
                "sequence numbers count up: {data}"
            );
        }
        ev
    }

    fn names(ev: &[(String, Value)]) -> Vec<&str> {
        ev.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Asserts the event names: `response.created`, `response.in_progress`, then `rest`.
    fn assert_opened_then(ev: &[(String, Value)], rest: &[&str]) {
        let opening = ["response.created", "response.in_progress"];
        let want: Vec<&str> = opening.iter().chain(rest).copied().collect();
        assert_eq!(names(ev), want);
    }

    /// Runs Anthropic events (name, data) through a stream.
    fn run(front: ResponsesFront, anthropic: &[(&str, Value)], cut: bool) -> Vec<u8> {
        let mut s = ResponsesStream::new(front);
        let mut out = feed(&mut s, anthropic);
        if cut {
            s.cut(&mut out);
        }
        assert!(s.finished());
        out
    }

    /// Rebuilds the output the way the SDKs accumulate a stream (items by `output_index`,
    /// parts and deltas appended), checking every delta lands on an added item of its type,
    /// and that each `output_item.done` matches what the deltas built.
    fn accumulate(ev: &[(String, Value)]) -> Vec<Value> {
        let mut items: BTreeMap<u64, Value> = BTreeMap::new();
        let mut done: BTreeMap<u64, Value> = BTreeMap::new();
        for (name, d) in ev {
            if name == "response.output_item.done" {
                check_done(added(&mut items, name, d), &d["item"]);
                let oi = d["output_index"].as_u64().unwrap();
                assert!(done.insert(oi, d["item"].clone()).is_none());
            } else {
                apply(&mut items, name, d);
            }
        }
        assert_eq!(items.len(), done.len(), "every added item is done");
        done.into_values().collect()
    }

    /// The added item an event (`name`, data `d`) is about, by its `output_index`.
    fn added<'a>(items: &'a mut BTreeMap<u64, Value>, name: &str, d: &Value) -> &'a mut Value {
        items
            .get_mut(&d["output_index"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("{name} before its item"))
    }

    /// Appends a delta event's `delta` text to the string at `slot`.
    fn append(slot: &mut Value, d: &Value) {
        let text = slot.as_str().unwrap().to_owned() + d["delta"].as_str().unwrap();
        *slot = json!(text);
    }

    /// The added item of type `kind` an event is about.
    fn typed<'a>(
        items: &'a mut BTreeMap<u64, Value>,
        name: &str,
        d: &Value,
        kind: &str,
    ) -> &'a mut Value {
        let it = added(items, name, d);
        assert_eq!(it["type"], kind, "{name}");
        it
    }

    /// One event (not `output_item.done`) applied to the items as an SDK accumulates them.
    fn apply(items: &mut BTreeMap<u64, Value>, name: &str, d: &Value) {
        let at = |key: &str| d[key].as_u64().unwrap() as usize;
        let push = |list: &mut Value| list.as_array_mut().unwrap().push(d["part"].clone());
        match name {
            "response.output_item.added" => {
                let oi = d["output_index"].as_u64().unwrap();
                assert!(items.insert(oi, d["item"].clone()).is_none());
            }
            "response.content_part.added" => push(&mut typed(items, name, d, "message")["content"]),
            "response.output_text.delta" => {
                let it = added(items, name, d);
                assert_eq!(it["id"], d["item_id"]);
                append(&mut it["content"][at("content_index")]["text"], d);
                assert_eq!(d["logprobs"], json!([]));
            }
            "response.reasoning_summary_part.added" => {
                push(&mut typed(items, name, d, "reasoning")["summary"])
            }
            "response.reasoning_summary_text.delta" => append(
                &mut added(items, name, d)["summary"][at("summary_index")]["text"],
                d,
            ),
            "response.function_call_arguments.delta" => {
                append(&mut typed(items, name, d, "function_call")["arguments"], d)
            }
            "response.custom_tool_call_input.delta" => {
                append(&mut typed(items, name, d, "custom_tool_call")["input"], d)
            }
            _ => {}
        }
    }

    /// An `output_item.done` item matches what its deltas built.
    fn check_done(built: &Value, fin: &Value) {
        assert_eq!(built["id"], fin["id"]);
        assert_eq!(built["type"], fin["type"]);
        let key = match fin["type"].as_str().unwrap() {
            "message" => "content",
            "reasoning" => "summary",
            "function_call" => "arguments",
            "custom_tool_call" => "input",
            _ => return,
        };
        assert_eq!(built[key], fin[key]);
    }

    fn anthropic_stream() -> Vec<Event> {
        let mut events = [
            vec![message_start(900, 100)],
            thinking_block(0, &["The tests ", "live in \"tests/\"."]),
            text_block(1, &["Running ", "the tests.\n"]),
            tool_block(
                2,
                "call_9",
                "shell",
                &["{\"command\": [\"cargo\",", " \"test\"]}"],
            ),
            tool_block(
                3,
                "call_10",
                "apply_patch",
                &["{\"input\": \"*** Begin Patch\\n", "*** End Patch\\n\"}"],
            ),
            message_end("tool_use", 900, 42, 100),
        ]
        .concat();
        events.insert(7, ping()); // between the text's deltas
        events
    }

    #[test]
    fn stream_gives_the_exact_event_sequence() {
        let out = run(tool_front(), &anthropic_stream(), false);
        let ev = events(&out);
        assert_opened_then(
            &ev,
            &[
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.completed",
            ],
        );
        let created = &ev[0].1["response"];
        assert_eq!(created["status"], "in_progress");
        assert_eq!(created["id"], "resp_7f");
        assert_eq!(created["model"], "gpt-5-codex");
        assert_eq!(created["output"], json!([]));
        assert_eq!(created["usage"], Value::Null);
        assert_eq!(
            ev[2].1["item"],
            json!({"type": "reasoning", "id": "rs_7f_0", "summary": []})
        );
        assert_eq!(
            ev[11].1,
            json!({"type": "response.output_text.delta", "item_id": "msg_7f_1", "output_index": 1,
                "content_index": 0, "delta": "Running ", "logprobs": [], "sequence_number": 11})
        );
        assert_eq!(
            ev[16].1["item"],
            json!({"type": "function_call", "id": "fc_7f_2", "call_id": "call_9", "name": "shell",
                "arguments": "", "status": "in_progress"})
        );
        assert_eq!(
            ev[19].1["arguments"],
            "{\"command\": [\"cargo\", \"test\"]}"
        );
        assert_eq!(ev[22].1["delta"], "*** Begin Patch\n*** End Patch\n");
        let done: Vec<Value> = ev
            .iter()
            .filter(|(n, _)| n == "response.output_item.done")
            .map(|(_, d)| d["item"].clone())
            .collect();
        assert_eq!(
            done,
            [
                json!({"type": "reasoning", "id": "rs_7f_0",
                    "summary": [{"type": "summary_text", "text": "The tests live in \"tests/\"."}]}),
                json!({"type": "message", "id": "msg_7f_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "Running the tests.\n", "annotations": []}]}),
                json!({"type": "function_call", "id": "fc_7f_2", "call_id": "call_9", "name": "shell",
                    "arguments": "{\"command\": [\"cargo\", \"test\"]}", "status": "completed"}),
                json!({"type": "custom_tool_call", "id": "ctc_7f_3", "call_id": "call_10",
                    "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch\n"}),
            ]
        );
        assert_eq!(accumulate(&ev), done);
        let completed = &ev.last().unwrap().1["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["output"], json!(done));
        assert_eq!(
            completed["usage"],
            json!({"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
                "output_tokens": 42, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1042})
        );
        // The whole answer says the same as the stream.
        let whole = response(
            &tool_front(),
            &json!({"content": [
                {"type": "thinking", "thinking": "The tests live in \"tests/\".", "signature": ""},
                {"type": "text", "text": "Running the tests.\n"},
                {"type": "tool_use", "id": "call_9", "name": "shell", "input": "{\"command\": [\"cargo\", \"test\"]}"},
                {"type": "tool_use", "id": "call_10", "name": "apply_patch", "input": {"input": "*** Begin Patch\n*** End Patch\n"}}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 900, "output_tokens": 42, "cache_read_input_tokens": 100}}),
        );
        assert_eq!(&whole, completed);
        golden("stream.sse", std::str::from_utf8(&out).unwrap());
    }

    #[test]
    fn error_mid_stream_fails_the_response_and_ends_it() {
        let mut anthropic = anthropic_stream();
        anthropic.truncate(13); // inside the tool call's arguments
        anthropic.push(error_event("overloaded_error", "Backend idle for 30s"));
        anthropic.extend(anthropic_stream().into_iter().skip(13)); // ignored: the answer ended
        let out = run(tool_front(), &anthropic, false);
        let ev = events(&out);
        let n = names(&ev);
        assert_eq!(
            n[n.len() - 4..],
            [
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "error",
                "response.failed"
            ]
        );
        assert_eq!(
            ev[ev.len() - 2].1,
            json!({"type": "error", "code": "server_error", "message": "Backend idle for 30s",
                "param": null, "sequence_number": ev.len() - 2})
        );
        let failed = &ev.last().unwrap().1["response"];
        assert_eq!(failed["status"], "failed");
        assert_eq!(
            failed["error"],
            json!({"code": "server_error", "message": "Backend idle for 30s"})
        );
        // The unfinished tool call is never done: a client must not run it.
        assert_eq!(failed["output"].as_array().unwrap().len(), 2);
        assert!(!n[..n.len() - 2]
            .iter()
            .zip(&ev)
            .any(|(n, (_, d))| *n == "response.output_item.done"
                && d["item"]["type"] == "function_call"));
        golden("error.sse", std::str::from_utf8(&out).unwrap());

        // Error kinds → the codes Codex acts on.
        for (kind, message, code) in [
            (
                "invalid_request_error",
                "prompt is too long: 9 tokens > 8 maximum",
                "context_length_exceeded",
            ),
            ("rate_limit_error", "slow down", "rate_limit_exceeded"),
            ("api_error", "backend reset", "server_error"),
        ] {
            let out = run(tool_front(), &[error_event(kind, message)], false);
            let ev = events(&out);
            assert_opened_then(&ev, &["error", "response.failed"]);
            assert_eq!(ev[3].1["response"]["error"]["code"], code);
        }
    }

    /// Events as a minimal producer writes them: no `type` in the data (the name says it).
    fn bare(events: Vec<Event>) -> Vec<Event> {
        events
            .into_iter()
            .map(|(name, mut data)| {
                data.as_object_mut().unwrap().remove("type");
                (name, data)
            })
            .collect()
    }

    /// A bare `message_delta` (its `delta`, and `usage` unless null) and `message_stop`.
    fn sparse_end(delta: Value, usage: Value) -> Vec<Event> {
        let mut data = json!({"delta": delta});
        if !usage.is_null() {
            data["usage"] = usage;
        }
        vec![("message_delta", data), ("message_stop", json!({}))]
    }

    #[test]
    fn max_tokens_stream_is_incomplete() {
        let anthropic = [
            vec![(
                "message_start",
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 10}}}),
            )],
            bare(text_block(0, &["Once upon"])),
            sparse_end(
                json!({"stop_reason": "max_tokens"}),
                json!({"output_tokens": 2}),
            ),
        ]
        .concat();
        let ev = events(&run(tool_front(), &anthropic, false));
        assert_eq!(
            names(&ev)[ev.len() - 2..],
            ["response.output_item.done", "response.incomplete"]
        );
        assert_eq!(ev[ev.len() - 2].1["item"]["status"], "incomplete");
        let r = &ev.last().unwrap().1["response"];
        assert_eq!(r["status"], "incomplete");
        assert_eq!(
            r["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert_eq!(r["usage"]["output_tokens"], 2);
    }

    #[test]
    fn cut_stream_fails_and_malformed_events_do_not_panic() {
        let mut s = ResponsesStream::new(tool_front());
        let mut out = Vec::new();
        for (name, data) in [
            ("message_start", "{not json"),
            (
                "content_block_delta",
                r#"{"index": 5, "delta": {"type": "text_delta", "text": "x"}}"#,
            ),
            ("content_block_delta", r#"{"index": "a"}"#),
            (
                "content_block_start",
                r#"{"index": 0, "content_block": {"type": "text"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index": 0, "delta": {"type": "text_delta", "text": "ok"}}"#,
            ),
            (
                "content_block_start",
                r#"{"index": 1, "content_block": {"type": "server_tool_use", "id": "s"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}}"#,
            ),
            ("content_block_stop", r#"{"index": 1}"#),
            ("content_block_stop", r#"{"index": 9}"#),
            ("message_delta", "[]"),
            ("something_new", "{}"),
            ("", r#"{"type": "ping"}"#),
            ("", "garbage"),
        ] {
            s.event(name, data, &mut out);
        }
        assert!(!s.finished());
        s.cut(&mut out);
        s.cut(&mut out);
        s.event("message_stop", "{}", &mut out);
        let ev = events(&out);
        assert_opened_then(
            &ev,
            &[
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "error",
                "response.failed",
            ],
        );
        assert_eq!(ev[4].1["delta"], "ok");
        assert_eq!(ev[6].1["response"]["error"]["code"], "server_error");
        assert_eq!(ev[6].1["response"]["output"], json!([]));

        // A stream with no events at all that is cut still says so properly.
        let ev = events(&run(tool_front(), &[], true));
        assert_opened_then(&ev, &["error", "response.failed"]);
        // An empty name is read from the data's `type`.
        let ev = events(&run(
            tool_front(),
            &[
                ("", json!({"type": "message_start", "message": {}})),
                ("", json!({"type": "message_stop"})),
            ],
            false,
        ));
        assert_opened_then(&ev, &["response.completed"]);
    }

    #[test]
    fn namespaced_and_local_shell_calls_go_back_as_declared() {
        let front = answer_front(json!({"model": "m", "input": "hi", "include": [],
            "tools": [{"type": "namespace", "name": "mcp__db__", "tools": [
                {"type": "function", "name": "query"}]}, {"type": "local_shell"}]}));
        let local_shell = json!({"type": "input_json_delta",
            "partial_json": "{\"command\": [\"ls\", \"-a\"], \"timeout_ms\": 500}"});
        let anthropic = [
            bare(
                [
                    block(
                        0,
                        json!({"type": "thinking", "thinking": ""}),
                        vec![json!({"type": "signature_delta", "signature": "s"})],
                    ),
                    block(
                        1,
                        json!({"type": "tool_use", "id": "c1", "name": "mcp__db__query",
                        "input": {"sql": "select 1"}}),
                        vec![],
                    ),
                    block(
                        2,
                        json!({"type": "tool_use", "id": "c2", "name": "local_shell",
                        "input": {}}),
                        vec![local_shell],
                    ),
                ]
                .concat(),
            ),
            sparse_end(json!({"stop_reason": "tool_use"}), Value::Null),
        ]
        .concat();
        let ev = events(&run(front.clone(), &anthropic, false));
        let output = &ev.last().unwrap().1["response"]["output"];
        assert_eq!(
            output,
            &json!([
                {"type": "reasoning", "id": "rs_7f_0", "summary": [{"type": "summary_text", "text": ""}]},
                {"type": "function_call", "id": "fc_7f_1", "call_id": "c1", "name": "query",
                    "namespace": "mcp__db__", "arguments": "{\"sql\":\"select 1\"}", "status": "completed"},
                {"type": "local_shell_call", "id": "lsh_7f_2", "call_id": "c2", "status": "completed",
                    "action": {"type": "exec", "command": ["ls", "-a"], "timeout_ms": 500,
                        "working_directory": null, "env": null, "user": null}}
            ])
        );
        assert_eq!(accumulate(&ev), output.as_array().unwrap().clone());
        // The calls come back as the same Messages blocks.
        let (req, _) = translate(json!({"model": "m", "input": [
            {"role": "user", "content": "hi"}, output[1].clone(), output[2].clone(),
            {"type": "function_call_output", "call_id": "c1", "output": "1"},
            {"type": "local_shell_call_output", "id": "c2", "output": "."}]}));
        assert_eq!(
            serde_json::to_value(&req.messages[1].content).unwrap(),
            json!([{"type": "tool_use", "id": "c1", "name": "mcp__db__query", "input": {"sql": "select 1"}},
                {"type": "tool_use", "id": "c2", "name": "local_shell",
                    "input": {"command": ["ls", "-a"], "timeout_ms": 500,
                        "working_directory": null, "env": null, "user": null}}])
        );
    }

    /// vLLM's chunks through the proxy's own Anthropic stream translator, then out as
    /// Responses events: the pipeline the HTTP handler runs.
    #[test]
    fn vllm_chunks_through_both_translators() {
        let delta =
            |d: Value| json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]});
        let anthropic = translated(
            "m",
            50,
            vec![
                delta(json!({"reasoning_content": "Think."})),
                delta(json!({"content": "Hi "})),
                delta(json!({"content": "there"})),
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                "function": {"name": "shell", "arguments": "{\"command\""}}]}),
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": ": [\"ls\"]}"}}]}),
                ),
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}}),
            ],
        );
        let mut s = ResponsesStream::new(tool_front());
        let out = replay(&mut s, &anthropic);
        assert!(s.finished());
        let ev = events(&out);
        let r = &ev.last().unwrap().1["response"];
        assert_eq!(r["status"], "completed");
        let kinds: Vec<&str> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["reasoning", "message", "function_call"]);
        assert_eq!(r["output"][1]["content"][0]["text"], "Hi there");
        assert_eq!(r["output"][2]["arguments"], "{\"command\": [\"ls\"]}");
        assert_eq!(r["usage"]["output_tokens"], 9);
        assert_eq!(accumulate(&ev), r["output"].as_array().unwrap().clone());
    }

    /// The recorded requests of the real Codex CLI (`fixtures/codex`, Codex 0.171.0).
    fn codex_fixtures() -> Vec<(String, Value)> {
        let dir = match std::env::var("SWITCHYARD_FIXTURES") {
            Ok(dir) => Path::new(&dir).join("codex"),
            Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/codex"),
        };
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("INDEX.json")).unwrap())
                .unwrap();
        let mut out = Vec::new();
        for entry in index.as_array().unwrap() {
            if entry["method"] != "POST" || entry["path"] != "/v1/responses" {
                continue;
            }
            let file = entry["file"].as_str().unwrap();
            let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["body"].is_object() {
                out.push((file.to_owned(), v["body"].clone()));
            }
        }
        assert!(
            out.len() >= 20,
            "expected the Codex fixtures, found {}",
            out.len()
        );
        out
    }

    fn chat_for(mut req: MessagesRequest) -> Value {
        crate::fixes::apply(&mut req, SystemMessagePlacement::Inline);
        backend_request(req, "qwen3-coder", ThinkingStyle::Auto)
    }

    /// Every request the real Codex CLI sent goes through to a Chat Completions request vLLM
    /// takes: one system message first, calls answered right after, no hosted tool, every
    /// call and output of the input kept.
    #[test]
    fn every_recorded_codex_request_translates() {
        for (file, body) in codex_fixtures() {
            let input = body["input"].as_array().unwrap().clone();
            let (req, front) = request(body, "resp_x".into(), 0)
                .unwrap_or_else(|e| panic!("{file}: {}", e.message));
            assert!(front.stream && front.encrypted_reasoning, "{file}");
            assert!(
                req.system.is_some(),
                "{file}: the developer prompt is the system prompt"
            );
            let chat = chat_for(req);
            let messages = chat["messages"].as_array().unwrap();
            assert_eq!(messages[0]["role"], "system", "{file}");
            assert!(
                messages[1..]
                    .iter()
                    .all(|m| m["role"] != "system" && m["role"] != "developer"),
                "{file}: later system text is inline"
            );
            let calls = input
                .iter()
                .filter(|i| i["type"].as_str().is_some_and(|t| t.ends_with("_call")))
                .count();
            let outputs = input
                .iter()
                .filter(|i| i["type"].as_str().is_some_and(|t| t.ends_with("_output")))
                .count();
            let chat_calls: usize = messages
                .iter()
                .map(|m| m["tool_calls"].as_array().map_or(0, Vec::len))
                .sum();
            let chat_outputs = messages.iter().filter(|m| m["role"] == "tool").count();
            assert_eq!((chat_calls, chat_outputs), (calls, outputs), "{file}");
            let tools: Vec<&str> = chat["tools"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .map(|t| t["function"]["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            let unique: HashSet<&&str> = tools.iter().collect();
            assert_eq!(unique.len(), tools.len(), "{file}: tool names are unique");
            assert!(
                !tools
                    .iter()
                    .any(|t| *t == "web_search" || *t == "tool_search"),
                "{file}"
            );
            if !tools.is_empty() {
                assert!(tools.contains(&"exec_command"), "{file}: {tools:?}");
            } else {
                assert!(
                    chat.get("tool_choice").is_none(),
                    "{file}: no tool_choice without tools"
                );
            }
            assert_eq!(chat["stream"], true);
            assert!(chat["user"].is_string(), "{file}: prompt_cache_key → user");
        }
    }

    /// One recorded Codex request (a replayed reasoning item and tool call) as the Chat
    /// Completions request vLLM gets, summarized like `tests/golden/*.json`.
    #[test]
    fn recorded_codex_tool_loop_golden() {
        let (file, body) = codex_fixtures()
            .into_iter()
            .find(|(f, _)| f == "reasoning/02_responses_stream.json")
            .unwrap();
        let (req, _) = request(body, "resp_x".into(), 0).unwrap();
        let chat = chat_for(req);
        let messages: Vec<Value> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let mut s = json!({"role": m["role"]});
                if let Some(text) = m["content"].as_str() {
                    s["chars"] = json!(text.chars().count());
                    s["head"] = json!(text.chars().take(60).collect::<String>());
                }
                for key in ["reasoning_content", "tool_call_id"] {
                    if !m[key].is_null() {
                        s[key] = m[key].clone();
                    }
                }
                if let Some(calls) = m["tool_calls"].as_array() {
                    s["tool_calls"] =
                        json!(calls.iter().map(|c| &c["function"]).collect::<Vec<_>>());
                }
                s
            })
            .collect();
        let mut fields: Vec<&String> = chat.as_object().unwrap().keys().collect();
        fields.sort();
        let summary = json!({
            "fixture": file,
            "fields": fields,
            "parallel_tool_calls": chat["parallel_tool_calls"],
            "chat_template_kwargs": chat["chat_template_kwargs"],
            "user": chat["user"],
            "tools": chat["tools"].as_array().unwrap().iter().map(|t| &t["function"]["name"]).collect::<Vec<_>>(),
            "messages": messages,
        });
        golden("codex_fixture_reasoning_02.json", &pretty(&summary));
    }
}
