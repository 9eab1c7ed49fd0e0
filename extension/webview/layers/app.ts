/**
 * The Layers panel: a module tree with per-model cells for the chosen measure (roll-ups on
 * collapsed rows), a depth profile, and a layer detail (histograms, mask overlap, heatmap from
 * server tiles, removed channels). Weights stream in first, then activations. Linked both ways
 * with Behaviors: "Which instances?" from a layer, and a ranking by one instance ("Why?").
 *
 * This module wires the parts together: the state (state.ts) and the panel's actions
 * (panel.ts) are handed to each view (toolbar, depth profile, "Why?" ranking, tree, detail),
 * and the comparisons stream in (streaming.ts).
 */
import { errorText } from '../../shared/errors';
import { openComparePanel, progressLine } from '../shared/comparePanel';
import { el, mount, notice } from '../shared/dom';
import { renderDepth } from './depthview';
import { renderDetail } from './detail';
import { renderDrill } from './drill';
import type { LayersPanel } from './panel';
import { createLayersState, modelName, resultsCover, savedView, selectNode } from './state';
import { startComparisons } from './streaming';
import { startSensitivity } from './sensitivityView';
import { renderToolbar } from './toolbar';
import { renderTree, treeKey } from './treeview';

const CSS = `
.tree { max-height: 60vh; overflow: auto; border: 1px solid var(--vscode-editorWidget-border, transparent); }
.tree:focus { outline: 1px solid var(--vscode-focusBorder); }
.trow { display: flex; align-items: center; white-space: nowrap; cursor: pointer; line-height: 20px; }
.trow .name { flex: 1; overflow: hidden; text-overflow: ellipsis; }
.trow.sel { background: var(--vscode-list-activeSelectionBackground); color: var(--vscode-list-activeSelectionForeground); }
.trow.active { outline: 1px solid var(--vscode-focusBorder); outline-offset: -1px; }
.trow.hit .name { font-weight: 600; }
.twisty { width: 16px; display: inline-block; text-align: center; }
.trow .rolled { font-style: italic; opacity: 0.8; }
.trow .worse { color: var(--vscode-editorWarning-foreground); }
.detail h3 { margin: 0.8em 0 0.3em; font-size: 1em; }
.mask { display: flex; height: 10px; width: 240px; }
.mask span { display: block; height: 100%; }
.strip .kept { fill: var(--vscode-charts-green); opacity: 0.35; } .strip .removed { fill: var(--vscode-charts-red); }
.removed-channels { margin: 6px 0; }
.heat-readout { min-height: 1.4em; font-variant-numeric: tabular-nums; }
.sens-table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 4px 0; }
.sens-table th, .sens-table td { padding: 2px 8px; text-align: right; border: 1px solid var(--vscode-editorWidget-border, transparent); }
.sens-table .sens-name, .sens-table .sens-setting { text-align: left; }
.sens-row { cursor: pointer; }
.sens-row:hover, .sens-row:focus { outline: 1px solid var(--vscode-focusBorder); outline-offset: -1px; }
.sens-cell.skipped { font-style: italic; opacity: 0.7; }
.sens-table button.link { background: none; border: none; color: inherit; font: inherit; cursor: pointer; padding: 0; }
.mask .both { background: var(--vscode-charts-green); } .mask .ob { background: var(--vscode-charts-blue); } .mask .oo { background: var(--vscode-charts-orange); }
`;


export function startLayers(): void {
  const cp = openComparePanel({ title: 'Layers', codicon: 'layers', maxOthers: 4, css: CSS });
  if (!cp) return;
  const { rpc, store, ids, base, others, header, intro } = cp;
  const state = createLayersState(others, store.state.view);

  const progressEl = el('div', { class: 'progress', role: 'status', 'aria-live': 'polite' });
  const toolbar = el('div', { class: 'toolbar' });
  const drillEl = el('div', {});
  const depthEl = el('div', { id: 'depth-profile' });
  const treeEl = el('div', { class: 'tree', id: 'module-tree', role: 'tree', tabindex: '0', 'aria-label': 'Modules' });
  const detailEl = el('div', { class: 'detail', id: 'layer-detail' });
  const sensEl = el('section', { id: 'sensitivity', 'aria-label': 'Sensitivity' });
  const errorEl = el('div', {});

  const showProgress = () => {
    progressEl.replaceChildren(...progressLine(state.progress, () => {
      state.run?.cancel();
      state.progress = { ...state.progress, label: 'Cancelled:', running: false, cancelled: true };
      showProgress();
    }, () => startComparisons(p)));
  };
  const p: LayersPanel = {
    state,
    rpc,
    ids,
    base,
    others,
    name: (id) => modelName(state, id),
    save: () => store.update({ view: savedView(state.ui) }),
    select: (id) => {
      selectNode(state, id);
      p.save();
      p.show.tree();
      p.show.detail();
    },
    showError: (e) => {
      state.errors.push(errorText(e));
      errorEl.replaceChildren(...state.errors.map((m) => notice('error', m)));
    },
    show: {
      all: () => {
        showProgress();
        renderToolbar(p, toolbar);
        renderDrill(p, drillEl);
        renderDepth(p, depthEl);
        renderTree(p, treeEl);
        renderDetail(p, detailEl);
      },
      result: (id) => {
        showProgress();
        renderDrill(p, drillEl);
        renderDepth(p, depthEl);
        renderTree(p, treeEl);
        if (detailEl.dataset.node !== state.ui.selected || resultsCover(state, id, state.ui.selected)) renderDetail(p, detailEl);
      },
      progress: showProgress,
      tree: () => renderTree(p, treeEl),
      detail: () => renderDetail(p, detailEl),
      drill: () => renderDrill(p, drillEl),
      depth: () => renderDepth(p, depthEl),
    },
  };

  treeEl.addEventListener('keydown', (e) => {
    if (treeKey(p, e.key)) e.preventDefault();
  });
  rpc.on('lineageChanged', (d) => {
    state.models = d.models;
  });
  rpc.on('drill', (d) => {
    state.ui.drill = d;
    if (d.layer) p.select(d.layer);
    p.save();
    p.show.drill();
  });
  rpc.ready();
  void rpc
    .request('lineage', {})
    .then((r) => {
      state.models = r.models;
      mount(
        header(),
        ...intro(p.name),
        progressEl,
        errorEl,
        toolbar,
        drillEl,
        depthEl,
        sensEl,
        el('div', { class: 'split' }, el('div', {}, el('h2', {}, 'Modules'), treeEl), detailEl),
      );
      p.show.all();
      startSensitivity(p, sensEl);
      startComparisons(p);
    })
    .catch((e: unknown) => mount(header(), notice('error', errorText(e))));
}
