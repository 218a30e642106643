//! Scripted replies, chosen by markers in the last user turn.
//!
//! A marker is `[[mock:NAME]]` or `[[mock:NAME:ARG]]`, searched in the text of
//! the last user message (string content or text parts; for Anthropic
//! requests also inside `tool_result` blocks; for `/v1/responses` a string
//! `input`, or the last user message item with its `input_text` parts, and
//! trailing `function_call_output` items as tool results).  When the last
//! turn is a tool result and carries no marker, the reply is
//! `Tool result received: <first 60 chars of the tool content>` so agent tool
//! loops terminate.
//!
//! | marker | reply |
//! |---|---|
//! | (none) | `Hello from mock vLLM.` in a few chunks |
//! | `text:N` | `word0 word1 ...`, one word per chunk |
//! | `reasoning` | reasoning `Let me think about this.` then `The answer is 42.` |
//! | `tool[:NAME]` | `I'll run that.` then one tool call (NAME, else `Bash` if offered, else the first tool) |
//! | `bash:CMD` | one Bash call running CMD |
//! | `shell:CMD` | one call running CMD in the offered shell tool: Codex's `exec_command` (`{"cmd": CMD}`), else `shell_command` (`{"command": CMD}`), else `shell` (`{"command": ["bash", "-lc", CMD]}`), else Bash |
//! | `agent:TAG` | one Agent (or Task) call starting an Explore subagent whose prompt is `[[mock:tool]] list the files here (TAG)` |
//! | `parallel_tools` | reasoning, then two tool calls with interleaved argument fragments |
//! | `hermes` | an unparsed `<tool_call>` block in the content (no tool parser) |
//! | `harmony` | unparsed gpt-oss Harmony text in the content |
//! | `slow:MS` | prefill of MS ms before the first body byte, instead of the default proportional one (`MockConfig::prefill_per_1k_tokens`); combinable |
//! | `pace:MS` | sleep MS ms between chunks; combinable |
//! | `die:N` | N content chunks, then the connection is cut (no finish, no `[DONE]`) |
//! | `error:CODE` | HTTP CODE with a vLLM-shaped error body (`503`: `QueueOverflowError`, type `Service Unavailable`) |
//! | `error_once:CODE` | the first request carrying this marker since `/mock/reset` gets `error:CODE`; later ones get the default reply (a retry succeeds) |
//! | (admin) `POST /mock/fail_next?status=503&count=N` | the next N model calls, whatever their markers, get `error:STATUS` |
//! | `usage_null` | default text, but no usage (stream: no usage chunk; `/v1/responses`: `usage: null`) |
//! | `echo` | `roles: system,user,...` of the received messages |
//! | `stop` | `alpha beta STOP gamma`, cut by the request's `stop` sequences |
//!
//! Each piece of a script counts as one completion token.  As in vLLM, the
//! budget is `max_tokens` (or `max_completion_tokens`), defaulting to
//! `max_model_len - prompt_tokens`; a script longer than that is cut with
//! `finish_reason: "length"`.  So `text:100000` needs a `max_model_len` above
//! 100000 plus the prompt to run to the end.
//!
//! When tools are offered but cannot be parsed (`tool_choice: "none"`, or
//! `"auto"`-like choice without a tool parser), `tool`/`parallel_tools` reply
//! with the raw Hermes `<tool_call>` text a model would produce.

use std::time::Duration;

use serde_json::Value;

use super::random_hex;
use super::tokens::content_text;

/// One generated "token": a chunk of a streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Reasoning(String),
    Content(String),
    /// First delta of a tool call (id, name, empty arguments).
    ToolHeader {
        index: u32,
        id: String,
        name: String,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolArgs {
        index: u32,
        args: String,
    },
}

/// How a script ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Normal finish (`stop`/`tool_calls`).
    Finish,
    /// The engine "crashes": the connection is cut.
    Die,
}

/// A scripted reply.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub pieces: Vec<Piece>,
    pub ending: Ending,
    /// Delay before the first body byte (`slow:MS`); `None` means the
    /// default, proportional to the prompt size.
    pub prefill: Option<Duration>,
    /// Delay between chunks.
    pub pace: Duration,
    /// Omit usage (stream) / `usage: null` (non-stream).
    pub usage_null: bool,
    /// Answer with this HTTP status instead of generating.
    pub http_error: Option<u16>,
    /// `error_once:CODE`: answer this status if no request carried the
    /// marker before (since the last reset); otherwise generate.
    pub http_error_once: Option<u16>,
}

/// The last turn of the conversation, normalised across API formats.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastTurn {
    /// Texts of the last user message.
    pub texts: Vec<String>,
    /// Tool results of the last turn (OpenAI trailing `tool` messages, or
    /// Anthropic `tool_result` blocks of the last user message).
    pub tool_results: Vec<String>,
}

/// What a script may depend on besides the markers.
#[derive(Debug, Clone)]
pub(crate) struct ScenarioInput {
    pub last: LastTurn,
    pub tool_names: Vec<String>,
    /// A structured tool call can be returned (parser configured / forced).
    pub tools_parsed: bool,
    /// `tool_choice` is `"required"` or names a function: guided decoding
    /// forces a call even without a marker.  Holds the named function, if any.
    pub forced_tool: Option<Option<String>>,
    /// Roles of the received messages, for `echo`.
    pub roles: Vec<String>,
}

/// Last turn of an OpenAI `messages` array.
pub(crate) fn last_turn_openai(messages: &[Value]) -> LastTurn {
    let role = |m: &Value| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut turn = LastTurn::default();
    if messages.last().is_some_and(|m| role(m) == "tool") {
        let start = messages
            .iter()
            .rposition(|m| role(m) != "tool")
            .map(|i| i + 1)
            .unwrap_or(0);
        turn.tool_results = messages[start..]
            .iter()
            .map(|m| content_text(m.get("content")))
            .collect();
        return turn;
    }
    if let Some(user) = messages.iter().rev().find(|m| role(m) == "user") {
        turn.texts.push(content_text(user.get("content")));
    }
    turn
}

/// Last turn of an Anthropic `messages` array.
pub(crate) fn last_turn_anthropic(messages: &[Value]) -> LastTurn {
    let mut turn = LastTurn::default();
    let Some(user) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return turn;
    };
    match user.get("content") {
        Some(Value::String(s)) => turn.texts.push(s.clone()),
        Some(Value::Array(blocks)) => {
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str) {
                            turn.texts.push(t.to_string());
                        }
                    }
                    Some("tool_result") => turn.tool_results.push(anthropic_block_text(block)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    turn
}

/// Text of a `tool_result` block: string content, or its text blocks joined by newlines.
pub(crate) fn anthropic_block_text(block: &Value) -> String {
    match block.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A parsed `[[mock:NAME:ARG]]` marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    pub arg: Option<String>,
}

/// All markers in `text`, in order.
pub(crate) fn parse_markers(text: &str) -> Vec<Marker> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[mock:") {
        let after = &rest[start + 7..];
        let Some(end) = after.find("]]") else { break };
        let inner = &after[..end];
        let (name, arg) = match inner.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim().to_string())),
            None => (inner.trim(), None),
        };
        out.push(Marker {
            name: name.to_string(),
            arg,
        });
        rest = &after[end + 2..];
    }
    out
}

fn ms(arg: &Option<String>) -> Duration {
    Duration::from_millis(arg.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0))
}

/// Splits text into word chunks, each (but the first) with its leading space.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, w) in text.split(' ').enumerate() {
        if i == 0 {
            out.push(w.to_string());
        } else {
            out.push(format!(" {w}"));
        }
    }
    out.retain(|w| !w.is_empty());
    out
}

/// Splits text into chunks of at most `n` characters.
pub(crate) fn char_chunks(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

fn content(text: &str) -> Vec<Piece> {
    words(text).into_iter().map(Piece::Content).collect()
}

fn reasoning(text: &str) -> Vec<Piece> {
    words(text).into_iter().map(Piece::Reasoning).collect()
}

fn tool_call_id() -> String {
    format!("chatcmpl-tool-{}", random_hex())
}

/// JSON arguments with Python `json.dumps` spacing, as vLLM's parsers emit them.
fn tool_args(name: &str, command: &str, with_description: bool) -> String {
    if name != "Bash" {
        return "{}".to_string();
    }
    if with_description {
        format!("{{\"command\": \"{command}\", \"description\": \"List files\"}}")
    } else {
        format!("{{\"command\": \"{command}\"}}")
    }
}

/// Argument fragments: deliberately not aligned with JSON tokens.
fn arg_fragments(args: &str) -> Vec<String> {
    if args.len() <= 2 {
        return char_chunks(args, 1);
    }
    char_chunks(args, 12)
}

fn pick_tool(names: &[String], preferred: Option<&str>) -> String {
    if let Some(p) = preferred {
        return p.to_string();
    }
    if names.iter().any(|n| n == "Bash") {
        return "Bash".to_string();
    }
    names.first().cloned().unwrap_or_else(|| "Bash".to_string())
}

/// What a model without a tool parser leaves in the content.
fn raw_hermes(calls: &[(String, String)]) -> Vec<Piece> {
    let mut text = String::new();
    for (name, args) in calls {
        text.push_str(&format!(
            "<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {args}}}\n</tool_call>"
        ));
    }
    char_chunks(&text, 5)
        .into_iter()
        .map(Piece::Content)
        .collect()
}

const NO_TOOLS: &str = "No tools were provided, so I cannot call one.";

/// Builds the script for a request.
pub(crate) fn build_script(input: &ScenarioInput) -> Script {
    let mut markers = Vec::new();
    for text in input.last.texts.iter().chain(&input.last.tool_results) {
        markers.extend(parse_markers(text));
    }
    let mut script = Script {
        pieces: Vec::new(),
        ending: Ending::Finish,
        prefill: None,
        pace: Duration::ZERO,
        usage_null: false,
        http_error: None,
        http_error_once: None,
    };
    let mut scenario: Option<Marker> = None;
    for m in markers {
        match m.name.as_str() {
            "pace" => script.pace = ms(&m.arg),
            "slow" => script.prefill = Some(ms(&m.arg)),
            _ if scenario.is_none() => scenario = Some(m),
            _ => {}
        }
    }
    let Some(scenario) = scenario else {
        if input.forced_tool.is_some() {
            script.pieces = tool_script(input, None);
            return script;
        }
        script.pieces = match input.last.tool_results.first() {
            Some(result) => {
                let head: String = result.chars().take(60).collect();
                content(&format!("Tool result received: {head}"))
            }
            None => content("Hello from mock vLLM."),
        };
        return script;
    };
    let arg = scenario.arg.as_deref();
    script.pieces = match scenario.name.as_str() {
        "text" => {
            let n: usize = arg.and_then(|a| a.parse().ok()).unwrap_or(10);
            (0..n)
                .map(|i| {
                    Piece::Content(if i == 0 {
                        "word0".to_string()
                    } else {
                        format!(" word{i}")
                    })
                })
                .collect()
        }
        "reasoning" => {
            let mut p = reasoning("Let me think about this.");
            p.extend(content("The answer is 42."));
            p
        }
        "tool" => tool_script(input, arg),
        "bash" => bash_script(input, arg.unwrap_or("ls")),
        "shell" => shell_script(input, arg.unwrap_or("ls")),
        "agent" => agent_script(input, arg.unwrap_or("")),
        "parallel_tools" => parallel_script(input),
        "hermes" => char_chunks(
            "Let me check.\n<tool_call>\n{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls\"}}\n</tool_call>",
            5,
        )
        .into_iter()
        .map(Piece::Content)
        .collect(),
        "harmony" => char_chunks(
            "<|channel|>analysis<|message|>Need to list files.<|end|><|start|>assistant<|channel|>commentary to=functions.Bash <|constrain|>json<|message|>{\"command\":\"ls\"}<|call|>",
            6,
        )
        .into_iter()
        .map(Piece::Content)
        .collect(),
        "die" => {
            script.ending = Ending::Die;
            let n: usize = arg.and_then(|a| a.parse().ok()).unwrap_or(3);
            (0..n)
                .map(|i| {
                    Piece::Content(if i == 0 {
                        "chunk0".to_string()
                    } else {
                        format!(" chunk{i}")
                    })
                })
                .collect()
        }
        "error" => {
            script.http_error = Some(arg.and_then(|a| a.parse().ok()).unwrap_or(500));
            Vec::new()
        }
        "error_once" => {
            script.http_error_once = Some(arg.and_then(|a| a.parse().ok()).unwrap_or(503));
            content("Hello from mock vLLM.")
        }
        "usage_null" => {
            script.usage_null = true;
            content("Hello from mock vLLM.")
        }
        "echo" => {
            let mut p = vec![Piece::Content("roles: ".to_string())];
            for (i, role) in input.roles.iter().enumerate() {
                p.push(Piece::Content(if i == 0 {
                    role.clone()
                } else {
                    format!(",{role}")
                }));
            }
            p
        }
        "stop" => content("alpha beta STOP gamma"),
        other => content(&format!("Unknown mock scenario: {other}")),
    };
    script
}

fn tool_script(input: &ScenarioInput, arg: Option<&str>) -> Vec<Piece> {
    if input.tool_names.is_empty() {
        return content(NO_TOOLS);
    }
    let forced = input.forced_tool.clone().flatten();
    let name = pick_tool(&input.tool_names, arg.or(forced.as_deref()));
    let args = tool_args(&name, "ls -la", true);
    call_script(input, name, args)
}

/// `bash:CMD`: a Bash call running CMD.
fn bash_script(input: &ScenarioInput, command: &str) -> Vec<Piece> {
    let args = serde_json::json!({"command": command, "description": "Run a command"});
    call_script(input, "Bash".into(), args.to_string())
}

/// `shell:CMD`: CMD in whichever shell tool the client offers, in that tool's argument schema
/// (Codex 0.171 offers `exec_command`; `fixtures/codex/tool`). Claude Code offers none of
/// Codex's, so it gets the Bash call of `bash:CMD`.
fn shell_script(input: &ScenarioInput, command: &str) -> Vec<Piece> {
    let offered = |name: &str| input.tool_names.iter().any(|n| n == name);
    let (name, args) = if offered("exec_command") {
        ("exec_command", serde_json::json!({"cmd": command}))
    } else if offered("shell_command") {
        ("shell_command", serde_json::json!({"command": command}))
    } else if offered("shell") {
        (
            "shell",
            serde_json::json!({"command": ["bash", "-lc", command]}),
        )
    } else {
        return bash_script(input, command);
    };
    call_script(input, name.into(), args.to_string())
}

/// `agent:TAG`: Claude Code's Agent tool (`Task` in older CLIs) starting an Explore subagent
/// whose prompt lists the files (and carries TAG, so a test can find its requests).
fn agent_script(input: &ScenarioInput, tag: &str) -> Vec<Piece> {
    let name = if input.tool_names.iter().any(|n| n == "Agent") {
        "Agent"
    } else {
        "Task"
    };
    let args = serde_json::json!({
        "description": "Explore the folder",
        "prompt": format!("[[mock:tool]] list the files here ({tag})"),
        "subagent_type": "Explore",
    });
    call_script(input, name.into(), args.to_string())
}

/// One call of `name` with JSON `args`, parsed or left as Hermes text as the request allows.
fn call_script(input: &ScenarioInput, name: String, args: String) -> Vec<Piece> {
    if input.tool_names.is_empty() {
        return content(NO_TOOLS);
    }
    if !input.tools_parsed {
        let mut p = content("I'll run that.\n");
        p.extend(raw_hermes(&[(name, args)]));
        return p;
    }
    let mut p = content("I'll run that.");
    p.push(Piece::ToolHeader {
        index: 0,
        id: tool_call_id(),
        name,
    });
    p.extend(
        arg_fragments(&args)
            .into_iter()
            .map(|args| Piece::ToolArgs { index: 0, args }),
    );
    p
}

fn parallel_script(input: &ScenarioInput) -> Vec<Piece> {
    if input.tool_names.is_empty() {
        return content(NO_TOOLS);
    }
    let first = pick_tool(&input.tool_names, None);
    let second = if first == "Bash" {
        "Bash".to_string()
    } else {
        input
            .tool_names
            .get(1)
            .cloned()
            .unwrap_or_else(|| first.clone())
    };
    let args0 = tool_args(&first, "ls", false);
    let args1 = tool_args(&second, "pwd", false);
    let mut p = reasoning("I need to run two commands.");
    if !input.tools_parsed {
        p.extend(raw_hermes(&[(first, args0), (second, args1)]));
        return p;
    }
    let frags0 = arg_fragments(&args0);
    let frags1 = arg_fragments(&args1);
    p.push(Piece::ToolHeader {
        index: 0,
        id: tool_call_id(),
        name: first,
    });
    let mut f0 = frags0.into_iter();
    let mut f1 = frags1.into_iter();
    if let Some(a) = f0.next() {
        p.push(Piece::ToolArgs { index: 0, args: a });
    }
    p.push(Piece::ToolHeader {
        index: 1,
        id: tool_call_id(),
        name: second,
    });
    loop {
        let a = f1.next();
        let b = f0.next();
        if a.is_none() && b.is_none() {
            break;
        }
        if let Some(args) = a {
            p.push(Piece::ToolArgs { index: 1, args });
        }
        if let Some(args) = b {
            p.push(Piece::ToolArgs { index: 0, args });
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str, tools: &[&str]) -> ScenarioInput {
        ScenarioInput {
            last: LastTurn {
                texts: vec![text.to_string()],
                tool_results: vec![],
            },
            tool_names: tools.iter().map(|s| s.to_string()).collect(),
            tools_parsed: true,
            forced_tool: None,
            roles: vec!["user".to_string()],
        }
    }

    fn text_of(pieces: &[Piece]) -> String {
        pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Content(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn markers() {
        assert_eq!(
            parse_markers("a [[mock:text:100]] b [[mock:pace:10]]"),
            vec![
                Marker {
                    name: "text".into(),
                    arg: Some("100".into())
                },
                Marker {
                    name: "pace".into(),
                    arg: Some("10".into())
                }
            ]
        );
    }

    #[test]
    fn default_and_text() {
        assert_eq!(
            text_of(&build_script(&input("hi", &[])).pieces),
            "Hello from mock vLLM."
        );
        let s = build_script(&input("[[mock:text:3]] [[mock:pace:5]]", &[]));
        assert_eq!(text_of(&s.pieces), "word0 word1 word2");
        assert_eq!(s.pace, Duration::from_millis(5));
    }

    #[test]
    fn tool_prefers_bash() {
        let s = build_script(&input("[[mock:tool]]", &["Read", "Bash"]));
        let args: String = s
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::ToolArgs { args, .. } => Some(args.as_str()),
                _ => None,
            })
            .collect();
        assert!(s
            .pieces
            .iter()
            .any(|p| matches!(p, Piece::ToolHeader { name, .. } if name == "Bash")));
        let v: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(v["command"], "ls -la");
        assert!(
            s.pieces
                .iter()
                .filter(|p| matches!(p, Piece::ToolArgs { .. }))
                .count()
                >= 3
        );
    }

    #[test]
    fn shell_uses_the_offered_shell_tool_and_its_schema() {
        let call = |tools: &[&str]| {
            let s = build_script(&input("[[mock:shell:echo hi > a.txt]] go", tools));
            let name = s.pieces.iter().find_map(|p| match p {
                Piece::ToolHeader { name, .. } => Some(name.clone()),
                _ => None,
            });
            let args: String = s
                .pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::ToolArgs { args, .. } => Some(args.as_str()),
                    _ => None,
                })
                .collect();
            (name.unwrap(), serde_json::from_str::<Value>(&args).unwrap())
        };
        let codex = ["exec_command", "write_stdin", "view_image"];
        assert_eq!(
            call(&codex),
            (
                "exec_command".into(),
                serde_json::json!({"cmd": "echo hi > a.txt"})
            )
        );
        assert_eq!(
            call(&["shell_command"]),
            (
                "shell_command".into(),
                serde_json::json!({"command": "echo hi > a.txt"})
            )
        );
        assert_eq!(
            call(&["view_image", "shell"]),
            (
                "shell".into(),
                serde_json::json!({"command": ["bash", "-lc", "echo hi > a.txt"]})
            )
        );
        let (name, args) = call(&["Read", "Bash"]);
        assert_eq!(
            (name.as_str(), &args["command"]),
            ("Bash", &Value::from("echo hi > a.txt"))
        );
        // No tools offered: no call, as for every tool marker.
        let s = build_script(&input("[[mock:shell:ls]]", &[]));
        assert_eq!(text_of(&s.pieces), NO_TOOLS);
        // Without a tool parser the call is left as Hermes text, as vLLM would.
        let mut raw = input("[[mock:shell:ls]]", &codex);
        raw.tools_parsed = false;
        let text = text_of(&build_script(&raw).pieces);
        assert!(
            text.contains("<tool_call>") && text.contains("\"exec_command\""),
            "{text}"
        );
    }

    #[test]
    fn tool_result_reply() {
        let mut i = input("", &[]);
        i.last = LastTurn {
            texts: vec![],
            tool_results: vec!["total 0\ndrwxr-xr-x".to_string()],
        };
        assert_eq!(
            text_of(&build_script(&i).pieces),
            "Tool result received: total 0\ndrwxr-xr-x"
        );
    }

    #[test]
    fn last_turn_openai_tool() {
        let msgs = vec![
            serde_json::json!({"role": "user", "content": "[[mock:tool]]"}),
            serde_json::json!({"role": "assistant", "content": null}),
            serde_json::json!({"role": "tool", "tool_call_id": "x", "content": "out"}),
        ];
        let t = last_turn_openai(&msgs);
        assert!(t.texts.is_empty());
        assert_eq!(t.tool_results, vec!["out".to_string()]);
    }
}
