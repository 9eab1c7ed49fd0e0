// The Layers panel's state (webview/layers/state.ts): what is saved and restored, what an arrived
// result adds, selection, and the heatmaps' disposal.
import { describe, expect, it, vi } from 'vitest';
import { measure } from '../../../webview/layers/measures';
import { createLayersState, disposeHeatmaps, modelName, refreshRows, resultsCover, savedView, selectNode, storeResult, uiOfSaved } from '../../../webview/layers/state';
import { filled, weights } from './fixtures';

describe('Layers state', () => {
  it('restores saved choices, with defaults for anything missing or malformed', () => {
    const d = uiOfSaved(undefined, ['m1', 'm2']);
    expect(savedView(d)).toEqual({ measure: 'relL2', mode: 'propagated', filter: '', expanded: [''], selected: '', drill: null, heatModel: 'm1', heatDiff: true, actWhat: 'diff', actCount: 16 });
    const bad = uiOfSaved({ measure: 'nope', mode: 'sideways', expanded: 'x', selected: 3, heatModel: 5, heatDiff: 'no', actWhat: 'both', actCount: -2 }, ['m2']);
    expect(savedView(bad)).toMatchObject({ measure: 'relL2', mode: 'propagated', expanded: [''], selected: '', heatModel: 'm2', heatDiff: true, actWhat: 'diff', actCount: 16 });
    const saved = { measure: 'actCka', mode: 'isolated', filter: '/fc/', expanded: ['', 'fc'], selected: 'fc.weight', drill: { instance: 'i3' }, heatModel: 'm2', heatDiff: false, actWhat: 'base', actCount: 64 };
    const ui = uiOfSaved(saved, ['m1', 'm2']);
    expect(ui.measure).toBe(measure('actCka'));
    expect(ui.active).toBe(0);
    expect(savedView(ui)).toEqual(saved);
  });

  it('starts with an empty slot per compared model and the weights comparison running', () => {
    const s = createLayersState(['m1', 'm2'], {});
    expect([...s.data.keys()]).toEqual(['m1', 'm2']);
    expect(s.progress).toEqual({ label: 'Comparing weights…', received: 0, expected: 2, running: true });
    expect(modelName(s, 'm1')).toBe('m1'); // until the lineage names it
    expect(storeResult(s, 'weights', weights('stranger', 1))).toBeNull();
    expect(s.data.has('stranger')).toBe(false);
  });

  it('indexes arrived results and grows the module tree from weights and activations', () => {
    const s = filled();
    expect(modelName(s, 'm2')).toBe('quant');
    expect(s.tree.order()).toEqual(['', 'fc', 'fc.weight', 'fc.bias', 'conv', 'conv.weight', 'old', 'old.weight']);
    expect(s.index.get('m1')!.value('fc', 'module', measure('actRelL2'), 'propagated')).toBeCloseTo(0.1);
    expect(s.index.get('m2')!.value('conv.weight', 'tensor', measure('relL2'), 'propagated')).toBeCloseTo(0.6);
  });

  it('knows which nodes a model\'s results cover (only those redraw the detail)', () => {
    const s = filled();
    expect(resultsCover(s, 'm1', 'fc.weight')).toBe(true); // a tensor
    expect(resultsCover(s, 'm1', 'fc')).toBe(true); // a module
    expect(resultsCover(s, 'm1', 'nope')).toBe(false);
    expect(resultsCover(s, 'stranger', 'fc')).toBe(false);
  });

  it('selecting opens the path to a node and puts the cursor on its row', () => {
    const s = filled();
    s.ui.expanded = new Set(['']);
    selectNode(s, 'conv.weight');
    expect(s.ui.selected).toBe('conv.weight');
    expect([...s.ui.expanded].sort()).toEqual(['', 'conv']);
    expect(refreshRows(s).map((r) => r.node.id)).toEqual(['', 'fc', 'conv', 'conv.weight', 'old']);
    expect(s.ui.active).toBe(3);
    // behind a filter the cursor counts the filtered rows
    s.ui.filter = 'weight';
    selectNode(s, 'fc.weight');
    expect(s.ui.active).toBe(refreshRows(s).findIndex((r) => r.node.id === 'fc.weight'));
    expect(s.rows.every((r) => r.hit || ['', 'fc', 'conv', 'old'].includes(r.node.id))).toBe(true);
  });

  it('computes the rows once per change: a select leaves them current for the tree view', () => {
    const s = filled();
    s.ui.expanded = new Set(['']);
    selectNode(s, 'fc.bias');
    const rows = s.rows;
    expect(rows.map((r) => r.node.id)).toEqual(['', 'fc', 'fc.weight', 'fc.bias', 'conv', 'old']);
    expect(refreshRows(s)).toBe(rows); // nothing changed since: the same rows, not a new walk
    s.ui.expanded.add('conv');
    expect(refreshRows(s).map((r) => r.node.id)).toContain('conv.weight');
    s.ui.filter = 'bias';
    expect(refreshRows(s).map((r) => r.node.id)).toEqual(['', 'fc', 'fc.bias']);
    s.tree.addTensor('fc.extra_bias');
    expect(refreshRows(s).map((r) => r.node.id)).toEqual(['', 'fc', 'fc.bias', 'fc.extra_bias']);
  });

  it('disposes both heatmaps of the detail', () => {
    const s = filled();
    const a = { element: {} as HTMLElement, dispose: vi.fn() };
    const b = { element: {} as HTMLElement, dispose: vi.fn() };
    s.heat = a;
    s.actHeat = b;
    disposeHeatmaps(s);
    expect(a.dispose).toHaveBeenCalledOnce();
    expect(b.dispose).toHaveBeenCalledOnce();
    expect(s.heat).toBeNull();
    expect(s.actHeat).toBeNull();
    disposeHeatmaps(s); // nothing left: no throw
  });
});

