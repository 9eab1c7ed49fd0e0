import { describe, expect, it } from 'vitest';
import { tokenMeasure, type BehaviorModel } from '../../../webview/behaviors/data';

function model(id: string, perToken: BehaviorModel['perToken']): BehaviorModel {
  return { id, taskKind: 'causal_lm', ids: ['a'], summary: {}, groups: [], transitions: [], generations: [], perInstance: {}, perToken };
}

describe('tokenMeasure', () => {
  const logp = { data: new Float32Array([0.5, -1]), tokens: 2 };
  const kl = { data: new Float32Array([0.1, 0.2]), tokens: 2 };

  it('prefers per-token KL over the change of log-prob', () => {
    const m = tokenMeasure([model('x', { token_logp_change: logp }), model('y', { token_logp_change: logp, token_kl: kl })]);
    expect(m?.model.id).toBe('y');
    expect(m?.values).toBe(kl);
    expect(m?.label).toBe('KL(base‖model)');
  });

  it('falls back to Δ log-prob, and to nothing', () => {
    expect(tokenMeasure([model('x', { token_logp_change: logp })])?.label).toBe('Δ log-prob');
    expect(tokenMeasure([model('x', {})])).toBeNull();
  });
});

describe('language-model text', () => {
  it('makes whitespace visible: · for spaces, → for tabs, ↵ and a line break for newlines', async () => {
    const { whitespaceParts } = await import('../../../webview/behaviors/render');
    expect(whitespaceParts('def f():\n\treturn  1')).toEqual([
      { text: 'def', ws: false, br: false },
      { text: '·', ws: true, br: false },
      { text: 'f():', ws: false, br: false },
      { text: '↵', ws: true, br: true },
      { text: '→', ws: true, br: false },
      { text: 'return', ws: false, br: false },
      { text: '··', ws: true, br: false },
      { text: '1', ws: false, br: false },
    ]);
    // a generation of only whitespace is not empty on screen
    expect(whitespaceParts('\n\n  ')).toEqual([
      { text: '↵', ws: true, br: true },
      { text: '↵', ws: true, br: true },
      { text: '··', ws: true, br: false },
    ]);
    expect(whitespaceParts('')).toEqual([]);
  });

  it('marks the predicted tokens that differ from the base and counts agreement', async () => {
    const { agreementText, tokenChanges } = await import('../../../webview/behaviors/render');
    const base = ['d', 'e', 'f', ' '];
    expect(tokenChanges(base, ['d', 'x', 'f', ' '])).toEqual([false, true, false, false]);
    expect(tokenChanges(base, ['d', 'e', 'f', ' ', '\n'])).toEqual([false, false, false, false, true]);
    expect(tokenChanges(null, ['a'])).toEqual([true]);
    expect(agreementText(base, ['d', 'x', 'f', ' '])).toBe('agrees on 3 of 4 next tokens');
    expect(agreementText(base, base)).toBe('same 4 next tokens');
    expect(agreementText(null, base)).toBe('4 next tokens');
  });

  it('reads the decoded predictions and targets of an instances result', async () => {
    const { instancesOf } = await import('../../../webview/behaviors/render');
    const r = {
      v: 1, kind: 'instances', tensors: {},
      meta: {
        instances: [{ id: '0', kind: 'tokens', label: null, text: 'ab', tokens: ['a', 'b'] }],
        predictions: { m1: [[2, 1]] }, targets: [[2, 3]], classNames: null,
        predictionTokens: { m1: [['b', 'a']] }, targetTokens: [['b', '\n']],
      },
    };
    const { items } = instancesOf(r as never);
    expect(items[0]!.predictionTokens).toEqual({ m1: ['b', 'a'] });
    expect(items[0]!.targetTokens).toEqual(['b', '\n']);
  });
});
