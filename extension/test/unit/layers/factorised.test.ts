import { describe, expect, it } from 'vitest';
import { removedChannels } from '../../../webview/layers/channels';
import { weightsOf, type PairMetrics } from '../../../webview/layers/data';

const pm = (extra: Partial<PairMetrics> = {}): PairMetrics => ({ n: 1024, rel_l2: 0.39, sqnr_db: 8.2, identical: false, cosine: 0.92, max_abs_diff: 0.4, ...extra });

// A weights envelope of a lowrank model as the server sends it (compare/weights.py): the query
// weight compared as the product of its factors, its bias moved to `second`.
const result = weightsOf({
  kind: 'weights',
  meta: {
    other: 'lowrank-r8',
    rel_edges_log10: [-2, -1, 0],
    tensors: [
      { name: 'enc.query.weight', status: 'ok', shape_base: [32, 32], shape_other: [32, 32], factorised: 8,
        message: 'factorised at rank 8: compared as enc.query.second.weight x enc.query.first.weight', metrics: pm() },
      { name: 'enc.query.bias', status: 'ok', shape_base: [32], shape_other: [32], message: 'moved to enc.query.second.bias by the factorisation',
        metrics: pm({ n: 32, rel_l2: 0, sqnr_db: null, identical: true }) },
    ],
    tree: [{ path: '', parent: null, params: 1056, tensors: 2, not_compared: 0, metrics: pm() }],
  },
  tensors: {},
});

describe('weights of a factorised model', () => {
  it('reads the rank of a factorised tensor, absent on the others', () => {
    const [q, b] = result.tensors;
    expect(q!.factorised).toBe(8);
    expect(b!.factorised).toBeUndefined();
    expect(q!.metrics!.rel_l2).toBeCloseTo(0.39);
  });
  it('draws no removed-channel strip for it (same shape as the base)', () => {
    expect(removedChannels(result.tensors[0]!)).toEqual([]);
  });
  it('keeps the roll-up as sent: not identical', () => {
    expect(result.tree[0]!.metrics.identical).toBe(false);
    expect(result.tree[0]!.not_compared).toBe(0);
  });
});
