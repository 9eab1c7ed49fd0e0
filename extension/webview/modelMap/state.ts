/**
 * The panel's view state (encodings, selection, filters, zoom, table settings), what survives a
 * reload through the PanelStore. Restored state comes from disk: every field is checked.
 */
import type { ColumnMode } from './layout';
import type { RangeFilter } from './filters';
import { metricIdentity } from '../shared/format';

export interface Zoom {
  k: number;
  x: number;
  y: number;
}

/** What a metric is, saved beside the keys the state names: keys are numbered per session
 * (`acc#2`), so a restored key is matched to the metric of the same definition, not the same key. */
export interface SavedMetric {
  name: string;
  unit: string;
  higherIsBetter: boolean;
}

export interface ViewState {
  colorMetric: string | null;
  sizeMetric: string | null;
  columnMode: ColumnMode;
  selection: string[];
  filters: RangeFilter[];
  collapsed: string[];
  /** Multi-op variants (their final model ids) shown with their intermediate models (folding.ts). */
  expanded: string[];
  /** Every variant's intermediate models shown. */
  showSteps: boolean;
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
  /** key -> definition of the metrics named above, as they were when saved */
  metricDefs: Record<string, SavedMetric>;
}

export function defaultState(): ViewState {
  return {
    colorMetric: null,
    sizeMetric: null,
    columnMode: 'step',
    selection: [],
    filters: [],
    collapsed: [],
    expanded: [],
    showSteps: false,
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
    metricDefs: {},
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
  s.expanded = strs(o.expanded);
  s.showSteps = o.showSteps === true;
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
  if (typeof o.metricDefs === 'object' && o.metricDefs !== null) {
    for (const [k, v] of Object.entries(o.metricDefs as Record<string, unknown>)) {
      const d = v as Partial<SavedMetric> | null;
      if (d && typeof d.name === 'string' && typeof d.unit === 'string' && typeof d.higherIsBetter === 'boolean') {
        s.metricDefs[k] = { name: d.name, unit: d.unit, higherIsBetter: d.higherIsBetter };
      }
    }
  }
  return s;
}

/** The metric keys a state names (encodings, axes, filters, the sorted column). */
export function metricKeysOf(s: ViewState): string[] {
  const keys = [s.colorMetric, s.sizeMetric, s.scatterX, s.scatterY, ...s.filters.map((f) => f.metric)];
  if (s.sortKey?.startsWith('metric:')) keys.push(s.sortKey.slice('metric:'.length));
  return [...new Set(keys.filter((k): k is string => k !== null))];
}

/**
 * The state with each metric key it names moved to the current key of the same definition (as
 * saved in `metricDefs`); a key saved without a definition (state from before definitions were
 * saved) stays as it was, which is the metric's name and so its first definition's key.
 */
export function rekeyMetrics(s: ViewState, current: readonly (SavedMetric & { key: string })[]): ViewState {
  const moved = (k: string | null): string | null => {
    const d = k === null ? undefined : s.metricDefs[k];
    if (k === null || !d) return k;
    return current.find((m) => metricIdentity(m) === metricIdentity(d))?.key ?? null; // gone: the default applies
  };
  const sortMetric = s.sortKey?.startsWith('metric:') ? moved(s.sortKey.slice('metric:'.length)) : undefined;
  return {
    ...s,
    colorMetric: moved(s.colorMetric),
    sizeMetric: moved(s.sizeMetric),
    scatterX: moved(s.scatterX),
    scatterY: moved(s.scatterY),
    filters: s.filters.flatMap((f) => {
      const m = moved(f.metric);
      return m === null ? [] : [{ ...f, metric: m }];
    }),
    sortKey: sortMetric === undefined ? s.sortKey : sortMetric === null ? null : `metric:${sortMetric}`,
  };
}
