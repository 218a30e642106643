//! The load generator: request bodies for both protocols, one request or stream, and
//! bounded closed loops.
//!
//! Every loop is bounded twice: by a wall-clock deadline and by a count, and every single
//! request by a timeout, so a target that stalls (or cannot take 1,000 streams) shows up as
//! errors in the report instead of a hung benchmark.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::json;

use super::procfs::Watched;

/// The API a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// OpenAI Chat Completions (`/v1/chat/completions`): the mock, directly, and every path
    /// in the `openai` workload (the proxies' OpenAI front doors).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`): the proxies.
    Anthropic,
}

/// One path under test.
pub struct Target {
    /// `direct`, `switchyard` or `litellm`.
    pub name: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub proto: Proto,
    /// Model name sent in requests.
    pub model: String,
    /// The proxy process charged with this path's CPU and memory (none for `direct`).
    pub process: Option<Watched>,
    /// Sent as `x-api-key` (Anthropic) or bearer token (OpenAI).
    api_key: String,
    url: String,
    client: reqwest::Client,
}

impl Target {
    pub fn new(
        name: &str,
        base: &str,
        proto: Proto,
        model: &str,
        api_key: &str,
        process: Option<Watched>,
    ) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        let host = base
            .strip_prefix("http://")
            .and_then(|rest| rest.split([':', '/']).next())
            .unwrap_or("");
        // Safety net: this tool only ever talks to this machine.
        if !(host == "localhost" || host == "[::1]" || host.starts_with("127.")) {
            anyhow::bail!("{name}: {base} is not a loopback http:// address");
        }
        let url = match proto {
            Proto::OpenAi => format!("{base}/v1/chat/completions"),
            Proto::Anthropic => format!("{base}/v1/messages"),
        };
        // One pool per target; HTTP/1.1 keep-alive like the real clients (and LiteLLM's
        // uvicorn) use. No proxy settings from the environment: loopback only.
        let client = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Target {
            name: name.to_string(),
            base,
            proto,
            model: model.to_string(),
            process,
            api_key: api_key.to_string(),
            url,
            client,
        })
    }

    /// The same path spoken to in `proto` (same process, model name and key, its own
    /// connection pool): the proxies' OpenAI front doors for the `openai` workload.
    pub fn speaking(&self, proto: Proto) -> anyhow::Result<Self> {
        Target::new(
            &self.name,
            &self.base,
            proto,
            &self.model,
            &self.api_key,
            self.process.clone(),
        )
    }

    /// The full URL requests are posted to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request body for one user message, pre-serialised once per workload.
    pub fn body(&self, text: &str, max_tokens: u32, stream: bool) -> Bytes {
        let v = match self.proto {
            Proto::OpenAi => {
                let mut v = json!({
                    "model": self.model,
                    "messages": [{"role": "user", "content": text}],
                    "max_tokens": max_tokens,
                    "stream": stream,
                });
                if stream {
                    v["stream_options"] = json!({"include_usage": true});
                }
                v
            }
            Proto::Anthropic => json!({
                "model": self.model,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": text}],
                "stream": stream,
            }),
        };
        Bytes::from(serde_json::to_vec(&v).expect("json serialises"))
    }

    /// A POST of `body`, with `extra` headers on top of the usual ones.
    fn post(&self, body: Bytes, extra: Option<&HeaderMap>) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(h) = extra {
            req = req.headers(h.clone());
        }
        match self.proto {
            Proto::OpenAi => req.header("authorization", format!("Bearer {}", self.api_key)),
            Proto::Anthropic => req
                .header("x-api-key", &self.api_key)
                .header("anthropic-version", "2023-06-01"),
        }
    }
}

fn err_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One non-streaming request; returns its latency.
pub async fn small_once(t: &Target, body: Bytes) -> Result<Duration, String> {
    let start = Instant::now();
    let resp = t.post(body, None).send().await.map_err(|e| err_text(&e))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| err_text(&e))?;
    let elapsed = start.elapsed();
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            short(&String::from_utf8_lossy(&bytes))
        ));
    }
    if find(&bytes, b"assistant").is_none() {
        return Err(format!(
            "unexpected body: {}",
            short(&String::from_utf8_lossy(&bytes))
        ));
    }
    Ok(elapsed)
}

/// Counts generated tokens in an SSE body and notices its end.
///
/// A token is a data line whose `"content":` after `"delta"` (OpenAI's
/// `choices[0].delta.content`) or `"text":` (Anthropic `text_delta`) holds a non-empty string:
/// the mock sends one word per chunk, and both proxies forward one delta per chunk.
/// Whitespace after the colon is allowed (LiteLLM writes JSON with Python's separators).
struct Scanner {
    proto: Proto,
    buf: Vec<u8>,
    done: bool,
    error: Option<String>,
}

impl Scanner {
    fn new(proto: Proto) -> Self {
        Scanner {
            proto,
            buf: Vec::new(),
            done: false,
            error: None,
        }
    }

    /// Feeds body bytes; returns the tokens completed by them.
    fn feed(&mut self, chunk: &[u8]) -> u64 {
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(chunk);
        let mut tokens = 0;
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            tokens += self.line(&buf[start..start + pos]);
            start += pos + 1;
        }
        buf.drain(..start);
        self.buf = buf;
        tokens
    }

    fn line(&mut self, line: &[u8]) -> u64 {
        let Some(data) = line.strip_prefix(b"data:") else {
            return 0;
        };
        let data = data.trim_ascii();
        match self.proto {
            Proto::OpenAi => {
                if data == b"[DONE]" {
                    self.done = true;
                    return 0;
                }
                if data.starts_with(b"{\"error\"") || data.starts_with(b"{\"object\":\"error\"") {
                    self.error = Some(short(&String::from_utf8_lossy(data)));
                }
                match find(data, b"\"delta\"") {
                    Some(at) => nonempty_string_after(&data[at..], b"\"content\":"),
                    None => 0,
                }
            }
            Proto::Anthropic => {
                if find(data, b"\"message_stop\"").is_some() {
                    self.done = true;
                }
                if data.starts_with(b"{\"type\":\"error\"")
                    || data.starts_with(b"{\"type\": \"error\"")
                {
                    self.error = Some(short(&String::from_utf8_lossy(data)));
                }
                if find(data, b"text_delta").is_some() {
                    nonempty_string_after(data, b"\"text\":")
                } else {
                    0
                }
            }
        }
    }
}

/// 1 if `key` is followed (after optional spaces) by a non-empty JSON string.
fn nonempty_string_after(data: &[u8], key: &[u8]) -> u64 {
    let Some(at) = find(data, key) else { return 0 };
    let rest = data[at + key.len()..].trim_ascii_start();
    u64::from(rest.len() >= 2 && rest[0] == b'"' && rest[1] != b'"')
}

/// `out`, or an error if the stream delivered fewer than `want` tokens.
pub fn at_least(out: StreamOutcome, want: u64) -> Result<StreamOutcome, String> {
    if out.tokens < want {
        return Err(format!(
            "stream ended after {} of {want} tokens",
            out.tokens
        ));
    }
    Ok(out)
}

/// What one stream did.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    /// Time to the first body bytes (the first SSE event).
    pub ttfb: Option<Duration>,
    /// Time to the first generated token.
    pub ttft: Option<Duration>,
    /// Time to the end of the stream.
    pub total: Duration,
    pub tokens: u64,
}

/// Marks a stream as open (it has delivered a token) for as long as it lives.
struct OpenGuard<'a> {
    counter: Option<&'a AtomicI64>,
    on: bool,
}

impl OpenGuard<'_> {
    fn open(&mut self) {
        if let (Some(c), false) = (self.counter, self.on) {
            c.fetch_add(1, Ordering::SeqCst);
            self.on = true;
        }
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        if let (Some(c), true) = (self.counter, self.on) {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One streaming request, read to the end. Tokens are added to `tokens` as they arrive, so a
/// stream cut off by a deadline still counts what it delivered. `open` (when given) counts
/// the streams that have delivered a token and not yet ended.
pub async fn stream_once(
    t: &Target,
    body: Bytes,
    tokens: &AtomicU64,
    open: Option<&AtomicI64>,
) -> Result<StreamOutcome, String> {
    stream_request(t, t.post(body, None), tokens, open).await
}

/// [`stream_once`] with `headers` added to the request.
pub async fn stream_once_with(
    t: &Target,
    body: Bytes,
    headers: &HeaderMap,
    tokens: &AtomicU64,
    open: Option<&AtomicI64>,
) -> Result<StreamOutcome, String> {
    stream_request(t, t.post(body, Some(headers)), tokens, open).await
}

async fn stream_request(
    t: &Target,
    req: reqwest::RequestBuilder,
    tokens: &AtomicU64,
    open: Option<&AtomicI64>,
) -> Result<StreamOutcome, String> {
    let start = Instant::now();
    let mut resp = req.send().await.map_err(|e| err_text(&e))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", short(&text)));
    }
    let mut scanner = Scanner::new(t.proto);
    let mut out = StreamOutcome::default();
    let mut guard = OpenGuard {
        counter: open,
        on: false,
    };
    while let Some(chunk) = resp.chunk().await.map_err(|e| err_text(&e))? {
        if out.ttfb.is_none() && !chunk.is_empty() {
            out.ttfb = Some(start.elapsed());
        }
        let n = scanner.feed(&chunk);
        if n > 0 {
            if out.ttft.is_none() {
                out.ttft = Some(start.elapsed());
                guard.open();
            }
            out.tokens += n;
            tokens.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(e) = scanner.error.take() {
            return Err(format!("error event in stream: {e}"));
        }
    }
    if !scanner.done {
        return Err("stream ended before its final event".into());
    }
    out.total = start.elapsed();
    Ok(out)
}

/// Bounds of a closed loop: `concurrency` workers each issue one operation after another
/// until `duration` has passed or `max_ops` were issued in all. The operation is given the
/// worker's index (`0..concurrency`).
#[derive(Debug, Clone)]
pub struct LoopSpec {
    pub concurrency: usize,
    pub duration: Duration,
    pub max_ops: u64,
    /// Per-operation timeout (an error when hit).
    pub op_timeout: Duration,
    /// Cut operations still running at the deadline (counted as `cancelled`, not errors);
    /// otherwise they are waited for (up to `op_timeout`).
    pub cancel_at_deadline: bool,
    /// Worker `i` waits `stagger * i / concurrency` before its first operation, so that
    /// operations of equal length do not all start (and end) at the same instant.
    pub stagger: Duration,
}

/// Results of a closed loop.
#[derive(Debug)]
pub struct LoopOut<T> {
    pub ok: Vec<T>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub cancelled: u64,
    pub wall: Duration,
}

impl<T> Default for LoopOut<T> {
    fn default() -> Self {
        LoopOut {
            ok: Vec::new(),
            errors: 0,
            first_error: None,
            cancelled: 0,
            wall: Duration::ZERO,
        }
    }
}

pub async fn closed_loop<T, F, Fut>(spec: &LoopSpec, op: F) -> LoopOut<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let op = Arc::new(op);
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut workers = Vec::with_capacity(spec.concurrency);
    for i in 0..spec.concurrency {
        let op = op.clone();
        let issued = issued.clone();
        let spec = spec.clone();
        let delay = spec
            .stagger
            .mul_f64(i as f64 / spec.concurrency.max(1) as f64);
        workers.push(tokio::spawn(async move {
            let mut out = LoopOut::<T>::default();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            loop {
                let now = Instant::now();
                if now >= deadline || issued.fetch_add(1, Ordering::Relaxed) >= spec.max_ops {
                    break;
                }
                let limit = if spec.cancel_at_deadline {
                    deadline.min(now + spec.op_timeout)
                } else {
                    now + spec.op_timeout
                };
                match tokio::time::timeout_at(limit.into(), op(i)).await {
                    Ok(Ok(v)) => out.ok.push(v),
                    Ok(Err(e)) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e);
                    }
                    Err(_) if spec.cancel_at_deadline && Instant::now() >= deadline => {
                        out.cancelled += 1;
                    }
                    Err(_) => {
                        out.errors += 1;
                        out.first_error
                            .get_or_insert(format!("timed out after {:?}", spec.op_timeout));
                    }
                }
            }
            out
        }));
    }
    let mut all = LoopOut::<T>::default();
    for w in workers {
        match w.await {
            Ok(out) => {
                all.ok.extend(out.ok);
                all.errors += out.errors;
                all.cancelled += out.cancelled;
                if all.first_error.is_none() {
                    all.first_error = out.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error.get_or_insert(format!("worker failed: {e}"));
            }
        }
    }
    all.wall = start.elapsed();
    all
}

/// Bounds of the open-streams workload.
#[derive(Debug, Clone)]
pub struct HoldSpec {
    pub streams: usize,
    /// Give up waiting for all streams to be open after this long.
    pub deadline: Duration,
    /// Once all are open, keep them open this long (sampling memory) before cutting them.
    pub hold_for: Duration,
    pub sample_every: Duration,
}

/// Samples taken while streams are held open.
#[derive(Debug, Clone, Default)]
pub struct HoldOut {
    pub peak_open: i64,
    /// Peak RSS of the target's process during the hold (bytes); `None` without a process.
    pub peak_rss: Option<u64>,
    /// Time until all streams had delivered a token, if they all did.
    pub all_open_after: Option<Duration>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Streams that ran to their end before being cut (should be 0).
    pub completed: u64,
    /// CPU seconds of the target's process while all streams were open, and that window's length.
    pub steady_cpu: Option<(f64, Duration)>,
    pub tokens: u64,
    pub wall: Duration,
}

/// Opens `spec.streams` streams at once, waits until they all deliver tokens (or the deadline),
/// holds them, samples the target's RSS, then cuts them all.
pub async fn hold_streams(t: Arc<Target>, body: Bytes, spec: &HoldSpec) -> HoldOut {
    let open = Arc::new(AtomicI64::new(0));
    let tokens = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let deadline = start + spec.deadline;
    let mut tasks = Vec::with_capacity(spec.streams);
    for _ in 0..spec.streams {
        let (t, body, open, tokens, errors, completed, first_error) = (
            t.clone(),
            body.clone(),
            open.clone(),
            tokens.clone(),
            errors.clone(),
            completed.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let fut = stream_once(&t, body, &tokens, Some(&open));
            match tokio::time::timeout_at((deadline + Duration::from_secs(30)).into(), fut).await {
                Ok(Ok(_)) => {
                    completed.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Err(e)) => {
                    errors.fetch_add(1, Ordering::SeqCst);
                    first_error.lock().unwrap().get_or_insert(e);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::SeqCst);
                    first_error
                        .lock()
                        .unwrap()
                        .get_or_insert("no end within the deadline".into());
                }
            }
        }));
    }
    let mut out = HoldOut::default();
    let mut steady_from: Option<(Instant, f64)> = None;
    let cpu = |t: &Target| t.process.as_ref().map(Watched::cpu_seconds).unwrap_or(0.0);
    loop {
        tokio::time::sleep(spec.sample_every).await;
        let now = Instant::now();
        let n_open = open.load(Ordering::SeqCst);
        out.peak_open = out.peak_open.max(n_open);
        if let Some(p) = &t.process {
            let rss = p.rss_bytes();
            out.peak_rss = Some(out.peak_rss.unwrap_or(0).max(rss));
        }
        if n_open as usize >= spec.streams && steady_from.is_none() {
            out.all_open_after = Some(now - start);
            steady_from = Some((now, cpu(&t)));
        }
        if let Some((since, _)) = steady_from {
            if now - since >= spec.hold_for {
                break;
            }
        }
        let ended = errors.load(Ordering::SeqCst) + completed.load(Ordering::SeqCst);
        if now >= deadline || ended as usize >= spec.streams {
            break;
        }
    }
    if let Some((since, cpu0)) = steady_from {
        out.steady_cpu = Some(((cpu(&t) - cpu0).max(0.0), since.elapsed()));
    }
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    out.wall = start.elapsed();
    out.errors = errors.load(Ordering::SeqCst);
    out.completed = completed.load(Ordering::SeqCst);
    out.first_error = first_error.lock().unwrap().clone();
    out.tokens = tokens.load(Ordering::SeqCst);
    out
}

/// Latency samples.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<u64>);

impl Samples {
    pub fn from_durations(d: impl IntoIterator<Item = Duration>) -> Self {
        let mut v: Vec<u64> = d.into_iter().map(|d| d.as_nanos() as u64).collect();
        v.sort_unstable();
        Samples(v)
    }

    /// Nearest-rank percentile in milliseconds.
    pub fn pct_ms(&self, q: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((q / 100.0) * self.0.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.0.len()) - 1;
        Some(self.0[idx] as f64 / 1e6)
    }

    pub fn mean_ms(&self) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.0.iter().map(|&n| n as f64).sum::<f64>() / self.0.len() as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_openai_tokens() {
        let mut s = Scanner::new(Proto::OpenAi);
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"word0\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\" word1\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        );
        // Split at an awkward place to check the line buffering.
        let (a, b) = body.as_bytes().split_at(90);
        assert_eq!(s.feed(a) + s.feed(b), 2);
        assert!(s.done);
        assert!(s.error.is_none());
    }

    #[test]
    fn counts_openai_delta_content_only() {
        let mut s = Scanner::new(Proto::OpenAi);
        // LiteLLM's spacing, a chunk whose only `content` is outside `delta`, the usage chunk.
        let body = concat!(
            "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"word0\"}}]}\n\n",
            "data: {\"choices\":[{\"message\":{\"content\":\"not a delta\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"completion_tokens\":1}}\n\n",
        );
        assert_eq!(s.feed(body.as_bytes()), 1);
        assert!(!s.done, "no [DONE] yet");
        s.feed(b"data: [DONE]\n\n");
        assert!(s.done);
    }

    #[test]
    fn short_stream_is_an_error() {
        let out = StreamOutcome {
            tokens: 499,
            ..Default::default()
        };
        assert!(at_least(out.clone(), 500).is_err());
        assert!(at_least(out, 499).is_ok());
    }

    #[test]
    fn counts_anthropic_tokens_with_python_spacing() {
        let mut s = Scanner::new(Proto::Anthropic);
        let body = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"delta\": {\"type\": \"text_delta\", \"text\": \"word0\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\" word1\"}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        assert_eq!(s.feed(body.as_bytes()), 2);
        assert!(s.done);
    }

    #[test]
    fn percentiles() {
        let s = Samples::from_durations((1..=100).map(Duration::from_millis));
        assert_eq!(s.pct_ms(50.0), Some(50.0));
        assert_eq!(s.pct_ms(99.0), Some(99.0));
        assert_eq!(s.pct_ms(100.0), Some(100.0));
        assert_eq!(Samples::default().pct_ms(50.0), None);
    }

    #[test]
    fn refuses_non_loopback() {
        assert!(Target::new("x", "http://10.0.0.1:80", Proto::OpenAi, "m", "k", None).is_err());
        assert!(Target::new("x", "http://127.0.0.1:80", Proto::OpenAi, "m", "k", None).is_ok());
    }
}
