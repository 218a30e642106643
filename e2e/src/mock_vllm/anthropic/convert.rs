//! Anthropic request validation (vLLM 0.11's `AnthropicMessagesRequest`
//! pydantic model) and conversion to a chat-completions body
//! (`_convert_anthropic_to_openai_request`).

use serde_json::{json, Map, Value};

use crate::mock_vllm::errors::{ApiError, Loc, PyVal, PydanticError};
use crate::mock_vllm::scenario::anthropic_block_text;

fn perr(kind: &'static str, loc: Vec<Loc>, msg: &str, input: &Value) -> PydanticError {
    let mut full = vec![Loc::from("body")];
    full.extend(loc);
    PydanticError::new(kind, full, msg, PyVal::from(input))
}

/// Collects pydantic-style errors for `AnthropicMessagesRequest`.
pub(super) fn validate_anthropic_schema(body: &Value) -> Result<(), ApiError> {
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
                match m.get("role") {
                    Some(r) if r == "user" || r == "assistant" => {}
                    Some(r) => {
                        let mut full = vec![Loc::from("body")];
                        full.extend(loc(&["role"]));
                        errors.push(
                            PydanticError::new(
                                "literal_error",
                                full,
                                "Input should be 'user' or 'assistant'",
                                PyVal::from(r),
                            )
                            .with_ctx(vec![("expected", PyVal::str("'user' or 'assistant'"))]),
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
                            let kind = block.get("type").and_then(Value::as_str);
                            const KINDS: &[&str] = &[
                                "text",
                                "image",
                                "tool_use",
                                "tool_result",
                                "thinking",
                                "redacted_thinking",
                            ];
                            match kind {
                                Some(k) if KINDS.contains(&k) => {}
                                _ => {
                                    let mut full = vec![Loc::from("body")];
                                    full.extend(bl.clone());
                                    full.push(Loc::from("type"));
                                    errors.push(
                                        PydanticError::new(
                                            "literal_error",
                                            full,
                                            "Input should be 'text', 'image', 'tool_use', 'tool_result', 'thinking' or 'redacted_thinking'",
                                            PyVal::from(block.get("type").unwrap_or(&Value::Null)),
                                        )
                                        .with_ctx(vec![("expected", PyVal::str("'text', 'image', 'tool_use', 'tool_result', 'thinking' or 'redacted_thinking'"))]),
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
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(&errors))
    }
}

/// Python `json.dumps` (default separators `", "`/`": "`, `ensure_ascii=True`),
/// which vLLM uses to turn `tool_use.input` into `arguments`.
fn py_json_dumps(v: &Value) -> String {
    let mut out = String::new();
    write_py_json(v, &mut out);
    out
}

fn write_py_json(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_json(&Value::String(k.clone()), out);
                out.push_str(": ");
                write_py_json(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// vLLM's `_convert_anthropic_to_openai_request`: the chat-completions body
/// the Anthropic request is served as.  Public so tests can compute the
/// expected prompt token count: `count_prompt_tokens(&anthropic_to_chat(&req))`.
pub fn anthropic_to_chat(req: &Value) -> Value {
    let mut messages: Vec<Value> = Vec::new();
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
    for msg in req
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
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
                                    "arguments": py_json_dumps(&input),
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
    fn rejects_system_role() {
        let req = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]});
        let e = validate_anthropic_schema(&req).unwrap_err();
        assert!(e.always_openai_shape);
        assert!(
            e.message.contains("Input should be 'user' or 'assistant'"),
            "{}",
            e.message
        );
    }
}
