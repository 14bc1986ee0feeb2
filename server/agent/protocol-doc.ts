/**
 * Renders the op catalogue of shared/ops.ts as the Markdown table in docs/protocol.md (between the
 * `ops:begin` / `ops:end` markers). A test compares the two; to regenerate after changing ops.ts run
 * `node dist/server/agent/protocol-doc.js --write`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { OPS, OP_NAMES } from '../../shared/ops';

export const BEGIN = '<!-- ops:begin (generated from shared/ops.ts; do not edit by hand) -->';
export const END = '<!-- ops:end -->';

/** A short argument summary from an op's zod object schema: `module, generation?`. */
function argsSummary(schema: z.ZodTypeAny): string {
  if (!(schema instanceof z.ZodObject)) return '';
  const shape = schema.shape as Record<string, z.ZodTypeAny>;
  return Object.keys(shape)
    .map((k) => (shape[k]!.isOptional() ? `${k}?` : k))
    .join(', ');
}

/** The generated block, markers included. */
export function renderOpTable(): string {
  const rows = OP_NAMES.map((name) => {
    const op = OPS[name];
    const args = argsSummary(op.args);
    const audited = op.audited ? 'yes' : 'when denied';
    const slow = op.slow ? 'slow' : '—';
    return `| \`${name}\` | ${op.role} | ${args ? `\`${args}\`` : '—'} | ${audited} | ${slow} | ${op.doc.replace(/\|/g, '\\|')} |`;
  });
  return [BEGIN, '| Op | Least role | Args | Audited | Wait | What it does |', '|---|---|---|---|---|---|', ...rows, END].join('\n');
}

/** The block currently in a protocol.md text, or undefined when the markers are missing. */
export function extractOpTable(markdown: string): string | undefined {
  const a = markdown.indexOf(BEGIN);
  const b = markdown.indexOf(END);
  if (a < 0 || b < a) return undefined;
  return markdown.slice(a, b + END.length);
}

if (require.main === module && process.argv.includes('--write')) {
  const path = join(__dirname, '..', '..', '..', 'docs', 'protocol.md');
  const text = readFileSync(path, 'utf8');
  const current = extractOpTable(text);
  if (!current) throw new Error(`${path} has no ops markers`);
  writeFileSync(path, text.replace(current, renderOpTable()));
  process.stdout.write(`updated ${path}\n`);
}
