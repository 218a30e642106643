"""The official `anthropic` Python SDK through switchyard-proxy to the mock vLLM."""

import concurrent.futures
import json
import urllib.error
import urllib.request

import anthropic
import pytest

from conftest import mock_stats

MODEL = "claude-opus-5-5"
BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
        "required": ["command"],
    },
}
READ = {"name": "Read", "description": None, "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}


@pytest.fixture(scope="module")
def client(proxy):
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-test-not-a-real-key", max_retries=0, timeout=30)


def user(text):
    return [{"role": "user", "content": text}]


def test_non_streaming_text(client):
    msg = client.messages.create(model=MODEL, max_tokens=128000, messages=user("hi"))
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == MODEL
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Hello from mock vLLM."
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


def test_streaming_helper_text_and_final_message(client):
    with client.messages.stream(model=MODEL, max_tokens=64000, messages=user("[[mock:text:50]]")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == " ".join(f"word{i}" for i in range(50))
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 50


def test_streaming_tool_use_has_parsed_input(client):
    with client.messages.stream(model=MODEL, max_tokens=1024, tools=[BASH, READ], messages=user("[[mock:tool]]")) as stream:
        final = stream.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"]
    assert len(tool) == 1
    assert tool[0].name == "Bash"
    assert tool[0].input == {"command": "ls -la", "description": "List files"}
    assert tool[0].id
    assert final.stop_reason == "tool_use"


def test_raw_event_sequence_for_reasoning_then_text(client, mock_vllm):
    events = list(
        client.messages.create(
            model=MODEL, max_tokens=1024, stream=True, thinking={"type": "enabled", "budget_tokens": 2048}, messages=user("[[mock:reasoning]]")
        )
    )
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    starts = [e for e in events if e.type == "content_block_start"]
    assert [(s.index, s.content_block.type) for s in starts] == [(0, "thinking"), (1, "text")]
    thinking = "".join(e.delta.thinking for e in events if e.type == "content_block_delta" and e.delta.type == "thinking_delta")
    assert thinking == "Let me think about this."
    # Thinking was requested, so the Qwen-style template switch went out on.
    sent = mock_stats(mock_vllm)["bodies"][-1]
    assert sent["chat_template_kwargs"]["enable_thinking"] is True


def test_parallel_tool_calls(client):
    final = client.messages.create(model=MODEL, max_tokens=1024, tools=[BASH, READ], messages=user("[[mock:parallel_tools]]"))
    names = [b.name for b in final.content if b.type == "tool_use"]
    assert len(names) == 2
    assert final.stop_reason == "tool_use"
    for b in final.content:
        if b.type == "tool_use":
            assert isinstance(b.input, dict)


@pytest.mark.parametrize("scenario", ["hermes", "harmony"])
def test_tool_calls_left_in_text_are_recovered(client, scenario):
    with client.messages.stream(model=MODEL, max_tokens=1024, tools=[BASH], messages=user(f"[[mock:{scenario}]]")) as stream:
        final = stream.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"]
    assert [(t.name, t.input) for t in tool] == [("Bash", {"command": "ls"})]
    assert final.stop_reason == "tool_use"
    assert not any("<tool_call>" in b.text or "<|" in b.text for b in final.content if b.type == "text")


def test_prompt_too_long_is_the_error_claude_code_compacts_on(client):
    huge = "x " * 150_000
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=MODEL, max_tokens=32000, messages=user(huge))
    assert err.value.status_code == 400
    body = err.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("prompt is too long: ")
    assert body["error"]["message"].endswith(" tokens > 32768 maximum")


def test_count_tokens_survives_25_concurrent_calls(client):
    def count(i):
        return client.messages.count_tokens(model=MODEL, messages=user(f"count me {i} " * 50), tools=[BASH]).input_tokens

    with concurrent.futures.ThreadPoolExecutor(25) as pool:
        counts = list(pool.map(count, range(25)))
    assert all(c > 50 for c in counts), counts
    # Exact counts from the backend's /tokenize: longer prompts count more.
    assert count(10) > count(1) - 5


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "qwen3-coder" in ids


def test_malformed_json_is_an_anthropic_400(proxy):
    req = urllib.request.Request(proxy.url + "/v1/messages", data=b"{not json", headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    body = json.load(err.value)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


def test_schema_violation_names_the_field(client):
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "wizard", "content": "hi"}])
    assert "messages[0].role" in err.value.body["error"]["message"]


def test_backend_death_mid_stream_raises_in_the_client(client):
    with pytest.raises(anthropic.APIError) as err:
        with client.messages.stream(model=MODEL, max_tokens=1024, messages=user("[[mock:die:5]]")) as stream:
            for _ in stream.text_stream:
                pass
    assert "stream ended before completion" in str(err.value)


def test_bearer_auth_is_accepted_and_not_forwarded(proxy, mock_vllm):
    bearer = anthropic.Anthropic(base_url=proxy.url, auth_token="secret-bearer-token", max_retries=0)
    msg = bearer.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
    assert msg.content[0].text == "Hello from mock vLLM."
    headers = mock_stats(mock_vllm)["headers"][-1]
    assert "secret-bearer-token" not in json.dumps(headers)
