//! The mock's "tokenizer": deterministic and cheap, shared by `/tokenize` and
//! the context-length checks so clients that pre-count via `/tokenize` agree
//! exactly with the 400 errors.
//!
//! A chat request is rendered with a ChatML-like template (what Qwen models
//! use; the real vLLM renders the model's Jinja chat template):
//!
//! ```text
//! <|im_start|>system\n{system text}\n\n# Tools\n\n<tools>\n{tool json}\n...</tools><|im_end|>\n   (only if tools)
//! <|im_start|>{role}\n{content text}[\n<tool_call>\n{"name":..,"arguments":..}\n</tool_call>]*<|im_end|>\n
//! ...
//! <|im_start|>assistant\n            (unless add_generation_prompt is false)
//! ```
//!
//! and the token count is `ceil(bytes / 4)` of that text.  A completion-style
//! `{"prompt": "..."}` counts `ceil(bytes / 4)` of the prompt.  Content parts:
//! text parts are concatenated; image/audio/video parts render as a fixed
//! placeholder.

use serde_json::Value;

/// Qwen2/3 vocabulary size, used only to keep the fake ids plausible.
const VOCAB: u32 = 151_643;

/// Number of prompt tokens the mock assigns to a chat (`messages`) or
/// completion (`prompt`) request body.  See the module docs for the rule.
pub fn count_prompt_tokens(req: &Value) -> u32 {
    let text = prompt_text(req);
    text.len().div_ceil(4) as u32
}

/// The text that is "tokenized": the rendered chat template, or the prompt.
pub(crate) fn prompt_text(req: &Value) -> String {
    match (req.get("messages"), req.get("prompt")) {
        (Some(_), _) => render_prompt(req),
        (None, Some(Value::String(p))) => p.clone(),
        (None, Some(other)) => other.to_string(),
        (None, None) => String::new(),
    }
}

/// Renders a chat request with the mock chat template (see module docs).
pub fn render_prompt(req: &Value) -> String {
    let empty = Vec::new();
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let tools = req
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty());
    let mut out = String::new();
    let mut skip_first = false;
    if let Some(tools) = tools {
        out.push_str("<|im_start|>system\n");
        if let Some(first) = messages.first() {
            if first.get("role").and_then(Value::as_str) == Some("system") {
                out.push_str(&content_text(first.get("content")));
                out.push_str("\n\n");
                skip_first = true;
            }
        }
        out.push_str("# Tools\n\n<tools>\n");
        for tool in tools {
            out.push_str(&tool.to_string());
            out.push('\n');
        }
        out.push_str("</tools><|im_end|>\n");
    }
    for (i, msg) in messages.iter().enumerate() {
        if skip_first && i == 0 {
            continue;
        }
        let role = msg.get("role").and_then(Value::as_str).unwrap_or("user");
        out.push_str("<|im_start|>");
        out.push_str(role);
        out.push('\n');
        out.push_str(&content_text(msg.get("content")));
        if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let f = &call["function"];
                out.push_str("\n<tool_call>\n{\"name\":");
                out.push_str(&f["name"].to_string());
                out.push_str(",\"arguments\":");
                match &f["arguments"] {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
                out.push_str("}\n</tool_call>");
            }
        }
        out.push_str("<|im_end|>\n");
    }
    let add_generation_prompt = req
        .get("add_generation_prompt")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

/// Text of a message `content`: a string, or the text parts of a list.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = part.get("text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                    Some("image_url") | Some("image_embeds") | Some("image_pil") => {
                        out.push_str("<|vision_start|><|image_pad|><|vision_end|>")
                    }
                    Some("input_audio") | Some("audio_url") => {
                        out.push_str("<|audio_bos|><|AUDIO|><|audio_eos|>")
                    }
                    Some("video_url") => {
                        out.push_str("<|vision_start|><|video_pad|><|vision_end|>")
                    }
                    _ => {}
                }
            }
            out
        }
        _ => String::new(),
    }
}

/// Fake token ids: one per 4-byte slice of the text, derived from its bytes.
pub(crate) fn token_ids(text: &str) -> Vec<u32> {
    text.as_bytes()
        .chunks(4)
        .map(|c| {
            let mut h: u32 = 2166136261;
            for b in c {
                h = (h ^ u32::from(*b)).wrapping_mul(16777619);
            }
            h % VOCAB
        })
        .collect()
}

/// The 4-byte slices themselves (lossy UTF-8), for `return_token_strs`.
pub(crate) fn token_strs(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_rendered_template() {
        let req = json!({"messages": [{"role": "user", "content": "hi"}]});
        let text = render_prompt(&req);
        assert_eq!(
            text,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(count_prompt_tokens(&req), (text.len() as u32).div_ceil(4));
        assert_eq!(token_ids(&text).len() as u32, count_prompt_tokens(&req));
    }

    #[test]
    fn prompt_form() {
        assert_eq!(count_prompt_tokens(&json!({"prompt": "abcde"})), 2);
    }

    #[test]
    fn tools_change_the_count() {
        let base = json!({"messages": [{"role": "user", "content": "hi"}]});
        let mut with_tools = base.clone();
        with_tools["tools"] = json!([{"type": "function", "function": {"name": "Bash"}}]);
        assert!(count_prompt_tokens(&with_tools) > count_prompt_tokens(&base));
    }
}
