// Starts the real mock-vllm and switchyard-proxy binaries on loopback for the
// Node client suites (the JS twin of ../python/conftest.py).
//
// Usage from a test file:
//
//   const stack = await startStack();   // in before()
//   ...stack.proxyUrl, stack.mockStats(), stack.metrics()...
//   await stack.stop();                 // in after()
//
// Every wait here is bounded, so a hung binary fails the run instead of
// stalling CI.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN_DIR = process.env.SWITCHYARD_BIN_DIR || path.join(REPO, 'target', 'debug');

/** How long a binary may take to print its "listening" line. */
const STARTUP_TIMEOUT_MS = 30_000;
/** How long a child gets to exit after SIGTERM before it is SIGKILLed. */
const STOP_TIMEOUT_MS = 10_000;
/** Output lines kept per child, for failure messages. */
const KEEP_LINES = 200;

/** Children still running, killed on process exit if a suite forgets to stop them. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export function binary(name) {
  const file = path.join(BIN_DIR, name);
  if (!existsSync(file)) {
    throw new Error(`${file} not built: run \`cargo build --workspace --bins\` first`);
  }
  return file;
}

/**
 * A child process whose stdout and stderr are read line by line (both must be
 * drained continuously, or a chatty child blocks on a full pipe).
 */
class Child {
  constructor(file, args, env) {
    this.name = path.basename(file);
    this.lines = [];
    this.listeners = new Set();
    this.proc = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.proc);
    // Settles once the child is gone: on exit, or when it could not be spawned.
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => resolve(`exited (code ${code}, signal ${signal})`));
      this.proc.once('error', (err) => resolve(`failed: ${err.message}`));
    }).then((why) => {
      live.delete(this.proc);
      this.gone = true;
      return why;
    });
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        this.lines.push(line);
        if (this.lines.length > KEEP_LINES) this.lines.shift();
        for (const listener of this.listeners) listener(line);
      });
    }
  }

  /** Resolves with the first match of `regex` in the child's output. */
  waitFor(regex, timeoutMs = STARTUP_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.listeners.delete(onLine);
        fn(value);
      };
      const fail = (why) => settle(reject, new Error(`${this.name} ${why}:\n${this.lines.join('\n')}`));
      const onLine = (line) => {
        const m = regex.exec(line);
        if (m) settle(resolve, m);
      };
      const timer = setTimeout(() => fail(`did not print ${regex} within ${timeoutMs} ms`), timeoutMs);
      this.listeners.add(onLine);
      this.lines.forEach(onLine);
      this.exited.then((why) => fail(`${why} before printing ${regex}`));
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_MS. */
  async stop() {
    if (this.gone) return;
    this.proc.kill('SIGTERM');
    let timer;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
    });
    if (await Promise.race([this.exited.then(() => false), timedOut])) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
    clearTimeout(timer);
  }
}

/** GET `url` with a bounded wait; returns the Response (throws on non-2xx). */
async function get(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res;
}

/**
 * Starts mock-vllm (context window 32768) and switchyard-proxy in front of it.
 * Returns URLs plus helpers for the mock's stats and the proxy's metrics.
 *
 * `config(mockUrl)`, when given, returns the proxy's YAML config (written to a
 * temporary file and passed as `--config` instead of `--upstream`); `proxyArgs`
 * are added to the proxy's command line.
 */
export async function startStack({ config, proxyArgs = [] } = {}) {
  const children = [];
  const stop = async () => {
    // Proxy first, so it does not log upstream errors about a vanished mock.
    await Promise.all(children.reverse().map((c) => c.stop()));
  };
  try {
    const mock = new Child(
      binary('mock-vllm'),
      ['--listen', '127.0.0.1:0', '--max-model-len', '32768'],
      process.env,
    );
    children.push(mock);
    const [, mockUrl] = await mock.waitFor(/mock-vllm listening on (http:\/\/\S+)/);

    let source = ['--upstream', `${mockUrl}/v1`];
    if (config) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'switchyard-node-'));
      const file = path.join(dir, 'proxy.yaml');
      writeFileSync(file, config(mockUrl));
      source = ['--config', file];
    }
    const proxy = new Child(
      binary('switchyard-proxy'),
      [
        ...source,
        '--listen', '127.0.0.1:0',
        '--admin-listen', '127.0.0.1:0',
        ...proxyArgs,
      ],
      // Logs go to a pipe, so they carry no ANSI colours; `info` is the level
      // that prints the listening line.
      { ...process.env, SWITCHYARD_LOG: 'info' },
    );
    children.push(proxy);
    const [, api, admin] = await proxy.waitFor(/listening api=(\S+) admin=(\S+)/);

    const stack = {
      mockUrl,
      proxyUrl: `http://${api}`,
      adminUrl: `http://${admin}`,
      /** `{requests, cancelled, completed, bodies, headers, ...}` of the mock. */
      mockStats: async () => (await get(`${mockUrl}/mock/stats`)).json(),
      /** The proxy's Prometheus text. */
      metrics: async () => (await get(`http://${admin}/metrics`)).text(),
      /** Recent output of both children, for assertion messages. */
      logs: () => [...mock.lines, ...proxy.lines].join('\n'),
      stop,
    };
    await get(`${stack.adminUrl}/healthz`);
    return stack;
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Value of an unlabelled Prometheus sample, or 0 when it is absent. */
export function metricValue(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

/** Polls `predicate` (sync or async) every 50 ms until true or `timeoutMs` passes. */
export async function waitUntil(predicate, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return Boolean(await predicate());
}
