// The pure parts of the Layers panel's views: tree cells and keys, the depth profile's note,
// the "Why?" ranking, the detail's tables, the heatmaps' requests, and the comparisons' order.
import { describe, expect, it, vi } from 'vitest';
import { activationHeatmapSection, activationSourceKey, activationTileParams, initialCount, instanceCounts } from '../../../webview/layers/actheat';
import { emptyDepthText } from '../../../webview/layers/depthview';
import { metricRows, removedItems, worstInstances, zeroMasks } from '../../../webview/layers/detail';
import { drillRanking } from '../../../webview/layers/drill';
import { fmtOr } from '../../../webview/shared/format';
import { measure } from '../../../webview/layers/measures';
import { createLayersState, modelName, refreshRows, storeResult } from '../../../webview/layers/state';
import { startComparisons } from '../../../webview/layers/streaming';
import { cellShade, hidesWorse, treeKey, worstShown } from '../../../webview/layers/treeview';
import { weightSourceKey, weightTileParams } from '../../../webview/layers/weightheat';
import { IDS, acts, fakePanel, filled } from './fixtures';

describe('tree cells', () => {
  const rel = measure('relL2');
  const sqnr = measure('sqnr');
  const cos = measure('cosine');

  it('shades a higher-is-worse value against the worst shown, others on their own scale', () => {
    expect(cellShade(rel, 0.2, 0.4)).toBe(0.5);
    expect(cellShade(rel, 0.2, 0)).toBe(0);
    expect(cellShade(sqnr, 10, 0)).toBe(0.75);
    expect(cellShade(sqnr, 50, 0)).toBe(0);
    expect(cellShade(cos, 0.9, 0)).toBeCloseTo(0.1);
    expect(cellShade(cos, -1, 0)).toBe(1);
  });

  it('finds the worst value shown over every model, for higher-is-worse measures only', () => {
    const r1 = new Map([['a', { value: 0.2, rolled: false, worst: 0.2, worstId: 'a' }], ['b', { value: null, rolled: false, worst: null, worstId: null }]]);
    const r2 = new Map([['a', { value: 0.7, rolled: false, worst: 0.7, worstId: 'a' }]]);
    expect(worstShown(rel, [r1, null, r2])).toBe(0.7);
    expect(worstShown(sqnr, [r1, r2])).toBe(0);
  });

  it('flags a row that hides a clearly worse layer', () => {
    expect(hidesWorse(rel, { value: 0.1, rolled: false, worst: 0.2, worstId: 'x.y' }, 'x')).toBe(true);
    expect(hidesWorse(rel, { value: 0.1, rolled: false, worst: 0.14, worstId: 'x.y' }, 'x')).toBe(false);
    expect(hidesWorse(rel, { value: 0.1, rolled: false, worst: 0.9, worstId: 'x' }, 'x')).toBe(false);
    expect(hidesWorse(sqnr, { value: 30, rolled: false, worst: 20, worstId: 'x.y' }, 'x')).toBe(true);
    expect(hidesWorse(sqnr, { value: 30, rolled: false, worst: 29, worstId: 'x.y' }, 'x')).toBe(false);
  });

  it('moves the cursor with the keyboard, and selects with Enter', () => {
    const s = filled();
    s.ui.expanded = new Set(['']);
    const p = fakePanel(s);
    refreshRows(s);
    expect(treeKey(p, 'ArrowDown')).toBe(true);
    expect(s.ui.active).toBe(1);
    expect(treeKey(p, 'ArrowRight')).toBe(true); // opens fc
    expect(s.ui.expanded.has('fc')).toBe(true);
    expect(p.calls).toEqual(['save', 'tree', 'save', 'tree']);
    expect(treeKey(p, 'Enter')).toBe(true);
    expect(s.ui.selected).toBe('fc');
    expect(treeKey(p, 'x')).toBe(false);
    expect(p.calls.slice(-4)).toEqual(['select fc', 'save', 'tree', 'detail']);
  });

  it('after a select, the keyboard moves from its row over the rows the select opened', () => {
    const s = filled();
    s.ui.expanded = new Set(['']);
    const p = fakePanel(s);
    refreshRows(s);
    p.select('fc.weight'); // opens fc: rows '', fc, fc.weight, fc.bias, conv, old
    expect(s.ui.active).toBe(2);
    expect(treeKey(p, 'End')).toBe(true);
    expect(s.rows[s.ui.active]!.node.id).toBe('old');
    expect(treeKey(p, 'ArrowUp')).toBe(true);
    expect(treeKey(p, 'ArrowUp')).toBe(true);
    expect(treeKey(p, 'Enter')).toBe(true);
    expect(s.ui.selected).toBe('fc.bias');
  });
});

describe('depth profile and "Why?"', () => {
  it('says why there is no profile yet', () => {
    const s = createLayersState(['m1'], { measure: 'actRelL2' });
    expect(emptyDepthText(s)).toBe('Waiting for activations…');
    s.progress = { ...s.progress, running: false };
    expect(emptyDepthText(s)).toBe('No activation rel. error per layer yet.');
  });

  it('ranks the layers for one instance by the worst model, and names models that did not sample it', () => {
    const s = createLayersState(['m1', 'm2'], {});
    expect(drillRanking(s, ['m1', 'm2'], 'i3')).toBeNull();
    storeResult(s, 'acts', acts('m1', IDS, 1));
    storeResult(s, 'acts', acts('m2', IDS.slice(0, 2), 10));
    const r = drillRanking(s, ['m1', 'm2'], 'i3')!;
    expect(r.models).toEqual(['m1', 'm2']);
    expect(r.missing).toEqual(['m2']);
    expect(r.top).toEqual(['conv', 'fc']); // conv 0.05 > fc 0.04 at i3
    expect(r.values[0]!.get('fc')).toBeCloseTo(0.04);
    expect(r.values[1]).toBeNull();
    const r1 = drillRanking(s, ['m1', 'm2'], 'i1')!;
    expect(r1.top).toEqual(['fc', 'conv']); // m2's fc at i1 is 0.2
    expect(r1.values[1]!.get('fc')).toBeCloseTo(0.2);
    expect(drillRanking(s, ['m1', 'm2'], 'i1', 1)!.top).toEqual(['fc']);
    expect(fmtOr(null, String)).toBe('—');
    expect(fmtOr(0.5, (x) => x.toFixed(2))).toBe('0.50');
  });
});

describe('layer detail', () => {
  it('lists the metrics of a tensor per model', () => {
    const s = filled();
    const rows = metricRows(s, ['m1', 'm2'], s.tree.get('conv.weight')!);
    expect(rows.map((r) => r.label)).toEqual(['status', 'shape base → other', 'Weight rel. error', 'Weight SQNR', 'Weight cosine', 'Sparsity', 'Mask overlap (IoU)', 'max |diff|']);
    expect(rows[1]!.cells).toEqual(['[4×3] → [2×3]', '[4×3] → [2×3]']);
    expect(rows[2]!.cells).toEqual(['0.300', '0.600']);
    expect(rows.at(-1)!.cells).toEqual(['0.600', '1.20']);
  });

  it('lists a module its activation metrics in the chosen mode, and dashes where a model has none', () => {
    const s = filled();
    const rows = metricRows(s, ['m1', 'm2'], s.tree.get('fc')!);
    const by = Object.fromEntries(rows.map((r) => [r.label, r.cells]));
    expect(by['Activation rel. error (propagated)']).toEqual(['0.100', '—']);
    expect(by['Activation CKA over instances (propagated)']).toEqual(['0.9000', '—']);
    expect(by['Activation sparsity base → model (propagated)']).toEqual(['25.0% → 50.0%', '—']);
    expect(by['Weight rel. error']).toEqual(['0.100', '0.200']);
    s.ui.mode = 'isolated';
    expect(metricRows(s, ['m1'], s.tree.get('fc')!).find((r) => r.label.startsWith('Activation rel. error'))).toEqual({ label: 'Activation rel. error (isolated)', cells: ['—'] });
  });

  it('shows removed channels as strips, or as a count when the result lists no indices', () => {
    const s = filled();
    const items = removedItems(s, ['m1'], s.tree.get('')!, (id) => modelName(s, id));
    expect(items).toEqual([]); // the model's own tensors: none directly under ''
    const conv = removedItems(s, ['m1', 'm2'], s.tree.get('conv')!, (id) => modelName(s, id));
    expect(conv.map((x) => [x.kind, x.who])).toEqual([['strip', 'pruned (weight)'], ['strip', 'quant (weight)']]);
    expect(conv[0]!.kind === 'strip' && conv[0]!.dim.removed).toEqual([1, 3]);
    const old = removedItems(s, ['m1'], s.tree.get('old.weight')!, (id) => modelName(s, id));
    expect(old).toEqual([{ kind: 'count', who: 'pruned', dim: 1, removed: 1, of: 3 }]);
  });

  it('counts zero masks per model, leaving out models without zeros', () => {
    const s = filled();
    expect(zeroMasks(s, ['m1', 'm2'], s.tree.get('fc.weight')!)).toEqual([
      { model: 'm1', both: 3, onlyBase: 1, onlyOther: 2 },
      { model: 'm2', both: 3, onlyBase: 1, onlyOther: 2 },
    ]);
    expect(zeroMasks(s, ['m1', 'm2'], s.tree.get('fc.bias')!)).toEqual([]);
  });

  it('picks the worst tenth of the sample (at least 10) for "Which instances?", worst first', () => {
    const s = filled();
    const worst = worstInstances(s, ['m1'], 'fc');
    expect(worst).toEqual(['i11', 'i10', 'i9', 'i8', 'i7', 'i6', 'i5', 'i4', 'i3', 'i2']);
    // a second model that is worse on the first instances moves them up
    storeResult(s, 'acts', acts('m2', IDS, 1));
    s.data.get('m2')!.acts!.propagated[0] = 5;
    expect(worstInstances(s, ['m1', 'm2'], 'fc')[0]).toBe('i0');
  });
});

describe('heatmap requests', () => {
  const w = { r0: 1, c0: 2, r1: 3, c1: 4 };

  it('asks for a weight difference as base against model, or for the model alone', () => {
    expect(weightTileParams('b', 'm1', 'fc.weight', true, 2, w)).toEqual({ model: 'b', other: 'm1', tensor: 'fc.weight', level: 2, x0: 2, y0: 1, x1: 4, y1: 3 });
    expect(weightTileParams('b', 'm1', 'fc.weight', false, 0, w)).toEqual({ model: 'm1', tensor: 'fc.weight', level: 0, x0: 2, y0: 1, x1: 4, y1: 3 });
    expect(weightSourceKey(true, 'm1', 'fc.weight')).not.toBe(weightSourceKey(false, 'm1', 'fc.weight'));
  });

  it("asks for a module's activations on the chosen instances", () => {
    expect(activationTileParams('b', 'fc', 'diff', 'm1', ['i0', 'i1'], -1, w)).toEqual({ model: 'b', other: 'm1', tensor: 'fc', source: 'activation', instances: ['i0', 'i1'], level: -1, x0: 2, y0: 1, x1: 4, y1: 3 });
    expect(activationTileParams('b', 'fc', 'base', 'm1', ['i0'], 0, w)).toMatchObject({ model: 'b', tensor: 'fc' });
    expect(activationTileParams('b', 'fc', 'model', 'm1', ['i0'], 0, w)).not.toHaveProperty('other');
    // the base's output is one source whichever model is picked
    expect(activationSourceKey('base', 'b', 'm1', 'fc', 16)).toBe(activationSourceKey('base', 'b', 'm2', 'fc', 16));
    expect(activationSourceKey('model', 'b', 'm1', 'fc', 16)).not.toBe(activationSourceKey('model', 'b', 'm2', 'fc', 16));
    expect(activationSourceKey('diff', 'b', 'm1', 'fc', 16)).not.toBe(activationSourceKey('diff', 'b', 'm1', 'fc', 32));
  });

  it('offers instance counts up to the sample (at most 256) and keeps a saved one that is offered', () => {
    expect(instanceCounts(12)).toEqual([8, 12]);
    expect(instanceCounts(16)).toEqual([8, 16]);
    expect(instanceCounts(5)).toEqual([5]);
    expect(instanceCounts(1000)).toEqual([8, 16, 32, 64, 128, 256]);
    expect(initialCount([8, 16, 32], 32)).toBe(32);
    expect(initialCount([8, 16, 32], 64)).toBe(16);
    expect(initialCount([8, 12], 16)).toBe(12);
    expect(initialCount([5], 16)).toBe(5);
  });

  it('adds no activation heatmap for a module no model compared', () => {
    const s = filled();
    const parts: Node[] = [];
    activationHeatmapSection(fakePanel(s), 'old', parts);
    expect(parts).toEqual([]);
  });
});

describe('streaming the comparisons', () => {
  /** The compare requests in order; each resolves when the test says. */
  function scripted() {
    const pending: { params: { kind: string }; resolve: (r: { resultId: string; pages: number; cancelled?: boolean }) => void; reject: (e: Error) => void }[] = [];
    const request = vi.fn((method: string, params: { kind: string }) => {
      if (method !== 'compare') return Promise.resolve({ cancelled: true });
      return new Promise((resolve, reject) => pending.push({ params, resolve, reject }));
    });
    return { request, pending };
  }
  const flush = () => new Promise((r) => setTimeout(r, 0));

  it('compares weights, then activations, and ends the progress line', async () => {
    const s = createLayersState(['m1', 'm2'], {});
    const { request, pending } = scripted();
    const p = fakePanel(s, request);
    startComparisons(p);
    expect(pending.map((x) => x.params)).toEqual([{ kind: 'weights', base: 'b', models: ['m1', 'm2'] }]);
    pending[0]!.resolve({ resultId: 'r1', pages: 0 });
    await flush();
    expect(pending.map((x) => x.params.kind)).toEqual(['weights', 'activations']);
    pending[1]!.resolve({ resultId: 'r2', pages: 0 });
    await flush();
    expect(p.calls).toEqual(['progress Comparing weights… 0/2', 'progress Comparing activations… 0/2',
      'progress Compared weights and activations of 0/2 done']);
  });

  it('resumes after a cancel with only the models whose results are not in, keeping the rest', async () => {
    // cancelled after both weights and m1's activations came in (the state `filled` holds)
    const s = filled();
    s.progress = { label: 'Cancelled:', received: 1, expected: 2, running: false, cancelled: true };
    const { request, pending } = scripted();
    const p = fakePanel(s, request);
    startComparisons(p);
    await flush();
    // no weights asked again: both are in; activations of m2 alone
    expect(pending.map((x) => x.params)).toEqual([{ kind: 'activations', base: 'b', models: ['m2'] }]);
    expect(p.calls).toEqual(['progress Comparing weights… 2/2 done', 'progress Comparing activations… 1/2']);
    pending[0]!.resolve({ resultId: 'r3', pages: 0 });
    await flush();
    expect(s.progress).toMatchObject({ label: 'Compared weights and activations of', running: false, cancelled: false });
    expect(s.data.get('m1')!.acts).toBeDefined(); // what came in before the cancel stays
  });

  it('a cancel of the activations ends as cancelled, resumable', async () => {
    const s = createLayersState(['m1'], {});
    const { request, pending } = scripted();
    const p = fakePanel(s, request);
    startComparisons(p);
    pending[0]!.resolve({ resultId: 'r1', pages: 0 });
    await flush();
    pending[1]!.resolve({ resultId: 'r2', pages: 0, cancelled: true });
    await flush();
    expect(s.progress).toMatchObject({ label: 'Cancelled:', running: false, cancelled: true });
  });

  it('does not start the activations when the weights were cancelled on the server', async () => {
    const s = createLayersState(['m1'], {});
    const { request, pending } = scripted();
    const p = fakePanel(s, request);
    startComparisons(p);
    pending[0]!.resolve({ resultId: 'r1', pages: 0, cancelled: true });
    await flush();
    expect(pending).toHaveLength(1);
    expect(s.progress).toMatchObject({ label: 'Cancelled:', running: false });
  });

  it('stops on an error and says so', async () => {
    const s = createLayersState(['m1'], {});
    const { request, pending } = scripted();
    const p = fakePanel(s, request);
    startComparisons(p);
    pending[0]!.reject(new Error('out of memory'));
    await flush();
    expect(s.progress).toMatchObject({ label: 'Stopped:', running: false });
    // (the panel compares its two models: the counts are of those)
    expect(p.calls).toEqual(['progress Comparing weights… 0/2', 'progress Stopped: 0/2 done', 'error Error: out of memory', 'depth', 'drill']);
  });
});
