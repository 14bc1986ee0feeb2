/**
 * The native compiler as the host's type checker (LIVEPATCH_CHECKER_ENGINE), through the real CLI
 * binary and a real agent in a child app: with 'auto', a project that both compilers build alike is
 * checked by the native compiler, with diagnostics identical to the JavaScript compiler's (the CLI's
 * `--check-here` runs that one), dependents included, new modules included; a project that relies
 * on a setting the native compiler dropped, or on which it disagrees with the project's build, is
 * checked by the JavaScript compiler and `status` says why; so is one whose REPL has asked for a
 * check (one program per checker process); 'typescript' forces the JavaScript compiler; and the
 * native compiler's process goes away with the service when it idles.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckerStatus, CheckResult, StatusResult } from '../shared/ops';
import type { Diagnostic } from '../shared/patch';
import { createProject, createTokens, nativeCompilerProcesses, runCli, startApp, type AppProcess, type Project } from './helpers/project';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A tsconfig both compilers accept and read alike (node16 resolution: CommonJS here, explicit strict and types). */
const NODE16 = {
  compilerOptions: {
    target: 'ES2022',
    module: 'node16',
    moduleResolution: 'node16',
    rootDir: 'src',
    outDir: 'dist',
    strict: true,
    esModuleInterop: true,
    skipLibCheck: true,
    types: ['node'],
  },
  include: ['src'],
};

function node16Project(tsconfig: object = NODE16): Project {
  const project = createProject();
  project.write('tsconfig.json', JSON.stringify(tsconfig, null, 2));
  project.build();
  return project;
}

/** Write `patch/src/rates.ts` (or under `dir`): the EUR rate changed, nothing else. */
function writeRatesPatch(project: Project, dir = 'patch'): void {
  const rates = readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8');
  project.write(`${dir}/src/rates.ts`, rates.replace("'EUR' ? 1.1", "'EUR' ? 1.2"));
}

/** Native compiler processes still serving `root` after up to 5 s (they go once their checker does). */
async function nativeLeftAfterStop(root: string): Promise<number[]> {
  let left = nativeCompilerProcesses(root);
  for (const end = Date.now() + 5000; left.length > 0 && Date.now() < end; left = nativeCompilerProcesses(root)) await sleep(100);
  return left;
}

const tokensOf = new Map<string, ReturnType<typeof createTokens>>();
function tokens(project: Project): ReturnType<typeof createTokens> {
  let t = tokensOf.get(project.root);
  if (!t) tokensOf.set(project.root, (t = createTokens(project.root)));
  return t;
}

async function withApp(
  project: Project,
  env: Record<string, string>,
  fn: (
    cli: (args: string[], role?: 'patch' | 'admin', env?: Record<string, string>) => ReturnType<typeof runCli>,
    checker: () => Promise<CheckerStatus | undefined>,
  ) => Promise<void>,
): Promise<void> {
  const t = tokens(project);
  let app: AppProcess | undefined;
  try {
    app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: t.file, ...env } });
    const agent = app.agent!;
    const cli = (args: string[], role: 'patch' | 'admin' = 'patch', env: Record<string, string> = {}) =>
      runCli(
        args.map((a) => (a === '@' ? agent : a)),
        { cwd: project.root, env: { LIVEPATCH_TOKEN: t[role], ...env } },
      );
    const checker = async () => (JSON.parse((await cli(['status', '@', '--json'])).stdout) as StatusResult).checker;
    await fn(cli, checker);
  } finally {
    await app?.stop();
  }
}

test('auto: the native compiler checks a project both compilers accept; diagnostics match the JavaScript compiler', async () => {
  const project = node16Project();
  try {
    const rates = readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8');
    // A type error in the patched module, and one in a dependent (quote.ts calls rate(currency)).
    // Type errors in the patched module's body: its declarations do not change, so only that file is
    // checked. Then in a dependent (quote.ts calls rate(currency)): the whole program is checked; and
    // again with the same new signature: only the changed file is, and the dependent's error is still
    // reported.
    const body = (v: string) => rates.replace("return currency === 'EUR' ? 1.1 : 1;", `return currency === 'EUR' ? ${v} : 1;`);
    project.write('broken/src/rates.ts', body("'1.1'"));
    project.write('broken2/src/rates.ts', body('true'));
    const sig = rates.replace('rate(currency: string)', 'rate(currency: string, day: number)');
    project.write('sig/src/rates.ts', sig);
    project.write('sig2/src/rates.ts', sig.replace("'EUR' ? 1.1", "'EUR' ? 1.15"));
    // A new module, imported by the patched one.
    project.write('new/src/eur.ts', 'export const EUR: number = 1.3;\n');
    project.write(
      'new/src/rates.ts',
      `import { EUR } from './eur';\n${rates.replace("currency === 'EUR' ? 1.1 : 1", "currency === 'EUR' ? EUR : 1")}`,
    );
    await withApp(project, { LIVEPATCH_CHECKER_IDLE_MS: '3000' }, async (cli, checker) => {
      const lines = (stdout: string) =>
        (JSON.parse(stdout) as { diagnostics: Diagnostic[] }).diagnostics.map(
          (d) => `${d.file}(${d.line},${d.column}): ${d.category} TS${d.code}: ${d.message}`,
        );
      const cases = [
        ['broken', 1, /^src\/rates\.ts\(4,\d+\): error TS2322: /],
        ['broken2', 1, /^src\/rates\.ts\(4,\d+\): error TS2322: /],
        ['sig', 4, /^src\/quote\.ts\(4,\d+\): error TS2554: /],
        ['sig2', 1, /^src\/quote\.ts\(4,\d+\): error TS2554: /],
      ] as const;
      // The host's checks first, one after the other (well within the checker's idle time).
      const hosts: string[] = [];
      for (const [dir, checked, where] of cases) {
        const host = await cli(['check', '@', `${dir}/src/rates.ts`, '--root', dir, '--json']);
        assert.equal(host.code, 1, host.stderr + host.stdout);
        assert.ok(
          lines(host.stdout).some((l) => where.test(l)),
          `${dir}: ${host.stdout}`,
        );
        assert.equal(JSON.parse(host.stdout).checkedFiles, checked, `${dir}: files checked`);
        hosts.push(host.stdout);
      }
      // The same checks in the CLI's process, against the same live program: the JavaScript compiler.
      for (const [i, [dir]] of cases.entries()) {
        const here = await cli(
          ['check', '@', `${dir}/src/rates.ts`, '--root', dir, '--check-here', '--checkout', project.root, '--json'],
          'patch',
          { LIVEPATCH_CHECKER_ENGINE: 'typescript' },
        );
        assert.equal(here.code, 1, here.stderr + here.stdout);
        assert.equal(JSON.parse(here.stdout).engine, 'typescript');
        assert.deepEqual(lines(hosts[i]!), lines(here.stdout), `${dir}: host (native) and --check-here (JavaScript) diagnostics`);
      }
      const c = await checker();
      assert.equal(c?.engine, 'native', JSON.stringify(c));
      assert.equal(c?.engineNote, undefined);

      const a = await cli(['apply', '@', 'new/src/rates.ts', 'new/src/eur.ts', '--root', 'new', '--json']);
      assert.equal(a.code, 0, a.stderr + a.stdout);
      assert.equal(JSON.parse(a.stdout).committed, true);
      const human = await cli(['status', '@']);
      assert.match(human.stdout, /last check: native compiler/);
      assert.ok(nativeCompilerProcesses(project.root).length > 0, 'the native compiler runs while the service does');

      // The service stops after its idle time, and the native compiler's process with it.
      let state = (await checker())?.state;
      for (const end = Date.now() + 20_000; state !== 'stopped' && Date.now() < end; state = (await checker())?.state) await sleep(250);
      assert.equal(state, 'stopped');
      assert.deepEqual(await nativeLeftAfterStop(project.root), [], 'no native compiler process is left behind');
    });
  } finally {
    project.cleanup();
  }
});

test('auto falls back to the JavaScript compiler, and says why, when the project relies on what the native compiler changed', async () => {
  // 'node' (node10) module resolution: dropped by the native compiler.
  const legacy = createProject();
  // Explicit options the native compiler accepts, but the unpatched program has code it rejects
  // (the 'module' keyword for a namespace) where the project's own build found nothing wrong.
  const disagree = node16Project();
  disagree.write('src/legacy.ts', 'module Legacy {\n  export const x = 1;\n}\nexport const y: number = Legacy.x;\n');
  disagree.build();
  try {
    for (const [project, note] of [
      [legacy, /the project's tsconfig has "moduleResolution": "node" \(removed in TypeScript 7\)/],
      [disagree, /the native compiler reports 1 error in the unpatched program \(src\/legacy\.ts\(1,\d+\): error TS1540: /],
    ] as const) {
      writeRatesPatch(project);
      await withApp(project, {}, async (cli, checker) => {
        const a = await cli(['apply', '@', 'patch/src/rates.ts', '--root', 'patch', '--json']);
        assert.equal(a.code, 0, a.stderr + a.stdout);
        const c = await checker();
        assert.equal(c?.engine, 'typescript', JSON.stringify(c));
        assert.match(c?.engineNote ?? '', note);
        const human = await cli(['status', '@']);
        assert.match(human.stdout, /last check: JavaScript compiler \(/);
      });
    }
  } finally {
    legacy.cleanup();
    disagree.cleanup();
  }
});

test("auto: the REPL's first check moves the checker to the JavaScript compiler, so it holds one program", async () => {
  const project = node16Project();
  try {
    writeRatesPatch(project);
    await withApp(project, { LIVEPATCH_CHECKER_IDLE_MS: '60000' }, async (cli, checker) => {
      const before = await cli(['check', '@', 'patch/src/rates.ts', '--root', 'patch']);
      assert.equal(before.code, 0, before.stderr + before.stdout);
      const first = await checker();
      assert.equal(first?.engine, 'native', JSON.stringify(first));
      assert.ok(nativeCompilerProcesses(project.root).length > 0);
      const r = await cli(['eval', '@', "mod('src/rates.ts').rate('EUR')"], 'admin');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /1\.1/);
      const after = await cli(['check', '@', 'patch/src/rates.ts', '--root', 'patch']);
      assert.equal(after.code, 0, after.stderr + after.stdout);
      const c = await checker();
      assert.equal(c?.pid, first?.pid, 'the same checker process');
      assert.equal(c?.engine, 'typescript', JSON.stringify(c));
      assert.match(c?.engineNote ?? '', /the REPL's input checks use the JavaScript compiler's program/);
      assert.deepEqual(await nativeLeftAfterStop(project.root), [], "the native compiler's process was stopped");
    });
  } finally {
    project.cleanup();
  }
});

test('checks on the client (offline, --check-here) use the native compiler under auto; the JavaScript compiler reports errors', async () => {
  const project = node16Project();
  const legacy = createProject();
  const quote = readFileSync(join(project.root, 'src', 'quote.ts'), 'utf8');
  const run = (p: Project, args: string[], env: Record<string, string> = {}) => runCli(args, { cwd: p.root, env });
  const json = (r: { stdout: string }) => JSON.parse(r.stdout) as CheckResult;
  const lines = (r: CheckResult) => r.diagnostics.map((d) => `${d.file}(${d.line},${d.column}): ${d.category} TS${d.code}: ${d.message}`);
  try {
    // Offline: the working tree is the patch.
    const ok = await run(project, ['check', 'src/rates.ts', '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(json(ok).engine, 'native');
    assert.equal(json(ok).engineNote, undefined);
    project.write('src/quote.ts', quote.replace('rate(currency)', 'rate(currency, 2)'));
    const bad = await run(project, ['check', 'src/quote.ts', '--json']);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /^src\/quote\.ts\(4,\d+\): error TS2554: /m);
    assert.equal(json(bad).engine, 'typescript', 'errors are reported by the JavaScript compiler');
    assert.match(json(bad).engineNote ?? '', /the native compiler found errors/);
    const forced = await run(project, ['check', 'src/quote.ts', '--json'], { LIVEPATCH_CHECKER_ENGINE: 'native' });
    assert.equal(forced.code, 1, forced.stderr);
    assert.equal(json(forced).engine, 'native');
    assert.deepEqual(lines(json(forced)), lines(json(bad)), 'the two compilers report the same error alike');
    project.write('src/quote.ts', quote);

    writeRatesPatch(legacy);
    const old = await run(legacy, ['check', 'src/rates.ts', '--json']);
    assert.equal(old.code, 0, old.stderr);
    assert.equal(json(old).engine, 'typescript');
    assert.match(json(old).engineNote ?? '', /"moduleResolution": "node" \(removed in TypeScript 7\)/);
    const unknown = await run(project, ['check', 'src/rates.ts'], { LIVEPATCH_CHECKER_ENGINE: 'fast' });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /invalid LIVEPATCH_CHECKER_ENGINE="fast": expected auto, native or typescript/);

    // Against a live agent, checked here: the native compiler, then the agent applies the patch.
    writeRatesPatch(project);
    await withApp(project, {}, async (cli) => {
      const here = ['--check-here', '--checkout', project.root, '--json'];
      const c = await cli(['check', '@', 'patch/src/rates.ts', '--root', 'patch', ...here]);
      assert.equal(c.code, 0, c.stderr + c.stdout);
      assert.equal(json(c).engine, 'native');
      const a = await cli(['apply', '@', 'patch/src/rates.ts', '--root', 'patch', ...here]);
      assert.equal(a.code, 0, a.stderr + a.stdout);
      assert.equal(JSON.parse(a.stdout).committed, true);
    });
  } finally {
    project.cleanup();
    legacy.cleanup();
  }
});

test("LIVEPATCH_CHECKER_ENGINE=typescript keeps the JavaScript compiler; an unknown value stops the agent's start", async () => {
  const project = node16Project();
  try {
    writeRatesPatch(project);
    await withApp(project, { LIVEPATCH_CHECKER_ENGINE: 'typescript' }, async (cli, checker) => {
      const a = await cli(['check', '@', 'patch/src/rates.ts', '--root', 'patch']);
      assert.equal(a.code, 0, a.stderr + a.stdout);
      const c = await checker();
      assert.equal(c?.engine, 'typescript');
      assert.equal(c?.engineNote, undefined, 'a setting is not a fallback');
      assert.deepEqual(nativeCompilerProcesses(project.root), []);
    });
    const app = await startApp(project.root, {
      env: { LIVEPATCH_TOKENS: tokens(project).file, LIVEPATCH_CHECKER_ENGINE: 'fast' },
      waitAgent: false,
    });
    try {
      let err = app.stderr();
      for (const end = Date.now() + 5000; !/LIVEPATCH_CHECKER_ENGINE/.test(err) && Date.now() < end; err = app.stderr()) await sleep(100);
      assert.match(err, /invalid LIVEPATCH_CHECKER_ENGINE="fast": expected auto, native or typescript/);
      assert.equal(app.agent, undefined, 'no agent listens');
    } finally {
      await app.stop();
    }
  } finally {
    project.cleanup();
  }
});
