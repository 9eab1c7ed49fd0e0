import { describe, expect, it } from 'vitest';
import { Lineage } from '../../../webview/modelMap/lineage';
import { histogram, passing, setFilter } from '../../../webview/modelMap/filters';
import { model, sample } from './fixture';

describe('filters', () => {
  const lin = new Lineage([...sample(), model('run', 'p70', 'finetune', {}, 7, null, 'running')]);

  it('ranges are inclusive and combine with AND', () => {
    let f = setFilter([], 'accuracy', [97, 95]);
    expect(f).toEqual([{ metric: 'accuracy', lo: 95, hi: 97 }]);
    expect([...passing(lin, f)]).toEqual(['p50', 'p50q8', 'p70', 'p70q8']);
    f = setFilter(f, 'size', [0, 200]);
    expect([...passing(lin, f)]).toEqual(['p50q8', 'p70q8']);
    f = setFilter(f, 'accuracy', null);
    expect([...passing(lin, f)]).toEqual(['p50q8', 'p50q4', 'p70q8']);
  });

  it('a model without the filtered metric does not pass; no filters: everything passes', () => {
    expect(passing(lin, []).has('run')).toBe(true);
    expect(passing(lin, setFilter([], 'latency', [0, 100])).has('run')).toBe(false);
    expect(passing(lin, []).size).toBe(8);
  });

  it('histogram bins are equal width, the maximum falls in the last bin', () => {
    expect(histogram([0, 1, 2, 3, 4], 2, [true, false, true, true, false])).toEqual({ min: 0, max: 4, counts: [2, 3], passing: [1, 2] });
    expect(histogram([5, 5], 3)).toEqual({ min: 5, max: 5, counts: [2, 0, 0], passing: [2, 0, 0] });
  });
});
