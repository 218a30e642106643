//! A backend that speaks OpenAI Chat Completions badly on purpose, over raw TCP, so the
//! proxy's handling of each fault can be tested through the real binary.
//!
//! Discovery works as against vLLM (`GET /v1/models` with `max_model_len`, `GET /version`,
//! `POST /tokenize`); every `POST /v1/chat/completions` gets the backend's [`Fault`]. Every
//! answer is `Connection: close` (bodies end with the connection), so each model call is a
//! connection of its own and [`FaultBackend::peer_closed`] counts how many the proxy closed
//! (or reset) before the backend was done with them: the proof that the upstream
//! connection was freed. Every wait is bounded ([`HOLD`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest the backend holds a connection open doing nothing (a "stall forever").
pub const HOLD: Duration = Duration::from_secs(60);
/// What `/v1/models` reports.
pub const SERVED_MODEL: &str = "fault-model";

/// What the backend does with a chat completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Two content chunks, then a TCP reset (SO_LINGER 0).
    ResetMidStream,
    /// Reads the request, sends nothing.
    StallBeforeHeaders,
    /// Headers and one content chunk, then silence.
    StallAfterFirstChunk,
    /// One content chunk, then a line that is not UTF-8.
    MalformedSse,
    /// A first `data:` line that is not JSON.
    MalformedJsonData,
    /// One content chunk, then vLLM's mid-stream error object and `[DONE]`: vLLM 0.34.0
    /// `entrypoints/openai/chat_completion/serving.py` catches the exception, yields
    /// `data: {create_streaming_error_response(e)}` (`json.dumps` of `ErrorResponse`,
    /// `{"error": {"message", "type", "param", "code"}}`, `serve/engine/protocol.py`), then
    /// `data: [DONE]`.
    InStreamError,
    /// One content chunk, then a tool-call delta whose `index` is 10^11 (before: the
    /// translator sized its call table by it, and the allocation aborted the process).
    HugeToolCallIndex,
    /// A non-stream 200 whose body is an error object.
    ErrorBody200,
    /// A non-stream 200 body without end (close-delimited, up to [`ENDLESS`] bytes).
    EndlessBody,
    /// A stream whose first `data:` line never ends (up to [`ENDLESS`] bytes).
    EndlessSseLine,
    /// A well-formed stream of `n` content chunks, written as fast as the proxy reads.
    LongStream(usize),
}

/// The most an "endless" answer writes before giving up.
pub const ENDLESS: usize = 256 * 1024 * 1024;

#[derive(Debug, Default)]
struct Stats {
    chat_requests: AtomicUsize,
    tokenize_requests: AtomicUsize,
    peer_closed: AtomicUsize,
    written: AtomicU64,
}

/// A running fault backend; stops with the test's runtime.
pub struct FaultBackend {
    addr: std::net::SocketAddr,
    stats: Arc<Stats>,
}

impl FaultBackend {
    pub async fn start(fault: Fault) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let shared = stats.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let stats = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(2 * HOLD, serve(tcp, fault, &stats)).await;
                });
            }
        });
        Ok(Self { addr, stats })
    }

    /// Base URL including `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn chat_requests(&self) -> usize {
        self.stats.chat_requests.load(Ordering::SeqCst)
    }

    pub fn tokenize_requests(&self) -> usize {
        self.stats.tokenize_requests.load(Ordering::SeqCst)
    }

    /// Chat connections the proxy closed before the backend had finished with them.
    pub fn peer_closed(&self) -> usize {
        self.stats.peer_closed.load(Ordering::SeqCst)
    }

    /// Body bytes written to chat connections.
    pub fn written(&self) -> u64 {
        self.stats.written.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the proxy has closed `n` chat connections.
    pub async fn wait_peer_closed(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.peer_closed() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.peer_closed() >= n
    }
}

/// A loopback URL where nothing listens (connections are refused).
pub fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/v1")
}

/// One request: (method and path, body). Heads up to 1 MiB, bodies up to 64 MiB.
async fn read_request(tcp: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(64 << 20);
    while buf.len() < head_end + length {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next()?.to_owned();
    let target = line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    Some((target, buf[head_end..head_end + length].to_vec()))
}

async fn serve(mut tcp: TcpStream, fault: Fault, stats: &Stats) {
    let Some((target, body)) = read_request(&mut tcp).await else {
        return;
    };
    let _ = match target.as_str() {
        "get /v1/models" => json(&mut tcp, &models()).await,
        "get /version" => json(&mut tcp, &serde_json::json!({"version": "0.34.0"})).await,
        "post /tokenize" => {
            stats.tokenize_requests.fetch_add(1, Ordering::SeqCst);
            let count = body.len() / 4;
            json(
                &mut tcp,
                &serde_json::json!({"count": count, "max_model_len": 32768, "tokens": []}),
            )
            .await
        }
        "post /v1/chat/completions" => {
            stats.chat_requests.fetch_add(1, Ordering::SeqCst);
            if chat(&mut tcp, fault, stats).await.is_err() {
                stats.peer_closed.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
        _ => {
            write_all(
                &mut tcp,
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
        }
    };
}

fn models() -> serde_json::Value {
    serde_json::json!({"object": "list", "data": [{
        "id": SERVED_MODEL, "object": "model", "created": 0, "owned_by": "vllm",
        "root": SERVED_MODEL, "parent": null, "max_model_len": 32768, "permission": []
    }]})
}

async fn write_all(tcp: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    tcp.write_all(bytes).await?;
    tcp.flush().await
}

async fn json(tcp: &mut TcpStream, v: &serde_json::Value) -> std::io::Result<()> {
    let body = v.to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    write_all(tcp, head.as_bytes()).await?;
    write_all(tcp, body.as_bytes()).await
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nconnection: close\r\n\r\n";
const JSON_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";

/// One OpenAI content chunk as an SSE event.
pub fn content_event(text: &str) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0,
        "model": SERVED_MODEL,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                     "logprobs": null, "finish_reason": null}]
    });
    format!("data: {chunk}\n\n")
}

/// Counts body bytes written.
async fn body(tcp: &mut TcpStream, stats: &Stats, bytes: &[u8]) -> std::io::Result<()> {
    write_all(tcp, bytes).await?;
    stats
        .written
        .fetch_add(bytes.len() as u64, Ordering::SeqCst);
    Ok(())
}

/// Holds the connection, doing nothing, until the proxy closes it (an error: counted as
/// closed by the peer) or [`HOLD`] passes (Ok).
async fn hold(tcp: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout(HOLD, read).await {
        Ok(()) => Err(std::io::ErrorKind::ConnectionAborted.into()),
        Err(_) => Ok(()),
    }
}

/// Writes `total` bytes of `byte` (a body or line without end), 64 KiB at a time.
async fn endless(tcp: &mut TcpStream, stats: &Stats, total: usize) -> std::io::Result<()> {
    let block = vec![b'a'; 64 * 1024];
    for _ in 0..total / block.len() {
        body(tcp, stats, &block).await?;
    }
    hold(tcp).await
}

/// Streaming faults answer a stream whatever the request asked.
async fn chat(tcp: &mut TcpStream, fault: Fault, stats: &Stats) -> std::io::Result<()> {
    let first = content_event("Hello");
    match fault {
        Fault::StallBeforeHeaders => return hold(tcp).await,
        Fault::ErrorBody200 => {
            let err = r#"{"error":{"message":"engine died: CUDA error","type":"InternalServerError","param":null,"code":500}}"#;
            write_all(tcp, JSON_HEAD).await?;
            body(tcp, stats, err.as_bytes()).await?;
            return Ok(());
        }
        Fault::EndlessBody => {
            write_all(tcp, JSON_HEAD).await?;
            body(
                tcp,
                stats,
                br#"{"id":"chatcmpl-fault","choices":[{"message":{"content":""#,
            )
            .await?;
            return endless(tcp, stats, ENDLESS).await;
        }
        _ => {}
    }
    write_all(tcp, SSE_HEAD).await?;
    match fault {
        Fault::ResetMidStream => {
            body(
                tcp,
                stats,
                format!("{first}{}", content_event(" there")).as_bytes(),
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            tcp.set_zero_linger()?;
            Ok(()) // dropped: RST
        }
        Fault::StallAfterFirstChunk => {
            body(tcp, stats, first.as_bytes()).await?;
            hold(tcp).await
        }
        Fault::MalformedSse => {
            body(tcp, stats, first.as_bytes()).await?;
            // Apart, so that the first chunk commits the stream before the fault.
            tokio::time::sleep(Duration::from_millis(100)).await;
            body(tcp, stats, b"data: \xff\xfe\xfd not utf-8\n\n").await?;
            hold(tcp).await
        }
        Fault::MalformedJsonData => {
            body(tcp, stats, b"data: {\"choices\": [{\"delta\": \n\n").await?;
            hold(tcp).await
        }
        Fault::InStreamError => {
            let err = r#"data: {"error": {"message": "engine died: CUDA error", "type": "InternalServerError", "param": null, "code": 500}}"#;
            body(
                tcp,
                stats,
                format!("{first}{err}\n\ndata: [DONE]\n\n").as_bytes(),
            )
            .await?;
            hold(tcp).await
        }
        Fault::HugeToolCallIndex => {
            let chunk = serde_json::json!({
                "id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0,
                "model": SERVED_MODEL,
                "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 100_000_000_000u64,
                    "id": "call_1", "type": "function",
                    "function": {"name": "Bash", "arguments": ""}}]},
                    "logprobs": null, "finish_reason": null}]
            });
            body(tcp, stats, first.as_bytes()).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            body(tcp, stats, format!("data: {chunk}\n\n").as_bytes()).await?;
            hold(tcp).await
        }
        Fault::EndlessSseLine => {
            body(tcp, stats, b"data: ").await?;
            endless(tcp, stats, ENDLESS).await
        }
        Fault::LongStream(n) => {
            for i in 0..n {
                body(tcp, stats, content_event(&format!("word{i} ")).as_bytes()).await?;
            }
            let done = "data: {\"id\":\"chatcmpl-fault\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"fault-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
            body(tcp, stats, done.as_bytes()).await?;
            Ok(())
        }
        Fault::StallBeforeHeaders | Fault::ErrorBody200 | Fault::EndlessBody => unreachable!(),
    }
}
