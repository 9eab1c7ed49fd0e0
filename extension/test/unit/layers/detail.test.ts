import { describe, expect, it } from 'vitest';
import { activationLayout, describeCell, unflatten } from '../../../webview/layers/actlayout';
import { cellTitle, headBlock, indexRanges, removedChannels, runs } from '../../../webview/layers/channels';
import { activationHists, activationSparsity, activationsOf, type PairMetrics, type WeightTensor } from '../../../webview/layers/data';
import { pyramidOfMeta, robustMax, valueAt, type TileData } from '../../../webview/layers/tiles';

const pm = (extra: Partial<PairMetrics> = {}): PairMetrics => ({ n: 10, rel_l2: 0.1, sqnr_db: 20, identical: false, cosine: 0.99, max_abs_diff: 0.3, ...extra });
const t32 = (a: number[], shape: number[]) => ({ dtype: 'float32' as const, shape, data: new Float32Array(a) });

// An activations envelope as H2's server sends it: 3 modules, 4 value bins, 2 rel bins; the middle
// module was not compared (zero rows).
const withHists = activationsOf({
  kind: 'activations',
  meta: {
    other: 'm1',
    ids: ['a', 'b'],
    value_bins: 4,
    rel_edges_log10: [-2, -1, 0],
    modules: [
      { name: 'fc', status: 'ok', value_range: 2.5, propagated: pm({ sparsity_base: 0.25, sparsity_other: 0.5, cka: 0.9, cka_instances: 0.95 }) },
      { name: 'skip', status: 'mismatch' },
      { name: 'relu', status: 'ok', value_range: 1, propagated: pm({ sparsity_base: 0, sparsity_other: 0.125 }), isolated: pm() },
    ],
  },
  tensors: {
    propagated: t32([0, 0, 0, 0, 0, 0], [3, 2]),
    isolated: t32([0, 0, 0, 0, 0, 0], [3, 2]),
    value_hist_base: t32([1, 2, 3, 4, 0, 0, 0, 0, 0, 5, 5, 0], [3, 4]),
    value_hist_other: t32([2, 2, 2, 4, 0, 0, 0, 0, 0, 4, 6, 0], [3, 4]),
    rel_hist: t32([7, 3, 0, 0, 0, 9], [3, 2]),
  },
});

describe('activation histograms and sparsity in the layer detail', () => {
  it('reads the value and relative-change rows of a module', () => {
    const h = activationHists(withHists, 'fc')!;
    expect(Array.from(h.values!.base)).toEqual([1, 2, 3, 4]);
    expect(Array.from(h.values!.other)).toEqual([2, 2, 2, 4]);
    expect(h.values!.range).toBe(2.5);
    expect(Array.from(h.rel!.counts)).toEqual([7, 3]);
    expect(h.rel!.edges).toEqual([-2, 0]);
    const r = activationHists(withHists, 'relu')!;
    expect(Array.from(r.values!.other)).toEqual([0, 4, 6, 0]);
    expect(Array.from(r.rel!.counts)).toEqual([0, 9]);
  });

  it('has nothing for a module not compared, or not in the result', () => {
    expect(activationHists(withHists, 'skip')).toBeNull();
    expect(activationHists(withHists, 'nope')).toBeNull();
  });

  it('degrades quietly on an older result without histograms', () => {
    const old = activationsOf({
      kind: 'activations',
      meta: { other: 'm1', ids: ['a'], modules: [{ name: 'fc', status: 'ok', propagated: pm() }] },
      tensors: { propagated: t32([0.1], [1, 1]), isolated: t32([0.1], [1, 1]) },
    });
    expect(old.relEdgesLog10).toEqual([]);
    expect(activationHists(old, 'fc')).toBeNull();
    expect(activationSparsity(old.modules[0], 'propagated')).toBeNull();
  });

  it('drops a histogram whose rows do not match the module list or whose range is missing', () => {
    const bad = activationsOf({
      kind: 'activations',
      meta: { other: 'm1', ids: ['a'], rel_edges_log10: [-2, -1, 0], modules: [{ name: 'fc', status: 'ok' }, { name: 'g', status: 'ok', value_range: 1 }] },
      tensors: {
        propagated: t32([0, 0], [2, 1]),
        isolated: t32([0, 0], [2, 1]),
        value_hist_base: t32([1, 1, 1, 1], [2, 2]),
        value_hist_other: t32([1, 1, 1, 1], [2, 2]),
        rel_hist: t32([1, 1, 1], [1, 3]), // wrong rows
      },
    });
    expect(activationHists(bad, 'fc')).toBeNull(); // no value_range, no usable rel_hist
    const g = activationHists(bad, 'g')!;
    expect(g.rel).toBeNull();
    expect(Array.from(g.values!.base)).toEqual([1, 1]);
  });

  it('reads activation sparsity per mode', () => {
    expect(activationSparsity(withHists.modules[0], 'propagated')).toEqual({ base: 0.25, other: 0.5 });
    expect(activationSparsity(withHists.modules[0], 'isolated')).toBeNull();
    expect(activationSparsity(withHists.modules[2], 'propagated')).toEqual({ base: 0, other: 0.125 });
    expect(withHists.modules[0]!.propagated!.cka_instances).toBe(0.95);
  });
});

const wt = (name: string, shape: number[], extra: Partial<WeightTensor>): WeightTensor => ({ name, status: 'ok', shape_base: shape, shape_other: shape, ...extra });

describe('removed channels and heads', () => {
  it('writes indices as ranges', () => {
    expect(indexRanges([3, 4, 5, 6, 7, 12])).toBe('3\u20137, 12');
    expect(indexRanges([12, 3, 4, 3])).toBe('3\u20134, 12');
    expect(indexRanges([0])).toBe('0');
    expect(indexRanges([])).toBe('');
    expect(runs(5, new Set([1, 2]))).toEqual([
      { start: 0, end: 1, removed: false },
      { start: 1, end: 3, removed: true },
      { start: 3, end: 5, removed: false },
    ]);
  });

  it('gives one strip cell per base channel of a conv, from removed_indices', () => {
    const t = wt('conv1.weight', [8, 1, 3, 3], { shape_other: [6, 1, 3, 3], removed: { '0': 2 }, kept_indices: { '0': [0, 2, 3, 4, 6, 7] }, removed_indices: { '0': [1, 5] } });
    const [d] = removedChannels(t);
    expect(d).toMatchObject({ dim: 0, size: 8, removed: [1, 5], block: 1, unit: 'output channel', ranges: '1, 5' });
    expect(d!.cells.map((c) => (c.removed ? 'x' : '.')).join('')).toBe('.x...x..');
    expect(cellTitle(d!, 5)).toBe('output channel 5: removed');
    expect(cellTitle(d!, 0)).toBe('output channel 0: kept');
  });

  it('falls back to kept_indices, and leaves out dims with only a count', () => {
    const t = wt('fc2.weight', [4, 10], { shape_other: [4, 6], removed: { '1': 4 }, kept_indices: { '1': [0, 1, 2, 7, 8, 9] } });
    const [d] = removedChannels(t);
    expect(d).toMatchObject({ dim: 1, removed: [3, 4, 5, 6], unit: 'input', ranges: '3\u20136' });
    expect(removedChannels(wt('fc2.weight', [4, 10], { removed: { '1': 4 } }))).toEqual([]);
    expect(removedChannels(wt('fc2.weight', [4, 10], {}))).toEqual([]);
  });

  it('groups attention q/k/v rows by head', () => {
    // 4 heads of 3 channels; heads 1 and 3 removed
    const name = 'encoder.layer.0.attention.self.query.weight';
    const rm = [3, 4, 5, 9, 10, 11];
    expect(headBlock(name, 0, 12, new Set(rm))).toBe(3);
    expect(headBlock('encoder.layer.0.intermediate.dense.weight', 0, 12, new Set(rm))).toBe(1);
    const [d] = removedChannels(wt(name, [12, 12], { shape_other: [6, 12], removed: { '0': 6 }, removed_indices: { '0': rm } }));
    expect(d).toMatchObject({ block: 3, unit: 'head', ranges: '1, 3' });
    expect(d!.cells.map((c) => [c.start, c.end, c.removed])).toEqual([[0, 3, false], [3, 6, true], [6, 9, false], [9, 12, true]]);
    expect(cellTitle(d!, 3)).toBe('head 3 (channels 9\u201311): removed');
    // as prune.structured {structures: heads} records it on a 4-head BERT (head size 12, heads 0 and 2 removed)
    const kept = [...Array(12).keys()].map((i) => i + 12).concat([...Array(12).keys()].map((i) => i + 36));
    const [b] = removedChannels(wt('encoder.layer.0.attention.self.value.bias', [48], { shape_other: [24], removed: { '0': 24 }, kept_indices: { '0': kept } }));
    expect(b).toMatchObject({ block: 12, unit: 'head', ranges: '0, 2' });
    // the output projection's columns
    const [o] = removedChannels(wt('encoder.layer.0.attention.output.dense.weight', [12, 12], { removed: { '1': 6 }, removed_indices: { '1': rm } }));
    expect(o).toMatchObject({ dim: 1, block: 3, unit: 'head', inferred: true });
  });

  it("takes the head size the result names over the inference (adjacent heads removed)", () => {
    // 4 heads of 3 channels, heads 0 and 1 removed: the runs alone (6 removed, 6 kept) read as 2 heads of 6
    const name = 'encoder.layer.0.attention.self.query.weight';
    const rm = [0, 1, 2, 3, 4, 5];
    const [guess] = removedChannels(wt(name, [12, 12], { removed: { '0': 6 }, removed_indices: { '0': rm } }));
    expect(guess).toMatchObject({ block: 6, inferred: true, ranges: '0' });
    const [d] = removedChannels(wt(name, [12, 12], { removed: { '0': 6 }, removed_indices: { '0': rm }, group_size: { '0': 3 } }));
    expect(d).toMatchObject({ block: 3, inferred: false, unit: 'head', ranges: '0\u20131' });
    expect(d!.cells.map((c) => (c.removed ? 'x' : '.')).join('')).toBe('xx..');
    // a size that does not divide the dim is ignored
    const [bad] = removedChannels(wt(name, [12, 12], { removed: { '0': 6 }, removed_indices: { '0': rm }, group_size: { '0': 5 } }));
    expect(bad).toMatchObject({ block: 6, inferred: true });
  });
});

describe('activation heatmap layout', () => {
  it('names the axes of a sequence output', () => {
    const l = activationLayout([16, 20, 384], ['0', '1', '15']);
    expect(l.rows).toBe('16 instances (instances 0 \u2026 15), in sample order');
    expect(l.cols).toBe('20 positions \u00d7 384 features, flattened (column = position\u00b7384 + feature)');
    expect(describeCell(l, ['a', 'b'], 1, 385)).toBe('instance b \u00b7 position 1 \u00b7 feature 1');
  });
  it('says which rows were zero-padded, and marks padding cells', () => {
    const l = activationLayout([2, 3, 4], ['a', 'b'], [3, 2]);
    expect(l.rows).toBe('2 instances (instances a \u2026 b), in sample order; shorter ones zero-padded to 3 positions (2 lengths 2\u20133)');
    expect(describeCell(l, ['a', 'b'], 1, 4 * 2 + 1)).toBe('instance b \u00b7 position 2 \u00b7 feature 1 (padding: this instance has 2)');
    expect(describeCell(l, ['a', 'b'], 0, 4 * 2 + 1)).toBe('instance a \u00b7 position 2 \u00b7 feature 1');
    expect(activationLayout([2, 3, 4], ['a', 'b'], [3, 3]).lengths).toBeUndefined();
  });
  it('names the axes of conv, vector and scalar outputs', () => {
    const c = activationLayout([2, 8, 4, 4], ['x', 'y']);
    expect(c.cols).toBe('8 channels \u00d7 4 y \u00d7 4 x, flattened (column = channel\u00b716 + y\u00b74 + x)');
    expect(describeCell(c, ['x', 'y'], 0, 16 * 3 + 4 * 2 + 1)).toBe('instance x \u00b7 channel 3 \u00b7 y 2 \u00b7 x 1');
    const v = activationLayout([1, 10], ['7']);
    expect(v).toMatchObject({ rows: '1 instance (instance 7), in sample order', cols: '10 features' });
    const s = activationLayout([3], ['a', 'b', 'c']);
    expect(s.rows).toBe('one row');
    expect(describeCell(s, ['a', 'b', 'c'], 0, 2)).toBe('instance c');
    expect(unflatten(23, [2, 3, 4])).toEqual([1, 2, 3]);
  });
});

describe('tile results', () => {
  it('reads the pyramid of a tiles result', () => {
    expect(pyramidOfMeta({ rows: 16, cols: 7680, tile: 256, levels: 5, shape: [16, 20, 384], level: 5 })).toEqual({ rows: 16, cols: 7680, tile: 256, levels: 5, shape: [16, 20, 384] });
    expect(pyramidOfMeta({ rows: 16, cols: 7680, tile: 256, shape: [16, 20, 384] })).toBeNull();
  });
  it('scales colours to a high quantile of |x|, not to outliers', () => {
    const mk = (vals: number[]): TileData => ({ level: 0, ty: 0, tx: 0, rows: 1, cols: vals.length, mean: new Float32Array(vals), maxabs: new Float32Array(vals.map(Math.abs)) });
    const vals = Array.from({ length: 99 }, (_, i) => (i % 2 ? -(i + 1) : i + 1) / 100); // |x| = 0.01 … 0.99
    expect(robustMax([mk(vals), mk([NaN, 25])], 0.99)).toBe(Math.fround(0.99)); // 100 finite values: the 99th is 0.99
    expect(robustMax([mk(vals), mk([NaN, 25])], 1)).toBe(25);
    expect(robustMax([mk([NaN])])).toBe(0);
  });
  it('finds the cell under an element at the loaded level', () => {
    const info = { rows: 4, cols: 10, tile: 2, levels: 3 };
    // level 1: cells of 2x2 elements; tile (0, 1) covers rows 0-3, columns 4-7
    const tile: TileData = { level: 1, ty: 0, tx: 1, rows: 2, cols: 2, mean: new Float32Array([1, 2, 3, 4]), maxabs: new Float32Array([5, 6, 7, 8]) };
    expect(valueAt(info, [tile], 3, 6)).toEqual({ mean: 4, maxabs: 8, level: 1 });
    expect(valueAt(info, [tile], 0.5, 4.9)).toEqual({ mean: 1, maxabs: 5, level: 1 });
    expect(valueAt(info, [tile], 0, 1)).toBeNull(); // another tile, not loaded
    expect(valueAt(info, [tile], 4, 6)).toBeNull(); // outside
  });
});
