/**
 * Metric filters: a [lo, hi] range per metric (inclusive). A model passes when it has every
 * filtered metric inside its range; a model without a filtered metric (still running, failed)
 * does not pass, since nothing shows it meets the condition. Histograms for the filter panel.
 */
import { finiteRange } from '../shared/charts';
import type { Lineage } from './lineage';

export interface RangeFilter {
  metric: string;
  lo: number;
  hi: number;
}

export function passes(lin: Lineage, id: string, filters: readonly RangeFilter[]): boolean {
  for (const f of filters) {
    const v = lin.metric(id, f.metric);
    if (v === undefined || !(v >= f.lo && v <= f.hi)) return false;
  }
  return true;
}

/** The ids that pass every filter, in lineage order. */
export function passing(lin: Lineage, filters: readonly RangeFilter[]): Set<string> {
  return new Set(lin.order.filter((id) => passes(lin, id, filters)));
}

export interface Histogram {
  min: number;
  max: number;
  /** Counts per equal-width bin over [min, max]; the last bin includes max. */
  counts: number[];
  /** Of those, how many pass the other filters. */
  passing: number[];
}

/** Non-finite values (missing metrics) are left out. */
export function histogram(values: ArrayLike<number>, bins: number, passingMask?: readonly boolean[]): Histogram {
  const [min, max] = finiteRange(values) ?? [0, 0];
  const counts = new Array<number>(bins).fill(0);
  const pass = new Array<number>(bins).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    const b = binOf(v, min, max, bins);
    counts[b]!++;
    if (!passingMask || passingMask[i]) pass[b]!++;
  }
  return { min, max, counts, passing: pass };
}

export function binOf(v: number, min: number, max: number, bins: number): number {
  if (max === min) return 0;
  return Math.min(bins - 1, Math.max(0, Math.floor(((v - min) / (max - min)) * bins)));
}

/** Replaces (or with null removes) the filter on one metric. */
export function setFilter(filters: readonly RangeFilter[], metric: string, range: [number, number] | null): RangeFilter[] {
  const rest = filters.filter((f) => f.metric !== metric);
  if (!range) return rest;
  const [a, b] = range;
  return [...rest, { metric, lo: Math.min(a, b), hi: Math.max(a, b) }];
}

/** What the filter pane lists: every metric that varies, per-class metrics (`class_accuracy/3`)
 * folded into one group per prefix, and the constant ones left out (a histogram of one value
 * filters nothing) and named once. */
export interface FilterList {
  metrics: string[]; // metric keys, each its own histogram
  groups: { prefix: string; keys: string[] }[]; // folded, each key a histogram inside
  constant: string[];
}

export function filterList(keys: readonly string[], column: (key: string) => ArrayLike<number>): FilterList {
  const out: FilterList = { metrics: [], groups: [], constant: [] };
  const groups = new Map<string, string[]>();
  for (const key of keys) {
    const vs = Array.from(column(key)).filter(Number.isFinite);
    if (vs.length === 0 || vs.every((v) => v === vs[0])) {
      out.constant.push(key);
      continue;
    }
    const slash = key.indexOf('/');
    if (slash > 0) {
      const prefix = key.slice(0, slash);
      if (!groups.has(prefix)) {
        groups.set(prefix, []);
        out.groups.push({ prefix, keys: groups.get(prefix)! });
      }
      groups.get(prefix)!.push(key);
    } else out.metrics.push(key);
  }
  // a "group" of one is just a metric
  for (const g of out.groups.filter((x) => x.keys.length === 1)) out.metrics.push(g.keys[0]!);
  out.groups = out.groups.filter((x) => x.keys.length > 1);
  return out;
}
