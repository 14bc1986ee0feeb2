#!/usr/bin/env node
// Runs benchmarks on demand (never part of `npm test`). Each bench/<name>.ts is compiled to
// dist/bench/<name>.js by `npm run build`; this runs them one after another and stops at the first
// failure. Usage: node bench/run.js [name...]  (no names: every benchmark; names: a name or prefix).
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync, readdirSync } = require('node:fs');
const { join } = require('node:path');

const dir = join(__dirname, '..', 'dist', 'bench');
if (!existsSync(dir)) {
  console.error('no compiled benchmarks: run `npm run build` first');
  process.exit(2);
}
const all = readdirSync(dir)
  .filter((f) => f.endsWith('.js'))
  .map((f) => f.slice(0, -3))
  .sort();
const wanted = process.argv.slice(2);
const chosen = wanted.length ? all.filter((n) => wanted.some((w) => n.startsWith(w))) : all;
if (chosen.length === 0) {
  console.error(`no benchmark matches ${wanted.join(' ')}; available: ${all.join(', ')}`);
  process.exit(2);
}
for (const name of chosen) {
  console.log(`\n### ${name}  (node dist/bench/${name}.js)`);
  const r = spawnSync(process.execPath, [join(dir, `${name}.js`)], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`${name} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}
