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
