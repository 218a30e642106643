//! Error bodies exactly as vLLM's FastAPI server shapes them.
//!
//! vLLM >= 0.10.1 (PR #22099) wraps errors OpenAI-style
//! (`ErrorResponse(error=ErrorInfo(...))`):
//! `{"error": {"message": ..., "type": "BadRequestError", "param": null, "code": 400}}`.
//! Older releases used a flat `{"object": "error", "message": ...}`; we imitate
//! the nested form only.
//!
//! Three flavours of message matter to clients, and their wording depends on
//! the release ([`VllmRelease`]):
//! - FastAPI request-validation errors (`RequestValidationError`): 400 with
//!   `type = "Bad Request"` (`HTTPStatus.BAD_REQUEST.phrase`).
//!   * 0.30+ (`vllm/entrypoints/serve/exception_handling/handlers/validation.py`,
//!     `validation_exception_handler`): message
//!     `"{n} validation error[s]:\n  {err}"`, one line per error (at most 10),
//!     each error dict with `loc` joined by dots (`clean_loc_for_param`) and
//!     `input` summarised (`_summarize_error_input`: strings kept, containers
//!     as `<dict of N items>`, other values `str()`-ed); `param` is the
//!     dotted `loc` of the first error.
//!   * 0.10/0.11 (`api_server.py`): message `str(exc)`, the Python `repr` of
//!     the pydantic error list, `param: null`.
//! - Errors raised while preprocessing (chat template, context length):
//!   * 0.30+: `VLLMValidationError`, whose `__str__` (`vllm/exceptions.py`)
//!     appends ` (parameter=P, value=V)`; `create_error_response`
//!     (`exception_handling/error_response.py`) maps it to `BadRequestError`
//!     with `param = exc.parameter`.  Jinja errors become
//!     `VLLMValidationError(reason)` (`renderers/hf.py`, `_template_error_reason`),
//!     so their text comes out once, without a suffix.
//!   * 0.10/0.11: `serving_chat.py` returns `create_error_response(f"{e} {e.__cause__}")`.
//!     A plain `ValueError` thus gets a trailing `" None"`, and a Jinja
//!     `TemplateError` — re-raised by `apply_hf_chat_template` as
//!     `ValueError(str(e)) from e` — comes out doubled.
//! - Errors returned directly (model not found, tool choice) carry the bare text.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};

use super::VllmRelease;

fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// One entry of a FastAPI `RequestValidationError`: a pydantic error, or a
/// bare string (vLLM's `validate_json_request` raises one for the media type).
#[derive(Debug, Clone)]
pub enum ValidationItem {
    Pydantic(PydanticError),
    Text(String),
}

/// An error response in vLLM's vocabulary.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// `error.type`, e.g. `BadRequestError`, `NotFoundError`, `Bad Request`.
    pub err_type: String,
    pub message: String,
    pub param: Option<String>,
    /// FastAPI validation errors come from an app-wide exception handler, so
    /// even `/v1/messages` answers them in the OpenAI shape (issue #57997).
    pub always_openai_shape: bool,
    /// The raw validation errors; the message is rendered per release.
    pub validation: Option<Vec<ValidationItem>>,
}

impl ApiError {
    pub fn new(status: StatusCode, err_type: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            err_type: err_type.to_string(),
            message: message.into(),
            param: None,
            always_openai_shape: false,
            validation: None,
        }
    }

    /// `create_error_response(message)` with the defaults (400 BadRequestError).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestError", message)
    }

    /// A `VLLMValidationError(message, parameter=P, value=V)`: `str(exc)`
    /// ends in ` (parameter=P, value=V)` and `param` is `P`
    /// (`vllm/exceptions.py`, `create_error_response`).
    pub fn vllm_validation(message: &str, parameter: &str, value: impl std::fmt::Display) -> Self {
        let mut e = Self::bad_request(format!("{message} (parameter={parameter}, value={value})"));
        e.param = Some(parameter.to_string());
        e
    }

    /// A `ValueError` raised during preprocessing, formatted by vLLM 0.10/0.11
    /// as `f"{e} {e.__cause__}"` (the cause is `None`).
    pub fn preprocessing(message: &str) -> Self {
        Self::bad_request(format!("{message} None"))
    }

    /// A Jinja `raise_exception(...)` from the chat template.  0.10/0.11
    /// re-raise it as `ValueError(str(e)) from e` and format
    /// `f"{e} {e.__cause__}"` (the text twice); 0.30+ raise
    /// `VLLMValidationError(_template_error_reason(e))` (`renderers/hf.py`).
    pub fn template(message: &str, release: VllmRelease) -> Self {
        match release {
            VllmRelease::V0_11 => Self::bad_request(format!("{message} {message}")),
            _ => Self::bad_request(message),
        }
    }

    /// `_check_model` (`vllm/entrypoints/serve/engine/serving.py`); the
    /// ` Valid aliases: …` sentence is new in 0.32.0.
    pub fn model_not_found(model: &str, served: &str, release: VllmRelease) -> Self {
        let message = match release {
            VllmRelease::V0_34 => {
                format!("The model `{model}` does not exist. Valid aliases: {served}.")
            }
            _ => format!("The model `{model}` does not exist."),
        };
        let mut e = Self::new(StatusCode::NOT_FOUND, "NotFoundError", message);
        e.param = Some("model".to_string());
        e
    }

    /// FastAPI `RequestValidationError` as rendered by vLLM's handler; the
    /// message is rendered per release by [`ApiError::for_release`].
    pub fn validation(errors: &[PydanticError]) -> Self {
        let mut e = Self::validation_raw(py_list_repr(errors));
        e.validation = Some(
            errors
                .iter()
                .cloned()
                .map(ValidationItem::Pydantic)
                .collect(),
        );
        e
    }

    /// A validation error whose items are bare strings.
    pub fn validation_text(items: &[&str]) -> Self {
        let mut e = Self::validation_raw(
            PyVal::List(items.iter().map(|s| PyVal::str(*s)).collect()).repr(),
        );
        e.validation = Some(
            items
                .iter()
                .map(|s| ValidationItem::Text(s.to_string()))
                .collect(),
        );
        e
    }

    /// A validation error whose `str(exc)` is already known.
    pub fn validation_raw(message: String) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "Bad Request", message);
        e.always_openai_shape = true;
        e
    }

    /// The `error:CODE` scenario: an HTTP error with the type and text vLLM
    /// (or the FastAPI stack under it) uses for that status.
    pub fn injected(code: u16, release: VllmRelease) -> Self {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let current = release != VllmRelease::V0_11;
        let (err_type, message) = match status.as_u16() {
            400 => ("BadRequestError", "Injected bad request.".to_string()),
            404 => ("NotFoundError", "Injected not found.".to_string()),
            429 => ("RateLimitError", "Too many requests.".to_string()),
            // 0.33+: `EngineDeadError.CLIENT_MESSAGE` (`vllm/v1/engine/exceptions.py`)
            // through `create_error_response`.
            500 if release == VllmRelease::V0_34 => (
                "InternalServerError",
                "The server had an error while processing your request.".to_string(),
            ),
            // vLLM 0.11's engine_error_handler for EngineDeadError / EngineGenerateError.
            500 => (
                "InternalServerError",
                "EngineCore encountered an issue. See stack trace (above) for the root cause."
                    .to_string(),
            ),
            501 => ("NotImplementedError", "Not implemented.".to_string()),
            // 0.30+: `QueueOverflowError` (`vllm/exceptions.py`), a
            // `GracefulHTTPError`, so `type` is the HTTP phrase.
            503 if current => (
                "Service Unavailable",
                "The engine is currently busy and cannot accept new requests. Please try again later or on a different instance.".to_string(),
            ),
            503 => (
                "ServiceUnavailableError",
                "The server is currently unavailable. Please try again later.".to_string(),
            ),
            _ => (
                status.canonical_reason().unwrap_or("Error"),
                format!("Injected error {code}."),
            ),
        };
        Self::new(status, err_type, message)
    }

    /// Renders a validation error's message and `param` the way `release`
    /// does (see the module docs); other errors are unchanged.
    pub fn for_release(mut self, release: VllmRelease) -> Self {
        let Some(items) = &self.validation else {
            return self;
        };
        if release == VllmRelease::V0_11 {
            return self;
        }
        let count = items.len();
        let label = if count == 1 { "error" } else { "errors" };
        let mut message = format!("{count} validation {label}:\n");
        for item in items.iter().take(10) {
            let text = match item {
                ValidationItem::Pydantic(p) => p.to_py_summarised().repr(),
                ValidationItem::Text(t) => t.clone(),
            };
            let text = if text.chars().count() > 1000 {
                format!(
                    "{}...[truncated]",
                    text.chars().take(1000).collect::<String>()
                )
            } else {
                text
            };
            message.push_str("  ");
            message.push_str(&text);
            message.push('\n');
        }
        if count > 10 {
            message.push_str(&format!("  ...and {} more {label}\n", count - 10));
        }
        self.message = message.trim_end().to_string();
        self.param = match items.first() {
            Some(ValidationItem::Pydantic(p)) => Some(p.dotted_loc()),
            _ => None,
        };
        self
    }

    /// `ErrorResponse(error=ErrorInfo(...)).model_dump()`.
    pub fn openai_body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.err_type,
                "param": self.param,
                "code": self.status.as_u16(),
            }
        })
    }

    /// `error.type` on `/v1/messages`: 0.33+ translate the status to
    /// Anthropic's vocabulary (`translate_error_type`, `anthropic/protocol.py`);
    /// earlier releases copy vLLM's type (e.g. `BadRequestError`).
    pub fn anthropic_type(&self, release: VllmRelease) -> String {
        if release != VllmRelease::V0_34 {
            return self.err_type.clone();
        }
        anthropic_error_type(self.status.as_u16()).to_string()
    }

    /// vLLM's `translate_error_response` for `/v1/messages`.
    pub fn anthropic_body(&self, release: VllmRelease) -> Value {
        if self.always_openai_shape {
            return self.openai_body();
        }
        json!({
            "type": "error",
            "error": { "type": self.anthropic_type(release), "message": self.message },
        })
    }

    /// The OpenAI-shaped body, serialised in vLLM's field order.
    fn openai_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Info<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: u16,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            error: Info<'a>,
        }
        serde_json::to_vec(&Body {
            error: Info {
                message: &self.message,
                kind: &self.err_type,
                param: self.param.as_deref(),
                code: self.status.as_u16(),
            },
        })
        .unwrap_or_default()
    }

    /// The Anthropic-shaped body (`AnthropicErrorResponse`), in field order.
    fn anthropic_bytes(&self, release: VllmRelease) -> Vec<u8> {
        if self.always_openai_shape {
            return self.openai_bytes();
        }
        #[derive(Serialize)]
        struct Info<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            error: Info<'a>,
        }
        serde_json::to_vec(&Body {
            kind: "error",
            error: Info {
                kind: &self.anthropic_type(release),
                message: &self.message,
            },
        })
        .unwrap_or_default()
    }

    pub fn into_openai_response(self, release: VllmRelease) -> Response {
        let e = self.for_release(release);
        json_bytes_response(e.status, e.openai_bytes())
    }

    pub fn into_anthropic_response(self, release: VllmRelease) -> Response {
        let e = self.for_release(release);
        json_bytes_response(e.status, e.anthropic_bytes(release))
    }
}

/// `translate_error_type` (`vllm/entrypoints/anthropic/protocol.py`, 0.33+).
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// A Python value, enough to reproduce `repr()` of pydantic error lists.
#[derive(Debug, Clone)]
pub enum PyVal {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<PyVal>),
    Tuple(Vec<PyVal>),
    Dict(Vec<(PyVal, PyVal)>),
    /// Already-rendered Python source, e.g. `ValueError('...')`.
    Raw(String),
}

impl PyVal {
    pub fn str(s: impl Into<String>) -> PyVal {
        PyVal::Str(s.into())
    }

    /// Python's `str()`: the text itself for strings, `repr()` otherwise.
    pub fn py_str(&self) -> String {
        match self {
            PyVal::Str(s) => s.clone(),
            other => other.repr(),
        }
    }

    /// Python's `repr()`.
    pub fn repr(&self) -> String {
        let mut out = String::new();
        self.write_repr(&mut out);
        out
    }

    fn write_repr(&self, out: &mut String) {
        match self {
            PyVal::None => out.push_str("None"),
            PyVal::Bool(true) => out.push_str("True"),
            PyVal::Bool(false) => out.push_str("False"),
            PyVal::Int(i) => out.push_str(&i.to_string()),
            PyVal::Float(f) => out.push_str(&py_float_repr(*f)),
            PyVal::Str(s) => out.push_str(&py_str_repr(s)),
            PyVal::List(items) => {
                out.push('[');
                write_items(items, out);
                out.push(']');
            }
            PyVal::Tuple(items) => {
                out.push('(');
                write_items(items, out);
                if items.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            PyVal::Dict(items) => {
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write_repr(out);
                    out.push_str(": ");
                    v.write_repr(out);
                }
                out.push('}');
            }
            PyVal::Raw(s) => out.push_str(s),
        }
    }
}

fn write_items(items: &[PyVal], out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        item.write_repr(out);
    }
}

impl From<&Value> for PyVal {
    /// How a JSON body looks once FastAPI has decoded it (`json.loads`).
    /// Object keys come out sorted (serde_json's map), unlike Python's dict.
    fn from(v: &Value) -> PyVal {
        match v {
            Value::Null => PyVal::None,
            Value::Bool(b) => PyVal::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    PyVal::Int(i as i128)
                } else if let Some(u) = n.as_u64() {
                    PyVal::Int(u as i128)
                } else {
                    PyVal::Float(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => PyVal::Str(s.clone()),
            Value::Array(a) => PyVal::List(a.iter().map(PyVal::from).collect()),
            Value::Object(o) => PyVal::Dict(
                o.iter()
                    .map(|(k, v)| (PyVal::Str(k.clone()), PyVal::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Python's `repr(str)`: single quotes unless the text has a `'` and no `"`.
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        "nan".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// One element of a location tuple such as `('body', 'messages', 0, 'role')`.
#[derive(Debug, Clone)]
pub enum Loc {
    Key(String),
    Index(usize),
}

impl From<&str> for Loc {
    fn from(s: &str) -> Loc {
        Loc::Key(s.to_string())
    }
}

impl From<usize> for Loc {
    fn from(i: usize) -> Loc {
        Loc::Index(i)
    }
}

/// One pydantic v2 error as FastAPI reports it (`errors(include_url=False)`).
#[derive(Debug, Clone)]
pub struct PydanticError {
    pub kind: &'static str,
    pub loc: Vec<Loc>,
    pub msg: String,
    pub input: PyVal,
    pub ctx: Option<Vec<(&'static str, PyVal)>>,
}

impl PydanticError {
    pub fn new(kind: &'static str, loc: Vec<Loc>, msg: impl Into<String>, input: PyVal) -> Self {
        PydanticError {
            kind,
            loc,
            msg: msg.into(),
            input,
            ctx: None,
        }
    }

    pub fn with_ctx(mut self, ctx: Vec<(&'static str, PyVal)>) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// A `ValueError` raised inside a validator (`model_validator(mode="before")`
    /// errors are located at `('body',)`).
    pub fn value_error(loc: Vec<Loc>, message: &str, input: PyVal) -> Self {
        PydanticError::new("value_error", loc, format!("Value error, {message}"), input).with_ctx(
            vec![(
                "error",
                PyVal::Raw(format!("ValueError({})", py_str_repr(message))),
            )],
        )
    }

    /// `loc` joined by dots, as `clean_loc_for_param` does (0.30+).
    pub fn dotted_loc(&self) -> String {
        self.loc
            .iter()
            .map(|l| match l {
                Loc::Key(k) => k.clone(),
                Loc::Index(i) => i.to_string(),
            })
            .filter(|k| !is_internal_loc(k))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The error dict as 0.30+'s `_format_error` prints it: dotted `loc`,
    /// `input` summarised by `_summarize_error_input`.
    fn to_py_summarised(&self) -> PyVal {
        let input = match &self.input {
            PyVal::Str(s) if s.chars().count() > 200 => PyVal::Str(format!(
                "{}...[truncated]",
                s.chars().take(200).collect::<String>()
            )),
            PyVal::Str(s) => PyVal::Str(s.clone()),
            PyVal::List(items) => PyVal::Str(format!("<list of {} items>", items.len())),
            PyVal::Tuple(items) => PyVal::Str(format!("<tuple of {} items>", items.len())),
            PyVal::Dict(items) => PyVal::Str(format!("<dict of {} items>", items.len())),
            PyVal::Raw(r) => PyVal::Str(r.clone()),
            other => PyVal::Str(other.py_str()),
        };
        self.py_dict(PyVal::Str(self.dotted_loc()), input)
    }

    /// `{'type', 'loc', 'msg', 'input'[, 'ctx']}` with the given `loc` and `input`.
    fn py_dict(&self, loc: PyVal, input: PyVal) -> PyVal {
        let mut items = vec![
            (PyVal::str("type"), PyVal::str(self.kind)),
            (PyVal::str("loc"), loc),
            (PyVal::str("msg"), PyVal::Str(self.msg.clone())),
            (PyVal::str("input"), input),
        ];
        if let Some(ctx) = &self.ctx {
            items.push((
                PyVal::str("ctx"),
                PyVal::Dict(
                    ctx.iter()
                        .map(|(k, v)| (PyVal::str(*k), v.clone()))
                        .collect(),
                ),
            ));
        }
        PyVal::Dict(items)
    }

    fn to_py(&self) -> PyVal {
        let loc = PyVal::Tuple(
            self.loc
                .iter()
                .map(|l| match l {
                    Loc::Key(k) => PyVal::Str(k.clone()),
                    Loc::Index(i) => PyVal::Int(*i as i128),
                })
                .collect(),
        );
        self.py_dict(loc, self.input.clone())
    }
}

/// pydantic-core wrapper markers that `clean_loc_for_param` drops
/// (`handlers/validation.py`, `_INTERNAL_LOC_MARKERS` and bracketed names).
fn is_internal_loc(segment: &str) -> bool {
    const MARKERS: &[&str] = &[
        "function-wrap",
        "function-after",
        "function-before",
        "function-plain",
        "json-or-python",
        "lax-or-strict",
        "chain",
        "default",
        "nullable",
        "tagged-union",
        "union",
        "call",
        "arguments",
        "is-instance",
        "is-subclass",
        "callable",
        "str",
        "int",
        "float",
        "bool",
        "bytes",
        "bytearray",
        "list",
        "tuple",
        "dict",
        "set",
        "frozenset",
        "complex",
        "none",
        "nonetype",
    ];
    segment.contains(['[', ']', '{', '}', '(', ')'])
        || MARKERS.contains(&segment.to_lowercase().as_str())
}

/// `str(exc.errors())` — the message vLLM returns for validation errors.
pub fn py_list_repr(errors: &[PydanticError]) -> String {
    PyVal::List(errors.iter().map(PydanticError::to_py).collect()).repr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(py_str_repr("a'b"), "\"a'b\"");
        assert_eq!(py_str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_str_repr("x\ny"), "'x\\ny'");
        assert_eq!(PyVal::Tuple(vec![PyVal::str("body")]).repr(), "('body',)");
        assert_eq!(PyVal::Float(1.0).repr(), "1.0");
        assert_eq!(PyVal::Float(0.7).repr(), "0.7");
    }

    #[test]
    fn missing_field_message() {
        let e = PydanticError::new(
            "missing",
            vec!["body".into(), "messages".into()],
            "Field required",
            PyVal::Dict(vec![(PyVal::str("model"), PyVal::str("m"))]),
        );
        assert_eq!(
            py_list_repr(&[e]),
            "[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required', 'input': {'model': 'm'}}]"
        );
    }

    #[test]
    fn value_error_message() {
        let e = PydanticError::value_error(vec!["body".into()], "boom", PyVal::None);
        assert_eq!(
            py_list_repr(&[e]),
            "[{'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, boom', 'input': None, 'ctx': {'error': ValueError('boom')}}]"
        );
    }
}
