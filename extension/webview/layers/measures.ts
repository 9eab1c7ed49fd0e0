/** The measures a Layers cell can show, where each comes from, and which way is worse. */
import type { ActModule, ModelData, PairMetrics, WeightNode, WeightTensor } from './data';

export type MeasureKey = 'sparsity' | 'maskOverlap' | 'relL2' | 'sqnr' | 'cosine' | 'actRelL2' | 'actCka' | 'actSqnr';
export type Mode = 'propagated' | 'isolated';

export interface Measure {
  key: MeasureKey;
  label: string;
  source: 'weights' | 'activations';
  /** Which direction is the bad one (for roll-ups: the worst child; for ranking). */
  worse: 'higher' | 'lower';
  format: (v: number) => string;
  pick: (m: PairMetrics) => number | null;
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
const sci = (v: number) => (v === 0 ? '0' : Math.abs(v) >= 0.01 && Math.abs(v) < 1000 ? v.toPrecision(3) : v.toExponential(1));
const db = (v: number) => `${v.toFixed(1)} dB`;
const fixed3 = (v: number) => v.toFixed(4);

/** Intersection over union of the two zero masks; null when the base has no zeros: there is no
 * mask of the base to overlap, and 0% would read as "the masks disagree". */
export function maskOverlap(m: PairMetrics): number | null {
  const both = m.zero_both ?? 0;
  if (both + (m.zero_only_base ?? 0) === 0) return null;
  const union = both + (m.zero_only_base ?? 0) + (m.zero_only_other ?? 0);
  return union > 0 ? both / union : null;
}

/** The mask overlap as the detail shows it: "n/a" (and why) where the base has no zeros. */
export function maskOverlapText(m: PairMetrics): string {
  const v = maskOverlap(m);
  return v === null ? 'n/a (the base has no zeros)' : pct(v);
}

export const MEASURES: Measure[] = [
  { key: 'relL2', label: 'Weight rel. error', source: 'weights', worse: 'higher', format: sci, pick: (m) => (m.identical ? 0 : m.rel_l2) },
  { key: 'sqnr', label: 'Weight SQNR', source: 'weights', worse: 'lower', format: db, pick: (m) => (m.identical ? null : m.sqnr_db) },
  { key: 'cosine', label: 'Weight cosine', source: 'weights', worse: 'lower', format: fixed3, pick: (m) => m.cosine },
  { key: 'sparsity', label: 'Sparsity', source: 'weights', worse: 'higher', format: pct, pick: (m) => m.sparsity_other ?? null },
  { key: 'maskOverlap', label: 'Mask overlap (IoU)', source: 'weights', worse: 'lower', format: pct, pick: maskOverlap },
  { key: 'actRelL2', label: 'Activation rel. error', source: 'activations', worse: 'higher', format: sci, pick: (m) => (m.identical ? 0 : m.rel_l2) },
  { key: 'actSqnr', label: 'Activation SQNR', source: 'activations', worse: 'lower', format: db, pick: (m) => (m.identical ? null : m.sqnr_db) },
  { key: 'actCka', label: 'Activation CKA', source: 'activations', worse: 'lower', format: fixed3, pick: (m) => m.cka ?? null },
];

export function measure(key: string): Measure {
  return MEASURES.find((m) => m.key === key) ?? MEASURES[0]!;
}

/** Lookup tables of one model's results by path, built once per arrival. */
export class ModelIndex {
  readonly tensors = new Map<string, WeightTensor>();
  readonly nodes = new Map<string, WeightNode>();
  readonly modules = new Map<string, ActModule>();
  readonly moduleRow = new Map<string, number>();

  constructor(readonly data: ModelData) {
    for (const t of data.weights?.tensors ?? []) this.tensors.set(t.name, t);
    for (const n of data.weights?.tree ?? []) this.nodes.set(n.path, n);
    (data.acts?.modules ?? []).forEach((m, i) => {
      this.modules.set(m.name, m);
      this.moduleRow.set(m.name, i);
    });
  }

  /** The measure's own value at `id` (a module path or a tensor name); null when not measured. */
  value(id: string, kind: 'module' | 'tensor', ms: Measure, mode: Mode): number | null {
    let m: PairMetrics | undefined;
    if (ms.source === 'weights') m = kind === 'tensor' ? this.tensors.get(id)?.metrics : this.nodes.get(id)?.metrics;
    else if (kind === 'module') m = this.modules.get(id)?.[mode];
    if (!m) return null;
    const v = ms.pick(m);
    return v === null || v === undefined || Number.isNaN(v) ? null : v;
  }
}
