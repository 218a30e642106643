//! Property tests (bounded fuzzing) of everything that reads bytes a client or a backend
//! controls: the request parser and translator, the stream translator, the text tool-call
//! parser, the LiteLLM converter and snapshot validation.
//!
//! Corpora are the real Claude Code requests (`fixtures/claude-code`) and the example
//! snapshots, mutated (fields dropped, values replaced by other JSON types, huge numbers,
//! deep nesting, random unicode, truncation), plus generated conversations and chunk
//! sequences. Case counts are fixed so the whole file runs in well under a minute in a debug
//! build; `PROPTEST_CASES` raises them all for a longer local run.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use switchyard_api::{ParameterPolicy, RoutingSnapshot, SystemMessagePlacement, ThinkingStyle};
use switchyard_proxy::error::{ApiError, ErrorKind};
use switchyard_proxy::fixes::context::{estimate_prompt_tokens, fit_estimated};
use switchyard_proxy::protocol::anthropic::MessagesRequest;
use switchyard_proxy::protocol::openai::ChatChunk;
use switchyard_proxy::translate::request::{to_openai, BackendShape};
use switchyard_proxy::translate::stream::StreamTranslator;
use switchyard_proxy::translate::text_tools::{Piece, TextToolParser};

const WINDOW: u32 = 32_768;

/// `cases` unless `PROPTEST_CASES` asks for more.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        max_shrink_iters: 2_000,
        // Failures print the minimal input; no regression files written into the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- corpora

fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SWITCHYARD_FIXTURES") {
        return PathBuf::from(dir).join("claude-code");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/claude-code")
}

/// Every `POST /v1/messages` body Claude Code sent.
fn request_corpus() -> &'static [Value] {
    static CORPUS: OnceLock<Vec<Value>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = fixtures_dir();
        let index: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("INDEX.json"))
                .unwrap_or_else(|e| panic!("fixtures at {}: {e}", dir.display())),
        )
        .unwrap();
        let mut out = Vec::new();
        for entry in index.as_array().unwrap() {
            let path = entry["path"].as_str().unwrap_or_default();
            if entry["method"] != "POST" || !path.starts_with("/v1/messages") {
                continue;
            }
            let file = entry["file"].as_str().unwrap();
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
            out.push(v["body"].clone());
        }
        assert!(out.len() >= 20, "fixture set incomplete: {}", out.len());
        out
    })
}

fn snapshot_corpus() -> &'static [(String, Value)] {
    static CORPUS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        ["standalone.yaml", "fleet.yaml"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(root.join(name)).unwrap();
                let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
                (text, serde_json::to_value(yaml).unwrap())
            })
            .collect()
    })
}

// ---------------------------------------------------------------- JSON mutation

/// Strings that mean something somewhere in the protocols, beside random unicode.
const WORDS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "tool",
    "text",
    "image",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "tool_reference",
    "document",
    "base64",
    "url",
    "object",
    "string",
    "auto",
    "any",
    "none",
    "custom",
    "enabled",
    "disabled",
    "adaptive",
    "t1",
    "t2",
    "Bash",
    "",
    "x-anthropic-billing-header: cc_version=1;",
    "<tool_call>",
    "</tool_call>",
    "<|channel|>",
    "<|message|>",
    "<|call|>",
    "openai",
    "anthropic",
    "*",
    "claude-*",
    "http://127.0.0.1:8000/v1",
    "inline",
    "hoist",
    "keep",
];

const KEYS: &[&str] = &[
    "type",
    "role",
    "content",
    "text",
    "id",
    "name",
    "input",
    "tool_use_id",
    "source",
    "media_type",
    "data",
    "url",
    "is_error",
    "thinking",
    "signature",
    "budget_tokens",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "stream",
    "cache_control",
    "defer_loading",
    "input_schema",
    "properties",
    "description",
    "metadata",
    "user_id",
    "output_config",
    "effort",
    "stop_sequences",
    "temperature",
    "top_k",
    "tool_name",
    "model",
    "backends",
    "routes",
    "baseUrl",
    "weight",
    "fallbacks",
    "models",
    "backend",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        2 => "\\PC{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(16).collect()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(u32::MAX),
            json!(u64::from(u32::MAX) + 1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(100_000_000_000u64),
            json!(1e300),
            json!(-1e300),
            json!(0.5),
            json!(f64::MIN_POSITIVE),
        ]),
    ]
}

/// Any JSON value, small, biased to protocol words and edge numbers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![prop::sample::select(KEYS).prop_map(str::to_owned), word()],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Op {
    Delete,
    Replace(Value),
    /// Wraps the node in this many arrays (past serde_json's recursion limit of 128 too).
    Nest(usize),
    /// Appends a copy of a sibling (arrays) or the node itself under a new key (objects).
    Duplicate,
}

#[derive(Debug, Clone)]
struct Mutation {
    /// Child selectors from the root, each taken modulo the number of children.
    path: Vec<usize>,
    op: Op,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let op = prop_oneof![
        3 => Just(Op::Delete),
        5 => json_value().prop_map(Op::Replace),
        1 => (1usize..200).prop_map(Op::Nest),
        1 => Just(Op::Duplicate),
    ];
    (prop::collection::vec(any::<usize>(), 0..8), op).prop_map(|(path, op)| Mutation { path, op })
}

fn apply(v: &mut Value, path: &[usize], op: &Op) {
    let child = |v: &Value, sel: usize| -> Option<usize> {
        match v {
            Value::Object(o) if !o.is_empty() => Some(sel % o.len()),
            Value::Array(a) if !a.is_empty() => Some(sel % a.len()),
            _ => None,
        }
    };
    let Some((&sel, rest)) = path.split_first() else {
        apply_here(v, op);
        return;
    };
    let Some(i) = child(v, sel) else {
        apply_here(v, op);
        return;
    };
    // Last step: some ops act on the parent (deleting, duplicating an element).
    if rest.is_empty() || child(nth(v, i), rest[0]).is_none() {
        match (v, op) {
            (Value::Object(o), Op::Delete) => {
                let key = o.keys().nth(i).cloned().unwrap();
                o.remove(&key);
            }
            (Value::Array(a), Op::Delete) => {
                a.remove(i);
            }
            (Value::Array(a), Op::Duplicate) => {
                let copy = a[i].clone();
                a.push(copy);
            }
            (v, op) => apply_here(nth_mut(v, i), op),
        }
        return;
    }
    apply(nth_mut(v, i), rest, op);
}

fn nth(v: &Value, i: usize) -> &Value {
    match v {
        Value::Object(o) => o.values().nth(i).unwrap(),
        Value::Array(a) => &a[i],
        _ => unreachable!(),
    }
}

fn nth_mut(v: &mut Value, i: usize) -> &mut Value {
    match v {
        Value::Object(o) => o.values_mut().nth(i).unwrap(),
        Value::Array(a) => &mut a[i],
        _ => unreachable!(),
    }
}

fn apply_here(v: &mut Value, op: &Op) {
    match op {
        Op::Delete => *v = Value::Null,
        Op::Replace(new) => *v = new.clone(),
        Op::Nest(depth) => {
            for _ in 0..*depth {
                *v = Value::Array(vec![v.take()]);
            }
        }
        Op::Duplicate => {
            if let Value::Object(o) = v {
                let copy = Value::Object(o.clone());
                o.insert("dup".into(), copy);
            }
        }
    }
}

/// What happens to the serialized bytes after the JSON mutations.
#[derive(Debug, Clone)]
enum ByteOp {
    None,
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
}

fn byte_op() -> impl Strategy<Value = ByteOp> {
    prop_oneof![
        4 => Just(ByteOp::None),
        2 => any::<usize>().prop_map(ByteOp::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| ByteOp::Flip(at, b)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| ByteOp::Insert(at, b)),
    ]
}

fn apply_bytes(mut bytes: Vec<u8>, op: &ByteOp) -> Vec<u8> {
    let len = bytes.len().max(1);
    match op {
        ByteOp::None => {}
        ByteOp::Truncate(at) => bytes.truncate(at % len),
        ByteOp::Flip(at, b) => {
            if !bytes.is_empty() {
                bytes[at % len] = *b;
            }
        }
        ByteOp::Insert(at, b) => {
            let at = at % len;
            bytes.splice(at.min(bytes.len())..at.min(bytes.len()), b.iter().copied());
        }
    }
    bytes
}

/// A mutated fixture body, as bytes.
fn mutated_request() -> impl Strategy<Value = Vec<u8>> {
    mutated_request_with(6, byte_op().boxed())
}

/// Fewer mutations and no byte damage: most still parse, so they reach the translator.
fn mildly_mutated_request() -> impl Strategy<Value = Vec<u8>> {
    mutated_request_with(3, Just(ByteOp::None).boxed())
}

fn mutated_request_with(
    max_mutations: usize,
    bytes: BoxedStrategy<ByteOp>,
) -> impl Strategy<Value = Vec<u8>> {
    let n = request_corpus().len();
    (
        0..n,
        prop::collection::vec(mutation(), 0..max_mutations),
        bytes,
    )
        .prop_map(|(i, muts, bytes)| {
            let mut v = request_corpus()[i].clone();
            for m in &muts {
                apply(&mut v, &m.path, &m.op);
            }
            apply_bytes(serde_json::to_vec(&v).unwrap(), &bytes)
        })
}

// ---------------------------------------------------------------- request translation

/// The proxy's OpenAI path: the Claude Code fixes, the prompt estimate and fit, translation.
/// Returns the Chat Completions body, or the client error.
fn translate(mut req: MessagesRequest) -> Result<Value, ApiError> {
    switchyard_proxy::fixes::apply(&mut req, SystemMessagePlacement::Inline);
    let estimate = estimate_prompt_tokens(&req);
    let max = fit_estimated(req.max_tokens, WINDOW, estimate)
        .max_tokens
        .unwrap_or(1);
    let policy = ParameterPolicy::default();
    let shape = BackendShape {
        served_model: "qwen3-coder",
        thinking: ThinkingStyle::Auto,
        parameters: &policy,
    };
    let t = to_openai(req, max, &shape)?;
    let chat = serde_json::to_value(&t.request).unwrap();
    assert_eq!(chat["max_tokens"], json!(max));
    Ok(chat)
}

/// Whether any object key named `key` appears in `v`.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, v)| k == key || has_key(v, key)),
        Value::Array(a) => a.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

/// What vLLM's request validation and strict chat templates need (see tests/fixtures.rs).
fn check_vllm_strictness(chat: &Value) {
    let messages = chat["messages"].as_array().expect("messages array");
    let mut prev_role = "";
    // Calls of the last assistant message that no tool message has answered yet.
    let mut calls: Vec<String> = Vec::new();
    let mut answered: HashSet<String> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().expect("role");
        assert!(
            matches!(role, "system" | "user" | "assistant" | "tool"),
            "role {role}"
        );
        assert!(i == 0 || role != "system", "system message at {i}");
        if matches!(role, "user" | "assistant") {
            assert_ne!(role, prev_role, "two {role} messages in a row at {i}");
        }
        if role != "tool" && !prev_role.is_empty() {
            let missing: Vec<&String> = calls.iter().filter(|c| !answered.contains(*c)).collect();
            assert!(
                missing.is_empty(),
                "unanswered tool calls {missing:?} before {i}"
            );
            calls.clear();
            answered.clear();
        }
        match role {
            "assistant" => {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    assert_eq!(c["type"], "function");
                    calls.push(c["id"].as_str().expect("tool call id").to_owned());
                    let args = c["function"]["arguments"]
                        .as_str()
                        .expect("arguments string");
                    let parsed: Value = serde_json::from_str(args).expect("arguments are JSON");
                    assert!(parsed.is_object(), "arguments must be an object: {args}");
                    assert!(c["function"]["name"].is_string());
                }
                assert!(
                    m["content"].is_string() || (m.get("content").is_none() && !calls.is_empty()),
                    "assistant content {m}"
                );
            }
            "tool" => {
                assert!(
                    matches!(prev_role, "assistant" | "tool"),
                    "tool message at {i} after {prev_role}"
                );
                let id = m["tool_call_id"].as_str().expect("tool_call_id");
                assert!(
                    calls.iter().any(|c| c == id),
                    "tool result {id} answers no call"
                );
                answered.insert(id.to_owned());
                assert!(m["content"].is_string(), "tool content is text");
            }
            _ => match &m["content"] {
                Value::String(_) => {}
                Value::Array(parts) => {
                    assert!(!parts.is_empty());
                    for p in parts {
                        match p["type"].as_str() {
                            Some("text") => assert!(p["text"].is_string()),
                            Some("image_url") => assert!(p["image_url"]["url"].is_string()),
                            other => panic!("content part type {other:?}"),
                        }
                    }
                }
                other => panic!("{role} content {other}"),
            },
        }
        prev_role = role;
    }
    for t in chat["tools"].as_array().into_iter().flatten() {
        let f = &t["function"];
        assert!(f["name"].is_string());
        assert!(f["description"].is_string(), "tool description {f}");
        assert_eq!(f["parameters"]["type"], "object", "tool schema {f}");
        assert!(
            f["parameters"]["properties"].is_object(),
            "tool properties {f}"
        );
    }
    // Anthropic-only fields never reach vLLM (tool schemas are the client's own JSON).
    let mut outside_schemas = chat.clone();
    outside_schemas.as_object_mut().unwrap().remove("tools");
    for key in [
        "cache_control",
        "defer_loading",
        "context_management",
        "tool_use_id",
    ] {
        assert!(!has_key(&outside_schemas, key), "{key} leaked");
    }
    if chat["stream"] != true {
        assert!(chat.get("stream_options").is_none());
    }
}

/// Conversations built turn by turn: valid ones (every call answered in the next turn) and,
/// with `noise`, arbitrary block and role changes.
#[derive(Debug, Clone)]
struct Episode {
    user: Vec<Value>,
    calls: Vec<Value>,
    assistant_text: Option<String>,
    thinking: Option<String>,
    result_order: Vec<usize>,
    extra_results_text: Option<String>,
    system_after: Option<String>,
}

fn user_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => word().prop_map(|t| json!({"type": "text", "text": t})),
        1 => word().prop_map(|t| json!({"type": "text", "text": t, "cache_control": {"type": "ephemeral"}})),
        1 => word().prop_map(|d| json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": d}})),
        1 => word().prop_map(|u| json!({"type": "image", "source": {"type": "url", "url": u}})),
        1 => json_value().prop_map(|s| json!({"type": "document", "source": s})),
        1 => word().prop_map(|t| json!({"type": "thinking", "thinking": t})),
    ]
}

fn episode() -> impl Strategy<Value = Episode> {
    (
        prop::collection::vec(user_block(), 0..3),
        prop::collection::vec((word(), json_value()), 0..4),
        prop::option::of(word()),
        prop::option::of(word()),
        any::<u64>(),
        prop::option::of(word()),
        prop::option::of(word()),
    )
        .prop_map(
            |(user, calls, assistant_text, thinking, seed, extra, system_after)| {
                let calls: Vec<Value> = calls
                    .into_iter()
                    .map(|(name, input)| json!({"type": "tool_use", "name": name, "input": input}))
                    .collect();
                let mut result_order: Vec<usize> = (0..calls.len()).collect();
                if !result_order.is_empty() {
                    let k = (seed as usize) % result_order.len();
                    result_order.rotate_left(k);
                }
                Episode {
                    user,
                    calls,
                    assistant_text,
                    thinking,
                    result_order,
                    extra_results_text: extra,
                    system_after,
                }
            },
        )
}

fn tool_result_content() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        word().prop_map(Value::String),
        prop::collection::vec(
            prop_oneof![
                word().prop_map(|t| json!({"type": "text", "text": t})),
                word().prop_map(|t| json!({"type": "tool_reference", "tool_name": t})),
                word().prop_map(|u| json!({"type": "image", "source": {"type": "url", "url": u}})),
            ],
            0..3
        )
        .prop_map(Value::Array),
    ])
}

/// A request body from episodes; every call gets a unique id and is answered.
fn conversation() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((episode(), tool_result_content()), 1..5),
        prop::collection::vec(
            (
                word(),
                prop::option::of(json_value()),
                prop::option::of(any::<bool>()),
            ),
            0..4,
        ),
        prop::option::of(prop::collection::vec(word(), 0..3)),
        any::<bool>(),
        prop::option::of(prop_oneof![
            4 => prop::sample::select(vec![
                json!({"type": "adaptive"}),
                json!({"type": "disabled"}),
                json!({"type": "enabled", "budget_tokens": 2048}),
                json!({"type": "enabled", "budget_tokens": u32::MAX}),
            ]),
            1 => json_value(),
        ]),
    )
        .prop_map(|(episodes, tools, system, stream, thinking)| {
            let mut messages = Vec::new();
            let mut next_id = 0;
            for (e, result) in episodes {
                let mut user = e.user.clone();
                if user.is_empty() {
                    user.push(json!({"type": "text", "text": "go"}));
                }
                messages.push(json!({"role": "user", "content": user}));
                let mut content = Vec::new();
                if let Some(t) = e.thinking {
                    content.push(json!({"type": "thinking", "thinking": t, "signature": "s"}));
                }
                if let Some(t) = e.assistant_text {
                    content.push(json!({"type": "text", "text": t}));
                }
                let mut ids = Vec::new();
                for mut c in e.calls {
                    next_id += 1;
                    let id = format!("toolu_{next_id}");
                    c["id"] = json!(id);
                    ids.push(id);
                    content.push(c);
                }
                messages.push(json!({"role": "assistant", "content": content}));
                if let Some(s) = e.system_after {
                    messages.push(json!({"role": "system", "content": s}));
                }
                if !ids.is_empty() {
                    let mut results: Vec<Value> = e
                        .result_order
                        .iter()
                        .map(|&i| {
                            let mut r = json!({"type": "tool_result", "tool_use_id": ids[i]});
                            if let Some(c) = &result {
                                r["content"] = c.clone();
                            }
                            r
                        })
                        .collect();
                    if let Some(t) = e.extra_results_text {
                        results.push(json!({"type": "text", "text": t}));
                    }
                    messages.push(json!({"role": "user", "content": results}));
                }
            }
            let tools: Vec<Value> = tools
                .into_iter()
                .map(|(name, schema, defer)| {
                    let mut t = json!({"name": name});
                    if let Some(s) = schema {
                        t["input_schema"] = s;
                    }
                    if let Some(d) = defer {
                        t["defer_loading"] = json!(d);
                    }
                    t
                })
                .collect();
            let mut body = json!({"model": "claude-x", "max_tokens": 128000, "stream": stream,
                "messages": messages, "tools": tools,
                "metadata": {"user_id": "u"}, "context_management": {"edits": []}});
            if let Some(s) = system {
                let mut blocks = vec![
                    json!({"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"}),
                ];
                blocks.extend(s.into_iter().map(|t| json!({"type": "text", "text": t})));
                body["system"] = Value::Array(blocks);
            }
            if let Some(t) = thinking {
                body["thinking"] = t;
            }
            body
        })
}

proptest! {
    #![proptest_config(config(1000))]

    /// Bytes → `MessagesRequest` never panics, whatever the mutation.
    #[test]
    fn request_parser_never_panics(bytes in mutated_request()) {
        let _ = serde_json::from_slice::<MessagesRequest>(&bytes);
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// Mutated Claude Code requests that still parse translate without panicking, into a body
    /// vLLM accepts, or into a client error.
    #[test]
    fn mutated_requests_translate_to_valid_vllm_bodies(bytes in mildly_mutated_request()) {
        if let Ok(req) = serde_json::from_slice::<MessagesRequest>(&bytes) {
            match translate(req) {
                Ok(chat) => check_vllm_strictness(&chat),
                Err(e) => prop_assert_eq!(e.kind, ErrorKind::InvalidRequest),
            }
        }
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Well-formed conversations (every tool call answered in the next turn, system messages
    /// anywhere, odd tool inputs and schemas) always translate, and validly.
    #[test]
    fn generated_conversations_translate_to_valid_vllm_bodies(body in conversation()) {
        let req: MessagesRequest = match serde_json::from_value(body.clone()) {
            Ok(r) => r,
            // Generated thinking configs and schemas may be of the wrong type: a 400.
            Err(_) => return Ok(()),
        };
        let chat = translate(req).map_err(|e| TestCaseError::fail(format!("{e} for {body}")))?;
        check_vllm_strictness(&chat);
    }

    /// The same conversations with arbitrary mutations: no panic; valid output or a 400.
    #[test]
    fn mutated_conversations_translate_or_are_refused(
        body in conversation(),
        muts in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut body = body;
        for m in &muts {
            apply(&mut body, &m.path, &m.op);
        }
        if let Ok(req) = serde_json::from_value::<MessagesRequest>(body) {
            match translate(req) {
                Ok(chat) => check_vllm_strictness(&chat),
                Err(e) => prop_assert_eq!(e.kind, ErrorKind::InvalidRequest),
            }
        }
    }
}

// ---------------------------------------------------------------- stream translation

/// One upstream item: a chunk as JSON (it may not even parse as a chunk), or the end.
fn tool_call_delta() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            60 => (0u64..4).prop_map(Value::from),
            1 => number(),
            1 => Just(Value::Null),
        ],
        prop::option::of(prop_oneof![
            Just("call_1".to_owned()),
            Just("call_2".to_owned()),
            word()
        ]),
        prop::option::of(prop_oneof![Just("Bash".to_owned()), word()]),
        prop::option::of(prop_oneof![
            Just("{\"command\":".to_owned()),
            Just("\"ls\"}".to_owned()),
            Just("{}".to_owned()),
            word(),
        ]),
    )
        .prop_map(|(index, id, name, arguments)| {
            let mut call = json!({"index": index, "type": "function", "function": {}});
            if let Some(id) = id {
                call["id"] = json!(id);
            }
            if let Some(n) = name {
                call["function"]["name"] = json!(n);
            }
            if let Some(a) = arguments {
                call["function"]["arguments"] = json!(a);
            }
            call
        })
}

fn text_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => word(),
        1 => prop::sample::select(vec![
            "<tool_call>{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls\"}}</tool_call>",
            "<tool_",
            "call>",
            "</tool_call>",
            "<|channel|>analysis<|message|>",
            "<|channel|>commentary to=functions.Read <|constrain|>json<|message|>{\"a\":1}",
            "<|call|>",
            "<|end|>",
            "<|start|>assistant",
        ])
        .prop_map(str::to_owned),
    ]
}

fn usage() -> impl Strategy<Value = Value> {
    let count = || {
        prop_oneof![
            10 => (0u64..200_000).prop_map(Value::from),
            2 => any::<u64>().prop_map(Value::from),
            1 => number(),
        ]
    };
    (count(), count(), prop::option::of(count())).prop_map(|(p, c, cached)| {
        json!({"prompt_tokens": p, "completion_tokens": c,
               "prompt_tokens_details": cached.map(|c| json!({"cached_tokens": c}))})
    })
}

fn chunk() -> impl Strategy<Value = Value> {
    let delta = prop_oneof![
        2 => Just(json!({"role": "assistant", "content": ""})),
        6 => text_piece().prop_map(|t| json!({"content": t})),
        2 => word().prop_map(|t| json!({"reasoning": t})),
        1 => word().prop_map(|t| json!({"reasoning_content": t})),
        5 => prop::collection::vec(tool_call_delta(), 1..3).prop_map(|c| json!({"tool_calls": c})),
        1 => prop_oneof![
            19 => word().prop_map(Value::String),
            1 => json_value(),
        ].prop_map(|v| json!({"content": v})),
        1 => Just(json!({})),
    ];
    prop_oneof![
        80 => (
            delta,
            prop::option::of(prop::sample::select(vec!["stop", "length", "tool_calls", "abort"])),
            prop::option::of(prop_oneof![Just(json!("STOP")), number()]),
            prop::option::of(usage()),
        )
            .prop_map(|(delta, finish, stop, usage)| {
                let mut c = json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
                if let Some(s) = stop {
                    c["choices"][0]["stop_reason"] = s;
                }
                if let Some(u) = usage {
                    c["usage"] = u;
                }
                c
            }),
        4 => usage().prop_map(|u| json!({"choices": [], "usage": u})),
        1 => json_value(),
    ]
}

/// How the upstream stream ended.
#[derive(Debug, Clone, Copy)]
enum End {
    /// `data: [DONE]`.
    Done,
    /// Connection cut (or an upstream error).
    Cut,
}

#[derive(Debug, Default)]
struct Shape {
    events: Vec<(String, Value)>,
}

/// Parses SSE output and checks the Anthropic event grammar: `message_start` first, blocks
/// opened with increasing indexes and closed in order, nothing after `message_stop` or
/// `error`; ends with `message_delta`, `message_stop` or with `error`.
fn check_events(bytes: &[u8], finished_cleanly: bool) -> Shape {
    let text = std::str::from_utf8(bytes).expect("output is UTF-8");
    let mut shape = Shape::default();
    for block in text.split_terminator("\n\n") {
        let (head, data) = block.split_once('\n').expect("event and data lines");
        let name = head.strip_prefix("event: ").expect("event line");
        let data: Value = serde_json::from_str(data.strip_prefix("data: ").expect("data line"))
            .expect("data is JSON");
        assert_eq!(data["type"], name, "type matches the event name");
        shape.events.push((name.to_owned(), data));
    }
    assert!(!text.is_empty() && text.ends_with("\n\n"), "whole events");
    let names: Vec<&str> = shape.events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start");
    let mut open: Option<u64> = None;
    let mut next = 0u64;
    let mut ended = false;
    for (i, (name, data)) in shape.events.iter().enumerate() {
        assert!(!ended, "{name} after the end: {names:?}");
        match name.as_str() {
            "message_start" => {
                assert_eq!(i, 0);
                assert!(data["message"]["usage"]["input_tokens"].is_u64());
            }
            "content_block_start" => {
                assert_eq!(open, None, "block opened inside a block: {names:?}");
                let idx = data["index"].as_u64().unwrap();
                assert_eq!(idx, next, "indexes count up from 0");
                next += 1;
                open = Some(idx);
                let t = data["content_block"]["type"].as_str().unwrap();
                assert!(matches!(t, "text" | "thinking" | "tool_use"));
            }
            "content_block_delta" => {
                assert_eq!(open, data["index"].as_u64(), "delta for the open block");
            }
            "content_block_stop" => {
                assert_eq!(open, data["index"].as_u64(), "stop for the open block");
                open = None;
            }
            "message_delta" => {
                assert_eq!(open, None);
                assert!(data["delta"]["stop_reason"].is_string());
                for k in ["input_tokens", "output_tokens", "cache_read_input_tokens"] {
                    assert!(data["usage"][k].is_u64(), "usage.{k} numeric");
                }
                assert_eq!(names.get(i + 1), Some(&"message_stop"));
            }
            "message_stop" => ended = true,
            "error" => {
                assert_eq!(open, None, "error inside an open block");
                assert_eq!(data["error"]["type"], "api_error");
                ended = true;
            }
            "ping" => {}
            other => panic!("unknown event {other}"),
        }
    }
    assert!(ended, "stream not ended: {names:?}");
    let last = *names.last().unwrap();
    if finished_cleanly {
        assert_eq!(last, "message_stop");
    } else {
        assert_eq!(last, "error");
    }
    shape
}

/// Feeds chunks as the relay does (`Item::Data` → `on_chunk`, a chunk that does not parse or
/// a cut → `fail`, `[DONE]` → `finish`); returns the output and whether it ended cleanly.
fn run_stream(chunks: &[Value], end: End, text_tools: bool) -> (Vec<u8>, bool) {
    let mut tr = StreamTranslator::new(
        "msg_1".into(),
        "claude-x".into(),
        100,
        text_tools,
        vec!["STOP".into()],
    )
    .window_bound(false, Some(WINDOW));
    let mut out = Vec::new();
    let api = |m: &str| ApiError::new(ErrorKind::Api, m);
    for c in chunks {
        if tr.finished() {
            break;
        }
        match serde_json::from_value::<ChatChunk>(c.clone()) {
            Ok(chunk) => tr.on_chunk(chunk, &mut out),
            Err(e) => tr.fail(&api(&format!("invalid chunk: {e}")), &mut out),
        }
    }
    if !tr.finished() {
        match end {
            End::Done => tr.finish(&mut out),
            End::Cut => tr.fail(&api("connection closed without [DONE]"), &mut out),
        }
    }
    let clean = tr.failure().is_none() && tr.stop_reason().is_some();
    (out, clean)
}

proptest! {
    #![proptest_config(config(1000))]

    /// Any chunk sequence: no panic, bounded output, a well-formed Anthropic event stream.
    #[test]
    fn stream_translator_emits_well_formed_bounded_events(
        chunks in prop::collection::vec(chunk(), 0..40),
        done in any::<bool>(),
        text_tools in any::<bool>(),
    ) {
        let end = if done { End::Done } else { End::Cut };
        let (out, clean) = run_stream(&chunks, end, text_tools);
        let input: usize = chunks.iter().map(|c| c.to_string().len()).sum();
        // Per chunk at most a few events (close, open, delta, a flushed call); text and
        // arguments at most escaped again. Anything quadratic breaks this.
        let bound = 2_048 + 1_000 * chunks.len() + 8 * input;
        prop_assert!(out.len() <= bound, "{} bytes out for {} in ({} chunks)", out.len(), input, chunks.len());
        check_events(&out, clean);
    }

    /// Text (with tool-call markup) split at arbitrary points streams to the same content
    /// as unsplit.
    #[test]
    fn stream_text_split_anywhere_gives_the_same_blocks(
        pieces in prop::collection::vec(text_piece(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        text_tools in any::<bool>(),
    ) {
        let text: String = pieces.concat();
        let whole = [json!({"choices": [{"delta": {"content": text}}]})];
        let split: Vec<Value> = split_at(&text, &cuts)
            .into_iter()
            .map(|t| json!({"choices": [{"delta": {"content": t}}]}))
            .collect();
        let a = content(&check_events(&run_stream(&whole, End::Done, text_tools).0, true));
        let b = content(&check_events(&run_stream(&split, End::Done, text_tools).0, true));
        prop_assert_eq!(a, b);
    }
}

proptest! {
    #![proptest_config(config(300))]

    /// A whole (non-streaming) completion, any shape: no panic; tool inputs are objects.
    #[test]
    fn response_translator_never_panics(
        message in prop_oneof![
            3 => (prop::option::of(text_piece()), prop::option::of(word()),
                  prop::collection::vec(tool_call_delta(), 0..3))
                .prop_map(|(content, reasoning, calls)| {
                    let calls: Vec<Value> = calls.into_iter().map(|mut c| {
                        c["id"] = c.get("id").cloned().unwrap_or(json!(""));
                        c["function"]["name"] = c["function"].get("name").cloned().unwrap_or(json!("X"));
                        c["function"]["arguments"] =
                            c["function"].get("arguments").cloned().unwrap_or(json!(""));
                        c
                    }).collect();
                    json!({"content": content, "reasoning": reasoning, "tool_calls": calls})
                }),
            1 => json_value(),
        ],
        finish in prop::option::of(prop::sample::select(vec!["stop", "length", "tool_calls"])),
        usage in prop::option::of(usage()),
        text_tools in any::<bool>(),
    ) {
        let body = json!({"id": "x", "choices": [{"message": message, "finish_reason": finish}], "usage": usage});
        if let Ok(resp) = serde_json::from_value(body) {
            let msg = switchyard_proxy::translate::response::to_anthropic(
                resp, "msg".into(), "claude-x".into(), 10, text_tools, &[],
            );
            let v = serde_json::to_value(&msg).unwrap();
            for b in v["content"].as_array().unwrap() {
                if b["type"] == "tool_use" {
                    prop_assert!(b["input"].is_object());
                }
            }
            prop_assert!(v["stop_reason"].is_string());
        }
    }
}

/// The blocks a client accumulates (tool ids are random, so left out).
fn content(shape: &Shape) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for (name, data) in &shape.events {
        match name.as_str() {
            "content_block_start" => {
                let b = &data["content_block"];
                let kind = b["type"].as_str().unwrap().to_owned();
                let head = if kind == "tool_use" {
                    b["name"].as_str().unwrap().to_owned()
                } else {
                    String::new()
                };
                blocks.push((kind, head));
            }
            "content_block_delta" => {
                let d = &data["delta"];
                let piece = ["text", "thinking", "partial_json"]
                    .iter()
                    .find_map(|k| d[*k].as_str())
                    .unwrap();
                blocks.last_mut().unwrap().1.push_str(piece);
            }
            _ => {}
        }
    }
    blocks
}

/// `text` cut at the given points (taken modulo its length, moved to char boundaries).
fn split_at(text: &str, cuts: &[usize]) -> Vec<String> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| {
            let mut at = c % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        })
        .collect();
    points.push(0);
    points.push(text.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| text[w[0]..w[1]].to_owned())
        .collect()
}

// ---------------------------------------------------------------- text tool calls

fn parse_pieces(fragments: &[String]) -> Vec<Piece> {
    let mut p = TextToolParser::new();
    let mut out = Vec::new();
    for f in fragments {
        p.push(f, &mut out);
    }
    p.finish(&mut out);
    // Merge neighbours of one kind: where a fragment ends is not part of the result.
    let mut merged: Vec<Piece> = Vec::new();
    for piece in out {
        match (merged.last_mut(), piece) {
            (_, Piece::Text(t) | Piece::Reasoning(t)) if t.is_empty() => {}
            (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
            (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(&b),
            (_, p) => merged.push(p),
        }
    }
    merged
}

fn markup() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text_piece(),
        1 => prop::sample::select(vec!["<", "<|", "|>", "{", "}", "\"", "to=", "functions.", " ", "\n", "é", "🦀"])
            .prop_map(str::to_owned),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    /// Hermes and Harmony parsing of arbitrary text: no panic, the same pieces however the
    /// text is split, text without markup unchanged, output no larger than the input allows.
    #[test]
    fn text_tool_parser_is_total_and_split_invariant(
        parts in prop::collection::vec(markup(), 0..16),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let text: String = parts.concat();
        let whole = parse_pieces(std::slice::from_ref(&text));
        let split = parse_pieces(&split_at(&text, &cuts));
        prop_assert_eq!(&whole, &split);
        let chars: Vec<String> = text.chars().map(String::from).collect();
        prop_assert_eq!(&whole, &parse_pieces(&chars));
        if !text.contains('<') {
            let want: Vec<Piece> = if text.is_empty() { vec![] } else { vec![Piece::Text(text.clone())] };
            prop_assert_eq!(&whole, &want);
        }
        let out_len: usize = whole
            .iter()
            .map(|p| match p {
                Piece::Text(t) | Piece::Reasoning(t) => t.len(),
                Piece::ToolCall { name, arguments } => name.len() + arguments.len(),
            })
            .sum();
        prop_assert!(out_len <= 2 * text.len() + 2 * whole.len());
    }
}

// ---------------------------------------------------------------- configuration

fn yaml_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "model_list",
        "model_name",
        "litellm_params",
        "model",
        "api_base",
        "api_key",
        "rpm",
        "tpm",
        "timeout",
        "stream_timeout",
        "max_retries",
        "router_settings",
        "routing_strategy",
        "fallbacks",
        "context_window_fallbacks",
        "litellm_settings",
        "general_settings",
        "num_retries",
        "weight",
        "order",
        "model_info",
        "max_input_tokens",
        "drop_params",
        "additional_drop_params",
        "extra_body",
        "master_key",
        "environment_variables",
        "cooldown_time",
        "allowed_fails",
        "request_timeout",
        "- model_name",
        "-",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "",
            "openai/qwen",
            "hosted_vllm/qwen",
            "anthropic/claude",
            "os.environ/KEY",
            "http://127.0.0.1:8000/v1",
            "http://h:1",
            "[a, b]",
            "{a: 1}",
            "[{claude-*: [x]}]",
            "*",
            "claude-*",
            "true",
            "null",
            "~",
            "&a x",
            "*a",
            "!!binary AAAA",
            "|",
            ">",
            "18446744073709551616",
            "-1",
            "1e400",
            "0x10",
            ".inf",
            "'quoted'",
            "\"q\\u0000\"",
        ])
        .prop_map(str::to_owned),
        number().prop_map(|n| n.to_string()),
        word(),
    ];
    (0usize..4, key, value).prop_map(|(indent, k, v)| format!("{}{k}: {v}", "  ".repeat(indent)))
}

fn bench_litellm() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/litellm.yaml"))
            .unwrap_or_else(|_| {
                "model_list:\n  - model_name: claude-*\n    litellm_params:\n      model: openai/qwen\n      api_base: http://127.0.0.1:8000/v1\n".to_owned()
            })
    })
}

/// A mutated snapshot (JSON-level), or text-level damage to the YAML.
fn snapshot_input() -> impl Strategy<Value = (usize, Vec<Mutation>, ByteOp)> {
    (
        0usize..2,
        prop::collection::vec(mutation(), 0..6),
        byte_op(),
    )
}

proptest! {
    #![proptest_config(config(500))]

    /// `litellm::convert` on YAML-ish text never panics.
    #[test]
    fn litellm_convert_never_panics(
        lines in prop::collection::vec(yaml_line(), 0..24),
        keep_base in any::<bool>(),
        damage in byte_op(),
    ) {
        let mut text = if keep_base { bench_litellm().to_owned() } else { String::new() };
        text.push_str(&lines.join("\n"));
        let bytes = apply_bytes(text.into_bytes(), &damage);
        let _ = switchyard_proxy::config::litellm::convert(&String::from_utf8_lossy(&bytes));
    }

    /// Mutated example snapshots: parsing and `validate()` never panic.
    #[test]
    fn snapshot_validation_never_panics((which, muts, damage) in snapshot_input()) {
        let (text, value) = &snapshot_corpus()[which];
        let mut v = value.clone();
        for m in &muts {
            apply(&mut v, &m.path, &m.op);
        }
        if let Ok(s) = serde_json::from_value::<RoutingSnapshot>(v.clone()) {
            let _ = s.validate();
        }
        let yaml = serde_yaml::to_string(&v).unwrap_or_default();
        if let Ok(s) = serde_yaml::from_str::<RoutingSnapshot>(&yaml) {
            let _ = s.validate();
        }
        let damaged = apply_bytes(text.clone().into_bytes(), &damage);
        if let Ok(s) = serde_yaml::from_str::<RoutingSnapshot>(&String::from_utf8_lossy(&damaged)) {
            let _ = s.validate();
        }
    }
}

#[test]
fn corpora_load() {
    assert!(request_corpus()
        .iter()
        .all(|b| serde_json::from_value::<MessagesRequest>(b.clone()).is_ok()));
    for (_, v) in snapshot_corpus() {
        let s: RoutingSnapshot = serde_json::from_value(v.clone()).unwrap();
        assert!(s.validate().is_ok());
    }
}
