//! Turns a [`Script`] into what the engine "generates" for one request:
//! applies the `max_tokens` budget (finish `length`) and `stop` strings
//! (finish `stop`, `stop_reason` = the matched string, text cut before it).
//!
//! Like vLLM's incremental detokenizer, streamed content holds back the last
//! `max(len(stop)) - 1` bytes while stop strings are active, so a stop string
//! split across chunks is never partially emitted.

use super::scenario::{Ending, Piece, Script};

/// How a generation ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finish {
    /// `stop`, `length` or `tool_calls`.
    pub reason: &'static str,
    /// vLLM's `stop_reason`: the stop string that matched, if any.
    pub stop_reason: Option<String>,
    /// The finish reason rides on the last emitted piece (length / stop
    /// string) instead of a separate final chunk.
    pub on_last_piece: bool,
    /// Held-back text released by the final chunk (when `!on_last_piece`).
    pub tail: String,
}

/// The emitted pieces and how they end.
#[derive(Debug, Clone)]
pub(crate) struct Generation {
    pub pieces: Vec<Piece>,
    /// `None`: the stream dies after the pieces (`die` scenario).
    pub finish: Option<Finish>,
    /// Completion tokens: one per script piece consumed.
    pub completion_tokens: u32,
}

impl Generation {
    /// Whether any tool call was emitted.
    pub fn has_tool_calls(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::ToolHeader { .. }))
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Applies `max_tokens` and `stop` to a script.
pub(crate) fn apply(script: &Script, max_tokens: u32, stop: &[String]) -> Generation {
    let stop: Vec<&str> = stop
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    let holdback = stop
        .iter()
        .map(|s| s.len())
        .max()
        .unwrap_or(1)
        .saturating_sub(1);
    let mut text = String::new();
    let mut emitted = 0usize;
    let mut pieces = Vec::new();
    let mut consumed = 0u32;
    let mut truncated = false;
    for piece in &script.pieces {
        if consumed >= max_tokens {
            truncated = true;
            break;
        }
        consumed += 1;
        let Piece::Content(s) = piece else {
            pieces.push(piece.clone());
            continue;
        };
        if stop.is_empty() {
            pieces.push(piece.clone());
            continue;
        }
        text.push_str(s);
        let hit = stop
            .iter()
            .filter_map(|st| text[emitted..].find(st).map(|p| (emitted + p, *st)))
            .min_by_key(|(p, _)| *p);
        if let Some((pos, st)) = hit {
            pieces.push(Piece::Content(text[emitted..pos].to_string()));
            return Generation {
                pieces,
                finish: Some(Finish {
                    reason: "stop",
                    stop_reason: Some(st.to_string()),
                    on_last_piece: true,
                    tail: String::new(),
                }),
                completion_tokens: consumed,
            };
        }
        let safe = floor_char_boundary(&text, text.len().saturating_sub(holdback)).max(emitted);
        pieces.push(Piece::Content(text[emitted..safe].to_string()));
        emitted = safe;
    }
    let tail = if stop.is_empty() {
        String::new()
    } else {
        text[emitted..].to_string()
    };
    if truncated {
        if !tail.is_empty() {
            pieces.push(Piece::Content(tail));
        }
        return Generation {
            pieces,
            finish: Some(Finish {
                reason: "length",
                stop_reason: None,
                on_last_piece: true,
                tail: String::new(),
            }),
            completion_tokens: consumed,
        };
    }
    if script.ending == Ending::Die {
        return Generation {
            pieces,
            finish: None,
            completion_tokens: consumed,
        };
    }
    let has_tools = pieces.iter().any(|p| matches!(p, Piece::ToolHeader { .. }));
    Generation {
        pieces,
        finish: Some(Finish {
            reason: if has_tools { "tool_calls" } else { "stop" },
            stop_reason: None,
            on_last_piece: false,
            tail,
        }),
        completion_tokens: consumed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn script(words: &[&str]) -> Script {
        Script {
            pieces: words
                .iter()
                .map(|w| Piece::Content(w.to_string()))
                .collect(),
            ending: Ending::Finish,
            prefill: None,
            pace: Duration::ZERO,
            usage_null: false,
            http_error: None,
            http_error_once: None,
        }
    }

    fn text(g: &Generation) -> String {
        let mut s: String = g
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Content(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        if let Some(f) = &g.finish {
            s.push_str(&f.tail);
        }
        s
    }

    #[test]
    fn natural_stop() {
        let g = apply(&script(&["a", " b"]), 10, &[]);
        assert_eq!(g.finish.as_ref().unwrap().reason, "stop");
        assert_eq!(g.completion_tokens, 2);
        assert_eq!(text(&g), "a b");
    }

    #[test]
    fn length() {
        let g = apply(&script(&["a", " b", " c"]), 2, &[]);
        let f = g.finish.as_ref().unwrap();
        assert_eq!((f.reason, f.on_last_piece), ("length", true));
        assert_eq!(text(&g), "a b");
    }

    #[test]
    fn stop_string_across_chunks() {
        let g = apply(
            &script(&["alpha", " beta", " ST", "OP", " gamma"]),
            100,
            &["STOP".to_string()],
        );
        let f = g.finish.as_ref().unwrap();
        assert_eq!(f.reason, "stop");
        assert_eq!(f.stop_reason.as_deref(), Some("STOP"));
        assert_eq!(text(&g), "alpha beta ");
        assert_eq!(g.completion_tokens, 4);
    }

    #[test]
    fn stop_not_found_flushes_tail() {
        let g = apply(&script(&["alpha", " beta"]), 100, &["XYZ".to_string()]);
        assert_eq!(text(&g), "alpha beta");
        assert_eq!(g.finish.unwrap().stop_reason, None);
    }
}
