// Layers at a glance: modules named by where they are, mask overlap n/a without base zeros, the
// whole model kept out of the "Why?" ranking (issue 19 item 6).
import { describe, expect, it } from 'vitest';
import { maskOverlap, maskOverlapText } from '../../../webview/layers/measures';
import { ModuleTree, moduleLabel } from '../../../webview/layers/tree';

describe('module names', () => {
  it('names an index by its container', () => {
    expect(moduleLabel('features.12')).toBe('features.12');
    expect(moduleLabel('encoder.layer.0')).toBe('layer.0');
    expect(moduleLabel('encoder.layer.0.attention')).toBe('attention');
    expect(moduleLabel('12')).toBe('12');
    expect(moduleLabel('fc1')).toBe('fc1');
  });
  it('labels the tree nodes so', () => {
    const t = new ModuleTree();
    t.addModule('features.3');
    expect(t.nodes.get('features.3')?.label).toBe('features.3');
    expect(t.nodes.get('features')?.label).toBe('features');
  });
});

describe('mask overlap', () => {
  it('is n/a when the base has no zeros, not 0%', () => {
    const m = { zero_both: 0, zero_only_base: 0, zero_only_other: 120 } as never;
    expect(maskOverlap(m)).toBeNull();
    expect(maskOverlapText(m)).toBe('n/a (the base has no zeros)');
  });
  it('is the IoU of the zero masks otherwise', () => {
    const m = { zero_both: 30, zero_only_base: 10, zero_only_other: 60 } as never;
    expect(maskOverlap(m)).toBe(0.3);
    expect(maskOverlapText(m)).toBe('30.0%');
  });
});

describe('Why? ranking', () => {
  it('ranks layers, never the whole model (module "")', async () => {
    const { drillRanking } = await import('../../../webview/layers/drill');
    const acts = { ids: ['i0'], modules: [{ name: '' }, { name: 'fc1' }, { name: 'fc2' }], propagated: new Float32Array([0.9, 0.2, 0.5]), isolated: new Float32Array([0.9, 0.2, 0.5]) };
    const s = { data: new Map([['m', { acts }]]), ui: { mode: 'propagated' } } as never;
    expect(drillRanking(s, ['m'], 'i0')?.top).toEqual(['fc2', 'fc1']);
  });
});

describe('module types', () => {
  it('come from the activation comparison: the base\'s class, else the other model\'s', async () => {
    const { moduleType } = await import('../../../webview/layers/treeview');
    const modules = (entries: [string, { type_base?: string; type_other?: string }][]) => ({ modules: new Map(entries) });
    const p = {
      others: ['a', 'b'],
      state: { index: new Map([['a', modules([['encoder.layer.0.output.LayerNorm', { type_base: 'LayerNorm' }]])], ['b', modules([['extra', { type_other: 'Linear' }]])]]) },
    } as never;
    expect(moduleType(p, 'encoder.layer.0.output.LayerNorm')).toBe('LayerNorm');
    expect(moduleType(p, 'extra')).toBe('Linear');
    expect(moduleType(p, 'nowhere')).toBeUndefined();
  });
});
