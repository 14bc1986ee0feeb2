#!/usr/bin/env node
// Puts a Node.js binary of the given major version (or exact version) in a cache folder outside the repository and
// prints its path on stdout. The binary comes from the npm registry's node-linux-<arch> package, fetched with the
// machine's own npm, so no other download site is involved.
//
// Usage: node scripts/fetch-node.js <major|version>     e.g. 24, 22, 24.22.3
// Cache: $LIVEPATCH_NODE_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/livepatch-node; one folder per version:
//        <cache>/<version>/bin/node. A cached binary is reused once it has been checked to run and report that version.
// Exit codes: 0 = path printed; 1 = failure (message on stderr).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function fail(msg) {
  process.stderr.write(`fetch-node: ${msg}\n`);
  process.exit(1);
}

const want = process.argv[2];
if (!want || !/^\d+(\.\d+\.\d+)?$/.test(want)) fail('usage: node scripts/fetch-node.js <major|x.y.z>');
if (process.platform !== 'linux') fail(`only Linux binaries are published as npm packages here (this is ${process.platform})`);
const arch = { x64: 'x64', arm64: 'arm64' }[process.arch];
if (!arch) fail(`no node-linux-* package for architecture ${process.arch}`);
const pkg = `node-linux-${arch}`;

const cacheRoot =
  process.env.LIVEPATCH_NODE_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'livepatch-node');
const repoRoot = path.resolve(__dirname, '..');
if (path.resolve(cacheRoot) === repoRoot || path.resolve(cacheRoot).startsWith(repoRoot + path.sep)) {
  fail(`cache folder ${cacheRoot} is inside the repository; choose one outside it`);
}

const cmp = (a, b) => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
};
const isStable = (v) => /^\d+\.\d+\.\d+$/.test(v);

/** Returns the version string a binary reports, or null when it does not run. */
function reportedVersion(bin) {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function cachedBinary(version) {
  const bin = path.join(cacheRoot, version, 'bin', 'node');
  return fs.existsSync(bin) && reportedVersion(bin) === `v${version}` ? bin : null;
}

function npm(args, cwd) {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
}

// Resolve the version: the newest stable release matching the request, asked of the registry. When the registry
// cannot be reached, the newest verified binary already in the cache for that request is used instead.
function resolveVersion() {
  const matches = (v) => v === want || v.startsWith(`${want}.`);
  let out;
  try {
    out = npm(['view', `${pkg}@${want}`, 'version', '--json'], os.tmpdir());
  } catch {
    const cached = fs.existsSync(cacheRoot)
      ? fs
          .readdirSync(cacheRoot)
          .filter((v) => isStable(v) && matches(v))
          .sort(cmp)
          .reverse()
      : [];
    for (const v of cached) {
      if (cachedBinary(v)) {
        process.stderr.write(`fetch-node: npm view failed, using the cached ${v}\n`);
        return v;
      }
    }
    fail(`cannot resolve ${pkg}@${want} (npm view failed, see above) and no verified binary for it is cached`);
  }
  const parsed = out.trim() ? JSON.parse(out) : [];
  const list = (Array.isArray(parsed) ? parsed : [parsed]).filter((v) => isStable(v) && matches(v));
  if (!list.length) fail(`the registry has no ${pkg} release matching ${want}`);
  return list.sort(cmp).at(-1);
}

const version = resolveVersion();
const hit = cachedBinary(version);
if (hit) {
  process.stdout.write(`${hit}\n`);
  process.exit(0);
}

// Download into a scratch folder next to the final one, then rename it into place, so an interrupted run never
// leaves a half-written binary where a later run would trust it.
fs.mkdirSync(cacheRoot, { recursive: true });
const scratch = fs.mkdtempSync(path.join(cacheRoot, `.tmp-${version}-`));
try {
  process.stderr.write(`fetch-node: downloading ${pkg}@${version} from the npm registry\n`);
  // npm checks the tarball against the registry's integrity hash.
  const packed = JSON.parse(npm(['pack', `${pkg}@${version}`, '--json', '--pack-destination', scratch], scratch));
  const tarball = path.join(scratch, packed[0].filename);
  execFileSync('tar', ['-xzf', tarball, '-C', scratch, 'package/bin/node'], { stdio: ['ignore', 'ignore', 'inherit'] });
  fs.rmSync(tarball);
  const dest = path.join(scratch, 'dest');
  fs.mkdirSync(path.join(dest, 'bin'), { recursive: true });
  fs.renameSync(path.join(scratch, 'package', 'bin', 'node'), path.join(dest, 'bin', 'node'));
  fs.chmodSync(path.join(dest, 'bin', 'node'), 0o755);
  const got = reportedVersion(path.join(dest, 'bin', 'node'));
  if (got !== `v${version}`) fail(`downloaded binary reports ${got ?? 'nothing (it does not run)'}, expected v${version}`);
  const final = path.join(cacheRoot, version);
  fs.rmSync(final, { recursive: true, force: true });
  try {
    fs.renameSync(dest, final);
  } catch (e) {
    // Another run sharing the cache may have put the same version in place meanwhile; that copy is checked below.
    if (!cachedBinary(version)) throw e;
  }
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
const bin = cachedBinary(version);
if (!bin) fail(`binary for ${version} did not verify after install`);
process.stdout.write(`${bin}\n`);
