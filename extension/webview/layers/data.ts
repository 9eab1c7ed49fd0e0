/**
 * What the Layers panel reads from the comparison engine (server/modelbonsai/compare/weights.py
 * and activations.py): one `weights` and one `activations` envelope per compared model.
 */
import type { Result, Tensor } from '../shared/wire';

export interface PairMetrics {
  n: number;
  rel_l2: number | null;
  sqnr_db: number | null;
  identical: boolean;
  cosine: number | null;
  max_abs_diff: number | null;
  sparsity_base?: number;
  sparsity_other?: number;
  zero_only_base?: number;
  zero_only_other?: number;
  zero_both?: number;
  cka?: number | null;
}

export interface WeightTensor {
  name: string;
  status: 'ok' | 'mismatch' | 'missing_in_other' | 'extra_in_other';
  shape_base: number[] | null;
  shape_other: number[] | null;
  message?: string;
  /** dim -> channels removed by structured pruning. */
  removed?: Record<string, number>;
  metrics?: PairMetrics;
  /** Value histograms span [-value_range, value_range]. */
  value_range?: number;
}

export interface WeightNode {
  path: string;
  parent: string | null;
  params: number;
  tensors: number;
  not_compared: number;
  metrics: PairMetrics;
}

export interface WeightsResult {
  other: string;
  tensors: WeightTensor[];
  tree: WeightNode[];
  relEdgesLog10: number[];
  relHist?: Tensor;
  valueHistBase?: Tensor;
  valueHistOther?: Tensor;
  treeRelHist?: Tensor;
}

export interface ActModule {
  name: string;
  type_base?: string;
  type_other?: string;
  shape_base?: number[];
  shape_other?: number[];
  status: string;
  message?: string;
  propagated?: PairMetrics;
  isolated?: PairMetrics;
}

export interface ActivationsResult {
  other: string;
  ids: string[];
  modules: ActModule[];
  /** [modules, instances] relative L2 per (module, instance); NaN where not available. */
  propagated: Float32Array;
  isolated: Float32Array;
}

export class ResultShapeError extends Error {}

function need<T>(v: T | undefined | null, what: string): T {
  if (v === undefined || v === null) throw new ResultShapeError(`the result lacks ${what}`);
  return v;
}

export function weightsOf(r: Result): WeightsResult {
  if (r.kind !== 'weights') throw new ResultShapeError(`expected a weights result, got '${r.kind}'`);
  const m = r.meta;
  return {
    other: String(need(m.other, "meta 'other'")),
    tensors: need(m.tensors as WeightTensor[] | undefined, "meta 'tensors'"),
    tree: need(m.tree as WeightNode[] | undefined, "meta 'tree'"),
    relEdgesLog10: (m.rel_edges_log10 as number[] | undefined) ?? [],
    relHist: r.tensors.rel_hist,
    valueHistBase: r.tensors.value_hist_base,
    valueHistOther: r.tensors.value_hist_other,
    treeRelHist: r.tensors.tree_rel_hist,
  };
}

export function activationsOf(r: Result): ActivationsResult {
  if (r.kind !== 'activations') throw new ResultShapeError(`expected an activations result, got '${r.kind}'`);
  const m = r.meta;
  const f32 = (t: Tensor | undefined) => (t && t.data instanceof Float32Array ? t.data : new Float32Array(0));
  return {
    other: String(need(m.other, "meta 'other'")),
    ids: need(m.ids as string[] | undefined, "meta 'ids'"),
    // The server leaves out empty fields: the whole model's module ('') comes without a name.
    modules: need(m.modules as ActModule[] | undefined, "meta 'modules'").map((x) => ({ ...x, name: x.name ?? '', status: x.status ?? 'ok' })),
    propagated: f32(r.tensors.propagated),
    isolated: f32(r.tensors.isolated),
  };
}

/** One row of a histogram tensor [rows, bins]. */
export function histRow(t: Tensor | undefined, row: number): Float32Array | null {
  if (!t || t.shape.length !== 2 || !(t.data instanceof Float32Array)) return null;
  const bins = t.shape[1]!;
  if (row < 0 || row >= t.shape[0]!) return null;
  return t.data.subarray(row * bins, (row + 1) * bins);
}

/** Per model id, what has arrived so far. */
export interface ModelData {
  weights?: WeightsResult;
  acts?: ActivationsResult;
}

/** The module path a parameter belongs to ('a.b.weight' -> 'a.b'). */
export function modulePath(tensor: string): string {
  const i = tensor.lastIndexOf('.');
  return i < 0 ? '' : tensor.slice(0, i);
}
