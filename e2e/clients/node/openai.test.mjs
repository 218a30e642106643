// The official `openai` Node SDK through switchyard-proxy's OpenAI front doors
// (/v1/chat/completions, /v1/responses, /v1/models) to the mock vLLM: the JS
// twin of ../python/test_openai_sdk.py.
//
// Run: cd /work/main && SWITCHYARD_BIN_DIR="$PWD/target/debug" node --test e2e/clients/node/openai.test.mjs
//
// Tests in this file run one after another (node:test's default), which the
// mock-stats assertions rely on ("the last body the mock received").

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import OpenAI from 'openai';

import { metricValue, startStack, waitUntil } from './harness.mjs';

// An OpenAI client's own model name: `--upstream` routes every name to the one backend.
const MODEL = 'gpt-5.5';
const PARAMETERS = {
  type: 'object',
  properties: { command: { type: 'string' }, description: { type: 'string' } },
  required: ['command'],
};
const BASH = { type: 'function', function: { name: 'Bash', description: 'Run a shell command', parameters: PARAMETERS } };
// The same tool in the Responses API's flat shape.
const BASH_RESPONSES = { type: 'function', name: 'Bash', description: 'Run a shell command', parameters: PARAMETERS };
// What the mock's `[[mock:tool]]` calls Bash with.
const LS_ARGS = { command: 'ls -la', description: 'List files' };
/** Per-test ceiling, so one hung stream cannot stall the run. */
const T = { timeout: 30_000 };

let stack;
let client;

before(async () => {
  stack = await startStack();
  client = new OpenAI({
    baseURL: `${stack.proxyUrl}/v1`,
    apiKey: 'sk-test-not-a-real-key',
    maxRetries: 0,
    timeout: 30_000,
  });
});

after(async () => {
  await stack?.stop();
});

const user = (text) => [{ role: 'user', content: text }];
const words = (n) => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');
/** The text of a Responses API response's message items. */
const outputText = (response) =>
  response.output
    .filter((item) => item.type === 'message')
    .flatMap((item) => item.content)
    .filter((part) => part.type === 'output_text')
    .map((part) => part.text)
    .join('');

test('chat.completions.create (non-streaming) returns a chat.completion', T, async () => {
  const c = await client.chat.completions.create({ model: MODEL, messages: user('hi') });
  assert.equal(c.object, 'chat.completion');
  assert.ok(c.id);
  assert.equal(c.model, MODEL, 'the requested model name is echoed, not the served one');
  assert.equal(c.choices.length, 1);
  const [choice] = c.choices;
  assert.equal(choice.message.role, 'assistant');
  assert.equal(choice.message.content, 'Hello from mock vLLM.');
  assert.equal(choice.finish_reason, 'stop');
  assert.ok(c.usage.prompt_tokens > 0 && c.usage.completion_tokens > 0, JSON.stringify(c.usage));
  assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
});

test('chat stream: deltas add up to the reply, then one usage chunk', T, async () => {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: user('[[mock:text:40]]'),
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);

  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one id for the whole stream');
  const withChoices = chunks.filter((c) => c.choices.length > 0);
  assert.equal(withChoices[0].choices[0].delta.role, 'assistant');
  const text = withChoices.map((c) => c.choices[0].delta.content ?? '').join('');
  assert.equal(text, words(40));
  assert.ok(withChoices.filter((c) => c.choices[0].delta.content).length > 1, 'a real stream');
  assert.deepEqual(
    withChoices.map((c) => c.choices[0].finish_reason).filter(Boolean),
    ['stop'],
  );
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 40);
  assert.ok(last.usage.prompt_tokens > 0);
  assert.ok(chunks.slice(0, -1).every((c) => c.usage == null), 'usage only in the last chunk');
});

test('chat.completions.stream helper: content events and the final completion', T, async () => {
  const stream = client.chat.completions.stream({ model: MODEL, messages: user('[[mock:text:12]]') });
  let text = '';
  stream.on('content', (delta) => {
    text += delta;
  });
  const final = await stream.finalChatCompletion();
  assert.equal(text, words(12));
  assert.equal(final.choices[0].message.content, words(12));
  assert.equal(final.choices[0].finish_reason, 'stop');
  assert.equal(await stream.finalContent(), words(12));
});

test('chat tools: a tool call, then the tool result answered', T, async () => {
  const messages = user('[[mock:tool]] list the files');
  const c = await client.chat.completions.create({ model: MODEL, messages, tools: [BASH] });
  const [choice] = c.choices;
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.tool_calls.length, 1, JSON.stringify(choice.message));
  const [call] = choice.message.tool_calls;
  assert.equal(call.type, 'function');
  assert.ok(call.id);
  assert.equal(call.function.name, 'Bash');
  assert.deepEqual(JSON.parse(call.function.arguments), LS_ARGS);

  const next = await client.chat.completions.create({
    model: MODEL,
    tools: [BASH],
    messages: [
      ...messages,
      choice.message,
      { role: 'tool', tool_call_id: call.id, content: 'file1.txt\nfile2.txt' },
    ],
  });
  assert.equal(next.choices[0].finish_reason, 'stop');
  assert.equal(next.choices[0].message.content, 'Tool result received: file1.txt\nfile2.txt');
  const sent = (await stack.mockStats()).bodies.at(-1);
  assert.deepEqual(sent.messages.slice(-2).map((m) => m.role), ['assistant', 'tool']);
});

test('chat tools streamed: argument fragments assemble to the call', T, async () => {
  const stream = client.chat.completions.stream({ model: MODEL, messages: user('[[mock:tool]]'), tools: [BASH] });
  const done = [];
  stream.on('tool_calls.function.arguments.done', (e) => done.push(e));
  const final = await stream.finalChatCompletion();
  const [call] = final.choices[0].message.tool_calls;
  assert.equal(call.function.name, 'Bash');
  assert.deepEqual(JSON.parse(call.function.arguments), LS_ARGS);
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(done.map((e) => [e.name, JSON.parse(e.arguments)]), [['Bash', LS_ARGS]]);
});

test('responses stream: created … completed, output_text equal to the reply', T, async () => {
  const stream = await client.responses.create({ model: MODEL, input: '[[mock:text:20]]', stream: true });
  const events = [];
  for await (const event of stream) events.push(event);
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'response.created', JSON.stringify(types));
  assert.equal(types.at(-1), 'response.completed', JSON.stringify(types));
  assert.ok(!types.includes('response.failed') && !types.includes('error'), JSON.stringify(types));
  const seq = events.map((e) => e.sequence_number);
  assert.ok(seq.every((n, i) => Number.isInteger(n) && (i === 0 || n > seq[i - 1])), JSON.stringify(seq));
  const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta);
  assert.ok(deltas.length > 1);
  assert.equal(deltas.join(''), words(20));
  // Codex takes output items only from response.output_item.done (fixtures/codex/README.md).
  const items = events.filter((e) => e.type === 'response.output_item.done').map((e) => e.item);
  assert.deepEqual(items.map((i) => i.type), ['message']);
  assert.equal(items[0].content[0].text, words(20));
  const completed = events.at(-1).response;
  assert.equal(completed.status, 'completed');
  // (The SDK adds `output_text` to whole responses, not to the ones inside events.)
  assert.equal(outputText(completed), words(20));
  assert.equal(completed.usage.output_tokens, 20);
  assert.ok(completed.usage.input_tokens > 0);

  // The SDK's stream helper accumulates the same response.
  const helper = client.responses.stream({ model: MODEL, input: '[[mock:text:8]]' });
  let text = '';
  helper.on('response.output_text.delta', (e) => {
    text += e.delta;
  });
  const final = await helper.finalResponse();
  assert.equal(text, words(8));
  assert.equal(final.output_text, words(8));
});

test('responses function call (streamed), then its function_call_output', T, async () => {
  const input = [{ role: 'user', content: '[[mock:tool]] list the files' }];
  const stream = await client.responses.create({ model: MODEL, input, tools: [BASH_RESPONSES], stream: true });
  const events = [];
  for await (const event of stream) events.push(event);
  const items = events.filter((e) => e.type === 'response.output_item.done').map((e) => e.item);
  const calls = items.filter((i) => i.type === 'function_call');
  assert.equal(calls.length, 1, JSON.stringify(items));
  assert.equal(calls[0].name, 'Bash');
  assert.ok(calls[0].call_id);
  assert.deepEqual(JSON.parse(calls[0].arguments), LS_ARGS);
  const args = events.filter((e) => e.type === 'response.function_call_arguments.delta').map((e) => e.delta);
  assert.deepEqual(JSON.parse(args.join('')), LS_ARGS);
  const completed = events.at(-1).response;

  // As Codex does: no previous_response_id, the whole conversation again.
  const next = await client.responses.create({
    model: MODEL,
    tools: [BASH_RESPONSES],
    store: false,
    input: [
      ...input,
      ...completed.output,
      { type: 'function_call_output', call_id: calls[0].call_id, output: 'file1.txt\nfile2.txt' },
    ],
  });
  assert.equal(next.status, 'completed');
  assert.equal(next.output_text, 'Tool result received: file1.txt\nfile2.txt');
});

test('models.list is OpenAI-shaped', T, async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
    assert.equal(typeof m.owned_by, 'string');
    ids.push(m.id);
  }
  assert.ok(ids.includes('qwen3-coder'), JSON.stringify(ids));
});

test('prompt too long is 400 context_length_exceeded', T, async () => {
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, max_tokens: 1000, messages: user('x '.repeat(150_000)) }),
    (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, 400);
      assert.equal(err.code, 'context_length_exceeded');
      assert.match(err.error.message, /^prompt is too long: \d+ tokens > 32768 maximum$/);
      return true;
    },
  );
});

test('client abort mid-stream cancels the upstream request', T, async () => {
  const before = await stack.mockStats();
  const disconnectsBefore = metricValue(await stack.metrics(), 'switchyard_client_disconnects_total');

  // 2000 words 20 ms apart: ~40 s if nobody cancels it.
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: user('[[mock:slow:0]] [[mock:text:2000]] [[mock:pace:20]]'),
    stream: true,
  });
  let text = '';
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (text) break; // leaving the loop aborts the request
  }
  assert.ok(text.startsWith('word0'), JSON.stringify(text));

  let stats = before;
  const cancelled = await waitUntil(async () => {
    stats = await stack.mockStats();
    return stats.cancelled > before.cancelled;
  }, 5_000);
  assert.ok(cancelled, `mock cancelled stayed at ${stats.cancelled}:\n${stack.logs()}`);
  assert.equal(stats.completed, before.completed, 'the aborted stream did not run to completion');
  const disconnectsAfter = metricValue(await stack.metrics(), 'switchyard_client_disconnects_total');
  assert.equal(disconnectsAfter, disconnectsBefore + 1);
});
