"""The real Claude Code CLI (`@anthropic-ai/claude-code`, native binary from npm) through
switchyard-proxy to the mock vLLM, non-interactively (`claude -p … --output-format json`).

Every test runs with the CLI pinned in `e2e/clients/package.json` and with the newest release
npm serves (installed by `.ci/run` into `target/claude-latest`, or `CLAUDE_LATEST_BIN`), and
against both backend protocols (Chat Completions and vLLM's native `/v1/messages`)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, mock_stats, start_mock, start_proxy

CLIS = {
    "pinned": REPO / "e2e" / "clients" / "node_modules" / ".bin" / "claude",
    "latest": Path(
        os.environ.get(
            "CLAUDE_LATEST_BIN",
            REPO / "target" / "claude-latest" / "node_modules" / ".bin" / "claude",
        )
    ),
}


@pytest.fixture(params=sorted(CLIS))
def claude(request):
    path = CLIS[request.param]
    if not path.exists():
        pytest.fail(f"{path} missing: .ci/run installs both Claude Code CLIs")
    return path


def run_claude(claude, proxy, tmp_path, prompt, *extra, files=None, env_extra=None):
    """Runs `claude -p` with the prompt on standard input (a long prompt exceeds argv limits)."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    (work / "a.txt").write_text("alpha\n")
    for name, text in (files or {}).items():
        (work / name).write_text(text)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": proxy.url,
        "ANTHROPIC_AUTH_TOKEN": "test-token-not-secret",
        # Keep the CLI on loopback: no telemetry, error reports or update checks.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CI": "true",
        **(env_extra or {}),
    }
    return subprocess.run(
        [str(claude), "-p", "--output-format", "json", *extra],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        input=prompt,
    )


def ok_result(proc):
    assert proc.returncode == 0, f"stdout={proc.stdout[-3000:]}\nstderr={proc.stderr[-3000:]}"
    result = json.loads(proc.stdout)
    assert result["is_error"] is False, result
    return result


def requests_with(mock_url, tag):
    """(body, headers) of the model requests the mock recorded that carry `tag`."""
    stats = mock_stats(mock_url)
    return [
        (b, h["headers"])
        for b, h in zip(stats["bodies"], stats["headers"])
        if isinstance(b, dict) and "messages" in b and tag in json.dumps(b)
    ]


def test_plain_text_answer(claude, cc_proxy, mock_vllm, tmp_path):
    result = ok_result(run_claude(claude, cc_proxy, tmp_path, "say hello"))
    assert result["result"] == "Hello from mock vLLM."
    assert result["usage"]["input_tokens"] > 0


def test_bash_tool_loop(claude, cc_proxy, mock_vllm, tmp_path):
    tag = f"loop-{tmp_path.name}"
    proc = run_claude(claude, cc_proxy, tmp_path, f"[[mock:tool]] list the files here ({tag})", "--allowedTools", "Bash")
    result = ok_result(proc)
    assert result["stop_reason"] == "end_turn"
    # The mock answers a tool result with its first characters: Bash really ran `ls -la`.
    assert result["result"].startswith("Tool result received: "), result["result"]
    assert "total" in result["result"] or "a.txt" in result["result"], result["result"]
    bodies = [b for b, _ in requests_with(mock_vllm, tag)]
    assert len(bodies) >= 2, "the tool call and the tool result turn"
    if cc_proxy.protocol == "openai":
        assert any(any(m.get("role") == "tool" for m in b["messages"]) for b in bodies), "no tool result reached the backend"
        for b in bodies:
            roles = [m["role"] for m in b["messages"]]
            assert "system" not in roles[1:], f"non-leading system message sent: {roles}"
    else:
        assert any(
            any(isinstance(m["content"], list) and any(c.get("type") == "tool_result" for c in m["content"]) for m in b["messages"])
            for b in bodies
        ), "no tool result reached the backend"
    for b in bodies:
        assert "x-anthropic-billing-header" not in json.dumps(b)


def test_reasoning_answer(claude, cc_proxy, tmp_path):
    result = ok_result(run_claude(claude, cc_proxy, tmp_path, "[[mock:reasoning]] think first"))
    assert result["result"] == "The answer is 42."


def tool_names(body):
    return {t.get("name") or t.get("function", {}).get("name") for t in body.get("tools", [])}


def has_tool_result(body):
    for m in body["messages"]:
        if m.get("role") == "tool":
            return True
        if isinstance(m.get("content"), list) and any(c.get("type") == "tool_result" for c in m["content"]):
            return True
    return False


def test_subagent_call(claude, cc_proxy, mock_vllm, tmp_path):
    """The main model calls the Agent tool; the CLI runs an Explore subagent (its own model
    calls, with its own tool set and the prompt the main model gave it), whose Bash call
    runs and comes back to it. (Newer CLIs run it in the background and report to the main
    conversation when it is done.)"""
    tag = f"agent-{tmp_path.name}"
    proc = run_claude(claude, cc_proxy, tmp_path, f"[[mock:agent:{tag}]] explore this folder", "--allowedTools", "Bash,Agent,Task")
    ok_result(proc)
    prompt = f"list the files here ({tag})"
    sub = [b for b, _ in requests_with(mock_vllm, prompt) if "Agent" not in tool_names(b) and "Task" not in tool_names(b)]
    assert sub, "no request came from the subagent"
    assert any(has_tool_result(b) for b in sub), "the subagent's Bash result never reached the model"


def test_prompt_too_long_is_reported_with_real_size(claude, cc_proxy, tmp_path):
    # ~40k tokens of prompt against a 32k window: the proxy answers with the wording Claude
    # Code parses, and the CLI shows its own "Prompt is too long" message.
    proc = run_claude(claude, cc_proxy, tmp_path, "x " * 80_000)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "too long" in out.lower(), out[-2000:]


def tag_session(line, proc):
    """Whether an access line belongs to the CLI run whose JSON result is in `proc`."""
    return f'session_id="{json.loads(proc.stdout)["session_id"]}"' in line


@pytest.fixture(params=["openai", "anthropic"])
def small_window(request):
    """A mock whose window is a little above Claude Code's first request, and its proxy."""
    mock = start_mock("--max-model-len", os.environ.get("SWITCHYARD_COMPACT_WINDOW", "24000"))
    proxy = start_proxy(mock.url + "/v1", "--upstream-protocol", request.param)
    proxy.protocol = request.param
    yield mock, proxy
    proxy.stop()
    mock.stop()


def test_compaction_when_the_conversation_outgrows_the_window(claude, small_window, tmp_path):
    """A tool result fills the window: the next turn gets `prompt is too long`, the CLI
    compacts the conversation and carries on to an answer."""
    mock, proxy = small_window
    tag = f"compact-{tmp_path.name}"
    # Each file is ~25 KB (~7k tokens; the CLI keeps 30,000 characters of a Bash output)
    # and starts with the marker that makes the model read the next one.
    lines = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(450))
    files = {f"part{n}.txt": f"[[mock:bash:cat part{n + 1}.txt]] {tag}\n{lines}" for n in range(1, 4)}
    files["part4.txt"] = f"the end {tag}\n{lines}"
    proc = run_claude(
        claude, proxy, tmp_path, f"[[mock:bash:cat part1.txt]] read the parts ({tag})", "--allowedTools", "Bash",
        files=files,
    )
    result = ok_result(proc)
    statuses = [
        line.split(" status=")[1].split()[0]
        for line in proxy.lines
        if "request completed" in line and tag_session(line, proc)
    ]
    assert "400" in statuses, f"the conversation never outgrew the window: {statuses}"
    after = statuses[statuses.index("400") + 1 :]
    # The CLI compacted (a summary request) and carried on (more turns; it may outgrow the
    # window and compact again), ending on a served turn.
    assert after.count("200") >= 2 and after[-1] == "200", statuses
    summaries = [b for b, _ in requests_with(mock.url, "") if "Respond with TEXT ONLY" in json.dumps(b)]
    assert summaries, "no compaction request reached the backend"
    assert result["result"], result
