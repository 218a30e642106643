//! Secrets never leave where they belong: a whole session through the real proxy binary, in
//! front of the mock vLLM, with backend keys (environment and file), client keys and
//! credentials in a backend URL; then every log line (stdout and stderr, text and JSON
//! formats), every admin answer and every response (status, headers, body) is searched for
//! each secret. Plus the start-up refusals that protect them.
//!
//! Loopback only; every wait is bounded.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_e2e::proxy_process::proxy_binary;
use switchyard_e2e::testkit::{hash_key, http, mock, sse_events, TempFile};

const BACKEND_ENV_KEY: &str = "sk-backend-env-7f3a9c";
const BACKEND_FILE_KEY: &str = "sk-backend-file-51d2e8";
const CLIENT_KEY: &str = "sk-client-gateway-c0ffee42";
const WRONG_CLIENT_KEY: &str = "sk-client-wrong-deadbeef";
const URL_USER: &str = "urluser9";
const URL_PASS: &str = "secretpass";
const URL_QUERY: &str = "urlsecret";

/// Every string that must never show.
const SECRETS: &[&str] = &[
    BACKEND_ENV_KEY,
    BACKEND_FILE_KEY,
    CLIENT_KEY,
    WRONG_CLIENT_KEY,
    URL_USER,
    URL_PASS,
    URL_QUERY,
];

/// The proxy binary with stdout and stderr both captured (the shared `ProxyProcess` drops
/// stdout, and only parses the text format's listening line).
struct Proxy {
    child: Child,
    api: SocketAddr,
    admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Result<Proxy, String> {
        let mut cmd = Command::new(proxy_binary().map_err(|e| e.to_string())?);
        cmd.args(args)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("SWITCHYARD_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for reader in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err) as Box<dyn std::io::Read + Send>,
        ] {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = lines.lock().unwrap().iter().find_map(|l| listening(l));
            if let Some((api, admin)) = found {
                return Ok(Proxy {
                    child,
                    api,
                    admin,
                    lines,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100)); // let the readers finish
                return Err(format!(
                    "exited with {status}:\n{}",
                    lines.lock().unwrap().join("\n")
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("did not start within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The addresses of the listening line, text (`api=…`) or JSON (`"api":"…"`).
fn listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.contains("switchyard-proxy listening") {
        return None;
    }
    let field = |name: &str| -> Option<SocketAddr> {
        let start = line
            .find(&format!("{name}="))
            .map(|i| i + name.len() + 1)
            .or_else(|| {
                line.find(&format!("\"{name}\":\""))
                    .map(|i| i + name.len() + 4)
            })?;
        line[start..]
            .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
            .find(|s| !s.is_empty())?
            .parse()
            .ok()
    };
    Some((field("api")?, field("admin")?))
}

/// Runs the binary expecting it to refuse to start; its exit status and all its output.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(proxy_binary().unwrap())
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the proxy started instead of refusing the config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status, text)
}

/// Everything a client or an operator could read, gathered for the search.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    /// Status, every header and the body of a response; returns (status, body).
    async fn response(&mut self, what: &str, resp: reqwest::Response) -> (u16, String) {
        let status = resp.status().as_u16();
        let mut text = format!("HTTP {status}\n");
        for (k, v) in resp.headers() {
            text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        let body = resp.text().await.unwrap_or_default();
        text.push_str(&body);
        self.add(what, text);
        (status, body)
    }

    fn assert_clean(&self) {
        for (what, text) in &self.0 {
            for secret in SECRETS {
                assert!(
                    !text.contains(secret),
                    "secret `{secret}` appears in {what}:\n{text}"
                );
            }
        }
    }
}

fn message(text: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

/// One session in `log_format`; everything seen is checked for every secret.
async fn session(log_format: &str) {
    let m = mock().await;
    let port = m.addr.port();
    let key_file = TempFile::new(&format!("{BACKEND_FILE_KEY}\n"));
    let url = format!("http://{URL_USER}:{URL_PASS}@127.0.0.1:{port}/v1?key={URL_QUERY}");
    // A port nothing listens on (bound, then released).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_url = format!("http://{URL_USER}:{URL_PASS}@127.0.0.1:{dead}/v1?key={URL_QUERY}");
    let cfg = TempFile::new(&format!(
        r#"server: {{commitAfterMs: 200, pingIntervalMs: 100, logContent: true}}
backends:
  - name: vllm
    baseUrl: '{url}'
    apiKey: {{env: SECRETS_TEST_BACKEND_KEY}}
  - name: native
    baseUrl: '{url}'
    endpoints: ['{url}']
    protocol: anthropic
    apiKey: {{file: '{key_file}'}}
  - name: dead
    baseUrl: '{dead_url}'
    servedModel: qwen3-coder
    contextWindow: 32768
    apiKey: {{env: SECRETS_TEST_BACKEND_KEY}}
routes:
  - name: main
    models: ['claude-sonnet-*']
    backend: vllm
    retries: {{attempts: 1}}
  - name: native
    models: ['native']
    backend: native
    retries: {{attempts: 1}}
  - name: dead
    models: ['dead']
    backend: dead
    retries: {{attempts: 1, backoffMs: 1}}
keys:
  - name: team-a
    sha256: {}
"#,
        hash_key(CLIENT_KEY),
        key_file = key_file.path(),
    ));
    let proxy = Proxy::start(
        &["--config", cfg.path(), "--log-format", log_format],
        &[("SECRETS_TEST_BACKEND_KEY", BACKEND_ENV_KEY)],
    )
    .unwrap();
    let client = http();
    let mut seen = Seen::default();
    let post = |body: &Value, key: &str| {
        client
            .post(proxy.url("/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
    };

    // Served: plain, streaming, native protocol (the mock ignores the URL's query and user
    // info, as vLLM does).
    let (status, body) = seen
        .response(
            "plain reply",
            post(&message("hi", false), CLIENT_KEY).await.unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let saw = m.stats.headers.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        saw["headers"]["authorization"],
        format!("Bearer {BACKEND_ENV_KEY}"),
        "the backend key reaches the backend: {saw}"
    );
    let (status, body) = seen
        .response(
            "streamed reply",
            post(&message("[[mock:text:20]] go", true), CLIENT_KEY)
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        sse_events(&body).iter().any(|(e, _)| e == "message_stop"),
        "{body}"
    );
    let mut native = message("hello native", false);
    native["model"] = json!("native");
    let (status, body) = seen
        .response("native reply", post(&native, CLIENT_KEY).await.unwrap())
        .await;
    assert_eq!(status, 200, "{body}");
    let saw = m.stats.headers.lock().unwrap().last().cloned().unwrap();
    assert_eq!(saw["headers"]["x-api-key"], BACKEND_FILE_KEY, "{saw}");
    assert!(
        saw["headers"]["authorization"]
            .as_str()
            .is_some_and(|a| a.starts_with("Basic ")),
        "URL user info goes as basic auth: {saw}"
    );
    let resp = client
        .post(proxy.url("/v1/messages/count_tokens"))
        .header("x-api-key", CLIENT_KEY)
        .json(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "count me"}]}))
        .send()
        .await
        .unwrap();
    let (status, body) = seen.response("count_tokens", resp).await;
    assert_eq!(status, 200, "{body}");
    let resp = client
        .get(proxy.url("/v1/models"))
        .header("x-api-key", CLIENT_KEY)
        .send()
        .await
        .unwrap();
    seen.response("model list", resp).await;

    // Failing: wrong client key, no key, backend errors, a backend refusing the proxy's key,
    // an unreachable backend, a message quoting a secret-looking string.
    let (status, _) = seen
        .response(
            "wrong client key",
            post(&message("hi", false), WRONG_CLIENT_KEY).await.unwrap(),
        )
        .await;
    assert_eq!(status, 401);
    let resp = client
        .post(proxy.url("/v1/messages"))
        .bearer_auth(WRONG_CLIENT_KEY)
        .json(&message("hi", true))
        .send()
        .await
        .unwrap();
    assert_eq!(seen.response("wrong bearer", resp).await.0, 401);
    for (what, text, want) in [
        ("backend 500", "[[mock:error:500]]", 500),
        ("backend 401", "[[mock:error:401]]", 500),
        ("backend 400", "[[mock:error:400]]", 400),
    ] {
        let (status, body) = seen
            .response(what, post(&message(text, false), CLIENT_KEY).await.unwrap())
            .await;
        assert_eq!(status, want, "{what}: {body}");
    }
    let (status, body) = seen
        .response(
            "backend 503 streaming",
            post(&message("[[mock:error:503]]", true), CLIENT_KEY)
                .await
                .unwrap(),
        )
        .await;
    assert!(status >= 500, "{body}");
    // Cut by the backend mid-body: reqwest's errors name the request URL (with the query
    // the proxy put back on it), so they must be shown without it.
    for (what, stream) in [("cut stream", true), ("cut body", false)] {
        let (status, body) = seen
            .response(
                what,
                post(&message("[[mock:die:3]]", stream), CLIENT_KEY)
                    .await
                    .unwrap(),
            )
            .await;
        assert!(status == 200 || status >= 500, "{what}: {status} {body}");
    }
    let mut dead_req = message("hi", true);
    dead_req["model"] = json!("dead");
    let (status, body) = seen
        .response(
            "unreachable backend",
            post(&dead_req, CLIENT_KEY).await.unwrap(),
        )
        .await;
    assert_eq!(status, 529, "{body}");
    let (status, _) = seen
        .response(
            "content with a key",
            post(
                &message(&format!("my key is api_key={URL_PASS}"), false),
                CLIENT_KEY,
            )
            .await
            .unwrap(),
        )
        .await;
    assert_eq!(status, 200);

    // Admin answers.
    for path in ["/metrics", "/config", "/healthz", "/readyz"] {
        let resp = client.get(proxy.admin(path)).send().await.unwrap();
        let (status, _) = seen.response(&format!("admin {path}"), resp).await;
        assert_eq!(status, 200, "{path}");
    }

    // Every access line is out (a stream's a moment after its last byte): until their count
    // holds still for half a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut count, mut since) = (0, Instant::now());
    while Instant::now() < deadline && since.elapsed() < Duration::from_millis(500) {
        let now = proxy.log().matches("request completed").count();
        if now != count {
            (count, since) = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The request view's API, now that every request has its record: records (with the
    // logged content), usage, backends and endpoints with their last failures.
    for path in [
        "/api/requests?limit=1000",
        "/api/usage?window=1h",
        "/api/health",
    ] {
        let resp = client.get(proxy.admin(path)).send().await.unwrap();
        let (status, body) = seen.response(&format!("admin {path}"), resp).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.len() > 20, "{path}: {body}");
    }
    let log = proxy.log();
    assert!(log.contains("request completed"), "{log}");
    assert!(
        log.contains(&format!("127.0.0.1:{port}/v1")),
        "endpoints are logged: {log}"
    );
    if log_format == "json" {
        for line in log.lines().filter(|l| l.contains("request completed")) {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
    }
    seen.add(format!("proxy output ({log_format})"), log);
    seen.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_admin_answers_or_responses_text_logs() {
    session("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_admin_answers_or_responses_json_logs() {
    session("json").await;
}

#[test]
fn forward_client_auth_with_client_keys_is_refused_at_start_saying_why() {
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: anthropic\n    baseUrl: 'https://api.anthropic.com/v1'\n    protocol: anthropic\n    servedModel: claude-sonnet-4-5\n    forwardClientAuth: true\n\
         routes:\n  - name: all\n    models: ['*']\n    backend: anthropic\n\
         keys:\n  - name: team-a\n    sha256: {}\n",
        hash_key(CLIENT_KEY)
    ));
    let (status, text) = refused(&["--config", cfg.path()], &[]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("backends[0].forwardClientAuth")
            && text.contains("`keys`")
            && text.contains("gateway key would be sent to backend `anthropic`"),
        "{text}"
    );
}

#[test]
fn forward_client_auth_without_a_served_model_is_refused_at_start() {
    let cfg = TempFile::new(
        "backends:\n  - name: anthropic\n    baseUrl: 'https://api.anthropic.com/v1'\n    protocol: anthropic\n    forwardClientAuth: true\n\
         routes:\n  - name: all\n    models: ['*']\n    backend: anthropic\n",
    );
    let (status, text) = refused(&["--config", cfg.path()], &[]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("backends[0].servedModel") && text.contains("forwardClientAuth"),
        "{text}"
    );
}

#[test]
fn a_literal_key_or_url_credential_in_a_refused_config_is_not_echoed() {
    for yaml in [
        // A literal key where a secret reference belongs.
        format!(
            "backends:\n  - name: a\n    baseUrl: 'http://127.0.0.1:9/v1'\n    apiKey: {BACKEND_ENV_KEY}\n\
             routes:\n  - name: all\n    models: ['*']\n    backend: a\n"
        ),
        // Credentials in a URL that is refused.
        format!(
            "backends:\n  - name: a\n    baseUrl: 'ftp://{URL_USER}:{URL_PASS}@127.0.0.1:9/v1?key={URL_QUERY}'\n\
             routes:\n  - name: all\n    models: ['*']\n    backend: a\n"
        ),
    ] {
        let cfg = TempFile::new(&yaml);
        let (status, text) = refused(&["--config", cfg.path()], &[]);
        assert_eq!(status.code(), Some(1), "{text}");
        assert!(text.contains("line 4") || text.contains("baseUrl"), "{text}");
        for secret in SECRETS {
            assert!(!text.contains(secret), "`{secret}` echoed:\n{text}");
        }
    }
}

/// A backend that accepts connections and closes them without answering: reqwest's error for
/// it ("error sending request for url (…)") names the request URL, query included.
async fn hang_up_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
            drop(sock);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_hanging_up_does_not_show_the_url_credentials() {
    let addr = hang_up_backend().await;
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: flaky\n    baseUrl: 'http://{URL_USER}:{URL_PASS}@{addr}/v1?key={URL_QUERY}'\n    servedModel: m\n    contextWindow: 32768\n\
         routes:\n  - name: all\n    models: ['*']\n    backend: flaky\n    retries: {{attempts: 1}}\n"
    ));
    let proxy = Proxy::start(&["--config", cfg.path()], &[]).unwrap();
    let mut seen = Seen::default();
    for stream in [false, true] {
        let resp = http()
            .post(proxy.url("/v1/messages"))
            .json(&message("hi", stream))
            .send()
            .await
            .unwrap();
        let (status, body) = seen.response("hung-up reply", resp).await;
        assert_eq!(status, 529, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.log().matches("request completed").count() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.add("proxy output", proxy.log());
    seen.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_an_upstream_url_are_not_logged() {
    let m = mock().await;
    let url = format!(
        "http://{URL_USER}:{URL_PASS}@127.0.0.1:{}/v1?key={URL_QUERY}",
        m.addr.port()
    );
    let proxy = Proxy::start(&["--upstream", &url], &[]).unwrap();
    let mut seen = Seen::default();
    let resp = http()
        .post(proxy.url("/v1/messages"))
        .header("x-api-key", "anything")
        .json(&message("hi", false))
        .send()
        .await
        .unwrap();
    let (status, body) = seen.response("reply", resp).await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.log().contains("request completed") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.add("proxy output", proxy.log());
    seen.assert_clean();
}
