import { encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { activationsOf, weightsOf, type PairMetrics } from '../../../webview/layers/data';
import { depthProfile, rankLayersForInstance, topInstancesForLayer } from '../../../webview/layers/depth';
import { ModelIndex, maskOverlap, measure } from '../../../webview/layers/measures';
import { ModuleTree } from '../../../webview/layers/tree';
import { EnvelopeAssembler, resultsOf } from '../../../webview/shared/stream';

const pm = (rel: number, extra: Partial<PairMetrics> = {}): PairMetrics => ({ n: 10, rel_l2: rel, sqnr_db: -20 * Math.log10(rel), identical: false, cosine: 1 - rel, max_abs_diff: rel, ...extra });
const f32 = (a: number[], shape: number[]) => ({ dtype: 'float32', shape, data: new Uint8Array(new Float32Array(a).buffer) });

// Activations of base vs one model: 4 modules ('' without a name, as the server sends it) x 3 instances.
const acts = activationsOf({
  kind: 'activations',
  meta: {
    other: 'm1',
    ids: ['a', 'b', 'c'],
    modules: [
      { type_base: 'Net', status: 'ok', propagated: pm(0.5) },
      { name: 'l0.fc', type_base: 'Linear', status: 'ok', propagated: pm(0.1), isolated: pm(0.1) },
      { name: 'l0.ln', type_base: 'LayerNorm', status: 'ok', propagated: pm(0.9), isolated: pm(0.8) },
      { name: 'l1.fc', type_base: 'Linear', status: 'ok', propagated: pm(0.4), isolated: pm(0.05) },
    ],
  },
  tensors: {
    propagated: { dtype: 'float32', shape: [4, 3], data: new Float32Array([0.5, 0.4, 0.6, 0.1, 0.2, NaN, 0.9, 0.3, 0.7, 0.4, 0.8, 0.1]) },
    isolated: { dtype: 'float32', shape: [4, 3], data: new Float32Array(12).fill(NaN) },
  },
});

describe('depth profile and drill-down rankings', () => {
  it('reads the root module without a name', () => {
    expect(acts.modules.map((m) => m.name)).toEqual(['', 'l0.fc', 'l0.ln', 'l1.fc']);
  });
  it('ranks layers by one instance, and instances by one layer', () => {
    expect(rankLayersForInstance(acts, 'b', 'propagated')).toEqual([
      { module: 'l1.fc', value: Math.fround(0.8) },
      { module: '', value: Math.fround(0.4) },
      { module: 'l0.ln', value: Math.fround(0.3) },
      { module: 'l0.fc', value: Math.fround(0.2) },
    ]);
    expect(rankLayersForInstance(acts, 'c', 'propagated')!.map((x) => x.module)).toEqual(['l0.ln', '', 'l1.fc']);
    expect(rankLayersForInstance(acts, 'zz', 'propagated')).toBeNull();
    expect(topInstancesForLayer(acts, 'l0.ln', 'propagated', 2)).toEqual([{ id: 'a', value: Math.fround(0.9) }, { id: 'c', value: Math.fround(0.7) }]);
    expect(topInstancesForLayer(acts, 'l0.fc', 'isolated', 5)).toEqual([]);
  });
  it('draws a line per model along depth and marks the norms', () => {
    const tree = new ModuleTree();
    for (const m of acts.modules) tree.addModule(m.name);
    const w = weightsOf({ kind: 'weights', meta: { other: 'm2', tensors: [], tree: [{ path: 'l0.fc', parent: 'l0', params: 4, tensors: 1, not_compared: 0, metrics: pm(0.2) }] }, tensors: {} });
    const models = [{ id: 'm1', index: new ModelIndex({ acts }) }, { id: 'm2', index: new ModelIndex({ weights: w }) }];
    const p = depthProfile(tree, models, measure('actRelL2'), 'propagated');
    expect(p).toEqual({ paths: ['l0.fc', 'l0.ln', 'l1.fc'], series: [{ model: 'm1', values: [0.1, 0.9, 0.4] }, { model: 'm2', values: [null, null, null] }], norms: [1] });
    expect(depthProfile(tree, models, measure('actRelL2'), 'isolated').series[0]!.values).toEqual([0.1, 0.8, 0.05]);
    expect(depthProfile(tree, models, measure('relL2'), 'propagated')).toEqual({ paths: ['l0.fc'], series: [{ model: 'm1', values: [null] }, { model: 'm2', values: [0.2] }], norms: [] });
  });
  it('computes mask overlap as IoU of the zero masks', () => {
    expect(maskOverlap(pm(0, { zero_both: 6, zero_only_base: 2, zero_only_other: 2 }))).toBe(0.6);
    expect(maskOverlap(pm(0, { zero_both: 0, zero_only_base: 0, zero_only_other: 0 }))).toBeNull();
  });
});

describe('result streaming', () => {
  it('passes whole envelopes through and joins split ones', () => {
    const whole = encode({ v: 1, kind: 'weights', meta: { other: 'm1' }, tensors: {} });
    const p0 = encode({ v: 1, kind: 'activations', meta: { other: 'm2' }, tensors: { x: { ...f32([1, 2], [4]), range: [0, 2] } }, page: { index: 0, count: 2 } });
    const p1 = encode({ v: 1, kind: 'activations', meta: {}, tensors: { x: { ...f32([3, 4], [4]), range: [2, 4] } }, page: { index: 1, count: 2 } });
    const asm = new EnvelopeAssembler();
    expect(asm.push(whole)!.meta).toEqual({ other: 'm1' });
    expect(asm.push(p0)).toBeNull();
    const joined = asm.push(p1)!;
    expect([joined.kind, joined.meta, Array.from(joined.tensors.x!.data as Float32Array)]).toEqual(['activations', { other: 'm2' }, [1, 2, 3, 4]]);
    const buf = (u: Uint8Array) => u.slice().buffer;
    expect(resultsOf([buf(whole), buf(p0), buf(p1)]).map((r) => r.kind)).toEqual(['weights', 'activations']);
  });
});
