// CLIP's byte-level BPE, written by hand for Stable Diffusion folders, which ship `vocab.json` +
// `merges.txt` rather than a tokenizer.json. It reproduces `transformers.CLIPTokenizer` (the slow
// reference tokenizer, as installed without ftfy): special tokens split out first, then the text
// cleaned like its BasicTokenizer (controls dropped, whitespace collapsed, CJK spaced, NFC, lower
// case), cut with CLIP's regex, byte-encoded, and merged by rank with `</w>` ending each word.
import { RetraceError } from '../errors.js';

/** The regex CLIP's own tokenizer cuts text with (its `pat`), in JavaScript's Unicode mode. */
const CLIP_PATTERN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;
/** CLIPTokenizer keeps at most this many merges (49152 − 256 − 2), whatever the file holds. */
const MAX_MERGES = 49152 - 256 - 2;

/** GPT-2's reversible byte → printable character table: no byte maps to whitespace or a control. */
function byteEncoder(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table = new Array<string>(256);
  const kept = new Set(printable);
  let next = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(kept.has(b) ? b : 256 + next++);
  }
  return table;
}

const BYTE_TO_CHAR = byteEncoder();
const utf8 = new TextEncoder();

function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

const CONTROL = /^\p{C}$/u;
const SPACE_SEPARATOR = /^\p{Zs}$/u;

/**
 * The text clean-up transformers' CLIPTokenizer does when ftfy is absent (BasicTokenizer with no
 * accent stripping and no punctuation split): words joined by single spaces, lower-cased.
 */
export function cleanClipText(text: string): string {
  let cleaned = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0) as number;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || SPACE_SEPARATOR.test(ch)) {
      cleaned += ' ';
    } else if (cp === 0 || cp === 0xfffd || CONTROL.test(ch)) {
      continue;
    } else if (isCjk(cp)) {
      cleaned += ` ${ch} `;
    } else {
      cleaned += ch;
    }
  }
  return cleaned
    .normalize('NFC')
    .split(/\s+/u)
    .filter((w) => w.length > 0)
    .map((w) => w.toLowerCase())
    .join(' ');
}

export interface ClipSpecialTokens {
  bos: string;
  eos: string;
  pad: string;
  unk: string;
  /** Further added tokens the text may contain literally (split out before BPE). */
  added?: string[];
}

export class ClipBpe {
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, string[]>();
  private readonly specials: string[];
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;

  /**
   * @param vocab token → id (`vocab.json`)
   * @param mergesText the text of `merges.txt` (its first line is the version header)
   * @param source file names for error messages
   */
  constructor(
    private readonly vocab: Map<string, number>,
    mergesText: string,
    tokens: ClipSpecialTokens,
    source: { vocab: string; merges: string },
  ) {
    // Exactly as CLIPTokenizer reads it: strip, split lines, drop the first (header) line.
    const lines = mergesText
      .trim()
      .split('\n')
      .slice(1, MAX_MERGES + 1);
    lines.forEach((line, rank) => {
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 2) {
        throw new RetraceError(
          'BAD_PACK',
          `${source.merges}: line ${rank + 2} is not a merge ("first second"): ${JSON.stringify(line)}`,
        );
      }
      const key = `${parts[0]} ${parts[1]}`;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
    });
    const id = (token: string, role: string): number => {
      const found = vocab.get(token);
      if (found === undefined) {
        throw new RetraceError(
          'BAD_PACK',
          `${source.vocab}: the ${role} token ${JSON.stringify(token)} is not in the vocabulary`,
        );
      }
      return found;
    };
    this.bosId = id(tokens.bos, 'bos');
    this.eosId = id(tokens.eos, 'eos');
    this.padId = id(tokens.pad, 'pad');
    this.unkId = id(tokens.unk, 'unk');
    this.specials = [
      ...new Set([tokens.bos, tokens.eos, tokens.pad, tokens.unk, ...(tokens.added ?? [])]),
    ].filter((t) => t.length > 0);
  }

  /** Ids of the text without BOS/EOS, no truncation. */
  encodeText(text: string): number[] {
    const ids: number[] = [];
    for (const piece of this.splitSpecials(text)) {
      if (piece.special) {
        ids.push(this.vocab.get(piece.text) ?? this.unkId);
        continue;
      }
      const cleaned = cleanClipText(piece.text);
      for (const match of cleaned.matchAll(CLIP_PATTERN)) {
        let encoded = '';
        for (const byte of utf8.encode(match[0])) encoded += BYTE_TO_CHAR[byte];
        for (const token of this.bpe(encoded)) ids.push(this.vocab.get(token) ?? this.unkId);
      }
    }
    return ids;
  }

  /** BOS, up to `maxLength − 2` ids, EOS, then the pad id up to `maxLength`. */
  encode(text: string, maxLength: number): Int32Array {
    const out = new Int32Array(maxLength).fill(this.padId);
    const body = this.encodeText(text).slice(0, Math.max(0, maxLength - 2));
    const row = [this.bosId, ...body, this.eosId].slice(0, maxLength);
    out.set(row);
    return out;
  }

  /**
   * Added tokens typed literally are kept whole, as the slow tokenizer's trie does: at each
   * position the earliest match wins, and the longest among matches starting there.
   */
  private splitSpecials(text: string): { text: string; special: boolean }[] {
    const pieces: { text: string; special: boolean }[] = [];
    let rest = text;
    for (;;) {
      let at = -1;
      let hit = '';
      for (const s of this.specials) {
        const i = rest.indexOf(s);
        if (i >= 0 && (at < 0 || i < at || (i === at && s.length > hit.length))) {
          at = i;
          hit = s;
        }
      }
      if (at < 0) break;
      if (at > 0) pieces.push({ text: rest.slice(0, at), special: false });
      pieces.push({ text: hit, special: true });
      rest = rest.slice(at + hit.length);
    }
    if (rest.length > 0) pieces.push({ text: rest, special: false });
    return pieces;
  }

  /** Merges one byte-encoded word by rank; the last symbol carries `</w>`. */
  private bpe(token: string): string[] {
    // CLIP's regex also lets these two through whole (typed in capitals, say); they are never split.
    if (token === '<|startoftext|>' || token === '<|endoftext|>') return [token];
    const cached = this.cache.get(token);
    if (cached) return cached;
    const chars = [...token];
    let word = [...chars.slice(0, -1), `${chars[chars.length - 1] ?? ''}</w>`];
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const first = word[best] as string;
      const second = word[best + 1] as string;
      // Merge every non-overlapping occurrence of the chosen pair, left to right.
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i] as string);
          i += 1;
        }
      }
      word = merged;
    }
    if (this.cache.size > 20_000) this.cache.clear();
    this.cache.set(token, word);
    return word;
  }
}
