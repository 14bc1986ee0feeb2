/**
 * Agent fuzzing: malformed frames (random bytes, wrong shapes, unknown ops, random args, deep and huge
 * nesting, `__proto__` keys, oversized frames, garbage handshakes) against an agent in a child app
 * while autocannon loads the app over HTTP. Prints frames sent, replies by code, closes, stalls, agent
 * crashes/internal errors and the app's served/failed requests.
 *
 * `fuzzFrame` and `runFuzz` are also used by test/agent-fuzz.test.ts (with fewer frames, no load).
 * Usage: node dist/bench/fuzz.js   (env FUZZ_FRAMES=100000, FUZZ_SEED=1)
 */
import WebSocket from 'ws';
import { ERRORS } from '../shared/errors';
import { frameText } from '../shared/messages';
import { OP_NAMES } from '../shared/ops';
import { openAuthed, openRaw, type RawClient } from '../test/helpers/raw-client';

/** Deterministic PRNG (mulberry32), so a failing seed can be replayed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomValue(r: () => number, depth = 0): unknown {
  const k = Math.floor(r() * (depth > 3 ? 5 : 8));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return [0, -1, 1e308, 2 ** 53 + 1, 0.5, -0][Math.floor(r() * 6)];
    case 3:
      return ['', 'x', 'src/rates.ts', '\u0000', 'é'.repeat(10), '../../etc/passwd', 'lp_00000000_'][Math.floor(r() * 7)];
    case 4:
      return 'y'.repeat(Math.floor(r() * 300));
    case 5:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 4); i > 0; i--)
        o[['module', 'generation', 'patch', 'files', 'code', 'to', 'limit', 'stageId', 'a'][Math.floor(r() * 9)]!] = randomValue(
          r,
          depth + 1,
        );
      return o;
    }
  }
}

/** One malformed (or occasionally valid) frame; `big` allows frames up to ~1 MB. */
export function fuzzFrame(r: () => number, id: number, big = true): string | Buffer {
  const op =
    r() < 0.8
      ? OP_NAMES[Math.floor(r() * OP_NAMES.length)]!
      : ['', 'x'.repeat(70), 'constructor', '__proto__', 'toString', 'hasOwnProperty'][Math.floor(r() * 6)]!;
  switch (Math.floor(r() * 12)) {
    case 0:
      return Buffer.from(Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256)));
    case 1:
      return Array.from({ length: Math.floor(r() * 64) }, () => String.fromCharCode(Math.floor(r() * 0xd7ff))).join('');
    case 2:
      return JSON.stringify({ type: 'request', id, op, args: randomValue(r) }).slice(0, Math.floor(r() * 40));
    case 3:
      return JSON.stringify(randomValue(r));
    case 4:
      return JSON.stringify({ type: 'request', id: randomValue(r), op, args: {} });
    case 5:
      return JSON.stringify({ type: 'request', id, op, args: randomValue(r) });
    case 6: {
      const n = Math.floor(r() * (big ? 100_000 : 5000)) + 20;
      return '['.repeat(n) + ']'.repeat(r() < 0.5 ? n : 0);
    }
    case 7:
      return `{"type":"request","id":${id},"op":"${op}","args":{"${['__proto__', 'constructor', 'prototype'][Math.floor(r() * 3)]}":{"polluted":true}}}`;
    case 8:
      return JSON.stringify({ type: 'request', id, op: 'source', args: { module: 'src/rates.ts', generation: randomValue(r) } });
    case 9:
      return JSON.stringify({ type: 'auth', protocol: 1, tokenId: '00000000', clientNonce: 'x'.repeat(20), proof: 'y'.repeat(43) });
    case 10:
      return big && r() < 0.1
        ? JSON.stringify({ type: 'request', id, op: 'status', args: { pad: 'z'.repeat(1_000_000) } })
        : JSON.stringify({ type: 'request', id, op: 'status' });
    default:
      return JSON.stringify({ type: 'request', id, op: ['status', 'describe', 'versions', 'history'][Math.floor(r() * 4)], args: {} });
  }
}

export interface FuzzStats {
  frames: number;
  replies: number;
  byCode: Record<string, number>;
  closes: Record<string, number>;
  /** Replies with a stack, an unknown code, or the agent failing to answer a sync request. */
  problems: string[];
}

/**
 * Send `frames` fuzz frames to the agent at `address` as `token`, 100 at a time, each batch followed by
 * a `describe` that must be answered. One frame in 200 goes to a fresh, unauthenticated connection.
 */
export async function runFuzz(
  address: string,
  token: string,
  frames: number,
  seed = 1,
  opts: { big?: boolean; onBatch?: (sent: number) => void } = {},
): Promise<FuzzStats> {
  const r = rng(seed);
  const stats: FuzzStats = { frames: 0, replies: 0, byCode: {}, closes: {}, problems: [] };
  const watch = (c: RawClient) => {
    c.ws.on('message', (d) => {
      let m: { type?: string; ok?: boolean; error?: { code?: string; stack?: unknown } };
      try {
        m = JSON.parse(frameText(d));
      } catch {
        stats.problems.push('unparseable message from the agent');
        return;
      }
      if (m.type !== 'reply') return;
      stats.replies++;
      const code = m.ok ? 'ok' : String(m.error?.code);
      stats.byCode[code] = (stats.byCode[code] ?? 0) + 1;
      if (!m.ok && (!(code in ERRORS) || m.error?.stack !== undefined))
        stats.problems.push(`bad error reply: ${JSON.stringify(m).slice(0, 200)}`);
    });
    void c.closed.then(({ code }) => (stats.closes[code] = (stats.closes[code] ?? 0) + 1));
  };
  let c = await openAuthed(address, token, { maxPayload: 64 * 1024 * 1024 });
  watch(c);
  for (let sent = 0; sent < frames;) {
    for (let i = 0; i < 100 && sent < frames; i++, sent++) {
      const frame = fuzzFrame(r, sent + 1, opts.big ?? true);
      stats.frames++;
      if (r() < 0.005) {
        const pre = await openRaw(address);
        pre.ws.on('error', () => {});
        pre.send(frame);
        void pre.closed.then(({ code }) => (stats.closes[`pre-auth ${code}`] = (stats.closes[`pre-auth ${code}`] ?? 0) + 1));
        continue;
      }
      if (c.ws.readyState !== WebSocket.OPEN) {
        c = await openAuthed(address, token, { maxPayload: 64 * 1024 * 1024 });
        watch(c);
      }
      c.send(frame);
    }
    if (c.ws.readyState !== WebSocket.OPEN) continue;
    const syncId = `sync-${sent}`;
    c.send(JSON.stringify({ type: 'request', id: syncId, op: 'describe' }));
    await c
      .next((m) => m.type === 'reply' && m.id === syncId, 15_000)
      .catch((e: Error) => {
        if (c.ws.readyState === WebSocket.OPEN) stats.problems.push(`no reply to ${syncId}: ${e.message.slice(0, 100)}`);
      });
    c.messages.splice(0); // the batch is accounted for in stats; keep memory flat
    opts.onBatch?.(sent);
  }
  if (c.ws.readyState === WebSocket.OPEN) {
    c.ws.close(1000);
    await Promise.race([c.closed, new Promise((r) => setTimeout(r, 3000))]);
  }
  c.close();
  return stats;
}

interface CannonResult {
  requests: { total: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}
interface CannonInstance {
  stop(): void;
}
// autocannon ships no type declarations; this is the slice of its programmatic API used here.
type Cannon = (
  opts: { url: string; connections: number; duration: number },
  done: (err: unknown, r: CannonResult) => void,
) => CannonInstance;

async function main(): Promise<void> {
  const autocannon = require('autocannon') as Cannon;
  const { createProject, createTokens, startApp } = require('../test/helpers/project') as typeof import('../test/helpers/project');
  const { AgentClient } = require('../client/connection') as typeof import('../client/connection');
  const frames = Number(process.env['FUZZ_FRAMES'] ?? 100_000);
  const seed = Number(process.env['FUZZ_SEED'] ?? 1);
  const project = createProject();
  const tokens = createTokens(project.root);
  const app = await startApp(project.root, {
    env: {
      LIVEPATCH_TOKENS: tokens.file,
      LIVEPATCH_MAX_PAYLOAD: String(512 * 1024),
      LIVEPATCH_LOCKOUT: '1000000/60000/1000',
      LIVEPATCH_AUTH_FAIL_DELAY_MS: '0',
    },
  });
  let exited = false;
  app.child.on('exit', () => (exited = true));
  try {
    let load: CannonResult | undefined;
    const loadDone = new Promise<void>((resolve) => {
      const inst = autocannon(
        { url: `http://127.0.0.1:${app.httpPort}/quote?c=EUR&a=10`, connections: 10, duration: 3600 },
        (_err, res) => {
          load = res;
          resolve();
        },
      );
      stopLoad = () => inst.stop();
    });
    const started = Date.now();
    console.log(`fuzz: ${frames} frames (seed ${seed}) against the agent at ${app.agent}, while autocannon loads the app (10 connections)`);
    const stats = await runFuzz(app.agent!, tokens.read, frames, seed, {
      onBatch: (sent) => {
        if (sent % 10_000 === 0) console.log(`  ${sent} frames, ${((Date.now() - started) / 1000).toFixed(1)} s`);
      },
    });
    stopLoad();
    await loadDone;
    const admin = await AgentClient.connect(app.agent!, { token: tokens.admin });
    const polluted = (await admin.request('eval', { code: '({} as any).polluted' })).output;
    const status = await admin.request('status', {});
    admin.close();
    const internal = (app.stderr().match(/livepatch: (internal error|error in)/g) ?? []).length;
    console.log(`frames sent        ${stats.frames} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(`replies            ${stats.replies}`);
    console.log(`replies by code    ${JSON.stringify(stats.byCode)}`);
    console.log(`closes by code     ${JSON.stringify(stats.closes)}`);
    console.log(`problems           ${stats.problems.length}${stats.problems.length ? ': ' + stats.problems.slice(0, 5).join(' | ') : ''}`);
    console.log(`agent crashes      ${exited ? 1 : 0} (host exited: ${exited}); internal errors logged: ${internal}`);
    console.log(`prototype          ({}).polluted = ${polluted}`);
    console.log(`agent after        generation ${status.currentGeneration}, pid ${status.pid}`);
    console.log(
      `app under load     served ${load?.requests.total ?? 0}, failed ${(load?.errors ?? 0) + (load?.timeouts ?? 0) + (load?.non2xx ?? 0)}`,
    );
    if (exited || stats.problems.length || internal || polluted !== 'undefined') process.exitCode = 1;
  } finally {
    await app.stop();
    project.cleanup();
  }
}

let stopLoad: () => void = () => undefined;

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
