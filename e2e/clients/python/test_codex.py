"""The real Codex CLI (`@openai/codex`, native binary from npm) through switchyard-proxy's
Responses API door (`POST /v1/responses`) to the mock vLLM, non-interactively
(`codex exec --json`).

Every test runs with the CLI pinned in `e2e/clients/package.json` and with the newest release
npm serves (installed by `.ci/run` into `target/codex-latest`, or `CODEX_LATEST_BIN`), and
against both backend protocols (Chat Completions and vLLM's native `/v1/messages`).

Codex is pointed at the proxy by its config file (`$CODEX_HOME/config.toml`): a custom model
provider with `wire_api = "responses"`, its key from `env_key`. What Codex sends that way is
recorded in `fixtures/codex/` (`switchyard_shell` is this file's setup). Off, so that a run
touches nothing but loopback and does not wait on the outside (`fixtures/codex/README.md`):
- `[analytics] enabled = false`: otherwise Codex waits ~5 s at exit to send analytics;
- `[features] plugins = false`: otherwise it runs `git ls-remote` on GitHub's plugin
  marketplace and looks up `api.github.com` at startup;
- `check_for_update_on_startup`, `[feedback]`, `[otel]`: off as in the recordings.
Retries are off too (`request_max_retries`, `stream_max_retries`: 0): Codex reconnects 5
times on a 404 or a broken stream, which would hide a proxy bug behind 6 s of retries."""

import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO, mock_stats, wait_until

CLIS = {
    "pinned": REPO / "e2e" / "clients" / "node_modules" / ".bin" / "codex",
    "latest": Path(
        os.environ.get(
            "CODEX_LATEST_BIN",
            REPO / "target" / "codex-latest" / "node_modules" / ".bin" / "codex",
        )
    ),
}
KEY = "sk-codex-test-key-not-secret"
# A model Codex does not know (fallback metadata: a `namespace` tool, `reasoning.summary`), and
# one from its bundled catalog (a freeform `custom` apply_patch tool with a Lark grammar,
# `tool_search`, `reasoning.effort`, `text.verbosity`). `--upstream` routes both to the mock.
MODELS = ["qwen3-coder", "gpt-5.5"]

CONFIG = """\
model = "{model}"
model_provider = "switchyard"
check_for_update_on_startup = false

[model_providers.switchyard]
name = "Switchyard"
base_url = "{base_url}"
env_key = "SWITCHYARD_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 60000

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[features]
plugins = false
"""


@pytest.fixture(params=sorted(CLIS))
def codex(request):
    path = CLIS[request.param]
    if not path.exists():
        pytest.fail(f"{path} missing: .ci/run installs both Codex CLIs")
    return path


class Run:
    """One `codex exec --json` run: its process, JSONL events, work folder and duration."""

    def __init__(self, proc, work, seconds, proxy, seen):
        self.proc = proc
        self.work = work
        self.seconds = seconds
        self._proxy = proxy
        self._seen = seen
        self.events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    @property
    def proxy_lines(self):
        """The proxy's output since this run started."""
        return self._proxy.lines[self._seen :]

    def why(self):
        return f"rc={self.proc.returncode}\nstdout={self.proc.stdout[-4000:]}\nstderr={self.proc.stderr[-3000:]}"

    def items(self, kind):
        """Completed items of `kind` (`agent_message`, `command_execution`, ...)."""
        return [e["item"] for e in self.events if e.get("type") == "item.completed" and e["item"].get("type") == kind]

    def ok(self):
        if self.proc.returncode != 0:
            pytest.fail(f"codex exec failed\n{self.why()}")
        types = [e.get("type") for e in self.events]
        assert "turn.completed" in types, self.why()
        # Top-level `error` events are stream errors (e.g. "Reconnecting..."); the unknown
        # model's "Model metadata ... not found" warning is an `item` of type error instead.
        assert "turn.failed" not in types and "error" not in types, self.why()
        # Nothing outside loopback was waited for (telemetry, update checks, plugin sync).
        assert self.seconds < 30, f"codex exec took {self.seconds:.1f} s\n{self.why()}"
        return self

    def final_text(self):
        messages = self.items("agent_message")
        assert messages, self.why()
        return messages[-1]["text"]


def run_codex(codex, proxy, tmp_path, prompt, model=MODELS[0]):
    home = tmp_path / "home"
    codex_home = home / ".codex"
    work = tmp_path / "work"
    codex_home.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    (work / "hello.txt").write_text("hello\n")
    (codex_home / "config.toml").write_text(CONFIG.format(model=model, base_url=proxy.url + "/v1"))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "SWITCHYARD_API_KEY": KEY,
    }
    seen = len(proxy.lines)
    started = time.monotonic()
    proc = subprocess.run(
        # The private network namespace is the sandbox (see .ci/run), so Codex's own is off;
        # no approvals: nobody is there to answer them.
        [str(codex), "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", prompt],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return Run(proc, work, seconds=time.monotonic() - started, proxy=proxy, seen=seen)


def access_lines(run, expected):
    """The proxy's access lines for this run, once `expected` of them are there (the last
    one may be written just after Codex exits)."""
    wait_until(lambda: len([line for line in run.proxy_lines if "request completed" in line]) >= expected)
    return [line for line in run.proxy_lines if "request completed" in line]


def field(line, name):
    m = re.search(rf"\b{name}=(\"[^\"]*\"|\S+)", line)
    return m.group(1).strip('"') if m else None


def requests_with(mock_url, tag):
    """(body, headers) of the model requests the mock recorded that carry `tag`."""
    stats = mock_stats(mock_url)
    return [
        (b, h["headers"])
        for b, h in zip(stats["bodies"], stats["headers"])
        if isinstance(b, dict) and "messages" in b and tag in json.dumps(b)
    ]


def tool_result_texts(body):
    """Texts of the tool results in a backend request (either protocol)."""
    out = []
    for m in body["messages"]:
        if m.get("role") == "tool":
            out.append(json.dumps(m.get("content")))
        elif isinstance(m.get("content"), list):
            out += [json.dumps(c.get("content")) for c in m["content"] if c.get("type") == "tool_result"]
    return out


def test_plain_text_answer(codex, cc_proxy, mock_vllm, tmp_path):
    tag = uuid.uuid4().hex[:12]
    run = run_codex(codex, cc_proxy, tmp_path, f"say hello ({tag})").ok()
    assert run.final_text() == "Hello from mock vLLM."
    # The proxy's usage reaches Codex (its auto-compaction counts on it).
    usage = next(e["usage"] for e in run.events if e.get("type") == "turn.completed")
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0, usage
    assert len(requests_with(mock_vllm, tag)) == 1
    lines = access_lines(run, 1)
    assert [field(line, "status") for line in lines] == ["200"], "\n".join(run.proxy_lines)


@pytest.mark.parametrize("model", MODELS)
def test_shell_tool_loop(codex, cc_proxy, mock_vllm, tmp_path, model):
    """The model calls Codex's shell tool (`[[mock:shell:CMD]]`: `exec_command` in Codex
    0.171); Codex runs the command, sends its output back as a `function_call_output`, and
    the mock answers the tool result with text, which ends the turn."""
    tag = uuid.uuid4().hex[:12]
    command = f"echo codex-was-here-{tag} > proof.txt && echo token-{tag}"
    run = run_codex(codex, cc_proxy, tmp_path, f"[[mock:shell:{command}]] run it ({tag})", model=model).ok()

    # Codex really ran the command the model asked for.
    assert (run.work / "proof.txt").read_text() == f"codex-was-here-{tag}\n", run.why()
    executions = run.items("command_execution")
    assert len(executions) == 1, run.why()
    assert executions[0]["exit_code"] == 0
    assert f"token-{tag}" in executions[0]["aggregated_output"]
    assert run.final_text().startswith("Tool result received: "), run.why()

    # Two model calls went through the proxy, both served: the call, then its result.
    lines = access_lines(run, 2)
    assert [field(line, "status") for line in lines] == ["200", "200"], "\n".join(run.proxy_lines)
    assert all(field(line, "model") == model and field(line, "api") == "responses" for line in lines), lines
    bodies = [b for b, _ in requests_with(mock_vllm, tag)]
    assert len(bodies) == 2, [json.dumps(b)[:300] for b in bodies]
    results = tool_result_texts(bodies[-1])
    assert any(f"token-{tag}" in r for r in results), f"the command's output never reached the backend: {results}"
    assert not tool_result_texts(bodies[0])
    # The client's key stays with the proxy.
    for _, headers in requests_with(mock_vllm, tag):
        assert KEY not in json.dumps(headers)


def test_proxy_metrics_count_codex_requests(codex, proxy, tmp_path):
    """The admin listener's request counter moves with Codex's model calls."""

    def served():
        with urllib.request.urlopen(proxy.admin_url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("switchyard_requests_total{") and 'status="200"' in line
        )

    before = served()
    tag = uuid.uuid4().hex[:12]
    run_codex(codex, proxy, tmp_path, f"[[mock:shell:echo token-{tag}]] run it ({tag})").ok()
    assert wait_until(lambda: served() >= before + 2), (before, served())
    assert served() == before + 2
