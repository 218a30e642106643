//! Anthropic request validation (the `AnthropicMessagesRequest` pydantic
//! model, `vllm/entrypoints/anthropic/protocol.py`) and conversion to a
//! chat-completions body (`AnthropicServingMessages.to_chat_completion_request`,
//! `serving.py`; 0.11's `_convert_anthropic_to_openai_request`).

use serde_json::{json, Map, Value};

use crate::mock_vllm::errors::{ApiError, Loc, PyVal, PydanticError};
use crate::mock_vllm::scenario::anthropic_block_text;
use crate::mock_vllm::tokens::py_json_dumps;
use crate::mock_vllm::{MockConfig, VllmRelease};

/// What the request is validated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnthropicKind {
    /// `AnthropicMessagesRequest` (`max_tokens` required, `thinking` checked).
    Messages,
    /// `AnthropicCountTokensRequest` (no `max_tokens`).
    CountTokens,
}

/// Claude Code's per-request attribution block, dropped from the system
/// prompt before rendering (PR #36829; `_convert_system_message` and
/// `_extract_system_text` in `anthropic/serving.py`).
const BILLING_HEADER: &str = "x-anthropic-billing-header";

fn perr(kind: &'static str, loc: Vec<Loc>, msg: &str, input: &Value) -> PydanticError {
    let mut full = vec![Loc::from("body")];
    full.extend(loc);
    PydanticError::new(kind, full, msg, PyVal::from(input))
}

/// Collects pydantic-style errors for `AnthropicMessagesRequest` (or
/// `AnthropicCountTokensRequest`) as `release` defines it.
pub(crate) fn validate_anthropic_schema(
    body: &Value,
    release: VllmRelease,
    kind: AnthropicKind,
) -> Result<(), ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::validation(&[PydanticError::new(
            "model_attributes_type",
            vec![Loc::from("body")],
            "Input should be a valid dictionary or object to extract fields from",
            PyVal::from(body),
        )]));
    };
    let mut errors = Vec::new();
    match obj.get("model") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::String(_)) => {
            errors.push(PydanticError::value_error(
                vec![Loc::from("body"), Loc::from("model")],
                "Model is required",
                PyVal::str(""),
            ));
        }
        Some(v) => errors.push(perr(
            "string_type",
            vec!["model".into()],
            "Input should be a valid string",
            v,
        )),
        None => errors.push(perr(
            "missing",
            vec!["model".into()],
            "Field required",
            body,
        )),
    }
    match obj.get("max_tokens") {
        _ if kind == AnthropicKind::CountTokens => {}
        Some(Value::Number(n)) if n.as_i64().is_some() => {
            if n.as_i64().unwrap_or(0) <= 0 {
                errors.push(PydanticError::value_error(
                    vec![Loc::from("body"), Loc::from("max_tokens")],
                    "max_tokens must be positive",
                    PyVal::from(&Value::Number(n.clone())),
                ));
            }
        }
        Some(v) => errors.push(perr(
            "int_type",
            vec!["max_tokens".into()],
            "Input should be a valid integer",
            v,
        )),
        None => errors.push(perr(
            "missing",
            vec!["max_tokens".into()],
            "Field required",
            body,
        )),
    }
    match obj.get("messages") {
        Some(Value::Array(messages)) => {
            for (i, msg) in messages.iter().enumerate() {
                let loc = |rest: &[&str]| {
                    let mut l: Vec<Loc> = vec!["messages".into(), Loc::Index(i)];
                    l.extend(rest.iter().map(|s| Loc::from(*s)));
                    l
                };
                let Some(m) = msg.as_object() else {
                    errors.push(perr(
                        "model_type",
                        loc(&[]),
                        "Input should be a valid dictionary or instance of AnthropicMessage",
                        msg,
                    ));
                    continue;
                };
                // `role: Literal["user", "assistant", "system"]` since 0.26
                // (0.11–0.22: user/assistant only, issue #44000).
                let (roles, expected): (&[&str], &str) = if release.anthropic_inline_system() {
                    (
                        &["user", "assistant", "system"],
                        "'user', 'assistant' or 'system'",
                    )
                } else {
                    (&["user", "assistant"], "'user' or 'assistant'")
                };
                match m.get("role") {
                    Some(Value::String(r)) if roles.contains(&r.as_str()) => {}
                    Some(r) => {
                        let mut full = vec![Loc::from("body")];
                        full.extend(loc(&["role"]));
                        errors.push(
                            PydanticError::new(
                                "literal_error",
                                full,
                                format!("Input should be {expected}"),
                                PyVal::from(r),
                            )
                            .with_ctx(vec![("expected", PyVal::str(expected))]),
                        );
                    }
                    None => errors.push(perr("missing", loc(&["role"]), "Field required", msg)),
                }
                match m.get("content") {
                    Some(Value::String(_)) => {}
                    Some(Value::Array(blocks)) => {
                        for (j, block) in blocks.iter().enumerate() {
                            let mut bl = loc(&["content", "list[AnthropicContentBlock]"]);
                            bl.push(Loc::Index(j));
                            let block_kind = block.get("type").and_then(Value::as_str);
                            let (kinds, expected) = block_kinds(release);
                            match block_kind {
                                Some(k) if kinds.contains(&k) => {}
                                _ => {
                                    let mut full = vec![Loc::from("body")];
                                    full.extend(bl.clone());
                                    full.push(Loc::from("type"));
                                    errors.push(
                                        PydanticError::new(
                                            "literal_error",
                                            full,
                                            format!("Input should be {expected}"),
                                            PyVal::from(block.get("type").unwrap_or(&Value::Null)),
                                        )
                                        .with_ctx(vec![("expected", PyVal::str(expected))]),
                                    );
                                }
                            }
                        }
                    }
                    Some(v) => errors.push(perr(
                        "string_type",
                        loc(&["content", "str"]),
                        "Input should be a valid string",
                        v,
                    )),
                    None => errors.push(perr("missing", loc(&["content"]), "Field required", msg)),
                }
            }
        }
        Some(v) => errors.push(perr(
            "list_type",
            vec!["messages".into()],
            "Input should be a valid list",
            v,
        )),
        None => errors.push(perr(
            "missing",
            vec!["messages".into()],
            "Field required",
            body,
        )),
    }
    if let Some(tools) = obj.get("tools").filter(|t| !t.is_null()) {
        match tools.as_array() {
            Some(tools) => {
                for (i, tool) in tools.iter().enumerate() {
                    let base = || -> Vec<Loc> { vec!["tools".into(), Loc::Index(i)] };
                    match tool.get("name") {
                        Some(Value::String(_)) => {}
                        Some(v) => errors.push(perr(
                            "string_type",
                            [base(), vec!["name".into()]].concat(),
                            "Input should be a valid string",
                            v,
                        )),
                        None => errors.push(perr(
                            "missing",
                            [base(), vec!["name".into()]].concat(),
                            "Field required",
                            tool,
                        )),
                    }
                    match tool.get("input_schema") {
                        Some(Value::Object(_)) => {}
                        Some(v) => errors.push(perr(
                            "dict_type",
                            [base(), vec!["input_schema".into()]].concat(),
                            "Input should be a valid dictionary",
                            v,
                        )),
                        None => errors.push(perr(
                            "missing",
                            [base(), vec!["input_schema".into()]].concat(),
                            "Field required",
                            tool,
                        )),
                    }
                }
            }
            None => errors.push(perr(
                "list_type",
                vec!["tools".into()],
                "Input should be a valid list",
                tools,
            )),
        }
    }
    if let Some(tc) = obj.get("tool_choice").filter(|t| !t.is_null()) {
        match tc.get("type").and_then(Value::as_str) {
            Some("auto" | "any" | "tool" | "none") => {}
            _ => {
                let mut full = vec![
                    Loc::from("body"),
                    Loc::from("tool_choice"),
                    Loc::from("type"),
                ];
                if tc.get("type").is_none() {
                    errors.push(PydanticError::new(
                        "missing",
                        full,
                        "Field required",
                        PyVal::from(tc),
                    ));
                } else {
                    full.truncate(3);
                    errors.push(
                        PydanticError::new(
                            "literal_error",
                            full,
                            "Input should be 'auto', 'any', 'tool' or 'none'",
                            PyVal::from(&tc["type"]),
                        )
                        .with_ctx(vec![(
                            "expected",
                            PyVal::str("'auto', 'any', 'tool' or 'none'"),
                        )]),
                    );
                }
            }
        }
    }
    if let Some(stop) = obj.get("stop_sequences").filter(|s| !s.is_null()) {
        if !stop
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
        {
            errors.push(perr(
                "list_type",
                vec!["stop_sequences".into()],
                "Input should be a valid list",
                stop,
            ));
        }
    }
    if release == VllmRelease::V0_34 {
        validate_thinking(obj, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(&errors));
    }
    // `validate_thinking_budget`, a `model_validator(mode="after")` (0.31+):
    // runs once the fields are valid; its error is located at `('body',)`.
    if release == VllmRelease::V0_34 && kind == AnthropicKind::Messages {
        let budget = obj
            .get("thinking")
            .filter(|t| t["type"] == "enabled")
            .and_then(|t| t["budget_tokens"].as_i64());
        let max_tokens = obj.get("max_tokens").and_then(Value::as_i64);
        if let (Some(b), Some(m)) = (budget, max_tokens) {
            if b >= m {
                return Err(ApiError::validation(&[PydanticError::value_error(
                    vec![Loc::from("body")],
                    "thinking.budget_tokens must be less than max_tokens",
                    PyVal::from(body),
                )]));
            }
        }
    }
    Ok(())
}

/// `AnthropicContentBlock.type` literals: 0.34 adds `tool_addition` and
/// `tool_removal`; 0.30 has `tool_reference`; 0.11 neither.
fn block_kinds(release: VllmRelease) -> (&'static [&'static str], &'static str) {
    match release {
        VllmRelease::V0_11 => (
            &["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"],
            "'text', 'image', 'tool_use', 'tool_result', 'thinking' or 'redacted_thinking'",
        ),
        VllmRelease::V0_30 => (
            &["text", "image", "tool_use", "tool_result", "tool_reference", "thinking", "redacted_thinking"],
            "'text', 'image', 'tool_use', 'tool_result', 'tool_reference', 'thinking' or 'redacted_thinking'",
        ),
        VllmRelease::V0_34 => (
            &["text", "image", "tool_use", "tool_result", "tool_reference", "thinking", "redacted_thinking", "tool_addition", "tool_removal"],
            "'text', 'image', 'tool_use', 'tool_result', 'tool_reference', 'thinking', 'redacted_thinking', 'tool_addition' or 'tool_removal'",
        ),
    }
}

/// `thinking: AnthropicThinkingConfig`, a union discriminated by `type`
/// (0.34, `anthropic/protocol.py`): `enabled` needs
/// `budget_tokens: int = Field(ge=1024)`.
fn validate_thinking(obj: &Map<String, Value>, errors: &mut Vec<PydanticError>) {
    let Some(thinking) = obj.get("thinking").filter(|t| !t.is_null()) else {
        return;
    };
    let loc = |rest: &[&str]| -> Vec<Loc> {
        let mut l = vec![Loc::from("body"), Loc::from("thinking")];
        l.extend(rest.iter().map(|s| Loc::from(*s)));
        l
    };
    const TAGS: &str = "'enabled', 'disabled', 'adaptive', 'between_tools'";
    let Some(t) = thinking.as_object() else {
        errors.push(PydanticError::new(
            "model_attributes_type",
            loc(&[]),
            "Input should be a valid dictionary or object to extract fields from",
            PyVal::from(thinking),
        ));
        return;
    };
    match t.get("type").and_then(Value::as_str) {
        Some("enabled") => match t.get("budget_tokens") {
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                if n.as_i64().unwrap_or(0) < 1024 {
                    errors.push(
                        PydanticError::new(
                            "greater_than_equal",
                            loc(&["enabled", "budget_tokens"]),
                            "Input should be greater than or equal to 1024",
                            PyVal::from(&Value::Number(n.clone())),
                        )
                        .with_ctx(vec![("ge", PyVal::Int(1024))]),
                    );
                }
            }
            Some(v) => errors.push(PydanticError::new(
                "int_type",
                loc(&["enabled", "budget_tokens"]),
                "Input should be a valid integer",
                PyVal::from(v),
            )),
            None => errors.push(PydanticError::new(
                "missing",
                loc(&["enabled", "budget_tokens"]),
                "Field required",
                PyVal::from(thinking),
            )),
        },
        Some("disabled" | "adaptive" | "between_tools") => {}
        Some(tag) => errors.push(
            PydanticError::new(
                "union_tag_invalid",
                loc(&[]),
                format!("Input tag '{tag}' found using 'type' does not match any of the expected tags: {TAGS}"),
                PyVal::from(thinking),
            )
            .with_ctx(vec![
                ("discriminator", PyVal::str("'type'")),
                ("tag", PyVal::str(tag)),
                ("expected_tags", PyVal::str(TAGS)),
            ]),
        ),
        None => errors.push(
            PydanticError::new(
                "union_tag_not_found",
                loc(&[]),
                "Unable to extract tag using discriminator 'type'",
                PyVal::from(thinking),
            )
            .with_ctx(vec![("discriminator", PyVal::str("'type'"))]),
        ),
    }
}

/// The chat-completions body an Anthropic request is served as, for the
/// default configuration (current release, Qwen-style system-first
/// template).  Public so tests can compute the expected prompt token count:
/// `count_prompt_tokens(&anthropic_to_chat(&req))`.
pub fn anthropic_to_chat(req: &Value) -> Value {
    anthropic_to_chat_for(req, &MockConfig::default())
}

/// Text of a system block list or string without the billing header
/// (`_extract_system_text`): text blocks joined with no separator.
fn system_text(content: Option<&Value>) -> Option<String> {
    let text = match content? {
        Value::String(s) if s.starts_with(BILLING_HEADER) => return None,
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .filter(|t| !t.is_empty() && !t.starts_with(BILLING_HEADER))
            .collect(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// `to_chat_completion_request` as `cfg.vllm_release` does it.
///
/// 0.26+ (`_convert_system_message`, `_convert_messages`): the top-level
/// `system` and, when the chat template requires system-first ordering
/// (`_detect_merge_inline_system` renders `[system, user, system, user]` and
/// merges if that raises — Qwen's templates do, here `strict_system`), the
/// inline `role: "system"` messages are concatenated with no separator into
/// one leading system message; otherwise inline system messages stay in
/// place.  The billing header block is dropped either way.  (vLLM main after
/// 0.34 folds them into a neighbouring turn instead, `inline_system.py`.)
/// 0.11: `system` only, text blocks concatenated.
pub(crate) fn anthropic_to_chat_for(req: &Value, cfg: &MockConfig) -> Value {
    let current = cfg.vllm_release.anthropic_inline_system();
    let merge_inline = current && cfg.strict_system;
    let mut messages: Vec<Value> = Vec::new();
    if current {
        let mut parts: Vec<String> = Vec::new();
        match req.get("system") {
            Some(Value::String(s)) if !s.is_empty() => parts.push(s.clone()),
            Some(Value::Array(blocks)) => parts.extend(
                blocks
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .filter(|t| !t.is_empty() && !t.starts_with(BILLING_HEADER))
                    .map(str::to_string),
            ),
            _ => {}
        }
        if merge_inline {
            for msg in req
                .get("messages")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if msg.get("role").and_then(Value::as_str) == Some("system") {
                    parts.extend(system_text(msg.get("content")));
                }
            }
        }
        if !parts.is_empty() {
            messages.push(json!({"role": "system", "content": parts.concat()}));
        }
    } else {
        match req.get("system") {
            Some(Value::String(s)) if !s.is_empty() => {
                messages.push(json!({"role": "system", "content": s}));
            }
            Some(Value::Array(blocks)) => {
                let text: String = blocks
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect();
                if !text.is_empty() {
                    messages.push(json!({"role": "system", "content": text}));
                }
            }
            _ => {}
        }
    }
    for msg in req
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if current && msg.get("role").and_then(Value::as_str) == Some("system") {
            if !merge_inline {
                if let Some(text) = system_text(msg.get("content")) {
                    messages.push(json!({"role": "system", "content": text}));
                }
            }
            continue;
        }
        let role = msg.get("role").and_then(Value::as_str).unwrap_or("user");
        let mut out = Map::new();
        out.insert("role".into(), json!(role));
        match msg.get("content") {
            Some(Value::String(s)) => {
                out.insert("content".into(), json!(s));
            }
            Some(Value::Array(blocks)) => {
                let mut parts: Vec<Value> = Vec::new();
                let mut tool_calls: Vec<Value> = Vec::new();
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(t) = block
                                .get("text")
                                .and_then(Value::as_str)
                                .filter(|t| !t.is_empty())
                            {
                                parts.push(json!({"type": "text", "text": t}));
                            }
                        }
                        Some("image") => {
                            let src = &block["source"];
                            let url = if src["type"] == "url" {
                                src["url"].as_str().unwrap_or("").to_string()
                            } else {
                                format!(
                                    "data:{};base64,{}",
                                    src["media_type"].as_str().unwrap_or("image/jpeg"),
                                    src["data"].as_str().unwrap_or("")
                                )
                            };
                            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                        Some("tool_use") => {
                            let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                            tool_calls.push(json!({
                                "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                                "type": "function",
                                "function": {
                                    "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                                    "arguments": py_json_dumps(&input, true),
                                },
                            }));
                        }
                        Some("tool_result") if role == "user" => {
                            messages.push(json!({
                                "role": "tool",
                                "tool_call_id": block.get("tool_use_id").and_then(Value::as_str).unwrap_or(""),
                                "content": anthropic_block_text(block),
                            }));
                        }
                        Some("tool_result") => {
                            parts.push(json!({"type": "text", "text": format!("Tool result: {}", anthropic_block_text(block))}));
                        }
                        _ => {}
                    }
                }
                if !tool_calls.is_empty() {
                    out.insert("tool_calls".into(), Value::Array(tool_calls));
                }
                if parts.len() == 1 && parts[0]["type"] == "text" {
                    out.insert("content".into(), parts[0]["text"].clone());
                } else if !parts.is_empty() {
                    out.insert("content".into(), Value::Array(parts));
                }
            }
            _ => {}
        }
        // Newer vLLM drops user messages left without content (tool results only).
        if role == "user" && !out.contains_key("content") {
            continue;
        }
        messages.push(Value::Object(out));
    }
    let mut chat = Map::new();
    chat.insert(
        "model".into(),
        req.get("model").cloned().unwrap_or(Value::Null),
    );
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(mt) = req.get("max_tokens") {
        chat.insert("max_tokens".into(), mt.clone());
        chat.insert("max_completion_tokens".into(), mt.clone());
    }
    if let Some(stop) = req.get("stop_sequences").filter(|s| !s.is_null()) {
        chat.insert("stop".into(), stop.clone());
    }
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        chat.insert("stream".into(), json!(true));
        chat.insert(
            "stream_options".into(),
            json!({"include_usage": true, "continuous_usage_stats": true}),
        );
    }
    let tools: Vec<Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut schema = t.get("input_schema").cloned().unwrap_or_else(|| json!({}));
                    if let Some(obj) = schema.as_object_mut() {
                        obj.entry("type").or_insert_with(|| json!("object"));
                    }
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.get("name").cloned().unwrap_or(Value::Null),
                            "description": t.get("description").cloned().unwrap_or(Value::Null),
                            "parameters": schema,
                        }
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let tool_choice = req.get("tool_choice").and_then(|tc| match tc.get("type").and_then(Value::as_str) {
        Some("auto") => Some(json!("auto")),
        Some("any") => Some(json!("required")),
        Some("none") => Some(json!("none")),
        Some("tool") => Some(json!({"type": "function", "function": {"name": tc.get("name").cloned().unwrap_or(Value::Null)}})),
        _ => None,
    });
    if let Some(tc) = tool_choice {
        chat.insert("tool_choice".into(), tc);
    }
    if req.get("tools").is_some_and(|t| !t.is_null()) {
        chat.entry("tool_choice").or_insert_with(|| json!("auto"));
        chat.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(chat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_tool_round_trip() {
        let req = json!({
            "model": "m",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "sys"}],
            "tools": [{"name": "Bash", "input_schema": {"properties": {}}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "out"}]}
            ]
        });
        let chat = anthropic_to_chat(&req);
        let roles: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(
            chat["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"command\": \"ls\"}"
        );
        assert_eq!(chat["tool_choice"], "auto");
        assert_eq!(chat["tools"][0]["function"]["parameters"]["type"], "object");
    }

    #[test]
    fn merges_inline_system_and_drops_billing_header() {
        let req = json!({"model": "m", "max_tokens": 10,
            "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"},
                       {"type": "text", "text": "A."}, {"type": "text", "text": "B."}],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "system", "content": [{"type": "text", "text": "C."}]}]});
        assert!(
            validate_anthropic_schema(&req, VllmRelease::V0_34, AnthropicKind::Messages).is_ok()
        );
        let chat = anthropic_to_chat(&req);
        assert_eq!(
            chat["messages"],
            json!([{"role": "system", "content": "A.B.C."}, {"role": "user", "content": "hi"}])
        );
        let relaxed = MockConfig {
            strict_system: false,
            ..MockConfig::default()
        };
        let chat = anthropic_to_chat_for(&req, &relaxed);
        assert_eq!(
            chat["messages"],
            json!([{"role": "system", "content": "A.B."}, {"role": "user", "content": "hi"},
                   {"role": "system", "content": "C."}])
        );
    }

    #[test]
    fn thinking_budget_is_checked() {
        let mut req = json!({"model": "m", "max_tokens": 2000, "messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "enabled", "budget_tokens": 512}});
        let e = validate_anthropic_schema(&req, VllmRelease::V0_34, AnthropicKind::Messages)
            .unwrap_err()
            .for_release(VllmRelease::V0_34);
        assert_eq!(
            e.message,
            "1 validation error:\n  {'type': 'greater_than_equal', 'loc': 'body.thinking.enabled.budget_tokens', 'msg': 'Input should be greater than or equal to 1024', 'input': '512', 'ctx': {'ge': 1024}}"
        );
        assert_eq!(
            e.param.as_deref(),
            Some("body.thinking.enabled.budget_tokens")
        );
        req["thinking"]["budget_tokens"] = json!(2000);
        let e = validate_anthropic_schema(&req, VllmRelease::V0_34, AnthropicKind::Messages)
            .unwrap_err()
            .for_release(VllmRelease::V0_34);
        assert_eq!(
            e.message,
            "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, thinking.budget_tokens must be less than max_tokens', 'input': '<dict of 4 items>', 'ctx': {'error': ValueError('thinking.budget_tokens must be less than max_tokens')}}"
        );
        assert_eq!(e.err_type, "Bad Request");
        req["thinking"]["budget_tokens"] = json!(1024);
        assert!(
            validate_anthropic_schema(&req, VllmRelease::V0_34, AnthropicKind::Messages).is_ok()
        );
    }

    #[test]
    fn rejects_system_role_in_0_11() {
        let req = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]});
        let e = validate_anthropic_schema(&req, VllmRelease::V0_11, AnthropicKind::Messages)
            .unwrap_err();
        assert!(e.always_openai_shape);
        assert!(
            e.message.contains("Input should be 'user' or 'assistant'"),
            "{}",
            e.message
        );
    }
}
