// The host side of the webview protocol: requests answered by id, result pages posted as
// ArrayBuffers, errors as error replies, serializers restoring panels with their state.
import { describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import type { ResultRef } from '../../shared/protocol';
import { PanelManager } from '../../src/webviews/panels';
import { __panels, __serializers, FakePanel } from './vscode.mock';

const b64 = (bytes: number[]) => Buffer.from(bytes).toString('base64');

function manager(request: (method: string, params: unknown) => Promise<unknown>) {
  __panels.length = 0;
  const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn() } as unknown as vscode.LogOutputChannel;
  const host = {
    request: request as <R>(m: string, p: unknown) => Promise<R>,
    storageDir: () => undefined,
    lineage: () => [{ id: 'a', name: 'base-model' }, { id: 'b', name: 'pruned' }] as never,
    openModel: vi.fn(async () => undefined),
    revealInExperiment: vi.fn(async () => undefined),
    addFixVariant: vi.fn(async () => ({ file: '/w/x.bonsai.yaml', variant: 'v-no-fc' })),
    scans: vi.fn(async () => ({ file: '/w/x.bonsai.yaml', scans: [] })),
    runScan: vi.fn(async () => ({ state: 'done' as const, message: 'scan measured: 2 layers × 1 settings' })),
    budgetVariant: vi.fn(async () => ({ file: '/w/x.bonsai.yaml', variant: 'budget-1MB' })),
    log,
  };
  return { pm: new PanelManager(vscode.Uri.file('/ext'), host), host, log };
}

const settle = () => new Promise((r) => setTimeout(r, 10));

describe('PanelManager', () => {
  it('opens one Model Map, with a nonce CSP page loading its bundle', () => {
    const { pm } = manager(async () => ({}));
    pm.open('modelMap');
    pm.open('modelMap', { focus: 'b' });
    expect(__panels).toHaveLength(1);
    const p = __panels[0]!;
    expect(p.viewType).toBe('bonsai.modelMap');
    expect(p.revealed).toBe(1);
    expect(p.webview.html).toMatch(/script-src 'nonce-([A-Za-z0-9]+)'[\s\S]*<script nonce="\1" src="file:\/\/\/ext\/dist\/webview\/modelMap.js">/);
    expect(p.posted).toContainEqual({ type: 'event', name: 'focus', data: { id: 'b' } });
  });

  it('names comparison panels by their models', () => {
    const { pm } = manager(async () => ({}));
    pm.open('behaviors', { models: ['a', 'b'] });
    expect(__panels[0]!.title).toBe('Behaviors: base-model ↔ pruned');
  });

  it('streams compare pages as ArrayBuffers, then replies to the request id', async () => {
    const calls: [string, unknown][] = [];
    const { pm } = manager(async (method, params) => {
      calls.push([method, params]);
      if (method === 'bonsai/compare/weights') return { resultId: 'r1', page: 0, pages: 2, done: false, data: b64([1, 2, 3]) } satisfies ResultRef;
      return { resultId: 'r1', page: 1, pages: 2, done: true, data: b64([4, 5]) } satisfies ResultRef;
    });
    pm.open('layers', { models: ['a', 'b'] });
    const p = __panels[0] as FakePanel;
    p.send({ type: 'request', id: 7, method: 'compare', params: { kind: 'weights', base: 'a', models: ['b'] } });
    await settle();
    expect(calls).toEqual([
      ['bonsai/compare/weights', { base: 'a', models: ['b'] }],
      ['bonsai/result/page', { resultId: 'r1', page: 1 }],
    ]);
    const pages = p.posted.filter((m) => (m as { name?: string }).name === 'resultPage') as { data: { requestId: number; page: number; bytes: ArrayBuffer } }[];
    expect(pages.map((m) => [m.data.requestId, m.data.page, [...new Uint8Array(m.data.bytes)]])).toEqual([
      [7, 0, [1, 2, 3]],
      [7, 1, [4, 5]],
    ]);
    expect(pages[0]!.data.bytes).toBeInstanceOf(ArrayBuffer);
    expect(p.posted.at(-1)).toEqual({ type: 'reply', id: 7, result: { resultId: 'r1', pages: 2 } });
  });

  it('forwards heatmap tile requests: weights by default, activations with their instances', async () => {
    const calls: [string, unknown][] = [];
    const { pm } = manager(async (method, params) => {
      calls.push([method, params]);
      return { resultId: `t${calls.length}`, page: 0, pages: 1, done: true, data: b64([9]) } satisfies ResultRef;
    });
    pm.open('layers', { models: ['a', 'b'] });
    const p = __panels[0] as FakePanel;
    const window = { level: 1, x0: 0, y0: 0, x1: 4, y1: 2 };
    p.send({ type: 'request', id: 1, method: 'tiles', params: { model: 'a', tensor: 'fc.weight', other: 'b', ...window } });
    p.send({ type: 'request', id: 2, method: 'tiles', params: { model: 'b', tensor: 'encoder.norm', source: 'activation', instances: ['i3', 'i1'], ...window } });
    await settle();
    expect(calls).toEqual([
      ['bonsai/tensor/tiles', { model: 'a', tensor: 'fc.weight', other: 'b', source: 'weight', ...window }],
      ['bonsai/tensor/tiles', { model: 'b', tensor: 'encoder.norm', source: 'activation', instances: ['i3', 'i1'], ...window }],
    ]);
    const replies = p.posted.filter((m) => (m as { type?: string }).type === 'reply') as { id: number; result: { resultId: string; pages: ArrayBuffer[] } }[];
    expect(replies.map((r) => [r.id, r.result.resultId, r.result.pages.map((b) => [...new Uint8Array(b)])])).toEqual([
      [1, 't1', [[9]]],
      [2, 't2', [[9]]],
    ]);
  });

  it('answers a failing request with an error of the same id, and ignores malformed messages', async () => {
    const { pm, log } = manager(async () => {
      throw Object.assign(new Error('Workspace Trust is required'), { code: -32001 });
    });
    pm.open('behaviors', { models: ['a', 'b'] });
    const p = __panels[0] as FakePanel;
    p.send({ type: 'request', id: 3, method: 'compare', params: { kind: 'behavior', base: 'a', models: ['b'] } });
    p.send({ type: 'request', id: 'x' });
    await settle();
    expect(p.posted).toContainEqual({ type: 'error', id: 3, error: { message: 'Workspace Trust is required', code: -32001 } });
    expect(log.warn).toHaveBeenCalledWith('behaviors: ignored malformed message from the webview');
  });

  describe('Cancel reaches the server job', () => {
    type Call = [string, unknown, vscode.CancellationToken | undefined];
    /** A server whose comparison answers at once with its job id, then holds page 0 until the
     * request is cancelled ($/cancelRequest), answering it as LSP does: error -32800. */
    function slowServer(firstReply: 'now' | 'held' = 'now') {
      const calls: Call[] = [];
      let releaseFirst: (() => void) | undefined;
      const held = (token: vscode.CancellationToken | undefined) =>
        new Promise<never>((_resolve, reject) => {
          token?.onCancellationRequested(() => reject(Object.assign(new Error('cancelled'), { code: -32800 })));
        });
      const request = async (method: string, params: unknown, token?: vscode.CancellationToken): Promise<unknown> => {
        calls.push([method, params, token]);
        if (method === 'bonsai/cancel') return { cancelled: true };
        const ref: ResultRef = { resultId: 'r9', jobId: 'j5', page: 0, pages: 0, done: false };
        if (method === 'bonsai/compare/activations') {
          if (firstReply === 'now') return ref;
          await new Promise<void>((r) => (releaseFirst = r)); // the reply races the cancel
          return ref;
        }
        return held(token);
      };
      return { calls, request, releaseFirst: () => releaseFirst?.() };
    }
    const compare = { type: 'request', id: 4, method: 'compare', params: { kind: 'activations', base: 'a', models: ['b'] } };
    const names = (calls: Call[]) => calls.map(([m, p]) => [m, p]);
    /** Opens `view` on a and b and sends it the comparison request (id 4). */
    async function comparing(request: ReturnType<typeof slowServer>['request'], view: 'layers' | 'behaviors'): Promise<FakePanel> {
      const { pm } = manager(request);
      pm.open(view, { models: ['a', 'b'] });
      const p = __panels[0] as FakePanel;
      p.send(compare);
      await settle();
      return p;
    }

    it("the panel's Cancel sends bonsai/cancel with the result's job id and stops fetching pages", async () => {
      const server = slowServer();
      const p = await comparing(server.request, 'layers');
      p.send({ type: 'request', id: 5, method: 'cancel', params: { requestId: 4 } });
      await settle();
      expect(names(server.calls)).toEqual([
        ['bonsai/compare/activations', { base: 'a', models: ['b'] }],
        ['bonsai/result/page', { resultId: 'r9', page: 0 }],
        ['bonsai/cancel', { jobId: 'j5' }],
      ]);
      expect(server.calls[1]![2]!.isCancellationRequested).toBe(true); // the page wait is cancelled too
      expect(p.posted).toContainEqual({ type: 'reply', id: 4, result: { resultId: 'r9', pages: 0, cancelled: true } });
      expect(p.posted).toContainEqual({ type: 'reply', id: 5, result: { cancelled: true } });
      // a second Cancel of the same request has nothing left to stop
      p.send({ type: 'request', id: 6, method: 'cancel', params: { requestId: 4 } });
      await settle();
      expect(p.posted.at(-1)).toEqual({ type: 'reply', id: 6, result: { cancelled: false } });
      expect(server.calls.filter(([m]) => m === 'bonsai/cancel')).toHaveLength(1);
    });

    it('a Cancel before the first reply cancels the request, and the job its late reply names', async () => {
      const server = slowServer('held');
      const p = await comparing(server.request, 'behaviors');
      p.send({ type: 'request', id: 5, method: 'cancel', params: { requestId: 4 } });
      await settle();
      expect(server.calls[0]![2]!.isCancellationRequested).toBe(true); // $/cancelRequest
      expect(names(server.calls)).toEqual([['bonsai/compare/activations', { base: 'a', models: ['b'] }]]);
      server.releaseFirst();
      await settle();
      expect(names(server.calls)).toEqual([
        ['bonsai/compare/activations', { base: 'a', models: ['b'] }],
        ['bonsai/cancel', { jobId: 'j5' }],
      ]);
      expect(p.posted).toContainEqual({ type: 'reply', id: 4, result: { resultId: 'r9', pages: 0, cancelled: true } });
    });

    it('closing a panel with a comparison in flight cancels its job', async () => {
      const server = slowServer();
      const p = await comparing(server.request, 'layers');
      const before = p.posted.length;
      p.dispose();
      await settle();
      expect(names(server.calls)).toEqual([
        ['bonsai/compare/activations', { base: 'a', models: ['b'] }],
        ['bonsai/result/page', { resultId: 'r9', page: 0 }],
        ['bonsai/cancel', { jobId: 'j5' }],
      ]);
      expect(p.posted).toHaveLength(before); // nothing posted to a closed panel
    });

    it('a job cancelled on the server ends the comparison as cancelled, not as an error', async () => {
      const calls: string[] = [];
      const { pm } = manager(async (method) => {
        calls.push(method);
        if (method === 'bonsai/compare/weights') return { resultId: 'r1', jobId: 'j2', page: 0, pages: 1, done: false, data: b64([1]) } satisfies ResultRef;
        throw Object.assign(new Error('result r1 was cancelled before page 1 was computed'), { code: -32800 });
      });
      pm.open('layers', { models: ['a', 'b'] });
      const p = __panels[0] as FakePanel;
      p.send({ type: 'request', id: 8, method: 'compare', params: { kind: 'weights', base: 'a', models: ['b'] } });
      await settle();
      expect(calls).toEqual(['bonsai/compare/weights', 'bonsai/result/page']);
      expect(p.posted.at(-1)).toEqual({ type: 'reply', id: 8, result: { resultId: 'r1', pages: 1, cancelled: true } });
    });
  });

  it("passes a layer's one-click fix to the host, checked: it is untrusted input", async () => {
    const { pm, host } = manager(async () => ({}));
    pm.open('layers', { models: ['a', 'b'] });
    const p = __panels[0] as FakePanel;
    p.send({ type: 'request', id: 3, method: 'addFixVariant', params: { model: 'b', action: 'exclude', patterns: ['fc.*'] } });
    p.send({ type: 'request', id: 4, method: 'addFixVariant', params: { model: 'b', action: 'delete', patterns: ['fc.*'] } as never });
    p.send({ type: 'request', id: 5, method: 'addFixVariant', params: { model: 'b', action: 'restore', patterns: [] } });
    await settle();
    expect(host.addFixVariant.mock.calls).toEqual([[{ model: 'b', action: 'exclude', patterns: ['fc.*'] }]]);
    expect(p.posted).toContainEqual({ type: 'reply', id: 3, result: { file: '/w/x.bonsai.yaml', variant: 'v-no-fc' } });
    const errors = p.posted.filter((m) => (m as { type: string }).type === 'error').map((m) => (m as { id: number }).id);
    expect(errors).toEqual([4, 5]);
  });

  it('routes the Sensitivity view to the host, checking its untrusted input', async () => {
    const { pm, host } = manager(async () => ({}));
    pm.open('layers', { models: ['a', 'b'] });
    const p = __panels[0] as FakePanel;
    p.send({ type: 'request', id: 1, method: 'scans', params: { model: 'a' } });
    p.send({ type: 'request', id: 2, method: 'runScan', params: { model: 'a' } });
    p.send({ type: 'request', id: 3, method: 'budgetVariant', params: { model: 'a', scan: 's1', budget: 'size', baseBytes: 2000 } });
    p.send({ type: 'request', id: 4, method: 'budgetVariant', params: { model: 'a', scan: 's1', budget: 'speed', baseBytes: 2000 } as never });
    p.send({ type: 'request', id: 5, method: 'scans', params: { model: 7 } as never });
    await settle();
    expect(host.scans.mock.calls).toEqual([['a']]);
    expect(host.runScan.mock.calls).toEqual([['a']]);
    expect(host.budgetVariant.mock.calls).toEqual([[{ model: 'a', scan: 's1', budget: 'size', baseBytes: 2000 }]]);
    expect(p.posted).toContainEqual({ type: 'reply', id: 2, result: { state: 'done', message: 'scan measured: 2 layers × 1 settings' } });
    expect(p.posted).toContainEqual({ type: 'reply', id: 3, result: { file: '/w/x.bonsai.yaml', variant: 'budget-1MB' } });
    const errors = p.posted.filter((m) => (m as { type: string }).type === 'error').map((m) => (m as { id: number }).id);
    expect(errors).toEqual([4, 5]);
  });

  it('restores a panel from its serialized state (sanitized)', async () => {
    const { pm } = manager(async () => ({}));
    void pm;
    const restoredPanel = new FakePanel('bonsai.layers', 'Layers');
    await __serializers.get('bonsai.layers')!.deserializeWebviewPanel(restoredPanel, { models: ['a', 'b'], evil: '<script>' });
    expect(restoredPanel.webview.html).toContain('data-state="{&quot;models&quot;:[&quot;a&quot;,&quot;b&quot;]}"');
    expect(restoredPanel.webview.html).toContain('dist/webview/layers.js');
    restoredPanel.send({ type: 'request', id: 1, method: 'lineage', params: {} });
    await settle();
    expect(restoredPanel.posted.at(-1)).toMatchObject({ type: 'reply', id: 1, result: { models: [{ id: 'a' }, { id: 'b' }] } });
  });
});
