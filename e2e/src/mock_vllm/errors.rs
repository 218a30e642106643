//! Error bodies exactly as vLLM's FastAPI server shapes them.
//!
//! vLLM >= 0.10 wraps errors OpenAI-style (`ErrorResponse(error=ErrorInfo(...))`):
//! `{"error": {"message": ..., "type": "BadRequestError", "param": null, "code": 400}}`.
//! Older releases used a flat `{"object": "error", "message": ...}`; we imitate
//! the nested form only.
//!
//! Three flavours of message matter to clients:
//! - FastAPI request-validation errors (`RequestValidationError`): vLLM's
//!   handler in `api_server.py` answers 400 with `type = "Bad Request"`
//!   (`HTTPStatus.BAD_REQUEST.phrase`) and the message `str(exc)`, which for
//!   the FastAPI versions vLLM 0.10/0.11 pin is the Python `repr` of the
//!   pydantic error list (`[{'type': 'missing', 'loc': ('body', 'messages'), ...}]`).
//! - Errors raised while preprocessing (chat template, context length): in
//!   vLLM 0.10/0.11 `serving_chat.py` catches them and returns
//!   `create_error_response(f"{e} {e.__cause__}")`.  A plain `ValueError`
//!   thus gets a trailing `" None"`, and a Jinja `TemplateError` — re-raised by
//!   `apply_hf_chat_template` as `ValueError(str(e)) from e` — comes out
//!   doubled: `"System message must be at the beginning. System message must be at the beginning."`.
//! - Errors returned directly (model not found, tool choice) carry the bare text.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};

fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
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
    /// even `/v1/messages` answers them in the OpenAI shape.
    pub always_openai_shape: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, err_type: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            err_type: err_type.to_string(),
            message: message.into(),
            param: None,
            always_openai_shape: false,
        }
    }

    /// `create_error_response(message)` with the defaults (400 BadRequestError).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestError", message)
    }

    /// A `ValueError` raised during preprocessing, formatted by vLLM 0.10/0.11
    /// as `f"{e} {e.__cause__}"` (the cause is `None`).
    pub fn preprocessing(message: &str) -> Self {
        Self::bad_request(format!("{message} None"))
    }

    /// A Jinja `raise_exception(...)` from the chat template: re-raised as
    /// `ValueError(str(e)) from e`, then formatted as `f"{e} {e.__cause__}"`.
    pub fn template(message: &str) -> Self {
        Self::bad_request(format!("{message} {message}"))
    }

    /// `OpenAIServing._check_model` (`serving_engine.py`).
    pub fn model_not_found(model: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The model `{model}` does not exist."),
        );
        e.param = Some("model".to_string());
        e
    }

    /// FastAPI `RequestValidationError` as rendered by vLLM's handler.
    pub fn validation(errors: &[PydanticError]) -> Self {
        Self::validation_raw(py_list_repr(errors))
    }

    /// A validation error whose `str(exc)` is already known.
    pub fn validation_raw(message: String) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "Bad Request", message);
        e.always_openai_shape = true;
        e
    }

    /// The `error:CODE` scenario: an HTTP error with the type vLLM (or the
    /// FastAPI stack under it) would use for that status.
    pub fn injected(code: u16) -> Self {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (err_type, message) = match status.as_u16() {
            400 => ("BadRequestError", "Injected bad request.".to_string()),
            404 => ("NotFoundError", "Injected not found.".to_string()),
            429 => ("RateLimitError", "Too many requests.".to_string()),
            // vLLM's engine_error_handler for EngineDeadError / EngineGenerateError.
            500 => (
                "InternalServerError",
                "EngineCore encountered an issue. See stack trace (above) for the root cause."
                    .to_string(),
            ),
            501 => ("NotImplementedError", "Not implemented.".to_string()),
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

    /// vLLM's `translate_error_response` for `/v1/messages`: the OpenAI
    /// `error.type` is copied verbatim (e.g. `BadRequestError`, not Anthropic's
    /// `invalid_request_error`).
    pub fn anthropic_body(&self) -> Value {
        if self.always_openai_shape {
            return self.openai_body();
        }
        json!({
            "type": "error",
            "error": { "type": self.err_type, "message": self.message },
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
    fn anthropic_bytes(&self) -> Vec<u8> {
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
                kind: &self.err_type,
                message: &self.message,
            },
        })
        .unwrap_or_default()
    }

    pub fn into_openai_response(self) -> Response {
        json_bytes_response(self.status, self.openai_bytes())
    }

    pub fn into_anthropic_response(self) -> Response {
        json_bytes_response(self.status, self.anthropic_bytes())
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
        let mut items = vec![
            (PyVal::str("type"), PyVal::str(self.kind)),
            (PyVal::str("loc"), loc),
            (PyVal::str("msg"), PyVal::Str(self.msg.clone())),
            (PyVal::str("input"), self.input.clone()),
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
