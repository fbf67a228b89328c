import { describe, expect, it } from 'vitest';
import {
  describeIssues,
  eventChannels,
  filePathFromImageUrl,
  imageUrlFor,
  invokeChannels,
  isInvokeChannel,
  jobEventSchema,
  jobRequestSchema,
  settingsSchema,
} from '../../../electron/contract/channels.js';

describe('IPC contract', () => {
  it('names channels area:verb and gives each a request and a reply schema', () => {
    for (const [name, spec] of Object.entries(invokeChannels)) {
      expect(name).toMatch(/^[a-z]+:[a-zA-Z]+$/);
      expect(typeof spec.request.safeParse).toBe('function');
      expect(typeof spec.reply.safeParse).toBe('function');
    }
    expect(Object.keys(eventChannels).sort()).toEqual(['jobs:event', 'menu:command']);
  });
  it('recognises only its own channels (no prototype keys)', () => {
    expect(isInvokeChannel('packs:list')).toBe(true);
    expect(isInvokeChannel('toString')).toBe(false);
    expect(isInvokeChannel('__proto__')).toBe(false);
    expect(isInvokeChannel(42)).toBe(false);
  });
  it('validates job requests strictly and names the bad field', () => {
    const ok = jobRequestSchema.safeParse({
      kind: 'restore',
      params: { model: 'r', inputs: ['/a'], outputDir: '/o' },
    });
    expect(ok.success).toBe(true);
    const bad = jobRequestSchema.safeParse({
      kind: 'generate',
      params: { model: 'm', prompt: 'p', count: 0 },
    });
    expect(bad.success).toBe(false);
    if (!bad.success) expect(describeIssues(bad.error)).toMatch(/^params\.count: /);
    expect(jobRequestSchema.safeParse({ kind: 'shell', params: {} }).success).toBe(false);
    expect(
      jobRequestSchema.safeParse({ kind: 'replay', params: { inversion: '/x', evil: true } })
        .success,
    ).toBe(false);
  });
  it('accepts the events the host sends and rejects malformed ones', () => {
    expect(
      jobEventSchema.safeParse({
        type: 'progress',
        jobId: 'job-a-1',
        progress: { phase: 's', step: 1, total: 2 },
      }).success,
    ).toBe(true);
    expect(
      jobEventSchema.safeParse({
        type: 'progress',
        jobId: 'job-a-1',
        progress: { phase: 's', step: -1, total: 2 },
      }).success,
    ).toBe(false);
    expect(jobEventSchema.safeParse({ type: 'done', jobId: '../etc', result: {} }).success).toBe(
      false,
    );
  });
  it('fills settings defaults', () => {
    expect(settingsSchema.parse({})).toEqual({
      provider: 'auto',
      threads: 0,
      outputFormat: 'png',
      theme: 'system',
    });
    expect(settingsSchema.safeParse({ provider: 'opencl' }).success).toBe(false);
  });
  it('round-trips image URLs, including spaces, unicode and Windows paths', () => {
    for (const p of ['/home/a b/ç.png', 'C:\\Users\\x\\y.png', '/a/%41.png']) {
      expect(filePathFromImageUrl(imageUrlFor(p))).toBe(p);
    }
    expect(imageUrlFor('/a/b.png')).toBe('retrace://image/%2Fa%2Fb.png');
    expect(filePathFromImageUrl('retrace://app/index.html')).toBeUndefined();
    expect(filePathFromImageUrl('retrace://image/%E0%A4%A')).toBeUndefined();
    expect(filePathFromImageUrl('https://image/x')).toBeUndefined();
  });
});
