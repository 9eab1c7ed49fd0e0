import { describe, expect, it } from 'vitest';
import { paretoFront } from '../../../webview/modelMap/pareto';
import { Lineage } from '../../../webview/modelMap/lineage';
import { sample } from './fixture';

describe('paretoFront', () => {
  it('mixed directions: smaller size and higher accuracy', () => {
    const lin = new Lineage(sample());
    const pts = lin.order.map((id) => ({ id, x: lin.metric(id, 'size')!, y: lin.metric(id, 'accuracy')! }));
    expect(paretoFront(pts, false, true)).toEqual(['base', 'q8', 'p50q8', 'p70q8', 'p50q4']);
    // Same points, axes swapped: the same set, ordered along the new x.
    const swapped = pts.map((p) => ({ id: p.id, x: p.y, y: p.x }));
    expect(paretoFront(swapped, true, false)).toEqual(['p50q4', 'p70q8', 'p50q8', 'q8', 'base']);
  });

  it('keeps exact ties, drops points equal on one axis and worse on the other', () => {
    const pts = [
      { id: 'a', x: 1, y: 1 },
      { id: 'b', x: 1, y: 1 },
      { id: 'c', x: 2, y: 0 },
      { id: 'd', x: 0, y: 2 },
      { id: 'e', x: 1, y: 0.5 },
      { id: 'f', x: 2, y: -1 },
    ];
    expect(paretoFront(pts, true, true)).toEqual(['d', 'a', 'b', 'c']);
  });

  it('both lower-is-better, and non-finite values ignored', () => {
    const pts = [
      { id: 'a', x: 1, y: 1 },
      { id: 'b', x: 2, y: 0.5 },
      { id: 'c', x: 0.5, y: 3 },
      { id: 'd', x: 2, y: 2 },
      { id: 'n', x: NaN, y: 0 },
    ];
    expect(paretoFront(pts, false, false)).toEqual(['b', 'a', 'c']);
    expect(paretoFront([], true, true)).toEqual([]);
  });
});
