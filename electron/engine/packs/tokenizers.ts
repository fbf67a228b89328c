// Text tokenizers for packs: a `tokenizer.json` (any layout @huggingface/tokenizers reads) or a
// Stable Diffusion folder's CLIP `vocab.json` + `merges.txt`. Both give the text encoder exactly
// `maxLength` ids, truncated and padded the way transformers does with
// `padding="max_length", truncation=True`, so prompts condition the network as in Python.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { RetraceError } from '../errors.js';
import type { TextTokenizer } from '../pipelines/model.js';
import { ClipBpe, type ClipSpecialTokens } from './clip.js';

export type { TextTokenizer };

async function readJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new RetraceError('BAD_PACK', `${file}: cannot read the ${what} (${describeIo(err)})`, {
      cause: err,
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new RetraceError('BAD_PACK', `${file}: the ${what} is not valid JSON`, { cause: err });
  }
}

function describeIo(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'it is a folder';
  return err instanceof Error ? err.message : String(err);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A special token as configs spell it: a string or an AddedToken object `{ content }`. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isRecord(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

function checkMaxLength(maxLength: number, what: string): void {
  if (!Number.isInteger(maxLength) || maxLength < 2 || maxLength > 4096) {
    throw new RetraceError(
      'BAD_INPUT',
      `${what}: maxLength must be an integer from 2 to 4096 (got ${maxLength})`,
    );
  }
}

/** Reads tokenizer_config.json and special_tokens_map.json when present; the first file wins. */
async function readTokenizerConfig(files: string[]): Promise<Record<string, unknown>> {
  let config: Record<string, unknown> = {};
  for (const file of files) {
    if (!existsSync(file)) continue;
    const parsed = await readJson(file, 'tokenizer config');
    if (!isRecord(parsed)) throw new RetraceError('BAD_PACK', `${file}: expected a JSON object`);
    config = { ...parsed, ...config };
  }
  return config;
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

/** The part of the library's Tokenizer used here (its bundled .d.ts does not resolve under NodeNext). */
interface HfTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  token_to_id(token: string): number | undefined;
  normalizer: NormalizerLike | null;
}

interface NormalizerLike {
  config?: { type?: unknown };
  normalizers?: (NormalizerLike | null)[];
  normalize?: (text: string) => string;
}

/**
 * The Rust `Lowercase` normalizer lower-cases each character alone; JavaScript's toLowerCase
 * applies the Greek final-sigma rule ("ΣΑΣ" → "σας", not "σασ"), which changes the ids. The
 * library's Lowercase steps are given the per-character version.
 */
function fixLowercase(n: NormalizerLike | null | undefined): void {
  if (!n) return;
  if (n.config?.type === 'Lowercase') {
    n.normalize = (text) => Array.from(text, (ch) => ch.toLowerCase()).join('');
  }
  n.normalizers?.forEach(fixLowercase);
}

/**
 * The Rust library's `Whitespace` pre-tokenizer is `\w+|[^\w\s]+` with a Unicode `\w`;
 * @huggingface/tokenizers 0.2.0 uses JavaScript's ASCII `\w`, which cuts "café" in two. The same
 * split, spelled with the Unicode word class, keeps such words whole.
 */
const WORD = '\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}';
const UNICODE_WHITESPACE = {
  type: 'Split',
  pattern: { Regex: `[${WORD}]+|[^${WORD}\\s]+` },
  behavior: 'Removed',
  invert: true,
};

function fixWhitespace(pre: unknown): unknown {
  if (!isRecord(pre)) return pre;
  if (pre.type === 'Whitespace') return UNICODE_WHITESPACE;
  if (pre.type === 'Sequence' && Array.isArray(pre.pretokenizers)) {
    return { ...pre, pretokenizers: pre.pretokenizers.map(fixWhitespace) };
  }
  return pre;
}

class JsonTokenizer implements TextTokenizer {
  constructor(
    private readonly tokenizer: HfTokenizer,
    readonly maxLength: number,
    readonly padId: number,
  ) {}

  encode(prompt: string): Int32Array {
    let ids = this.tokenizer.encode(prompt).ids;
    if (ids.length > this.maxLength) ids = this.truncate(prompt, ids);
    const out = new Int32Array(this.maxLength).fill(this.padId);
    out.set(ids.slice(0, this.maxLength));
    return out;
  }

  /**
   * Truncates the text, not the special tokens the post-processor adds around it (what the Rust
   * library does): the specials are found by comparing the encodings with and without them.
   */
  private truncate(prompt: string, withSpecials: number[]): number[] {
    const body = this.tokenizer.encode(prompt, { add_special_tokens: false }).ids;
    const extra = withSpecials.length - body.length;
    for (let start = 0; start <= extra; start++) {
      if (body.every((id, i) => withSpecials[start + i] === id)) {
        const prefix = withSpecials.slice(0, start);
        const suffix = withSpecials.slice(start + body.length);
        const room = Math.max(0, this.maxLength - prefix.length - suffix.length);
        return [...prefix, ...body.slice(0, room), ...suffix].slice(0, this.maxLength);
      }
    }
    return withSpecials.slice(0, this.maxLength);
  }
}

/**
 * Loads a `tokenizer.json`. A `tokenizer_config.json` beside it (or given) supplies the special
 * tokens; ids are padded with the file's `padding.pad_id`, else the config's pad token, else
 * `[PAD]` or `<pad>`.
 */
export async function loadTokenizerJson(
  file: string,
  maxLength: number,
  options: { config?: string } = {},
): Promise<TextTokenizer> {
  checkMaxLength(maxLength, file);
  const json = await readJson(file, 'tokenizer');
  if (!isRecord(json) || !isRecord(json.model)) {
    throw new RetraceError('BAD_PACK', `${file}: not a tokenizer.json (no "model" object)`);
  }
  const configFile = options.config ?? path.join(path.dirname(file), 'tokenizer_config.json');
  const fileConfig = await readTokenizerConfig([configFile]);
  // The library's word-level model takes its unknown token from the config, not from the model.
  const config: Record<string, unknown> = {};
  if (typeof json.model.unk_token === 'string') config.unk_token = json.model.unk_token;
  for (const [key, value] of Object.entries(fileConfig)) {
    config[key] = key.endsWith('_token') ? (tokenText(value) ?? value) : value;
  }
  let tokenizer: HfTokenizer;
  try {
    tokenizer = new Tokenizer(
      { ...json, pre_tokenizer: fixWhitespace(json.pre_tokenizer) },
      config,
    ) as HfTokenizer;
  } catch (err) {
    throw new RetraceError(
      'BAD_PACK',
      `${file}: unsupported tokenizer (${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    );
  }
  fixLowercase(tokenizer.normalizer);
  const padding = isRecord(json.padding) ? json.padding : undefined;
  const candidates = [tokenText(config.pad_token), '[PAD]', '<pad>'];
  let padId = typeof padding?.pad_id === 'number' ? padding.pad_id : undefined;
  for (const token of candidates) {
    if (padId !== undefined) break;
    if (token !== undefined) padId = tokenizer.token_to_id(token);
  }
  if (padId === undefined) {
    throw new RetraceError(
      'BAD_PACK',
      `${file}: no pad token (no padding.pad_id, no pad_token in ${configFile}, no [PAD] or <pad>)`,
    );
  }
  return new JsonTokenizer(tokenizer, maxLength, padId);
}

// ---------------------------------------------------------------------------------------------
// CLIP vocab.json + merges.txt

export interface ClipFiles {
  vocab: string;
  merges: string;
  /** tokenizer_config.json (special tokens); optional. */
  config?: string;
}

class ClipTokenizer implements TextTokenizer {
  constructor(
    private readonly bpe: ClipBpe,
    readonly maxLength: number,
  ) {}

  encode(prompt: string): Int32Array {
    return this.bpe.encode(prompt, this.maxLength);
  }
}

/**
 * Loads CLIP's tokenizer from a Stable Diffusion `tokenizer/` folder (vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json) or from the files named one by one.
 */
export async function loadClipTokenizer(
  source: string | ClipFiles,
  maxLength = 77,
): Promise<TextTokenizer> {
  let files: ClipFiles;
  let configFiles: string[];
  if (typeof source === 'string') {
    const info = await stat(source).catch(() => undefined);
    if (!info?.isDirectory()) {
      throw new RetraceError('BAD_PACK', `${source}: no such tokenizer folder`);
    }
    files = { vocab: path.join(source, 'vocab.json'), merges: path.join(source, 'merges.txt') };
    configFiles = [
      path.join(source, 'tokenizer_config.json'),
      path.join(source, 'special_tokens_map.json'),
    ];
  } else {
    files = source;
    configFiles = source.config ? [source.config] : [];
    if (source.config && !existsSync(source.config)) {
      throw new RetraceError('BAD_PACK', `${source.config}: no such tokenizer config`);
    }
  }
  checkMaxLength(maxLength, files.vocab);
  const vocabJson = await readJson(files.vocab, 'CLIP vocabulary');
  if (!isRecord(vocabJson)) {
    throw new RetraceError('BAD_PACK', `${files.vocab}: expected an object of token → id`);
  }
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(vocabJson)) {
    if (!Number.isInteger(id)) {
      throw new RetraceError(
        'BAD_PACK',
        `${files.vocab}: the id of ${JSON.stringify(token)} is not an integer`,
      );
    }
    vocab.set(token, id as number);
  }
  let mergesText: string;
  try {
    mergesText = await readFile(files.merges, 'utf8');
  } catch (err) {
    throw new RetraceError('BAD_PACK', `${files.merges}: cannot read merges (${describeIo(err)})`, {
      cause: err,
    });
  }
  const config = await readTokenizerConfig(configFiles);
  const added: string[] = [];
  if (isRecord(config.added_tokens_decoder)) {
    for (const t of Object.values(config.added_tokens_decoder)) {
      const text = tokenText(t);
      if (text !== undefined) added.push(text);
    }
  }
  // CLIPTokenizer's own defaults when the folder does not say.
  const tokens: ClipSpecialTokens = {
    bos: tokenText(config.bos_token) ?? '<|startoftext|>',
    eos: tokenText(config.eos_token) ?? '<|endoftext|>',
    pad: tokenText(config.pad_token) ?? '<|endoftext|>',
    unk: tokenText(config.unk_token) ?? '<|endoftext|>',
    added,
  };
  return new ClipTokenizer(new ClipBpe(vocab, mergesText, tokens, files), maxLength);
}
