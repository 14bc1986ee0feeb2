/**
 * Wire envelopes and their schemas. One JSON object per WebSocket text frame.
 *
 * Agent → client: `hello` (on connect), `welcome` (after auth), `reply` (exactly one per request id),
 * `progress` (zero or more per request, before its reply), `event` (after `subscribe`).
 * Client → agent: `auth` (once, first), `request`.
 *
 * Close codes (RFC 6455 private range): see CLOSE below.
 */
import { z } from 'zod';
import type { Role } from './auth';
import type { WireError } from './errors';
import type { WatchResult } from './health';

export const CLOSE = {
  /** Normal close. */
  NORMAL: 1000,
  /** Frame larger than the agent's limit (ws sends this itself). */
  TOO_BIG: 1009,
  AUTH_FAILED: 4001,
  AUTH_TIMEOUT: 4002,
  PROTOCOL_VERSION: 4003,
  PROTOCOL_ERROR: 4004,
  IDLE: 4005,
  AGENT_STOPPING: 4006,
  TOO_MANY_CONNECTIONS: 4007,
  LOCKED_OUT: 4008,
} as const;

export const requestId = z.union([z.string().min(1).max(64), z.number().int().safe()]);
export type RequestId = z.infer<typeof requestId>;

export const authMessageSchema = z
  .object({
    type: z.literal('auth'),
    protocol: z.number().int(),
    tokenId: z.string().regex(/^[0-9a-f]{8}$/),
    clientNonce: z.string().min(16).max(128),
    proof: z.string().min(16).max(128),
  })
  .strict();
export type AuthMessage = z.infer<typeof authMessageSchema>;

export const requestMessageSchema = z
  .object({
    type: z.literal('request'),
    id: requestId,
    op: z.string().min(1).max(64),
    args: z.record(z.unknown()).optional(),
  })
  .strict();
export type RequestMessage = z.infer<typeof requestMessageSchema>;

export interface HelloMessage {
  type: 'hello';
  protocol: number;
  agentVersion: string;
  auth: 'scram-sha256';
  nonce: string;
}

export interface WelcomeMessage {
  type: 'welcome';
  name: string;
  role: Role;
}

export type ReplyMessage =
  { type: 'reply'; id: RequestId | null; ok: true; result: unknown } | { type: 'reply'; id: RequestId | null; ok: false; error: WireError };

export interface ProgressMessage {
  type: 'progress';
  id: RequestId;
  step: string;
  message: string;
  /** 0..1 when known. */
  fraction?: number;
}

export type AgentEvent =
  | {
      event: 'committed';
      generation: number;
      previousGeneration: number;
      kind: 'patch' | 'rollback';
      who: string;
      message?: string;
      changed: string[];
      time: string;
    }
  | { event: 'drained'; generation: number; time: string }
  | { event: 'released'; generation: number; time: string }
  | { event: 'worker'; pid: number; state: string; generation?: number; time: string }
  | {
      event: 'watch';
      generation: number;
      previousGeneration: number;
      verdict: 'started' | WatchResult['verdict'];
      reason?: string;
      figure?: string;
      revertGeneration?: number;
      time: string;
    };

export interface EventMessage {
  type: 'event';
  event: AgentEvent;
}

export type AgentMessage = HelloMessage | WelcomeMessage | ReplyMessage | ProgressMessage | EventMessage;
export type ClientMessage = AuthMessage | RequestMessage;

export const DEFAULT_MAX_DEPTH = 32;

/** Why a frame was refused: not JSON at all, nested too deep, or carrying a prototype-polluting key. */
export type FrameFault = 'not-json' | 'too-deep' | 'forbidden-key';

export type ParsedFrame = { ok: true; value: unknown } | { ok: false; kind: FrameFault; reason: string };

/** A WebSocket message's payload as text, whichever of ws's buffer shapes it arrived in. */
export function frameText(data: Uint8Array | ArrayBuffer | Uint8Array[]): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data).toString('utf8');
}

/**
 * Parse one frame defensively: bounded nesting depth (checked before JSON.parse so a deeply nested
 * frame cannot exhaust the stack), and prototype-polluting keys refused.
 */
export function parseFrame(text: string, maxDepth = DEFAULT_MAX_DEPTH): ParsedFrame {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > maxDepth) return { ok: false, kind: 'too-deep', reason: `nesting deeper than ${maxDepth}` };
    } else if (c === 125 || c === 93) depth--;
  }
  let bad: string | undefined;
  let value: unknown;
  try {
    value = JSON.parse(text, function (key: string, v: unknown): unknown {
      if (key === '__proto__' || key === 'constructor' || key === 'prototype') bad = key;
      return v;
    });
  } catch {
    return { ok: false, kind: 'not-json', reason: 'not valid JSON' };
  }
  if (bad !== undefined) return { ok: false, kind: 'forbidden-key', reason: `forbidden key "${bad}"` };
  return { ok: true, value };
}

/** zod issues → a compact, stack-free detail list for error replies. */
export function issuesOf(err: z.ZodError): { path: string; code: string; message: string }[] {
  return err.issues.slice(0, 20).map((i) => ({ path: i.path.join('.'), code: i.code, message: i.message }));
}
