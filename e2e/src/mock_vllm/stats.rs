//! Counters and recorded requests, so tests can assert what the proxy sent
//! upstream and whether it cancelled streams when its own client went away.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use serde_json::{json, Map, Value};

/// How many requests are kept in memory (oldest dropped first).
const KEEP: usize = 1000;

/// Counters and recorded request bodies/headers of a running mock.
#[derive(Debug, Default)]
pub struct MockStats {
    /// `/v1/chat/completions`, `/v1/messages` and `/v1/responses` requests
    /// received (valid or not); [`MockStats::requests_to`] splits them by path.
    pub requests: AtomicU64,
    /// Responses (streams or handlers) dropped before they finished, i.e. the
    /// client went away.
    pub cancelled: AtomicU64,
    /// Responses that ran to completion (non-error).
    pub completed: AtomicU64,
    /// Error responses returned (4xx/5xx, including injected `error:CODE`).
    pub errors: AtomicU64,
    /// Streams deliberately broken by the `die:N` scenario.
    pub aborted: AtomicU64,
    /// `POST /tokenize` calls (valid or not).
    pub tokenize_calls: AtomicU64,
    /// `POST /v1/messages/count_tokens` calls (valid or not).
    pub count_tokens_calls: AtomicU64,
    /// Status the next `fail_next_count` model calls answer (`/mock/fail_next`).
    fail_next_status: AtomicU64,
    fail_next_count: AtomicU64,
    /// Requests that carried an `error_once:CODE` marker since the last reset.
    error_once_seen: AtomicU64,
    /// Received request bodies (chat, messages, responses), oldest first.  Bodies that
    /// are not JSON are recorded as a JSON string.
    pub bodies: Mutex<Vec<Value>>,
    /// Header snapshots, index-aligned with `bodies`: `{"path": ..., "headers": {name: value}}`.
    pub headers: Mutex<Vec<Value>>,
    /// Top-level request fields vLLM would ignore (it logs a warning for them).
    pub ignored_fields: Mutex<BTreeSet<String>>,
}

impl MockStats {
    pub(crate) fn record_request(&self, path: &str, headers: &HeaderMap, body: Value) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut hmap = Map::new();
        for (name, value) in headers {
            hmap.insert(
                name.as_str().to_string(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            );
        }
        push_capped(&self.bodies, body);
        push_capped(
            &self.headers,
            json!({ "path": path, "headers": Value::Object(hmap) }),
        );
    }

    pub(crate) fn record_ignored(&self, fields: &[String]) {
        if fields.is_empty() {
            return;
        }
        let mut set = lock(&self.ignored_fields);
        set.extend(fields.iter().cloned());
    }

    /// Arms `/mock/fail_next`: the next `count` model calls answer `status`.
    pub fn fail_next(&self, status: u16, count: u64) {
        self.fail_next_status
            .store(u64::from(status), Ordering::SeqCst);
        self.fail_next_count.store(count, Ordering::SeqCst);
    }

    /// Takes one armed failure, if any: the status to answer.
    pub(crate) fn take_fail_next(&self) -> Option<u16> {
        self.fail_next_count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| self.fail_next_status.load(Ordering::SeqCst) as u16)
    }

    /// Counts a request carrying `error_once:CODE`; true for the first one
    /// since the last reset (that one fails, later ones are served).
    pub(crate) fn first_error_once(&self) -> bool {
        self.error_once_seen.fetch_add(1, Ordering::SeqCst) == 0
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::SeqCst);
    }

    /// How many of the recorded requests (the last 1000) went to `path`
    /// (e.g. `/v1/responses`).
    pub fn requests_to(&self, path: &str) -> usize {
        lock(&self.headers)
            .iter()
            .filter(|h| h["path"] == path)
            .count()
    }

    /// The last recorded request body, if any.
    pub fn last_body(&self) -> Option<Value> {
        lock(&self.bodies).last().cloned()
    }

    /// The `authorization` header of the last recorded request, if any.
    pub fn last_authorization(&self) -> Option<String> {
        lock(&self.headers)
            .last()
            .and_then(|h| h["headers"]["authorization"].as_str().map(str::to_string))
    }

    /// Clears counters and recorded requests (`POST /mock/reset`).
    pub fn reset(&self) {
        for counter in [
            &self.requests,
            &self.cancelled,
            &self.completed,
            &self.errors,
            &self.aborted,
            &self.tokenize_calls,
            &self.count_tokens_calls,
            &self.fail_next_status,
            &self.fail_next_count,
            &self.error_once_seen,
        ] {
            counter.store(0, Ordering::SeqCst);
        }
        lock(&self.bodies).clear();
        lock(&self.headers).clear();
        lock(&self.ignored_fields).clear();
    }

    /// The `/mock/stats` document, with at most `last` bodies/headers.
    pub fn snapshot_json(&self, last: usize) -> Value {
        let tail = |v: &Mutex<Vec<Value>>| {
            let v = lock(v);
            let start = v.len().saturating_sub(last);
            Value::Array(v[start..].to_vec())
        };
        json!({
            "requests": self.requests.load(Ordering::SeqCst),
            "cancelled": self.cancelled.load(Ordering::SeqCst),
            "completed": self.completed.load(Ordering::SeqCst),
            "errors": self.errors.load(Ordering::SeqCst),
            "aborted": self.aborted.load(Ordering::SeqCst),
            "tokenize_calls": self.tokenize_calls.load(Ordering::SeqCst),
            "count_tokens_calls": self.count_tokens_calls.load(Ordering::SeqCst),
            "responses_requests": self.requests_to("/v1/responses"),
            "bodies": tail(&self.bodies),
            "headers": tail(&self.headers),
            "ignored_fields": lock(&self.ignored_fields).iter().cloned().collect::<Vec<_>>(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn push_capped(v: &Mutex<Vec<Value>>, item: Value) {
    let mut v = lock(v);
    if v.len() >= KEEP {
        v.remove(0);
    }
    v.push(item);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardState {
    Running,
    Completed,
    Aborted,
}

/// Tracks one response.  If it is dropped while still running (the client
/// disconnected and hyper dropped the handler future or the body stream), it
/// counts a cancellation — the signal vLLM uses to abort the engine request.
pub(crate) struct ResponseGuard {
    stats: Arc<MockStats>,
    state: GuardState,
}

impl ResponseGuard {
    pub(crate) fn new(stats: Arc<MockStats>) -> Self {
        ResponseGuard {
            stats,
            state: GuardState::Running,
        }
    }

    /// The response was delivered in full.
    pub(crate) fn complete(&mut self) {
        if self.state == GuardState::Running {
            self.stats.completed.fetch_add(1, Ordering::SeqCst);
        }
        self.state = GuardState::Completed;
    }

    /// The response ended with an error status (not a cancellation).
    pub(crate) fn errored(&mut self) {
        if self.state == GuardState::Running {
            self.stats.error();
        }
        self.state = GuardState::Completed;
    }

    /// The `die` scenario broke the stream on purpose.
    pub(crate) fn abort(&mut self) {
        if self.state == GuardState::Running {
            self.stats.aborted.fetch_add(1, Ordering::SeqCst);
        }
        self.state = GuardState::Aborted;
    }
}

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        if self.state == GuardState::Running {
            self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}
