/**
 * An index over bonsai/lineage's models that every view shares: parents, children (oldest
 * first), depth, the metric catalogue (key, name, unit, direction), and metric lookups. Metrics
 * are keyed by `MetricInfo.key`, not by name: two definitions under one name are two metrics.
 * Pure: no DOM.
 */
import type { MetricDef as WireMetricDef, MetricInfo, ModelInfo } from '../../shared/protocol';
import { metricLabel } from '../shared/format';

/** A metric of the catalogue: its definition and the key its values go by. */
export type MetricDef = WireMetricDef & { key: string };

export class Lineage {
  readonly byId = new Map<string, ModelInfo>();
  readonly children = new Map<string, string[]>();
  readonly roots: string[] = [];
  readonly depth = new Map<string, number>();
  /** Depth-first pre-order, siblings oldest first: the order rows and tables use. */
  readonly order: string[] = [];
  readonly metrics: MetricDef[] = [];
  private readonly values = new Map<string, Map<string, number>>();

  private readonly parents = new Map<string, string | undefined>();

  constructor(readonly models: readonly ModelInfo[]) {
    for (const m of models) this.byId.set(m.id, m);
    for (const m of models) this.parents.set(m.id, this.checkedParent(m.id));
    const seenMetric = new Map<string, MetricDef>();
    for (const m of models) {
      const vals = new Map<string, number>();
      for (const x of m.metrics) {
        vals.set(x.key, x.value);
        const seen = seenMetric.get(x.key);
        if (!seen) seenMetric.set(x.key, { key: x.key, name: x.name, unit: x.unit, higherIsBetter: x.higherIsBetter, headline: x.headline });
        else if (x.headline) seen.headline = true; // headline for any model: headline for the map
      }
      this.values.set(m.id, vals);
      const p = this.parentOf(m.id);
      if (p === undefined) this.roots.push(m.id);
      else {
        const list = this.children.get(p) ?? [];
        list.push(m.id);
        this.children.set(p, list);
      }
    }
    // Headline metrics first, then by name, so defaults and columns are stable.
    this.metrics = [...seenMetric.values()].sort((a, b) => Number(b.headline) - Number(a.headline) || a.name.localeCompare(b.name) || a.key.localeCompare(b.key));
    const older = (a: string, b: string) => {
      const ma = this.byId.get(a)!;
      const mb = this.byId.get(b)!;
      return ma.created.localeCompare(mb.created) || ma.name.localeCompare(mb.name) || a.localeCompare(b);
    };
    this.roots.sort(older);
    for (const list of this.children.values()) list.sort(older);
    // Iterative DFS: lineages can be deep and the call stack is not.
    const stack: [string, number][] = [...this.roots].reverse().map((r) => [r, 0]);
    while (stack.length) {
      const [id, d] = stack.pop()!;
      if (this.depth.has(id)) continue;
      this.depth.set(id, d);
      this.order.push(id);
      const kids = this.children.get(id) ?? [];
      for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i]!, d + 1]);
    }
  }

  /** The listed parent, or undefined for a root, a missing parent, or a parent cycle. */
  parentOf(id: string): string | undefined {
    return this.parents.get(id);
  }

  private checkedParent(id: string): string | undefined {
    const m = this.byId.get(id);
    if (!m || m.parent === null || !this.byId.has(m.parent) || m.parent === id) return undefined;
    // A cycle (corrupt store) is broken at the model that closes it.
    const seen = new Set([id]);
    let p: string | null = m.parent;
    while (p !== null) {
      if (seen.has(p)) return undefined;
      seen.add(p);
      p = this.byId.get(p)?.parent ?? null;
    }
    return m.parent;
  }

  private readonly columns = new Map<string, Float64Array>();

  /** One metric (by key) for every model, aligned with `order`, NaN where missing (for fast scans). */
  column(key: string): Float64Array {
    let col = this.columns.get(key);
    if (!col) {
      col = new Float64Array(this.order.length);
      this.order.forEach((id, i) => (col![i] = this.values.get(id)?.get(key) ?? NaN));
      this.columns.set(key, col);
    }
    return col;
  }

  metric(id: string, key: string): number | undefined {
    return this.values.get(id)?.get(key);
  }

  metricDef(key: string): MetricDef | undefined {
    return this.metrics.find((m) => m.key === key);
  }

  /** How the metric `key` is named in the views: told apart from others under its name (see
   * `metricLabel`); the key itself for a metric no model has. */
  label(key: string, show?: { unit?: boolean; direction?: boolean }): string {
    const d = this.metricDef(key);
    return d ? metricLabel(d, this.metrics, show) : key;
  }

  /** Root first, the model last. */
  ancestry(id: string): string[] {
    const chain: string[] = [];
    let cur: string | undefined = id;
    while (cur !== undefined) {
      chain.push(cur);
      cur = this.parentOf(cur);
    }
    return chain.reverse();
  }

  descendants(id: string): string[] {
    const out: string[] = [];
    const stack = [...(this.children.get(id) ?? [])];
    while (stack.length) {
      const c = stack.pop()!;
      out.push(c);
      stack.push(...(this.children.get(c) ?? []));
    }
    return out;
  }
}

/** Signed change of a metric and whether it is an improvement, given its better direction. */
export function change(value: number, parentValue: number, higherIsBetter: boolean): { delta: number; better: boolean | null } {
  const delta = value - parentValue;
  if (delta === 0) return { delta, better: null };
  return { delta, better: higherIsBetter ? delta > 0 : delta < 0 };
}

export function metricInfo(m: ModelInfo, key: string): MetricInfo | undefined {
  return m.metrics.find((x) => x.key === key);
}
