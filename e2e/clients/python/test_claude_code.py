"""The real Claude Code CLI (`@anthropic-ai/claude-code`, native binary from npm) through
switchyard-proxy to the mock vLLM, non-interactively (`claude -p … --output-format json`)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, mock_stats

CLAUDE = REPO / "e2e" / "clients" / "node_modules" / ".bin" / "claude"


def run_claude(proxy, tmp_path, prompt, *extra):
    """Runs `claude -p` with the prompt on standard input (a long prompt exceeds argv limits)."""
    if not CLAUDE.exists():
        pytest.fail(f"{CLAUDE} missing: run `npm ci` in e2e/clients (done by .ci/run)")
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "a.txt").write_text("alpha\n")
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
    }
    proc = subprocess.run(
        [str(CLAUDE), "-p", "--output-format", "json", *extra],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        input=prompt,
    )
    return proc


def test_claude_code_completes_a_tool_loop(proxy, mock_vllm, tmp_path):
    before = len(mock_stats(mock_vllm)["bodies"])
    proc = run_claude(proxy, tmp_path, "[[mock:tool]] list the files here", "--allowedTools", "Bash")
    assert proc.returncode == 0, f"stdout={proc.stdout}\nstderr={proc.stderr}"
    result = json.loads(proc.stdout)
    assert result["is_error"] is False, result
    assert result["stop_reason"] == "end_turn"
    # The mock answers a tool result with its first characters: Bash really ran `ls -la`.
    assert result["result"].startswith("Tool result received: "), result["result"]
    assert "total" in result["result"] or "a.txt" in result["result"], result["result"]
    bodies = mock_stats(mock_vllm)["bodies"][before:]
    chats = [b for b in bodies if "messages" in b]
    # The follow-up carried the tool result back as an OpenAI tool message.
    assert any(any(m.get("role") == "tool" for m in b["messages"]) for b in chats), "no tool result reached the backend"
    for b in chats:
        roles = [m["role"] for m in b["messages"]]
        assert "system" not in roles[1:], f"non-leading system message sent: {roles}"
        assert "x-anthropic-billing-header" not in json.dumps(b)


def test_claude_code_plain_text_answer(proxy, tmp_path):
    proc = run_claude(proxy, tmp_path, "say hello")
    assert proc.returncode == 0, f"stdout={proc.stdout}\nstderr={proc.stderr}"
    result = json.loads(proc.stdout)
    assert result["result"] == "Hello from mock vLLM."
    assert result["usage"]["input_tokens"] > 0


def test_claude_code_reports_prompt_too_long(proxy, tmp_path):
    # ~40k tokens of prompt against a 32k window: the proxy answers with the wording Claude
    # Code parses, and the CLI shows its own "Prompt is too long" message.
    proc = run_claude(proxy, tmp_path, "x " * 80_000)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "too long" in out.lower(), out[-2000:]
