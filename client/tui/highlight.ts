/**
 * A light TypeScript colouring for the source view: keywords, strings, comments and numbers, emitted
 * as blessed tags. It is a scanner, not a parser: good enough to read code, cheap on big files, and it
 * carries block-comment and template-string state across lines.
 */

const KEYWORDS = new Set(
  (
    'abstract as async await break case catch class const continue declare default delete do else enum export extends false finally for ' +
    'from function get if implements import in instanceof interface let new null of private protected public readonly return set static ' +
    'super switch this throw true try type typeof undefined var void while yield'
  ).split(' '),
);

/** Escape blessed tag braces in user text. */
export function esc(text: string): string {
  return text.replace(/[{}]/g, (c) => (c === '{' ? '{open}' : '{close}'));
}

const wrap = (colour: string, text: string) => `{${colour}-fg}${esc(text)}{/${colour}-fg}`;

type Carry = 'none' | 'comment' | 'template';

let memo: { source: string; lines: string[] } | undefined;

/**
 * Colour every line of a source text; returns one tagged string per line. The last result is
 * remembered: the reducer and the view ask for the same text on every key press.
 */
export function highlight(source: string): string[] {
  if (memo?.source === source) return memo.lines;
  const lines = highlightAll(source);
  memo = { source, lines };
  return lines;
}

function highlightAll(source: string): string[] {
  let carry: Carry = 'none';
  return source.split('\n').map((line) => {
    const r = highlightLine(line.replace(/\t/g, '  ').replace(/\r$/, ''), carry);
    carry = r.carry;
    return r.text;
  });
}

function highlightLine(line: string, carry: Carry): { text: string; carry: Carry } {
  let out = '';
  let i = 0;
  if (carry !== 'none') {
    const close = carry === 'comment' ? line.indexOf('*/') : findClose(line, 0, '`');
    if (close < 0) return { text: wrap(carry === 'comment' ? 'gray' : 'green', line), carry };
    const end = carry === 'comment' ? close + 2 : close + 1;
    out += wrap(carry === 'comment' ? 'gray' : 'green', line.slice(0, end));
    i = end;
  }
  while (i < line.length) {
    const c = line[i]!;
    const rest = line.slice(i);
    if (rest.startsWith('//')) return { text: out + wrap('gray', rest), carry: 'none' };
    if (rest.startsWith('/*')) {
      const close = line.indexOf('*/', i + 2);
      if (close < 0) return { text: out + wrap('gray', rest), carry: 'comment' };
      out += wrap('gray', line.slice(i, close + 2));
      i = close + 2;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      const close = findClose(line, i + 1, c);
      if (close < 0) return { text: out + wrap('green', rest), carry: c === '`' ? 'template' : 'none' };
      out += wrap('green', line.slice(i, close + 1));
      i = close + 1;
      continue;
    }
    const word = /^[A-Za-z_$][\w$]*/.exec(rest);
    if (word) {
      out += KEYWORDS.has(word[0]) ? wrap('cyan', word[0]) : esc(word[0]);
      i += word[0].length;
      continue;
    }
    const num = /^\d[\d_]*(\.\d+)?/.exec(rest);
    if (num) {
      out += wrap('yellow', num[0]);
      i += num[0].length;
      continue;
    }
    out += esc(c);
    i++;
  }
  return { text: out, carry: 'none' };
}

/** Index of the unescaped closing quote, or -1. */
function findClose(line: string, from: number, quote: string): number {
  for (let i = from; i < line.length; i++) {
    if (line[i] === '\\') i++;
    else if (line[i] === quote) return i;
  }
  return -1;
}
