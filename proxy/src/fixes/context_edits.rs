//! Anthropic's `context_management` edits, done by the gateway (pure).
//!
//! Claude Code sends `context_management: {"edits": [...]}` expecting the API to trim old
//! context server-side; no OpenAI backend knows the field, and an Anthropic-protocol one may
//! reject it. The gateway consumes it: `clear_tool_uses_20250919` is carried out here, every
//! other edit type (`clear_thinking_20251015`, `compact_20260112`, …) is dropped with a debug
//! line, and the field itself never leaves the proxy. A malformed field is dropped the same
//! way: context editing is an optimisation, never a reason for a 400.
//!
//! Token counts are the proxy's estimate (`context::estimate_prompt_tokens`), the same figure
//! that clamps `max_tokens`.

use crate::fixes::context::estimate_prompt_tokens;
use crate::protocol::anthropic::{Content, ContentBlock, MessagesRequest, Role};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;

/// What a cleared tool result says instead of its content.
pub const CLEARED_TEXT: &str = "[tool result cleared by the gateway to fit the context window]";

/// Anthropic's defaults for `clear_tool_uses_20250919`.
const DEFAULT_TRIGGER_TOKENS: u64 = 100_000;
const DEFAULT_KEEP: u64 = 3;

/// What the edits removed (for the debug log).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub cleared_tool_uses: usize,
    pub cleared_input_tokens: u64,
}

#[derive(Deserialize)]
struct ContextManagement {
    #[serde(default)]
    edits: Vec<Value>,
}

/// `clear_tool_uses_20250919`, field names and defaults as in Anthropic's API
/// (`BetaClearToolUses20250919EditParam`).
#[derive(Debug, Default, Deserialize)]
struct ClearToolUses {
    /// Default `{"type": "input_tokens", "value": 100000}`.
    trigger: Option<Trigger>,
    /// `{"type": "tool_uses", "value": N}`; default 3.
    keep: Option<Amount>,
    /// `{"type": "input_tokens", "value": N}`: edit only when at least N tokens go.
    clear_at_least: Option<Amount>,
    #[serde(default)]
    exclude_tools: Vec<String>,
    /// `true` (every cleared use) or the tool names whose inputs go too.
    clear_tool_inputs: Option<ClearInputs>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Trigger {
    InputTokens { value: u64 },
    ToolUses { value: u64 },
}

#[derive(Debug, Deserialize)]
struct Amount {
    value: u64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClearInputs {
    All(bool),
    Names(Vec<String>),
}

impl ClearInputs {
    fn covers(&self, tool: &str) -> bool {
        match self {
            ClearInputs::All(all) => *all,
            ClearInputs::Names(names) => names.iter().any(|n| n == tool),
        }
    }
}

/// Takes `context_management` out of the request and carries out the edits it can.
pub fn apply(req: &mut MessagesRequest) -> Applied {
    let Some(field) = req.extra.remove("context_management") else {
        return Applied::default();
    };
    let edits = match serde_json::from_value::<ContextManagement>(field) {
        Ok(cm) => cm.edits,
        Err(e) => {
            tracing::debug!(error = %e, "context_management not understood; dropped");
            return Applied::default();
        }
    };
    let mut total = Applied::default();
    for edit in edits {
        let kind = edit.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "clear_tool_uses_20250919" {
            tracing::debug!(edit = kind, "context edit not done by the gateway; dropped");
            continue;
        }
        match serde_json::from_value::<ClearToolUses>(edit) {
            Ok(cfg) => {
                let done = clear_tool_uses(req, &cfg);
                total.cleared_tool_uses += done.cleared_tool_uses;
                total.cleared_input_tokens += done.cleared_input_tokens;
            }
            Err(e) => tracing::debug!(error = %e, "clear_tool_uses edit not understood; dropped"),
        }
    }
    total
}

/// Anthropic's tool result clearing: once the trigger is passed, the results of all but the
/// `keep` most recent tool uses become [`CLEARED_TEXT`], oldest first; `keep` counts every
/// tool use, and uses of `exclude_tools` are never cleared. With `clear_at_least`, nothing
/// changes unless that many tokens go (Anthropic: "context will only be modified if at least
/// this many tokens can be removed"), as a cleared prefix costs a prefix-cache miss.
fn clear_tool_uses(req: &mut MessagesRequest, cfg: &ClearToolUses) -> Applied {
    let before = estimate_prompt_tokens(req);
    let uses = tool_uses(req);
    let triggered = match cfg.trigger {
        None => before > DEFAULT_TRIGGER_TOKENS,
        Some(Trigger::InputTokens { value }) => before > value,
        Some(Trigger::ToolUses { value }) => uses.len() as u64 > value,
    };
    let keep = cfg.keep.as_ref().map_or(DEFAULT_KEEP, |k| k.value);
    let older = uses
        .len()
        .saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
    let targets: Vec<&(String, String)> = uses[..older]
        .iter()
        .filter(|(_, name)| !cfg.exclude_tools.contains(name))
        .collect();
    if !triggered || targets.is_empty() {
        return Applied::default();
    }
    let results: HashSet<&str> = targets.iter().map(|(id, _)| id.as_str()).collect();
    let inputs: HashSet<&str> = targets
        .iter()
        .filter(|(_, name)| {
            cfg.clear_tool_inputs
                .as_ref()
                .is_some_and(|c| c.covers(name))
        })
        .map(|(id, _)| id.as_str())
        .collect();
    let mut edited = req.clone();
    let cleared_tool_uses = clear(&mut edited, &results, &inputs);
    let cleared_input_tokens = before.saturating_sub(estimate_prompt_tokens(&edited));
    let at_least = cfg.clear_at_least.as_ref().map_or(0, |a| a.value);
    if cleared_input_tokens < at_least || cleared_tool_uses == 0 {
        tracing::debug!(
            cleared_input_tokens,
            at_least,
            "tool result clearing skipped: too little to clear"
        );
        return Applied::default();
    }
    *req = edited;
    Applied {
        cleared_tool_uses,
        cleared_input_tokens,
    }
}

/// (id, tool name) of every `tool_use` in assistant turns, oldest first.
fn tool_uses(req: &MessagesRequest) -> Vec<(String, String)> {
    req.messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .filter_map(|m| match &m.content {
            Content::Blocks(blocks) => Some(blocks),
            Content::Text(_) => None,
        })
        .flatten()
        .filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, .. } => Some((id.clone(), name.clone())),
            _ => None,
        })
        .collect()
}

/// Replaces the results (and, for `inputs`, the inputs) of the given tool uses; returns how
/// many results changed (already-cleared ones do not count).
fn clear(req: &mut MessagesRequest, results: &HashSet<&str>, inputs: &HashSet<&str>) -> usize {
    let mut changed = 0;
    for m in &mut req.messages {
        let Content::Blocks(blocks) = &mut m.content else {
            continue;
        };
        for b in blocks.iter_mut() {
            match b {
                ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    ..
                } if results.contains(tool_use_id.as_str()) && !is_cleared(content.as_ref()) => {
                    *content = Some(Content::Text(CLEARED_TEXT.to_owned()));
                    changed += 1;
                }
                ContentBlock::ToolUse { id, input, .. } if inputs.contains(id.as_str()) => {
                    *input = Value::Object(Default::default());
                }
                _ => {}
            }
        }
    }
    changed
}

fn is_cleared(content: Option<&Content>) -> bool {
    matches!(content, Some(Content::Text(t)) if t == CLEARED_TEXT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Five tool uses t1..t5 (t2 and t4 are `Read`, the others `Bash`), each result 4000
    /// bytes ≈ 1000 estimated tokens.
    fn conversation(context_management: Value) -> MessagesRequest {
        let mut messages = vec![json!({"role": "user", "content": "start"})];
        for i in 1..=5 {
            let name = if i % 2 == 0 { "Read" } else { "Bash" };
            messages.push(json!({"role": "assistant", "content": [
                {"type": "tool_use", "id": format!("t{i}"), "name": name, "input": {"command": "x".repeat(400)}}]}));
            messages.push(json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": format!("t{i}"), "content": "r".repeat(4000)}]}));
        }
        serde_json::from_value(json!({"model": "m", "max_tokens": 1, "messages": messages,
            "context_management": context_management}))
        .unwrap()
    }

    /// Ids of cleared results, and of tool uses whose input was cleared.
    fn cleared(req: &MessagesRequest) -> (Vec<String>, Vec<String>) {
        let (mut results, mut inputs) = (Vec::new(), Vec::new());
        for m in &req.messages {
            let Content::Blocks(blocks) = &m.content else {
                continue;
            };
            for b in blocks {
                match b {
                    ContentBlock::ToolResult {
                        tool_use_id,
                        content: Some(Content::Text(t)),
                        ..
                    } if t == CLEARED_TEXT => results.push(tool_use_id.clone()),
                    ContentBlock::ToolUse { id, input, .. } if input == &json!({}) => {
                        inputs.push(id.clone())
                    }
                    _ => {}
                }
            }
        }
        (results, inputs)
    }

    #[test]
    fn oldest_results_are_cleared_keeping_the_most_recent() {
        let mut r = conversation(json!({"edits": [{"type": "clear_tool_uses_20250919",
            "trigger": {"type": "input_tokens", "value": 3000},
            "keep": {"type": "tool_uses", "value": 2}}]}));
        let before = estimate_prompt_tokens(&r);
        let applied = apply(&mut r);
        assert_eq!(
            cleared(&r),
            (vec!["t1".into(), "t2".into(), "t3".into()], vec![])
        );
        assert_eq!(applied.cleared_tool_uses, 3);
        // 3 × 4000 bytes out, 3 × 62 bytes of placeholder in: 11814 bytes ≈ 2953 tokens.
        assert_eq!(applied.cleared_input_tokens, 2953);
        assert_eq!(estimate_prompt_tokens(&r), before - 2953);
        assert!(!r.extra.contains_key("context_management"));
    }

    #[test]
    fn defaults_trigger_at_100k_and_keep_three() {
        let mut small = conversation(json!({"edits": [{"type": "clear_tool_uses_20250919"}]}));
        assert_eq!(apply(&mut small), Applied::default());
        assert_eq!(cleared(&small).0.len(), 0);
        // Over 100k estimated tokens: all but the last three results go.
        let mut big = conversation(json!({"edits": [{"type": "clear_tool_uses_20250919"}]}));
        big.messages[0].content = Content::Text("w".repeat(400_000));
        apply(&mut big);
        assert_eq!(cleared(&big).0, ["t1", "t2"]);
    }

    #[test]
    fn excluded_tools_are_never_cleared_and_inputs_go_when_asked() {
        let mut r = conversation(json!({"edits": [{"type": "clear_tool_uses_20250919",
            "trigger": {"type": "tool_uses", "value": 4},
            "keep": {"type": "tool_uses", "value": 1},
            "exclude_tools": ["Read"],
            "clear_tool_inputs": true}]}));
        apply(&mut r);
        assert_eq!(
            cleared(&r),
            (
                vec!["t1".into(), "t3".into()],
                vec!["t1".into(), "t3".into()]
            )
        );
        // Inputs of named tools only.
        let mut r = conversation(json!({"edits": [{"type": "clear_tool_uses_20250919",
            "trigger": {"type": "tool_uses", "value": 4},
            "keep": {"type": "tool_uses", "value": 1},
            "clear_tool_inputs": ["Read"]}]}));
        apply(&mut r);
        assert_eq!(
            cleared(&r),
            (
                vec!["t1".into(), "t2".into(), "t3".into(), "t4".into()],
                vec!["t2".into(), "t4".into()]
            )
        );
    }

    #[test]
    fn clear_at_least_leaves_the_request_alone_when_too_little_would_go() {
        let edit = |at_least: u64| {
            json!({"edits": [{"type": "clear_tool_uses_20250919",
                "trigger": {"type": "input_tokens", "value": 1000},
                "keep": {"type": "tool_uses", "value": 3},
                "clear_at_least": {"type": "input_tokens", "value": at_least}}]})
        };
        // Two results can go: 2 × (4000 − 62) bytes = 1969 tokens.
        let mut r = conversation(edit(2000));
        assert_eq!(apply(&mut r), Applied::default());
        assert_eq!(cleared(&r).0.len(), 0);
        let mut r = conversation(edit(1969));
        assert_eq!(
            apply(&mut r),
            Applied {
                cleared_tool_uses: 2,
                cleared_input_tokens: 1969
            }
        );
    }

    #[test]
    fn not_triggered_below_the_threshold() {
        let mut r = conversation(json!({"edits": [{"type": "clear_tool_uses_20250919",
            "trigger": {"type": "tool_uses", "value": 5}}]}));
        assert_eq!(apply(&mut r), Applied::default());
        assert!(!r.extra.contains_key("context_management"));
    }

    #[test]
    fn other_edits_and_malformed_fields_are_dropped_without_error() {
        for cm in [
            json!({"edits": [{"type": "clear_thinking_20251015", "keep": "all"},
                             {"type": "compact_20260112"}]}),
            json!({"edits": [{"type": "clear_tool_uses_20250919", "keep": "lots"}]}),
            json!("nonsense"),
        ] {
            let mut r = conversation(cm);
            assert_eq!(apply(&mut r), Applied::default());
            assert!(!r.extra.contains_key("context_management"));
            assert_eq!(cleared(&r).0.len(), 0);
        }
    }
}
