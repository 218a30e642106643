//! Small helpers shared by the end-to-end test files.

use crate::mock_vllm::{MockConfig, MockVllm};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// A mock vLLM with the default config on a free loopback port.
pub async fn mock() -> MockVllm {
    MockVllm::start(
        MockConfig::default(),
        "127.0.0.1:0".parse().expect("valid address"),
    )
    .await
    .expect("mock starts")
}

/// An HTTP client whose every request is bounded in time.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client builds")
}

/// A config file that lives as long as this value.
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn new(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "switchyard-test-{}.yaml",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, text).expect("temp file writes");
        Self(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }

    /// Replaces the content atomically, as a ConfigMap volume update does.
    pub fn replace(&self, text: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, text).expect("temp file writes");
        std::fs::rename(&tmp, &self.0).expect("temp file renames");
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// (event, data) pairs of an Anthropic SSE body.
pub fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in b.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).expect("event data is JSON");
                }
            }
            (name, data)
        })
        .collect()
}

/// The value of one metric sample line (exact series with its label set) in Prometheus
/// text, or 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The `sha256` of a client key as the proxy binary's `hash-key` prints it (for `keys[]`).
pub fn hash_key(key: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(
        crate::proxy_process::proxy_binary().expect("proxy binary builds"),
    )
    .arg("hash-key")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("proxy binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(key.as_bytes())
        .expect("key written");
    let out = child.wait_with_output().expect("hash-key ends");
    String::from_utf8(out.stdout)
        .expect("hex output")
        .trim()
        .to_owned()
}

/// Waits (at most 5 s) until the admin listener's `/readyz` answers 503, as it does at once
/// on SIGTERM; false if it never did.
pub async fn readiness_fails(admin_url: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let r = http().get(format!("{admin_url}/readyz")).send().await;
        if matches!(&r, Ok(r) if r.status() == 503) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
