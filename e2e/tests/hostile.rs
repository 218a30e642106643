//! Hostile and careless clients through the real proxy binary: oversized and malformed
//! bodies, huge headers, slow senders, idle connections, a reader that never reads, and the
//! limits that must hold against them. Each is answered with the right error, bounded in
//! time and memory, and the proxy goes on serving everyone else.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_e2e::fault_backend::{Fault, FaultBackend};
use switchyard_e2e::mock_vllm::MockVllm;
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{hash_key, http, mock, sample, TempFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "sk-hostile-test-key";
const BODY_TIMEOUT_MS: u64 = 1_000;
const HEAD_TIMEOUT_MS: u64 = 1_000;

struct Setup {
    proxy: ProxyProcess,
    _good: MockVllm,
    fault: FaultBackend,
    cfg: TempFile,
}

/// A proxy with small body limits and timeouts; route `fault` (models `fault-*`) on a fault
/// backend, everything else on a good mock. `extra` is appended under `server:`; `keys` is
/// the `limits` of the one key (none: no keys).
async fn setup(fault: Fault, server_extra: &str, key_limits: Option<&str>) -> Setup {
    let good = mock().await;
    let fb = FaultBackend::start(fault).await.unwrap();
    let keys = match key_limits {
        Some(limits) => format!(
            "keys:\n  - name: user\n    sha256: '{}'\n    limits: {limits}\n",
            hash_key(KEY)
        ),
        None => String::new(),
    };
    let cfg = TempFile::new(&format!(
        "server: {{maxBodyBytes: 1048576, bodyReadTimeoutMs: {BODY_TIMEOUT_MS}, commitAfterMs: 200{server_extra}}}\n\
         backends:\n  - name: faulty\n    baseUrl: '{}'\n\
         \x20 - name: good\n    baseUrl: '{}'\n    servedModel: qwen3-coder\n    contextWindow: 32768\n\
         routes:\n  - name: fault\n    models: ['fault-*']\n    backend: faulty\n    retries: {{attempts: 1}}\n\
         \x20 - name: rest\n    models: ['*']\n    backend: good\n{keys}",
        fb.base_url(),
        good.base_url()
    ));
    let timeout = HEAD_TIMEOUT_MS.to_string();
    let proxy =
        ProxyProcess::start(&["--config", cfg.path(), "--header-read-timeout-ms", &timeout])
            .expect("proxy starts");
    Setup {
        proxy,
        _good: good,
        fault: fb,
        cfg,
    }
}

fn request(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 100, "stream": stream,
        "messages": [{"role": "user", "content": "hello"}]})
}

async fn post_bytes(s: &Setup, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = http()
        .post(format!("{}{path}", s.proxy.url()))
        .header("content-type", "application/json")
        .header("x-api-key", KEY)
        .body(body)
        .send()
        .await
        .expect("proxy answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A normal request is served, within `within`.
async fn assert_serves(s: &Setup, within: Duration) {
    let started = Instant::now();
    let (status, body) = post_bytes(
        s,
        "/v1/messages",
        request("claude-sonnet-4-5", false).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < within, "{:?}", started.elapsed());
}

fn error_type(v: &Value) -> &str {
    v["error"]["type"].as_str().unwrap_or("")
}

/// A raw connection to the proxy's API listener.
async fn raw(s: &Setup) -> TcpStream {
    TcpStream::connect(s.proxy.api).await.expect("connects")
}

fn head(content_length: usize) -> String {
    format!(
        "POST /v1/messages HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n\
         x-api-key: {KEY}\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

/// Reads until the peer closes or `within` passes: (bytes read, closed in time).
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(within, read).await.is_ok();
    (out, closed)
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_413_without_being_read() {
    let s = setup(Fault::LongStream(1), "", None).await;
    let mut tcp = raw(&s).await;
    tcp.write_all(head(100 << 20).as_bytes()).await.unwrap();
    tcp.write_all(&[b' '; 1024]).await.unwrap();
    let (resp, _) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert_eq!(
        status_of(&resp),
        Some(413),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert!(String::from_utf8_lossy(&resp).contains("request_too_large"));
    // Chunked, no length declared: cut at the limit.
    let (status, body) = post_bytes(&s, "/v1/messages", vec![b' '; 2 << 20]).await;
    assert_eq!((status, error_type(&body)), (413, "request_too_large"));
    assert_serves(&s, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_and_invalid_utf8_are_400s() {
    let s = setup(Fault::LongStream(1), "", None).await;
    let deep = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":10,"metadata":{{"user_id":"u"}},"messages":[{{"role":"user","content":"hi"}}],"x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        let (status, body) = post_bytes(&s, path, deep.clone().into_bytes()).await;
        assert_eq!(
            (status, error_type(&body)),
            (400, "invalid_request_error"),
            "{path}: {body}"
        );
        let mut bad = request("claude-sonnet-4-5", false).to_string().into_bytes();
        let at = bad.windows(5).position(|w| w == b"hello").unwrap();
        bad[at] = 0xff;
        let (status, body) = post_bytes(&s, path, bad).await;
        assert_eq!(
            (status, error_type(&body)),
            (400, "invalid_request_error"),
            "{path}: {body}"
        );
    }
    assert_serves(&s, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_are_refused_and_the_proxy_survives() {
    let s = setup(Fault::LongStream(1), "", None).await;
    let mut tcp = raw(&s).await;
    let big = "a".repeat(1 << 20);
    let req = format!("GET /v1/models HTTP/1.1\r\nhost: proxy\r\nx-big: {big}\r\n\r\n");
    // The proxy may close while this is still being written.
    let _ = tcp.write_all(req.as_bytes()).await;
    let (resp, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "connection closed");
    // hyper answers 431 when it can, else just closes.
    let status = status_of(&resp);
    assert!(matches!(status, None | Some(431)), "{status:?}");
    assert_serves(&s, Duration::from_secs(5)).await;
}

/// Before: axum's server ran hyper without a timer, so no header timeout applied at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_heads_are_closed_after_the_header_timeout() {
    let s = setup(Fault::LongStream(1), "", None).await;
    let bound = Duration::from_millis(HEAD_TIMEOUT_MS * 3);
    // Sends nothing at all.
    let mut silent = raw(&s).await;
    // Trickles a head that never ends.
    let mut trickle = raw(&s).await;
    let started = Instant::now();
    let trickling = async {
        trickle
            .write_all(b"POST /v1/messages HTTP/1.1\r\n")
            .await
            .unwrap();
        for i in 0..100 {
            let line = format!("x-h{i}: v\r\n");
            if trickle.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        read_until_closed(&mut trickle, Duration::from_secs(1))
            .await
            .1
    };
    let (trickle_closed, (_, silent_closed)) =
        tokio::join!(trickling, read_until_closed(&mut silent, bound));
    assert!(silent_closed, "a silent connection is closed");
    assert!(trickle_closed, "a trickled head is cut");
    assert!(
        started.elapsed() < bound + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_serves(&s, Duration::from_secs(5)).await;
}

/// A body trickled slower than `bodyReadTimeoutMs` allows gets 408 `timeout_error`, and
/// (before: the permit was taken before the body was read) does not hold the key's only
/// concurrency slot meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_408_and_holds_no_concurrency_slot() {
    let s = setup(Fault::LongStream(1), "", Some("{concurrent: 1}")).await;
    let mut tcp = raw(&s).await;
    let started = Instant::now();
    tcp.write_all(head(1000).as_bytes()).await.unwrap();
    tcp.write_all(b"{").await.unwrap();
    // Meanwhile the key's one slot is free for a real request.
    assert_serves(&s, Duration::from_secs(5)).await;
    let trickling = async {
        for _ in 0..50 {
            if tcp.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(BODY_TIMEOUT_MS + 500), trickling).await;
    let (resp, _) = read_until_closed(&mut tcp, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(status_of(&resp), Some(408), "{text}");
    assert!(text.contains("timeout_error"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let metrics = s.proxy.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "switchyard_requests_refused_total{reason=\"body_read_timeout\"}"
        ),
        1.0,
        "{metrics}"
    );
}

/// Over `maxInFlight` a request is refused at once with 529, counted in a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_in_flight_are_529_at_once() {
    let s = setup(Fault::StallBeforeHeaders, ", maxInFlight: 1", None).await;
    let holder = {
        let url = format!("{}/v1/messages", s.proxy.url());
        tokio::spawn(async move {
            let _ = http()
                .post(url)
                .json(&request("fault-a", true))
                .timeout(Duration::from_secs(3))
                .send()
                .await;
        })
    };
    // Wait (bounded) until the held request reached the backend.
    for _ in 0..100 {
        if s.fault.chat_requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.fault.chat_requests(), 1);
    let started = Instant::now();
    let (status, body) = post_bytes(
        &s,
        "/v1/messages",
        request("claude-sonnet-4-5", false).to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, error_type(&body)),
        (529, "overloaded_error"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let metrics = s.proxy.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "switchyard_requests_refused_total{reason=\"max_in_flight\"}"
        ),
        1.0,
        "{metrics}"
    );
    holder.abort();
    let _ = holder.await;
    // The place is given back when the held request ends (its client is gone).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = post_bytes(
            &s,
            "/v1/messages",
            request("claude-sonnet-4-5", false).to_string().into_bytes(),
        )
        .await;
        if status == 200 || Instant::now() > deadline {
            assert_eq!(status, 200);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Before: `count_tokens` skipped the key's limits and asked `/tokenize` on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_takes_the_request_quota_and_is_cached() {
    let s = setup(Fault::LongStream(1), "", Some("{requestsPerMinute: 2}")).await;
    let body = json!({"model": "fault-a", "messages": [{"role": "user", "content": "count me"}]})
        .to_string()
        .into_bytes();
    for _ in 0..2 {
        let (status, v) = post_bytes(&s, "/v1/messages/count_tokens", body.clone()).await;
        assert_eq!(status, 200, "{v}");
        assert!(v["input_tokens"].as_u64().unwrap() > 0, "{v}");
    }
    assert_eq!(
        s.fault.tokenize_requests(),
        1,
        "the same prompt is counted once"
    );
    let (status, v) = post_bytes(&s, "/v1/messages/count_tokens", body).await;
    assert_eq!((status, error_type(&v)), (429, "rate_limit_error"), "{v}");
}

/// The process's soft limit on open files, raised to its hard limit; `None` when even that
/// is below `need`.
fn raise_fd_limit(need: u64) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < need && lim.rlim_max >= need {
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    (lim.rlim_cur >= need).then_some(lim.rlim_cur)
}

/// 2,000 connections that send nothing: the proxy (started after the limit is raised, so it
/// inherits it) still answers a real request promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_starve_a_real_request() {
    const IDLE: usize = 2_000;
    let Some(limit) = raise_fd_limit(IDLE as u64 * 2 + 256) else {
        eprintln!(
            "SKIPPED: the open-files limit (ulimit -n) is below {}",
            IDLE * 2 + 256
        );
        return;
    };
    eprintln!("open-files limit: {limit}");
    let s = setup(Fault::LongStream(1), "", None).await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(raw(&s).await);
    }
    assert_serves(&s, Duration::from_secs(5)).await;
    drop(idle);
}

/// Resident memory of the proxy process (found by its unique config path), in bytes.
fn proxy_rss(cfg_path: &str) -> u64 {
    let dirs = std::fs::read_dir("/proc").expect("procfs");
    for entry in dirs.flatten().take(100_000) {
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if !args.contains(&cfg_path.as_bytes()) || !args[0].ends_with(b"switchyard-proxy") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        return kb.expect("VmRSS") * 1024;
    }
    panic!("proxy process not found");
}

/// A client that reads nothing of a long stream: backpressure reaches the backend, the
/// proxy's memory stays bounded, and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_costs_bounded_memory() {
    // ~230 bytes per chunk: a stream of ~100 MB, far more than socket buffers hold.
    let s = setup(Fault::LongStream(450_000), "", None).await;
    assert_serves(&s, Duration::from_secs(5)).await;
    let before = proxy_rss(s.cfg.path());
    let mut tcp = raw(&s).await;
    let body = request("fault-a", true).to_string();
    tcp.write_all(head(body.len()).as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    // Let the stream run into the client's full buffers (bounded wait).
    let mut last = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = s.fault.written();
        if now > 0 && now == last {
            break;
        }
        last = now;
    }
    let written = s.fault.written();
    let after = proxy_rss(s.cfg.path());
    eprintln!("backend wrote {written} bytes; proxy RSS {before} → {after}");
    assert!(written > 0, "the stream started");
    assert!(
        written < 64 << 20,
        "backpressure reached the backend: {written} bytes"
    );
    assert!(
        after < before + (64 << 20),
        "proxy memory bounded: {before} → {after}"
    );
    assert_serves(&s, Duration::from_secs(5)).await;
    drop(tcp);
    assert!(
        s.fault.wait_peer_closed(1, Duration::from_secs(10)).await,
        "the upstream stream is cancelled once the client is gone"
    );
}
