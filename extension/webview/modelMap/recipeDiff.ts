/**
 * The recipe diff of two models: everything that made each of them, side by side — the base
 * they start from, every op of the chain from it (intermediate models of multi-op variants
 * included) aligned by op name, every parameter of each op (lists and patterns compared as
 * values, not as text), the seeds the ops ran with and what the metrics were evaluated on — with
 * each difference marked. "What varies" answers for a group; this answers "why do these two
 * differ" exactly, which is where a failure's cause hides (an `exclude` pattern). Pure: no DOM.
 */
import type { Lineage } from './lineage';
import { ABSENT, recipe, valueText, type RecipeStep } from './whatVaries';

export interface DiffRow {
  kind: 'base' | 'op' | 'param' | 'seed' | 'task' | 'instances';
  /** Position of the op in the aligned recipe (1-based) for op and param rows. */
  step?: number;
  label: string;
  a: string;
  b: string;
  same: boolean;
  /** The models each side's step made (hover links to the other views). */
  aId?: string;
  bId?: string;
}

export interface RecipeDiff {
  a: string;
  b: string;
  rows: DiffRow[];
  /** Rows that differ. */
  differences: number;
}

/** JSON with object keys sorted: two parameter values are the same when this is. */
export function canonical(v: unknown): string {
  if (v === undefined) return ABSENT;
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([p], [q]) => p.localeCompare(q))) : x,
  );
}

/**
 * Pairs the steps of two recipes: ops common to both (the longest common subsequence of op
 * names) on one row each; between them, the remaining steps of each side paired in order, so an
 * op replaced by another sits beside it and an op only one side has faces a gap.
 */
export function alignSteps<T extends { op: string }>(a: readonly T[], b: readonly T[]): [T | null, T | null][] {
  const n = a.length;
  const m = b.length;
  // lcs[i][j]: length of the LCS of a[i:] and b[j:]
  const lcs = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i]![j] = a[i]!.op === b[j]!.op ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const out: [T | null, T | null][] = [];
  let ga: T[] = [];
  let gb: T[] = [];
  const flush = () => {
    for (let k = 0; k < Math.max(ga.length, gb.length); k++) out.push([ga[k] ?? null, gb[k] ?? null]);
    ga = [];
    gb = [];
  };
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i]!.op === b[j]!.op && lcs[i]![j] === lcs[i + 1]![j + 1]! + 1) {
      flush();
      out.push([a[i++]!, b[j++]!]);
    } else if (j >= m || (i < n && lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) ga.push(a[i++]!);
    else gb.push(b[j++]!);
  }
  flush();
  return out;
}

function row(kind: DiffRow['kind'], label: string, a: string, b: string, extra: Partial<DiffRow> = {}): DiffRow {
  return { kind, label, a, b, same: a === b, ...extra };
}

/** Shown value, compared by the canonical form (a list written in another key order is the same). */
function paramRow(step: number, key: string, sa: RecipeStep | null, sb: RecipeStep | null): DiffRow {
  const va = sa ? sa.params[key] : undefined;
  const vb = sb ? sb.params[key] : undefined;
  return { kind: 'param', step, label: key, a: valueText(va), b: valueText(vb), same: canonical(va) === canonical(vb) };
}

/** The seeds a recipe's ops ran with, distinct, in chain order ("0", "0, 1"); the root's when it has no ops. */
function seeds(lin: Lineage, id: string): string {
  const chain = lin.ancestry(id);
  const withOps = chain.filter((x) => lin.parentOf(x) !== undefined);
  const vals = (withOps.length ? withOps : chain).map((x) => lin.byId.get(x)!.seed);
  if (vals.some((s) => s === undefined)) return ABSENT;
  return [...new Set(vals)].join(', ');
}

export function recipeDiff(lin: Lineage, a: string, b: string): RecipeDiff {
  const ma = lin.byId.get(a)!;
  const mb = lin.byId.get(b)!;
  const rows: DiffRow[] = [];
  const rootA = lin.ancestry(a)[0]!;
  const rootB = lin.ancestry(b)[0]!;
  rows.push(row('base', 'base', lin.byId.get(rootA)!.name, lin.byId.get(rootB)!.name, { aId: rootA, bId: rootB }));
  alignSteps(recipe(lin, a), recipe(lin, b)).forEach(([sa, sb], i) => {
    const step = i + 1;
    rows.push(row('op', `op ${step}`, sa?.op ?? ABSENT, sb?.op ?? ABSENT, { step, ...(sa ? { aId: sa.id } : {}), ...(sb ? { bId: sb.id } : {}) }));
    const keys = [...new Set([...Object.keys(sa?.params ?? {}), ...Object.keys(sb?.params ?? {})])].sort();
    for (const k of keys) rows.push(paramRow(step, k, sa, sb));
  });
  rows.push(row('seed', 'seed', seeds(lin, a), seeds(lin, b)));
  // Metrics are comparable only when measured on the same task and instances.
  rows.push(row('task', 'task', ma.evaluation ? ma.evaluation.task.slice(0, 8) : ABSENT, mb.evaluation ? mb.evaluation.task.slice(0, 8) : ABSENT));
  rows.push(row('instances', 'instances', ma.evaluation?.instances ?? ABSENT, mb.evaluation?.instances ?? ABSENT));
  return { a, b, rows, differences: rows.filter((r) => !r.same).length };
}
