/** The groups table: one row per (grouping, group), a cell per model; sorting; uncertainty. */
import { headline, interval, type BehaviorModel, type Interval } from './data';

export interface GroupCell {
  count: number;
  delta: Interval | null;
  agreement: Interval | null;
  kl: number | null;
}

export interface GroupRow {
  key: string;
  grouping: string;
  group: string;
  count: number;
  cells: Record<string, GroupCell>;
  /** Too few instances (or an interval wider than `maxWidth`) to read much into. */
  uncertain: boolean;
  /** Member instance ids, when the server sends them (groups[].ids). */
  ids?: string[];
}

export const MIN_GROUP = 30;

export function groupRows(models: BehaviorModel[], opts: { minCount?: number; maxWidth?: number } = {}): GroupRow[] {
  const minCount = opts.minCount ?? MIN_GROUP;
  const maxWidth = opts.maxWidth ?? 0.25;
  const rows = new Map<string, GroupRow>();
  for (const m of models) {
    const h = headline(m.taskKind);
    for (const g of m.groups) {
      const grouping = String(g.grouping);
      const group = String(g.group);
      const key = `${grouping}\u0000${group}`;
      const count = typeof g.count === 'number' ? g.count : 0;
      let row = rows.get(key);
      if (!row) {
        row = { key, grouping, group, count, cells: {}, uncertain: false };
        rows.set(key, row);
      }
      row.count = Math.max(row.count, count);
      if (!row.ids && Array.isArray(g.ids)) row.ids = (g.ids as unknown[]).map(String);
      const delta = interval(g[h.key]);
      row.cells[m.id] = { count, delta, agreement: interval(g[h.agreement]), kl: typeof g.mean_kl === 'number' ? g.mean_kl : null };
      const wide = delta?.ci ? delta.ci[1] - delta.ci[0] > maxWidth : false;
      if (count < minCount || wide) row.uncertain = true;
    }
  }
  return [...rows.values()];
}

export type GroupColumn = 'group' | 'count' | { model: string; field: 'delta' | 'agreement' | 'kl' };

function cellValue(r: GroupRow, c: GroupColumn): number | string | null {
  if (c === 'group') return r.group;
  if (c === 'count') return r.count;
  const cell = r.cells[c.model];
  if (!cell) return null;
  return c.field === 'kl' ? cell.kl : (cell[c.field]?.value ?? null);
}

/** Sorted copy; nulls always last; ties keep grouping then group order (stable, numeric-aware). */
export function sortGroups(rows: GroupRow[], column: GroupColumn, descending: boolean): GroupRow[] {
  const coll = new Intl.Collator(undefined, { numeric: true });
  return [...rows].sort((a, b) => {
    const x = cellValue(a, column);
    const y = cellValue(b, column);
    if (x === null || y === null) {
      if (x !== y) return x === null ? 1 : -1;
    } else {
      const d = typeof x === 'string' || typeof y === 'string' ? coll.compare(String(x), String(y)) : x - y;
      if (d !== 0) return descending ? -d : d;
    }
    return coll.compare(a.grouping, b.grouping) || coll.compare(a.group, b.group);
  });
}
