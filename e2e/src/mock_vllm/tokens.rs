//! The mock's tokenizer: deterministic and cheap, shared by `/tokenize`,
//! `/v1/messages/count_tokens`, usage and the context-length checks, so a
//! client that pre-counts gets exactly the number the 400 errors use.
//!
//! It counts *like* a real BPE tokenizer over a real chat template, so a
//! client-side `bytes / 4` estimate is wrong the way it is against vLLM:
//! template tokens add up on many short turns, JSON and code cost more tokens
//! per byte than prose, and special tokens are one token each.
//!
//! # The chat template
//!
//! A chat request is rendered the way Qwen3's Jinja chat template (Hermes-style
//! tools) renders it; vLLM renders the model's own template with
//! `apply_hf_chat_template`:
//!
//! ```text
//! <|im_start|>system\n{system}\n\n# Tools\n\nYou may call one or more functions … <tools>\n{tool|tojson}\n…</tools>\n\nFor each function call, … </tool_call><|im_end|>\n   (only if tools)
//! <|im_start|>system\n{system}<|im_end|>\n                                  (no tools, first message is system)
//! <|im_start|>{role}\n{content}<|im_end|>\n                                 (user; system not first)
//! <|im_start|>assistant\n{content}[\n<tool_call>\n{"name": "N", "arguments": ARGS}\n</tool_call>]*<|im_end|>\n
//! <|im_start|>user\n<tool_response>\n{content}\n</tool_response>…<|im_end|>\n  (a run of tool messages)
//! <|im_start|>assistant\n                                                     (add_generation_prompt, default true)
//! ```
//!
//! `tool|tojson` is Python's `json.dumps` (`", "` / `": "` separators, non-ASCII
//! kept). Text content parts are joined with `"\n"` (vLLM's `"string"` content
//! format); image/audio/video parts become Qwen's placeholder tokens.
//!
//! # The token rule
//!
//! The text is split like Qwen2's pre-tokenizer regex, then each piece costs:
//!
//! | piece | tokens |
//! |---|---|
//! | special/added token (`<\|im_start\|>`, `<\|im_end\|>`, `<tool_call>`, `</tool_call>`, `<tool_response>`, `<think>`, …) | 1 |
//! | run of ASCII letters, a single leading space merged in | 1 per started 8 letters |
//! | non-ASCII letter (CJK, accented, …) | 1 each |
//! | digit | 1 each (Qwen splits numbers into digits) |
//! | run of punctuation/symbols, a single leading space merged in | 1 per started 2 characters |
//! | newline (`\n`, `\r\n`) | 1 each |
//! | other run of spaces/tabs | 1 per started 8 characters |
//!
//! Calibration (asserted in the tests): an English paragraph comes to ~1.3
//! tokens per word; JSON costs more tokens per byte than prose; 1,001 short
//! chat turns cost about three times their `bytes / 4`; the Claude Code
//! first request in `fixtures/claude-code/text1` (49 KB of JSON body,
//! 12 tools, rendering to 49 KB of prompt) comes to ~12.6k tokens, where the
//! real Qwen tokenizer counts ~12k (~4 bytes of rendered prompt per token).

use serde_json::Value;

/// Qwen2/3 vocabulary size, used only to keep the fake ids plausible.
const VOCAB: u32 = 151_643;

/// Letters per token in a run of ASCII letters.
const LETTERS_PER_TOKEN: usize = 8;
/// Punctuation/symbol characters per token.
const SYMBOLS_PER_TOKEN: usize = 2;
/// Spaces/tabs per token in an indentation run.
const SPACES_PER_TOKEN: usize = 8;

/// Special and added tokens of the Qwen2/3 vocabulary, with their ids.
const SPECIAL: &[(&str, u32)] = &[
    ("<|endoftext|>", 151_643),
    ("<|im_start|>", 151_644),
    ("<|im_end|>", 151_645),
    ("<|object_ref_start|>", 151_646),
    ("<|object_ref_end|>", 151_647),
    ("<|box_start|>", 151_648),
    ("<|box_end|>", 151_649),
    ("<|quad_start|>", 151_650),
    ("<|quad_end|>", 151_651),
    ("<|vision_start|>", 151_652),
    ("<|vision_end|>", 151_653),
    ("<|vision_pad|>", 151_654),
    ("<|image_pad|>", 151_655),
    ("<|video_pad|>", 151_656),
    ("<tool_call>", 151_657),
    ("</tool_call>", 151_658),
    ("<|fim_prefix|>", 151_659),
    ("<|fim_middle|>", 151_660),
    ("<|fim_suffix|>", 151_661),
    ("<|fim_pad|>", 151_662),
    ("<|repo_name|>", 151_663),
    ("<|file_sep|>", 151_664),
    ("<tool_response>", 151_665),
    ("</tool_response>", 151_666),
    ("<think>", 151_667),
    ("</think>", 151_668),
    ("<|audio_bos|>", 151_669),
    ("<|audio_eos|>", 151_670),
    ("<|AUDIO|>", 151_671),
];

/// Number of prompt tokens of a chat (`messages`) or completion (`prompt`)
/// request body, as the current vLLM release counts it (tools included).
/// The same number the mock's `/tokenize`, usage and context checks use.
pub fn count_prompt_tokens(req: &Value) -> u32 {
    pieces(&prompt_text(req, true)).len() as u32
}

/// [`count_prompt_tokens`] as `/tokenize` of vLLM 0.8.5 and earlier counts
/// it: `TokenizeChatRequest` had no `tools` field before v0.9.0 (PR #18187),
/// so the tool schemas are left out (`MockConfig::tokenize_tools = false`).
pub fn count_prompt_tokens_without_tools(req: &Value) -> u32 {
    pieces(&prompt_text(req, false)).len() as u32
}

/// The text that is "tokenized": the rendered chat template, or the prompt.
pub(crate) fn prompt_text(req: &Value, with_tools: bool) -> String {
    match (req.get("messages"), req.get("prompt")) {
        (Some(_), _) => render(req, with_tools),
        (None, Some(Value::String(p))) => p.clone(),
        (None, Some(other)) => other.to_string(),
        (None, None) => String::new(),
    }
}

/// Renders a chat request with the mock chat template (see module docs).
pub fn render_prompt(req: &Value) -> String {
    render(req, true)
}

const TOOLS_HEAD: &str = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>";
const TOOLS_TAIL: &str = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";

fn render(req: &Value, with_tools: bool) -> String {
    let empty = Vec::new();
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let tools = req
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| with_tools && !t.is_empty());
    fn role(m: &Value) -> &str {
        m.get("role").and_then(Value::as_str).unwrap_or("user")
    }
    let first_is_system = messages.first().is_some_and(|m| role(m) == "system");
    let mut out = String::new();
    if let Some(tools) = tools {
        out.push_str("<|im_start|>system\n");
        if first_is_system {
            out.push_str(&content_text(messages[0].get("content")));
            out.push_str("\n\n");
        }
        out.push_str(TOOLS_HEAD);
        for tool in tools {
            out.push('\n');
            out.push_str(&py_json_dumps(tool, false));
        }
        out.push_str(TOOLS_TAIL);
    } else if first_is_system {
        out.push_str("<|im_start|>system\n");
        out.push_str(&content_text(messages[0].get("content")));
        out.push_str("<|im_end|>\n");
    }
    for (i, msg) in messages.iter().enumerate() {
        if i == 0 && first_is_system {
            continue;
        }
        match role(msg) {
            "assistant" => {
                out.push_str("<|im_start|>assistant\n");
                let text = content_text(msg.get("content"));
                out.push_str(&text);
                let calls = msg.get("tool_calls").and_then(Value::as_array);
                for (j, call) in calls.into_iter().flatten().enumerate() {
                    if j > 0 || !text.is_empty() {
                        out.push('\n');
                    }
                    let f = &call["function"];
                    out.push_str("<tool_call>\n{\"name\": \"");
                    out.push_str(f["name"].as_str().unwrap_or_default());
                    out.push_str("\", \"arguments\": ");
                    match &f["arguments"] {
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&py_json_dumps(other, false)),
                    }
                    out.push_str("}\n</tool_call>");
                }
                out.push_str("<|im_end|>\n");
            }
            "tool" => {
                let prev_tool = i > 0 && role(&messages[i - 1]) == "tool";
                let next_tool = messages.get(i + 1).is_some_and(|m| role(m) == "tool");
                if !prev_tool {
                    out.push_str("<|im_start|>user");
                }
                out.push_str("\n<tool_response>\n");
                out.push_str(&content_text(msg.get("content")));
                out.push_str("\n</tool_response>");
                if !next_tool {
                    out.push_str("<|im_end|>\n");
                }
            }
            other => {
                out.push_str("<|im_start|>");
                out.push_str(other);
                out.push('\n');
                out.push_str(&content_text(msg.get("content")));
                out.push_str("<|im_end|>\n");
            }
        }
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

/// Text of a message `content`: a string, or its parts joined by `"\n"`.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut texts: Vec<&str> = Vec::new();
            for part in parts {
                texts.push(match part.get("type").and_then(Value::as_str) {
                    Some("text") => part.get("text").and_then(Value::as_str).unwrap_or(""),
                    Some("image_url" | "image_embeds" | "image_pil") => {
                        "<|vision_start|><|image_pad|><|vision_end|>"
                    }
                    Some("input_audio" | "audio_url") => "<|audio_bos|><|AUDIO|><|audio_eos|>",
                    Some("video_url") => "<|vision_start|><|video_pad|><|vision_end|>",
                    _ => continue,
                });
            }
            texts.join("\n")
        }
        _ => String::new(),
    }
}

/// Python's `json.dumps` with its default `", "` and `": "` separators. `ensure_ascii`
/// (Python's default, which vLLM's Anthropic route uses to turn `tool_use.input` into
/// `arguments`) escapes what is not printable ASCII as `\uXXXX`; without it (the `tojson`
/// Jinja filter of `transformers`) strings are written as they are.
pub(crate) fn py_json_dumps(v: &Value, ensure_ascii: bool) -> String {
    let mut out = String::new();
    write_py_json(v, ensure_ascii, &mut out);
    out
}

fn write_py_json(v: &Value, ensure_ascii: bool, out: &mut String) {
    match v {
        Value::String(s) if ensure_ascii => write_ascii_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_json(item, ensure_ascii, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_json(&Value::String(k.clone()), ensure_ascii, out);
                out.push_str(": ");
                write_py_json(item, ensure_ascii, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn write_ascii_string(s: &str, out: &mut String) {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Newline,
    Space,
    Symbol,
}

fn class(c: char) -> Class {
    if c.is_alphabetic() {
        Class::Letter
    } else if c.is_numeric() {
        Class::Digit
    } else if c == '\n' || c == '\r' {
        Class::Newline
    } else if c.is_whitespace() {
        Class::Space
    } else {
        Class::Symbol
    }
}

fn special_at(text: &str) -> Option<&'static str> {
    if !text.starts_with('<') {
        return None;
    }
    SPECIAL
        .iter()
        .map(|(s, _)| *s)
        .find(|s| text.starts_with(s))
}

/// Splits `text` into token pieces by the rule in the module docs.  The
/// pieces concatenate back to `text`; their number is the token count.
pub(crate) fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    let next_class = |j: usize| text[j..].chars().next().map(class);
    while i < text.len() {
        let rest = &text[i..];
        if let Some(s) = special_at(rest) {
            out.push(&text[i..i + s.len()]);
            i += s.len();
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        let start = i;
        let mut j = i + c.len_utf8();
        match class(c) {
            Class::Newline => {
                if c == '\r' && text[j..].starts_with('\n') {
                    j += 1;
                }
                out.push(&text[start..j]);
            }
            Class::Digit => out.push(&text[start..j]),
            Class::Letter if !c.is_ascii() => out.push(&text[start..j]),
            Class::Space => {
                // A single space in front of a word or symbols belongs to it.
                let merges = c == ' '
                    && matches!(next_class(j), Some(Class::Letter | Class::Symbol))
                    && special_at(&text[j..]).is_none();
                if merges {
                    let kind = next_class(j).unwrap_or(Class::Letter);
                    let first = text[j..].chars().next().unwrap_or(' ');
                    if kind == Class::Letter && !first.is_ascii() {
                        // A space before a non-ASCII letter is its own token.
                        out.push(&text[start..j]);
                    } else {
                        j = run_end(text, j, kind);
                        chunk(&mut out, text, start, j, kind);
                    }
                } else {
                    while let Some(Class::Space) = next_class(j) {
                        let n = text[j..].chars().next().map_or(1, char::len_utf8);
                        // Leave a last space to merge with a following word.
                        if text[j..].starts_with(' ')
                            && matches!(
                                text[j + n..].chars().next().map(class),
                                Some(Class::Letter | Class::Symbol)
                            )
                            && special_at(&text[j + n..]).is_none()
                        {
                            break;
                        }
                        j += n;
                    }
                    chunk(&mut out, text, start, j, Class::Space);
                }
            }
            kind @ (Class::Letter | Class::Symbol) => {
                j = run_end(text, start, kind);
                chunk(&mut out, text, start, j, kind);
            }
        }
        i = j;
    }
    out
}

/// End of the run of `kind` characters starting at byte `from` (ASCII letters
/// only for letter runs; symbol runs stop at a special token).
fn run_end(text: &str, from: usize, kind: Class) -> usize {
    let mut j = from;
    for c in text[from..].chars() {
        let fits = match kind {
            Class::Letter => c.is_ascii_alphabetic(),
            _ => class(c) == kind && (j == from || special_at(&text[j..]).is_none()),
        };
        if !fits {
            break;
        }
        j += c.len_utf8();
    }
    j
}

/// Pushes `text[start..end]` as pieces of the size `kind` allows (a leading
/// space is free).
fn chunk<'a>(out: &mut Vec<&'a str>, text: &'a str, start: usize, end: usize, kind: Class) {
    let per = match kind {
        Class::Letter => LETTERS_PER_TOKEN,
        Class::Symbol => SYMBOLS_PER_TOKEN,
        _ => SPACES_PER_TOKEN,
    };
    let mut s = start;
    let mut skip_space = kind != Class::Space && text[start..].starts_with(' ');
    while s < end {
        let mut e = s;
        let mut n = 0;
        for c in text[s..end].chars() {
            if n == per {
                break;
            }
            e += c.len_utf8();
            if skip_space {
                skip_space = false;
            } else {
                n += 1;
            }
        }
        out.push(&text[s..e]);
        s = e;
    }
}

/// Token ids of `text`, one per piece: the real ids of special tokens, a hash
/// of the piece otherwise.
pub(crate) fn token_ids(text: &str) -> Vec<u32> {
    pieces(text)
        .into_iter()
        .map(|p| {
            if let Some((_, id)) = SPECIAL.iter().find(|(s, _)| *s == p) {
                return *id;
            }
            let mut h: u32 = 2_166_136_261;
            for b in p.as_bytes() {
                h = (h ^ u32::from(*b)).wrapping_mul(16_777_619);
            }
            h % VOCAB
        })
        .collect()
}

/// The pieces themselves, for `return_token_strs`.
pub(crate) fn token_strs(text: &str) -> Vec<String> {
    pieces(text).into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn count(text: &str) -> usize {
        pieces(text).len()
    }

    #[test]
    fn pieces_follow_the_rule() {
        assert_eq!(
            pieces("<|im_start|>user\nhello world<|im_end|>\n"),
            [
                "<|im_start|>",
                "user",
                "\n",
                "hello",
                " world",
                "<|im_end|>",
                "\n"
            ]
        );
        assert_eq!(
            pieces("internationalization"),
            ["internat", "ionaliza", "tion"]
        );
        assert_eq!(
            pieces("x = 1234;"),
            ["x", " =", " ", "1", "2", "3", "4", ";"]
        );
        assert_eq!(
            pieces("{\"type\": \"object\"}"),
            ["{\"", "type", "\":", " \"", "object", "\"}"]
        );
        assert_eq!(pieces("    if x"), ["   ", " if", " x"]);
        assert_eq!(pieces("日本"), ["日", "本"]);
        assert_eq!(pieces("a\r\n\nb"), ["a", "\r\n", "\n", "b"]);
        let text = "Hello, <tool_call>\n{\"a\": 1}\n</tool_call>";
        assert_eq!(pieces(text).concat(), text);
    }

    #[test]
    fn english_is_about_1_3_tokens_per_word() {
        let text = "The committee reviewed the proposal carefully before the meeting, \
            and several members raised concerns about the budget. After a long discussion, \
            they agreed to postpone the decision until the next quarter, when more accurate \
            figures would be available. The chairman thanked everyone for their patience \
            and promised that the final report would include detailed recommendations.";
        let words = text.split_whitespace().count() as f64;
        let ratio = count(text) as f64 / words;
        eprintln!("{ratio} tokens/word");
        assert!((1.15..=1.45).contains(&ratio), "{ratio} tokens/word");
    }

    #[test]
    fn json_costs_more_per_byte_than_prose() {
        let prose = "The quick brown fox jumps over the lazy dog near the river bank today.";
        let json = r#"{"type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}}, "required": ["command"]}"#;
        let bpt = |t: &str| t.len() as f64 / count(t) as f64;
        assert!(bpt(json) < bpt(prose), "{} vs {}", bpt(json), bpt(prose));
    }

    #[test]
    fn many_short_turns_cost_far_more_than_bytes_over_4() {
        let mut messages = Vec::new();
        for i in 0..1001 {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            messages.push(json!({"role": role, "content": format!("turn {i}")}));
        }
        let req = json!({"messages": messages});
        let content_bytes: usize = (0..1001).map(|i| format!("turn {i}").len()).sum();
        let n = count_prompt_tokens(&req);
        // 5 template tokens + "turn", " ", digits per turn.
        assert!(
            n as usize > 2 * content_bytes / 4,
            "{n} vs {}",
            content_bytes / 4
        );
        assert_eq!(n, count(&render_prompt(&req)) as u32);
    }

    #[test]
    fn renders_qwen3_template() {
        let req = json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\": \"ls\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "out1"},
            {"role": "tool", "tool_call_id": "c2", "content": "out2"}
        ]});
        assert_eq!(
            render_prompt(&req),
            "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\na\nb<|im_end|>\n\
             <|im_start|>assistant\n<tool_call>\n{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls\"}}\n</tool_call><|im_end|>\n\
             <|im_start|>user\n<tool_response>\nout1\n</tool_response>\n<tool_response>\nout2\n</tool_response><|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn tools_count_in_the_current_form_only() {
        let base = json!({"messages": [{"role": "user", "content": "hi"}]});
        let mut with_tools = base.clone();
        with_tools["tools"] = json!([{"type": "function", "function": {"name": "Bash",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]);
        assert!(count_prompt_tokens(&with_tools) > count_prompt_tokens(&base) + 50);
        assert_eq!(
            count_prompt_tokens_without_tools(&with_tools),
            count_prompt_tokens(&base)
        );
    }

    #[test]
    fn ids_match_pieces() {
        let text = "<|im_start|>user\nhi there<|im_end|>\n";
        let ids = token_ids(text);
        assert_eq!(ids.len(), count(text));
        assert_eq!(ids[0], 151_644);
        assert_eq!(ids[ids.len() - 2], 151_645);
        assert_eq!(token_strs(text).concat(), text);
    }

    /// `$SWITCHYARD_FIXTURES/claude-code`, else the repository's `fixtures/`.
    fn claude_code_fixture(name: &str) -> Value {
        let dir = match std::env::var_os("SWITCHYARD_FIXTURES") {
            Some(dir) => std::path::PathBuf::from(dir).join("claude-code"),
            None => std::path::PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../fixtures/claude-code"
            )),
        };
        let text = std::fs::read_to_string(dir.join(name)).expect("Claude Code fixture");
        serde_json::from_str::<Value>(&text).expect("fixture is JSON")["body"].clone()
    }

    #[test]
    fn claude_code_first_request_is_about_12k_tokens() {
        let body = claude_code_fixture("text1/01_messages_stream.json");
        let chat = crate::mock_vllm::anthropic_to_chat(&body);
        let rendered = render_prompt(&chat);
        let n = count_prompt_tokens(&chat);
        let body_bytes = body.to_string().len();
        let per_token = rendered.len() as f64 / f64::from(n);
        eprintln!(
            "{n} tokens, {body_bytes} body bytes, {} rendered bytes",
            rendered.len()
        );
        assert!((11_000..=13_500).contains(&n), "{n} tokens");
        assert!(
            (3.5..=4.5).contains(&per_token),
            "{per_token} rendered bytes/token"
        );
    }

    #[test]
    fn prompt_form() {
        assert_eq!(count_prompt_tokens(&json!({"prompt": "hello world"})), 2);
    }
}
