/**
 * "What varies" in a selection: each model's recipe (the chain of ops from its root) becomes a
 * set of variables — whether an op was applied, and each of its parameters — and the variables
 * whose value differs among the selected models are what varies. An op used twice in a chain is
 * told apart by its occurrence ("quantize.weights#2"). The seeds and the evaluation (task,
 * instances) are variables too. Pure: no DOM.
 */
import type { Lineage } from './lineage';

export interface RecipeStep {
  id: string;
  op: string;
  params: Record<string, unknown>;
}

export const ABSENT = '—';

/** The ops from the root to the model (the root itself, which has no op, is left out). */
export function recipe(lin: Lineage, id: string): RecipeStep[] {
  return lin
    .ancestry(id)
    .filter((x) => lin.parentOf(x) !== undefined)
    .map((x) => {
      const m = lin.byId.get(x)!;
      return { id: x, op: m.op ?? '(unknown op)', params: m.params };
    });
}

export interface Variable {
  /** "prune.magnitude" (was the op applied) or "prune.magnitude.sparsity" (a parameter). */
  key: string;
  op: string;
  param: string | null;
  /** Value per selected model id, as display text; ABSENT when the model's recipe lacks it. */
  values: Map<string, string>;
  /** Distinct values, in a stable order (numbers ascending, then text, ABSENT last). */
  levels: string[];
}

export function valueText(v: unknown): string {
  if (v === undefined) return ABSENT;
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Every variable of every recipe, with the value each model has. */
function features(lin: Lineage, id: string): Map<string, { op: string; param: string | null; value: string }> {
  const out = new Map<string, { op: string; param: string | null; value: string }>();
  const seen = new Map<string, number>();
  for (const step of recipe(lin, id)) {
    const n = (seen.get(step.op) ?? 0) + 1;
    seen.set(step.op, n);
    const opName = n === 1 ? step.op : `${step.op}#${n}`;
    out.set(opName, { op: opName, param: null, value: 'applied' });
    for (const [k, v] of Object.entries(step.params).sort(([a], [b]) => a.localeCompare(b))) {
      out.set(`${opName}.${k}`, { op: opName, param: k, value: valueText(v) });
    }
  }
  // The rest of the recipe: the seeds the ops ran with and what the metrics were evaluated on.
  const m = lin.byId.get(id)!;
  const chainSeeds = lin.ancestry(id).filter((x) => lin.parentOf(x) !== undefined).map((x) => lin.byId.get(x)!.seed);
  const seeds = chainSeeds.length ? chainSeeds : [m.seed];
  out.set('seed', { op: 'seed', param: null, value: seeds.some((s) => s === undefined) ? ABSENT : [...new Set(seeds)].join(', ') });
  out.set('task', { op: 'task', param: null, value: m.evaluation ? m.evaluation.task.slice(0, 8) : ABSENT });
  out.set('instances', { op: 'instances', param: null, value: m.evaluation?.instances ?? ABSENT });
  return out;
}

export function whatVaries(lin: Lineage, ids: readonly string[]): Variable[] {
  const per = ids.map((id) => features(lin, id));
  const keys = new Map<string, { op: string; param: string | null }>();
  for (const f of per) for (const [k, v] of f) if (!keys.has(k)) keys.set(k, { op: v.op, param: v.param });
  const vars: Variable[] = [];
  for (const [key, { op, param }] of keys) {
    const values = new Map<string, string>();
    ids.forEach((id, i) => values.set(id, per[i]!.get(key)?.value ?? ABSENT));
    const levels = sortLevels([...new Set(values.values())]);
    if (levels.length < 2) continue;
    // A parameter only "varies" among the models that applied its op (when the op itself is
    // present in some and absent in others, the op variable already says so); among those, a
    // parameter set in one and left out (its default) in another does vary: that is how an
    // `exclude` pattern shows.
    if (param !== null) {
      const applied = new Set(ids.filter((_, i) => per[i]!.has(op)).map((id) => values.get(id)));
      if (applied.size < 2) continue;
    }
    vars.push({ key, op, param, values, levels });
  }
  // Fewest levels first (the best grouping variables), then by key for a stable order.
  return vars.sort((a, b) => a.levels.length - b.levels.length || a.key.localeCompare(b.key));
}

export function sortLevels(levels: string[]): string[] {
  const num = (s: string) => (s.trim() !== '' && Number.isFinite(Number(s)) ? Number(s) : NaN);
  return levels.sort((a, b) => {
    if (a === ABSENT || b === ABSENT) return a === ABSENT ? (b === ABSENT ? 0 : 1) : -1;
    const na = num(a);
    const nb = num(b);
    if (!Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
    if (!Number.isNaN(na)) return -1;
    if (!Number.isNaN(nb)) return 1;
    return a.localeCompare(b);
  });
}

export interface BarGroup {
  /** Level of the first grouping variable ('' when grouping by none). */
  level: string;
  bars: { id: string; sub: string; value: number | undefined }[];
}

/**
 * Bars for one metric: one group per level of `by1`, a bar per model inside it, ordered and
 * coloured by its level of `by2`. Without grouping variables, one group with every model.
 */
export function groupBars(lin: Lineage, ids: readonly string[], metric: string, by1: Variable | null, by2: Variable | null): BarGroup[] {
  const levels = by1 ? by1.levels : [''];
  const subOrder = new Map((by2?.levels ?? []).map((l, i) => [l, i]));
  return levels
    .map((level) => {
      const members = ids.filter((id) => !by1 || by1.values.get(id) === level);
      const bars = members.map((id) => ({ id, sub: by2?.values.get(id) ?? '', value: lin.metric(id, metric) }));
      bars.sort((a, b) => (subOrder.get(a.sub) ?? 0) - (subOrder.get(b.sub) ?? 0));
      return { level, bars };
    })
    .filter((g) => g.bars.length > 0);
}

/** The selected model closest to the root (the base of a comparison); ties: lineage order. */
export function closestToRoot(lin: Lineage, ids: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const id of lin.order) {
    if (!ids.includes(id)) continue;
    if (best === undefined || (lin.depth.get(id) ?? 0) < (lin.depth.get(best) ?? 0)) best = id;
  }
  return best;
}
