//! Fleet behaviour of the real proxy binary over loopback with several mock vLLM instances:
//! affinity, ejection, fallback, retry budget, keys and limits, reload, drain, LiteLLM import.

use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchyard_e2e::mock_vllm::MockVllm;
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{
    hash_key, http, mock, readiness_fails, sample, sse_events, TempFile,
};

fn request(text: &str, session: &str, stream: bool) -> Value {
    json!({"model": "claude-opus-5-5", "max_tokens": 1000, "stream": stream,
        "metadata": {"user_id": json!({"device_id": "d", "account_uuid": "", "session_id": session}).to_string()},
        "messages": [{"role": "user", "content": text}]})
}

async fn post(proxy: &ProxyProcess, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .json(body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.expect("proxy answers")
}

/// Session ids seen by a mock (the proxy forwards `metadata.user_id` as `user`).
fn sessions(m: &MockVllm) -> BTreeSet<String> {
    m.stats
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter_map(|b| b["user"].as_str())
        .filter_map(|u| serde_json::from_str::<Value>(u).ok())
        .filter_map(|u| u["session_id"].as_str().map(str::to_owned))
        .collect()
}

fn backend_yaml(name: &str, urls: &[String], extra: &str) -> String {
    let endpoints: Vec<String> = urls.iter().map(|u| format!("'{u}'")).collect();
    format!(
        "  - name: {name}\n    baseUrl: '{}'\n    endpoints: [{}]\n    servedModel: qwen3-coder\n    contextWindow: 32768\n{extra}",
        urls[0],
        endpoints.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_affinity_holds_and_spreads_then_moves_off_a_dead_endpoint() {
    let mocks = vec![mock().await, mock().await, mock().await];
    let urls: Vec<String> = mocks.iter().map(|m| m.base_url()).collect();
    let cfg = TempFile::new(&format!(
        "backends:\n{}routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n",
        backend_yaml(
            "vllm",
            &urls,
            "    outlier: {consecutiveFailures: 1, baseEjectionMs: 60000}\n"
        )
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    for round in 0..3 {
        for s in 0..30 {
            let resp = post(
                &proxy,
                &request("hi", &format!("session-{s}"), round % 2 == 0),
                None,
            )
            .await;
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        }
    }
    let seen: Vec<BTreeSet<String>> = mocks.iter().map(sessions).collect();
    for (i, a) in seen.iter().enumerate() {
        assert!(
            a.len() >= 3,
            "endpoint {i} got {} sessions: sessions must spread",
            a.len()
        );
        for b in &seen[i + 1..] {
            assert!(a.is_disjoint(b), "a session was served by two endpoints");
        }
    }
    assert_eq!(seen.iter().map(BTreeSet::len).sum::<usize>(), 30);

    // Kill the endpoint holding session-0: its requests move, and it is ejected.
    let victim = seen.iter().position(|s| s.contains("session-0")).unwrap();
    let mut mocks = mocks;
    let dead = mocks.remove(victim);
    let dead_sessions = seen[victim].clone();
    dead.shutdown().await;
    for s in &dead_sessions {
        let resp = post(&proxy, &request("hi", s, false), None).await;
        assert_eq!(
            resp.status(),
            200,
            "session {s} must move to a live endpoint"
        );
    }
    let text = proxy.metrics().await;
    assert_eq!(
        sample(
            &text,
            "switchyard_ejections_total{backend=\"vllm\",kind=\"consecutive_failures\"}"
        ),
        1.0,
        "{text}"
    );
    // Moved sessions stay together on their new endpoints.
    let after: Vec<BTreeSet<String>> = mocks.iter().map(sessions).collect();
    assert!(dead_sessions
        .iter()
        .all(|s| after.iter().filter(|a| a.contains(s)).count() == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_before_first_byte_and_never_after() {
    let live = mock().await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_url = format!("http://127.0.0.1:{dead_port}/v1");
    let cfg = TempFile::new(&format!(
        "backends:\n{}{}routes:\n  - name: all\n    models: ['*']\n    backend: primary\n    fallbacks: [secondary]\n",
        backend_yaml("primary", &[dead_url], ""),
        backend_yaml("secondary", &[live.base_url()], "")
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let resp = post(&proxy, &request("hi", "s1", true), None).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("event: message_stop") && !body.contains("event: error"),
        "{body}"
    );
    assert_eq!(
        live.stats.completed.load(Ordering::SeqCst),
        1,
        "served by the fallback"
    );
    let text = proxy.metrics().await;
    assert_eq!(
        sample(
            &text,
            "switchyard_fallbacks_total{route=\"all\",backend=\"secondary\"}"
        ),
        1.0,
        "{text}"
    );

    // Primary healthy but the stream dies after tokens reached the client: no retry anywhere.
    let first = mock().await;
    let second = mock().await;
    cfg.replace(&format!(
        "version: two\nbackends:\n{}{}routes:\n  - name: all\n    models: ['*']\n    backend: primary\n    fallbacks: [secondary]\n",
        backend_yaml("primary", &[first.base_url()], ""),
        backend_yaml("secondary", &[second.base_url()], "")
    ));
    wait_for_version(&proxy, "two").await;
    let resp = post(&proxy, &request("[[mock:die:3]]", "s2", true), None).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("event: error"), "{body}");
    assert_eq!(first.stats.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        second.stats.requests.load(Ordering::SeqCst),
        0,
        "no retry after the first byte"
    );
}

async fn wait_for_version(proxy: &ProxyProcess, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = http()
            .get(format!("{}/config", proxy.admin_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["version"].as_str().unwrap().starts_with(prefix) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "config version {prefix} never applied: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_stops_a_storm() {
    let m = mock().await;
    let cfg = TempFile::new(&format!(
        "backends:\n{}routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n    retries: {{attempts: 3, backoffMs: 1, maxBackoffMs: 2}}\n",
        backend_yaml(
            "vllm",
            &[m.base_url()],
            "    outlier: {consecutiveFailures: 100000}\n    retryBudget: {ratio: 0.0, minPerSecond: 1}\n"
        )
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    for i in 0..30 {
        let resp = post(
            &proxy,
            &request("[[mock:error:500]]", &format!("s{i}"), false),
            None,
        )
        .await;
        assert_eq!(resp.status(), 500);
    }
    // 30 first attempts; retries capped at the floor of 1/s over the 10 s window.
    assert_eq!(m.stats.requests.load(Ordering::SeqCst), 40);
    let text = proxy.metrics().await;
    assert_eq!(
        sample(
            &text,
            "switchyard_retries_total{backend=\"vllm\",kind=\"attempt\"}"
        ),
        10.0,
        "{text}"
    );
    // The first 5 requests spent the budget (2 retries each); each of the other 25 was
    // refused once.
    assert_eq!(
        sample(
            &text,
            "switchyard_retry_budget_exhausted_total{backend=\"vllm\",kind=\"retry\"}"
        ),
        25.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_limits_give_the_right_errors() {
    let m = mock().await;
    let good = hash_key("sk-good-key");
    let narrow = hash_key("sk-narrow-key");
    let cfg = TempFile::new(&format!(
        "backends:\n{}routes:\n  - name: main\n    models: ['claude-*']\n    backend: vllm\n  - name: other\n    models: ['other']\n    backend: vllm\n\
         keys:\n  - name: team-a\n    sha256: {good}\n    limits: {{requestsPerMinute: 3}}\n  - name: narrow\n    sha256: {narrow}\n    routes: [other]\n",
        backend_yaml("vllm", &[m.base_url()], "")
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let body = request("hi", "s", false);
    let check = |status: u16, kind: &'static str| {
        move |resp: reqwest::Response| async move {
            assert_eq!(resp.status().as_u16(), status);
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["type"], kind, "{v}");
            retry_after
        }
    };
    check(401, "authentication_error")(post(&proxy, &body, None).await).await;
    check(401, "authentication_error")(post(&proxy, &body, Some("sk-wrong")).await).await;
    check(403, "permission_error")(post(&proxy, &body, Some("sk-narrow-key")).await).await;
    for _ in 0..3 {
        assert_eq!(post(&proxy, &body, Some("sk-good-key")).await.status(), 200);
    }
    let retry_after =
        check(429, "rate_limit_error")(post(&proxy, &body, Some("sk-good-key")).await).await;
    let secs: u64 = retry_after.expect("retry-after header").parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    // Bearer works too, and the narrow key may use its route.
    let resp = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .bearer_auth("sk-narrow-key")
        .json(&json!({"model": "other", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = proxy.metrics().await;
    assert_eq!(sample(&text, "switchyard_requests_total{route=\"main\",backend=\"vllm\",key=\"team-a\",status=\"200\"}"), 3.0, "{text}");
    // The same request answered 3 times on route `main` and once on `other`: tokens are
    // counted per route, so `main` has exactly three times `other`'s.
    for kind in ["input", "output"] {
        let of = |route: &str| {
            sample(
                &text,
                &format!("switchyard_tokens_total{{route=\"{route}\",backend=\"vllm\",gen_ai_token_type=\"{kind}\"}}"),
            )
        };
        assert!(of("other") > 0.0, "{text}");
        assert_eq!(of("main"), 3.0 * of("other"), "{kind}: {text}");
    }
    assert!(!text.contains("sk-good-key") && !proxy.log_text().contains("sk-good-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request_and_bad_config_is_refused() {
    let a = mock().await;
    let b = mock().await;
    let config_for = |version: &str, url: &str| {
        format!(
            "version: {version}\nbackends:\n{}routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n",
            backend_yaml("vllm", &[url.to_owned()], "")
        )
    };
    let cfg = TempFile::new(&config_for("v1", &a.base_url()));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let url = proxy.url();
    // 16 clients streaming paced replies while the config flips between backends.
    let load: Vec<_> = (0..16)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                for j in 0..6 {
                    let body = request(
                        "[[mock:text:20]] [[mock:pace:10]]",
                        &format!("c{i}-{j}"),
                        true,
                    );
                    let resp = http()
                        .post(format!("{url}/v1/messages"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    let text = resp.text().await.unwrap();
                    assert!(text.contains("event: message_stop"), "stream cut: {text}");
                    assert!(text.contains("word19"));
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    for v in 2..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let target = if v % 2 == 0 {
            b.base_url()
        } else {
            a.base_url()
        };
        cfg.replace(&config_for(&format!("v{v}"), &target));
    }
    let mut total = 0;
    for h in load {
        total += h.await.unwrap();
    }
    assert_eq!(total, 96);
    assert!(
        a.stats.requests.load(Ordering::SeqCst) > 0 && b.stats.requests.load(Ordering::SeqCst) > 0,
        "both configs served"
    );
    wait_for_version(&proxy, "v5").await;

    cfg.replace("backends: []\nroutes: []\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(
        &proxy.metrics().await,
        "switchyard_config_reloads_total{result=\"rejected\"}",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "invalid config was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_version(&proxy, "v5").await;
    assert_eq!(
        post(&proxy, &request("hi", "s", false), None)
            .await
            .status(),
        200,
        "last good config keeps serving"
    );
    assert!(proxy.wait_for_log("config change refused", Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_and_drains_streams() {
    let m = mock().await;
    let cfg = TempFile::new(&format!(
        "server: {{shutdownGraceMs: 300, drainTimeoutMs: 20000}}\nbackends:\n{}routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n",
        backend_yaml("vllm", &[m.base_url()], "")
    ));
    let mut proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let resp = post(
        &proxy,
        &request("[[mock:text:60]] [[mock:pace:25]]", "s", true),
        None,
    )
    .await;
    let mut stream = resp.bytes_stream();
    let mut body = String::new();
    while !body.contains("text_delta") {
        body.push_str(std::str::from_utf8(&stream.next().await.unwrap().unwrap()).unwrap());
    }
    let admin = proxy.admin_url();
    let pid_kill = tokio::task::spawn_blocking(move || {
        let status = proxy.terminate(Duration::from_secs(25));
        (proxy, status)
    });
    // Readiness fails at once while the stream goes on.
    assert!(readiness_fails(&admin).await, "readyz never failed");
    while let Some(chunk) = stream.next().await {
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(
        body.contains("word59") && body.contains("event: message_stop"),
        "stream was cut: {body}"
    );
    let (_proxy, status) = pid_kill.await.unwrap();
    assert!(status.unwrap().success(), "exit 0 after draining");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_rules_and_weights_route_to_their_backends() {
    let main = mock().await;
    let fast = mock().await;
    let cfg = TempFile::new(&format!(
        "backends:\n{}{}routes:\n  - name: all\n    models: ['*']\n    backend: main\n    rules:\n      \
         - name: subagents\n        when: {{subagent: true}}\n        backend: fast\n      \
         - name: profile\n        when: {{header: {{name: x-switchyard-profile, value: quick}}}}\n        backend: fast\n",
        backend_yaml("main", &[main.base_url()], ""),
        backend_yaml("fast", &[fast.base_url()], "")
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let mut haiku = request("hi", "s", false);
    haiku["model"] = json!("claude-haiku-4-5");
    assert_eq!(post(&proxy, &haiku, None).await.status(), 200);
    assert_eq!(
        post(&proxy, &request("hi", "s", false), None)
            .await
            .status(),
        200
    );
    let resp = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("x-claude-code-agent-id", "agent-1")
        .json(&request("hi", "s", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("x-switchyard-profile", "quick")
        .json(&request("hi", "s", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(main.stats.requests.load(Ordering::SeqCst), 1);
    assert_eq!(fast.stats.requests.load(Ordering::SeqCst), 3);
    assert!(
        proxy.wait_for_log("rule=\"subagents\"", Duration::from_secs(5)),
        "{}",
        proxy.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_config_is_served_as_it_is() {
    let m = mock().await;
    let cfg = TempFile::new(&format!(
        "model_list:\n  - model_name: \"claude-*\"\n    litellm_params:\n      model: hosted_vllm/qwen3-coder\n      api_base: {}\n\
         litellm_settings:\n  drop_params: true\n  success_callback: [\"langfuse\"]\ngeneral_settings:\n  master_key: sk-master-1234\n",
        m.base_url()
    ));
    let proxy = ProxyProcess::start(&["--litellm-config", cfg.path()]).unwrap();
    assert_eq!(
        post(&proxy, &request("hi", "s", false), None)
            .await
            .status(),
        401
    );
    let resp = post(&proxy, &request("hi", "s", false), Some("sk-master-1234")).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from mock vLLM.");
    assert_eq!(m.stats.last_body().unwrap()["model"], "qwen3-coder");
    let logs = proxy.log_text();
    assert!(
        logs.contains("success_callback"),
        "unsupported settings are warned about: {logs}"
    );
    assert!(!logs.contains("sk-master-1234"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_limits_apply_to_all_clients_of_the_route() {
    let m = mock().await;
    let cfg = TempFile::new(&format!(
        "backends:\n{}routes:\n  - name: small\n    models: ['*']\n    backend: vllm\n    limits: {{requestsPerMinute: 2, concurrent: 4}}\n",
        backend_yaml("vllm", &[m.base_url()], "")
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    for session in ["a", "b"] {
        assert_eq!(
            post(&proxy, &request("hi", session, false), None)
                .await
                .status(),
            200
        );
    }
    let resp = post(&proxy, &request("hi", "c", false), None).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(
        m.stats.requests.load(Ordering::SeqCst),
        2,
        "the refused request never reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_check_steers_around_a_dead_endpoint_without_failed_attempts() {
    let alive = mock().await;
    let doomed = mock().await;
    let urls = vec![doomed.base_url(), alive.base_url()];
    let cfg = TempFile::new(&format!(
        "backends:\n{}routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n",
        backend_yaml(
            "vllm",
            &urls,
            "    healthCheck: {path: /health, intervalMs: 100}\n"
        )
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    doomed.shutdown().await;
    // Give the probe a few intervals to see the endpoint gone.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for s in 0..12 {
        let resp = post(&proxy, &request("hi", &format!("session-{s}"), false), None).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(alive.stats.requests.load(Ordering::SeqCst), 12);
    let text = proxy.metrics().await;
    assert!(
        !text.contains("switchyard_upstream_errors_total{"),
        "no attempt went to the dead endpoint: {text}"
    );
    assert!(proxy.wait_for_log("health check changed", Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_token_timeout_fails_over_or_ends_the_stream_cleanly() {
    let m = mock().await;
    let cfg = TempFile::new(&format!(
        "server: {{commitAfterMs: 100, pingIntervalMs: 100}}\nbackends:\n{}routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n    retries: {{attempts: 1}}\n    timeouts: {{firstTokenMs: 400}}\n",
        backend_yaml("vllm", &[m.base_url()], "")
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    // Non-streaming: nothing reached the client yet, so it is a 529 the client may retry.
    let resp = post(&proxy, &request("[[mock:slow:3000]]", "s", false), None).await;
    assert_eq!(resp.status(), 529);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{v}"
    );
    // Streaming: committed after 100 ms, so the timeout ends the stream with an error event.
    let resp = post(&proxy, &request("[[mock:slow:3000]]", "s", true), None).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.unwrap());
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("firstTokenMs"),
        "{data}"
    );
    let cancelled = m.stats.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cancelled.cancelled.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "timed-out requests must be cancelled upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_client_auth_passes_the_users_key_to_a_passthrough_backend() {
    let m = mock().await;
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: anthropic\n    baseUrl: '{}'\n    protocol: anthropic\n    servedModel: qwen3-coder\n    contextWindow: 32768\n    forwardClientAuth: true\n\
         routes:\n  - name: all\n    models: ['*']\n    backend: anthropic\n",
        m.base_url()
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let resp = post(
        &proxy,
        &request("hi", "s", false),
        Some("sk-ant-users-own-key"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = m.stats.headers.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        seen["headers"]["x-api-key"], "sk-ant-users-own-key",
        "{seen}"
    );
    assert!(!proxy.log_text().contains("sk-ant-users-own-key"));
}
