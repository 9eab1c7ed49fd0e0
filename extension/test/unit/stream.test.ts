// The webview side of a streamed comparison: Cancel asks the host (which cancels the server job),
// a comparison cancelled on the server ends as cancelled, pages of other requests are ignored.
import { describe, expect, it } from 'vitest';
import { encode } from '@msgpack/msgpack';
import { streamCompare, type CompareRpc } from '../../webview/shared/stream';

type Reply = { resultId: string; pages: number; cancelled?: boolean };

function fakeRpc() {
  const sent: [string, unknown][] = [];
  let page: ((p: { requestId: number; page: number; pages: number; done: boolean; bytes: ArrayBuffer }) => void) | undefined;
  let reply: ((r: Reply) => void) | undefined;
  const rpc = {
    peekId: () => 4,
    request: (method: string, params: unknown) => {
      sent.push([method, params]);
      if (method === 'cancel') return Promise.resolve({ cancelled: true });
      return new Promise<Reply>((r) => (reply = r));
    },
    on: (_name: string, fn: typeof page) => {
      page = fn;
      return () => (page = undefined);
    },
  } as unknown as CompareRpc;
  return { rpc, sent, page: (p: Parameters<NonNullable<typeof page>>[0]) => page?.(p), reply: (r: Reply) => reply?.(r) };
}

const envelope = (n: number): ArrayBuffer => {
  const bytes = encode({ v: 1, kind: 'weights', meta: { n }, tensors: {} });
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
};

describe('streamCompare', () => {
  it('Cancel sends the host a cancel for its request id, once, and ignores later pages', async () => {
    const f = fakeRpc();
    const results: unknown[] = [];
    const progress: [number, number, boolean][] = [];
    const run = streamCompare(f.rpc, { kind: 'activations', base: 'a', models: ['b', 'c'] }, (r) => results.push(r.meta), (...p) => progress.push(p));
    f.page({ requestId: 4, page: 0, pages: 1, done: false, bytes: envelope(1) });
    run.cancel();
    run.cancel();
    f.page({ requestId: 4, page: 1, pages: 2, done: true, bytes: envelope(2) });
    f.reply({ resultId: 'r', pages: 1, cancelled: true });
    await run.done;
    expect(f.sent).toEqual([
      ['compare', { kind: 'activations', base: 'a', models: ['b', 'c'] }],
      ['cancel', { requestId: 4 }],
    ]);
    expect(run.cancelled).toBe(true);
    expect(results).toEqual([{ n: 1 }]);
    // models, not pages: one of the two compared models is in ("Cancelled: 1 of 2 models")
    expect(progress).toEqual([
      [1, 2, false],
      [1, 2, true],
    ]);
  });

  it('a comparison cancelled on the server (e.g. from the progress notification) ends cancelled', async () => {
    const f = fakeRpc();
    const progress: [number, number, boolean][] = [];
    const run = streamCompare(f.rpc, { kind: 'behavior', base: 'a', models: ['b', 'c'] }, () => undefined, (...p) => progress.push(p));
    f.page({ requestId: 9, page: 0, pages: 1, done: true, bytes: envelope(0) }); // another request's page
    f.page({ requestId: 4, page: 0, pages: 1, done: false, bytes: envelope(1) });
    f.reply({ resultId: 'r', pages: 1, cancelled: true });
    await run.done;
    expect(run.cancelled).toBe(true);
    expect(f.sent.map(([m]) => m)).toEqual(['compare']); // nothing more to ask the host
    expect(progress.at(-1)).toEqual([1, 2, true]);
  });

  it('a complete comparison is not cancelled', async () => {
    const f = fakeRpc();
    const run = streamCompare(f.rpc, { kind: 'weights', base: 'a', models: ['b'] }, () => undefined, () => undefined);
    f.page({ requestId: 4, page: 0, pages: 1, done: true, bytes: envelope(1) });
    f.reply({ resultId: 'r', pages: 1 });
    await run.done;
    expect(run.cancelled).toBe(false);
  });
});
