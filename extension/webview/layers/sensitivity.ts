/**
 * The Sensitivity view's data: a stored scan (bonsai/scans) as rows (layers or blocks, in depth
 * order) × columns (each scanned setting, its proxy and full values side by side where both were
 * measured), sorting, and the heat of a cell. Pure (no DOM): unit-tested.
 */
import type { ScanData } from '../../shared/protocol';

export type Fidelity = 'proxy' | 'full';

export interface SensColumn {
  /** stable across reloads: "<setting index>:<fidelity>" */
  key: string;
  setting: number;
  fidelity: Fidelity;
  label: string;
  /** Spearman's rank correlation of the setting's proxy and full values (null: not both measured) */
  rho: number | null;
}

export interface SensCell {
  value: number | null;
  /** why the setting was not measured on this unit */
  skipped?: string;
  /** the unit's stored bytes under the setting */
  bytes: number | null;
}

export interface SensRow {
  /** depth order (the scan's unit index) */
  unit: number;
  name: string;
  numel: number;
  baseBytes: number;
  cells: SensCell[];
}

/** Sort by depth, or by one column's values (a column's key). */
export interface SensSort {
  by: 'depth' | string;
  descending: boolean;
}

export function sensitivityColumns(scan: ScanData): SensColumn[] {
  const out: SensColumn[] = [];
  scan.spec.settings.forEach((s, i) => {
    const rho = scan.rankCorrelation[i] ?? null;
    if (scan.proxy) out.push({ key: `${i}:proxy`, setting: i, fidelity: 'proxy', label: s.label, rho });
    if (scan.full) out.push({ key: `${i}:full`, setting: i, fidelity: 'full', label: s.label, rho });
  });
  return out;
}

export function sensitivityRows(scan: ScanData, columns: readonly SensColumn[] = sensitivityColumns(scan)): SensRow[] {
  return scan.units.map((u, i) => ({
    unit: i,
    name: u.name,
    numel: scan.numel[i] ?? 0,
    baseBytes: scan.baseBytes[i] ?? 0,
    cells: columns.map((c) => {
      const table = c.fidelity === 'proxy' ? scan.proxy : scan.full;
      const value = table?.[c.setting]?.[i] ?? null;
      const skipped = scan.skipped[`${c.setting}:${i}`];
      const cell: SensCell = { value, bytes: scan.bytes[c.setting]?.[i] ?? null };
      if (skipped !== undefined) cell.skipped = skipped;
      return cell;
    }),
  }));
}

/** Rows sorted by `sort`: unmeasured cells always last, ties in depth order. */
export function sortRows(rows: readonly SensRow[], columns: readonly SensColumn[], sort: SensSort): SensRow[] {
  const sign = sort.descending ? -1 : 1;
  if (sort.by === 'depth') return [...rows].sort((a, b) => sign * (a.unit - b.unit));
  const c = columns.findIndex((x) => x.key === sort.by);
  if (c < 0) return [...rows];
  return [...rows].sort((a, b) => {
    const x = a.cells[c]?.value ?? null;
    const y = b.cells[c]?.value ?? null;
    if (x === null || y === null) return x === null && y === null ? a.unit - b.unit : x === null ? 1 : -1;
    return x === y ? a.unit - b.unit : sign * (x - y);
  });
}

/** The next sort when a column's header is clicked: a new column sorts the most sensitive first;
 * the same column flips; depth starts shallow first. */
export function nextSort(current: SensSort, by: string): SensSort {
  if (current.by === by) return { by, descending: !current.descending };
  return { by, descending: by !== 'depth' };
}

/** Per column: the largest measured value (the heat scale's top; 0 when none is above 0). */
export function columnMax(rows: readonly SensRow[], c: number): number {
  let top = 0;
  for (const r of rows) {
    const v = r.cells[c]?.value;
    if (v !== null && v !== undefined && Number.isFinite(v) && v > top) top = v;
  }
  return top;
}

/** A cell's heat in [0, 1]: its share of the column's largest value (a loss below 0, a model
 * that got better, is cold). */
export function heat(value: number | null, max: number): number {
  if (value === null || !Number.isFinite(value) || max <= 0 || value <= 0) return 0;
  return Math.min(1, value / max);
}

export function rhoText(rho: number | null): string {
  return rho === null ? 'ρ —' : `ρ ${rho.toFixed(2)}`;
}

/** A cell's text: the proxy's relative error, or the full loss in the metric's unit (signed). */
export function cellText(cell: SensCell, fidelity: Fidelity, metric: ScanData['metric']): string {
  if (cell.value === null) return cell.skipped !== undefined ? 'skipped' : '—';
  if (fidelity === 'proxy') return cell.value.toPrecision(3);
  const unit = metric?.unit === '%' ? '%' : '';
  const v = cell.value;
  return `${v > 0 ? '+' : v < 0 ? '−' : ''}${Math.abs(v).toPrecision(3)}${unit}`;
}

/** A column's header text: the setting, and which fidelity. */
export function columnTitle(c: SensColumn): string {
  return `${c.label} · ${c.fidelity}`;
}
