//! A request record and usage rows: the data the request view shows, kept in memory
//! (`records`) and in the history (`history/`).

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in milliseconds: the clock of records, usage windows and retention.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One finished request, as the UI shows it. Holds no secret: `key` is the client key's
/// name, `endpoint` is shown without credentials. Content, when captured, is kept beside it
/// (`Records::content`), not in it: lists and the live feed stay small.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub id: String,
    /// Unix time in milliseconds when the request arrived.
    pub time_ms: u64,
    pub api: &'static str,
    pub model: String,
    pub route: Option<String>,
    pub rule: Option<String>,
    pub backend: Option<String>,
    pub endpoint: Option<String>,
    pub session: Option<String>,
    /// Claude Code's subagent id (`x-claude-code-agent-id`), when a subagent asked.
    pub subagent: Option<String>,
    pub key: String,
    pub status: u16,
    pub stream: bool,
    pub stop_reason: Option<&'static str>,
    pub ttft_ms: Option<u64>,
    pub duration_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub attempts: u32,
    /// Fixes that changed the request or its answer (`fixes::apply`, `context_clamp`,
    /// `dropped_fields`, `context_edits`, `text_tool_calls`).
    pub fixes: Vec<&'static str>,
    /// What some of them did, in words (`context_clamp`'s numbers, the fields dropped, …).
    pub fix_notes: Vec<String>,
    pub error: Option<String>,
    /// Content was captured (`GET /api/requests/{id}` has it while the request is recent).
    pub has_content: bool,
}

impl RequestRecord {
    /// Counted as failed in usage: an error status, or a stream that ended with an error.
    pub fn failed(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }
}

/// Requests, failures and tokens of one model, route, backend and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub model: String,
    pub route: String,
    pub backend: String,
    pub key: String,
    pub requests: u64,
    pub failed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
}

/// Usage of the records that arrived at or after `since_ms` (the in-memory twin of
/// `History::usage`, used without a history file).
pub fn usage<'a>(records: impl Iterator<Item = &'a RequestRecord>, since_ms: u64) -> Vec<UsageRow> {
    let mut rows: BTreeMap<(String, String, String, String), UsageRow> = BTreeMap::new();
    for r in records.filter(|r| r.time_ms >= since_ms) {
        let (route, backend) = (
            r.route.clone().unwrap_or_default(),
            r.backend.clone().unwrap_or_default(),
        );
        let row = rows
            .entry((
                r.model.clone(),
                route.clone(),
                backend.clone(),
                r.key.clone(),
            ))
            .or_insert_with(|| UsageRow {
                model: r.model.clone(),
                route,
                backend,
                key: r.key.clone(),
                requests: 0,
                failed: 0,
                input_tokens: 0,
                output_tokens: 0,
                cache_read_tokens: 0,
            });
        row.requests += 1;
        row.failed += u64::from(r.failed());
        row.input_tokens += r.input_tokens;
        row.output_tokens += r.output_tokens;
        row.cache_read_tokens += r.cache_read_tokens;
    }
    let mut out: Vec<UsageRow> = rows.into_values().collect();
    sort_usage(&mut out);
    out
}

/// Most requests first, then by name: one order for both sources.
pub fn sort_usage(rows: &mut [UsageRow]) {
    rows.sort_by(|a, b| {
        b.requests.cmp(&a.requests).then_with(|| {
            (&a.model, &a.route, &a.backend, &a.key).cmp(&(&b.model, &b.route, &b.backend, &b.key))
        })
    });
}
