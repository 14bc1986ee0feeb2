/**
 * Agent test fixtures: a raw WebSocket client that sends arbitrary frames (malformed, oversized,
 * replayed) and records every message and the close code — unlike AgentClient it validates nothing, so
 * tests see exactly what the agent does with bad input — and the child app running the agent.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { computeProof, frameText, newNonce, parseToken, PROTOCOL_VERSION } from '../../shared';
import { createProject, createTokens, startApp, type AppProcess, type Project, type Tokens } from './project';

export interface RawClient {
  ws: WebSocket;
  /** Every parsed message received, in order. */
  messages: any[];
  /** Resolves with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>;
  /** The first message matching `pred` not yet returned by next() (already received ones count). */
  next(pred?: (m: any) => boolean, timeoutMs?: number): Promise<any>;
  send(data: string | Buffer): void;
  /** The `auth` frame this client sent (after `authenticate`). */
  authFrame?: string;
  close(): void;
}

export interface RawOptions {
  headers?: Record<string, string>;
  maxPayload?: number;
  /** Answer the agent's pings (default true); false simulates a dead peer. */
  autoPong?: boolean;
  /** Local source address (any of 127.0.0.0/8 on loopback), to act as many peers. */
  localAddress?: string;
}

/** Open a socket to `address` (`host:port`). Rejects on HTTP refusal (e.g. 403) with the error. */
export function openRaw(address: string, opts: RawOptions = {}): Promise<RawClient> {
  const ws = new WebSocket(`ws://${address}/livepatch`, {
    headers: opts.headers ?? {},
    maxPayload: opts.maxPayload ?? 256 * 1024 * 1024,
    autoPong: opts.autoPong ?? true,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
  });
  const messages: any[] = [];
  const waiters: { pred: (m: any) => boolean; resolve: (m: any) => void }[] = [];
  // Messages already returned by next(): each is handed out once.
  const consumed = new Set<any>();
  ws.on('message', (data) => {
    let m: any;
    try {
      m = JSON.parse(frameText(data));
    } catch {
      m = { unparsed: frameText(data) };
    }
    messages.push(m);
    for (const w of [...waiters]) {
      if (!consumed.has(m) && w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  const client: RawClient = {
    ws,
    messages,
    closed,
    next(pred = () => true, timeoutMs = 10_000) {
      const found = messages.find((m) => !consumed.has(m) && pred(m));
      if (found) {
        consumed.add(found);
        return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(messages).slice(0, 500)}`)),
          timeoutMs,
        );
        const w = {
          pred,
          resolve: (m: any) => {
            clearTimeout(timer);
            consumed.add(m);
            resolve(m);
          },
        };
        waiters.push(w);
        void closed.then(() => {
          if (waiters.includes(w)) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error(`closed before a matching message; got ${JSON.stringify(messages).slice(0, 500)}`));
          }
        });
      });
    },
    send(data) {
      ws.send(data);
    },
    close() {
      ws.terminate();
    },
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client));
    ws.once('error', reject);
    ws.on('error', () => {});
  });
}

/** Open and complete the handshake with `token`; resolves once `welcome` arrives. */
export async function openAuthed(address: string, token: string, opts: RawOptions = {}): Promise<RawClient> {
  const c = await openRaw(address, opts);
  const hello = await c.next((m) => m.type === 'hello');
  const parsed = parseToken(token)!;
  const clientNonce = newNonce();
  c.authFrame = JSON.stringify({
    type: 'auth',
    protocol: PROTOCOL_VERSION,
    tokenId: parsed.id,
    clientNonce,
    proof: computeProof(parsed, hello.nonce, clientNonce),
  });
  c.send(c.authFrame);
  await c.next((m) => m.type === 'welcome');
  return c;
}

/** Send one request and wait for its reply. */
export async function rawRequest(c: RawClient, id: number | string, op: string, args?: unknown): Promise<any> {
  c.send(JSON.stringify({ type: 'request', id, op, ...(args !== undefined ? { args } : {}) }));
  return c.next((m) => m.type === 'reply' && m.id === id);
}

/** A fixture project running as a child app with the agent, one token per role. */
export interface AgentApp extends AsyncDisposable {
  project: Project;
  tokens: Tokens;
  app: AppProcess;
  /** The agent's address `127.0.0.1:PORT`. */
  address: string;
  auditFile: string;
  /** Stop the app and remove the project. */
  stop: () => Promise<void>;
}

/**
 * Start a fixture (default: basic) with the agent, one token per role and an audit log in the project;
 * `env` adds or overrides settings, and `$ROOT` in a value stands for the project root.
 */
export async function bootAgentApp(
  env: Record<string, string | undefined> = {},
  opts: { fixture?: string; waitAgent?: boolean } = {},
): Promise<AgentApp> {
  const project = createProject(opts.fixture);
  const tokens = createTokens(project.root);
  const auditFile = join(project.root, 'audit.jsonl');
  const withRoot = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v?.split('$ROOT').join(project.root)]));
  try {
    const app = await startApp(project.root, {
      env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: auditFile, ...withRoot },
      ...(opts.waitAgent !== undefined ? { waitAgent: opts.waitAgent } : {}),
    });
    const stop = async (): Promise<void> => {
      await app.stop();
      project.cleanup();
    };
    return { project, tokens, app, address: app.agent!, auditFile, stop, [Symbol.asyncDispose]: stop };
  } catch (e) {
    project.cleanup();
    throw e;
  }
}

/** Parsed audit records. */
export function readAudit(path: string): any[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}
