// Two hand-made behaviour results (as behaviorOf would give them) for base → m1 and base → m2.
import type { BehaviorModel } from '../../../webview/behaviors/data';

export const m1: BehaviorModel = {
  id: 'm1',
  taskKind: 'classification',
  ids: ['a', 'b', 'c', 'd', 'e'],
  summary: { agreement: { value: 0.6, ci: [0.23, 0.88] }, accuracy_delta: { value: -0.2, ci: [-0.6, 0] }, mean_kl: 0.3 },
  groups: [
    { grouping: 'label', group: 'cat', count: 40, agreement: { value: 0.9, ci: [0.8, 0.95] }, accuracy_delta: { value: -0.05, ci: [-0.1, 0] }, mean_kl: 0.1 },
    { grouping: 'label', group: 'dog', count: 12, agreement: { value: 0.5, ci: [0.2, 0.8] }, accuracy_delta: { value: -0.4, ci: [-0.7, -0.1] }, mean_kl: 0.9 },
    { grouping: 'label', group: 'cow', count: 50, agreement: { value: 1, ci: [0.93, 1] }, accuracy_delta: { value: 0, ci: [0, 0] }, mean_kl: 0.0 },
  ],
  transitions: [
    { base: 'cat', other: 'cat', count: 3, ids: ['a', 'b', 'c'] },
    { base: 'dog', other: 'cat', count: 1, ids: ['d'] },
    { base: 'cow', other: 'dog', count: 1, ids: ['e'] },
  ],
  generations: [],
  perInstance: { agree: new Float32Array([1, 1, 1, 0, 0]), kl: new Float32Array([0.01, 0.2, NaN, 0.9, 0.5]) },
  perToken: {},
};

export const m2: BehaviorModel = {
  id: 'm2',
  taskKind: 'classification',
  ids: ['a', 'b', 'c', 'd', 'f'],
  summary: {},
  groups: [
    { grouping: 'label', group: 'cat', count: 40, agreement: { value: 0.7, ci: [0.55, 0.8] }, accuracy_delta: { value: -0.3, ci: [-0.4, -0.2] }, mean_kl: 0.4 },
    { grouping: 'label', group: 'dog', count: 12, agreement: { value: 0.8, ci: [0.5, 0.95] }, accuracy_delta: null, mean_kl: 0.2 },
  ],
  transitions: [
    { base: 'cat', other: 'dog', count: 2, ids: ['a', 'b'] },
    { base: 'cat', other: 'cow', count: 2, ids: ['c', 'f'] },
    { base: 'dog', other: 'dog', count: 1, ids: ['d'] },
  ],
  generations: [],
  perInstance: { agree: new Float32Array([0, 0, 0, 1, 0]), kl: new Float32Array([0.7, 0.6, 0.8, 0.05, 0.3]) },
  perToken: {},
};
