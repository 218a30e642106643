// The request view (`/ui` on the admin listener) in real headless Chromium (Debian's
// `chromium`, driven by playwright-core): the page asks for the admin key, then shows
// requests live as they finish — one whose max_tokens the context clamp lowered, one whose
// tool call was recovered from text, one plain — each after failing over from a dead
// backend, with the right route, backend, status, attempts and fixes; the usage table adds
// them up; a row opens its details with what the client sent, the body that went upstream
// after translation and the answer (content capture on: `server.logContent`); a slow stream
// shows in progress until it ends. Set UI_SCREENSHOT=FILE to keep a screenshot of the page
// (the README's).
//
// Run: cd /work/main && SWITCHYARD_BIN_DIR="$PWD/target/debug" node --test e2e/clients/node/ui.test.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startStack } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ADMIN_KEY = 'adm-ui-test-key';

let stack;
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium (.ci/run does)`);
  stack = await startStack({
    // The route tries a backend that refuses connections first, then falls back to the mock.
    config: (mockUrl) => `server: {logContent: true}
backends:
  - name: dead
    baseUrl: 'http://127.0.0.1:9/v1'
    servedModel: qwen3-coder
    contextWindow: 32768
  - name: vllm
    baseUrl: '${mockUrl}/v1'
routes:
  - name: code
    models: ['claude-*']
    backend: dead
    fallbacks: [vllm]
`,
    proxyArgs: ['--admin-key', ADMIN_KEY],
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

/** Sends a Messages request through the proxy; returns its request id. */
async function ask(body) {
  const res = await fetch(`${stack.proxyUrl}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude-sonnet-4-5', ...body }),
    signal: AbortSignal.timeout(20_000),
  });
  assert.equal(res.status, 200, await res.clone().text());
  await res.text();
  return res.headers.get('request-id');
}

/** Each row `selector` matches, as its named cells' texts by column name. */
async function tableRows(page, selector) {
  return page.$$eval(selector, (trs) => trs.map((tr) => Object.fromEntries(
    [...tr.querySelectorAll('td[data-col]')].map((td) => [td.dataset.col, td.textContent]))));
}

/** The cells of the row of `id`, by column name. */
async function row(page, id) {
  return page.$eval(`tr[data-id="${id}"]`, (tr) => {
    const out = {};
    for (const td of tr.querySelectorAll('td[data-col]')) {
      out[td.dataset.col] = td.dataset.col === 'fixes'
        ? [...td.querySelectorAll('.fix')].map((s) => s.textContent)
        : td.textContent;
    }
    return out;
  });
}

test('the live table shows each request with its route, backend, attempts and fixes', async () => {
  const page = await browser.newPage({ viewport: { width: 1600, height: 760 } });
  page.setDefaultTimeout(15_000);
  await page.goto(`${stack.adminUrl}/ui`);

  // Locked until the key is given; a wrong one is refused.
  await page.waitForSelector('#login.show');
  await page.fill('#key', 'wrong-key');
  await page.click('#login button');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.includes('refused'));
  await page.fill('#key', ADMIN_KEY);
  await page.click('#login button');
  await page.waitForFunction(() => document.querySelector('#live').textContent === 'live');
  assert.equal(await page.$$eval('tr.row', (r) => r.length), 0);

  const clamped = await ask({ max_tokens: 64000, messages: [{ role: 'user', content: 'hi' }] });
  const recovered = await ask({
    max_tokens: 300,
    stream: true,
    tools: [{ name: 'Bash', description: 'Run a command',
      input_schema: { type: 'object', properties: { command: { type: 'string' } } } }],
    messages: [{ role: 'user', content: '[[mock:hermes]]' }],
  });
  const plain = await ask({ max_tokens: 20, messages: [{ role: 'user', content: 'hello' }] });

  // Arrived live, newest on top, without a reload.
  await page.waitForFunction(() => document.querySelectorAll('tr.row').length === 3);
  const order = await page.$$eval('tr.row', (rows) => rows.map((r) => r.dataset.id));
  assert.deepEqual(order, [plain, recovered, clamped]);

  for (const id of [clamped, recovered, plain]) {
    const r = await row(page, id);
    assert.equal(r.model, 'claude-sonnet-4-5');
    assert.equal(r.route, 'code');
    assert.equal(r.backend, 'vllm');
    assert.equal(r.status, '200');
    assert.equal(r.attempts, '2', `failed over from the dead backend: ${JSON.stringify(r)}`);
    assert.ok(Number(r.in) > 0 && Number(r.out) > 0, JSON.stringify(r));
  }
  assert.deepEqual((await row(page, clamped)).fixes, ['context_clamp']);
  assert.deepEqual((await row(page, recovered)).fixes, ['text_tool_calls']);
  assert.equal((await row(page, recovered)).stop, 'tool_use');
  assert.deepEqual((await row(page, plain)).fixes, []);

  // The usage table adds them up: one model, route, backend and key, three requests whose
  // tokens are the rows' sums.
  await page.waitForFunction(() => {
    const c = document.querySelector('#usage-table tr.usage-row td[data-col="requests"]');
    return c && c.textContent === '3';
  });
  const usageRows = await tableRows(page, '#usage-table tr.usage-row');
  assert.equal(usageRows.length, 1, JSON.stringify(usageRows));
  let inSum = 0;
  let outSum = 0;
  for (const id of [clamped, recovered, plain]) {
    const r = await row(page, id);
    inSum += Number(r.in);
    outSum += Number(r.out);
  }
  assert.deepEqual(usageRows[0], {
    model: 'claude-sonnet-4-5', route: 'code', backend: 'vllm', key: 'anonymous',
    requests: '3', failed: '0', in: String(inSum), out: String(outSum),
  });

  // The backends table: the dead backend's only endpoint cooled down after its third refusal
  // (it stays in, behind the live backend) and says why; the mock's model and window.
  await page.waitForFunction(() => {
    const c = document.querySelector('tr.health-row[data-backend="dead"] td[data-col="state"]');
    return c && c.textContent === 'cooling';
  });
  const health = await tableRows(page, 'tr.health-row');
  assert.equal(health.length, 2, JSON.stringify(health));
  assert.equal(health[0].backend, 'dead');
  assert.match(health[0].why, /backend `dead` is unreachable: connection failed/);
  assert.deepEqual(
    { backend: health[1].backend, served: health[1].served, window: health[1].window, state: health[1].state },
    { backend: 'vllm', served: 'qwen3-coder', window: '32768', state: 'ok' },
  );
  assert.match(await page.textContent('#config'), /last change applied/);
  // The config's change history: the one load at start, applied, with its version.
  const version = (await page.textContent('#config')).match(/^config (\S+)/)[1];
  assert.deepEqual(await page.$$eval('#reload-list li', (lis) => lis.map((li) => li.textContent.split(' · ').slice(1))),
    [['applied', version]]);

  // A row opens its details: the record, then what the client sent, what went upstream
  // after translation (Chat Completions for the served model, max_tokens capped at the 32k
  // window: the mock, like vLLM ≥ 0.32, fits it to the window's rest itself) and the answer.
  await page.click(`tr[data-id="${clamped}"]`);
  await page.waitForSelector('#detail:not([hidden])');
  assert.equal(await page.textContent('#detail-id'), clamped);
  assert.match(await page.textContent('#detail-fields'), /context_clamp/);
  assert.match(await page.textContent('#detail-fields'), /max_tokens 64000 → 32768: the context window leaves no more/);
  assert.equal(await page.getAttribute(`tr[data-id="${clamped}"] .fix`, 'title'),
    "max_tokens lowered to what the model's context window leaves");
  await page.waitForFunction(() => !document.querySelector('#detail-upstream').textContent.includes('loading'));
  assert.equal(await page.isHidden('#detail-no-content'), true);
  const shown = async (part) => JSON.parse(await page.textContent(`#detail-${part}`));
  const sent = await shown('request');
  assert.deepEqual({ model: sent.model, max_tokens: sent.max_tokens, messages: sent.messages },
    { model: 'claude-sonnet-4-5', max_tokens: 64000, messages: [{ role: 'user', content: 'hi' }] });
  const upstream = await shown('upstream');
  assert.equal(upstream.model, 'qwen3-coder');
  assert.deepEqual(upstream.messages, [{ role: 'user', content: 'hi' }]);
  assert.equal(upstream.max_tokens, 32_768);
  const answer = await shown('response');
  assert.equal(answer.content[0].text, 'Hello from mock vLLM.');
  assert.equal(answer.model, 'claude-sonnet-4-5');
  // The page shows what the API holds, indented.
  const api = await (await fetch(`${stack.adminUrl}/api/requests/${clamped}`,
    { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).json();
  assert.deepEqual(upstream, JSON.parse(api.content.upstream));

  if (process.env.UI_SCREENSHOT) {
    await page.screenshot({ path: process.env.UI_SCREENSHOT, fullPage: true });
  }

  // A slow stream shows as in progress while it runs, then becomes its record in place.
  const slow = ask({ max_tokens: 50, stream: true,
    messages: [{ role: 'user', content: '[[mock:text:6]] [[mock:pace:300]]' }] });
  await page.waitForSelector('tr.row.pending');
  const pending = await page.$eval('tr.row.pending', (tr) => ({
    id: tr.dataset.id,
    status: tr.querySelector('td[data-col="status"]').textContent,
    stop: tr.querySelector('td[data-col="stop"]').textContent,
  }));
  assert.deepEqual({ status: pending.status, stop: pending.stop }, { status: '…', stop: 'streaming' });
  const slowId = await slow;
  assert.equal(pending.id, slowId);
  await page.waitForFunction((id) => {
    const tr = document.querySelector(`tr[data-id="${id}"]`);
    return tr && !tr.classList.contains('pending');
  }, slowId);
  assert.equal((await row(page, slowId)).status, '200');
  assert.equal(await page.$$eval('tr.row', (r) => r.length), 4);

  // The filter keeps the rows that mention what is typed: a fix, then nothing to match.
  const visible = () => page.$$eval('tr.row:not([hidden])', (trs) => trs.map((tr) => tr.dataset.id));
  await page.fill('#filter', 'text_tool_calls');
  assert.deepEqual(await visible(), [recovered]);
  await page.fill('#filter', '');
  assert.equal((await visible()).length, 4);
  await page.close();
});
