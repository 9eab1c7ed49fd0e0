/**
 * The panel's view state (encodings, selection, filters, zoom, table settings), what survives a
 * reload through the PanelStore. Restored state comes from disk: every field is checked.
 */
import type { ColumnMode } from './layout';
import type { RangeFilter } from './filters';

export interface Zoom {
  k: number;
  x: number;
  y: number;
}

export interface ViewState {
  colorMetric: string | null;
  sizeMetric: string | null;
  columnMode: ColumnMode;
  selection: string[];
  filters: RangeFilter[];
  collapsed: string[];
  mapZoom: Zoom | null;
  scatterX: string | null;
  scatterY: string | null;
  scatterZoom: Zoom | null;
  sortKey: string | null;
  sortDesc: boolean;
  delta: 'none' | 'parent' | 'reference';
  reference: string | null;
  groupBy: string[];
  bottom: 'scatter' | 'table';
}

export function defaultState(): ViewState {
  return {
    colorMetric: null,
    sizeMetric: null,
    columnMode: 'step',
    selection: [],
    filters: [],
    collapsed: [],
    mapZoom: null,
    scatterX: null,
    scatterY: null,
    scatterZoom: null,
    sortKey: null,
    sortDesc: false,
    delta: 'parent',
    reference: null,
    groupBy: [],
    bottom: 'scatter',
  };
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function zoom(v: unknown): Zoom | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  return num(o.k) && num(o.x) && num(o.y) && o.k > 0 ? { k: o.k, x: o.x, y: o.y } : null;
}

export function restoreState(raw: unknown): ViewState {
  const s = defaultState();
  if (typeof raw !== 'object' || raw === null) return s;
  const o = raw as Record<string, unknown>;
  s.colorMetric = str(o.colorMetric);
  s.sizeMetric = str(o.sizeMetric);
  if (o.columnMode === 'op') s.columnMode = 'op';
  s.selection = strs(o.selection);
  if (Array.isArray(o.filters)) {
    s.filters = o.filters.filter(
      (f): f is RangeFilter => typeof f === 'object' && f !== null && typeof (f as RangeFilter).metric === 'string' && num((f as RangeFilter).lo) && num((f as RangeFilter).hi),
    );
  }
  s.collapsed = strs(o.collapsed);
  s.mapZoom = zoom(o.mapZoom);
  s.scatterX = str(o.scatterX);
  s.scatterY = str(o.scatterY);
  s.scatterZoom = zoom(o.scatterZoom);
  s.sortKey = str(o.sortKey);
  s.sortDesc = o.sortDesc === true;
  if (o.delta === 'none' || o.delta === 'parent' || o.delta === 'reference') s.delta = o.delta;
  s.reference = str(o.reference);
  s.groupBy = strs(o.groupBy).slice(0, 2);
  if (o.bottom === 'table') s.bottom = 'table';
  return s;
}
