//! Context-window arithmetic (pure): estimating a prompt, deciding when the exact size is
//! needed, fitting `max_tokens` and thinking budgets, and reading vLLM's context errors.
//!
//! Claude Code asks for 32k–128k output tokens, far more than a local model's window leaves
//! after a 12k-token prompt, and neither of vLLM's routes clamps. A bytes/4 estimate is far
//! from a chat template's real count (often 1.5–3× lower), and current vLLM's overflow error
//! gives only a lower bound ("at least N input tokens", N = window − max_tokens + 1), never
//! the size. So the proxy never clamps on a guess: when the client's `max_tokens` might not
//! fit (`needs_exact_count`), it asks the backend for the exact size first (one round trip:
//! vLLM's `/tokenize`, or `/v1/messages/count_tokens`), then sends the largest `max_tokens`
//! that fits, or answers `prompt is too long: N tokens > M maximum` with the real N.
use crate::protocol::anthropic::{Content, ContentBlock, MessagesRequest, SystemPrompt};
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

/// The length of `v` as compact JSON, counted as it is written: no string is built (a Claude
/// Code request's tool schemas cost 171k instructions as strings, bench/PROFILE.md).
fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, v).map_or(0, |()| count.0)
}

/// The estimate may undercount by this factor before a request that looked safe fails
/// (then the error path still finds the truth, at one more round trip).
const ESTIMATE_MARGIN: (u64, u64) = (3, 2);

/// Whether `asked` output tokens might not fit beside the prompt, so the exact prompt size is
/// worth a round trip. False means the request goes out as the client sent it.
fn needs_exact_count(asked: u32, window: u32, estimate: u64) -> bool {
    estimate * ESTIMATE_MARGIN.0 / ESTIMATE_MARGIN.1 + u64::from(asked) > u64::from(window)
}

/// What to do about the output budget before a request goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Send with this fit.
    Send(Fit),
    /// Count the prompt exactly first, then `fit` it against this window.
    Count { window: u32 },
}

/// The budget decision, the same for both protocols. A backend that fits `max_tokens` to the
/// window's rest itself (vLLM ≥ 0.32) only needs it capped at the window, which it refuses
/// to exceed; others are counted when the estimate leaves doubt.
pub fn budget(asked: u32, window: Option<u32>, backend_clamps: bool, estimate: u64) -> Budget {
    match window {
        Some(w) if backend_clamps && asked > w => Budget::Send(Fit {
            max_tokens: Some(w),
            window_bound: true,
        }),
        Some(w) if !backend_clamps && needs_exact_count(asked, w, estimate) => {
            Budget::Count { window: w }
        }
        _ => Budget::Send(Fit::as_asked(asked)),
    }
}

/// The output budget sent to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// `None`: no `max_tokens` (Chat Completions only), vLLM generates up to the window's rest.
    pub max_tokens: Option<u32>,
    /// The window, not the client, limits the answer: a `length` finish is then reported as
    /// `model_context_window_exceeded`.
    pub window_bound: bool,
}

impl Fit {
    pub fn as_asked(asked: u32) -> Self {
        Self {
            max_tokens: Some(asked),
            window_bound: false,
        }
    }

    /// Let the backend fill the window (it does so for a Chat Completions request without
    /// `max_tokens`); used only when the prompt is known to leave less than was asked.
    pub fn fill_window() -> Self {
        Self {
            max_tokens: None,
            window_bound: true,
        }
    }
}

/// A prompt that cannot fit: its exact size and the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    pub prompt: u64,
    pub window: u64,
}

/// The largest `max_tokens` that fits beside an exactly counted prompt, never above what the
/// client asked. vLLM needs prompt + max_tokens ≤ window and max_tokens ≥ 1.
pub fn fit(asked: u32, window: u32, prompt: u64) -> Result<Fit, TooLong> {
    let room = u64::from(window).saturating_sub(prompt);
    if room == 0 {
        return Err(TooLong {
            prompt,
            window: u64::from(window),
        });
    }
    let max_tokens = u64::from(asked).min(room) as u32;
    Ok(Fit {
        max_tokens: Some(max_tokens),
        window_bound: max_tokens < asked,
    })
}

/// Without an exact count (the backend has no counting endpoint): clamp to the estimate.
pub fn fit_estimated(asked: u32, window: u32, estimate: u64) -> Fit {
    let room = u64::from(window).saturating_sub(estimate).max(1);
    let max_tokens = u64::from(asked).min(room) as u32;
    Fit {
        max_tokens: Some(max_tokens),
        window_bound: max_tokens < asked,
    }
}

/// Whether prompt + output `tokens` reached the window (none known: no).
pub fn reaches_window(tokens: u64, window: Option<u32>) -> bool {
    window.is_some_and(|w| tokens >= u64::from(w))
}

/// vLLM's Anthropic route needs `1024 ≤ budget_tokens < max_tokens` for enabled thinking.
pub const MIN_THINKING_BUDGET: u32 = 1024;

/// The thinking budget that fits under `max_tokens`: kept, lowered, or `None` (drop
/// thinking) when not even the minimum fits.
pub fn fit_thinking_budget(budget: u32, max_tokens: u32) -> Option<u32> {
    let budget = budget.min(max_tokens.saturating_sub(1));
    (budget >= MIN_THINKING_BUDGET).then_some(budget)
}

/// What a backend's context-length rejection says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The prompt alone does not fit; its exact size (older vLLM wordings).
    PromptTooLong { prompt: u64, window: u64 },
    /// The prompt fits but `max_tokens` does not; exact prompt size (older wordings).
    OutputTooLarge { prompt: u64, window: u64 },
    /// Current vLLM: prompt + `max_tokens` is too large and the prompt has *at least* `prompt`
    /// tokens, a bound back-computed from `max_tokens`, not a count.
    AtLeast { prompt: u64, window: u64 },
    /// `max_tokens` alone exceeds the window.
    MaxTokensOverWindow { window: u64 },
    /// vLLM ≥ 0.32: the prompt alone exceeds the window; `at_least` is window + 1 whatever
    /// the real size (its tokenizer stops there).
    PromptOverWindow { at_least: u64, window: u64 },
}

static WINDOW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"maximum context length (?:is )?\(?(\d+)\)?").expect("valid regex")
});
static AT_LEAST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"at least (\d+) input tokens").expect("valid regex"));
static PROMPT_ALONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"prompt contains (?:at least )?(\d+) input tokens, which exceeds this limit even without any output tokens")
        .expect("valid regex")
});
static OVER_WINDOW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:max_tokens|max_completion_tokens)=\d+ ?cannot be greater than max_model_len=(?:max_total_tokens=)?(\d+)").expect("valid regex")
});
static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\d+) input tokens|\((\d+) in the messages|Input length \((\d+)\)|prompt \(length (\d+)\)")
        .expect("valid regex")
});

/// Reads the numbers out of vLLM's wordings, across versions:
/// - vLLM ≥ 0.32 (`vllm/renderers/params.py`, `_token_len_check`): `This model's maximum
///   context length is L tokens. However, your prompt contains at least L+1 input tokens,
///   which exceeds this limit even without any output tokens. …`; `max_tokens=M cannot be
///   greater than max_model_len=L. …` (0.22–0.30: `max_model_len=max_total_tokens=L`)
/// - vLLM 0.22–0.31: `… However, you requested M output tokens and your prompt contains at
///   least N input tokens, for a total of at least N+M tokens. …` (N = L − M + 1)
/// - `This model's maximum context length is M tokens. However, you requested T tokens (P in the messages, C in the completion).`
/// - `This model's maximum context length is M tokens. However, your request has P input tokens.`
/// - `'max_tokens' or 'max_completion_tokens' is too large: C. This model's maximum context length is M tokens and your request has P input tokens (C > M - P).`
/// - `Input length (P) exceeds model's maximum context length (M).`
pub fn parse_overflow(message: &str) -> Option<Overflow> {
    if let Some(c) = OVER_WINDOW.captures(message) {
        return Some(Overflow::MaxTokensOverWindow {
            window: c[1].parse().ok()?,
        });
    }
    let window: u64 = WINDOW.captures(message)?.get(1)?.as_str().parse().ok()?;
    if let Some(c) = PROMPT_ALONE.captures(message) {
        let at_least = c[1].parse().ok()?;
        return Some(Overflow::PromptOverWindow { at_least, window });
    }
    if let Some(c) = AT_LEAST.captures(message) {
        return Some(Overflow::AtLeast {
            prompt: c[1].parse().ok()?,
            window,
        });
    }
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
    fn json_len_is_the_compact_serialization_length() {
        let v = serde_json::json!({"type": "object", "properties": {"q": {"type": "string", "description": "é \"x\""}}});
        assert_eq!(json_len(&v), serde_json::to_string(&v).unwrap().len());
    }

    #[test]
    fn fits_the_largest_max_tokens_never_more_than_asked() {
        assert_eq!(
            fit(128_000, 32_768, 12_000),
            Ok(Fit {
                max_tokens: Some(20_768),
                window_bound: true
            })
        );
        assert_eq!(
            fit(1_000, 32_768, 12_000),
            Ok(Fit {
                max_tokens: Some(1_000),
                window_bound: false
            })
        );
        assert_eq!(
            fit(64_000, 32_768, 32_767),
            Ok(Fit {
                max_tokens: Some(1),
                window_bound: true
            })
        );
        assert_eq!(
            fit(64_000, 32_768, 32_768),
            Err(TooLong {
                prompt: 32_768,
                window: 32_768
            })
        );
        assert_eq!(
            fit(64_000, 32_768, 40_000),
            Err(TooLong {
                prompt: 40_000,
                window: 32_768
            })
        );
    }

    #[test]
    fn exact_count_only_when_the_estimate_leaves_doubt() {
        // 12k estimated (18k with the margin) + 8k asked fits a 32k window: no count.
        assert!(!needs_exact_count(8_000, 32_768, 12_000));
        assert!(needs_exact_count(16_000, 32_768, 12_000));
        assert!(needs_exact_count(128_000, 200_000, 50_000));
        assert!(!needs_exact_count(32_000, 200_000, 50_000));
    }

    #[test]
    fn budget_counts_only_where_the_backend_does_not_fit_itself() {
        assert_eq!(
            budget(128_000, None, false, 12_000),
            Budget::Send(Fit::as_asked(128_000))
        );
        assert_eq!(
            budget(128_000, Some(32_768), true, 12_000),
            Budget::Send(Fit {
                max_tokens: Some(32_768),
                window_bound: true
            })
        );
        assert_eq!(
            budget(32_000, Some(32_768), true, 12_000),
            Budget::Send(Fit::as_asked(32_000))
        );
        assert_eq!(
            budget(32_000, Some(32_768), false, 12_000),
            Budget::Count { window: 32_768 }
        );
        assert_eq!(
            budget(8_000, Some(32_768), false, 12_000),
            Budget::Send(Fit::as_asked(8_000))
        );
    }

    #[test]
    fn thinking_budget_stays_below_max_tokens() {
        assert_eq!(fit_thinking_budget(4_096, 20_000), Some(4_096));
        assert_eq!(fit_thinking_budget(31_999, 20_768), Some(20_767));
        assert_eq!(
            fit_thinking_budget(4_096, 1_024),
            None,
            "1023 is below vLLM's minimum"
        );
        assert_eq!(fit_thinking_budget(4_096, 1_025), Some(1_024));
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
            ("This model's maximum context length is 32768 tokens. However, you requested 64000 output tokens and your prompt contains at least 1 input tokens, for a total of at least 64001 tokens. Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=1)",
             Overflow::AtLeast { prompt: 1, window: 32768 }),
            ("This model's maximum context length is 32768 tokens. However, you requested 20000 output tokens and your prompt contains at least 12769 input tokens, for a total of at least 32769 tokens. Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=12769)",
             Overflow::AtLeast { prompt: 12769, window: 32768 }),
            ("max_tokens=64000 cannot be greater than max_model_len=max_total_tokens=32768. Please request fewer output tokens. (parameter=max_tokens, value=64000)",
             Overflow::MaxTokensOverWindow { window: 32768 }),
            ("max_completion_tokens=64000 cannot be greater than max_model_len=32768. Please request fewer output tokens. (parameter=max_completion_tokens, value=64000)",
             Overflow::MaxTokensOverWindow { window: 32768 }),
            ("This model's maximum context length is 32768 tokens. However, your prompt contains at least 32769 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=32769)",
             Overflow::PromptOverWindow { at_least: 32769, window: 32768 }),
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
