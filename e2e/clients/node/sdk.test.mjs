// The official @anthropic-ai/sdk (TypeScript/JS) through switchyard-proxy to
// the mock vLLM: the JS twin of ../python/test_sdk.py.
//
// Run: cd /work/main && SWITCHYARD_BIN_DIR="$PWD/target/debug" node --test e2e/clients/node/
//
// Tests in this file run one after another (node:test's default), which the
// mock-stats assertions rely on: "the last body the mock received" and
// "cancelled went up" only mean something when no other request is in flight.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';

import { metricValue, startStack, waitUntil } from './harness.mjs';

const MODEL = 'claude-opus-5-5';
const BASH = {
  name: 'Bash',
  description: 'Run a shell command',
  input_schema: {
    type: 'object',
    properties: { command: { type: 'string' }, description: { type: 'string' } },
    required: ['command'],
  },
};
const READ = {
  name: 'Read',
  input_schema: { type: 'object', properties: { file_path: { type: 'string' } } },
};
/** Per-test ceiling, so one hung stream cannot stall the run. */
const T = { timeout: 30_000 };

let stack;
let client;

before(async () => {
  stack = await startStack();
  // An explicit `timeout` also skips the SDK's client-side refusal of large
  // non-streaming `max_tokens` ("streaming is strongly recommended").
  client = new Anthropic({
    baseURL: stack.proxyUrl,
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
const textOf = (message) =>
  message.content.filter((b) => b.type === 'text').map((b) => b.text).join('');

test('non-streaming messages.create returns an Anthropic text message', T, async () => {
  const msg = await client.messages.create({ model: MODEL, max_tokens: 128000, messages: user('hi') });
  assert.equal(msg.type, 'message');
  assert.equal(msg.role, 'assistant');
  assert.equal(msg.model, MODEL, 'the requested model name is echoed, not the served one');
  assert.match(msg.id, /^msg_/);
  assert.deepEqual(msg.content.map((b) => b.type), ['text']);
  assert.equal(msg.content[0].text, 'Hello from mock vLLM.');
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(typeof msg.usage.input_tokens, 'number');
  assert.equal(typeof msg.usage.output_tokens, 'number');
  assert.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0, JSON.stringify(msg.usage));
});

test('messages.stream: text events add up to the final message', T, async () => {
  const stream = client.messages.stream({ model: MODEL, max_tokens: 64000, messages: user('[[mock:text:40]]') });
  let text = '';
  let deltas = 0;
  let lastSnapshot = '';
  stream.on('text', (delta, snapshot) => {
    text += delta;
    deltas += 1;
    lastSnapshot = snapshot;
  });
  const final = await stream.finalMessage();

  assert.equal(text, words(40));
  assert.ok(deltas > 1, `the text arrived in ${deltas} delta(s), expected a real stream`);
  assert.equal(lastSnapshot, text);
  assert.deepEqual(final.content.map((b) => b.type), ['text']);
  assert.equal(final.content[0].text, text);
  assert.equal(await stream.finalText(), text);
  assert.equal(final.model, MODEL);
  assert.equal(final.stop_reason, 'end_turn');
  assert.equal(final.usage.output_tokens, 40);
  assert.ok(final.usage.input_tokens > 0);
});

test('messages.stream: tool use arrives as a parsed tool_use block', T, async () => {
  const stream = client.messages.stream({
    model: MODEL,
    max_tokens: 1024,
    tools: [BASH, READ],
    messages: user('[[mock:tool]]'),
  });
  let partialJson = '';
  let lastInputSnapshot;
  const blocks = [];
  stream.on('inputJson', (partial, snapshot) => {
    partialJson += partial;
    lastInputSnapshot = snapshot;
  });
  stream.on('contentBlock', (block) => blocks.push(block));
  const final = await stream.finalMessage();

  const expected = { command: 'ls -la', description: 'List files' };
  const tools = final.content.filter((b) => b.type === 'tool_use');
  assert.equal(tools.length, 1, JSON.stringify(final.content));
  assert.equal(tools[0].name, 'Bash');
  assert.deepEqual(tools[0].input, expected);
  assert.ok(tools[0].id, 'tool_use has an id');
  assert.equal(final.stop_reason, 'tool_use');
  assert.equal(textOf(final), "I'll run that.");

  // The input_json_delta fragments reassemble to the same object.
  assert.deepEqual(JSON.parse(partialJson), expected);
  assert.deepEqual(lastInputSnapshot, expected);
  // One contentBlock event per finished block, in order, matching the final message.
  assert.deepEqual(blocks.map((b) => b.type), ['text', 'tool_use']);
  assert.deepEqual(blocks, final.content);
});

test('raw stream events: thinking block, then text block, in Anthropic order', T, async () => {
  const stream = await client.messages.create({
    model: MODEL,
    max_tokens: 1024,
    stream: true,
    thinking: { type: 'enabled', budget_tokens: 512 },
    messages: user('[[mock:reasoning]]'),
  });
  const events = [];
  for await (const event of stream) events.push(event);

  // Collapse runs of deltas to one `delta` entry per block to compare the shape.
  const shape = [];
  for (const e of events) {
    let entry = e.type;
    if (e.type === 'content_block_start') entry = `start ${e.index} ${e.content_block.type}`;
    if (e.type === 'content_block_delta') entry = `delta ${e.index} ${e.delta.type}`;
    if (e.type === 'content_block_stop') entry = `stop ${e.index}`;
    if (shape.at(-1) !== entry) shape.push(entry);
  }
  assert.deepEqual(shape, [
    'message_start',
    'start 0 thinking',
    'delta 0 thinking_delta',
    'stop 0',
    'start 1 text',
    'delta 1 text_delta',
    'stop 1',
    'message_delta',
    'message_stop',
  ]);

  const deltas = events.filter((e) => e.type === 'content_block_delta');
  const thinking = deltas.filter((e) => e.delta.type === 'thinking_delta').map((e) => e.delta.thinking);
  const text = deltas.filter((e) => e.delta.type === 'text_delta').map((e) => e.delta.text);
  assert.equal(thinking.join(''), 'Let me think about this.');
  assert.equal(text.join(''), 'The answer is 42.');

  const [start] = events;
  assert.equal(start.message.model, MODEL);
  assert.deepEqual(start.message.content, []);
  const messageDelta = events.at(-2);
  assert.equal(messageDelta.delta.stop_reason, 'end_turn');
  assert.ok(messageDelta.usage.output_tokens > 0);

  // Thinking was requested, so the Qwen-style template switch went out on.
  const sent = (await stack.mockStats()).bodies.at(-1);
  assert.equal(sent.chat_template_kwargs?.enable_thinking, true, JSON.stringify(sent));
});

test('parallel tool calls with interleaved argument fragments', T, async () => {
  const final = await client.messages.create({
    model: MODEL,
    max_tokens: 1024,
    tools: [BASH, READ],
    messages: user('[[mock:parallel_tools]]'),
  });
  const tools = final.content.filter((b) => b.type === 'tool_use');
  assert.deepEqual(
    tools.map((t) => [t.name, t.input]),
    [
      ['Bash', { command: 'ls' }],
      ['Bash', { command: 'pwd' }],
    ],
  );
  assert.notEqual(tools[0].id, tools[1].id, 'each tool_use has its own id');
  assert.equal(final.stop_reason, 'tool_use');
});

for (const scenario of ['hermes', 'harmony']) {
  test(`${scenario} tool calls left in the text are recovered`, T, async () => {
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 1024,
      tools: [BASH],
      messages: user(`[[mock:${scenario}]]`),
    });
    let streamedText = '';
    stream.on('text', (delta) => {
      streamedText += delta;
    });
    const final = await stream.finalMessage();

    const tools = final.content.filter((b) => b.type === 'tool_use');
    assert.deepEqual(tools.map((t) => [t.name, t.input]), [['Bash', { command: 'ls' }]]);
    assert.equal(final.stop_reason, 'tool_use');
    // No raw tool-call markup may leak, neither in the final message nor mid-stream.
    for (const text of [textOf(final), streamedText]) {
      assert.ok(!text.includes('<tool_call>') && !text.includes('<|'), JSON.stringify(text));
    }
  });
}

test('prompt too long is the 400 Claude Code compacts on', T, async () => {
  const huge = 'x '.repeat(150_000); // ~300 KB, far beyond the 32768-token window
  await assert.rejects(
    client.messages.create({ model: MODEL, max_tokens: 32000, messages: user(huge) }),
    (err) => {
      assert.ok(err instanceof Anthropic.BadRequestError, `got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, 400);
      assert.equal(err.error.type, 'error');
      assert.equal(err.error.error.type, 'invalid_request_error');
      assert.match(err.error.error.message, /^prompt is too long: \d+ tokens > 32768 maximum$/);
      assert.ok(Number(err.error.error.message.match(/(\d+) tokens/)[1]) > 32768);
      return true;
    },
  );
});

test('messages.countTokens works and survives 25 concurrent calls', T, async () => {
  const count = async (text) =>
    (await client.messages.countTokens({ model: MODEL, messages: user(text), tools: [BASH] })).input_tokens;

  const short = await count('count me '.repeat(50));
  const long = await count('count me '.repeat(100));
  assert.ok(short > 50, `short prompt counted ${short}`);
  assert.ok(long > short, `longer prompt must count more: ${long} <= ${short}`);

  const counts = await Promise.all(
    Array.from({ length: 25 }, (_, i) => count(`count me ${i} `.repeat(50))),
  );
  assert.equal(counts.length, 25);
  for (const c of counts) assert.ok(Number.isInteger(c) && c > 50, JSON.stringify(counts));
});

test('models.list shows the served model', T, async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.ok(ids.includes('qwen3-coder'), JSON.stringify(ids));
});

test('malformed JSON is an Anthropic-shaped 400', T, async () => {
  const res = await fetch(`${stack.proxyUrl}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{not json',
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 400);
  const body = await res.json();
  assert.equal(body.type, 'error');
  assert.equal(body.error.type, 'invalid_request_error');
});

test('a schema violation names the offending field', T, async () => {
  await assert.rejects(
    client.messages.create({ model: MODEL, max_tokens: 10, messages: [{ role: 'wizard', content: 'hi' }] }),
    (err) => {
      assert.ok(err instanceof Anthropic.BadRequestError, `got ${err?.constructor?.name}: ${err}`);
      assert.match(err.error.error.message, /messages\[0\]\.role/);
      return true;
    },
  );
});

test('backend dying mid-stream rejects the SDK stream', T, async () => {
  const stream = client.messages.stream({ model: MODEL, max_tokens: 1024, messages: user('[[mock:die:5]]') });
  let text = '';
  stream.on('text', (delta) => {
    text += delta;
  });
  await assert.rejects(stream.finalMessage(), (err) => {
    // The proxy turns the cut into an SSE `error` event; the SDK raises it as
    // an APIError without a status, carrying the event body as the message.
    assert.ok(err instanceof Anthropic.APIError, `got ${err?.constructor?.name}: ${err}`);
    assert.match(err.message, /stream ended before completion/);
    return true;
  });
  // What arrived before the cut was delivered, and nothing was invented after it.
  assert.equal(text, 'chunk0 chunk1 chunk2 chunk3 chunk4');
});

test('client abort mid-stream cancels the upstream request', T, async () => {
  const before = await stack.mockStats();
  const disconnectsBefore = metricValue(await stack.metrics(), 'switchyard_client_disconnects_total');

  // 2000 words 20 ms apart: ~40 s if nobody cancels it.
  const stream = client.messages.stream({
    model: MODEL,
    max_tokens: 4096,
    messages: user('[[mock:slow:0]] [[mock:text:2000]] [[mock:pace:20]]'),
  });
  // Subscribe to the outcome before aborting, so the rejection is handled.
  const done = stream.done();
  let text = '';
  stream.on('text', (delta) => {
    text += delta;
    if (!stream.aborted) stream.abort();
  });
  await assert.rejects(done, Anthropic.APIUserAbortError);
  assert.ok(stream.aborted);
  assert.ok(text.startsWith('word0'), JSON.stringify(text));
  assert.ok(text.length < words(2000).length, 'the stream was cut short');

  // The proxy notices the closed connection and drops its upstream stream.
  let stats = before;
  const cancelled = await waitUntil(async () => {
    stats = await stack.mockStats();
    return stats.cancelled > before.cancelled;
  }, 5_000);
  assert.ok(cancelled, `mock cancelled stayed at ${stats.cancelled}:\n${stack.logs()}`);
  assert.equal(stats.completed, before.completed, 'the aborted stream did not run to completion');
  assert.equal(stats.requests, before.requests + 1);
  const disconnectsAfter = metricValue(await stack.metrics(), 'switchyard_client_disconnects_total');
  assert.equal(disconnectsAfter, disconnectsBefore + 1);
});

test('Bearer auth is accepted and not forwarded upstream', T, async () => {
  const bearer = new Anthropic({
    baseURL: stack.proxyUrl,
    apiKey: null,
    authToken: 'secret-bearer-token',
    maxRetries: 0,
    timeout: 30_000,
  });
  const msg = await bearer.messages.create({ model: MODEL, max_tokens: 10, messages: user('hi') });
  assert.equal(msg.content[0].text, 'Hello from mock vLLM.');
  const { headers } = await stack.mockStats();
  const last = headers.at(-1);
  assert.equal(last.path, '/v1/chat/completions');
  assert.ok(!JSON.stringify(last).includes('secret-bearer-token'), JSON.stringify(last));
});
