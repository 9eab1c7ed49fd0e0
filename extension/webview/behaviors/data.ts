/**
 * What the Behaviors panel reads from compare/behavior.py: one `behavior` envelope per compared
 * model (meta: task_kind, ids, summary, groups, transitions, generations, confusion; tensors: per-instance
 * metrics), assembled into one instance table with a column per (model, metric).
 */
import type { Result } from '../shared/wire';
import { confusionOf, type ConfusionChange } from './confusion';

export interface Interval {
  value: number | null;
  ci: [number, number] | null;
}

export interface Transition {
  base: string;
  other: string;
  count: number;
  ids: string[];
}

export interface Generation {
  prompt: string | null;
  base: string | null;
  other: string | null;
  first_difference: number | null;
}

export interface BehaviorModel {
  id: string;
  taskKind: 'classification' | 'causal_lm' | 'embedding';
  ids: string[];
  summary: Record<string, unknown>;
  groups: Record<string, unknown>[];
  transitions: Transition[];
  generations: Generation[];
  /** 1-D per-instance metrics (aligned with `ids`) as float arrays. */
  perInstance: Record<string, Float32Array>;
  /** Per-token metrics [N, T] (causal LM), flat, with T. */
  perToken: Record<string, { data: Float32Array; tokens: number }>;
  /** Classification with targets: the confusion matrices of base and model and who moved. */
  confusion?: ConfusionChange | null;
}

export function behaviorOf(r: Result): BehaviorModel {
  if (r.kind !== 'behavior') throw new Error(`expected a behavior result, got '${r.kind}'`);
  const m = r.meta;
  const ids = (m.ids as string[] | undefined) ?? [];
  const perInstance: Record<string, Float32Array> = {};
  const perToken: BehaviorModel['perToken'] = {};
  for (const [name, t] of Object.entries(r.tensors)) {
    const f = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>, Number);
    if (t.shape.length === 1 && t.shape[0] === ids.length) perInstance[name] = f;
    else if (t.shape.length === 2 && t.shape[0] === ids.length) perToken[name] = { data: f, tokens: t.shape[1]! };
  }
  return {
    id: String(m.other),
    taskKind: (m.task_kind as BehaviorModel['taskKind']) ?? 'classification',
    ids,
    summary: (m.summary as Record<string, unknown>) ?? {},
    groups: (m.groups as Record<string, unknown>[]) ?? [],
    transitions: (m.transitions as Transition[]) ?? [],
    generations: (m.generations as Generation[]) ?? [],
    perInstance,
    perToken,
    confusion: confusionOf(m.confusion),
  };
}

export function interval(x: unknown): Interval | null {
  if (typeof x !== 'object' || x === null) return null;
  const o = x as { value?: unknown; ci?: unknown };
  const value = typeof o.value === 'number' ? o.value : null;
  const ci = Array.isArray(o.ci) && o.ci.length === 2 && o.ci.every((c) => typeof c === 'number') ? (o.ci as [number, number]) : null;
  return { value, ci };
}

/** The headline metric delta of a task kind (key in summary / groups) and its label. */
export function headline(kind: BehaviorModel['taskKind']): { key: string; label: string; agreement: string } {
  if (kind === 'causal_lm') return { key: 'logp_change', label: 'Δ log-prob', agreement: 'token_agreement' };
  if (kind === 'embedding') return { key: 'cosine', label: 'cosine', agreement: 'cosine' };
  return { key: 'accuracy_delta', label: 'Δ accuracy', agreement: 'agreement' };
}

/** Instances × (model, metric): every model's per-instance metrics aligned to one id order. */
export interface InstanceTable {
  ids: string[];
  index: Map<string, number>;
  models: string[];
  /** `${model}\u0000${metric}` -> values aligned with `ids` (NaN where the model lacks one). */
  columns: Map<string, Float32Array>;
}

export const col = (model: string, metric: string): string => `${model}\u0000${metric}`;

export function buildInstanceTable(models: BehaviorModel[]): InstanceTable {
  const ids: string[] = [];
  const index = new Map<string, number>();
  for (const m of models) {
    for (const id of m.ids) {
      if (!index.has(id)) {
        index.set(id, ids.length);
        ids.push(id);
      }
    }
  }
  const columns = new Map<string, Float32Array>();
  for (const m of models) {
    const pos = m.ids.map((id) => index.get(id)!);
    for (const [metric, values] of Object.entries(m.perInstance)) {
      const out = new Float32Array(ids.length).fill(NaN);
      for (let k = 0; k < pos.length; k++) out[pos[k]!] = values[k]!;
      columns.set(col(m.id, metric), out);
    }
  }
  return { ids, index, models: models.map((m) => m.id), columns };
}

/** Metrics every model has per instance, for the sort / brush menus. */
export function metricNames(models: BehaviorModel[]): string[] {
  const seen = new Set<string>();
  for (const m of models) for (const k of Object.keys(m.perInstance)) seen.add(k);
  return [...seen];
}

/** Which per-token measure colours an LM instance's tokens: KL when the result has it. */
export function tokenMeasure(
  models: BehaviorModel[],
): { model: BehaviorModel; values: { data: Float32Array; tokens: number }; label: string } | null {
  for (const [key, label] of [['token_kl', 'KL(base‖model)'], ['token_logp_change', 'Δ log-prob']] as const) {
    const model = models.find((m) => m.perToken[key]);
    if (model) return { model, values: model.perToken[key]!, label };
  }
  return null;
}
