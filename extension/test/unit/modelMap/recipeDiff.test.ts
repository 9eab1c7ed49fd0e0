// The recipe diff of two models and "what varies" on the MiniLM case: layer-all-0.1 and
// layer-nonorm-0.1 differ only in their exclude pattern, the setting behind the failure.
import { describe, expect, it } from 'vitest';
import { Lineage } from '../../../webview/modelMap/lineage';
import { alignSteps, canonical, recipeDiff } from '../../../webview/modelMap/recipeDiff';
import { whatVaries } from '../../../webview/modelMap/whatVaries';
import { minilm } from './fixture';

describe('recipe diff', () => {
  const lin = new Lineage(minilm());
  const table = (a: string, b: string) => recipeDiff(lin, a, b).rows.map((r) => [r.label, r.a, r.b, r.same]);

  it('names the exclude pattern that differs, the rest the same', () => {
    const d = recipeDiff(lin, 'all', 'nonorm');
    expect(d.differences).toBe(1);
    expect(table('all', 'nonorm')).toEqual([
      ['base', 'base', 'base', true],
      ['op 1', 'prune.magnitude', 'prune.magnitude', true],
      ['exclude', '—', '["*LayerNorm*"]', false],
      ['include', '["*"]', '["*"]', true],
      ['scope', 'layer', 'layer', true],
      ['sparsity', '0.1', '0.1', true],
      ['seed', '0', '0', true],
      ['task', '25d617d8', '25d617d8', true],
      ['instances', '16/400', '16/400', true],
    ]);
  });

  it('with the base: every op and parameter the other has, against a gap', () => {
    expect(table('base', 'nonorm')).toEqual([
      ['base', 'base', 'base', true],
      ['op 1', '—', 'prune.magnitude', false],
      ['exclude', '—', '["*LayerNorm*"]', false],
      ['include', '—', '["*"]', false],
      ['scope', '—', 'layer', false],
      ['sparsity', '—', '0.1', false],
      ['seed', '0', '0', true],
      ['task', '25d617d8', '25d617d8', true],
      ['instances', '16/400', '16/400', true],
    ]);
  });

  it('aligns multi-op chains (intermediate models included) by op, with seeds and instances', () => {
    const d = recipeDiff(lin, 'restore', 'kd');
    expect(d.rows.filter((r) => r.kind === 'op').map((r) => [r.a, r.b, r.aId, r.bId])).toEqual([
      ['prune.magnitude', 'prune.magnitude', 'all', 'kd1'],
      ['restore', 'finetune', 'restore', 'kd'],
    ]);
    expect(d.rows.filter((r) => !r.same).map((r) => [r.label, r.a, r.b])).toEqual([
      ['sparsity', '0.1', '0.3'],
      ['op 2', 'restore', 'finetune'],
      ['lr', '—', '0.0001'],
      ['patterns', '["*LayerNorm*"]', '—'],
      ['steps', '—', '60'],
      ['seed', '0', '1'],
      ['instances', '16/400', '48/400'],
    ]);
    expect(d.differences).toBe(7);
  });

  it('alignment: common ops on one row, an op only one side has against a gap', () => {
    const s = (...ops: string[]) => ops.map((op) => ({ op }));
    const show = (p: [{ op: string } | null, { op: string } | null][]) => p.map(([x, y]) => `${x?.op ?? '-'}|${y?.op ?? '-'}`);
    expect(show(alignSteps(s('prune', 'quant'), s('prune', 'bn', 'quant')))).toEqual(['prune|prune', '-|bn', 'quant|quant']);
    expect(show(alignSteps(s('prune', 'restore'), s('prune', 'finetune')))).toEqual(['prune|prune', 'restore|finetune']);
    expect(show(alignSteps(s(), s('a', 'b')))).toEqual(['-|a', '-|b']);
    expect(show(alignSteps(s('a', 'x', 'y', 'b'), s('a', 'z', 'b')))).toEqual(['a|a', 'x|z', 'y|-', 'b|b']);
  });

  it('compares values, not their spelling', () => {
    expect(canonical({ b: 1, a: [1, { d: 2, c: 3 }] })).toBe('{"a":[1,{"c":3,"d":2}],"b":1}');
    expect(canonical(undefined)).toBe('—');
  });
});

describe('what varies (the whole recipe)', () => {
  const lin = new Lineage(minilm());
  const summary = (ids: string[]) => whatVaries(lin, ids).map((v) => [v.key, v.levels]);

  it('a parameter set in one model and left to its default in another varies', () => {
    expect(summary(['all', 'nonorm'])).toEqual([['prune.magnitude.exclude', ['["*LayerNorm*"]', '—']]]);
  });

  it('with the base added, the op and its differing parameter', () => {
    expect(summary(['base', 'all', 'nonorm'])).toEqual([
      ['prune.magnitude', ['applied', '—']],
      ['prune.magnitude.exclude', ['["*LayerNorm*"]', '—']],
    ]);
  });

  it('seeds and instances vary too', () => {
    expect(summary(['restore', 'kd'])).toEqual([
      ['finetune', ['applied', '—']],
      ['instances', ['16/400', '48/400']],
      ['prune.magnitude.sparsity', ['0.1', '0.3']],
      ['restore', ['applied', '—']],
      ['seed', ['0', '1']],
    ]);
  });
});
