// Multi-op variants' intermediate models (`variant/1`, ...) fold into the variant's model.
import { describe, expect, it } from 'vitest';
import { Lineage } from '../../../webview/modelMap/lineage';
import { foldSteps, stepChains } from '../../../webview/modelMap/folding';
import { minilm, model } from './fixture';

const named = (id: string, name: string, parent: string | null, op: string | null, params: Record<string, unknown>, t: number, aliases?: string[]) => ({
  ...model(id, parent, op, params, t, [1, 1, 1]),
  name,
  ...(aliases ? { aliases } : {}),
});

describe('folding multi-op variants', () => {
  const lin = new Lineage([
    named('b', 'digits-cnn', null, null, {}, 0),
    named('c1', 'channels-0.5/1', 'b', 'prune.structured', { amount: 0.5 }, 1),
    named('c', 'channels-0.5', 'c1', 'bn.recalibrate', { batches: 20 }, 2),
    named('t1', 'three/1', 'b', 'prune.magnitude', { sparsity: 0.5 }, 3),
    named('t2', 'three/2', 't1', 'quantize.weights', { bits: 8 }, 4),
    named('t', 'three', 't2', 'quantize.weights', { bits: 4 }, 5),
    // a variant started from an intermediate model: that step stays visible
    named('s1', 'shared/1', 'b', 'prune.magnitude', { sparsity: 0.3 }, 6),
    named('s', 'shared', 's1', 'finetune', { steps: 10 }, 7),
    named('o', 'other', 's1', 'bn.recalibrate', { batches: 4 }, 8),
    // the final model is another variant's (matched by fingerprint): it answers to the name
    named('a1', 'twin/1', 'b', 'prune.magnitude', { sparsity: 0.9 }, 9),
    named('a', 'int8-of-0.9', 'a1', 'quantize.weights', { bits: 8 }, 10, ['twin']),
  ]);

  it('finds each chain, first step first', () => {
    expect([...stepChains(lin)]).toEqual([
      ['c', ['c1']],
      ['t', ['t1', 't2']],
      ['a', ['a1']],
    ]);
  });

  it('folds the steps into the variant: parent, the chain of ops, every parameter', () => {
    const f = foldSteps(lin, () => false);
    const byId = new Map(f.models.map((m) => [m.id, m]));
    expect(f.models.map((m) => m.id)).toEqual(['b', 'c', 't', 's1', 's', 'o', 'a']);
    expect([byId.get('c')!.parent, byId.get('c')!.op, byId.get('c')!.params]).toEqual(['b', 'prune.structured + bn.recalibrate', { amount: 0.5, batches: 20 }]);
    // a parameter name two steps share is told apart by its op
    expect([byId.get('t')!.parent, byId.get('t')!.op, byId.get('t')!.params]).toEqual(['b', 'prune.magnitude + quantize.weights + quantize.weights', { sparsity: 0.5, bits: 8, 'quantize.weights.bits': 4 }]);
    expect([...f.folded.keys()]).toEqual(['c', 't', 'a']);
    const view = new Lineage(f.models);
    expect(view.depth.get('t')).toBe(1);
  });

  it('an expanded variant shows its steps', () => {
    const f = foldSteps(lin, (id) => id === 't');
    expect(f.models.map((m) => m.id)).toEqual(['b', 'c', 't1', 't2', 't', 's1', 's', 'o', 'a']);
    expect(f.models.find((m) => m.id === 't')!.op).toBe('quantize.weights');
  });

  it('MiniLM: a step that is another variant (an alias) is not folded', () => {
    const ml = new Lineage(minilm());
    expect([...stepChains(ml)]).toEqual([['kd', ['kd1']]]);
  });
});
