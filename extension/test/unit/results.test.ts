// Fetching ResultRef pages: inline base64, files checked by size and sha256, and paging.
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ResultRef } from '../../shared/protocol';
import { fetchPages, readPage, toArrayBuffer } from '../../src/results';

const storage = mkdtempSync(join(tmpdir(), 'bonsai-results-'));
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function fileRef(page: number, data: Uint8Array, extra: Partial<ResultRef> = {}): ResultRef {
  const path = join(storage, `r-${page}.msgpack`);
  writeFileSync(path, data);
  return { resultId: 'r', page, pages: 3, done: true, file: { path, size: data.length, sha256: sha(data) }, ...extra };
}

describe('readPage', () => {
  it('decodes inline base64', async () => {
    const b = bytes(100);
    const out = await readPage({ resultId: 'r', page: 0, pages: 1, done: true, data: Buffer.from(b).toString('base64') });
    expect([...out]).toEqual([...b]);
  });

  it('reads a file and checks its sha256 and size', async () => {
    const b = bytes(5000, 7);
    expect([...(await readPage(fileRef(1, b), { storageDir: storage }))]).toEqual([...b]);
    const ref = fileRef(2, b);
    await expect(readPage({ ...ref, file: { ...ref.file!, sha256: sha(bytes(5000, 8)) } })).rejects.toThrow(/is corrupt/);
    await expect(readPage({ ...ref, file: { ...ref.file!, size: 4999 } })).rejects.toThrow(/has 5000 bytes, expected 4999/);
    await expect(readPage({ ...ref, file: { ...ref.file!, path: join(storage, 'missing') } })).rejects.toThrow(/cannot read result file/);
  });

  it('refuses a file outside the storage folder', async () => {
    const ref = fileRef(1, bytes(10));
    await expect(readPage(ref, { storageDir: join(storage, 'sub') })).rejects.toThrow(/outside the extension's storage folder/);
  });

  it('says when a page has no data yet', async () => {
    await expect(readPage({ resultId: 'r', page: 0, pages: 0, done: false })).rejects.toThrow(/has no data yet/);
  });
});

describe('fetchPages', () => {
  it('yields every page in order, asking for the next while the result computes', async () => {
    const p0 = bytes(10, 0);
    const p1 = bytes(20, 1);
    const p2 = bytes(30, 2);
    const asked: number[] = [];
    const replies: Record<number, ResultRef[]> = {
      // page 1 is not there on the first ask (server wait expired), then it is
      1: [
        { resultId: 'r', page: 1, pages: 1, done: false },
        { resultId: 'r', page: 1, pages: 2, done: false, data: Buffer.from(p1).toString('base64') },
      ],
      2: [fileRef(2, p2)],
    };
    const src = {
      request: async <R>(method: string, params: unknown) => {
        expect(method).toBe('bonsai/result/page');
        const { page } = params as { page: number };
        asked.push(page);
        return replies[page]!.shift() as R;
      },
    };
    const first: ResultRef = { resultId: 'r', page: 0, pages: 1, done: false, data: Buffer.from(p0).toString('base64') };
    const got: number[][] = [];
    for await (const page of fetchPages(first, src, { storageDir: storage })) got.push([page.ref.page, page.bytes.length]);
    expect(got).toEqual([
      [0, 10],
      [1, 20],
      [2, 30],
    ]);
    expect(asked).toEqual([1, 1, 2]);
  });

  it('stops at maxPages and rejects malformed replies', async () => {
    const first: ResultRef = { resultId: 'r', page: 0, pages: 1, done: false };
    const never = { request: async <R>() => ({ resultId: 'r', page: 0, pages: 0, done: false }) as R };
    await expect(async () => {
      for await (const _ of fetchPages(first, never, { maxPages: 3 })) void _;
    }).rejects.toThrow(/more than 3 pages/);
    const bad = { request: async <R>() => ({ resultId: 'r', page: '1', pages: 2, done: false }) as R };
    await expect(async () => {
      for await (const _ of fetchPages(first, bad)) void _;
    }).rejects.toThrow(/malformed bonsai\/result\/page reply: result.page must be an integer/);
  });

  it('toArrayBuffer copies exactly the view', () => {
    const big = bytes(64);
    const ab = toArrayBuffer(big.subarray(3, 11));
    expect(ab.byteLength).toBe(8);
    expect([...new Uint8Array(ab)]).toEqual([...big.subarray(3, 11)]);
  });
});
