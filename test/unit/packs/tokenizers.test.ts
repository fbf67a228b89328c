// Tokenizers checked id for id against the Python libraries users run (vectors written by
// scripts/fixtures/make_tokenizer_vectors.py): transformers' CLIPTokenizer for SD folders, the
// `tokenizers` library for tokenizer.json packs.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanClipText } from '../../../electron/engine/packs/clip.js';
import { loadClipTokenizer, loadTokenizerJson } from '../../../electron/engine/packs/tokenizers.js';

const FIXTURES = path.resolve('test/fixtures');
const TOKENIZERS = path.join(FIXTURES, 'tokenizers');
const SD_TOKENIZER = path.join(FIXTURES, 'tiny-sd', 'tokenizer');

interface Vectors {
  maxLength: number;
  cases: { prompt: string; ids: number[] }[];
}

async function vectors(name: string): Promise<Vectors> {
  return JSON.parse(await readFile(path.join(TOKENIZERS, name), 'utf8')) as Vectors;
}

describe('CLIP tokenizer from vocab.json + merges.txt', () => {
  it('matches transformers.CLIPTokenizer id for id on every fixture prompt', async () => {
    const v = await vectors('clip-tiny.json');
    expect(v.cases.length).toBeGreaterThanOrEqual(40);
    const tok = await loadClipTokenizer(SD_TOKENIZER, v.maxLength);
    expect(tok.maxLength).toBe(77);
    for (const c of v.cases) {
      const ids = tok.encode(c.prompt);
      expect(ids).toBeInstanceOf(Int32Array);
      expect({ prompt: c.prompt, ids: [...ids] }).toEqual({ prompt: c.prompt, ids: c.ids });
    }
  });

  it('accepts the files named one by one, and a shorter maxLength truncates before EOS', async () => {
    const tok = await loadClipTokenizer(
      {
        vocab: path.join(SD_TOKENIZER, 'vocab.json'),
        merges: path.join(SD_TOKENIZER, 'merges.txt'),
        config: path.join(SD_TOKENIZER, 'tokenizer_config.json'),
      },
      4,
    );
    expect([...tok.encode('a photo of a cat')]).toEqual([912, 320, 649, 913]);
    expect([...tok.encode('')]).toEqual([912, 913, 913, 913]);
  });

  it('pads with the configured pad token (SD 2 uses "!")', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'retrace-clip-'));
    try {
      for (const f of ['vocab.json', 'merges.txt']) {
        await writeFile(path.join(dir, f), await readFile(path.join(SD_TOKENIZER, f)));
      }
      await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: '!' }));
      const tok = await loadClipTokenizer(dir, 6);
      expect([...tok.encode('a cat')]).toEqual([912, 320, 775, 913, 0, 0]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cleans text like the BasicTokenizer: controls dropped, whitespace collapsed, CJK spaced', () => {
    expect(cleanClipText('  A\tB\u00a0C\u200bD\x00 ')).toBe('a b cd');
    expect(cleanClipText('中文x')).toBe('中 文 x');
    expect(cleanClipText('e\u0301')).toBe('\u00e9');
  });

  it('names the file when the folder or a file is missing or broken', async () => {
    await expect(loadClipTokenizer('/nonexistent/tokenizer')).rejects.toThrow(
      '/nonexistent/tokenizer: no such tokenizer folder',
    );
    const dir = await mkdtemp(path.join(tmpdir(), 'retrace-clip-'));
    try {
      await writeFile(path.join(dir, 'vocab.json'), '{"a": 0');
      await expect(loadClipTokenizer(dir)).rejects.toThrow(
        `${path.join(dir, 'vocab.json')}: the CLIP vocabulary is not valid JSON`,
      );
      await writeFile(path.join(dir, 'vocab.json'), '{"a": 0}');
      await expect(loadClipTokenizer(dir)).rejects.toThrow(
        `${path.join(dir, 'merges.txt')}: cannot read merges (no such file)`,
      );
      await writeFile(path.join(dir, 'merges.txt'), '#version: 0.2\na\n');
      await expect(loadClipTokenizer(dir)).rejects.toThrow(/merges.txt: line 2 is not a merge/);
      await writeFile(path.join(dir, 'merges.txt'), '#version: 0.2\na b\n');
      await expect(loadClipTokenizer(dir)).rejects.toThrow(
        /vocab.json: the bos token "<\|startoftext\|>" is not in the vocabulary/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('tokenizer.json via @huggingface/tokenizers', () => {
  it('a word-level tokenizer matches the tokenizers library id for id ([PAD] = 0, [UNK])', async () => {
    const v = await vectors('word-level.json');
    const tok = await loadTokenizerJson(path.join(TOKENIZERS, 'word-level', 'tokenizer.json'), 12);
    expect(tok.maxLength).toBe(12);
    for (const c of v.cases) {
      expect({ prompt: c.prompt, ids: [...tok.encode(c.prompt)] }).toEqual(c);
    }
    // The fixture must actually exercise unknown words and truncation.
    expect(v.cases.some((c) => c.ids.includes(1))).toBe(true);
    expect(v.cases.some((c) => !c.ids.includes(0))).toBe(true);
  });

  it('a CLIP BPE tokenizer.json matches CLIPTokenizerFast, truncating inside BOS … EOS', async () => {
    const v = await vectors('clip-fast.json');
    const tok = await loadTokenizerJson(path.join(TOKENIZERS, 'clip-fast', 'tokenizer.json'), 77);
    for (const c of v.cases) {
      expect({ prompt: c.prompt, ids: [...tok.encode(c.prompt)] }).toEqual(c);
    }
  });

  it('refuses a file that is not a tokenizer, naming it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'retrace-tok-'));
    try {
      const file = path.join(dir, 'tokenizer.json');
      await writeFile(file, '{"version": "1.0"}');
      await expect(loadTokenizerJson(file, 8)).rejects.toThrow(
        `${file}: not a tokenizer.json (no "model" object)`,
      );
      await expect(loadTokenizerJson(path.join(dir, 'none.json'), 8)).rejects.toThrow(
        /none.json: cannot read the tokenizer \(no such file\)/,
      );
      await expect(
        loadTokenizerJson(path.join(TOKENIZERS, 'word-level', 'tokenizer.json'), 1),
      ).rejects.toThrow(/maxLength must be an integer from 2 to 4096/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
