/**
 * The shared model behind every view: the lineage, the view state, the hovered model, the
 * selection and which models pass the filters. Views listen for changes and redraw; this is
 * what links them (hover, selection, filters). No DOM except the persistence callback.
 */
import type { ModelInfo } from '../../shared/protocol';
import { Lineage } from './lineage';
import { computeLayout, type Layout } from './layout';
import { passing, type RangeFilter } from './filters';
import { defaultState, metricKeysOf, rekeyMetrics, type SavedMetric, type ViewState } from './state';
import { colorScale, extent, sizeScale } from './scales';
import { foldSteps } from './folding';
import { defaultAxes } from './axes';

export type Change = 'data' | 'layout' | 'encoding' | 'hover' | 'selection' | 'filters' | 'zoom' | 'table';

export class App {
  /** Every model, intermediate steps of multi-op variants included: what recipes are read from. */
  full = new Lineage([]);
  /** The models the views show: `full` with each multi-op variant's steps folded into it
   * (folding.ts) unless expanded. Ids are the same in both. */
  lin = new Lineage([]);
  /** Final model id -> its folded intermediate models. */
  folded = new Map<string, string[]>();
  layout: Layout = computeLayout(this.lin, 'step');
  state: ViewState = defaultState();
  hover: string | null = null;
  selection = new Set<string>();
  pass = new Set<string>();
  /** Encodings, recomputed when the data or the chosen metrics change. */
  color: (v: number | undefined) => string | null = () => null;
  size: (v: number | undefined) => number = () => 6;
  private readonly listeners = new Set<(c: Change) => void>();
  private saveTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly persist: (s: ViewState) => void = () => {}) {}

  on(fn: (c: Change) => void): void {
    this.listeners.add(fn);
  }

  emit(c: Change): void {
    for (const fn of this.listeners) fn(c);
    if (c !== 'hover') this.save();
  }

  /** Coalesced: zooming emits many changes a second, the store needs one. */
  private save(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.persist({ ...this.state, selection: [...this.selection], metricDefs: this.savedMetrics() }), 250);
  }

  /** The definitions of the metrics the state names, saved with it (see state.rekeyMetrics). */
  private savedMetrics(): Record<string, SavedMetric> {
    const out: Record<string, SavedMetric> = {};
    for (const k of metricKeysOf(this.state)) {
      const d = this.lin.metricDef(k);
      if (d) out[k] = { name: d.name, unit: d.unit, higherIsBetter: d.higherIsBetter };
    }
    return out;
  }

  setModels(models: readonly ModelInfo[], restored?: ViewState): void {
    this.full = new Lineage(models);
    if (restored) this.state = rekeyMetrics(restored, this.full.metrics);
    this.state.expanded = this.state.expanded.filter((id) => this.full.byId.has(id));
    this.fold();
    const keys = new Set(this.lin.metrics.map((m) => m.key));
    const headline = this.lin.metrics.filter((m) => m.headline).map((m) => m.key);
    const pick = (cur: string | null, i: number) => (cur !== null && keys.has(cur) ? cur : (headline[i] ?? this.lin.metrics[i]?.key ?? null));
    this.state.colorMetric = pick(this.state.colorMetric, 0);
    this.state.sizeMetric = pick(this.state.sizeMetric, 1);
    // The scatterplot's axes: size (or ratio) against the task's quality, never two metrics that
    // say the same thing on this lineage (axes.ts); a choice the user made stays.
    if (this.state.scatterX === null || !keys.has(this.state.scatterX) || this.state.scatterY === null || !keys.has(this.state.scatterY)) {
      const axes = defaultAxes(this.lin);
      if (this.state.scatterX === null || !keys.has(this.state.scatterX)) this.state.scatterX = axes.x ?? pick(null, 1);
      if (this.state.scatterY === null || !keys.has(this.state.scatterY)) this.state.scatterY = axes.y ?? pick(null, 0);
    }
    this.state.filters = this.state.filters.filter((f) => keys.has(f.metric));
    this.state.collapsed = this.state.collapsed.filter((id) => this.lin.byId.has(id));
    const keep = restored ? restored.selection : [...this.selection];
    this.selection = new Set(keep.filter((id) => this.lin.byId.has(id)));
    if (this.hover !== null && !this.lin.byId.has(this.hover)) this.hover = null;
    this.relayout();
    this.recolor();
    this.refilter();
    this.emit('data');
  }

  /** Rebuilds the shown lineage from the full one (the steps folded but where expanded). */
  private fold(): void {
    const open = new Set(this.state.expanded);
    const f = foldSteps(this.full, (id) => this.state.showSteps || open.has(id));
    this.lin = new Lineage(f.models);
    this.folded = f.folded;
  }

  /** Shows or folds the intermediate models of the variant whose final model is `id` (or, with
   * `all`, of every variant); the views redraw as for new data. */
  setSteps(id: string | 'all', show: boolean): void {
    if (id === 'all') {
      this.state.showSteps = show;
      if (!show) this.state.expanded = [];
    } else {
      const set = new Set(this.state.expanded);
      if (show) set.add(id);
      else set.delete(id);
      this.state.expanded = [...set];
    }
    this.setModels(this.full.models);
  }

  /** The final model a folded intermediate model is shown as (itself when shown). */
  shownAs(id: string): string | undefined {
    if (this.lin.byId.has(id)) return id;
    for (const [final, chain] of this.folded) if (chain.includes(id)) return final;
    return undefined;
  }

  relayout(): void {
    this.layout = computeLayout(this.lin, this.state.columnMode, new Set(this.state.collapsed));
  }

  recolor(): void {
    const c = this.state.colorMetric;
    const s = this.state.sizeMetric;
    this.color = c ? colorScale(this.lin.metricDef(c), extent(this.lin, c)) : () => null;
    this.size = s ? sizeScale(extent(this.lin, s)) : () => 6;
    this.colors.clear();
    this.radii.clear();
  }

  refilter(): void {
    this.pass = passing(this.lin, this.state.filters);
    // Filtered-out models cannot stay selected.
    for (const id of [...this.selection]) if (!this.pass.has(id)) this.selection.delete(id);
  }

  /** Per-model encodings, computed once per data or encoding change (the map draws every frame). */
  private colors = new Map<string, string | null>();
  private radii = new Map<string, number>();

  colorOf(id: string): string | null {
    let c = this.colors.get(id);
    if (c === undefined) {
      c = this.color(this.state.colorMetric ? this.lin.metric(id, this.state.colorMetric) : undefined);
      this.colors.set(id, c);
    }
    return c;
  }

  radiusOf(id: string): number {
    let r = this.radii.get(id);
    if (r === undefined) {
      r = this.size(this.state.sizeMetric ? this.lin.metric(id, this.state.sizeMetric) : undefined);
      this.radii.set(id, r);
    }
    return r;
  }

  setHover(id: string | null): void {
    if (id === this.hover) return;
    this.hover = id;
    this.emit('hover');
  }

  /** Replace, add to, or toggle in the selection; models that fail the filters are skipped. */
  select(ids: Iterable<string>, how: 'replace' | 'add' | 'toggle' | 'remove' = 'replace'): void {
    const list = [...ids].filter((id) => this.pass.has(id) && this.lin.byId.has(id));
    if (how === 'replace') this.selection = new Set(list);
    else
      for (const id of list) {
        if (how === 'add') this.selection.add(id);
        else if (how === 'remove') this.selection.delete(id);
        else if (this.selection.has(id)) this.selection.delete(id);
        else this.selection.add(id);
      }
    this.emit('selection');
  }

  /** Grow the selection along the lineage. */
  extend(kind: 'parents' | 'children' | 'ancestors' | 'descendants'): void {
    const add: string[] = [];
    for (const id of this.selection) {
      if (kind === 'parents') {
        const p = this.lin.parentOf(id);
        if (p !== undefined) add.push(p);
      } else if (kind === 'children') add.push(...(this.lin.children.get(id) ?? []));
      else if (kind === 'ancestors') add.push(...this.lin.ancestry(id).slice(0, -1));
      else add.push(...this.lin.descendants(id));
    }
    this.select(add, 'add');
  }

  setFilters(filters: RangeFilter[]): void {
    this.state.filters = filters;
    this.refilter();
    this.emit('filters');
  }

  toggleCollapse(id: string): void {
    const set = new Set(this.state.collapsed);
    if (set.has(id)) set.delete(id);
    else if ((this.lin.children.get(id) ?? []).length) set.add(id);
    else return;
    this.state.collapsed = [...set];
    this.relayout();
    this.emit('layout');
  }

  /** Models whose name, other names (variants matched to it) or op contains the text
   * (case-insensitive); a folded step's name finds the variant it is folded into. */
  search(text: string): string[] {
    const q = text.trim().toLowerCase();
    if (!q) return [];
    return this.lin.order.filter((id) => {
      const m = this.lin.byId.get(id)!;
      const steps = (this.folded.get(id) ?? []).map((s) => this.full.byId.get(s)!);
      const names = [m, ...steps].flatMap((x) => [x.name, ...(x.aliases ?? [])]);
      return names.some((n) => n.toLowerCase().includes(q)) || (m.op ?? '').toLowerCase().includes(q);
    });
  }
}
