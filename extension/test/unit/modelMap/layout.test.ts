import { describe, expect, it } from 'vitest';
import { Lineage } from '../../../webview/modelMap/lineage';
import { computeLayout } from '../../../webview/modelMap/layout';
import { model, sample } from './fixture';

const cells = (l: ReturnType<typeof computeLayout>) => Object.fromEntries(l.nodes.map((n) => [n.id, [n.col, n.row]]));

describe('computeLayout', () => {
  const lin = new Lineage(sample());

  it('columns by step, one row per branch (first child continues the row)', () => {
    const l = computeLayout(lin, 'step');
    expect(l.columns.map((c) => c.label)).toEqual(['base', 'step 1', 'step 2']);
    expect(cells(l)).toEqual({ base: [0, 0], p50: [1, 0], p50q8: [2, 0], p50q4: [2, 1], p70: [1, 2], p70q8: [2, 2], q8: [1, 3] });
    expect(l.rows).toBe(4);
    expect(l.edges).toEqual([
      ['base', 'p50'],
      ['p50', 'p50q8'],
      ['p50', 'p50q4'],
      ['base', 'p70'],
      ['p70', 'p70q8'],
      ['base', 'q8'],
    ]);
  });

  it('columns by op kind line up models made by the same op at different depths', () => {
    const l = computeLayout(lin, 'op');
    expect(l.columns.map((c) => c.key)).toEqual(['(base)', 'prune.magnitude', 'quantize.weights']);
    expect(cells(l)).toEqual({ base: [0, 0], p50: [1, 0], p50q8: [2, 0], p50q4: [2, 1], p70: [1, 2], p70q8: [2, 2], q8: [2, 3] });
  });

  it('collapsing hides descendants and frees their rows', () => {
    const l = computeLayout(lin, 'step', new Set(['p50']));
    expect(cells(l)).toEqual({ base: [0, 0], p50: [1, 0], p70: [1, 1], p70q8: [2, 1], q8: [1, 2] });
    expect(l.byId.get('p50')!.hidden).toBe(2);
    expect(l.rows).toBe(3);
  });

  it('by op kind, a repeated op cannot continue its parent\'s row (it would sit on it)', () => {
    const chain = new Lineage([
      model('b', null, null, {}, 0, [1, 1, 1]),
      model('x', 'b', 'quantize.weights', { bits: 8 }, 1, [1, 1, 1]),
      model('y', 'x', 'quantize.weights', { bits: 4 }, 2, [1, 1, 1]),
      model('z', 'y', 'prune.magnitude', {}, 3, [1, 1, 1]),
    ]);
    expect(cells(computeLayout(chain, 'op'))).toEqual({ b: [0, 0], x: [1, 0], y: [1, 1], z: [2, 1] });
    expect(cells(computeLayout(chain, 'step'))).toEqual({ b: [0, 0], x: [1, 0], y: [2, 0], z: [3, 0] });
  });

  it('a model whose parent is missing starts its own branch as a root', () => {
    const models = [...sample(), model('orphan', 'deleted', 'cast', {}, 9, [1, 2, 3])];
    const l = computeLayout(new Lineage(models), 'op');
    expect(cells(l).orphan).toEqual([0, 4]);
    expect(new Lineage(models).roots).toEqual(['base', 'orphan']);
  });
});
