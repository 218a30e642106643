//! Context-window arithmetic: estimating a prompt's size, clamping `max_tokens`, and reading
//! vLLM's context-length errors.
//!
//! Claude Code asks for 32k–128k output tokens, far more than a local model's window leaves
//! after a 12k-token prompt. vLLM rejects such a request outright, so the proxy clamps
//! `max_tokens` to what is left. The estimate is only a first guess: when vLLM answers that the
//! prompt plus `max_tokens` is too large it states its exact prompt size, and the proxy retries
//! once with the exact clamp (see `server`).

use crate::anthropic::{Content, ContentBlock, MessagesRequest, SystemPrompt};
use regex::Regex;
use std::sync::LazyLock;

/// Bytes per token assumed by the estimate. Real tokenizers give ~3.5–4.5 on English and
/// code; erring low would only cost one corrective retry.
const BYTES_PER_TOKEN: usize = 4;
/// Flat cost of one image, close to what vision encoders of common open models spend.
const IMAGE_TOKENS: u64 = 1_000;

/// A quick estimate of the prompt's token count.
pub fn estimate_prompt_tokens(req: &MessagesRequest) -> u64 {
    let mut bytes = 0usize;
    let mut images = 0u64;
    match &req.system {
        Some(SystemPrompt::Text(t)) => bytes += t.len(),
        Some(SystemPrompt::Blocks(blocks)) => count_blocks(blocks, &mut bytes, &mut images),
        None => {}
    }
    for m in &req.messages {
        bytes += 8; // role header of a chat template
        match &m.content {
            Content::Text(t) => bytes += t.len(),
            Content::Blocks(blocks) => count_blocks(blocks, &mut bytes, &mut images),
        }
    }
    if let Some(tools) = &req.tools {
        for t in tools {
            bytes += t.name.len() + t.description.as_deref().map_or(0, str::len);
            bytes += t.input_schema.as_ref().map_or(0, json_len);
        }
    }
    (bytes.div_ceil(BYTES_PER_TOKEN)) as u64 + images * IMAGE_TOKENS
}

fn count_blocks(blocks: &[ContentBlock], bytes: &mut usize, images: &mut u64) {
    for b in blocks {
        match b {
            ContentBlock::Text { text, .. } => *bytes += text.len(),
            ContentBlock::Thinking { thinking, .. } => *bytes += thinking.len(),
            ContentBlock::ToolUse { name, input, .. } => *bytes += name.len() + json_len(input),
            ContentBlock::ToolResult { content, .. } => match content {
                Some(Content::Text(t)) => *bytes += t.len(),
                Some(Content::Blocks(inner)) => count_blocks(inner, bytes, images),
                None => {}
            },
            ContentBlock::ToolReference { tool_name, .. } => *bytes += tool_name.len() + 32,
            ContentBlock::Image { .. } | ContentBlock::Document { .. } => *images += 1,
            ContentBlock::RedactedThinking { .. } => {}
        }
    }
}

fn json_len(v: &serde_json::Value) -> usize {
    serde_json::to_string(v).map_or(0, |s| s.len())
}

/// `max_tokens` that fits: never above what the client asked, never below 1 (vLLM rejects 0,
/// and a prompt that leaves no room is reported by vLLM itself with exact numbers).
pub fn clamp_max_tokens(requested: u32, window: u32, prompt_tokens: u64) -> u32 {
    let room = (window as u64).saturating_sub(prompt_tokens).max(1);
    requested.min(room.min(u32::MAX as u64) as u32).max(1)
}

/// What a backend's context-length rejection says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The prompt alone does not fit: the client must compact.
    PromptTooLong { prompt: u64, window: u64 },
    /// The prompt fits but `max_tokens` does not: retry with a smaller `max_tokens`.
    OutputTooLarge { prompt: u64, window: u64 },
}

static WINDOW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"maximum context length (?:is )?\(?(\d+)\)?").expect("valid regex")
});
static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\d+) input tokens|\((\d+) in the messages|Input length \((\d+)\)|prompt \(length (\d+)\)")
        .expect("valid regex")
});

/// Reads the numbers out of vLLM's wordings, across versions:
/// - `This model's maximum context length is M tokens. However, you requested T tokens (P in the messages, C in the completion).`
/// - `This model's maximum context length is M tokens. However, your request has P input tokens.`
/// - `'max_tokens' or 'max_completion_tokens' is too large: C. This model's maximum context length is M tokens and your request has P input tokens (C > M - P).`
/// - `Input length (P) exceeds model's maximum context length (M).`
pub fn parse_overflow(message: &str) -> Option<Overflow> {
    let window: u64 = WINDOW.captures(message)?.get(1)?.as_str().parse().ok()?;
    let caps = PROMPT.captures(message)?;
    let prompt: u64 = caps
        .iter()
        .skip(1)
        .flatten()
        .next()?
        .as_str()
        .parse()
        .ok()?;
    Some(if prompt >= window {
        Overflow::PromptTooLong { prompt, window }
    } else {
        Overflow::OutputTooLarge { prompt, window }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_to_room_left() {
        assert_eq!(clamp_max_tokens(128_000, 32_768, 12_000), 20_768);
        assert_eq!(clamp_max_tokens(1_000, 32_768, 12_000), 1_000);
        assert_eq!(clamp_max_tokens(32_000, 8_192, 9_000), 1);
    }

    #[test]
    fn reads_every_vllm_wording() {
        let cases = [
            ("This model's maximum context length is 32768 tokens. However, you requested 44000 tokens (12000 in the messages, 32000 in the completion). Please reduce the length of the messages or completion.",
             Overflow::OutputTooLarge { prompt: 12000, window: 32768 }),
            ("This model's maximum context length is 32768 tokens. However, your request has 40000 input tokens. Please reduce the length of the input messages.",
             Overflow::PromptTooLong { prompt: 40000, window: 32768 }),
            ("'max_tokens' or 'max_completion_tokens' is too large: 32000. This model's maximum context length is 32768 tokens and your request has 12000 input tokens (32000 > 32768 - 12000).",
             Overflow::OutputTooLarge { prompt: 12000, window: 32768 }),
            ("Input length (50000) exceeds model's maximum context length (32768).",
             Overflow::PromptTooLong { prompt: 50000, window: 32768 }),
        ];
        for (msg, want) in cases {
            assert_eq!(parse_overflow(msg), Some(want), "{msg}");
        }
        assert_eq!(
            parse_overflow("System message must be at the beginning."),
            None
        );
    }
}
