//! Claude Code fixes, applied in the Anthropic domain before any backend protocol is chosen.
//!
//! Each fix answers something the real CLI sends (see `fixtures/claude-code/README.md`)
//! that an open-model backend mishandles.

pub mod context;
pub mod context_edits;
pub mod server_tools;

use crate::fixes::server_tools::is_server_tool;
use crate::protocol::anthropic::{
    Content, ContentBlock, Message, MessagesRequest, Role, SystemPrompt, ToolChoice,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use switchyard_api::SystemMessagePlacement;

/// Claude Code's first system block; it changes every session (`cc_version=…`), so leaving it
/// in front of the prompt defeats the backend's prefix cache across sessions.
const BILLING_HEADER_PREFIX: &str = "x-anthropic-billing-header:";

/// Applies every fix in place; returns the names of those that changed the request (the
/// request records and the admin UI show them).
pub fn apply(req: &mut MessagesRequest, placement: SystemMessagePlacement) -> Vec<&'static str> {
    let fired = [
        ("billing_header", remove_billing_header(req)),
        ("system_placement", place_system_messages(req, placement)),
        ("server_tools", remove_server_tools(req)),
        ("deferred_tools", resolve_deferred_tools(req)),
        ("schema_repair", repair_tools(req)),
    ];
    fired.iter().filter(|(_, f)| *f).map(|(n, _)| *n).collect()
}

/// True when the billing block was there.
pub fn remove_billing_header(req: &mut MessagesRequest) -> bool {
    match &mut req.system {
        Some(SystemPrompt::Blocks(blocks)) => {
            let before = blocks.len();
            blocks.retain(|b| {
                !matches!(b, ContentBlock::Text { text, .. } if text.starts_with(BILLING_HEADER_PREFIX))
            });
            blocks.len() != before
        }
        Some(SystemPrompt::Text(text)) if text.starts_with(BILLING_HEADER_PREFIX) => {
            // A single string: drop only its first line.
            *text = text
                .split_once('\n')
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or_default();
            true
        }
        _ => false,
    }
}

/// Claude Code sends `role: "system"` entries inside `messages`, often last or
/// mid-conversation; most open-model chat templates raise on a system message that is not
/// first. Their text is kept, placed as the backend's policy says. True when any was moved.
pub fn place_system_messages(req: &mut MessagesRequest, placement: SystemMessagePlacement) -> bool {
    if placement == SystemMessagePlacement::Keep
        || !req.messages.iter().any(|m| m.role == Role::System)
    {
        return false;
    }
    let messages = std::mem::take(&mut req.messages);
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    // System text seen before any user turn to attach it to.
    let mut pending: Vec<ContentBlock> = Vec::new();
    for msg in messages {
        if msg.role != Role::System {
            let mut msg = msg;
            if !pending.is_empty() && msg.role == Role::User {
                let mut blocks = std::mem::take(&mut pending);
                blocks.extend(msg.content.into_blocks());
                msg.content = Content::Blocks(blocks);
            }
            out.push(msg);
            continue;
        }
        let text = msg.content.all_text();
        match placement {
            SystemMessagePlacement::Hoist => append_system(req, text),
            _ => {
                let block =
                    ContentBlock::text(format!("<system-reminder>\n{text}\n</system-reminder>"));
                match out.last_mut() {
                    Some(prev) if prev.role == Role::User => {
                        let content =
                            std::mem::replace(&mut prev.content, Content::Blocks(Vec::new()));
                        let mut blocks = content.into_blocks();
                        blocks.push(block);
                        prev.content = Content::Blocks(blocks);
                    }
                    _ => pending.push(block),
                }
            }
        }
    }
    if !pending.is_empty() {
        out.push(Message {
            role: Role::User,
            content: Content::Blocks(pending),
            extra: Default::default(),
        });
    }
    req.messages = out;
    true
}

fn append_system(req: &mut MessagesRequest, text: String) {
    match &mut req.system {
        None => req.system = Some(SystemPrompt::Text(text)),
        Some(SystemPrompt::Text(existing)) => {
            existing.push_str("\n\n");
            existing.push_str(&text);
        }
        Some(SystemPrompt::Blocks(blocks)) => blocks.push(ContentBlock::text(text)),
    }
}

/// Anthropic's tool search: tools marked `defer_loading` stay hidden from the model until a
/// ToolSearch result names them with a `tool_reference` block. A backend without tool search
/// gets exactly the tools the model is meant to see: the loaded ones plus every referenced
/// deferred one, and each reference becomes a sentence saying that tool is now available.
/// True when a reference was rewritten or a deferred tool dropped.
pub fn resolve_deferred_tools(req: &mut MessagesRequest) -> bool {
    let mut referenced: HashSet<String> = HashSet::new();
    for m in &mut req.messages {
        if let Content::Blocks(blocks) = &mut m.content {
            for b in blocks.iter_mut() {
                if let ContentBlock::ToolResult {
                    content: Some(Content::Blocks(inner)),
                    ..
                } = b
                {
                    for ib in inner.iter_mut() {
                        if let ContentBlock::ToolReference { tool_name, .. } = ib {
                            referenced.insert(tool_name.clone());
                            *ib = ContentBlock::text(tool_loaded_text(tool_name));
                        }
                    }
                }
            }
        }
    }
    let mut changed = !referenced.is_empty();
    if let Some(tools) = &mut req.tools {
        tools.retain_mut(|t| {
            if t.defer_loading != Some(true) {
                return true;
            }
            t.defer_loading = None;
            changed = true;
            referenced.contains(&t.name)
        });
    }
    changed
}

/// What a `tool_reference` means, said in text for a backend without tool search.
pub fn tool_loaded_text(tool_name: &str) -> String {
    format!("Tool `{tool_name}` is now loaded and available to call.")
}

/// Server tools (`web_search_*`, `web_fetch_*`, …) are Anthropic's to run; a self-hosted model
/// cannot, and chat templates would render them as functions it then calls in vain. They go;
/// so does a `tool_choice` naming one, or any `tool_choice` once no tool is left (backends
/// reject a choice without tools).
/// A request with server tools only never gets here: `server_tools::answer` answers it.
/// True when any was removed.
pub fn remove_server_tools(req: &mut MessagesRequest) -> bool {
    let Some(tools) = &mut req.tools else {
        return false;
    };
    let mut removed = Vec::new();
    tools.retain(|t| {
        let server = is_server_tool(t);
        if server {
            removed.push(t.name.clone());
        }
        !server
    });
    if removed.is_empty() {
        return false;
    }
    tracing::debug!(tools = ?removed, "server tools removed: the backend cannot run them");
    if tools.is_empty() {
        req.tools = None;
        req.tool_choice = None;
    }
    if matches!(&req.tool_choice, Some(ToolChoice::Tool { name, .. }) if removed.contains(name)) {
        req.tool_choice = None;
    }
    true
}

/// Every tool gets a string description and an object schema: templates and OpenAI-style
/// validators reject `null` descriptions and schemas without `type: object`. True when a
/// tool needed it (a `$schema` key alone does not count: every Claude Code tool has one).
pub fn repair_tools(req: &mut MessagesRequest) -> bool {
    let Some(tools) = &mut req.tools else {
        return false;
    };
    let mut changed = false;
    for t in tools.iter_mut() {
        if t.description.is_none() {
            t.description = Some(String::new());
            changed = true;
        }
        let schema = t.input_schema.get_or_insert_with(|| json!({}));
        if let Value::Object(obj) = schema {
            obj.remove("$schema");
            // A tool's arguments are an object whatever the schema says (`"type": "string"`,
            // `["object", "null"]`, …); templates read `properties` as a mapping.
            if obj.get("type") != Some(&json!("object")) {
                obj.insert("type".into(), json!("object"));
                changed = true;
            }
            if !obj.get("properties").is_some_and(Value::is_object) {
                obj.insert("properties".into(), json!({}));
                changed = true;
            }
        } else {
            *schema = json!({"type": "object", "properties": {}});
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> MessagesRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn billing_header_goes_other_system_blocks_stay() {
        let mut r = req(json!({"model":"m","max_tokens":1,"messages":[],
            "system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.330.c4f;"},
                      {"type":"text","text":"You are Claude."}]}));
        remove_billing_header(&mut r);
        let Some(SystemPrompt::Blocks(b)) = &r.system else {
            panic!()
        };
        assert_eq!(b.len(), 1);
        assert!(matches!(&b[0], ContentBlock::Text{text,..} if text == "You are Claude."));
    }

    #[test]
    fn trailing_system_message_is_inlined_into_last_user_turn() {
        let mut r = req(json!({"model":"m","max_tokens":1,"messages":[
            {"role":"user","content":"hi"},
            {"role":"system","content":"env: linux"}]}));
        place_system_messages(&mut r, SystemMessagePlacement::Inline);
        assert_eq!(r.messages.len(), 1);
        let text = r.messages[0].content.all_text();
        assert_eq!(
            text,
            "hi\n\n<system-reminder>\nenv: linux\n</system-reminder>"
        );
    }

    #[test]
    fn system_after_assistant_waits_for_next_user_turn() {
        let mut r = req(json!({"model":"m","max_tokens":1,"messages":[
            {"role":"user","content":"a"},
            {"role":"assistant","content":"b"},
            {"role":"system","content":"note"},
            {"role":"user","content":"c"}]}));
        place_system_messages(&mut r, SystemMessagePlacement::Inline);
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
        assert_eq!(
            r.messages[2].content.all_text(),
            "<system-reminder>\nnote\n</system-reminder>\n\nc"
        );
    }

    #[test]
    fn hoist_moves_text_to_system_prompt() {
        let mut r = req(json!({"model":"m","max_tokens":1,"system":"S","messages":[
            {"role":"user","content":"a"},{"role":"system","content":"late"}]}));
        place_system_messages(&mut r, SystemMessagePlacement::Hoist);
        assert_eq!(r.messages.len(), 1);
        assert!(matches!(&r.system, Some(SystemPrompt::Text(t)) if t == "S\n\nlate"));
    }

    #[test]
    fn deferred_tools_appear_only_when_referenced() {
        let mut r = req(json!({"model":"m","max_tokens":1,
            "tools":[{"name":"Bash","input_schema":{"type":"object"}},
                     {"name":"WebFetch","defer_loading":true,"input_schema":{"type":"object"}},
                     {"name":"DeferredToolPlaceholder","defer_loading":true,"input_schema":{"type":"object","properties":{}}}],
            "messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1",
                "content":[{"type":"tool_reference","tool_name":"WebFetch"}]}]}]}));
        resolve_deferred_tools(&mut r);
        let names: Vec<&str> = r
            .tools
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["Bash", "WebFetch"]);
        let Content::Blocks(b) = &r.messages[0].content else {
            panic!()
        };
        let ContentBlock::ToolResult {
            content: Some(c), ..
        } = &b[0]
        else {
            panic!()
        };
        assert_eq!(
            c.all_text(),
            "Tool `WebFetch` is now loaded and available to call."
        );
    }

    #[test]
    fn server_tools_are_removed_custom_tools_stay() {
        let mut r = req(json!({"model":"m","max_tokens":1,"messages":[],
            "tool_choice":{"type":"tool","name":"web_search"},
            "tools":[{"type":"web_search_20250305","name":"web_search","max_uses":8},
                     {"name":"Bash","input_schema":{"type":"object"}},
                     {"type":"web_fetch_20250910","name":"web_fetch"},
                     {"type":"custom","name":"Read","input_schema":{"type":"object"}}]}));
        remove_server_tools(&mut r);
        let names: Vec<&str> = r
            .tools
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["Bash", "Read"]);
        assert!(r.tool_choice.is_none());
        let mut only = req(json!({"model":"m","max_tokens":1,"messages":[],
            "tool_choice":{"type":"auto"},
            "tools":[{"type":"code_execution_20250825","name":"code_execution"}]}));
        remove_server_tools(&mut only);
        assert!(only.tools.is_none() && only.tool_choice.is_none());
    }

    #[test]
    fn tools_get_valid_descriptions_and_schemas() {
        let mut r = req(json!({"model":"m","max_tokens":1,"messages":[],
            "tools":[{"name":"a","description":null},
                     {"name":"b","input_schema":{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"x":{"type":"string"}}}}]}));
        repair_tools(&mut r);
        let t = r.tools.unwrap();
        assert_eq!(t[0].description.as_deref(), Some(""));
        assert_eq!(
            t[0].input_schema,
            Some(json!({"type":"object","properties":{}}))
        );
        assert_eq!(
            t[1].input_schema,
            Some(json!({"type":"object","properties":{"x":{"type":"string"}}}))
        );
    }

    #[test]
    fn tool_schemas_of_another_type_become_objects() {
        let mut r = req(json!({"model":"m","max_tokens":1,"messages":[],
            "tools":[{"name":"a","input_schema":{"type":"string"}},
                     {"name":"b","input_schema":{"type":["object","null"],"properties":[1,2],"required":["x"]}},
                     {"name":"c","input_schema":"not a schema"}]}));
        repair_tools(&mut r);
        let t = r.tools.unwrap();
        assert_eq!(
            t[0].input_schema,
            Some(json!({"type":"object","properties":{}}))
        );
        assert_eq!(
            t[1].input_schema,
            Some(json!({"type":"object","properties":{},"required":["x"]}))
        );
        assert_eq!(
            t[2].input_schema,
            Some(json!({"type":"object","properties":{}}))
        );
    }

    /// `apply` names exactly the fixes that changed a recorded Claude Code request: its
    /// billing block, its `role: "system"` entry and its `defer_loading` tools; nothing on
    /// its well-formed tool schemas.
    #[test]
    fn apply_names_the_fixes_that_fired_on_a_real_request() {
        let rec: Value = serde_json::from_str(include_str!(
            "../../../fixtures/claude-code/text1/01_messages_stream.json"
        ))
        .unwrap();
        let mut r = req(rec["body"].clone());
        let fired = apply(&mut r, SystemMessagePlacement::Inline);
        assert_eq!(
            fired,
            ["billing_header", "system_placement", "deferred_tools"]
        );
        // Once applied, nothing is left to fix.
        assert!(apply(&mut r, SystemMessagePlacement::Inline).is_empty());
        let mut bad = req(json!({"model":"m","max_tokens":1,"messages":[],
            "tools":[{"name":"a","description":null,"input_schema":{"type":"string"}}]}));
        assert_eq!(
            apply(&mut bad, SystemMessagePlacement::Inline),
            ["schema_repair"]
        );
    }
}
