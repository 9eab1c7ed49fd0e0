// Shared fixtures of the Layers panel tests: two models' weights and activations results, a
// filled state, and a panel whose actions are recorded instead of drawn (no DOM in vitest).
import { expect, vi } from 'vitest';
import { activationsOf, weightsOf, type PairMetrics, type WeightTensor } from '../../../webview/layers/data';
import type { LayersPanel } from '../../../webview/layers/panel';
import { createLayersState, modelName, refreshRows, reindex, selectNode, storeResult, type LayersState } from '../../../webview/layers/state';

export const pm = (rel: number, extra: Partial<PairMetrics> = {}): PairMetrics => ({ n: 10, rel_l2: rel, sqnr_db: 20, identical: false, cosine: 1 - rel, max_abs_diff: rel * 2, ...extra });

export const tensor = (name: string, rel: number, extra: Partial<WeightTensor> = {}): WeightTensor => ({ name, status: 'ok', shape_base: [4, 3], shape_other: [4, 3], metrics: pm(rel), ...extra });

/** A weights result of `other`: fc.weight, fc.bias, conv.weight (2 of 4 output channels removed). */
export const weights = (other: string, scale: number) =>
  weightsOf({
    kind: 'weights',
    meta: {
      other,
      tensors: [
        tensor('fc.weight', 0.1 * scale, { metrics: pm(0.1 * scale, { zero_both: 3, zero_only_base: 1, zero_only_other: 2 }) }),
        tensor('fc.bias', 0.01 * scale),
        tensor('conv.weight', 0.3 * scale, { shape_other: [2, 3], removed: { '0': 2 }, removed_indices: { '0': [1, 3] } }),
        tensor('old.weight', 0.2, { removed: { '1': 1 } }),
      ],
      tree: [
        { path: '', parent: null, params: 30, tensors: 4, not_compared: 0, metrics: pm(0.2 * scale) },
        { path: 'fc', parent: '', params: 15, tensors: 2, not_compared: 0, metrics: pm(0.1 * scale) },
        { path: 'conv', parent: '', params: 12, tensors: 1, not_compared: 0, metrics: pm(0.3 * scale) },
        { path: 'old', parent: '', params: 3, tensors: 1, not_compared: 0, metrics: pm(0.2) },
      ],
    },
    tensors: {},
  });

/** An activations result of `other` over 12 instances; `fc`'s error grows with the instance index. */
export const acts = (other: string, ids: string[], scale: number) => {
  const n = ids.length;
  const fc = ids.map((_, i) => (i + 1) * 0.01 * scale);
  const conv = ids.map(() => 0.05);
  return activationsOf({
    kind: 'activations',
    meta: { other, ids, modules: [{ name: 'fc', status: 'ok', propagated: pm(0.1, { sparsity_base: 0.25, sparsity_other: 0.5, cka_instances: 0.9 }) }, { name: 'conv', status: 'ok', propagated: pm(0.05) }] },
    tensors: {
      propagated: { dtype: 'float32', shape: [2, n], data: new Float32Array([...fc, ...conv]) },
      isolated: { dtype: 'float32', shape: [2, n], data: new Float32Array(2 * n).fill(NaN) },
    },
  });
};

export const IDS = Array.from({ length: 12 }, (_, i) => `i${i}`);

/** A state with weights of m1 and m2 and activations of m1 only. */
export function filled(): LayersState {
  const s = createLayersState(['m1', 'm2'], undefined);
  s.models = [{ id: 'm1', name: 'pruned' }, { id: 'm2', name: 'quant' }] as LayersState['models'];
  for (const [o, k] of [['m1', 1], ['m2', 2]] as const) {
    expect(storeResult(s, 'weights', weights(o, k))).toBe(o);
    reindex(s, o);
  }
  expect(storeResult(s, 'acts', acts('m1', IDS, 1))).toBe('m1');
  reindex(s, 'm1');
  return s;
}

/** A panel over `s` whose actions are recorded (views are not drawn: no DOM here). */
export function fakePanel(s: LayersState, request = vi.fn()): LayersPanel & { calls: string[] } {
  const calls: string[] = [];
  const p = {
    state: s,
    rpc: { request, on: vi.fn(() => () => undefined), peekId: () => 7 } as unknown as LayersPanel['rpc'],
    ids: ['b', 'm1', 'm2'],
    base: 'b',
    others: ['m1', 'm2'],
    name: (id: string) => modelName(s, id),
    save: () => calls.push('save'),
    select: (id: string) => {
      // as the real panel (layers/app.ts): select, save, redraw the tree and the detail
      calls.push(`select ${id}`);
      selectNode(s, id);
      p.save();
      p.show.tree();
      p.show.detail();
    },
    showError: (e: unknown) => calls.push(`error ${String(e)}`),
    show: {
      all: () => calls.push('all'),
      result: (id: string) => calls.push(`result ${id}`),
      progress: () => calls.push(`progress ${s.progress.label} ${s.progress.received}/${s.progress.expected}${s.progress.running ? '' : ' done'}`),
      tree: () => {
        calls.push('tree');
        refreshRows(s);
      },
      detail: () => calls.push('detail'),
      drill: () => calls.push('drill'),
      depth: () => calls.push('depth'),
    },
    calls,
  };
  return p;
}

