//! Server-sent events (a backend's body, or the proxy's own Messages stream at an OpenAI
//! front door), as the WHATWG HTML standard defines them
//! ("Interpreting an event stream", §9.2.6): lines end with CRLF, LF or CR; `data` lines
//! join with LF; `event` names the type; comments, `id`, `retry` and unknown fields are
//! ignored; an empty line dispatches; an event never ended by an empty line is dropped.
//!
//! Written here rather than taken from `eventsource-stream` because the profile showed that
//! crate at 45% of the proxy's instructions per streamed token (≈ 23 per byte, its buffer
//! re-scanned per chunk; `bench/PROFILE.md`). This one finds line ends with `memchr`,
//! resumes its search where the last one stopped, and hands out the usual one-line event
//! as a slice of its buffer: no copy, no allocation per event.
//!
//! It is also where an event's size is bounded and its text checked to be UTF-8.

use std::ops::Range;

/// One dispatched event, borrowed from the decoder until the next call.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event` field; empty when absent (the standard's "message").
    pub event: &'a str,
    pub data: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed SSE: a line that is not UTF-8")]
    NotUtf8,
}

/// The data of the event being read.
#[derive(Debug)]
enum Data {
    None,
    /// One line so far, still in the buffer.
    InBuf(Range<usize>),
    /// Several lines, or one that outlived its buffer region.
    Owned,
}

#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the first line not yet read.
    pos: usize,
    /// No line end in `buf[pos..scan]`: the search resumes here.
    scan: usize,
    data: Data,
    owned: Vec<u8>,
    event: Vec<u8>,
    /// Bytes of the current event's lines so far.
    event_bytes: usize,
    limit: usize,
    started: bool,
    /// An event went out: its type is cleared before the next line is read.
    dispatched: bool,
    /// The body ended: a CR at the very end is a line end.
    ended: bool,
}

impl Decoder {
    /// A decoder refusing events larger than `limit` bytes (their lines, ends excluded).
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            data: Data::None,
            owned: Vec::new(),
            event: Vec::new(),
            event_bytes: 0,
            limit,
            started: false,
            dispatched: false,
            ended: false,
        }
    }

    /// Appends bytes of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            if let Data::InBuf(r) = &self.data {
                self.owned.clear();
                self.owned.extend_from_slice(&self.buf[r.clone()]);
                self.data = Data::Owned;
            }
            self.buf.drain(..self.pos);
            self.scan -= self.pos;
            self.pos = 0;
        }
        let mut chunk = chunk;
        if !self.started && !chunk.is_empty() {
            self.started = true;
            chunk = chunk.strip_prefix("\u{feff}".as_bytes()).unwrap_or(chunk);
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The body ended: what is left is read to its end (an event not ended by an empty
    /// line is still dropped).
    pub fn end(&mut self) {
        self.ended = true;
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next complete event in what was fed, if any.
    pub fn next_event(&mut self) -> Option<Result<Event<'_>, SseError>> {
        if std::mem::take(&mut self.dispatched) {
            self.event.clear();
        }
        loop {
            let (line, next) = match self.next_line() {
                Ok(Some(found)) => found,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            self.pos = next;
            self.scan = next;
            if line.is_empty() {
                if matches!(self.data, Data::None) {
                    self.event.clear();
                    self.event_bytes = 0;
                    continue;
                }
                return Some(self.dispatch());
            }
            self.event_bytes += line.len();
            if self.event_bytes > self.limit {
                return Some(Err(SseError::TooLarge(self.limit)));
            }
            self.field(line);
        }
    }

    /// The next whole line (its range and where the one after starts); `None` until its end
    /// has arrived.
    fn next_line(&mut self) -> Result<Option<(Range<usize>, usize)>, SseError> {
        let rest = &self.buf[self.scan..];
        let Some(i) = memchr::memchr2(b'\n', b'\r', rest).map(|i| self.scan + i) else {
            self.scan = self.buf.len();
            return self.partial_line_fits().map(|_| None);
        };
        let next = match self.buf[i] {
            b'\n' => i + 1,
            // A CR at the end of what arrived may be half of a CRLF: wait for the next byte.
            _ if i + 1 == self.buf.len() && !self.ended => {
                self.scan = i;
                return self.partial_line_fits().map(|_| None);
            }
            _ if self.buf.get(i + 1) == Some(&b'\n') => i + 2,
            _ => i + 1,
        };
        Ok(Some((self.pos..i, next)))
    }

    fn partial_line_fits(&self) -> Result<(), SseError> {
        if self.event_bytes + (self.buf.len() - self.pos) > self.limit {
            return Err(SseError::TooLarge(self.limit));
        }
        Ok(())
    }

    fn field(&mut self, line: Range<usize>) {
        let bytes = &self.buf[line.clone()];
        let (name, value) = match memchr::memchr(b':', bytes) {
            Some(0) => return, // a comment
            Some(c) => {
                let skip = if bytes.get(c + 1) == Some(&b' ') {
                    2
                } else {
                    1
                };
                (&bytes[..c], line.start + c + skip..line.end)
            }
            None => (bytes, line.end..line.end),
        };
        match name {
            b"data" => self.push_data(value),
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(&self.buf[value]);
            }
            _ => {} // id, retry and unknown fields
        }
    }

    fn push_data(&mut self, value: Range<usize>) {
        match std::mem::replace(&mut self.data, Data::Owned) {
            Data::None => self.data = Data::InBuf(value),
            Data::InBuf(first) => {
                self.owned.clear();
                self.owned.extend_from_slice(&self.buf[first]);
                self.owned.push(b'\n');
                self.owned.extend_from_slice(&self.buf[value]);
            }
            Data::Owned => {
                self.owned.push(b'\n');
                self.owned.extend_from_slice(&self.buf[value]);
            }
        }
    }

    fn dispatch(&mut self) -> Result<Event<'_>, SseError> {
        let data = match std::mem::replace(&mut self.data, Data::None) {
            Data::InBuf(r) => &self.buf[r],
            _ => &self.owned[..],
        };
        self.event_bytes = 0;
        self.dispatched = true;
        let event = std::str::from_utf8(&self.event).map_err(|_| SseError::NotUtf8)?;
        let data = std::str::from_utf8(data).map_err(|_| SseError::NotUtf8)?;
        Ok(Event { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `input` fed in pieces of `step` bytes, as (event, data).
    fn events(input: &[u8], step: usize, limit: usize) -> Vec<Result<(String, String), SseError>> {
        let mut d = Decoder::new(limit);
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            d.feed(piece);
            while let Some(ev) = d.next_event() {
                let failed = ev.is_err();
                out.push(ev.map(|e| (e.event.to_owned(), e.data.to_owned())));
                if failed {
                    return out;
                }
            }
        }
        d.end();
        while let Some(ev) = d.next_event() {
            out.push(ev.map(|e| (e.event.to_owned(), e.data.to_owned())));
        }
        out
    }

    fn ok(event: &str, data: &str) -> Result<(String, String), SseError> {
        Ok((event.to_owned(), data.to_owned()))
    }

    #[test]
    fn vllm_chunks_and_done_in_any_split() {
        let input = b"data: {\"a\":1}\n\ndata: {\"b\":\"\xc3\xa9\"}\n\ndata: [DONE]\n\n";
        for step in 1..input.len() {
            assert_eq!(
                events(input, step, 1024),
                vec![
                    ok("", "{\"a\":1}"),
                    ok("", "{\"b\":\"é\"}"),
                    ok("", "[DONE]")
                ],
                "pieces of {step} bytes"
            );
        }
    }

    #[test]
    fn anthropic_events_with_types_crlf_and_comments() {
        let input = b": keep-alive\r\n\r\nevent: ping\r\ndata: {}\r\n\r\nevent: message_stop\rdata:{\"x\":2}\r\r";
        for step in 1..input.len() {
            assert_eq!(
                events(input, step, 1024),
                vec![ok("ping", "{}"), ok("message_stop", "{\"x\":2}")],
                "pieces of {step} bytes"
            );
        }
    }

    #[test]
    fn data_lines_join_and_fields_follow_the_standard() {
        let input = b"\xef\xbb\xbfdata: a\ndata:  b\ndata\nid: 7\nretry: 10\nfoo: bar\n\nevent: x\n\ndata: y\n\n";
        assert_eq!(
            events(input, input.len(), 1024),
            vec![ok("", "a\n b\n"), ok("", "y")],
            "BOM stripped; one leading space only; `data` alone adds an empty line; an event \
             without data is not dispatched and its type does not leak into the next"
        );
    }

    #[test]
    fn an_unended_event_at_the_end_is_not_dispatched() {
        assert_eq!(events(b"data: 1\n\ndata: 2\n", 3, 1024), vec![ok("", "1")]);
    }

    #[test]
    fn events_over_the_limit_fail_whether_lines_end_or_not() {
        assert_eq!(events(b"data: 12345\n\n", 4, 11), vec![ok("", "12345")]);
        assert_eq!(
            events(b"data: 123456\n\n", 4, 11),
            vec![Err(SseError::TooLarge(11))]
        );
        assert_eq!(
            events(b"data: 1\ndata: 2\ndata: 3\n\n", 100, 16),
            vec![Err(SseError::TooLarge(16))],
            "the lines of one event add up"
        );
        let endless = vec![b'x'; 4096];
        assert_eq!(
            events(&endless, 512, 1000),
            vec![Err(SseError::TooLarge(1000))],
            "a line that never ends fails once it passes the limit"
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error() {
        assert_eq!(
            events(b"data: \xff\n\n", 2, 64),
            vec![Err(SseError::NotUtf8)]
        );
    }
}
