/**
 * Model Map: the provenance map, the scatterplot with its Pareto front, the table, metric
 * filters and selection details, all linked through one App (hover, selection, filters), fed by
 * the lineage and its live updates, with the view state kept across reloads.
 */
import type { ModelInfo } from '../../shared/protocol';
import { el, icon, mount, notice } from '../shared/dom';
import { PanelStore, Rpc, vscodeApi } from '../shared/rpc';
import { App } from './app';
import { DetailsView } from './detailsView';
import { mapSvg, scatterSvg } from './exporter';
import { FiltersView } from './filtersView';
import { legendSvg } from './legend';
import { MapView } from './mapView';
import { ScatterView } from './scatterView';
import { paneLayout, type Panes } from './panes';
import { restoreState, type ViewState } from './state';
import { installStyle } from './style';
import { TableView } from './tableView';
import { Tooltip } from './tooltip';

installStyle();
const api = vscodeApi();
const rpc = new Rpc(api);
const store = new PanelStore(api);
const app = new App((s: ViewState) => store.update({ view: { ...(store.state.view ?? {}), map: s } }));
const tooltip = new Tooltip(app);
const map = new MapView(app, tooltip);
const scatter = new ScatterView(app, tooltip);

async function save(name: string, data: string, encoding: 'utf8' | 'base64'): Promise<void> {
  try {
    await rpc.request('exportFile', { name, data, encoding });
  } catch (e) {
    rpc.log('error', `export ${name}: ${(e as Error).message}`);
    showBanner(`Could not save ${name}: ${(e as Error).message}`);
  }
}

const table = new TableView(app, (name, text) => void save(name, text, 'utf8'));
const filters = new FiltersView(app);
const details = new DetailsView(app, (view, base, others) => void rpc.request('openPanel', { view, models: [base, ...others] }).catch((e: Error) => showBanner(e.message)));

// -- toolbar ---------------------------------------------------------------------------------
function metricSelect(label: string, get: () => string | null, set: (v: string) => void): HTMLSelectElement {
  const s = el('select', { 'aria-label': label });
  const fill = () => {
    s.replaceChildren(...app.lin.metrics.map((m) => el('option', { value: m.key }, `${app.lin.label(m.key)}${m.headline ? ' ★' : ''}`)));
    s.value = get() ?? '';
  };
  app.on((c) => {
    if (c === 'data' || c === 'encoding') fill();
  });
  s.addEventListener('change', () => {
    set(s.value);
    app.recolor();
    scatter.recompute();
    app.emit('encoding');
  });
  return s;
}

const colorSel = metricSelect('Fill colour metric', () => app.state.colorMetric, (v) => (app.state.colorMetric = v));
const sizeSel = metricSelect('Node size metric', () => app.state.sizeMetric, (v) => (app.state.sizeMetric = v));
const columnsSel = el('select', { 'aria-label': 'Columns' }, el('option', { value: 'step' }, 'by step'), el('option', { value: 'op' }, 'by op kind'));
columnsSel.addEventListener('change', () => {
  app.state.columnMode = columnsSel.value === 'op' ? 'op' : 'step';
  app.state.mapZoom = null;
  app.relayout();
  app.emit('layout');
});
const search = el('input', { type: 'search', placeholder: 'Search name or op (Enter selects)', 'aria-label': 'Search models by name or op' });
search.addEventListener('keydown', (e) => {
  if (e.key !== 'Enter') return;
  const hits = app.search(search.value);
  app.select(hits, e.shiftKey ? 'add' : 'replace');
  if (hits[0] !== undefined) map.reveal(hits[0]);
  searchInfo.textContent = search.value.trim() ? `${hits.filter((id) => app.pass.has(id)).length} found` : '';
});
const searchInfo = el('span', { class: 'muted', role: 'status' });
const grow = el('select', { 'aria-label': 'Grow the selection' }, el('option', { value: '' }, 'Select +…'));
for (const k of ['parents', 'children', 'ancestors', 'descendants']) grow.append(el('option', { value: k }, `+ ${k}`));
grow.addEventListener('change', () => {
  if (grow.value) app.extend(grow.value as 'parents');
  grow.value = '';
});
const exportSel = el('select', { 'aria-label': 'Export the view' }, el('option', { value: '' }, 'Export…'));
for (const [v, t] of [['map-svg', 'Map as SVG'], ['map-png', 'Map as PNG'], ['scatter-svg', 'Scatterplot as SVG'], ['scatter-png', 'Scatterplot as PNG']]) exportSel.append(el('option', { value: v! }, t!));
exportSel.addEventListener('change', () => {
  const v = exportSel.value;
  exportSel.value = '';
  const png = (url: string) => url.slice(url.indexOf(',') + 1);
  if (v === 'map-svg') void save('model-map.svg', mapSvg(app), 'utf8');
  else if (v === 'map-png') void save('model-map.png', png(map.toDataUrl()), 'base64');
  else if (v === 'scatter-svg') void save('model-scatter.svg', scatterSvg(app, scatter.currentScales(), scatter.frontIds()), 'utf8');
  else if (v === 'scatter-png') void save('model-scatter.png', png(scatter.toDataUrl()), 'base64');
});
// Multi-op variants: their intermediate models folded into them (folding.ts) unless asked for.
const stepsBox = el('input', { type: 'checkbox', 'aria-label': 'Show the intermediate models of multi-op variants' });
stepsBox.addEventListener('change', () => app.setSteps('all', stepsBox.checked));
const fitBtn = el('button', { class: 'secondary', title: 'Fit the map (0)' }, icon('screen-full'));
fitBtn.setAttribute('aria-label', 'Fit the map to the view');
fitBtn.addEventListener('click', () => map.fit());

const toolbar = el(
  'div',
  { class: 'mm-toolbar', role: 'toolbar', 'aria-label': 'Model Map' },
  el('h1', {}, icon('type-hierarchy'), 'Model Map'),
  el('label', {}, 'fill', colorSel),
  el('label', {}, 'size', sizeSel),
  el('label', {}, 'columns', columnsSel),
  el('label', { title: 'Show the models after each op of a multi-op variant (name/1, name/2, …)' }, stepsBox, 'steps'),
  search,
  searchInfo,
  grow,
  exportSel,
  fitBtn,
);

// -- scatter controls and bottom tabs ---------------------------------------------------------
const xSel = metricSelect('Scatterplot x axis', () => app.state.scatterX, (v) => {
  app.state.scatterX = v;
  app.state.scatterZoom = null;
});
const ySel = metricSelect('Scatterplot y axis', () => app.state.scatterY, (v) => {
  app.state.scatterY = v;
  app.state.scatterZoom = null;
});
const frontBtn = el('button', { class: 'secondary', title: 'Select the models on the Pareto front (P)' }, 'Select Pareto front');
frontBtn.addEventListener('click', () => app.select(scatter.frontIds(), 'replace'));
const scatterPane = el('div', { class: 'mm-table-wrap' }, el('div', { class: 'mm-subbar' }, el('label', {}, 'x', xSel), el('label', {}, 'y', ySel), frontBtn, el('span', { class: 'muted' }, 'drag: select · wheel: zoom · double-click: reset')), el('div', { class: 'mm-bottom-body' }, scatter.root));
const bottomBody = el('div', { class: 'mm-bottom-body' });
type View = 'map' | 'scatter' | 'table' | 'details';
const tabs: Record<View, HTMLButtonElement> = {
  map: el('button', { role: 'tab', id: 'tab-map' }, 'Map'),
  scatter: el('button', { role: 'tab', id: 'tab-scatter' }, 'Scatterplot'),
  table: el('button', { role: 'tab', id: 'tab-table' }, 'Table'),
  details: el('button', { role: 'tab', id: 'tab-details' }, 'Details'),
};
/** The view its tab shows: the map, the scatterplot or table (the bottom pane when stacked), or
 * the details (a tab only when the panel is narrow; see panes.ts). */
let view: View = 'map';
let panes: Panes = { tabbed: false, sideTab: false };
function show(which: View): void {
  if (which === 'scatter' || which === 'table') {
    app.state.bottom = which;
    bottomBody.replaceChildren(which === 'scatter' ? scatterPane : table.root);
    if (which === 'scatter') scatter.request();
    else table.request();
  }
  view = which;
  syncPanes();
  app.emit('zoom');
}
/** Classes and tab states for the current pane layout and view. */
function syncPanes(): void {
  if (!panes.sideTab && view === 'details') view = 'map';
  if (!panes.tabbed && view === 'map') view = app.state.bottom;
  const shown: View = view;
  layout.classList.toggle('tabbed', panes.tabbed);
  layout.classList.toggle('side-tab', panes.sideTab);
  layout.dataset.view = panes.tabbed ? shown : 'split';
  tabs.map.hidden = !panes.tabbed;
  tabs.details.hidden = !panes.sideTab;
  for (const [k, b] of Object.entries(tabs) as [View, HTMLButtonElement][]) {
    b.setAttribute('aria-selected', String(panes.tabbed ? k === shown : k === app.state.bottom));
  }
}
for (const [k, b] of Object.entries(tabs) as [View, HTMLButtonElement][]) b.addEventListener('click', () => show(k));
const legendBox = el('div', { class: 'mm-legend-box' });
const banner = el('div', { class: 'mm-banner' });
function showBanner(text: string | null): void {
  banner.replaceChildren(...(text ? [notice('error', text)] : []));
}
const empty = notice('info', 'No models yet: run an experiment file (Bonsai: Run Experiment File); models appear here as they are made.');
empty.classList.add('mm-banner');
empty.hidden = true;
const hint = el('div', { class: 'mm-hint muted' }, 'drag: pan · wheel: zoom · shift-drag: select · double-click: collapse · header: column');
// The legend sits in a strip under the map, never over it: a legend over the canvas covered
// the nodes below it, even after Fit.
const mainArea = el(
  'div',
  { class: 'mm-main' },
  el(
    'div',
    { class: 'mm-left' },
    el('div', { class: 'mm-tabs', role: 'tablist' }, tabs.map, tabs.scatter, tabs.table, tabs.details),
    el('div', { class: 'mm-map-wrap' }, map.root, banner, empty),
    el('div', { class: 'mm-legend-strip' }, legendBox, hint),
    el('div', { class: 'mm-bottom' }, bottomBody),
  ),
  el('div', { class: 'mm-side' }, details.root, filters.root),
);
const layout = el('div', { class: 'mm-root' }, toolbar, mainArea);
new ResizeObserver(() => {
  const r = mainArea.getBoundingClientRect();
  const next = paneLayout(r.width, r.height);
  if (next.tabbed === panes.tabbed && next.sideTab === panes.sideTab) return;
  panes = next;
  syncPanes();
}).observe(mainArea);

app.on((c) => {
  if (c === 'data' || c === 'encoding') legendBox.replaceChildren(legendSvg(app));
  if (c === 'data' || c === 'layout') columnsSel.value = app.state.columnMode;
  if (c === 'data') stepsBox.checked = app.state.showSteps;
});

// -- data --------------------------------------------------------------------------------------
let started = false;
function load(models: ModelInfo[]): void {
  if (!started) {
    started = true;
    mount(layout);
    const saved = store.state.view?.map;
    app.setModels(models, restoreState(saved ?? {}));
    if (store.state.focus && app.lin.byId.has(store.state.focus) && app.selection.size === 0) app.select([store.state.focus]);

    show(app.state.bottom);
    panes = paneLayout(mainArea.getBoundingClientRect().width, mainArea.getBoundingClientRect().height);
    show(panes.tabbed ? 'map' : app.state.bottom);
    // Size the map now (the resize observer reports a frame later) so the first paint is final.
    map.resize();
    // Opened by "Compare Recipe with…": select the two (their recipe diff shows), once; after the
    // map has its size, or revealing them would pan for a map of no size.
    if (store.state.select?.length) {
      selectShown(store.state.select);
      store.update({ select: undefined });
    }
    markFirstPaint();
  } else app.setModels(models);
  empty.hidden = models.length > 0;
}

function markFirstPaint(): void {
  const w = window as unknown as { __modelMap?: Record<string, unknown> };
  if (!document.body.dataset.bench) return;
  // The benchmark page reads these: the app and views, and when the map was first drawn.
  w.__modelMap = { app, map, scatter, firstDraw: performance.now() };
}

rpc.on('lineageChanged', (d) => load(d.models));
/** Selects models by id, a folded intermediate model through its variant unfolded (the host
 * names the models the store has, steps included). */
function selectShown(ids: readonly string[]): void {
  for (const id of ids) {
    if (app.lin.byId.has(id) || !app.full.byId.has(id)) continue;
    const final = app.shownAs(id);
    if (final !== undefined) app.setSteps(final, true);
  }
  const shown = ids.filter((id) => app.lin.byId.has(id));
  if (!shown.length) return;
  app.select(shown, 'replace');
  map.reveal(shown[0]!);
}

rpc.on('focus', (d) => selectShown([d.id]));
rpc.on('select', (d) => selectShown(d.ids));
rpc.on('serverState', (s) => showBanner(s.state === 'stopped' ? `The Bonsai server is stopped${s.reason ? `: ${s.reason}` : ''}. The map shows the last lineage it sent.` : null));
rpc.ready();
rpc
  .request('lineage', {})
  .then((r) => load(r.models))
  .catch((e: Error) => mount(el('h1', {}, icon('type-hierarchy'), 'Model Map'), notice('error', e.message)));
