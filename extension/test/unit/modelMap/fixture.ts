// A hand-made lineage shared by the Model Map tests:
// base ─┬─ p50 (prune 0.5) ─┬─ p50q8 (quantize 8)
//       │                   └─ p50q4 (quantize 4)
//       ├─ p70 (prune 0.7) ─── p70q8 (quantize 8)
//       └─ q8 (quantize 8)
import type { ModelInfo } from '../../../shared/protocol';

type M = [id: string, parent: string | null, op: string | null, params: Record<string, unknown>, acc: number | null, size: number | null, lat: number | null];

export function model(id: string, parent: string | null, op: string | null, params: Record<string, unknown>, created: number, metrics: [number, number, number] | null, status: ModelInfo['status'] = 'ok'): ModelInfo {
  return {
    id,
    name: id,
    parent,
    op,
    params,
    status,
    metrics: metrics
      ? [
          { key: 'accuracy', name: 'accuracy', value: metrics[0], unit: '%', higherIsBetter: true, headline: true },
          { key: 'size', name: 'size', value: metrics[1], unit: 'B', higherIsBetter: false, headline: true },
          { key: 'latency', name: 'latency', value: metrics[2], unit: 'ms', higherIsBetter: false, headline: false },
        ]
      : [],
    created: `2026-01-01T00:00:${String(created).padStart(2, '0')}Z`,
  };
}

const rows: M[] = [
  ['base', null, null, {}, 98, 1000, 10],
  ['p50', 'base', 'prune.magnitude', { sparsity: 0.5 }, 97, 500, 9],
  ['p70', 'base', 'prune.magnitude', { sparsity: 0.7 }, 95, 300, 9],
  ['p50q8', 'p50', 'quantize.weights', { bits: 8 }, 96.5, 125, 8],
  ['p50q4', 'p50', 'quantize.weights', { bits: 4 }, 90, 63, 8],
  ['p70q8', 'p70', 'quantize.weights', { bits: 8 }, 95, 75, 8],
  ['q8', 'base', 'quantize.weights', { bits: 8 }, 97.5, 250, 7],
];

/** Listed out of creation order on purpose: the layout must not depend on the listing order. */
export function sample(): ModelInfo[] {
  const created: Record<string, number> = { base: 0, p50: 1, p70: 2, p50q8: 3, p50q4: 4, p70q8: 5, q8: 6 };
  return rows
    .map(([id, parent, op, params, acc, size, lat]) => model(id, parent, op, params, created[id]!, acc === null ? null : [acc, size!, lat!]))
    .reverse();
}

/** The MiniLM case: layer-all-0.1 and layer-nonorm-0.1 differ only in `exclude`; a restore variant
 * whose first step is layer-all-0.1 (an alias), and a two-op variant with its intermediate model. */
const EVAL = { task: '25d617d8e4a0cab4cdec874d03e85182', instances: '16/400' };
function m(id: string, parent: string | null, op: string | null, params: Record<string, unknown>, created: number, extra: Partial<ModelInfo> = {}): ModelInfo {
  return { ...model(id, parent, op, params, created, [1, 1, 1]), seed: 0, evaluation: EVAL, ...extra };
}

export function minilm(): ModelInfo[] {
  return [
    m('base', null, null, {}, 0),
    m('all', 'base', 'prune.magnitude', { sparsity: 0.1, scope: 'layer', include: ['*'] }, 1, { name: 'layer-all-0.1', aliases: ['layer-all-0.1-restore-ln/1'] }),
    m('nonorm', 'base', 'prune.magnitude', { scope: 'layer', sparsity: 0.1, include: ['*'], exclude: ['*LayerNorm*'] }, 2, { name: 'layer-nonorm-0.1' }),
    m('restore', 'all', 'restore', { patterns: ['*LayerNorm*'] }, 3, { name: 'layer-all-0.1-restore-ln' }),
    m('kd1', 'base', 'prune.magnitude', { sparsity: 0.3, scope: 'layer', include: ['*'] }, 4, { name: 'layer-all-0.3-kd/1', seed: 1 }),
    m('kd', 'kd1', 'finetune', { steps: 60, lr: 0.0001 }, 5, { name: 'layer-all-0.3-kd', seed: 1, evaluation: { ...EVAL, instances: '48/400' } }),
  ];
}

