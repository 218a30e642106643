//! The client-facing error: every failure leaves the proxy as Anthropic error JSON with the
//! status code Anthropic would use, so Claude Code's retry and compaction logic applies.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Anthropic's error `type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    /// A known path, the wrong method: 405 with Anthropic's `invalid_request_error` type
    /// (Anthropic's list has no type of its own for it).
    MethodNotAllowed,
    RequestTooLarge,
    /// The client did not send its whole request body within `bodyReadTimeoutMs`.
    ///
    /// 408 with `timeout_error`: Anthropic documents `timeout_error` (its 504, "the request
    /// timed out") as its only timeout type, and `request_timeout` is none of its types.
    /// The status says whose side timed out (the client's upload, 4xx), the type what
    /// happened; `invalid_request_error` would tell clients the request itself is wrong and
    /// not worth retrying, while a slow upload is transient (the SDKs retry 408).
    BodyTimeout,
    RateLimit,
    Api,
    Overloaded,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::MethodNotAllowed => "invalid_request_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::BodyTimeout => "timeout_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Overloaded => "overloaded_error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::Permission => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::RateLimit => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Api => StatusCode::INTERNAL_SERVER_ERROR,
            // Anthropic's non-standard "overloaded" status; Claude Code retries it.
            ErrorKind::Overloaded => StatusCode::from_u16(529).expect("529 is a valid status"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// Seconds, forwarded from an upstream 429.
    pub retry_after: Option<u64>,
    /// `x-should-retry: false`: the Anthropic SDKs and Claude Code give up at once instead of
    /// retrying an answer that no retry can change (a hard quota, a misconfigured backend).
    pub final_answer: bool,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            final_answer: false,
        }
    }

    /// Marks the error as one a retry cannot fix (`x-should-retry: false`).
    pub fn final_answer(mut self) -> Self {
        self.final_answer = true;
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// The wording Claude Code parses to trigger compaction (it reads both numbers).
    pub fn prompt_too_long(prompt_tokens: u64, max_tokens: u64) -> Self {
        Self::invalid(format!(
            "prompt is too long: {prompt_tokens} tokens > {max_tokens} maximum"
        ))
    }

    /// The JSON body, shared by HTTP errors and the in-stream `error` event.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "type": "error",
            "error": { "type": self.kind.as_str(), "message": self.message },
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.kind.status(), axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        if self.final_answer {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        resp
    }
}
