/**
 * Instance browser logic: filtering (a set of ids from a group / transition / drill-down,
 * brushed ranges of per-instance metrics, disagreement), sorting by any per-instance column, and
 * paging. Works on row indices into an InstanceTable (typed arrays), fast for 10⁴ × 8.
 */
import type { InstanceTable } from './data';

export interface RangeFilter {
  column: string;
  lo: number;
  hi: number;
}

export interface InstanceFilter {
  /** Only these instance ids (group, transition, drill-down), or all. */
  ids?: ReadonlySet<string> | null;
  /** Every range must hold (lo <= v <= hi); NaN fails. */
  ranges?: RangeFilter[];
  /** Only instances where one of these columns (models' `agree`: 0/1, or a token fraction) is below 1. */
  disagree?: string[];
}

export function filterInstances(table: InstanceTable, f: InstanceFilter): Int32Array {
  const n = table.ids.length;
  const out = new Int32Array(n);
  let k = 0;
  const ranges = (f.ranges ?? []).map((r) => ({ v: table.columns.get(r.column), lo: r.lo, hi: r.hi }));
  const dis = (f.disagree ?? []).map((c) => table.columns.get(c)).filter((c): c is Float32Array => c !== undefined);
  let only: Int32Array | null = null;
  if (f.ids) {
    const rows: number[] = [];
    for (const id of f.ids) {
      const r = table.index.get(id);
      if (r !== undefined) rows.push(r);
    }
    only = Int32Array.from(rows).sort();
  }
  const m = only ? only.length : n;
  outer: for (let j = 0; j < m; j++) {
    const i = only ? only[j]! : j;
    for (const r of ranges) {
      const v = r.v ? r.v[i]! : NaN;
      if (!(v >= r.lo && v <= r.hi)) continue outer;
    }
    if (dis.length && !dis.some((c) => c[i]! < 1)) continue;
    out[k++] = i;
  }
  return out.slice(0, k);
}

/** Rows sorted by a column (NaN last), ties by table order. Returns a new array. */
export function sortInstances(table: InstanceTable, rows: Int32Array, column: string | null, descending: boolean): Int32Array {
  const v = column ? table.columns.get(column) : undefined;
  const out = rows.slice();
  if (!v) return out;
  const sign = descending ? -1 : 1;
  out.sort((a, b) => {
    const x = v[a]!;
    const y = v[b]!;
    const xn = Number.isNaN(x);
    const yn = Number.isNaN(y);
    if (xn || yn) return xn === yn ? a - b : xn ? 1 : -1;
    return x === y ? a - b : (x < y ? -1 : 1) * sign;
  });
  return out;
}

/** The largest (or smallest) value of a metric over several models, per instance (e.g. max KL). */
export function maxColumn(table: InstanceTable, columns: string[], how: 'max' | 'min' = 'max'): Float32Array {
  const out = new Float32Array(table.ids.length).fill(NaN);
  const sign = how === 'max' ? 1 : -1;
  for (const c of columns) {
    const v = table.columns.get(c);
    if (!v) continue;
    for (let i = 0; i < out.length; i++) {
      const x = v[i]!;
      if (!Number.isNaN(x) && !(sign * out[i]! >= sign * x)) out[i] = x;
    }
  }
  return out;
}

/** Per-instance metrics where a larger value is the worse one (divergences); the rest are worse when smaller. */
export function higherIsWorse(metric: string): boolean {
  return /kl|rel_l2|divergence/.test(metric);
}

export function pageOf(rows: Int32Array, page: number, size: number): { rows: Int32Array; page: number; pages: number } {
  const pages = Math.max(1, Math.ceil(rows.length / size));
  const p = Math.max(0, Math.min(pages - 1, page));
  return { rows: rows.subarray(p * size, (p + 1) * size), page: p, pages };
}
