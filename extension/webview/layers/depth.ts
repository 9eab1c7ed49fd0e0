/**
 * The depth profile (a measure along the depth of the network, a line per model) and the
 * activation-matrix rankings behind the linked drill-down.
 */
import type { ActivationsResult } from './data';
import type { Measure, Mode, ModelIndex } from './measures';
import type { ModuleTree } from './tree';

export interface DepthProfile {
  /** Module paths along depth (execution/definition order). */
  paths: string[];
  /** One value list per model, aligned with `paths`. */
  series: { model: string; values: (number | null)[] }[];
  /** Indices of normalisation layers (where the MiniLM LayerNorm case jumps). */
  norms: number[];
}

const NORM = /norm|(^|[._])ln(_?\d*|f)?$/i;

/**
 * Leaf modules in tree order that at least one model measured. Weight measures use the modules
 * that hold parameters; activation measures every leaf module the comparison reached.
 */
export function depthProfile(tree: ModuleTree, models: { id: string; index: ModelIndex }[], ms: Measure, mode: Mode): DepthProfile {
  const candidates = tree.order().filter((id) => tree.get(id)!.kind === 'module' && id !== '' && tree.isLeafModule(id));
  const paths: string[] = [];
  const series = models.map((m) => ({ model: m.id, values: [] as (number | null)[] }));
  for (const p of candidates) {
    const vals = models.map((m) => m.index.value(p, 'module', ms, mode));
    if (vals.every((v) => v === null)) continue;
    paths.push(p);
    vals.forEach((v, i) => series[i]!.values.push(v));
  }
  const norms: number[] = [];
  paths.forEach((p, i) => {
    const type = models.map((m) => m.index.modules.get(p)?.type_base ?? '').find(Boolean) ?? '';
    if (NORM.test(type) || NORM.test(p)) norms.push(i);
  });
  return { paths, series, norms };
}

/** Modules ranked by one instance's divergence (largest first; NaN skipped). */
export function rankLayersForInstance(acts: ActivationsResult, instance: string, mode: Mode): { module: string; value: number }[] | null {
  const col = acts.ids.indexOf(instance);
  if (col < 0) return null;
  const mat = mode === 'propagated' ? acts.propagated : acts.isolated;
  const n = acts.ids.length;
  const out: { module: string; value: number }[] = [];
  acts.modules.forEach((m, row) => {
    const v = mat[row * n + col];
    if (v !== undefined && Number.isFinite(v)) out.push({ module: m.name, value: v });
  });
  return out.sort((a, b) => b.value - a.value || (a.module < b.module ? -1 : 1));
}

/** The instances a module hurts most (largest relative error first), at most `k`. */
export function topInstancesForLayer(acts: ActivationsResult, module: string, mode: Mode, k: number): { id: string; value: number }[] | null {
  const row = acts.modules.findIndex((m) => m.name === module);
  if (row < 0) return null;
  const mat = mode === 'propagated' ? acts.propagated : acts.isolated;
  const n = acts.ids.length;
  const out: { id: string; value: number }[] = [];
  for (let i = 0; i < n; i++) {
    const v = mat[row * n + i];
    if (v !== undefined && Number.isFinite(v)) out.push({ id: acts.ids[i]!, value: v });
  }
  return out.sort((a, b) => b.value - a.value || (a.id < b.id ? -1 : 1)).slice(0, k);
}
