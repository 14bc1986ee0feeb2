#!/usr/bin/env node
// Runs a peer project's own test suite twice, plain and with its modules live under livepatch's
// engine, and compares the results. Usage: npm run peer (builds first).
//
// The suite (default ../shared/peer-suites/express-5.2.1 from the repository root, or
// $LIVEPATCH_PEER_SUITES/express-5.2.1) is read-only: it is copied to a temp dir outside the
// repository, its devDependencies are installed there from the npm registry, and its test command
// runs once plain and once with NODE_OPTIONS="-r <repo>/dist/server/register.js" and
// LIVEPATCH_ROOT=<copy> (every .js outside node_modules, express's lib/ included, becomes live).
// A run that has not exited after LIVEPATCH_PEER_TIMEOUT_MS (default 120000) is killed and reported
// as "did not exit". Exit code 0 when both runs exited on their own with identical counts, else 1.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');

const REPO = resolve(__dirname, '..');
const SUITE = 'express-5.2.1';
const SUITES = resolve(REPO, process.env.LIVEPATCH_PEER_SUITES || join('..', 'shared', 'peer-suites'));
const TIMEOUT_MS = Number(process.env.LIVEPATCH_PEER_TIMEOUT_MS || 120_000);
const REGISTER = join(REPO, 'dist', 'server', 'register.js');
const MOCHA = ['mocha', '--require', 'test/support/env', '--reporter', 'dot', '--check-leaks', 'test/', 'test/acceptance/'];

/** Give the owner write access to everything under `dir` (the source tree has no write bits). */
function makeWritable(dir) {
  chmodSync(dir, statSync(dir).mode | 0o700);
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) makeWritable(p);
    else chmodSync(p, st.mode | 0o600);
  }
}

/** Counts from mocha's summary lines (`N passing (Xs)`, `N pending`, `N failing`). */
function counts(output) {
  const n = (word) => {
    const m = new RegExp(`^\\s*(\\d+) ${word}\\b`, 'm').exec(output);
    return m ? Number(m[1]) : 0;
  };
  return { passing: n('passing'), pending: n('pending'), failing: n('failing'), summary: /^\s*\d+ passing\b/m.test(output) };
}

/** Run the suite's test command in `cwd`; resolves with counts, exit status and output. */
function runSuite(label, cwd, env) {
  return new Promise((done) => {
    const started = Date.now();
    // Own process group, so a run that never exits can be ended with everything it started.
    const child = spawn('npx', ['--no-install', ...MOCHA], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ label, ...counts(output), exited: !timedOut, code, signal, seconds: (Date.now() - started) / 1000, output });
    });
  });
}

function describe(r) {
  const how = r.exited
    ? `exited on its own (code ${r.code ?? r.signal}) after ${r.seconds.toFixed(1)} s`
    : `did not exit within ${TIMEOUT_MS / 1000} s (killed)`;
  const sum = r.summary ? `${r.passing} passing, ${r.pending} pending, ${r.failing} failing` : 'no mocha summary';
  return `${r.label.padEnd(6)} ${sum}; ${how}`;
}

async function main() {
  const source = join(SUITES, SUITE);
  if (!existsSync(join(source, 'package.json'))) {
    console.error(`peer: no suite at ${source} (set LIVEPATCH_PEER_SUITES to the peer-suites folder)`);
    return 1;
  }
  if (!existsSync(REGISTER)) {
    console.error(`peer: ${REGISTER} is missing: run npm run build first`);
    return 1;
  }
  const work = mkdtempSync(join(tmpdir(), 'lp-peer-'));
  const copy = join(work, SUITE);
  try {
    cpSync(source, copy, { recursive: true });
    makeWritable(copy);
    console.log(`peer: ${SUITE} copied to ${copy}; npm install ...`);
    const baseEnv = { ...process.env };
    for (const k of ['NODE_OPTIONS', 'LIVEPATCH_ROOT', 'LIVEPATCH_TOKENS', 'LIVEPATCH_LISTEN']) delete baseEnv[k];
    const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: copy,
      env: baseEnv,
      stdio: 'inherit',
    });
    if (install.status !== 0) {
      console.error(`peer: npm install failed (${install.status ?? install.signal})`);
      return 1;
    }
    const plain = await runSuite('plain', copy, baseEnv);
    console.log(describe(plain));
    const live = await runSuite('live', copy, { ...baseEnv, NODE_OPTIONS: `-r ${REGISTER}`, LIVEPATCH_ROOT: copy });
    console.log(describe(live));
    const same =
      plain.summary && live.summary && plain.passing === live.passing && plain.pending === live.pending && plain.failing === live.failing;
    const ok = same && plain.exited && live.exited;
    if (!ok && live.failing > 0) {
      // The first failures of the live run, as mocha printed them, to show what broke.
      const first = live.output.indexOf(`${live.failing} failing`);
      if (first >= 0) console.log(live.output.slice(first, first + 4000));
    }
    const why = [];
    if (!same) why.push('counts differ');
    if (!plain.exited) why.push('the plain run did not exit');
    if (!live.exited) why.push('the live run did not exit');
    console.log(
      ok
        ? `peer: ${SUITE}: live matches plain (${live.passing} passing, ${live.failing} failing), both exited`
        : `peer: ${SUITE}: live differs from plain: ${why.join(', ')} (plain ${plain.passing}/${plain.failing}, live ${live.passing}/${live.failing} passing/failing)`,
    );
    return ok ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`peer: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
