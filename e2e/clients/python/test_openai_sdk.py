"""The official `openai` Python SDK through switchyard-proxy's OpenAI front doors
(`/v1/chat/completions`, `/v1/responses`, `/v1/models`) to the mock vLLM.

The proxy turns each request into the Messages request its other paths handle and the answer
back into OpenAI's shape; the SDK's own types, stream parsers and stream helpers check that
shape here. Tests that read "the last body the mock received" rely on pytest running them one
after another."""

import hashlib
import json

import openai
import pytest

from conftest import mock_stats, start_proxy_with

# An OpenAI client's own model name: `--upstream` routes every name to the one backend.
MODEL = "gpt-5.5"
SERVED = "qwen3-coder"
BASH = {
    "type": "function",
    "function": {
        "name": "Bash",
        "description": "Run a shell command",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
            "required": ["command"],
        },
    },
}
# The same tool in the Responses API's flat shape.
BASH_RESPONSES = {"type": "function", "name": "Bash", "description": "Run a shell command", "parameters": BASH["function"]["parameters"]}
# What the mock's `[[mock:tool]]` calls Bash with.
LS_ARGS = {"command": "ls -la", "description": "List files"}


def words(n):
    return " ".join(f"word{i}" for i in range(n))


def user(text):
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def client(proxy):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test-not-a-real-key", max_retries=0, timeout=30)


# ---------------------------------------------------------------------------------------------
# Chat Completions
# ---------------------------------------------------------------------------------------------


def test_chat_non_streaming_text(client):
    c = client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert c.object == "chat.completion"
    assert c.id
    assert c.model == MODEL, "the requested model name is echoed, not the served one"
    assert len(c.choices) == 1
    choice = c.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello from mock vLLM."
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    assert c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


def test_chat_streaming_text_and_final_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=user("[[mock:text:30]]"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert len({ch.id for ch in chunks}) == 1, "every chunk of a stream carries the same id"
    assert all(ch.model == MODEL for ch in chunks)
    with_choices = [ch for ch in chunks if ch.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in with_choices)
    assert text == words(30)
    assert sum(1 for ch in with_choices if ch.choices[0].delta.content) > 1, "a real stream, not one chunk"
    finishes = [ch.choices[0].finish_reason for ch in with_choices if ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    # include_usage: one last chunk with `choices: []` and the usage; none before it.
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 30
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + 30
    assert all(ch.usage is None for ch in chunks[:-1])


def test_chat_streaming_without_include_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=user("[[mock:text:5]]"), stream=True))
    assert all(ch.choices for ch in chunks), "no `choices: []` chunk unless include_usage asked for it"
    assert all(ch.usage is None for ch in chunks)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == words(5)


def test_chat_stream_helper_accumulates_the_completion(client):
    with client.chat.completions.stream(model=MODEL, messages=user("[[mock:text:12]]")) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == words(12)
    assert final.choices[0].message.content == words(12)
    assert final.choices[0].finish_reason == "stop"


def test_chat_tool_call_then_tool_result(client, mock_vllm):
    messages = user("[[mock:tool]] list the files")
    c = client.chat.completions.create(model=MODEL, messages=messages, tools=[BASH])
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].id
    assert calls[0].function.name == "Bash"
    assert json.loads(calls[0].function.arguments) == LS_ARGS

    # The client runs the tool and sends its result back as a `tool` message.
    messages = messages + [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "file1.txt\nfile2.txt"},
    ]
    c = client.chat.completions.create(model=MODEL, messages=messages, tools=[BASH])
    assert c.choices[0].finish_reason == "stop"
    assert c.choices[0].message.content == "Tool result received: file1.txt\nfile2.txt"
    # The backend got the call and its result as Chat Completions messages.
    sent = mock_stats(mock_vllm)["bodies"][-1]
    assert [m["role"] for m in sent["messages"]][-2:] == ["assistant", "tool"]
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "Bash"
    assert sent["messages"][-1]["tool_call_id"] == sent["messages"][-2]["tool_calls"][0]["id"]


def test_chat_streamed_tool_call_arrives_in_fragments(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=user("[[mock:tool]]"), tools=[BASH], stream=True))
    deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert deltas, "no tool_calls deltas"
    assert {d.index for d in deltas} == {0}
    first = deltas[0]
    assert first.id and first.type == "function" and first.function.name == "Bash"
    assert all(d.id is None or d.id == first.id for d in deltas[1:])
    args = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(args) == LS_ARGS
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["tool_calls"]

    # The SDK's stream helper assembles the same call.
    with client.chat.completions.stream(model=MODEL, messages=user("[[mock:tool]]"), tools=[BASH]) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "Bash" and json.loads(call.function.arguments) == LS_ARGS


def test_chat_prompt_too_long_is_context_length_exceeded(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, max_tokens=1000, messages=user("x " * 150_000))
    assert err.value.status_code == 400
    assert err.value.code == "context_length_exceeded"
    assert err.value.type == "invalid_request_error"
    assert err.value.body["message"].startswith("prompt is too long: ")
    assert err.value.body["message"].endswith(" tokens > 32768 maximum")


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def test_models_list_is_openai_shaped(client):
    page = client.models.list()
    assert page.object == "list"
    models = list(page)
    assert SERVED in [m.id for m in models], [m.id for m in models]
    for m in models:
        assert m.object == "model"
        assert isinstance(m.created, int)
        assert isinstance(m.owned_by, str) and m.owned_by


# ---------------------------------------------------------------------------------------------
# Errors: a proxy with named routes and client keys
# ---------------------------------------------------------------------------------------------

GOOD_KEY = "sk-openai-client-good"


@pytest.fixture(scope="module")
def keyed_proxy(mock_vllm, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("keyed") / "switchyard.yaml"
    cfg.write_text(
        "backends:\n"
        f"  - name: vllm\n    baseUrl: '{mock_vllm}/v1'\n"
        "routes:\n"
        f"  - name: main\n    models: ['{MODEL}', 'gpt-5-*']\n    backend: vllm\n"
        "keys:\n"
        f"  - name: openai-client\n    sha256: {hashlib.sha256(GOOD_KEY.encode()).hexdigest()}\n"
    )
    p = start_proxy_with("--config", str(cfg))
    yield p
    p.stop()


def keyed_client(proxy, key):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_the_good_key_is_served(keyed_proxy):
    c = keyed_client(keyed_proxy, GOOD_KEY).chat.completions.create(model=MODEL, messages=user("hi"))
    assert c.choices[0].message.content == "Hello from mock vLLM."


def test_unknown_model_is_not_found(keyed_proxy):
    client = keyed_client(keyed_proxy, GOOD_KEY)
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=user("hi"))
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"
    assert "no-such-model" in err.value.body["message"], err.value.body
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="no-such-model", input="hi")
    assert err.value.status_code == 404
    assert "no-such-model" in err.value.body["message"], err.value.body


def test_bad_key_is_an_authentication_error(keyed_proxy):
    client = keyed_client(keyed_proxy, "sk-wrong-key")
    for call in (
        lambda: client.chat.completions.create(model=MODEL, messages=user("hi")),
        lambda: client.responses.create(model=MODEL, input="hi"),
    ):
        with pytest.raises(openai.AuthenticationError) as err:
            call()
        assert err.value.status_code == 401
        assert err.value.body["message"] == "invalid API key", err.value.body
        assert "sk-wrong-key" not in json.dumps(err.value.body)


# ---------------------------------------------------------------------------------------------
# Responses API
# ---------------------------------------------------------------------------------------------


def test_responses_non_streaming_text(client):
    r = client.responses.create(model=MODEL, input="hi")
    assert r.object == "response"
    assert r.id
    assert r.status == "completed"
    assert r.model == MODEL
    messages = [o for o in r.output if o.type == "message"]
    assert len(messages) == 1 and messages[0].role == "assistant"
    assert [c.type for c in messages[0].content] == ["output_text"]
    assert r.output_text == "Hello from mock vLLM."
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_responses_instructions_and_message_input(client, mock_vllm):
    r = client.responses.create(
        model=MODEL,
        instructions="You are terse.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "[[mock:echo]]"}]}],
    )
    assert r.output_text == "roles: system,user"
    sent = mock_stats(mock_vllm)["bodies"][-1]
    assert "You are terse." in json.dumps(sent["messages"][0])


def test_responses_streaming_events(client):
    events = list(client.responses.create(model=MODEL, input="[[mock:text:20]]", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created", types
    assert types[-1] == "response.completed", types
    assert "response.failed" not in types and "error" not in types
    seq = [e.sequence_number for e in events]
    assert seq == sorted(seq) and len(set(seq)) == len(seq), seq
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == words(20)
    assert [e.text for e in events if e.type == "response.output_text.done"] == [words(20)]
    # Codex takes output items only from `response.output_item.done` (fixtures/codex/README.md).
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.type for i in done] == ["message"]
    assert done[0].content[0].text == words(20)
    added = [e for e in events if e.type == "response.output_item.added"]
    assert len(added) == 1 and added[0].item.id == done[0].id
    completed = events[-1].response
    assert completed.status == "completed"
    assert completed.output_text == words(20)
    assert completed.usage.output_tokens == 20 and completed.usage.input_tokens > 0
    assert events[0].response.status == "in_progress"
    assert events[0].response.id == completed.id


def test_responses_stream_helper_accumulates_the_response(client):
    with client.responses.stream(model=MODEL, input="[[mock:text:8]]") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == words(8)
    assert final.output_text == words(8)


def function_calls(output):
    return [o for o in output if o.type == "function_call"]


def test_responses_function_call_round_trip(client, mock_vllm):
    first_input = [{"role": "user", "content": "[[mock:tool]] list the files"}]
    r = client.responses.create(model=MODEL, input=first_input, tools=[BASH_RESPONSES])
    calls = function_calls(r.output)
    assert len(calls) == 1
    assert calls[0].name == "Bash"
    assert calls[0].call_id
    assert json.loads(calls[0].arguments) == LS_ARGS

    # As Codex does (store: false, no previous_response_id): the whole conversation again,
    # the model's output items, then the call's output.
    follow = first_input + [o.model_dump(exclude_none=True) for o in r.output] + [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "file1.txt\nfile2.txt"}
    ]
    r2 = client.responses.create(model=MODEL, input=follow, tools=[BASH_RESPONSES], store=False)
    assert r2.status == "completed"
    assert not function_calls(r2.output)
    assert r2.output_text == "Tool result received: file1.txt\nfile2.txt"
    sent = mock_stats(mock_vllm)["bodies"][-1]
    assert [m["role"] for m in sent["messages"]][-2:] == ["assistant", "tool"]
    assert "file1.txt\\nfile2.txt" in json.dumps(sent["messages"][-1]), sent["messages"][-1]


def test_responses_streamed_function_call(client):
    events = list(client.responses.create(model=MODEL, input="[[mock:tool]]", tools=[BASH_RESPONSES], stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    done = [e.item for e in events if e.type == "response.output_item.done"]
    calls = function_calls(done)
    assert len(calls) == 1, [i.type for i in done]
    assert calls[0].name == "Bash" and json.loads(calls[0].arguments) == LS_ARGS
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == LS_ARGS
    assert [json.loads(e.arguments) for e in events if e.type == "response.function_call_arguments.done"] == [LS_ARGS]
    assert function_calls(events[-1].response.output)[0].call_id == calls[0].call_id


def test_responses_prompt_too_long_is_context_length_exceeded(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, max_output_tokens=1000, input="x " * 150_000)
    assert err.value.status_code == 400
    assert err.value.code == "context_length_exceeded"
    assert err.value.body["message"].startswith("prompt is too long: ")
