// A small Markdown reader for model cards: headings, paragraphs, lists, tables, code blocks and
// inline bold/italic/code. It produces data that the Markdown component renders as elements, so
// a card can never inject HTML or script into the page.
export type Inline = { kind: 'text' | 'strong' | 'em' | 'code'; text: string };

export type Block =
  | { kind: 'heading'; level: number; text: Inline[] }
  | { kind: 'paragraph'; text: Inline[] }
  | { kind: 'list'; ordered: boolean; items: Inline[][] }
  | { kind: 'table'; header: Inline[][]; rows: Inline[][][]; align: ('left' | 'right')[] }
  | { kind: 'code'; text: string };

export function parseInline(text: string): Inline[] {
  const out: Inline[] = [];
  const re = /(\*\*[^*]+\*\*|`[^`]+`|\*[^*\s][^*]*\*|_[^_\s][^_]*_)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    const at = m.index ?? 0;
    if (at > last) out.push({ kind: 'text', text: text.slice(last, at) });
    const token = m[0];
    if (token.startsWith('**')) out.push({ kind: 'strong', text: token.slice(2, -2) });
    else if (token.startsWith('`')) out.push({ kind: 'code', text: token.slice(1, -1) });
    else out.push({ kind: 'em', text: token.slice(1, -1) });
    last = at + token.length;
  }
  if (last < text.length) out.push({ kind: 'text', text: text.slice(last) });
  // Links and images keep their text only: a card never navigates the app.
  return out.map((t) => (t.kind === 'text' ? { ...t, text: stripLinks(t.text) } : t));
}

/** For each index, the first index ≥ it holding `ch` (text.length when none): one pass. */
function nextIndexOf(text: string, ch: string): Int32Array {
  const next = new Int32Array(text.length + 1);
  next[text.length] = text.length;
  for (let i = text.length - 1; i >= 0; i -= 1) next[i] = text[i] === ch ? i : (next[i + 1] ?? 0);
  return next;
}

/**
 * `[text](url)` and `![text](url)` become `text`, in one linear pass. (The regex this replaces,
 * /!?\[([^\]]*)\]\([^)]*\)/, rescanned to the end of the text from every `[`: 40 KB of `![`
 * froze the window for seconds.)
 */
export function stripLinks(text: string): string {
  if (!text.includes('](')) return text;
  const close = nextIndexOf(text, ']');
  const paren = nextIndexOf(text, ')');
  let out = '';
  let i = 0;
  while (i < text.length) {
    const bang = text[i] === '!' && text[i + 1] === '[';
    const open = bang ? i + 1 : i;
    if (text[open] === '[') {
      const end = close[open + 1] ?? text.length;
      const stop =
        end < text.length && text[end + 1] === '(' ? (paren[end + 2] ?? text.length) : -1;
      if (stop >= 0 && stop < text.length) {
        out += text.slice(open + 1, end);
        i = stop + 1;
        continue;
      }
    }
    out += text[i];
    i += 1;
  }
  return out;
}

function cells(line: string): string[] {
  return line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((c) => c.trim());
}

/** `| --- | :---: |`: every cell dashes with optional colons (checked cell by cell, linear). */
function isTableRule(line: string): boolean {
  if (!line.includes('-')) return false;
  return cells(line).every((c) => /^:?-{3,}:?$/.test(c));
}

/** The most of a card the reader parses; the engine already cuts cards at 256 KiB. */
export const MAX_MARKDOWN_CHARS = 512 * 1024;

export function parseMarkdown(source: string): Block[] {
  // Unicode line separators become spaces, so `.` in the line patterns below matches to the end.
  const lines = source
    .slice(0, MAX_MARKDOWN_CHARS)
    .replace(/\r\n?/g, '\n')
    .replace(/[\u2028\u2029]/g, ' ')
    .split('\n');
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] ?? '';
    if (line.trim() === '') {
      i += 1;
      continue;
    }
    if (line.startsWith('```')) {
      const body: string[] = [];
      i += 1;
      while (i < lines.length && !(lines[i] ?? '').startsWith('```')) body.push(lines[i++] ?? '');
      i += 1;
      blocks.push({ kind: 'code', text: body.join('\n') });
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      blocks.push({
        kind: 'heading',
        level: heading[1]?.length ?? 1,
        text: parseInline(heading[2] ?? ''),
      });
      i += 1;
      continue;
    }
    if (line.trim().startsWith('|') && isTableRule(lines[i + 1] ?? '')) {
      const header = cells(line).map(parseInline);
      const align = cells(lines[i + 1] ?? '').map(
        (c) => (c.endsWith(':') ? 'right' : 'left') as 'left' | 'right',
      );
      const rows: Inline[][][] = [];
      i += 2;
      while (i < lines.length && (lines[i] ?? '').trim().startsWith('|'))
        rows.push(cells(lines[i++] ?? '').map(parseInline));
      blocks.push({ kind: 'table', header, rows, align });
      continue;
    }
    const item = /^\s*([-*+]|\d+[.)])\s+(.*)$/;
    if (item.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const items: Inline[][] = [];
      while (i < lines.length && item.test(lines[i] ?? '')) {
        items.push(parseInline(item.exec(lines[i] ?? '')?.[2] ?? ''));
        i += 1;
      }
      blocks.push({ kind: 'list', ordered, items });
      continue;
    }
    // The first line always belongs to the paragraph: a line like `| a |` without a rule below
    // is text, and a paragraph that took no line would loop forever.
    const para: string[] = [(lines[i++] ?? '').trim()];
    while (
      i < lines.length &&
      (lines[i] ?? '').trim() !== '' &&
      !/^(#{1,6}\s|```|\s*\|)/.test(lines[i] ?? '') &&
      !item.test(lines[i] ?? '')
    ) {
      para.push((lines[i++] ?? '').trim());
    }
    blocks.push({ kind: 'paragraph', text: parseInline(para.join(' ')) });
  }
  return blocks;
}
