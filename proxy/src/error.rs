//! The client-facing error: every failure leaves the proxy as Anthropic error JSON with the
//! status code Anthropic would use, so Claude Code's retry and compaction logic applies;
//! OpenAI clients (`/v1/chat/completions`, `/v1/responses`) get the same error in OpenAI's
//! shape ([`ApiError::openai_response`]).

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

    /// The kind an Anthropic error `type` names (the proxy's own answers, read back at an
    /// OpenAI front door); unknown types are `api_error`. `as_str` read backwards: where two
    /// kinds share a type, the first listed is taken.
    pub fn from_anthropic(kind: &str) -> Self {
        const ALL: [ErrorKind; 10] = [
            ErrorKind::InvalidRequest,
            ErrorKind::Authentication,
            ErrorKind::Permission,
            ErrorKind::NotFound,
            ErrorKind::MethodNotAllowed,
            ErrorKind::RequestTooLarge,
            ErrorKind::BodyTimeout,
            ErrorKind::RateLimit,
            ErrorKind::Api,
            ErrorKind::Overloaded,
        ];
        ALL.into_iter()
            .find(|k| k.as_str() == kind)
            .unwrap_or(ErrorKind::Api)
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

    /// The error an Anthropic error body (`{"type":"error","error":{"type","message"}}`)
    /// describes; `None` if it is not one.
    pub fn from_anthropic_body(body: &serde_json::Value) -> Option<Self> {
        let err = body.get("error")?;
        let kind = ErrorKind::from_anthropic(err.get("type")?.as_str()?);
        let message = err.get("message").and_then(|m| m.as_str()).unwrap_or("");
        Some(Self::new(kind, message))
    }

    /// The JSON body, shared by HTTP errors and the in-stream `error` event.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "type": "error",
            "error": { "type": self.kind.as_str(), "message": self.message },
        })
    }
}

/// OpenAI's error shape, for the OpenAI front doors.
impl ApiError {
    /// OpenAI's `type` and `code` for this kind (`openai-python` maps statuses to exception
    /// classes, and Codex reads `code`). The message is Switchyard's, unchanged.
    fn openai_type_code(&self) -> (&'static str, Option<&'static str>) {
        match self.kind {
            ErrorKind::InvalidRequest | ErrorKind::MethodNotAllowed => {
                let code = self
                    .message
                    .starts_with("prompt is too long")
                    .then_some("context_length_exceeded");
                ("invalid_request_error", code)
            }
            ErrorKind::RequestTooLarge => ("invalid_request_error", Some("request_too_large")),
            ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
            ErrorKind::Permission => ("invalid_request_error", Some("permission_denied")),
            ErrorKind::NotFound => ("invalid_request_error", Some("model_not_found")),
            ErrorKind::BodyTimeout => ("invalid_request_error", Some("timeout")),
            ErrorKind::RateLimit => ("rate_limit_error", Some("rate_limit_exceeded")),
            ErrorKind::Api => ("server_error", None),
            ErrorKind::Overloaded => ("server_error", Some("overloaded")),
        }
    }

    /// The status an OpenAI client gets: Anthropic's 529 is 503 (OpenAI's and HTTP's
    /// "overloaded"; the SDKs retry both).
    pub fn openai_status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            kind => kind.status(),
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}`: the body of an HTTP error and of
    /// the in-stream error chunk of Chat Completions.
    pub fn openai_body(&self) -> serde_json::Value {
        let (kind, code) = self.openai_type_code();
        json!({
            "error": { "message": self.message, "type": kind, "param": null, "code": code },
        })
    }

    pub fn openai_response(&self) -> Response {
        let mut resp = (self.openai_status(), axum::Json(self.openai_body())).into_response();
        self.retry_headers(&mut resp);
        resp
    }

    fn retry_headers(&self, resp: &mut Response) {
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        if self.final_answer {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.kind.status(), axum::Json(self.body())).into_response();
        self.retry_headers(&mut resp);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_types_read_back_to_their_kind() {
        for (name, kind) in [
            ("invalid_request_error", ErrorKind::InvalidRequest),
            ("authentication_error", ErrorKind::Authentication),
            ("permission_error", ErrorKind::Permission),
            ("not_found_error", ErrorKind::NotFound),
            ("request_too_large", ErrorKind::RequestTooLarge),
            ("timeout_error", ErrorKind::BodyTimeout),
            ("rate_limit_error", ErrorKind::RateLimit),
            ("api_error", ErrorKind::Api),
            ("overloaded_error", ErrorKind::Overloaded),
            ("billing_error", ErrorKind::Api),
        ] {
            assert_eq!(ErrorKind::from_anthropic(name), kind, "{name}");
        }
    }
}
