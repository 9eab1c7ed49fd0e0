/**
 * The Layers panel's state, in one object: what the user chose (`ui`, saved across reloads),
 * what the comparisons have delivered so far (per-model data and lookup indexes, the module
 * tree), and the live handles (the running comparison, heatmaps, tile clients). Pure: no DOM, so
 * every step here is unit-tested; the views read it and the panel (app.ts) mutates it.
 */
import type { ModelInfo } from '../../shared/protocol';
import type { DrillFocus } from '../../shared/messages';
import type { CompareProgress } from '../shared/comparePanel';
import type { CompareRun } from '../shared/stream';
import type { ModelData } from './data';
import type { HeatmapHandle } from './heatmap';
import { ModelIndex, measure, type Measure, type Mode } from './measures';
import type { TilePyramidClient } from './tiles';
import { ModuleTree, parseFilter, visibleRows, type Row } from './tree';

/** What an activation heatmap shows: the difference, or one side's output. */
export type ActWhat = 'diff' | 'model' | 'base';

/** The user's choices. */
export interface LayersUi {
  measure: Measure;
  mode: Mode;
  filter: string;
  /** Expanded tree rows ('' is the model itself). */
  expanded: Set<string>;
  /** The module or tensor shown in the detail ('' is the model). */
  selected: string;
  /** The keyboard cursor: an index into the visible rows (not saved). */
  active: number;
  /** "Why?" from Behaviors: rank the layers for this instance. */
  drill: DrillFocus | null;
  /** The model of the weight (and preferred model of the activation) heatmap. */
  heatModel: string;
  /** Weight heatmap: the difference (model − base), else the model's weight. */
  heatDiff: boolean;
  actWhat: ActWhat;
  /** How many of the sampled instances the activation heatmap stacks. */
  actCount: number;
}

/** The saved form of `LayersUi` (the webview's state, JSON). */
export type SavedView = {
  measure: string;
  mode: Mode;
  filter: string;
  expanded: string[];
  selected: string;
  drill: DrillFocus | null;
  heatModel: string;
  heatDiff: boolean;
  actWhat: ActWhat;
  actCount: number;
};

/** The choices from a saved view (anything missing or malformed gets its default). */
export function uiOfSaved(saved: unknown, others: string[]): LayersUi {
  const v = (saved ?? {}) as Record<string, unknown>;
  return {
    measure: measure(String(v.measure ?? 'relL2')),
    mode: v.mode === 'isolated' ? 'isolated' : 'propagated',
    filter: String(v.filter ?? ''),
    expanded: new Set<string>(Array.isArray(v.expanded) ? (v.expanded as string[]) : ['']),
    selected: typeof v.selected === 'string' ? v.selected : '',
    active: 0,
    drill: (v.drill ?? null) as DrillFocus | null,
    heatModel: typeof v.heatModel === 'string' ? v.heatModel : others[0]!,
    heatDiff: v.heatDiff !== false,
    actWhat: (['diff', 'model', 'base'].includes(String(v.actWhat)) ? v.actWhat : 'diff') as ActWhat,
    actCount: typeof v.actCount === 'number' && v.actCount > 0 ? v.actCount : 16,
  };
}

export function savedView(ui: LayersUi): SavedView {
  return {
    measure: ui.measure.key,
    mode: ui.mode,
    filter: ui.filter,
    expanded: [...ui.expanded],
    selected: ui.selected,
    drill: ui.drill,
    heatModel: ui.heatModel,
    heatDiff: ui.heatDiff,
    actWhat: ui.actWhat,
    actCount: ui.actCount,
  };
}

/** An activation heatmap's tile source: known only from the server's first answer. */
export interface ActSource {
  client: TilePyramidClient;
  shape: number[];
  lengths: number[] | undefined;
}

export interface LayersState {
  ui: LayersUi;
  /** The lineage's models (for names). */
  models: ModelInfo[];
  /** Per compared model (not the base): its weights and activations results as they arrive. */
  data: Map<string, ModelData>;
  index: Map<string, ModelIndex>;
  readonly tree: ModuleTree;
  /** The tree rows shown now (what the keyboard moves over); see `refreshRows`. */
  rows: Row[];
  /** What `rows` were computed from (tree version, filter, expansion): equal means still current. */
  rowsKey: string;
  errors: string[];
  progress: CompareProgress;
  run: CompareRun | null;
  heat: HeatmapHandle | null;
  actHeat: HeatmapHandle | null;
  /** One tile client (and cache) per weight heatmap source, kept while the panel lives. */
  clients: Map<string, TilePyramidClient>;
  /** Activation heatmap sources, each probed once at its coarsest level. */
  actSources: Map<string, Promise<ActSource>>;
}

export function createLayersState(others: string[], saved: unknown): LayersState {
  return {
    ui: uiOfSaved(saved, others),
    models: [],
    data: new Map(others.map((o) => [o, {}])),
    index: new Map(),
    tree: new ModuleTree(),
    rows: [],
    rowsKey: '',
    errors: [],
    progress: { label: 'Comparing weights…', received: 0, expected: others.length, running: true },
    run: null,
    heat: null,
    actHeat: null,
    clients: new Map(),
    actSources: new Map(),
  };
}

/** A model's name from the lineage; its id until the lineage names it. */
export function modelName(s: LayersState, id: string): string {
  return s.models.find((m) => m.id === id)?.name ?? id;
}

/**
 * Stores one arrived result (`weights` or `acts`) for its model; the model's id, or null for a
 * model this panel does not show.
 */
export function storeResult<K extends 'weights' | 'acts'>(s: LayersState, key: K, value: NonNullable<ModelData[K]> & { other: string }): string | null {
  const d = s.data.get(value.other);
  if (!d) return null;
  d[key] = value;
  return value.other;
}

/** Rebuilds a model's lookup index and adds its modules and tensors to the tree. */
export function reindex(s: LayersState, id: string): void {
  const d = s.data.get(id)!;
  s.index.set(id, new ModelIndex(d));
  for (const t of d.weights?.tensors ?? []) if (t.status !== 'extra_in_other') s.tree.addTensor(t.name);
  for (const n of d.weights?.tree ?? []) s.tree.addModule(n.path);
  for (const m of d.acts?.modules ?? []) s.tree.addModule(m.name);
}

/** Whether model `id`'s arrived results hold anything of node `node` (a tensor, or a module's
 * weight roll-up or activations): only then does the node's detail change. */
export function resultsCover(s: LayersState, id: string, node: string): boolean {
  const x = s.index.get(id);
  return !!x && (x.tensors.has(node) || x.nodes.has(node) || x.modules.has(node));
}

/** Selects a module or tensor: opens the path to it and moves the cursor onto its row. */
export function selectNode(s: LayersState, id: string): void {
  const ui = s.ui;
  ui.selected = id;
  for (let p = s.tree.get(id)?.parent ?? null; p !== null; p = s.tree.get(p)?.parent ?? null) ui.expanded.add(p);
  const i = refreshRows(s).findIndex((r) => r.node.id === id);
  if (i >= 0) ui.active = i;
}

/**
 * The tree rows to show for the current expansion and filter (kept in `rows`). A select computes
 * them to place the cursor and the tree view draws them right after: the walk (and the filter's
 * regex over every node) runs again only when the tree changed (its version) or the filter or
 * expansion did.
 */
export function refreshRows(s: LayersState): Row[] {
  const key = `${s.tree.version}\u0000${s.ui.filter}\u0000${[...s.ui.expanded].join('\u0000')}`;
  if (key !== s.rowsKey) {
    s.rows = visibleRows(s.tree, s.ui.expanded, parseFilter(s.ui.filter).match);
    s.rowsKey = key;
  }
  return s.rows;
}

/** Disposes the detail's heatmaps (a new selection draws new ones). */
export function disposeHeatmaps(s: LayersState): void {
  s.heat?.dispose();
  s.heat = null;
  s.actHeat?.dispose();
  s.actHeat = null;
}
