//! The request view's API on the admin listener (issue 12), through the real binary: each
//! finished request becomes a record with its route, backend, attempts, usage and the fixes
//! that fired, listed by `/api/requests`, fetched by id, and pushed live on
//! `/api/requests/live`; with an admin key, nothing without it. The page itself is driven in
//! headless Chromium by `e2e/clients/node/ui.test.mjs`.

use serde_json::{json, Value};
use std::time::Duration;
use switchyard_e2e::mock_vllm::{MockConfig, MockVllm};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{hash_key, http, sse_events, TempFile};

/// A proxy whose route tries a dead backend first and falls back to the mock (32k window).
async fn setup(extra_args: &[&str]) -> (MockVllm, ProxyProcess, TempFile) {
    let m = MockVllm::start(MockConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts");
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: dead\n    baseUrl: 'http://127.0.0.1:9/v1'\n    servedModel: qwen3-coder\n    \
         contextWindow: 32768\n  - name: vllm\n    baseUrl: '{}'\n\
         routes:\n  - name: code\n    models: ['claude-*']\n    backend: dead\n    fallbacks: [vllm]\n",
        m.base_url()
    ));
    let mut args = vec!["--config", cfg.path()];
    args.extend_from_slice(extra_args);
    let proxy = ProxyProcess::start(&args).unwrap();
    (m, proxy, cfg)
}

async fn ask(proxy: &ProxyProcess, body: Value) -> String {
    let resp = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("x-claude-code-session-id", "sess-view-1")
        .json(&body)
        .send()
        .await
        .expect("proxy answers");
    assert_eq!(resp.status(), 200);
    resp.headers()["request-id"].to_str().unwrap().to_owned()
}

async fn get(url: String, key: Option<&str>) -> (u16, Value) {
    let mut req = http().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("admin answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const TOOLS: &str = r#"[{"name": "Bash", "description": "Run a command",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]"#;

#[tokio::test]
async fn records_name_route_backend_attempts_and_the_fixes_that_fired() {
    let (_m, proxy, _cfg) = setup(&[]).await;
    let admin = proxy.admin_url();

    // Live feed first, so it sees the requests below.
    let mut live = http()
        .get(format!("{admin}/api/requests/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );

    // 1: max_tokens over the 32k window: clamped.
    let clamped = ask(
        &proxy,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 64000,
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    // 2: the backend leaves a Hermes tool call in the text, streamed: recovered.
    let tools: Value = serde_json::from_str(TOOLS).unwrap();
    let recovered = ask(
        &proxy,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 300,
        "stream": true, "tools": tools,
        "messages": [{"role": "user", "content": "[[mock:hermes]]"}]}),
    )
    .await;

    let (status, list) = get(format!("{admin}/api/requests?limit=10"), None).await;
    assert_eq!(status, 200);
    let records = list["requests"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{list}");
    // Newest first.
    assert_eq!(records[0]["id"], recovered.as_str());
    assert_eq!(records[1]["id"], clamped.as_str());
    for r in records {
        assert_eq!(r["route"], "code");
        assert_eq!(r["backend"], "vllm", "{r}");
        // The dead backend first (refused), then the fallback: two attempts.
        assert_eq!(r["attempts"], 2, "{r}");
        assert_eq!(r["status"], 200);
        assert_eq!(r["session"], "sess-view-1");
        assert_eq!(r["api"], "messages");
        assert!(r["input_tokens"].as_u64().unwrap() > 0, "{r}");
        assert!(r["output_tokens"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["has_content"], false, "content capture is off: {r}");
    }
    assert_eq!(
        records[1]["fixes"],
        json!(["context_clamp"]),
        "{}",
        records[1]
    );
    assert_eq!(records[1]["stop_reason"], "end_turn");
    assert_eq!(
        records[1]["fix_notes"],
        json!(["max_tokens 64000 → 32768: the context window leaves no more"])
    );
    assert_eq!(
        records[0]["fix_notes"],
        json!(["1 tool call(s) recovered from the model's text"])
    );
    assert_eq!(
        records[0]["fixes"],
        json!(["text_tool_calls"]),
        "{}",
        records[0]
    );
    assert_eq!(records[0]["stop_reason"], "tool_use");
    assert_eq!(records[0]["stream"], true);

    // Health: the dead backend's endpoint counted both refusals (3 make a cool-down) and says
    // why; discovery found the mock's model and window; the config loaded once.
    let (status, health) = get(format!("{admin}/api/health"), None).await;
    assert_eq!(status, 200);
    let dead = &health["backends"][0];
    assert_eq!(dead["name"], "dead");
    let ep = &dead["endpoints"][0];
    assert_eq!(ep["url"], "http://127.0.0.1:9/v1");
    assert_eq!(
        (ep["state"].as_str(), ep["consecutive_failures"].as_u64()),
        (Some("ok"), Some(2)),
        "{health}"
    );
    let why = ep["last_failure"].as_str().unwrap_or_default();
    assert_eq!(
        why,
        "backend `dead` is unreachable: connection failed: Connection refused (os error 111)"
    );
    let live_backend = &health["backends"][1];
    assert_eq!(
        live_backend["discovered"]["served_model"], "qwen3-coder",
        "{health}"
    );
    assert_eq!(live_backend["discovered"]["context_window"], 32768);
    assert_eq!(live_backend["endpoints"][0]["state"], "ok");
    assert_eq!(health["reloads"].as_array().unwrap().len(), 1);
    assert_eq!(health["reloads"][0]["result"], "applied");
    assert_eq!(health["reloads"][0]["version"], health["config_version"]);

    let (status, one) = get(format!("{admin}/api/requests/{clamped}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["id"], clamped.as_str());
    let (status, missing) = get(format!("{admin}/api/requests/req_nope"), None).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["type"], "not_found_error");

    // The live feed got both, in order, as `request` events.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text.matches("event: request").count() < 2 {
        let chunk = tokio::time::timeout_at(deadline, live.chunk())
            .await
            .expect("live records within 10 s")
            .unwrap()
            .expect("feed open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let ids: Vec<String> = text
        .split("\n\n")
        .filter_map(|b| b.strip_prefix("event: request\ndata: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, [clamped.clone(), recovered.clone()]);
    // Each was announced as `started` (routed, on its way) before its record.
    for id in [&clamped, &recovered] {
        let started = text.find(&format!("event: started\ndata: {{\"id\":\"{id}\""));
        let finished = text.find(&format!("event: request\ndata: {{\"id\":\"{id}\""));
        assert!(started.is_some() && started < finished, "{id}: {text}");
    }
}

#[tokio::test]
async fn with_an_admin_key_the_api_wants_it_and_the_page_does_not_hold_data() {
    let (_m, proxy, _cfg) = setup(&["--admin-key", "adm-secret-1"]).await;
    let admin = proxy.admin_url();
    ask(
        &proxy,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    for path in ["/api/requests", "/api/requests/live", "/api/requests/req_x"] {
        let (status, body) = get(format!("{admin}{path}"), None).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"]["type"], "authentication_error");
        let (status, _) = get(format!("{admin}{path}"), Some("adm-wrong")).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, list) = get(format!("{admin}/api/requests"), Some("adm-secret-1")).await;
    assert_eq!(status, 200);
    assert_eq!(list["requests"].as_array().unwrap().len(), 1);
    // The page is served without the key (it asks for it) and embeds no record.
    let page = http().get(format!("{admin}/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("<table id=\"requests\">"));
    assert!(!html.contains("claude-sonnet-4-5"));
    // The key is never logged.
    assert!(!proxy.log_text().contains("adm-secret-1"));
}

/// With `--history FILE` the records outlive a restart: listed and added up from the file by
/// the next process, which also writes what was still queued when the first one got SIGTERM.
#[tokio::test]
async fn history_outlives_a_restart() {
    let m = MockVllm::start(MockConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts");
    let cfg = TempFile::new(&format!(
        "server:\n  shutdownGraceMs: 50\n  drainTimeoutMs: 2000\n\
         backends:\n  - name: vllm\n    baseUrl: '{}'\n\
         routes:\n  - name: code\n    models: ['claude-*']\n    backend: vllm\n",
        m.base_url()
    ));
    let db = TempFile::new("");
    std::fs::remove_file(db.path()).unwrap(); // the proxy creates it
    let args = ["--config", cfg.path(), "--history", db.path()];
    let mut first = ProxyProcess::start(&args).unwrap();
    let mut ids = Vec::new();
    for text in ["one", "two"] {
        ids.push(
            ask(
                &first,
                json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
                "messages": [{"role": "user", "content": text}]}),
            )
            .await,
        );
    }
    assert!(first.terminate(Duration::from_secs(20)).unwrap().success());

    let second = ProxyProcess::start(&args).unwrap();
    let admin = second.admin_url();
    let (status, list) = get(format!("{admin}/api/requests"), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["source"], "history");
    let listed: Vec<&str> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[1].as_str(), ids[0].as_str()]);
    let (status, one) = get(format!("{admin}/api/requests/{}", ids[0]), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["route"], "code");
    let (_, usage) = get(format!("{admin}/api/usage?window=1h"), None).await;
    assert_eq!(usage["source"], "history");
    let rows = usage["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(rows[0]["requests"], 2);
    assert_eq!(rows[0]["failed"], 0);
    assert_eq!(rows[0]["backend"], "vllm");
    let (status, bad) = get(format!("{admin}/api/usage?window=2y"), None).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["type"], "invalid_request_error");
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", db.path()));
    }
}

/// `--history-postgres`: two proxies of a fleet share one history in a real PostgreSQL
/// server (`SWITCHYARD_TEST_POSTGRES`, a key=value DSN; `.ci/run` starts one): each lists the
/// other's requests, and both add them up the same.
#[tokio::test]
async fn a_fleet_shares_one_history_in_postgres() {
    let Ok(dsn) = std::env::var("SWITCHYARD_TEST_POSTGRES") else {
        eprintln!(
            "SKIPPED a_fleet_shares_one_history_in_postgres: SWITCHYARD_TEST_POSTGRES is not set (.ci/run sets it)"
        );
        return;
    };
    let db = format!("switchyard_fleet_{}", std::process::id());
    let admin_dsn = dsn.clone();
    let fresh = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&admin_dsn, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {fresh}"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {fresh}"))
            .unwrap();
    })
    .await
    .unwrap();
    let history = format!("{dsn} dbname={db}");

    let m = MockVllm::start(MockConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts");
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: vllm\n    baseUrl: '{}'\n\
         routes:\n  - name: code\n    models: ['claude-*']\n    backend: vllm\n",
        m.base_url()
    ));
    let args = ["--config", cfg.path()];
    let env = [("SWITCHYARD_HISTORY_POSTGRES", history.as_str())];
    let a = ProxyProcess::start_with_env(&args, &env).unwrap();
    let b = ProxyProcess::start_with_env(&args, &env).unwrap();
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});
    let from_a = ask(&a, body.clone()).await;
    let from_b = ask(&b, body).await;

    // Written off the request path: poll until both are in (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for proxy in [&a, &b] {
        let listed = loop {
            let (status, list) = get(format!("{}/api/requests", proxy.admin_url()), None).await;
            assert_eq!(status, 200, "{list}");
            assert_eq!(list["source"], "history");
            let ids: Vec<String> = list["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect();
            if ids.len() == 2 || tokio::time::Instant::now() > deadline {
                break ids;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(listed, [from_b.clone(), from_a.clone()]);
        let (_, usage) = get(format!("{}/api/usage?window=1h", proxy.admin_url()), None).await;
        assert_eq!(usage["source"], "history");
        assert_eq!(usage["rows"][0]["requests"], 2, "{usage}");
    }
    // The DSN is never logged.
    for proxy in [&a, &b] {
        assert!(!proxy.log_text().contains(&db), "{}", proxy.log_text());
    }
}

/// The message a client reads from an Anthropic stream: text and tool inputs put together.
fn assembled(sse: &str) -> (String, Vec<Value>) {
    let (mut text, mut inputs, mut partial) = (String::new(), Vec::new(), String::new());
    for (event, data) in sse_events(sse) {
        match (event.as_str(), data["delta"]["type"].as_str()) {
            ("content_block_delta", Some("text_delta")) => {
                text.push_str(data["delta"]["text"].as_str().unwrap())
            }
            ("content_block_delta", Some("input_json_delta")) => {
                partial.push_str(data["delta"]["partial_json"].as_str().unwrap())
            }
            ("content_block_stop", _) if !partial.is_empty() => {
                inputs.push(serde_json::from_str(&std::mem::take(&mut partial)).unwrap())
            }
            _ => {}
        }
    }
    (text, inputs)
}

/// One captured part of a request's content (`request`, `upstream`, `response`), parsed.
fn content_part(record: &Value, name: &str) -> Value {
    let text = record["content"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: {record}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn content_is_captured_per_key_translated_upstream_and_reassembled() {
    let m = MockVllm::start(MockConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts");
    let (watched, plain) = (hash_key("sk-view-watched-1"), hash_key("sk-view-plain-1"));
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: vllm\n    baseUrl: '{}'\n\
         routes:\n  - name: code\n    models: ['claude-*']\n    backend: vllm\n\
         keys:\n  - name: watched\n    sha256: {watched}\n    logContent: true\n\
         \x20 - name: plain\n    sha256: {plain}\n",
        m.base_url()
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let admin = proxy.admin_url();
    let tools: Value = serde_json::from_str(TOOLS).unwrap();
    let send = |key: &'static str, body: Value| {
        let url = format!("{}/v1/messages", proxy.url());
        async move {
            let resp = http()
                .post(url)
                .header("x-api-key", key)
                .header("x-claude-code-agent-id", "agent-7f3a")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let id = resp.headers()["request-id"].to_str().unwrap().to_owned();
            (id, resp.text().await.unwrap())
        }
    };

    // Streamed, with a tool call the mock streams in fragments, and a secret in the prompt.
    let (streamed, sse) = send(
        "sk-view-watched-1",
        json!({"model": "claude-sonnet-4-5", "max_tokens": 300, "stream": true,
            "system": [{"type": "text", "text": "You are terse."}], "tools": tools,
            "messages": [{"role": "user",
                "content": "[[mock:tool]] my key is sk-ant-api03-abcdefghijklmnop"}]}),
    )
    .await;
    let (_, record) = get(format!("{admin}/api/requests/{streamed}"), None).await;
    assert_eq!(record["has_content"], true, "{record}");
    assert_eq!(record["subagent"], "agent-7f3a");
    let content = &record["content"];
    let part = |name: &str| content_part(&record, name);
    // What the client sent: Anthropic's shape, the secret redacted.
    let request = part("request");
    assert_eq!(request["system"][0]["text"], "You are terse.");
    assert_eq!(
        request["messages"][0]["content"],
        "[[mock:tool]] my key is [REDACTED]"
    );
    // What went upstream: Chat Completions, the system prompt as the first message, the
    // tool as a function, the served model's name (the mock serves `qwen3-coder`).
    let upstream = part("upstream");
    assert_eq!(upstream["model"], "qwen3-coder", "{upstream}");
    assert_eq!(upstream["messages"][0]["role"], "system", "{upstream}");
    assert_eq!(upstream["messages"][0]["content"], "You are terse.");
    assert_eq!(upstream["tools"][0]["type"], "function");
    assert_eq!(upstream["tools"][0]["function"]["name"], "Bash");
    assert_eq!(upstream["stream"], true);
    assert!(
        !content.to_string().contains("abcdefghijklmnop"),
        "a secret reached the captured content: {content}"
    );
    // The answer: the stream reassembled into the message the client read.
    let response = part("response");
    let (text, inputs) = assembled(&sse);
    assert_eq!(response["content"][0]["text"], text.as_str(), "{response}");
    assert_eq!(response["content"][1]["type"], "tool_use");
    assert_eq!(response["content"][1]["input"], inputs[0]);
    assert_eq!(response["stop_reason"], "tool_use");
    assert_eq!(response["model"], "claude-sonnet-4-5");

    // Whole answers are captured as the client got them.
    let (whole, body) = send(
        "sk-view-watched-1",
        json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let (_, record) = get(format!("{admin}/api/requests/{whole}"), None).await;
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(content_part(&record, "response"), got);
    let upstream = content_part(&record, "upstream");
    assert_eq!(upstream["max_tokens"], 64);
    assert_eq!(upstream["stream"], false);

    // The other key captures nothing; lists never carry content.
    let (other, _) = send(
        "sk-view-plain-1",
        json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let (_, record) = get(format!("{admin}/api/requests/{other}"), None).await;
    assert_eq!(record["key"], "plain");
    assert_eq!(
        (&record["has_content"], &record["content"]),
        (&json!(false), &Value::Null)
    );
    let (_, list) = get(format!("{admin}/api/requests"), None).await;
    let has: Vec<(&str, bool)> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap(),
                r["has_content"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        has,
        [("plain", false), ("watched", true), ("watched", true)]
    );
    assert!(list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("content").is_none()));
}
