import { describe, expect, it } from 'vitest';
import { Lineage } from '../../../webview/modelMap/lineage';
import { closestToRoot, groupBars, recipe, whatVaries } from '../../../webview/modelMap/whatVaries';
import { model, sample } from './fixture';

const summary = (vs: ReturnType<typeof whatVaries>) => vs.map((v) => [v.key, v.levels, Object.fromEntries(v.values)]);

describe('what varies', () => {
  const lin = new Lineage(sample());

  it('recipe is the chain of ops from the root', () => {
    expect(recipe(lin, 'p50q4').map((s) => [s.op, s.params])).toEqual([
      ['prune.magnitude', { sparsity: 0.5 }],
      ['quantize.weights', { bits: 4 }],
    ]);
    expect(recipe(lin, 'base')).toEqual([]);
  });

  it('parameters that differ among models that share the ops', () => {
    expect(summary(whatVaries(lin, ['p50q8', 'p50q4', 'p70q8']))).toEqual([
      ['prune.magnitude.sparsity', ['0.5', '0.7'], { p50q8: '0.5', p50q4: '0.5', p70q8: '0.7' }],
      ['quantize.weights.bits', ['4', '8'], { p50q8: '8', p50q4: '4', p70q8: '8' }],
    ]);
  });

  it('ops applied to some models only; their parameters do not vary on their own', () => {
    expect(summary(whatVaries(lin, ['p50', 'p50q8', 'q8']))).toEqual([
      ['prune.magnitude', ['applied', '—'], { p50: 'applied', p50q8: 'applied', q8: '—' }],
      ['quantize.weights', ['applied', '—'], { p50: '—', p50q8: 'applied', q8: 'applied' }],
    ]);
    expect(whatVaries(lin, ['p50q8', 'p70q8', 'p50q8'])).toHaveLength(1);
  });

  it('an op used twice in a chain is a separate variable', () => {
    const l2 = new Lineage([
      model('b', null, null, {}, 0, [1, 1, 1]),
      model('x', 'b', 'quantize.weights', { bits: 8 }, 1, [1, 1, 1]),
      model('y', 'x', 'quantize.weights', { bits: 4 }, 2, [1, 1, 1]),
      model('z', 'x', 'quantize.weights', { bits: 2 }, 3, [1, 1, 1]),
    ]);
    expect(summary(whatVaries(l2, ['y', 'z']))).toEqual([['quantize.weights#2.bits', ['2', '4'], { y: '4', z: '2' }]]);
    expect(summary(whatVaries(l2, ['x', 'y', 'z']))[0]![0]).toBe('quantize.weights#2');
  });

  it('bars grouped by the first variable, ordered by the second', () => {
    const ids = ['p50q8', 'p50q4', 'p70q8'];
    const [sparsity, bits] = whatVaries(lin, ids);
    expect(groupBars(lin, ids, 'accuracy', sparsity!, bits!)).toEqual([
      { level: '0.5', bars: [{ id: 'p50q4', sub: '4', value: 90 }, { id: 'p50q8', sub: '8', value: 96.5 }] },
      { level: '0.7', bars: [{ id: 'p70q8', sub: '8', value: 95 }] },
    ]);
    expect(groupBars(lin, ids, 'size', null, null)).toEqual([{ level: '', bars: ids.map((id) => ({ id, sub: '', value: lin.metric(id, 'size') })) }]);
  });

  it('the base of a comparison is the selected model closest to the root', () => {
    expect(closestToRoot(lin, ['p50q4', 'q8', 'p70q8'])).toBe('q8');
    expect(closestToRoot(lin, ['p70q8', 'p50q4'])).toBe('p50q4');
    expect(closestToRoot(lin, [])).toBeUndefined();
  });
});
