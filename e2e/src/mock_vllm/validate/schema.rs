//! Step 2: pydantic-style validation of request bodies, imitating vLLM
//! 0.11's `ChatCompletionRequest` (and `TokenizeRequest`) models: the
//! `model_validator(mode="before")` hooks, then field types.

use serde_json::Value;

use crate::mock_vllm::errors::{py_str_repr, ApiError, Loc, PyVal, PydanticError};

/// Top-level fields of vLLM 0.11's `ChatCompletionRequest`.  Anything else is
/// ignored with a warning ("The following fields were present in the request
/// but ignored"), which the mock records in its stats.
const KNOWN_CHAT_FIELDS: &[&str] = &[
    "messages",
    "model",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "reasoning_effort",
    "include_reasoning",
    "parallel_tool_calls",
    "user",
    "best_of",
    "use_beam_search",
    "top_k",
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "stop_token_ids",
    "include_stop_str_in_output",
    "ignore_eos",
    "min_tokens",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "truncate_prompt_tokens",
    "prompt_logprobs",
    "allowed_token_ids",
    "bad_words",
    "echo",
    "add_generation_prompt",
    "continue_final_message",
    "add_special_tokens",
    "documents",
    "chat_template",
    "chat_template_kwargs",
    "mm_processor_kwargs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "structural_tag",
    "guided_decoding_backend",
    "guided_whitespace_pattern",
    "structured_outputs",
    "priority",
    "request_id",
    "logits_processors",
    "return_tokens_as_token_ids",
    "return_token_ids",
    "cache_salt",
    "kv_transfer_params",
    "vllm_xargs",
];

/// Content-part `type`s accepted by vLLM's `ChatCompletionContentPartParam` union.
const CONTENT_PART_TYPES: &[&str] = &[
    "text",
    "image_url",
    "input_audio",
    "file",
    "refusal",
    "audio_url",
    "video_url",
    "image_embeds",
    "image_pil",
    "thinking",
];

pub(super) fn body_loc(rest: &[Loc]) -> Vec<Loc> {
    let mut loc = vec![Loc::from("body")];
    loc.extend_from_slice(rest);
    loc
}

/// Python `str(x)` of a decoded JSON value (strings unquoted).
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => PyVal::from(other).repr(),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().map(|f| f != 0.0).unwrap_or(false),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// The `model_validator(mode="before")` hooks of `ChatCompletionRequest`.
/// The first one that raises is the only error reported.
fn before_validators(body: &Value) -> Result<(), String> {
    // validate_stream_options
    if truthy(body.get("stream_options")) && !truthy(body.get("stream")) {
        return Err("Stream options can only be defined when `stream=True`.".to_string());
    }
    // check_tool_usage
    let tools = body.get("tools");
    let tool_choice = match body.get("tool_choice") {
        Some(tc) => Some(tc.clone()),
        None if truthy(tools) => Some(Value::String("auto".to_string())),
        None => None,
    };
    if let Some(tc) = tool_choice.filter(|tc| !tc.is_null() && tc != "none") {
        if tools.is_none_or(Value::is_null) {
            return Err("When using `tool_choice`, `tools` must be set.".to_string());
        }
        let is_auto_or_required = tc == "auto" || tc == "required";
        if !is_auto_or_required && !tc.is_object() {
            return Err(format!(
                "Invalid value for `tool_choice`: {}! Only named tools, \"none\", \"auto\" or \"required\" are supported.",
                py_str(&tc)
            ));
        }
        let empty_tools = tools.and_then(Value::as_array).is_some_and(Vec::is_empty);
        if !(tc == "required" && empty_tools) && tc.is_object() {
            let usage = "Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`";
            let function = tc.get("function");
            let Some(function) = function.filter(|f| f.is_object()) else {
                let shown = function.map(py_str).unwrap_or_else(|| "None".to_string());
                return Err(format!(
                    "Invalid value for `function`: `{shown}` in `tool_choice`! {usage}"
                ));
            };
            let Some(name) = function.get("name") else {
                return Err(format!(
                    "Expected field `name` in `function` in `tool_choice`! {usage}"
                ));
            };
            match name.as_str() {
                Some(n) if !n.is_empty() => {
                    let found = tools
                        .and_then(Value::as_array)
                        .is_some_and(|ts| ts.iter().any(|t| t["function"]["name"] == *n));
                    if !found {
                        return Err("The tool specified in `tool_choice` does not match any of the specified `tools`".to_string());
                    }
                }
                _ => {
                    return Err(format!(
                        "Invalid `name` in `function`: `{}` in `tool_choice`! {usage}",
                        py_str(name)
                    ));
                }
            }
        }
    }
    // check_generation_prompt
    if truthy(body.get("continue_final_message")) && truthy(body.get("add_generation_prompt")) {
        return Err(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
                .to_string(),
        );
    }
    Ok(())
}

/// Collects pydantic-style field errors.
struct FieldChecker<'a> {
    body: &'a Value,
    errors: Vec<PydanticError>,
}

impl FieldChecker<'_> {
    fn err(&mut self, kind: &'static str, loc: &[Loc], msg: &str, input: &Value) {
        self.errors.push(PydanticError::new(
            kind,
            body_loc(loc),
            msg,
            PyVal::from(input),
        ));
    }

    fn missing(&mut self, loc: &[Loc], input: &Value) {
        self.err("missing", loc, "Field required", input);
    }

    fn opt_str(&mut self, obj: &Value, key: &str, loc: &[Loc]) {
        match obj.get(key) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(v) => self.err(
                "string_type",
                &push(loc, key),
                "Input should be a valid string",
                v,
            ),
        }
    }

    fn opt_bool(&mut self, key: &str) {
        match self.body.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(_)) => {}
            Some(v) if lax_bool(v).is_some() => {}
            Some(v) => self.err(
                "bool_type",
                &[Loc::from(key)],
                "Input should be a valid boolean",
                v,
            ),
        }
    }

    fn opt_int(&mut self, key: &str) {
        let Some(v) = self.body.get(key) else { return };
        match v {
            Value::Null => {}
            Value::Number(n) if n.is_i64() || n.is_u64() => {}
            Value::Number(n) => {
                if n.as_f64().is_some_and(|f| f.fract() != 0.0) {
                    self.err(
                        "int_from_float",
                        &[Loc::from(key)],
                        "Input should be a valid integer, got a number with a fractional part",
                        v,
                    );
                }
            }
            Value::String(s) if s.trim().parse::<i64>().is_ok() => {}
            Value::String(_) => self.err(
                "int_parsing",
                &[Loc::from(key)],
                "Input should be a valid integer, unable to parse string as an integer",
                v,
            ),
            _ => self.err(
                "int_type",
                &[Loc::from(key)],
                "Input should be a valid integer",
                v,
            ),
        }
    }

    fn opt_number(&mut self, key: &str) {
        let Some(v) = self.body.get(key) else { return };
        match v {
            Value::Null | Value::Number(_) => {}
            Value::String(s) if s.trim().parse::<f64>().is_ok() => {}
            Value::String(_) => self.err(
                "float_parsing",
                &[Loc::from(key)],
                "Input should be a valid number, unable to parse string as a number",
                v,
            ),
            _ => self.err(
                "float_type",
                &[Loc::from(key)],
                "Input should be a valid number",
                v,
            ),
        }
    }

    fn opt_dict(&mut self, key: &str) {
        match self.body.get(key) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(v) => self.err(
                "dict_type",
                &[Loc::from(key)],
                "Input should be a valid dictionary",
                v,
            ),
        }
    }

    fn messages(&mut self) {
        let body = self.body;
        let Some(messages) = body.get("messages") else {
            self.missing(&[Loc::from("messages")], body);
            return;
        };
        let Some(list) = messages.as_array() else {
            self.err(
                "list_type",
                &[Loc::from("messages")],
                "Input should be a valid list",
                messages,
            );
            return;
        };
        for (i, msg) in list.iter().enumerate() {
            let loc = [Loc::from("messages"), Loc::Index(i)];
            if !msg.is_object() {
                self.err("dict_type", &loc, "Input should be a valid dictionary", msg);
                continue;
            }
            match msg.get("role") {
                None => self.missing(&push(&loc, "role"), msg),
                Some(Value::String(_)) => {}
                Some(v) => self.err(
                    "string_type",
                    &push(&loc, "role"),
                    "Input should be a valid string",
                    v,
                ),
            }
            self.content(msg, &loc);
            self.opt_str(msg, "name", &loc);
            self.opt_str(msg, "tool_call_id", &loc);
            self.tool_calls(msg, &loc);
        }
    }

    fn content(&mut self, msg: &Value, loc: &[Loc]) {
        let loc = push(loc, "content");
        match msg.get("content") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    let ploc = push_idx(&loc, j);
                    let Some(obj) = part.as_object() else {
                        self.err(
                            "dict_type",
                            &ploc,
                            "Input should be a valid dictionary",
                            part,
                        );
                        continue;
                    };
                    match obj.get("type") {
                        Some(Value::String(t)) if CONTENT_PART_TYPES.contains(&t.as_str()) => {
                            if t == "text" {
                                match obj.get("text") {
                                    Some(Value::String(_)) => {}
                                    None => self.missing(&push(&ploc, "text"), part),
                                    Some(v) => self.err(
                                        "string_type",
                                        &push(&ploc, "text"),
                                        "Input should be a valid string",
                                        v,
                                    ),
                                }
                            }
                        }
                        // vLLM's "simple" custom parts: {"image_url": "..."} etc.
                        None if ["image_url", "audio_url", "video_url"]
                            .iter()
                            .any(|k| obj.get(*k).is_some_and(Value::is_string)) => {}
                        None => self.missing(&push(&ploc, "type"), part),
                        Some(t) => {
                            let expected = literal_list(CONTENT_PART_TYPES);
                            self.errors.push(
                                PydanticError::new(
                                    "literal_error",
                                    body_loc(&push(&ploc, "type")),
                                    format!("Input should be {expected}"),
                                    PyVal::from(t),
                                )
                                .with_ctx(vec![("expected", PyVal::Str(expected))]),
                            );
                        }
                    }
                }
            }
            Some(v) => self.err("string_type", &loc, "Input should be a valid string", v),
        }
    }

    /// `ChatCompletionMessageToolCallParam`: `id`, `type: "function"` and
    /// `function.{name, arguments}` are all required strings.
    fn tool_calls(&mut self, msg: &Value, loc: &[Loc]) {
        let loc = push(loc, "tool_calls");
        let calls = match msg.get("tool_calls") {
            None | Some(Value::Null) => return,
            Some(Value::Array(calls)) => calls,
            Some(v) => {
                self.err("list_type", &loc, "Input should be a valid list", v);
                return;
            }
        };
        for (j, call) in calls.iter().enumerate() {
            let cloc = push_idx(&loc, j);
            if !call.is_object() {
                self.err(
                    "dict_type",
                    &cloc,
                    "Input should be a valid dictionary",
                    call,
                );
                continue;
            }
            match call.get("id") {
                Some(Value::String(_)) => {}
                None => self.missing(&push(&cloc, "id"), call),
                Some(v) => self.err(
                    "string_type",
                    &push(&cloc, "id"),
                    "Input should be a valid string",
                    v,
                ),
            }
            match call.get("type") {
                Some(t) if t == "function" => {}
                None => self.missing(&push(&cloc, "type"), call),
                Some(t) => self.literal_function(&push(&cloc, "type"), t),
            }
            let floc = push(&cloc, "function");
            match call.get("function") {
                Some(f @ Value::Object(_)) => {
                    for key in ["name", "arguments"] {
                        match f.get(key) {
                            Some(Value::String(_)) => {}
                            None => self.missing(&push(&floc, key), f),
                            Some(v) => self.err(
                                "string_type",
                                &push(&floc, key),
                                "Input should be a valid string",
                                v,
                            ),
                        }
                    }
                }
                None => self.missing(&floc, call),
                Some(v) => self.err("dict_type", &floc, "Input should be a valid dictionary", v),
            }
        }
    }

    fn literal_function(&mut self, loc: &[Loc], input: &Value) {
        self.errors.push(
            PydanticError::new(
                "literal_error",
                body_loc(loc),
                "Input should be 'function'",
                PyVal::from(input),
            )
            .with_ctx(vec![("expected", PyVal::str("'function'"))]),
        );
    }

    /// `ChatCompletionToolsParam`: `type` defaults to "function" but any other
    /// value is rejected; `function.name` is required; `description` is
    /// `Optional[str]`; `parameters` is `Optional[dict]`.
    fn tools(&mut self) {
        let tools = match self.body.get("tools") {
            None | Some(Value::Null) => return,
            Some(Value::Array(t)) => t,
            Some(v) => {
                self.err(
                    "list_type",
                    &[Loc::from("tools")],
                    "Input should be a valid list",
                    v,
                );
                return;
            }
        };
        for (i, tool) in tools.iter().enumerate() {
            let loc = [Loc::from("tools"), Loc::Index(i)];
            if !tool.is_object() {
                self.err(
                    "model_type",
                    &loc,
                    "Input should be a valid dictionary or instance of ChatCompletionToolsParam",
                    tool,
                );
                continue;
            }
            if let Some(t) = tool.get("type") {
                if t != "function" {
                    self.literal_function(&push(&loc, "type"), t);
                }
            }
            let floc = push(&loc, "function");
            match tool.get("function") {
                Some(f @ Value::Object(_)) => {
                    match f.get("name") {
                        Some(Value::String(_)) => {}
                        None => self.missing(&push(&floc, "name"), f),
                        Some(v) => self.err(
                            "string_type",
                            &push(&floc, "name"),
                            "Input should be a valid string",
                            v,
                        ),
                    }
                    self.opt_str(f, "description", &floc);
                    match f.get("parameters") {
                        None | Some(Value::Null) | Some(Value::Object(_)) => {}
                        Some(v) => self.err(
                            "dict_type",
                            &push(&floc, "parameters"),
                            "Input should be a valid dictionary",
                            v,
                        ),
                    }
                }
                None => self.missing(&floc, tool),
                Some(v) => self.err(
                    "model_type",
                    &floc,
                    "Input should be a valid dictionary or instance of FunctionDefinition",
                    v,
                ),
            }
        }
    }

    fn stream_options(&mut self) {
        match self.body.get("stream_options") {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                for key in ["include_usage", "continuous_usage_stats"] {
                    if let Some(v) = o.get(key) {
                        if !v.is_null() && lax_bool(v).is_none() {
                            self.err(
                                "bool_type",
                                &[Loc::from("stream_options"), Loc::from(key)],
                                "Input should be a valid boolean",
                                v,
                            );
                        }
                    }
                }
            }
            Some(v) => self.err(
                "model_type",
                &[Loc::from("stream_options")],
                "Input should be a valid dictionary or instance of StreamOptions",
                v,
            ),
        }
    }

    fn stop(&mut self) {
        match self.body.get("stop") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        self.err(
                            "string_type",
                            &[Loc::from("stop"), Loc::from("list[str]"), Loc::Index(i)],
                            "Input should be a valid string",
                            item,
                        );
                    }
                }
            }
            Some(v) => {
                self.err(
                    "string_type",
                    &[Loc::from("stop"), Loc::from("str")],
                    "Input should be a valid string",
                    v,
                );
                self.err(
                    "list_type",
                    &[Loc::from("stop"), Loc::from("list[str]")],
                    "Input should be a valid list",
                    v,
                );
            }
        }
    }
}

fn push(loc: &[Loc], key: &str) -> Vec<Loc> {
    let mut v = loc.to_vec();
    v.push(Loc::from(key));
    v
}

fn push_idx(loc: &[Loc], i: usize) -> Vec<Loc> {
    let mut v = loc.to_vec();
    v.push(Loc::Index(i));
    v
}

/// pydantic's rendering of a `Literal[...]` expectation: `'a', 'b' or 'c'`.
fn literal_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| py_str_repr(s)).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// pydantic's lax-mode boolean coercion.
pub(crate) fn lax_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn lax_int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Step 2 for `/v1/chat/completions`: pydantic validation of the body.
/// Returns the fields vLLM would ignore.
pub(crate) fn validate_chat_schema(body: &Value) -> Result<Vec<String>, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::validation(&[PydanticError::new(
            "model_attributes_type",
            body_loc(&[]),
            "Input should be a valid dictionary or object to extract fields from",
            PyVal::from(body),
        )]));
    };
    if let Err(msg) = before_validators(body) {
        return Err(ApiError::validation(&[PydanticError::value_error(
            body_loc(&[]),
            &msg,
            PyVal::from(body),
        )]));
    }
    let mut fc = FieldChecker {
        body,
        errors: Vec::new(),
    };
    fc.opt_str(body, "model", &[]);
    fc.messages();
    fc.tools();
    if let Some(tc @ Value::Object(_)) = body.get("tool_choice") {
        if let Some(t) = tc.get("type") {
            if t != "function" {
                fc.literal_function(&[Loc::from("tool_choice"), Loc::from("type")], t);
            }
        }
    }
    for key in [
        "stream",
        "logprobs",
        "echo",
        "add_generation_prompt",
        "continue_final_message",
        "parallel_tool_calls",
        "ignore_eos",
        "skip_special_tokens",
        "include_stop_str_in_output",
    ] {
        fc.opt_bool(key);
    }
    for key in [
        "max_tokens",
        "max_completion_tokens",
        "n",
        "seed",
        "top_logprobs",
        "top_k",
        "min_tokens",
    ] {
        fc.opt_int(key);
    }
    for key in [
        "temperature",
        "top_p",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
    ] {
        fc.opt_number(key);
    }
    for key in ["response_format", "chat_template_kwargs", "logit_bias"] {
        fc.opt_dict(key);
    }
    fc.stop();
    fc.stream_options();
    if !fc.errors.is_empty() {
        return Err(ApiError::validation(&fc.errors));
    }
    Ok(obj
        .keys()
        .filter(|k| !KNOWN_CHAT_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect())
}

/// Top-level fields of vLLM 0.34's `ResponsesRequest`
/// (`vllm/entrypoints/openai/responses/protocol.py`); others are ignored with
/// a warning (`OpenAIBaseModel`), which the mock records.
const KNOWN_RESPONSES_FIELDS: &[&str] = &[
    "background",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "logit_bias",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "reasoning",
    "include_reasoning",
    "service_tier",
    "store",
    "stream",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "top_k",
    "min_p",
    "truncation",
    "user",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "include_stop_str_in_output",
    "presence_penalty",
    "frequency_penalty",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "safety_identifier",
    "watermarking",
    "request_id",
    "session_id",
    "media_io_kwargs",
    "mm_processor_kwargs",
    "priority",
    "mm_payload",
    "return_mm_kwargs",
    "cache_salt",
    "enable_response_messages",
    "previous_input_messages",
    "structured_outputs",
    "repetition_penalty",
    "seed",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "thinking_token_budget",
    "vllm_xargs",
    "kv_transfer_params",
    "ec_transfer_params",
    "chat_template_kwargs",
];

/// pydantic field checks of `ResponsesRequest` (0.34) that a proxy can
/// trip; returns the ignored fields.  The `model_validator(mode="before")`
/// hooks that raise `VLLMValidationError` are not here: that exception is
/// not a `ValueError`, so pydantic does not wrap it and it reaches the app's
/// `VLLMError` handler as a plain 400 (see `responses.rs`).
pub(crate) fn validate_responses_schema(body: &Value) -> Result<Vec<String>, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::validation(&[PydanticError::new(
            "model_attributes_type",
            body_loc(&[]),
            "Input should be a valid dictionary or object to extract fields from",
            PyVal::from(body),
        )]));
    };
    let mut fc = FieldChecker {
        body,
        errors: Vec::new(),
    };
    // `input: str | list[ResponseInputOutputItem]` (required).
    match body.get("input") {
        None => fc.missing(&[Loc::from("input")], body),
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    fc.err(
                        "model_type",
                        &[Loc::from("input"), Loc::from("list[...]"), Loc::Index(i)],
                        "Input should be a valid dictionary or instance of ResponseFunctionToolCall",
                        item,
                    );
                }
            }
        }
        Some(v) => {
            fc.err(
                "string_type",
                &[Loc::from("input"), Loc::from("str")],
                "Input should be a valid string",
                v,
            );
            fc.err(
                "list_type",
                &[Loc::from("input"), Loc::from("list[...]")],
                "Input should be a valid list",
                v,
            );
        }
    }
    for key in ["model", "instructions", "previous_response_id", "user"] {
        fc.opt_str(body, key, &[]);
    }
    for key in [
        "background",
        "store",
        "stream",
        "parallel_tool_calls",
        "ignore_eos",
        "skip_special_tokens",
        "include_stop_str_in_output",
    ] {
        fc.opt_bool(key);
    }
    for key in [
        "max_output_tokens",
        "max_tool_calls",
        "top_logprobs",
        "top_k",
        "seed",
    ] {
        fc.opt_int(key);
    }
    for key in [
        "temperature",
        "top_p",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
    ] {
        fc.opt_number(key);
    }
    for key in [
        "metadata",
        "reasoning",
        "text",
        "chat_template_kwargs",
        "logit_bias",
    ] {
        fc.opt_dict(key);
    }
    match body.get("tools") {
        None | Some(Value::Array(_)) => {}
        Some(v) => fc.err(
            "list_type",
            &[Loc::from("tools")],
            "Input should be a valid list",
            v,
        ),
    }
    fc.stop();
    if !fc.errors.is_empty() {
        return Err(ApiError::validation(&fc.errors));
    }
    Ok(obj
        .keys()
        .filter(|k| !KNOWN_RESPONSES_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect())
}

/// `/tokenize`: either `messages` (TokenizeChatRequest) or `prompt`.
pub(crate) fn validate_tokenize(body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::validation(&[PydanticError::new(
            "model_attributes_type",
            body_loc(&[]),
            "Input should be a valid dictionary or object to extract fields from",
            PyVal::from(body),
        )]));
    }
    if body.get("messages").is_some() {
        let mut fc = FieldChecker {
            body,
            errors: Vec::new(),
        };
        fc.messages();
        fc.tools();
        if !fc.errors.is_empty() {
            return Err(ApiError::validation(&fc.errors));
        }
        return Ok(());
    }
    match body.get("prompt") {
        Some(Value::String(_)) => Ok(()),
        Some(v) => Err(ApiError::validation(&[PydanticError::new(
            "string_type",
            body_loc(&[Loc::from("prompt")]),
            "Input should be a valid string",
            PyVal::from(v),
        )])),
        None => Err(ApiError::validation(&[PydanticError::new(
            "missing",
            body_loc(&[Loc::from("prompt")]),
            "Field required",
            PyVal::from(body),
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok_body() -> Value {
        json!({"model": "qwen3-coder", "messages": [{"role": "user", "content": "hi"}]})
    }

    #[test]
    fn accepts_minimal_request() {
        assert_eq!(
            validate_chat_schema(&ok_body()).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn reports_ignored_fields() {
        let mut b = ok_body();
        b["metadata"] = json!({"x": 1});
        assert_eq!(
            validate_chat_schema(&b).unwrap(),
            vec!["metadata".to_string()]
        );
    }

    #[test]
    fn messages_must_be_list() {
        let b = json!({"model": "m", "messages": "hi"});
        let e = validate_chat_schema(&b).unwrap_err();
        assert_eq!(e.err_type, "Bad Request");
        assert!(
            e.message
                .starts_with("[{'type': 'list_type', 'loc': ('body', 'messages')"),
            "{}",
            e.message
        );
    }

    #[test]
    fn tool_choice_without_tools() {
        let mut b = ok_body();
        b["tool_choice"] = json!("auto");
        let e = validate_chat_schema(&b).unwrap_err();
        assert!(e
            .message
            .contains("Value error, When using `tool_choice`, `tools` must be set."));
    }

    #[test]
    fn bad_tool_choice_string() {
        let mut b = ok_body();
        b["tools"] = json!([{"type": "function", "function": {"name": "Bash"}}]);
        b["tool_choice"] = json!("any");
        let e = validate_chat_schema(&b).unwrap_err();
        assert!(
            e.message.contains(
                "Invalid value for `tool_choice`: any! Only named tools, \"none\", \"auto\" or \"required\" are supported."
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn tool_call_arguments_must_be_string() {
        let b = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "Bash", "arguments": {"command": "ls"}}}
            ]}
        ]});
        let e = validate_chat_schema(&b).unwrap_err();
        assert!(
            e.message
                .contains("('body', 'messages', 1, 'tool_calls', 0, 'function', 'arguments')"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_content_part() {
        let b = json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]});
        let e = validate_chat_schema(&b).unwrap_err();
        assert!(e.message.contains("'literal_error'"), "{}", e.message);
    }

    #[test]
    fn stream_options_need_stream() {
        let mut b = ok_body();
        b["stream_options"] = json!({"include_usage": true});
        let e = validate_chat_schema(&b).unwrap_err();
        assert!(e
            .message
            .contains("Stream options can only be defined when `stream=True`."));
    }

    #[test]
    fn literal_rendering() {
        assert_eq!(literal_list(&["a", "b", "c"]), "'a', 'b' or 'c'");
        assert_eq!(literal_list(&["a"]), "'a'");
    }
}
