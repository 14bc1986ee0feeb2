/**
 * The whole-program checker core (shared/typecheck.ts) on a real copy of the basic fixture: errors in
 * untouched dependents are found and named, syntax errors are separated, new modules resolve, and a
 * second check reuses the previous program.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProgramChecker } from '../shared/typecheck';
import { formatDiagnostic } from '../shared/patch';
import { createProject } from './helpers/project';

const project = createProject();
const checker = new ProgramChecker(project.root);
const rates = join(project.root, 'src', 'rates.ts');
const ratesText = readFileSync(rates, 'utf8');

test.after(() => project.cleanup());

test('the deployed program checks clean, reporting progress while it is built', () => {
  const seen: string[] = [];
  const r = checker.check(new Map(), (p) => seen.push(`${p.phase}:${p.done}/${p.total}`));
  assert.equal(r.hasErrors, false, r.diagnostics.map(formatDiagnostic).join('\n'));
  assert.equal(r.files, 4);
  assert.ok(seen.includes('program:0/4') && seen.includes('program:4/4'), seen.join(' '));
  assert.ok(
    seen.some((s) => /^program:[123]\/4$/.test(s)),
    'progress while files load',
  );
  assert.ok(seen.includes('check:4/4'), seen.join(' '));
});

test('a signature change is rejected in the untouched caller, named in tsc form', () => {
  const changed = ratesText.replace('rate(currency: string)', 'rate(currency: string, at: Date)');
  const r = checker.check(new Map([[rates, changed]]));
  assert.equal(r.hasErrors, true);
  const lines = r.diagnostics.map(formatDiagnostic);
  assert.ok(
    lines.some((l) => /^src\/quote\.ts\(\d+,\d+\): error TS2554: Expected 2 arguments, but got 1\./.test(l)),
    lines.join('\n'),
  );
  assert.equal(r.syntactic.length, 0);
});

test('a body-only change after a failed check is clean again and re-checks few files', () => {
  const body = ratesText.replace('1.1', '1.2');
  const r = checker.check(new Map([[rates, body]]));
  assert.equal(r.hasErrors, false, r.diagnostics.map(formatDiagnostic).join('\n'));
  assert.ok(r.checked >= 1 && r.checked <= r.files, `checked ${r.checked} of ${r.files}`);
});

test('a syntax error is reported as syntactic with a 1-based position', () => {
  const r = checker.check(new Map([[rates, 'export function rate(c: string { return 1 }\n']]));
  assert.equal(r.hasErrors, true);
  assert.ok(r.syntactic.length > 0);
  assert.equal(r.syntactic[0]!.file, 'src/rates.ts');
  assert.equal(r.syntactic[0]!.line, 1);
});

test('a new module in the overlay resolves from a patched importer', () => {
  const fresh = join(project.root, 'src', 'fees.ts');
  const quote = join(project.root, 'src', 'quote.ts');
  const quoteText = readFileSync(quote, 'utf8')
    .replace("import { rate } from './rates';", "import { rate } from './rates';\nimport { fee } from './fees';")
    .replace('amount * rate(currency)', 'amount * rate(currency) + fee()');
  const ok = checker.check(
    new Map([
      [fresh, 'export function fee(): number { return 2; }\n'],
      [quote, quoteText],
    ]),
  );
  assert.equal(ok.hasErrors, false, ok.diagnostics.map(formatDiagnostic).join('\n'));
  const bad = checker.check(
    new Map([
      [fresh, 'export function fee(): string { return "2"; }\n'],
      [quote, quoteText],
    ]),
  );
  assert.ok(
    bad.diagnostics.some((d) => d.file === 'src/quote.ts' && d.category === 'error'),
    bad.diagnostics.map(formatDiagnostic).join('\n'),
  );
  const gone = checker.check(new Map([[quote, quoteText]]));
  assert.ok(
    gone.diagnostics.some((d) => d.file === 'src/quote.ts' && d.code === 2307),
    'missing module is TS2307',
  );
});

test('transpile produces CommonJS and reports syntax diagnostics', () => {
  const out = checker.transpile('src/rates.ts', ratesText);
  assert.match(out.js, /exports\.rate = rate/);
  assert.equal(out.diagnostics.length, 0);
  const bad = checker.transpile('src/rates.ts', 'export const = 1;');
  assert.ok(bad.diagnostics.length > 0);
});

test('a break that flows through a re-export is found in the indirect dependent', () => {
  const at = (f: string) => join(project.root, 'src', f);
  const b = "export { fmt } from './fmt-a';\n";
  const c = "import { fmt } from './fmt-b';\nexport const shown: string = fmt('x');\n";
  const ok = checker.check(
    new Map([
      [at('fmt-a.ts'), 'export function fmt(s: string): string { return s; }\n'],
      [at('fmt-b.ts'), b],
      [at('fmt-c.ts'), c],
    ]),
  );
  assert.equal(ok.hasErrors, false, ok.diagnostics.map(formatDiagnostic).join('\n'));
  const broken = checker.check(
    new Map([
      [at('fmt-a.ts'), 'export function fmt(n: number): string { return String(n); }\n'],
      [at('fmt-b.ts'), b],
      [at('fmt-c.ts'), c],
    ]),
  );
  const lines = broken.diagnostics.map(formatDiagnostic);
  assert.ok(
    lines.some((l) => l.startsWith('src/fmt-c.ts(2,') && l.includes('TS2345')),
    lines.join('\n'),
  );
});
