//! Recovers tool calls that a backend left in the text (pure, incremental).
//!
//! vLLM without a matching `--tool-call-parser` returns the model's raw tool-call markup as
//! content. Two formats are recognised:
//! - Hermes / Qwen: `<tool_call>{"name": "Bash", "arguments": {…}}</tool_call>`
//! - gpt-oss Harmony: `<|channel|>commentary to=functions.Bash <|constrain|>json<|message|>{…}<|call|>`,
//!   whose `analysis` channel is reasoning and `final` channel is the answer.
//!
//! Text is streamed through as it comes, except a tail that could be the start of a marker,
//! which waits for the next fragment. Markers split across chunk boundaries are therefore
//! found, and ordinary text is delayed by at most a marker's length.

use serde_json::Value;

/// One piece of recovered output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Reasoning(String),
    ToolCall { name: String, arguments: String },
}

const TOOL_OPEN: &str = "<tool_call>";
const TOOL_CLOSE: &str = "</tool_call>";
const START: &str = "<|start|>";
const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
/// Harmony tokens that end a message body.
const BODY_END: &[&str] = &["<|end|>", "<|call|>", "<|return|>", START, CHANNEL];
/// Markers looked for in plain text; stray Harmony end tokens are removed.
const TEXT_MARKERS: &[&str] = &[
    TOOL_OPEN,
    START,
    CHANNEL,
    "<|end|>",
    "<|call|>",
    "<|return|>",
    MESSAGE,
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Text,
    Reasoning,
    Tool(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Text,
    Hermes,
    HarmonyHeader,
    HarmonyBody(Body),
}

#[derive(Debug)]
pub struct TextToolParser {
    buf: String,
    state: State,
    /// Bytes at the front of `buf` already searched for the awaited end marker without
    /// finding its start: a long tool call arriving token by token is scanned once, not
    /// once per token (which was quadratic in its length).
    searched: usize,
}

impl Default for TextToolParser {
    fn default() -> Self {
        Self::new()
    }
}

impl TextToolParser {
    pub fn new() -> Self {
        Self {
            buf: String::new(),
            state: State::Text,
            searched: 0,
        }
    }

    /// Feeds one fragment; completed pieces are appended to `out`.
    pub fn push(&mut self, fragment: &str, out: &mut Vec<Piece>) {
        // Plain text with nothing pending: every marker, and so every partial one, starts
        // with `<`, so a fragment without one is text as it is. This is nearly every token.
        if matches!(self.state, State::Text) && self.buf.is_empty() && !fragment.contains('<') {
            emit(out, Piece::Text(fragment.to_owned()));
            return;
        }
        self.buf.push_str(fragment);
        loop {
            let progressed = match self.state.clone() {
                State::Text => self.scan_text(out),
                State::Hermes => self.scan_hermes(out),
                State::HarmonyHeader => self.scan_header(),
                State::HarmonyBody(body) => self.scan_body(body, out),
            };
            if !progressed {
                break;
            }
        }
    }

    /// Ends the stream: whatever is buffered is emitted as best understood.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        let rest = std::mem::take(&mut self.buf);
        self.searched = 0;
        match std::mem::replace(&mut self.state, State::Text) {
            State::Text => emit(out, Piece::Text(rest)),
            // A model may stop at end-of-sequence without the closing tag.
            State::Hermes => match hermes_call(&rest) {
                Some(call) => out.push(call),
                None => emit(out, Piece::Text(format!("{TOOL_OPEN}{rest}"))),
            },
            State::HarmonyHeader => {}
            State::HarmonyBody(body) => emit(out, body_piece(body, rest)),
        }
    }

    fn scan_text(&mut self, out: &mut Vec<Piece>) -> bool {
        match find_first(&self.buf, TEXT_MARKERS) {
            Some((at, marker)) => {
                let text: String = self.cut(at, marker.len());
                emit(out, Piece::Text(text));
                self.state = match marker {
                    TOOL_OPEN => State::Hermes,
                    START | CHANNEL => State::HarmonyHeader,
                    _ => State::Text,
                };
                true
            }
            None => {
                let keep = partial_marker_len(&self.buf, TEXT_MARKERS);
                let text: String = self.buf.drain(..self.buf.len() - keep).collect();
                emit(out, Piece::Text(text));
                false
            }
        }
    }

    fn scan_hermes(&mut self, out: &mut Vec<Piece>) -> bool {
        let Some((at, _)) = self.find_end(&[TOOL_CLOSE]) else {
            return false;
        };
        let inner: String = self.cut(at, TOOL_CLOSE.len());
        match hermes_call(&inner) {
            Some(call) => out.push(call),
            None => emit(out, Piece::Text(format!("{TOOL_OPEN}{inner}{TOOL_CLOSE}"))),
        }
        self.state = State::Text;
        true
    }

    fn scan_header(&mut self) -> bool {
        let Some((at, _)) = self.find_end(&[MESSAGE]) else {
            return false;
        };
        let header: String = self.cut(at, MESSAGE.len());
        self.state = State::HarmonyBody(harmony_body(&header));
        true
    }

    fn scan_body(&mut self, body: Body, out: &mut Vec<Piece>) -> bool {
        match self.find_end(BODY_END) {
            Some((at, marker)) => {
                let content: String = self.cut(at, marker.len());
                emit(out, body_piece(body, content));
                self.state = match marker {
                    START | CHANNEL => State::HarmonyHeader,
                    _ => State::Text,
                };
                true
            }
            None => {
                // Reasoning and text stream on; a tool call's arguments wait for `<|call|>`.
                if !matches!(body, Body::Tool(_)) {
                    let keep = partial_marker_len(&self.buf, BODY_END);
                    let content: String = self.buf.drain(..self.buf.len() - keep).collect();
                    self.searched = 0;
                    emit(out, body_piece(body, content));
                }
                false
            }
        }
    }

    /// The buffer's text before the marker at byte `at`, removed with the marker.
    fn cut(&mut self, at: usize, marker_len: usize) -> String {
        let before = self.buf[..at].to_owned();
        self.buf.drain(..at + marker_len);
        before
    }

    /// The earliest of `markers` in the buffer, searching only what earlier calls have not
    /// ruled out. Found: the search restarts from the front next time (the caller drains up
    /// to the marker); not found: all but a possible marker start is ruled out.
    fn find_end<'m>(&mut self, markers: &[&'m str]) -> Option<(usize, &'m str)> {
        let from = self.searched.min(self.buf.len());
        match find_first(&self.buf[from..], markers) {
            Some((at, marker)) => {
                self.searched = 0;
                Some((from + at, marker))
            }
            None => {
                let longest = markers.iter().map(|m| m.len()).max().unwrap_or(1);
                let mut resume = self.buf.len().saturating_sub(longest.saturating_sub(1));
                while !self.buf.is_char_boundary(resume) {
                    resume -= 1;
                }
                self.searched = resume.max(from);
                None
            }
        }
    }
}

/// Appends a piece, skipping empty text and merging with a previous piece of the same kind.
fn emit(out: &mut Vec<Piece>, piece: Piece) {
    match (out.last_mut(), piece) {
        (_, Piece::Text(t) | Piece::Reasoning(t)) if t.is_empty() => {}
        (Some(Piece::Text(prev)), Piece::Text(t)) => prev.push_str(&t),
        (Some(Piece::Reasoning(prev)), Piece::Reasoning(t)) => prev.push_str(&t),
        (_, piece) => out.push(piece),
    }
}

fn body_piece(body: Body, content: String) -> Piece {
    match body {
        Body::Text => Piece::Text(content),
        Body::Reasoning => Piece::Reasoning(content),
        Body::Tool(name) => Piece::ToolCall {
            name,
            arguments: normalize_arguments(content.trim()),
        },
    }
}

/// Harmony header such as `assistant<|channel|>commentary to=functions.Bash <|constrain|>json`.
fn harmony_body(header: &str) -> Body {
    if let Some(pos) = header.find("to=") {
        let target: String = header[pos + 3..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '<')
            .collect();
        let name = target.strip_prefix("functions.").unwrap_or(&target);
        return Body::Tool(name.to_owned());
    }
    let channel = header.rsplit(CHANNEL).next().unwrap_or(header).trim();
    if channel.starts_with("analysis") {
        Body::Reasoning
    } else {
        Body::Text
    }
}

/// `{"name": …, "arguments": {…}}` (or `parameters`, or arguments as a JSON string).
fn hermes_call(inner: &str) -> Option<Piece> {
    let v: Value = serde_json::from_str(inner.trim()).ok()?;
    let name = v.get("name")?.as_str()?.to_owned();
    let args = v.get("arguments").or_else(|| v.get("parameters"));
    let arguments = match args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => normalize_arguments(s),
        Some(other) => other.to_string(),
    };
    Some(Piece::ToolCall { name, arguments })
}

fn normalize_arguments(raw: &str) -> String {
    if raw.is_empty() {
        "{}".to_owned()
    } else {
        raw.to_owned()
    }
}

/// Earliest occurrence of any marker.
fn find_first<'m>(haystack: &str, markers: &[&'m str]) -> Option<(usize, &'m str)> {
    markers
        .iter()
        .filter_map(|m| haystack.find(m).map(|at| (at, *m)))
        .min_by_key(|(at, _)| *at)
}

/// Length of the longest suffix of `s` that is a proper prefix of some marker.
fn partial_marker_len(s: &str, markers: &[&str]) -> usize {
    let longest = markers.iter().map(|m| m.len()).max().unwrap_or(0);
    (1..longest.min(s.len() + 1))
        .rev()
        .find(|&n| {
            s.is_char_boundary(s.len() - n)
                && markers.iter().any(|m| m.starts_with(&s[s.len() - n..]))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in chunks of every size from 1 to 7 and checks the result is the same.
    fn parse_all_splits(text: &str) -> Vec<Piece> {
        let mut first: Option<Vec<Piece>> = None;
        for size in 1..=7 {
            let mut p = TextToolParser::new();
            let mut out = Vec::new();
            let chars: Vec<char> = text.chars().collect();
            for chunk in chars.chunks(size) {
                p.push(&chunk.iter().collect::<String>(), &mut out);
            }
            p.finish(&mut out);
            let mut merged = Vec::new();
            for piece in out {
                emit(&mut merged, piece);
            }
            match &first {
                None => first = Some(merged),
                Some(f) => assert_eq!(f, &merged, "chunk size {size}"),
            }
        }
        first.unwrap()
    }

    #[test]
    fn hermes_call_is_recovered() {
        let out = parse_all_splits("Let me check.\n<tool_call>\n{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls\"}}\n</tool_call>");
        assert_eq!(
            out,
            [
                Piece::Text("Let me check.\n".into()),
                Piece::ToolCall {
                    name: "Bash".into(),
                    arguments: r#"{"command":"ls"}"#.into()
                }
            ]
        );
    }

    #[test]
    fn harmony_channels_are_split() {
        let out = parse_all_splits("<|channel|>analysis<|message|>Need to list files.<|end|><|start|>assistant<|channel|>commentary to=functions.Bash <|constrain|>json<|message|>{\"command\":\"ls\"}<|call|>");
        assert_eq!(
            out,
            [
                Piece::Reasoning("Need to list files.".into()),
                Piece::ToolCall {
                    name: "Bash".into(),
                    arguments: r#"{"command":"ls"}"#.into()
                }
            ]
        );
    }

    #[test]
    fn harmony_final_channel_is_text() {
        let out = parse_all_splits("<|channel|>final<|message|>All done.<|return|>");
        assert_eq!(out, [Piece::Text("All done.".into())]);
    }

    #[test]
    fn plain_text_with_angle_brackets_passes() {
        let out = parse_all_splits("if a <b and <tool_ is not a tag, print(x<|y)");
        assert_eq!(
            out,
            [Piece::Text(
                "if a <b and <tool_ is not a tag, print(x<|y)".into()
            )]
        );
    }

    #[test]
    fn invalid_hermes_body_stays_text() {
        let out = parse_all_splits("<tool_call>not json</tool_call> ok");
        assert_eq!(
            out,
            [Piece::Text("<tool_call>not json</tool_call> ok".into())]
        );
    }

    #[test]
    fn unterminated_hermes_call_at_end_is_recovered() {
        let out = parse_all_splits(
            "<tool_call>{\"name\":\"Read\",\"arguments\":\"{\\\"file_path\\\":\\\"/a\\\"}\"}",
        );
        assert_eq!(
            out,
            [Piece::ToolCall {
                name: "Read".into(),
                arguments: r#"{"file_path":"/a"}"#.into()
            }]
        );
    }

    #[test]
    fn long_tool_call_fed_token_by_token_is_scanned_once() {
        // Each fragment used to re-search the whole buffered call for `</tool_call>`:
        // quadratic in the call's length (a 1 MB Write took minutes).
        let mut p = TextToolParser::new();
        let mut out = Vec::new();
        p.push(
            "<tool_call>{\"name\": \"Write\", \"arguments\": {\"content\": \"",
            &mut out,
        );
        for _ in 0..20_000 {
            p.push("é</tool", &mut out);
            assert!(p.searched + TOOL_CLOSE.len() >= p.buf.len());
            assert!(p.buf.is_char_boundary(p.searched));
        }
        p.push("\"}}</tool_call>after", &mut out);
        p.finish(&mut out);
        let Piece::ToolCall { name, arguments } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(name, "Write");
        assert_eq!(
            arguments.len(),
            20_000 * "é</tool".len() + r#"{"content":""}"#.len()
        );
        assert_eq!(out[1], Piece::Text("after".into()));
        assert_eq!(p.searched, 0);
    }

    #[test]
    fn non_ascii_text_before_a_marker_keeps_the_marker_out() {
        // The text before a marker was cut with `.take(byte offset)` over chars: every
        // multi-byte character pulled one more character of the marker into the text.
        let out = parse_all_splits("héllo wörld <tool_call>{\"name\": \"Bash\"}</tool_call>");
        assert_eq!(
            out,
            [
                Piece::Text("héllo wörld ".into()),
                Piece::ToolCall {
                    name: "Bash".into(),
                    arguments: "{}".into()
                }
            ]
        );
        let out = parse_all_splits("<|channel|>analysis<|message|>日本語<|end|>");
        assert_eq!(out, [Piece::Reasoning("日本語".into())]);
    }

    #[test]
    fn markers_after_a_partial_search_are_still_found() {
        let out = parse_all_splits(
            "<|channel|>commentary to=functions.Bash<|message|>{\"a\": \"<|ca\"}<|call|>tail",
        );
        assert_eq!(
            out,
            [
                Piece::ToolCall {
                    name: "Bash".into(),
                    arguments: r#"{"a": "<|ca"}"#.into()
                },
                Piece::Text("tail".into())
            ]
        );
    }
}
