//! Anthropic Messages request → OpenAI Chat Completions request (pure).

use crate::error::ApiError;
use crate::protocol::anthropic::{
    Content, ContentBlock, ImageSource, Message, MessagesRequest, Role, SystemPrompt, ThinkingKind,
    ToolChoice,
};
use crate::protocol::openai::{
    ChatContent, ChatMessage, ChatRequest, ChatTool, ContentPart, FunctionCall, FunctionDef,
    ImageUrl, StreamOptions, ToolCall,
};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use switchyard_api::{ParameterPolicy, ThinkingStyle};

/// What a backend needs to know to shape its request.
#[derive(Debug, Clone)]
pub struct BackendShape<'a> {
    pub served_model: &'a str,
    pub thinking: ThinkingStyle,
    pub parameters: &'a ParameterPolicy,
}

/// The translated request and the names of the client fields it could not carry over.
#[derive(Debug)]
pub struct Translated {
    pub request: ChatRequest,
    pub dropped: Vec<String>,
}

/// Anthropic-only top-level fields that have no OpenAI meaning; dropping them is expected and
/// not worth reporting.
const ANTHROPIC_ONLY: &[&str] = &[
    "context_management",
    "container",
    "mcp_servers",
    "service_tier",
];

pub fn to_openai(
    req: MessagesRequest,
    max_tokens: u32,
    shape: &BackendShape,
) -> Result<Translated, ApiError> {
    let mut dropped: Vec<String> = req
        .extra
        .keys()
        .filter(|k| !ANTHROPIC_ONLY.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system {
        let text = system_text(system);
        if !text.is_empty() {
            messages.push(ChatMessage::new("system", ChatContent::Text(text)));
        }
    }
    let turns = merge_turns(req.messages);
    check_tool_pairs(&turns)?;
    for (i, m) in turns {
        match m.role {
            Role::User | Role::System => user_messages(m.role, m.content, &mut messages, i)?,
            Role::Assistant => push_merged(&mut messages, assistant_message(m.content)),
        }
    }

    let mut tools = Vec::new();
    for t in req.tools.unwrap_or_default() {
        // Server tools (`web_search_20250305`, …) run on Anthropic's side; a backend cannot.
        if t.kind.as_deref().is_some_and(|k| k != "custom") {
            dropped.push(format!("tools[{}]", t.name));
            continue;
        }
        tools.push(ChatTool {
            kind: "function",
            function: FunctionDef {
                name: t.name,
                description: t.description.unwrap_or_default(),
                parameters: t
                    .input_schema
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            },
        });
    }

    let mut params = Map::new();
    let tool_choice = match (&req.tool_choice, tools.is_empty()) {
        (_, true) => None,
        (None, false) => None,
        (Some(choice), false) => Some(tool_choice(choice, &mut params)),
    };
    if let Some(t) = req.temperature {
        params.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        params.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        params.insert("top_k".into(), json!(k));
    }
    if let Some(stop) = req.stop_sequences.filter(|s| !s.is_empty()) {
        params.insert("stop".into(), json!(stop));
    }
    if let Some(user) = req.metadata.and_then(|m| m.user_id) {
        params.insert("user".into(), json!(user));
    }
    let effort = req.output_config.and_then(|o| o.effort);
    thinking_switch(
        resolve_style(shape.thinking, shape.served_model),
        req.thinking.as_ref().map(|t| (t.kind, t.budget_tokens)),
        effort.as_deref(),
        &mut params,
    );
    for (k, v) in req.openai_params {
        match (params.get_mut(&k), v) {
            // The client's own template switches beside the proxy's thinking switch, which
            // wins where both set one.
            (Some(Value::Object(ours)), Value::Object(theirs)) => {
                for (name, value) in theirs {
                    ours.entry(name).or_insert(value);
                }
            }
            (Some(_), _) => {}
            (None, v) => {
                params.insert(k, v);
            }
        }
    }
    for (k, v) in &shape.parameters.extra_body {
        params.insert(k.clone(), v.clone());
    }
    let mut continuous_usage = true;
    for name in &shape.parameters.drop {
        if name == "continuous_usage_stats" {
            continuous_usage = false;
        } else if params.remove(name).is_some() {
            dropped.push(name.clone());
        }
    }

    Ok(Translated {
        request: ChatRequest {
            model: shape.served_model.to_owned(),
            messages,
            max_tokens: Some(max_tokens),
            stream: req.stream,
            stream_options: req.stream.then_some(StreamOptions {
                include_usage: true,
                continuous_usage_stats: continuous_usage,
            }),
            tools,
            tool_choice,
            params,
        },
        dropped,
    })
}

/// gpt-oss takes `reasoning_effort`; everything else served by vLLM takes template kwargs.
pub fn resolve_style(style: ThinkingStyle, served_model: &str) -> ThinkingStyle {
    match style {
        ThinkingStyle::Auto if served_model.to_ascii_lowercase().contains("gpt-oss") => {
            ThinkingStyle::ReasoningEffort
        }
        ThinkingStyle::Auto => ThinkingStyle::ChatTemplateKwargs,
        other => other,
    }
}

/// Anthropic's `thinking` (absent means off) and `output_config.effort` → the backend switch.
fn thinking_switch(
    style: ThinkingStyle,
    thinking: Option<(ThinkingKind, Option<u32>)>,
    effort: Option<&str>,
    params: &mut Map<String, Value>,
) {
    let on = matches!(
        thinking,
        Some((ThinkingKind::Enabled | ThinkingKind::Adaptive, _))
    );
    match style {
        ThinkingStyle::ChatTemplateKwargs => {
            // Qwen3/GLM read `enable_thinking`, DeepSeek V3.1 reads `thinking`.
            params.insert(
                "chat_template_kwargs".into(),
                json!({"enable_thinking": on, "thinking": on}),
            );
        }
        ThinkingStyle::ReasoningEffort => {
            let level = match thinking {
                None | Some((ThinkingKind::Disabled, _)) => "low",
                Some((ThinkingKind::Enabled, Some(budget))) if budget < 4_096 => "low",
                Some((ThinkingKind::Enabled, Some(budget))) if budget < 16_384 => "medium",
                Some((ThinkingKind::Enabled, Some(_))) => "high",
                Some(_) => match effort {
                    Some("low") => "low",
                    Some("high" | "xhigh" | "max") => "high",
                    _ => "medium",
                },
            };
            params.insert("reasoning_effort".into(), json!(level));
        }
        ThinkingStyle::None | ThinkingStyle::Auto => {}
    }
}

fn tool_choice(choice: &ToolChoice, params: &mut Map<String, Value>) -> Value {
    let (value, extra) = match choice {
        ToolChoice::Auto { extra } => (json!("auto"), extra),
        ToolChoice::Any { extra } => (json!("required"), extra),
        ToolChoice::None { extra } => (json!("none"), extra),
        ToolChoice::Tool { name, extra } => (
            json!({"type": "function", "function": {"name": name}}),
            extra,
        ),
    };
    if extra.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
        params.insert("parallel_tool_calls".into(), json!(false));
    }
    value
}

fn system_text(system: SystemPrompt) -> String {
    match system {
        SystemPrompt::Text(t) => t,
        SystemPrompt::Blocks(blocks) => blocks
            .into_iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text, .. } => Some(text),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// A user turn: its tool results become `role: tool` messages (which must directly follow the
/// assistant's tool calls), the rest one user message.
fn user_messages(
    role: Role,
    content: Content,
    out: &mut Vec<ChatMessage>,
    index: usize,
) -> Result<(), ApiError> {
    let mut parts: Vec<ContentPart> = Vec::new();
    // Images a tool returned: OpenAI tool messages carry text only, so they follow as user input.
    let mut tool_images: Vec<ContentPart> = Vec::new();
    for block in content.into_blocks() {
        match block {
            ContentBlock::Text { text, .. } => parts.push(ContentPart::Text { text }),
            ContentBlock::Image { source, .. } => parts.push(image_part(source)),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                let mut text = String::new();
                for inner in content.map(Content::into_blocks).unwrap_or_default() {
                    match inner {
                        ContentBlock::Text { text: t, .. } => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(&t);
                        }
                        ContentBlock::Image { source, .. } => tool_images.push(image_part(source)),
                        other => text.push_str(&fallback_text(&other)),
                    }
                }
                if is_error == Some(true) {
                    text.insert_str(0, "Error: ");
                }
                out.push(ChatMessage {
                    role: "tool",
                    content: Some(ChatContent::Text(text)),
                    reasoning_content: None,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(tool_use_id),
                });
            }
            ContentBlock::ToolUse { .. } => {
                return Err(ApiError::invalid(format!(
                    "messages.{index}: tool_use blocks may only appear in assistant messages"
                )))
            }
            other => parts.push(ContentPart::Text {
                text: fallback_text(&other),
            }),
        }
    }
    parts.extend(tool_images);
    parts.retain(|p| !matches!(p, ContentPart::Text { text } if text.is_empty()));
    if parts.is_empty() {
        return Ok(());
    }
    let role = if role == Role::System {
        "system"
    } else {
        "user"
    };
    push_merged(out, ChatMessage::new(role, join_parts(parts)));
    Ok(())
}

/// Consecutive messages of one role become one turn, as Anthropic treats them; chat
/// templates that want user and assistant to alternate (Mistral, Gemma, …) raise otherwise.
/// Each turn keeps the index of its first message, for error messages.
fn merge_turns(messages: Vec<Message>) -> Vec<(usize, Message)> {
    let mut turns: Vec<(usize, Message)> = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        match turns.last_mut() {
            Some((_, prev)) if prev.role == m.role && m.role != Role::System => {
                let content = std::mem::replace(&mut prev.content, Content::Blocks(Vec::new()));
                let mut blocks = content.into_blocks();
                blocks.extend(m.content.into_blocks());
                prev.content = Content::Blocks(blocks);
            }
            _ => turns.push((i, m)),
        }
    }
    turns
}

fn tool_use_ids(content: &Content) -> Vec<&str> {
    match content {
        Content::Text(_) => Vec::new(),
        Content::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolUse { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect(),
    }
}

/// Anthropic's rule, which vLLM's chat templates rely on as well: the tool calls of an
/// assistant turn are all answered by `tool_result` blocks in the next turn, and a
/// `tool_result` answers a call of the turn just before. (A final assistant turn may hold
/// unanswered calls: it is a prefill.) Anthropic's wording.
fn check_tool_pairs(turns: &[(usize, Message)]) -> Result<(), ApiError> {
    // In order (for the error message) and as a set (a turn may hold thousands).
    let mut calls: Vec<&str> = Vec::new();
    let mut call_set: HashSet<&str> = HashSet::new();
    let mut calls_at = 0;
    for (i, m) in turns {
        let Content::Blocks(blocks) = &m.content else {
            if m.role == Role::System {
                continue;
            }
            unanswered(&calls, &HashSet::new(), calls_at)?;
            calls.clear();
            call_set.clear();
            continue;
        };
        if m.role == Role::System
            && blocks
                .iter()
                .all(|b| !matches!(b, ContentBlock::ToolResult { .. }))
        {
            continue;
        }
        let mut answered: HashSet<&str> = HashSet::new();
        for (j, b) in blocks.iter().enumerate() {
            if let ContentBlock::ToolResult { tool_use_id, .. } = b {
                if m.role != Role::User || !call_set.contains(tool_use_id.as_str()) {
                    return Err(ApiError::invalid(format!(
                        "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )));
                }
                answered.insert(tool_use_id);
            }
        }
        unanswered(&calls, &answered, calls_at)?;
        calls = tool_use_ids(&m.content);
        call_set = calls.iter().copied().collect();
        calls_at = *i;
    }
    Ok(())
}

fn unanswered(calls: &[&str], answered: &HashSet<&str>, at: usize) -> Result<(), ApiError> {
    let missing: Vec<&str> = calls
        .iter()
        .copied()
        .filter(|id| !answered.contains(id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "messages.{at}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
        missing.join(", ")
    )))
}

/// Appends a message, merging it into the previous one when both are user or both are
/// assistant turns (a turn left empty in between, e.g. one holding only thinking, drops out).
fn push_merged(out: &mut Vec<ChatMessage>, msg: ChatMessage) {
    let Some(prev) = out.last_mut() else {
        out.push(msg);
        return;
    };
    if prev.role != msg.role || !matches!(msg.role, "user" | "assistant") {
        out.push(msg);
        return;
    }
    if msg.role == "assistant" {
        let mut text = match prev.content.take() {
            Some(ChatContent::Text(t)) => t,
            _ => String::new(),
        };
        if let Some(ChatContent::Text(t)) = msg.content {
            text.push_str(&t);
        }
        match (&mut prev.reasoning_content, msg.reasoning_content) {
            (Some(r), Some(more)) => r.push_str(&more),
            (slot @ None, more) => *slot = more,
            (Some(_), None) => {}
        }
        prev.tool_calls.extend(msg.tool_calls);
        prev.content =
            (!text.is_empty() || prev.tool_calls.is_empty()).then_some(ChatContent::Text(text));
    } else {
        let mut parts = content_parts(prev.content.take());
        parts.extend(content_parts(msg.content));
        prev.content = Some(join_parts(parts));
    }
}

fn content_parts(content: Option<ChatContent>) -> Vec<ContentPart> {
    match content {
        None => Vec::new(),
        Some(ChatContent::Text(text)) => vec![ContentPart::Text { text }],
        Some(ChatContent::Parts(parts)) => parts,
    }
}

/// Text-only content as one string: every chat template handles that form.
fn join_parts(parts: Vec<ContentPart>) -> ChatContent {
    if parts.iter().all(|p| matches!(p, ContentPart::Text { .. })) {
        let texts: Vec<String> = parts
            .into_iter()
            .map(|p| match p {
                ContentPart::Text { text } => text,
                ContentPart::ImageUrl { .. } => unreachable!("filtered above"),
            })
            .collect();
        ChatContent::Text(texts.join("\n\n"))
    } else {
        ChatContent::Parts(parts)
    }
}

fn image_part(source: ImageSource) -> ContentPart {
    let url = match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url,
    };
    ContentPart::ImageUrl {
        image_url: ImageUrl { url },
    }
}

/// Blocks with no OpenAI counterpart, as text the model can still read.
fn fallback_text(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Document { source, .. } => match source.get("type").and_then(Value::as_str) {
            Some("text") => source
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => "[document omitted: this backend accepts text documents only]".to_owned(),
        },
        ContentBlock::ToolReference { tool_name, .. } => crate::fixes::tool_loaded_text(tool_name),
        // Thinking in a user turn has no meaning; previous-turn thinking is handled on assistant turns.
        _ => String::new(),
    }
}

/// A tool call's `input` as the JSON object string vLLM needs: templates iterate the
/// arguments as a mapping and raise on anything else. An object encoded as a string (some
/// clients send that) is taken as the object; anything else becomes `{}`.
fn tool_arguments(input: Value) -> String {
    match input {
        Value::Object(_) => input.to_string(),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(v @ Value::Object(_)) => v.to_string(),
            _ => "{}".into(),
        },
        _ => "{}".into(),
    }
}

fn assistant_message(content: Content) -> ChatMessage {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in content.into_blocks() {
        match block {
            ContentBlock::Text { text: t, .. } => text.push_str(&t),
            ContentBlock::Thinking { thinking, .. } => reasoning.push_str(&thinking),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => tool_calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: tool_arguments(input),
                },
            }),
            _ => {}
        }
    }
    ChatMessage {
        role: "assistant",
        content: (!text.is_empty() || tool_calls.is_empty()).then_some(ChatContent::Text(text)),
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        tool_calls,
        tool_call_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn translate(req: Value, style: ThinkingStyle, policy: &ParameterPolicy) -> Translated {
        let req: MessagesRequest = serde_json::from_value(req).unwrap();
        let shape = BackendShape {
            served_model: "served",
            thinking: style,
            parameters: policy,
        };
        to_openai(req, 500, &shape).unwrap()
    }

    fn chat(req: Value) -> Value {
        serde_json::to_value(
            translate(req, ThinkingStyle::Auto, &ParameterPolicy::default()).request,
        )
        .unwrap()
    }

    #[test]
    fn sampling_fields_stop_sequences_and_user_are_kept() {
        let c = chat(
            json!({"model": "m", "max_tokens": 9, "temperature": 0.2, "top_p": 0.9, "top_k": 40,
            "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
            "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(c["model"], "served");
        assert_eq!(c["max_tokens"], 500);
        assert_eq!(c["temperature"], 0.2);
        assert_eq!(c["top_p"], 0.9);
        assert_eq!(c["top_k"], 40);
        assert_eq!(c["stop"], json!(["END"]));
        assert_eq!(c["user"], "u1");
        assert!(
            c.get("stream_options").is_none(),
            "only streams ask for usage chunks"
        );
    }

    #[test]
    fn tool_choice_variants() {
        let tools = json!([{"name": "Bash", "input_schema": {"type": "object"}}]);
        let cases = [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "Bash"}),
                json!({"type": "function", "function": {"name": "Bash"}}),
            ),
        ];
        for (choice, want) in cases {
            let c = chat(
                json!({"model": "m", "max_tokens": 9, "tools": tools, "tool_choice": choice,
                "messages": [{"role": "user", "content": "hi"}]}),
            );
            assert_eq!(c["tool_choice"], want);
        }
        let c = chat(json!({"model": "m", "max_tokens": 9, "tools": tools,
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(c["parallel_tool_calls"], false);
    }

    #[test]
    fn tool_loop_with_error_result_images_and_prior_thinking() {
        let c = chat(json!({"model": "m", "max_tokens": 9, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/x"}},
                {"type": "tool_use", "id": "t2", "name": "Shot", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "is_error": true, "content": "no such file"},
                {"type": "tool_result", "tool_use_id": "t2", "content": [
                    {"type": "text", "text": "screenshot:"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.invalid/a.png"}}]},
                {"type": "text", "text": "continue"}]}]}));
        let m = c["messages"].as_array().unwrap();
        assert_eq!(
            m[0]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})
        );
        assert_eq!(m[1]["reasoning_content"], "hmm");
        assert_eq!(m[1]["content"], "Checking.");
        assert_eq!(
            m[1]["tool_calls"][0]["function"],
            json!({"name": "Read", "arguments": "{\"file_path\":\"/x\"}"})
        );
        assert_eq!(m[1]["tool_calls"][1]["function"]["arguments"], "{}");
        assert_eq!(
            m[2],
            json!({"role": "tool", "tool_call_id": "t1", "content": "Error: no such file"})
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "t2", "content": "screenshot:"})
        );
        assert_eq!(m[4]["role"], "user");
        assert_eq!(
            m[4]["content"][0],
            json!({"type": "text", "text": "continue"})
        );
        assert_eq!(
            m[4]["content"][1]["image_url"]["url"],
            "https://example.invalid/a.png"
        );
    }

    #[test]
    fn thinking_maps_to_each_backend_switch() {
        let base = |thinking: Value, effort: Option<&str>| {
            let mut r = json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]});
            if !thinking.is_null() {
                r["thinking"] = thinking;
            }
            if let Some(e) = effort {
                r["output_config"] = json!({"effort": e});
            }
            r
        };
        let policy = ParameterPolicy::default();
        let kwargs = |r| {
            serde_json::to_value(translate(r, ThinkingStyle::ChatTemplateKwargs, &policy).request)
                .unwrap()
        };
        assert_eq!(
            kwargs(base(json!({"type": "adaptive"}), None))["chat_template_kwargs"]
                ["enable_thinking"],
            true
        );
        assert_eq!(
            kwargs(base(json!({"type": "disabled"}), None))["chat_template_kwargs"]
                ["enable_thinking"],
            false
        );
        assert_eq!(
            kwargs(base(Value::Null, None))["chat_template_kwargs"]["enable_thinking"],
            false
        );
        let effort = |r| {
            serde_json::to_value(translate(r, ThinkingStyle::ReasoningEffort, &policy).request)
                .unwrap()["reasoning_effort"]
                .clone()
        };
        assert_eq!(
            effort(base(json!({"type": "adaptive"}), Some("high"))),
            "high"
        );
        assert_eq!(effort(base(json!({"type": "adaptive"}), None)), "medium");
        assert_eq!(
            effort(base(
                json!({"type": "enabled", "budget_tokens": 2000}),
                None
            )),
            "low"
        );
        assert_eq!(
            effort(base(
                json!({"type": "enabled", "budget_tokens": 32000}),
                None
            )),
            "high"
        );
        assert_eq!(effort(base(json!({"type": "disabled"}), None)), "low");
        assert_eq!(
            resolve_style(ThinkingStyle::Auto, "openai/gpt-oss-120b"),
            ThinkingStyle::ReasoningEffort
        );
        let none = serde_json::to_value(
            translate(
                base(json!({"type": "adaptive"}), None),
                ThinkingStyle::None,
                &policy,
            )
            .request,
        )
        .unwrap();
        assert!(
            none.get("chat_template_kwargs").is_none() && none.get("reasoning_effort").is_none()
        );
    }

    #[test]
    fn parameter_policy_drops_and_adds_and_reports() {
        let policy = ParameterPolicy {
            drop: vec!["top_k".into(), "continuous_usage_stats".into()],
            extra_body: [("repetition_penalty".to_owned(), json!(1.05))]
                .into_iter()
                .collect(),
        };
        let t = translate(
            json!({"model": "m", "max_tokens": 9, "top_k": 5, "stream": true, "context_management": {}, "speed": "fast",
                "tools": [{"name": "web_search", "type": "web_search_20250305"}],
                "messages": [{"role": "user", "content": "hi"}]}),
            ThinkingStyle::None,
            &policy,
        );
        let c = serde_json::to_value(&t.request).unwrap();
        assert!(c.get("top_k").is_none());
        assert_eq!(c["repetition_penalty"], 1.05);
        assert_eq!(
            c["stream_options"],
            json!({"include_usage": true, "continuous_usage_stats": false})
        );
        assert!(
            c.get("tools").is_none(),
            "server tools cannot run on a backend"
        );
        assert_eq!(t.dropped, ["speed", "tools[web_search]", "top_k"]);
    }

    fn try_chat(messages: Value) -> Result<Value, ApiError> {
        let req: MessagesRequest =
            serde_json::from_value(json!({"model": "m", "max_tokens": 9, "messages": messages}))
                .unwrap();
        let policy = ParameterPolicy::default();
        let shape = BackendShape {
            served_model: "served",
            thinking: ThinkingStyle::None,
            parameters: &policy,
        };
        to_openai(req, 500, &shape).map(|t| serde_json::to_value(t.request).unwrap())
    }

    #[test]
    fn tool_use_input_that_is_not_an_object_becomes_an_object_string() {
        let c = try_chat(json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "a", "name": "X", "input": 5},
                {"type": "tool_use", "id": "b", "name": "X", "input": [1]},
                {"type": "tool_use", "id": "c", "name": "X", "input": "{\"k\": 1}"},
                {"type": "tool_use", "id": "d", "name": "X", "input": "ls"}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "a"}, {"type": "tool_result", "tool_use_id": "b"},
                {"type": "tool_result", "tool_use_id": "c"}, {"type": "tool_result", "tool_use_id": "d"}]}
        ]))
        .unwrap();
        let args: Vec<&str> = c["messages"][1]["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(args, ["{}", "{}", r#"{"k":1}"#, "{}"]);
    }

    #[test]
    fn consecutive_turns_of_one_role_are_merged() {
        let c = try_chat(json!([
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            // Empty once translated: the assistant turns around it meet.
            {"role": "user", "content": [{"type": "thinking", "thinking": "x"}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"},
                {"type": "tool_use", "id": "t1", "name": "X", "input": {}}]},
            {"role": "user", "content": "ignored first"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]}
        ]))
        .unwrap();
        assert_eq!(
            c["messages"],
            json!([
                {"role": "user", "content": "a\n\nb"},
                {"role": "assistant", "content": "c", "reasoning_content": "t",
                 "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "X", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "r"},
                {"role": "user", "content": "ignored first"}
            ])
        );
    }

    #[test]
    fn many_tool_calls_in_one_turn_are_paired_in_linear_time() {
        let n = 10_000;
        let calls: Vec<Value> = (0..n)
            .map(|i| json!({"type": "tool_use", "id": format!("t{i}"), "name": "X", "input": {}}))
            .collect();
        let results: Vec<Value> = (0..n)
            .rev()
            .map(|i| json!({"type": "tool_result", "tool_use_id": format!("t{i}")}))
            .collect();
        let started = std::time::Instant::now();
        let c = try_chat(json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": calls},
            {"role": "user", "content": results}
        ]))
        .unwrap();
        assert_eq!(c["messages"].as_array().unwrap().len(), 2 + n);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn unpaired_tool_results_and_calls_are_refused_as_anthropic_does() {
        let orphan = try_chat(json!([
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "r"}]}
        ]))
        .unwrap_err();
        assert_eq!(orphan.kind, crate::error::ErrorKind::InvalidRequest);
        assert!(
            orphan
                .message
                .starts_with("messages.0.content.0: unexpected `tool_use_id`"),
            "{}",
            orphan.message
        );
        let unanswered = try_chat(json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "X", "input": {}},
                {"type": "tool_use", "id": "t2", "name": "X", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]}
        ]))
        .unwrap_err();
        assert!(
            unanswered
                .message
                .starts_with("messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t2."),
            "{}",
            unanswered.message
        );
        let in_assistant = try_chat(json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}
        ]));
        assert!(in_assistant.is_err());
        // A final assistant turn is a prefill: its calls need no answer yet.
        let prefill = try_chat(json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "X", "input": {}}]}
        ]));
        assert!(prefill.is_ok());
    }
}
