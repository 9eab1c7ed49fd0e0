/**
 * The table's data: one row per model, a column per metric and per op parameter, sorting, the
 * change of each metric against the parent or a chosen reference model, and CSV export. Pure.
 */
import type { Lineage } from './lineage';
import { valueText } from './whatVaries';

export type Column =
  | { kind: 'name' | 'op' | 'status' | 'parent'; key: string; label: string }
  | { kind: 'metric'; key: string; label: string; metric: string }
  | { kind: 'param'; key: string; label: string; param: string };

export function tableColumns(lin: Lineage): Column[] {
  const params = new Set<string>();
  for (const id of lin.order) for (const k of Object.keys(lin.byId.get(id)!.params)) params.add(k);
  return [
    { kind: 'name', key: 'name', label: 'model' },
    { kind: 'parent', key: 'parent', label: 'parent' },
    { kind: 'op', key: 'op', label: 'op' },
    { kind: 'status', key: 'status', label: 'status' },
    ...lin.metrics.map((m) => ({ kind: 'metric' as const, key: `metric:${m.key}`, label: lin.label(m.key, { unit: true }), metric: m.key })),
    ...[...params].sort().map((p) => ({ kind: 'param' as const, key: `param:${p}`, label: p, param: p })),
  ];
}

/** Raw cell value: numbers stay numbers (for sorting and CSV), the rest is text. */
export function cellValue(lin: Lineage, id: string, col: Column): string | number | undefined {
  const m = lin.byId.get(id)!;
  switch (col.kind) {
    case 'name':
      return m.name;
    case 'parent': {
      const p = lin.parentOf(id);
      return p === undefined ? undefined : lin.byId.get(p)!.name;
    }
    case 'op':
      return m.op ?? (lin.parentOf(id) === undefined ? 'base' : undefined);
    case 'status':
      return m.status;
    case 'metric':
      return lin.metric(id, col.metric);
    case 'param': {
      const v = m.params[col.param];
      if (v === undefined) return undefined;
      return typeof v === 'number' ? v : valueText(v);
    }
  }
}

export type DeltaMode = { kind: 'none' } | { kind: 'parent' } | { kind: 'reference'; id: string };

/** The model a row's deltas are taken against, or undefined (no parent, no deltas). */
export function deltaBase(lin: Lineage, id: string, mode: DeltaMode): string | undefined {
  if (mode.kind === 'none') return undefined;
  if (mode.kind === 'parent') return lin.parentOf(id);
  return lin.byId.has(mode.id) ? mode.id : undefined;
}

export function metricDelta(lin: Lineage, id: string, metric: string, mode: DeltaMode): number | undefined {
  const base = deltaBase(lin, id, mode);
  if (base === undefined) return undefined;
  const a = lin.metric(id, metric);
  const b = lin.metric(base, metric);
  return a === undefined || b === undefined ? undefined : a - b;
}

/**
 * Rows sorted by a column; missing values always last, whatever the direction; ties keep the
 * lineage order (the sort is stable).
 */
export function sortRows(lin: Lineage, ids: readonly string[], col: Column | undefined, descending: boolean): string[] {
  if (!col) return [...ids];
  const keyed = ids.map((id) => ({ id, v: cellValue(lin, id, col) }));
  keyed.sort((a, b) => {
    if (a.v === undefined || b.v === undefined) return a.v === undefined ? (b.v === undefined ? 0 : 1) : -1;
    let c: number;
    if (typeof a.v === 'number' && typeof b.v === 'number') c = a.v - b.v;
    else c = String(a.v).localeCompare(String(b.v), undefined, { numeric: true });
    return descending ? -c : c;
  });
  return keyed.map((k) => k.id);
}

function csvField(v: string | number | undefined): string {
  if (v === undefined) return '';
  const s = typeof v === 'number' ? String(v) : v;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** CSV with a header; with deltas on, a "Δ metric" column follows every metric. */
export function toCsv(lin: Lineage, ids: readonly string[], cols: readonly Column[], mode: DeltaMode): string {
  const header: string[] = [];
  for (const c of cols) {
    header.push(c.label);
    if (c.kind === 'metric' && mode.kind !== 'none') header.push(`Δ ${c.label}`);
  }
  const lines = [header.map(csvField).join(',')];
  for (const id of ids) {
    const cells: (string | number | undefined)[] = [];
    for (const c of cols) {
      cells.push(cellValue(lin, id, c));
      if (c.kind === 'metric' && mode.kind !== 'none') {
        const d = metricDelta(lin, id, c.metric, mode);
        cells.push(d === undefined ? undefined : roundDelta(d));
      }
    }
    lines.push(cells.map(csvField).join(','));
  }
  return lines.join('\n') + '\n';
}

/** Differences of floats print as 0.30000000000000004: keep 12 significant digits. */
export function roundDelta(d: number): number {
  return Number(d.toPrecision(12));
}
