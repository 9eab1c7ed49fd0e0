// Bonsai: Measure Latency: the tree's selection (or a multi-pick) goes to the server as one
// bonsai/model/measure request, a job that measures each model with its base in turn.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import { Commands, type CommandDeps } from '../../src/commands';
import type { LineageNode } from '../../src/lineage/model';
import * as P from '../../shared/protocol';

type Mocked = ReturnType<typeof vi.fn>;
const window = vscode.window as unknown as { showQuickPick: Mocked };

const metric = (value: number, noisy: boolean): P.MetricInfo => ({ key: 'latency', name: 'latency', value, unit: 'ms', higherIsBetter: false, headline: true, spread: 1, noisy });
const model = (id: string, status: P.ModelStatus, metrics: P.MetricInfo[] = []): P.ModelInfo =>
  ({ id, name: `m-${id}`, parent: null, op: null, params: {}, status, metrics, created: '2026-01-01' }) as P.ModelInfo;
const node = (m: P.ModelInfo): LineageNode => ({ model: m, children: [], depth: 0 });

function commands(request: Mocked, models: P.ModelInfo[] = [], selection: LineageNode[] = []): Commands {
  const server = { request, log: { info: vi.fn(), error: vi.fn() } };
  return new Commands({ server, lineage: { models }, treeView: { selection } } as unknown as CommandDeps);
}

describe('measure latency', () => {
  beforeEach(() => {
    window.showQuickPick = vi.fn(async () => undefined);
  });

  it('sends the selected models in one request', async () => {
    const request = vi.fn(async () => ({ jobId: 'j1' }));
    await commands(request).measureLatency([node(model('a', 'ok')), node(model('b', 'stale'))]);
    expect(request).toHaveBeenCalledWith(P.MODEL_MEASURE, { ids: ['a', 'b'] });
    expect(P.problem((request.mock.calls[0] as unknown[])[1], P.Shapes.MeasureParams)).toBeUndefined();
    expect(window.showQuickPick).not.toHaveBeenCalled();
  });

  it("uses the tree's selection when called from its toolbar", async () => {
    const request = vi.fn(async () => ({ jobId: 'j1' }));
    await commands(request, [], [node(model('s', 'ok'))]).measureLatency();
    expect(request).toHaveBeenCalledWith(P.MODEL_MEASURE, { ids: ['s'] });
  });

  it('offers measurable models (latency shown, noisy marked) when nothing is selected', async () => {
    const request = vi.fn(async () => ({ jobId: 'j1' }));
    const models = [model('a', 'ok', [metric(3.16, false)]), model('b', 'ok', [metric(3.9, true)]), model('c', 'broken'), model('d', 'running')];
    window.showQuickPick = vi.fn(async (items: { model: P.ModelInfo }[]) => items.slice(0, 2));
    await commands(request, models).measureLatency();
    const [items, options] = window.showQuickPick.mock.calls[0]!;
    expect(items.map((i: { label: string; description: string }) => [i.label, i.description])).toEqual([
      ['m-a', '3.16 ms'],
      ['m-b', '~3.90 ms (noisy)'],
    ]);
    expect(options.canPickMany).toBe(true);
    expect(request).toHaveBeenCalledWith(P.MODEL_MEASURE, { ids: ['a', 'b'] });
  });

  it('sends nothing when the pick is dismissed', async () => {
    const request = vi.fn();
    await commands(request, [model('a', 'ok')]).measureLatency();
    expect(request).not.toHaveBeenCalled();
  });
});
