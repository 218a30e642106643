//! One structured line per request, and the request metrics, written in one place when the
//! request ends (for streams: when the last event went out or the client left).

use crate::observe::capture::{self, Captured};
use crate::observe::metrics::{BackendLabels, Metrics, RequestLabels, TokenLabels};
use crate::observe::record::{now_ms, RequestRecord};
use crate::observe::records::{Records, Started};
use crate::protocol::anthropic::{StopReason, Usage};
use crate::routing::keys::{ConcurrencyPermit, KeyEntry};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct AccessLog {
    pub request_id: String,
    /// The API the client spoke: `messages`, `chat_completions` or `responses`.
    pub api: &'static str,
    pub started: Instant,
    pub session_id: Option<String>,
    /// Claude Code's `x-claude-code-agent-id`: the subagent that made the request.
    pub subagent: Option<String>,
    pub key: String,
    pub model: String,
    pub route: String,
    pub rule: Option<String>,
    pub backend: String,
    pub endpoint: String,
    pub attempts: u32,
    pub status: u16,
    pub stream: bool,
    pub stop_reason: Option<StopReason>,
    pub ttft: Option<Duration>,
    pub usage: Usage,
    pub error: Option<String>,
    /// What the request carried, only with content logging on for it (`logContent` of the
    /// proxy or of the client's key): redacted and shortened (observe::capture).
    pub capture: Option<Box<Captured>>,
    /// Fixes that changed the request or its answer, each named once.
    pub fixes: Vec<&'static str>,
    /// What some fixes did, in words (the clamp's numbers, the dropped fields, …).
    pub fix_notes: Vec<String>,
    /// The client key's and the route's limiters: their concurrency permits are held until
    /// the request ends (streams included), and they are charged its tokens then.
    pub limiters: Vec<(Arc<KeyEntry>, Arc<ConcurrencyPermit>)>,
}

impl AccessLog {
    pub fn new(request_id: String, started: Instant) -> Self {
        Self {
            request_id,
            api: "messages",
            started,
            session_id: None,
            subagent: None,
            key: "anonymous".into(),
            model: String::new(),
            route: String::new(),
            rule: None,
            backend: String::new(),
            endpoint: String::new(),
            attempts: 0,
            status: 0,
            stream: false,
            stop_reason: None,
            ttft: None,
            usage: Usage::default(),
            error: None,
            capture: None,
            fixes: Vec::new(),
            fix_notes: Vec::new(),
            limiters: Vec::new(),
        }
    }

    /// Notes a fix that fired (once, however many times it fires).
    pub fn fixed(&mut self, name: &'static str) {
        if !self.fixes.contains(&name) {
            self.fixes.push(name);
        }
    }

    /// Notes a fix that fired and what it did (each different note once: a retry that does
    /// the same again adds nothing).
    pub fn fixed_because(&mut self, name: &'static str, note: String) {
        self.fixed(name);
        if !self.fix_notes.contains(&note) {
            self.fix_notes.push(note);
        }
    }

    /// Unix time in milliseconds when the request arrived.
    fn arrived_ms(&self) -> u64 {
        now_ms().saturating_sub(self.started.elapsed().as_millis() as u64)
    }

    /// The request's record for the request view (`endpoint` already shown without credentials).
    pub fn to_record(&self, duration_ms: u64, endpoint: &str) -> RequestRecord {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        RequestRecord {
            id: self.request_id.clone(),
            time_ms: self.arrived_ms(),
            api: self.api,
            model: self.model.clone(),
            route: some(&self.route),
            rule: self.rule.clone(),
            backend: some(&self.backend),
            endpoint: some(endpoint),
            session: self.session_id.clone(),
            subagent: self.subagent.clone(),
            key: self.key.clone(),
            status: self.status,
            stream: self.stream,
            stop_reason: self.stop_reason.map(stop_reason_str),
            ttft_ms: self.ttft.map(|t| t.as_millis() as u64),
            duration_ms,
            input_tokens: self.usage.input_tokens,
            output_tokens: self.usage.output_tokens,
            cache_read_tokens: self.usage.cache_read_input_tokens,
            attempts: self.attempts,
            fixes: self.fixes.clone(),
            fix_notes: self.fix_notes.clone(),
            error: self.error.clone(),
            has_content: self.capture.is_some(),
        }
    }

    /// What the live feed says when the request has been routed.
    pub fn started_event(&self) -> Started {
        Started {
            id: self.request_id.clone(),
            time_ms: self.arrived_ms(),
            api: self.api,
            model: self.model.clone(),
            route: self.route.clone(),
            session: self.session_id.clone(),
            subagent: self.subagent.clone(),
            key: self.key.clone(),
            stream: self.stream,
        }
    }

    /// Writes the line, records the request's metrics and keeps its record.
    pub fn finish(&mut self, metrics: &Metrics, records: &Records) {
        let tokens =
            self.usage.input_tokens + self.usage.output_tokens + self.usage.cache_read_input_tokens;
        for (limiter, _) in &self.limiters {
            limiter.charge_tokens(tokens);
        }
        let duration = self.started.elapsed();
        let route = if self.route.is_empty() {
            "none"
        } else {
            &self.route
        };
        let backend = if self.backend.is_empty() {
            "none"
        } else {
            &self.backend
        };
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                backend: backend.to_owned(),
                key: self.key.clone(),
                status: self.status,
            })
            .inc();
        let labels = BackendLabels {
            route: route.to_owned(),
            backend: backend.to_owned(),
        };
        metrics
            .duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        if let Some(t) = self.ttft {
            metrics.ttft.get_or_create(&labels).observe(t.as_secs_f64());
        }
        for (kind, n) in [
            ("input", self.usage.input_tokens),
            ("output", self.usage.output_tokens),
            ("cache_read", self.usage.cache_read_input_tokens),
        ] {
            if n > 0 {
                metrics
                    .tokens
                    .get_or_create(&TokenLabels {
                        route: route.to_owned(),
                        backend: backend.to_owned(),
                        gen_ai_token_type: kind,
                    })
                    .inc_by(n);
            }
        }
        let endpoint = shown_endpoint(&self.endpoint);
        let record = self.to_record(duration.as_millis() as u64, &endpoint);
        let capture = self.capture.take();
        let content = capture.as_deref().and_then(logged_content);
        tracing::info!(
            target: "access",
            request_id = %self.request_id,
            api = self.api,
            session_id = self.session_id.as_deref(),
            subagent = self.subagent.as_deref(),
            key = %self.key,
            model = %self.model,
            route = %self.route,
            rule = self.rule.as_deref(),
            backend = %self.backend,
            // Endpoints hold shown URLs already (config/); this keeps it so whatever sets it.
            endpoint = %endpoint,
            attempts = self.attempts,
            status = self.status,
            stream = self.stream,
            stop_reason = self.stop_reason.map(stop_reason_str),
            ttft_ms = self.ttft.map(|t| t.as_millis() as u64),
            duration_ms = duration.as_millis() as u64,
            input_tokens = self.usage.input_tokens,
            output_tokens = self.usage.output_tokens,
            cache_read_tokens = self.usage.cache_read_input_tokens,
            error = self.error.as_deref(),
            fixes = ?self.fixes,
            content,
            "request completed"
        );
        records.push(record, capture.map(|c| *c));
    }

    /// Captures `body` as what went upstream, when content is captured for this request.
    pub fn capture_upstream<T: serde::Serialize>(&mut self, body: &T) {
        if let Some(c) = self.capture.as_mut() {
            c.upstream = capture::shown_of(body);
        }
    }

    /// Captures a whole answer, when content is captured for this request.
    pub fn capture_response<T: serde::Serialize>(&mut self, answer: &T) {
        if let Some(c) = self.capture.as_mut() {
            c.response = capture::shown_of(answer);
        }
    }
}

/// The client's request for the access line: its first 8 KiB.
fn logged_content(c: &Captured) -> Option<&str> {
    Some(capture::prefix(c.request.as_deref()?, 8_192))
}

/// An endpoint URL without user info or query (either may carry a credential).
fn shown_endpoint(url: &str) -> std::borrow::Cow<'_, str> {
    if url.contains(['@', '?', '#']) {
        switchyard_api::validate::redact_url(url).into()
    } else {
        url.into()
    }
}

pub fn stop_reason_str(r: StopReason) -> &'static str {
    match r {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_credentials_never_reach_the_access_line() {
        assert_eq!(
            shown_endpoint("http://u:secretpass@10.0.0.1:8000/v1?key=urlsecret"),
            "http://10.0.0.1:8000/v1"
        );
        assert_eq!(
            shown_endpoint("http://10.0.0.1:8000/v1"),
            "http://10.0.0.1:8000/v1"
        );
    }
}
