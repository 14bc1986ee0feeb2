/**
 * The child-process launcher every test helper, benchmark and the demo start apps with
 * (testkit/launch.ts), on real child processes: a child that dies ends every wait on it at once with
 * its stderr, stop() and `await using` leave nothing running, and output is kept within its bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, run } from '../testkit/launch';

/** A node -e child. */
const script = (code: string): string[] => ['-e', code];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pid: number, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return !alive(pid);
}

test('a child that exits during start-up rejects the readiness wait at once, with its stderr', async () => {
  const t = Date.now();
  await assert.rejects(
    launch({
      args: script("console.error('cannot open the database'); setTimeout(() => process.exit(3), 200);"),
      ready: [{ stream: 'stdout', pattern: /app listening on (\d+)/ }],
      timeoutMs: 30_000,
    }),
    (e: Error) => {
      assert.match(e.message, /app exited during start-up \(exit code 3\)/);
      assert.match(e.message, /cannot open the database/);
      return true;
    },
  );
  assert.ok(Date.now() - t < 5000, `rejected after ${Date.now() - t} ms, not at the 30 s timeout`);
});

test('a child that never gets ready is killed at the start-up timeout', async () => {
  let pid = 0;
  await assert.rejects(
    launch({
      args: script("console.log('pid ' + process.pid); setInterval(() => {}, 1000);"),
      ready: [{ stream: 'stdout', pattern: /never printed/ }],
      timeoutMs: 500,
    }).catch((e: Error) => {
      pid = Number(/pid (\d+)/.exec(e.message)?.[1]);
      throw e;
    }),
    /app did not start within 500 ms/,
  );
  assert.ok(pid > 0, 'the output is in the error');
  assert.ok(await gone(pid), 'the child was killed');
});

test('readiness on both streams, in any order; the matches come back in the order asked', async () => {
  const app = await launch({
    args: script("console.error('agent on 127.0.0.1:7'); setTimeout(() => console.log('port 42'), 100); setInterval(() => {}, 1000);"),
    ready: [
      { stream: 'stdout', pattern: /port (\d+)/ },
      { stream: 'stderr', pattern: /agent on (\S+)/ },
    ],
  });
  try {
    assert.equal(app.ready[0]![1], '42');
    assert.equal(app.ready[1]![1], '127.0.0.1:7');
    assert.equal(app.exit(), undefined);
  } finally {
    await app.stop();
  }
  assert.equal(app.exit()?.signal, 'SIGTERM');
  assert.ok(!alive(app.pid));
});

test('a pending request and waitFor reject as soon as the child exits, with its stderr', async () => {
  const app = await launch({
    ipc: true,
    args: script(
      "process.on('message', (m) => { if (m.op === 'echo') process.send({ id: m.id, ok: true, got: m.x });" +
        " if (m.op === 'progress') { process.send({ id: m.id, step: 1 }); process.send({ id: m.id, step: 2 }); process.send({ id: m.id, done: true }); }" +
        " if (m.op === 'die') { console.error('fatal: out of cheese'); setTimeout(() => process.exit(7), 50); } });",
    ),
  });
  try {
    assert.deepEqual(await app.request({ op: 'echo', x: 5 }), { id: 1, ok: true, got: 5 });
    const steps: unknown[] = [];
    const last = await app.request({ op: 'progress' }, (m) => {
      if (m['step'] === undefined) return false;
      steps.push(m['step']);
      return true;
    });
    assert.deepEqual(steps, [1, 2]);
    assert.equal(last['done'], true);

    const t = Date.now();
    const line = app.waitFor('stdout', /never printed/);
    const pending = app.request({ op: 'die' });
    await assert.rejects(pending, /ended \(exit code 7\) before replying to "die"[\s\S]*out of cheese/);
    await assert.rejects(line, /ended \(exit code 7\)[\s\S]*out of cheese/);
    assert.ok(Date.now() - t < 3000, `rejected after ${Date.now() - t} ms`);
    await assert.rejects(app.request({ op: 'echo' }), /not running/);
    await assert.rejects(app.waitFor('stderr', /never printed/), /ended \(exit code 7\)/);
    // What was printed before the exit still matches.
    assert.match((await app.waitFor('stderr', /out of (\w+)/))[1]!, /cheese/);
  } finally {
    await app.stop();
  }
});

test('waitFor with fresh ignores earlier output; a waitFor timeout reports the output', async () => {
  const app = await launch({
    ipc: true,
    args: script("console.log('tick 0'); process.on('message', (m) => console.log('tick ' + m.n));"),
    ready: [{ stream: 'stdout', pattern: /tick 0/ }],
  });
  try {
    const next = app.waitFor('stdout', /tick (\d+)/, { fresh: true });
    app.child.send({ n: 1 });
    assert.equal((await next)[1], '1');
    assert.equal((await app.waitFor('stdout', /tick (\d+)/))[1], '0');
    await assert.rejects(app.waitFor('stdout', /tick 9/, { timeoutMs: 200 }), /no \/tick 9\/ on app's stdout within 200 ms[\s\S]*tick 1/);
  } finally {
    await app.stop();
  }
});

test('stop() with group ends the children too; SIGKILL follows a SIGTERM the child ignores', async () => {
  let pid: number;
  let grandchild: number;
  {
    await using app = await launch({
      group: true,
      killAfterMs: 300,
      args: script(
        "process.on('SIGTERM', () => {}); const c = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });" +
          " console.log('grandchild ' + c.pid); setInterval(() => {}, 1000);",
      ),
      ready: [{ stream: 'stdout', pattern: /grandchild (\d+)/ }],
    });
    pid = app.pid;
    grandchild = Number(app.ready[0]![1]);
    assert.ok(alive(grandchild));
  }
  assert.ok(!alive(pid), 'the child exited before the dispose resolved');
  assert.ok(await gone(grandchild), 'the grandchild was ended with the group');
});

test('output is kept within its bound, the most recent part', async () => {
  const app = await launch({
    keep: 1000,
    args: script("for (let i = 0; i < 2000; i++) console.log('line ' + i); console.log('the end');"),
  });
  const exit = await app.exited;
  assert.equal(exit.code, 0);
  await app.waitFor('stdout', /the end/);
  assert.ok(app.stdout().length <= 1000, `kept ${app.stdout().length} characters`);
  assert.match(app.stdout(), /line 1999\nthe end\n$/);
  await app.stop();
});

test('run() resolves with the exit code and output, and rejects when it takes too long', async () => {
  const r = await run({ args: script("process.stdin.pipe(process.stdout); process.stdin.on('end', () => process.exit(4));"), input: 'hi' });
  assert.deepEqual(r, { code: 4, stdout: 'hi', stderr: '' });
  await assert.rejects(run({ args: script('setInterval(() => {}, 1000)'), timeoutMs: 300 }), /did not finish within 300 ms/);
});
