#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with Node's built-in runner.
// Usage: node scripts/run-tests.js [filter...]  — a filter keeps files whose path contains it.
'use strict';
const { spawnSync } = require('node:child_process');
const { readdirSync, statSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..', 'dist', 'test');
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'helpers' && name !== 'fixtures') walk(p);
    } else if (name.endsWith('.test.js')) files.push(p);
  }
})(root);
const filters = process.argv.slice(2);
const chosen = filters.length ? files.filter((f) => filters.some((x) => f.includes(x))) : files;
if (chosen.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// Two files at a time: most tests wait on child processes and sockets, not the CPU.
const concurrency = process.env.LIVEPATCH_TEST_CONCURRENCY ?? '2';
const args = ['--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...chosen.sort()];
// Every child a test starts (apps with the agent, the CLI) uses process.execPath too, so the whole run is on this Node.
console.log(`${chosen.length} test files on Node ${process.version} (${process.execPath})`);
const r = spawnSync(process.execPath, args, { stdio: 'inherit', env: process.env });
process.exit(r.status === null ? 1 : r.status);
