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
  /** Activations: linear CKA over positions as samples (token / pixel level). */
  cka?: number | null;
  /** Activations: linear CKA over instances (outputs averaged over positions). */
  cka_instances?: number | null;
}

export interface WeightTensor {
  name: string;
  status: 'ok' | 'mismatch' | 'missing_in_other' | 'extra_in_other';
  shape_base: number[] | null;
  shape_other: number[] | null;
  message?: string;
  /** dim -> channels removed by structured pruning. */
  removed?: Record<string, number>;
  /** dim -> base indices kept / removed by structured pruning (absent in older results). */
  kept_indices?: Record<string, number[]>;
  removed_indices?: Record<string, number[]>;
  /** dim -> base indices per removed unit (attention heads: the head size), when the op knew it. */
  group_size?: Record<string, number>;
  /** lowrank: the rank of the two factors whose product was compared with the base tensor. */
  factorised?: number;
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
  /** Activation value histograms span [-value_range, value_range] (propagated mode). */
  value_range?: number;
}

export interface ActivationsResult {
  other: string;
  ids: string[];
  modules: ActModule[];
  /** [modules, instances] relative L2 per (module, instance); NaN where not available. */
  propagated: Float32Array;
  isolated: Float32Array;
  /** Per module (rows in `modules` order; zero rows where not compared), propagated mode.
   * Absent in results computed before activation histograms existed. */
  relEdgesLog10: number[];
  relHist?: Tensor;
  valueHistBase?: Tensor;
  valueHistOther?: Tensor;
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
    relEdgesLog10: (m.rel_edges_log10 as number[] | undefined) ?? [],
    relHist: r.tensors.rel_hist,
    valueHistBase: r.tensors.value_hist_base,
    valueHistOther: r.tensors.value_hist_other,
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

/** A histogram row that holds counts (an all-zero row means "not compared" on the wire). */
function filledRow(t: Tensor | undefined, row: number): Float32Array | null {
  const r = histRow(t, row);
  if (!r) return null;
  for (let i = 0; i < r.length; i++) if (r[i]! > 0) return r;
  return null;
}

export interface ActivationHists {
  /** |Δ|/|base| counts over `edges` (log10 of the first and last edge). */
  rel: { counts: Float32Array; edges: [number, number] } | null;
  /** Output values of base and model over [-range, range]. */
  values: { base: Float32Array; other: Float32Array; range: number } | null;
}

/**
 * The activation histograms of `module` (propagated mode), or null when the result has none for
 * it: an older cached result without the histogram tensors, a module not compared (zero rows),
 * or a row count that does not match the module list.
 */
export function activationHists(acts: ActivationsResult, module: string): ActivationHists | null {
  const row = acts.modules.findIndex((m) => m.name === module);
  if (row < 0) return null;
  const rows = acts.modules.length;
  const fits = (t: Tensor | undefined) => (t && t.shape.length === 2 && t.shape[0] === rows ? t : undefined);
  const edges = acts.relEdgesLog10;
  const relCounts = edges.length > 1 ? filledRow(fits(acts.relHist), row) : null;
  const rel = relCounts && relCounts.length === edges.length - 1 ? { counts: relCounts, edges: [edges[0]!, edges[edges.length - 1]!] as [number, number] } : null;
  const range = acts.modules[row]!.value_range;
  const base = filledRow(fits(acts.valueHistBase), row);
  const other = filledRow(fits(acts.valueHistOther), row);
  const values = base && other && base.length === other.length && typeof range === 'number' && range > 0 && Number.isFinite(range) ? { base, other, range } : null;
  return rel || values ? { rel, values } : null;
}

/** Fraction of exact zeros in the module's output, base and model (null when not measured). */
export function activationSparsity(m: ActModule | undefined, mode: 'propagated' | 'isolated'): { base: number; other: number } | null {
  const p = m?.[mode];
  const base = p?.sparsity_base;
  const other = p?.sparsity_other;
  return typeof base === 'number' && typeof other === 'number' ? { base, other } : null;
}
