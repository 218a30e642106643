"""Starts the real mock-vllm and switchyard-proxy binaries on loopback for the client suites."""

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("SWITCHYARD_BIN_DIR", REPO / "target" / "debug"))


class Process:
    """A child process whose output is collected line by line in a thread."""

    def __init__(self, args, pattern, env=None):
        self.lines = []
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._match = None
        self._ready = threading.Event()
        regex = re.compile(pattern)

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if not self._ready.is_set():
                    m = regex.search(line)
                    if m:
                        self._match = m
                        self._ready.set()
            self._ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not self._ready.wait(30) or self._match is None:
            self.stop()
            raise RuntimeError(f"{args[0]} did not start:\n" + "\n".join(self.lines))

    def group(self, n):
        return self._match.group(n)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def binary(name):
    path = BIN_DIR / name
    if not path.exists():
        raise RuntimeError(f"{path} not built: run `cargo build --workspace --bins` first")
    return str(path)


@pytest.fixture(scope="session")
def mock_vllm():
    p = Process(
        [binary("mock-vllm"), "--listen", "127.0.0.1:0", "--max-model-len", "32768"],
        r"mock-vllm listening on (http://\S+)",
    )
    yield p.group(1)
    p.stop()


@pytest.fixture(scope="session")
def proxy(mock_vllm):
    env = dict(os.environ, SWITCHYARD_LOG="info")
    p = Process(
        [
            binary("switchyard-proxy"),
            "--upstream", mock_vllm + "/v1",
            "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
        ],
        r"listening api=(\S+) admin=(\S+)",
        env=env,
    )
    p.url = "http://" + p.group(1)
    p.admin_url = "http://" + p.group(2)
    yield p
    p.stop()


def start_proxy(upstream, *extra):
    """The real proxy binary in front of `upstream` (a mock's base URL with /v1)."""
    return start_proxy_with("--upstream", upstream, *extra)


def start_proxy_with(*args):
    """The real proxy binary with `args` (`--upstream URL` or `--config FILE`, and more)."""
    env = dict(os.environ, SWITCHYARD_LOG="info")
    p = Process(
        [
            binary("switchyard-proxy"),
            *args,
            "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
        ],
        r"listening api=(\S+) admin=(\S+)",
        env=env,
    )
    p.url = "http://" + p.group(1)
    p.admin_url = "http://" + p.group(2)
    return p


def start_mock(*extra):
    p = Process(
        [binary("mock-vllm"), "--listen", "127.0.0.1:0", *extra],
        r"mock-vllm listening on (http://\S+)",
    )
    p.url = p.group(1)
    return p


@pytest.fixture(scope="session", params=["openai", "anthropic"])
def cc_proxy(request, mock_vllm):
    """The proxy in both backend protocols: Chat Completions, and vLLM's native /v1/messages."""
    p = start_proxy(mock_vllm + "/v1", "--upstream-protocol", request.param)
    p.protocol = request.param
    yield p
    p.stop()


def mock_stats(mock_url):
    with urllib.request.urlopen(mock_url + "/mock/stats", timeout=5) as r:
        return json.load(r)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
