/**
 * The `warm` op through the real CLI binary and a real agent in a child app: `status` shows the host's
 * type-check service, `livepatch warm` starts it and builds the live program so the check that follows
 * runs in the same (warm) process, a second warm is a no-op, a read token may not warm, every call is
 * audited, and the service still stops after its idle time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckerStatus, StatusResult, WarmResult } from '../shared/ops';
import { createProject, createTokens, runCli, startApp, type AppProcess } from './helpers/project';
import { readAudit } from './helpers/raw-client';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('warm builds the live program ahead of a check; status shows the checker; read tokens may not warm', async () => {
  const project = createProject();
  const tokens = createTokens(project.root);
  const audit = join(project.root, 'audit.log');
  let app: AppProcess | undefined;
  try {
    app = await startApp(project.root, {
      env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: audit, LIVEPATCH_CHECKER_IDLE_MS: '4000' },
    });
    const agent = app.agent!;
    const cli = (args: string[], role: 'read' | 'patch') => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens[role] } });
    const checker = async (): Promise<CheckerStatus | undefined> => {
      const r = await cli(['status', agent, '--json'], 'read');
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as StatusResult).checker;
    };
    const until = async (state: CheckerStatus['state'], ms: number): Promise<CheckerStatus> => {
      let c = await checker();
      for (const end = Date.now() + ms; c?.state !== state && Date.now() < end; c = await checker()) await sleep(200);
      assert.equal(c?.state, state, `checker ${JSON.stringify(c)}`);
      return c!;
    };

    const before = await checker();
    assert.deepEqual(before, { state: 'stopped', idleMs: 4000, maxMb: 1024 }, 'nothing runs before anyone patches');
    const human = await cli(['status', agent], 'read');
    assert.match(human.stdout, /checker +stopped \(the next check starts it: a cold check\); stops after 4 s idle, heap cap 1024 MB/);

    const denied = await cli(['warm', agent], 'read');
    assert.equal(denied.code, 3, denied.stderr);
    assert.match(denied.stderr, /warm needs the patch role; token "reader" has read/);
    assert.equal((await checker())?.state, 'stopped', 'a read token started nothing');

    const warm = await cli(['warm', agent, '--json'], 'patch');
    assert.equal(warm.code, 0, warm.stderr);
    const w = JSON.parse(warm.stdout) as WarmResult;
    assert.equal(w.started, true);
    const ready = await until('ready', 120_000);
    assert.ok(ready.pid! > 0);

    const again = await cli(['warm', agent], 'patch');
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to do: the type checker is already running \(ready\)/);
    assert.match(again.stdout, new RegExp(`checker: ready \\(pid ${ready.pid}: the next check is warm\\)`));

    // The check runs in the process the warm-up started, so it built nothing from scratch.
    const rates = readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8');
    assert.match(rates, /'EUR' \? 1\.1/);
    project.write('patch/src/rates.ts', rates.replace("'EUR' ? 1.1", "'EUR' ? 1.25"));
    const check = await cli(['check', agent, 'patch/src/rates.ts', '--root', 'patch', '--json'], 'patch');
    assert.equal(check.code, 0, check.stderr + check.stdout);
    assert.equal((await checker())?.pid, ready.pid, 'the same checker process answered the check');

    // The service still goes away after its idle time.
    await until('stopped', 20_000);

    assert.ok(existsSync(audit));
    const warms = readAudit(audit).filter((e) => e.op === 'warm');
    assert.deepEqual(
      warms.map((e) => [e.who, e.outcome]),
      [
        ['reader', 'LP_ERR_AUTH_FORBIDDEN'],
        ['patcher', 'ok'],
        ['patcher', 'ok'],
      ],
    );
  } finally {
    await app?.stop();
    project.cleanup();
  }
});
