/**
 * The Layers panel: a module tree with per-model cells for the chosen measure (roll-ups on
 * collapsed rows), a depth profile, and a layer detail (histograms, mask overlap, heatmap from
 * server tiles, removed channels). Weights stream in first, then activations. Linked both ways
 * with Behaviors: "Which instances?" from a layer, and a ranking by one instance ("Why?").
 */
import type { ModelInfo } from '../../src/protocol';
import type { DrillFocus } from '../../src/webviews/messages';
import { SERIES, histogram, lineChart, svg } from '../shared/charts';
import { el, icon, mount, notice } from '../shared/dom';
import { resultsOf, streamCompare, type CompareRpc, type CompareRun } from '../shared/stream';
import { openComparePanel, progressLine, type CompareProgress } from '../shared/comparePanel';
import { activationLayout, describeCell } from './actlayout';
import { removedChannels } from './channels';
import { activationHists, activationSparsity, activationsOf, histRow, modulePath, weightsOf, type ModelData } from './data';
import { depthProfile, rankLayersForInstance, topInstancesForLayer } from './depth';
import { heatmap, type HeatmapHandle } from './heatmap';
import { MEASURES, ModelIndex, measure, type Mode } from './measures';
import { TilePyramidClient, pyramidInfo, pyramidOfMeta, tilesOfResult, type PyramidInfo, type TileData } from './tiles';
import { removedStrip } from './strip';
import { ModuleTree, navigate, parseFilter, rollUp, visibleRows, type Row } from './tree';
import { errorText } from '../../src/errors';

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
.mask .both { background: var(--vscode-charts-green); } .mask .ob { background: var(--vscode-charts-blue); } .mask .oo { background: var(--vscode-charts-orange); }
`;

export function startLayers(): void {
  const panel = openComparePanel({ title: 'Layers', codicon: 'layers', maxOthers: 4, css: CSS });
  if (!panel) return;
  const { rpc, store, ids, base, others, header, intro } = panel;
  const v = (store.state.view ?? {}) as Record<string, unknown>;
  const ui = {
    measure: measure(String(v.measure ?? 'relL2')),
    mode: (v.mode === 'isolated' ? 'isolated' : 'propagated') as Mode,
    filter: String(v.filter ?? ''),
    expanded: new Set<string>(Array.isArray(v.expanded) ? (v.expanded as string[]) : ['']),
    selected: typeof v.selected === 'string' ? v.selected : '',
    active: 0,
    drill: (v.drill ?? null) as DrillFocus | null,
    heatModel: typeof v.heatModel === 'string' ? v.heatModel : others[0]!,
    heatDiff: v.heatDiff !== false,
    actWhat: (['diff', 'model', 'base'].includes(String(v.actWhat)) ? v.actWhat : 'diff') as 'diff' | 'model' | 'base',
    actCount: typeof v.actCount === 'number' && v.actCount > 0 ? v.actCount : 16,
  };
  const save = () =>
    store.update({ view: { measure: ui.measure.key, mode: ui.mode, filter: ui.filter, expanded: [...ui.expanded], selected: ui.selected, drill: ui.drill, heatModel: ui.heatModel, heatDiff: ui.heatDiff, actWhat: ui.actWhat, actCount: ui.actCount } });

  let models: ModelInfo[] = [];
  const name = (id: string) => models.find((m) => m.id === id)?.name ?? id;
  const data = new Map<string, ModelData>(others.map((o) => [o, {}]));
  const index = new Map<string, ModelIndex>();
  const tree = new ModuleTree();
  const errors: string[] = [];
  let progress: CompareProgress = { label: 'Comparing weights…', received: 0, expected: others.length, running: true };
  let run: CompareRun | null = null;
  let heat: HeatmapHandle | null = null;
  let actHeat: HeatmapHandle | null = null;
  const clients = new Map<string, TilePyramidClient>();
  // activation heatmaps: the pyramid is known only from the server's first answer (the stacked
  // output's shape), so each source is probed once at its coarsest level and kept
  const actSources = new Map<string, Promise<{ client: TilePyramidClient; shape: number[]; lengths: number[] | undefined }>>();

  const progressEl = el('div', { class: 'progress', role: 'status', 'aria-live': 'polite' });
  const toolbar = el('div', { class: 'toolbar' });
  const drillEl = el('div', {});
  const depthEl = el('div', { id: 'depth-profile' });
  const treeEl = el('div', { class: 'tree', id: 'module-tree', role: 'tree', tabindex: '0', 'aria-label': 'Modules' });
  const detailEl = el('div', { class: 'detail', id: 'layer-detail' });
  const errorEl = el('div', {});
  let rows: Row[] = [];

  const reindex = (id: string) => {
    const d = data.get(id)!;
    index.set(id, new ModelIndex(d));
    for (const t of d.weights?.tensors ?? []) if (t.status !== 'extra_in_other') tree.addTensor(t.name);
    for (const n of d.weights?.tree ?? []) tree.addModule(n.path);
    for (const m of d.acts?.modules ?? []) tree.addModule(m.name);
  };

  // -- progress + cancel --------------------------------------------------------------------
  const showProgress = () => {
    progressEl.replaceChildren(...progressLine(progress, () => {
      run?.cancel();
      progress = { ...progress, label: 'Cancelled:', running: false };
      showProgress();
    }));
  };

  // -- toolbar ------------------------------------------------------------------------------
  const showToolbar = () => {
    const sel = el('select', { 'aria-label': 'Measure' });
    for (const m of MEASURES) {
      const o = el('option', { value: m.key }, m.label);
      if (m.key === ui.measure.key) o.selected = true;
      sel.append(o);
    }
    sel.addEventListener('change', () => {
      ui.measure = measure(sel.value);
      save();
      showAll();
    });
    const mode = el('select', { 'aria-label': 'Activation mode' }, el('option', { value: 'propagated' }, 'propagated'), el('option', { value: 'isolated' }, 'isolated'));
    mode.value = ui.mode;
    mode.disabled = ui.measure.source !== 'activations';
    mode.addEventListener('change', () => {
      ui.mode = mode.value as Mode;
      save();
      showAll();
    });
    const filter = el('input', { type: 'search', placeholder: 'Filter: name or /regex/', 'aria-label': 'Filter modules', value: ui.filter });
    const ferr = el('span', { class: 'muted', role: 'alert' });
    filter.addEventListener('input', () => {
      ui.filter = filter.value;
      const f = parseFilter(ui.filter);
      ferr.textContent = f.error ?? '';
      save();
      showTree();
    });
    toolbar.replaceChildren(el('label', {}, 'Measure ', sel), el('label', {}, 'Activations ', mode), filter, ferr);
  };

  // -- depth profile ------------------------------------------------------------------------
  const showDepth = () => {
    const list = others.filter((o) => index.has(o)).map((o) => ({ id: o, index: index.get(o)! }));
    const prof = depthProfile(tree, list, ui.measure, ui.mode);
    if (!prof.paths.length) {
      depthEl.replaceChildren(el('h2', {}, 'Depth profile'), el('p', { class: 'muted' }, ui.measure.source === 'activations' && progress.running ? 'Waiting for activations…' : `No ${ui.measure.label.toLowerCase()} per layer yet.`));
      return;
    }
    const chart = lineChart({
      title: `${ui.measure.label} along depth`,
      labels: prof.paths,
      marks: prof.norms,
      series: prof.series.map((s, i) => ({ label: name(s.model), values: s.values, cls: SERIES[i % SERIES.length]! })),
      format: ui.measure.format,
      width: Math.max(480, Math.min(1100, prof.paths.length * 10)),
      onPick: (i) => select(prof.paths[i]!),
    });
    const legend = el('div', { class: 'toolbar' }, ...prof.series.map((s, i) => el('span', {}, svg('svg', { width: 10, height: 10, class: SERIES[i % SERIES.length]! }, svg('rect', { width: 10, height: 10 })), ` ${name(s.model)}`)));
    if (prof.norms.length) legend.append(el('span', { class: 'muted' }, `dashed: normalisation layers (${prof.norms.length})`));
    depthEl.replaceChildren(el('h2', {}, 'Depth profile'), chart, legend);
  };

  // -- drill-down ranking ("Why?") ---------------------------------------------------------
  const showDrill = () => {
    if (!ui.drill?.instance) {
      drillEl.replaceChildren();
      return;
    }
    const inst = ui.drill.instance;
    const clear = el('button', { class: 'link' }, 'clear');
    clear.addEventListener('click', () => {
      ui.drill = null;
      save();
      showDrill();
    });
    const parts: Node[] = [el('h2', {}, `Why? Layers where instance ${inst} diverged (${ui.mode})`, clear)];
    const have = others.filter((o) => data.get(o)?.acts);
    if (!have.length) {
      parts.push(el('p', { class: 'muted' }, progress.running ? 'Waiting for the activation comparison…' : 'No activation comparison: the ranking needs one.'));
    } else {
      const ranks = have.map((o) => ({ o, r: rankLayersForInstance(data.get(o)!.acts!, inst, ui.mode) }));
      const missing = ranks.filter((x) => x.r === null).map((x) => name(x.o));
      if (missing.length) parts.push(notice('info', `Instance ${inst} is not in the activation sample of ${missing.join(', ')} (the first instances of the task are sampled).`));
      // rank by the largest divergence over the models
      const best = new Map<string, number>();
      for (const x of ranks) for (const y of x.r ?? []) best.set(y.module, Math.max(best.get(y.module) ?? -Infinity, y.value));
      if (best.size) {
        const top = [...best.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([module]) => ({ module }));
        const body = el('tbody', {});
        for (const t of top) {
          const tr = el('tr', { tabindex: '0' }, el('td', {}, t.module || '(model)'), ...ranks.map((x) => el('td', { class: 'num' }, fmtOr(x.r?.find((y) => y.module === t.module)?.value ?? null, ui.measure.format))));
          tr.addEventListener('click', () => select(t.module));
          tr.addEventListener('keydown', (e) => e.key === 'Enter' && select(t.module));
          body.append(tr);
        }
        parts.push(el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'module'), ...ranks.map((x) => el('th', { class: 'num' }, `${name(x.o)} rel. error`)))), body));
      }
    }
    drillEl.replaceChildren(...parts);
  };

  // -- tree ---------------------------------------------------------------------------------
  const showTree = () => {
    const f = parseFilter(ui.filter);
    rows = visibleRows(tree, ui.expanded, f.match);
    const rolled = others.map((o) => {
      const ix = index.get(o);
      return ix ? rollUp(tree, (id, n) => ix.value(id, n.kind, ui.measure, ui.mode), ui.measure.worse) : null;
    });
    // a shared scale per view: the worst value shown
    let worst = 0;
    for (const r of rolled) for (const x of r?.values() ?? []) if (x.value !== null && ui.measure.worse === 'higher') worst = Math.max(worst, x.value);
    const frag = document.createDocumentFragment();
    const head = el('div', { class: 'trow muted', 'aria-hidden': 'true' }, el('span', { class: 'name' }, 'module'), ...others.map((o) => el('span', { class: 'cell' }, name(o))));
    frag.append(head);
    rows.forEach((row, i) => {
      const n = row.node;
      const cells = rolled.map((r) => {
        const x = r?.get(n.id);
        const showRolled = !!x && (x.rolled || (row.hasChildren && !row.expanded && x.worst !== null && x.worstId !== n.id));
        const text = x?.value === null || x === undefined ? '—' : ui.measure.format(x.value);
        const span = el('span', { class: `cell${x?.rolled ? ' rolled' : ''}` }, text);
        if (x?.value !== null && x !== undefined) {
          const bad = ui.measure.worse === 'higher' ? (worst ? x.value / worst : 0) : ui.measure.key === 'sqnr' || ui.measure.key === 'actSqnr' ? Math.max(0, Math.min(1, (40 - x.value) / 40)) : Math.max(0, Math.min(1, 1 - x.value));
          span.style.background = `color-mix(in srgb, var(--vscode-charts-red) ${Math.round(Math.max(0, Math.min(1, bad)) * 45)}%, transparent)`;
        }
        if (showRolled && x?.worstId) {
          span.title = `${x.rolled ? 'worst inside' : 'own value'}; worst below: ${x.worstId || '(model)'} = ${x.worst === null ? '—' : ui.measure.format(x.worst)}`;
          // a collapsed row hiding a clearly worse layer says so
          const hidden = x.worst !== null && x.value !== null && x.worstId !== n.id && (ui.measure.worse === 'higher' ? x.worst > 1.5 * x.value : x.worst < x.value - Math.abs(x.value) * 0.05);
          if (hidden) span.append(el('span', { class: 'worse', 'aria-label': 'a worse layer inside' }, ' ▲'));
        }
        return span;
      });
      const twisty = el('span', { class: 'twisty', 'aria-hidden': 'true' }, row.hasChildren ? (row.expanded ? '▾' : '▸') : '');
      const div = el('div', {
        class: `trow${n.id === ui.selected ? ' sel' : ''}${i === ui.active ? ' active' : ''}${row.hit ? ' hit' : ''}`,
        role: 'treeitem',
        id: `row-${i}`,
        'aria-level': String(n.depth + 1),
        'aria-selected': String(n.id === ui.selected),
        ...(row.hasChildren ? { 'aria-expanded': String(row.expanded) } : {}),
      }, el('span', { class: 'name' }, '\u00a0'.repeat(n.depth * 2), twisty, n.kind === 'tensor' ? icon('symbol-array') : icon('symbol-module'), ` ${n.label}`), ...cells);
      twisty.addEventListener('click', (e) => {
        e.stopPropagation();
        toggle(n.id, !row.expanded);
      });
      div.addEventListener('click', () => {
        ui.active = i;
        select(n.id);
      });
      frag.append(div);
    });
    treeEl.replaceChildren(frag);
    treeEl.setAttribute('aria-activedescendant', `row-${ui.active}`);
    document.getElementById(`row-${ui.active}`)?.scrollIntoView({ block: 'nearest' });
  };

  const toggle = (id: string, open: boolean) => {
    if (open) ui.expanded.add(id);
    else ui.expanded.delete(id);
    save();
    showTree();
  };

  treeEl.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      const r = rows[ui.active];
      if (r) select(r.node.id);
      e.preventDefault();
      return;
    }
    const nav = navigate(rows, ui.active, e.key);
    if (!nav) return;
    e.preventDefault();
    ui.active = nav.index;
    if (nav.expand) ui.expanded.add(nav.expand);
    if (nav.collapse) ui.expanded.delete(nav.collapse);
    save();
    showTree();
  });

  const select = (id: string) => {
    ui.selected = id;
    // open the path to it
    for (let p = tree.get(id)?.parent ?? null; p !== null; p = tree.get(p)?.parent ?? null) ui.expanded.add(p);
    const f = parseFilter(ui.filter);
    const i = visibleRows(tree, ui.expanded, f.match).findIndex((r) => r.node.id === id);
    if (i >= 0) ui.active = i;
    save();
    showTree();
    showDetail();
  };

  // -- detail -------------------------------------------------------------------------------
  const showDetail = () => {
    heat?.dispose();
    heat = null;
    actHeat?.dispose();
    actHeat = null;
    const id = ui.selected;
    const node = tree.get(id);
    if (!node) {
      detailEl.replaceChildren(el('p', { class: 'muted' }, 'Select a module or tensor (click, or Enter in the tree).'));
      return;
    }
    const parts: Node[] = [el('h2', {}, node.kind === 'tensor' ? icon('symbol-array') : icon('symbol-module'), ` ${id || '(model)'}`)];
    // metrics per model
    const body = el('tbody', {});
    const rowsOf: [string, (o: string) => string][] = [];
    const wm = (o: string) => (node.kind === 'tensor' ? index.get(o)?.tensors.get(id)?.metrics : index.get(o)?.nodes.get(id)?.metrics);
    const am = (o: string) => index.get(o)?.modules.get(id)?.[ui.mode];
    const f = (x: number | null | undefined, fmt: (v: number) => string) => (x === null || x === undefined ? '—' : fmt(x));
    if (node.kind === 'tensor') {
      rowsOf.push(['status', (o) => { const t = index.get(o)?.tensors.get(id); return t ? `${t.status}${t.message ? `: ${t.message}` : ''}` : '—'; }]);
      rowsOf.push(['shape base → other', (o) => { const t = index.get(o)?.tensors.get(id); return t ? `[${t.shape_base?.join('×') ?? '—'}] → [${t.shape_other?.join('×') ?? '—'}]` : '—'; }]);
    }
    for (const ms of MEASURES) {
      if (ms.source === 'weights') rowsOf.push([ms.label, (o) => { const m = wm(o); return m ? f(ms.pick(m), ms.format) : '—'; }]);
      else if (node.kind === 'module') rowsOf.push([`${ms.label} (${ui.mode})`, (o) => { const m = am(o); return m ? f(ms.pick(m), ms.format) : '—'; }]);
    }
    if (node.kind === 'module') {
      const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
      rowsOf.push([`Activation CKA over instances (${ui.mode})`, (o) => f(am(o)?.cka_instances, (x) => x.toFixed(4))]);
      rowsOf.push([`Activation sparsity base \u2192 model (${ui.mode})`, (o) => { const sp = activationSparsity(index.get(o)?.modules.get(id), ui.mode); return sp ? `${pct(sp.base)} \u2192 ${pct(sp.other)}` : '\u2014'; }]);
    }
    rowsOf.push(['max |diff|', (o) => f(wm(o)?.max_abs_diff, (x) => x.toPrecision(3))]);
    for (const [label, fn] of rowsOf) body.append(el('tr', {}, el('td', {}, label), ...others.map((o) => el('td', { class: 'num' }, fn(o)))));
    parts.push(el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, ''), ...others.map((o) => el('th', { class: 'num' }, name(o))))), body));
    // removed channels / heads: the tensor's own, or for a module those of its parameters
    const pruned: Node[] = [];
    for (const o of others) {
      const ts = node.kind === 'tensor' ? [index.get(o)?.tensors.get(id)] : [...(index.get(o)?.tensors.values() ?? [])].filter((t) => modulePath(t.name) === id);
      for (const t of ts) {
        if (!t?.removed || !Object.keys(t.removed).length) continue;
        const dims = removedChannels(t);
        const who = `${name(o)}${node.kind === 'module' ? ` (${t.name.slice(id ? id.length + 1 : 0)})` : ''}`;
        for (const d of dims) pruned.push(removedStrip(d, who));
        // dims the result counts but does not list (older cached results): the count only
        for (const [dim, n] of Object.entries(t.removed)) {
          if (!dims.some((d) => d.dim === Number(dim))) pruned.push(el('p', {}, el('span', { class: 'badge' }, 'structured'), ` ${who} removed ${n} of ${t.shape_base?.[Number(dim)] ?? '?'} along dim ${dim}.`));
        }
      }
    }
    if (pruned.length) parts.push(el('h3', {}, 'Removed channels'), el('div', { id: 'removed-channels' }, ...pruned));
    // mask overlap
    const maskRows = others.map((o) => ({ o, m: wm(o) })).filter((x) => x.m && ((x.m.zero_both ?? 0) + (x.m.zero_only_base ?? 0) + (x.m.zero_only_other ?? 0)) > 0);
    if (maskRows.length) {
      parts.push(el('h3', {}, 'Zero masks'));
      for (const { o, m } of maskRows) {
        const both = m!.zero_both ?? 0;
        const ob = m!.zero_only_base ?? 0;
        const oo = m!.zero_only_other ?? 0;
        const tot = Math.max(1, both + ob + oo);
        const bar = el('div', { class: 'mask', title: `zero in both ${both}, only base ${ob}, only ${name(o)} ${oo}` });
        for (const [cls, n] of [['both', both], ['ob', ob], ['oo', oo]] as const) {
          const s = el('span', { class: cls });
          s.style.width = `${(n / tot) * 100}%`;
          bar.append(s);
        }
        parts.push(el('div', { class: 'toolbar' }, el('span', {}, name(o)), bar, el('span', { class: 'muted' }, `both ${both} · only base ${ob} · only ${name(o)} ${oo}`)));
      }
    }
    // histograms
    const hists: Node[] = [];
    others.forEach((o, i) => {
      const w = data.get(o)?.weights;
      if (!w) return;
      const ti = node.kind === 'tensor' ? w.tensors.findIndex((t) => t.name === id) : w.tree.findIndex((n) => n.path === id);
      if (ti < 0) return;
      const rel = histRow(node.kind === 'tensor' ? w.relHist : w.treeRelHist, ti);
      const edges = w.relEdgesLog10;
      if (rel && edges.length > 1) hists.push(el('div', {}, el('div', { class: 'muted' }, `${name(o)}: relative change |Δ|/|base| (log10)`), histogram({ title: `relative change of ${id} in ${name(o)}`, series: [{ label: name(o), counts: rel, cls: SERIES[i % SERIES.length]! }], edges: [edges[0]!, edges[edges.length - 1]!], log: true, format: (x) => `1e${x}` })));
      if (node.kind === 'tensor') {
        const t = w.tensors[ti]!;
        const vb = histRow(w.valueHistBase, ti);
        const vo = histRow(w.valueHistOther, ti);
        if (vb && vo && t.value_range) hists.push(el('div', {}, el('div', { class: 'muted' }, `values: base vs ${name(o)}`), histogram({ title: `values of ${id}`, series: [{ label: 'base', counts: vb, cls: 's6' }, { label: name(o), counts: vo, cls: SERIES[i % SERIES.length]! }], edges: [-t.value_range, t.value_range], log: true })));
      }
    });
    if (hists.length) parts.push(el('h3', {}, 'Histograms'), ...hists);
    if (node.kind === 'module') {
      const ah: Node[] = [];
      others.forEach((o, i) => {
        const acts = data.get(o)?.acts;
        const h = acts ? activationHists(acts, id) : null;
        if (!h) return;
        const cls = SERIES[i % SERIES.length]!;
        if (h.values) ah.push(el('div', { class: 'act-hist', 'data-kind': 'values' }, el('div', { class: 'muted' }, `output values: base vs ${name(o)} (propagated, sampled)`), histogram({ title: `activation values of ${id || 'the model'}: base vs ${name(o)}`, series: [{ label: 'base', counts: h.values.base, cls: 's6' }, { label: name(o), counts: h.values.other, cls }], edges: [-h.values.range, h.values.range], log: true })));
        if (h.rel) ah.push(el('div', { class: 'act-hist', 'data-kind': 'rel' }, el('div', { class: 'muted' }, `${name(o)}: relative change of outputs |\u0394|/|base| (log10, propagated)`), histogram({ title: `activation relative change of ${id || 'the model'} in ${name(o)}`, series: [{ label: name(o), counts: h.rel.counts, cls }], edges: h.rel.edges, log: true, format: (x) => `1e${x}` })));
      });
      if (ah.length) parts.push(el('h3', {}, 'Activation histograms'), el('div', { id: 'act-hists' }, ...ah));
    }
    // heatmap
    if (node.kind === 'tensor') {
      const t = index.get(ui.heatModel)?.tensors.get(id) ?? index.get(others[0]!)?.tensors.get(id);
      if (t && t.status === 'ok' && t.shape_other) {
        const pick = el('select', { 'aria-label': 'Heatmap model' }, ...others.map((o) => el('option', { value: o }, name(o))));
        pick.value = ui.heatModel;
        const what = el('select', { 'aria-label': 'Heatmap of' }, el('option', { value: 'diff' }, 'difference (model − base)'), el('option', { value: 'weight' }, 'weight'));
        what.value = ui.heatDiff ? 'diff' : 'weight';
        const box = el('div', {});
        const draw = () => {
          heat?.dispose();
          const model = ui.heatModel;
          const shape = index.get(model)?.tensors.get(id)?.shape_other ?? t.shape_other!;
          const info = pyramidInfo(shape);
          // one client (and tile cache) per heatmap source, kept while the panel lives
          const key = `${ui.heatDiff ? 'diff' : 'weight'}\u0000${model}\u0000${id}`;
          const client = clients.get(key) ?? new TilePyramidClient(info, async (level, w) => {
            const r = await rpc.request('tiles', { model: ui.heatDiff ? base : model, ...(ui.heatDiff ? { other: model } : {}), tensor: id, level, x0: w.c0, y0: w.r0, x1: w.c1, y1: w.r1 });
            const res = resultsOf(r.pages)[0];
            if (!res) return { tiles: [] };
            return { tiles: tilesOfResult(res.meta, res.tensors), range: res.meta.range as { min: number | null; max: number | null } };
          });
          clients.set(key, client);
          heat = heatmap(client, { title: `${id} ${ui.heatDiff ? 'difference' : 'weight'} in ${name(model)}`, onError: (m) => box.replaceChildren(notice('error', m)) });
          box.replaceChildren(heat.element);
        };
        pick.addEventListener('change', () => { ui.heatModel = pick.value; save(); draw(); });
        what.addEventListener('change', () => { ui.heatDiff = what.value === 'diff'; save(); draw(); });
        parts.push(el('h3', {}, 'Heatmap'), el('div', { class: 'toolbar' }, pick, what, el('span', { class: 'muted' }, 'wheel / + − zoom, drag / arrows pan, 0 resets')), box);
        queueMicrotask(draw);
      }
    }
    if (node.kind === 'module') activationHeatmap(id, parts);
    // "Which instances?"
    if (node.kind === 'module') {
      const withActs = others.filter((o) => data.get(o)?.acts?.modules.some((m) => m.name === id));
      if (withActs.length) {
        const btn = el('button', {}, icon('symbol-event'), ' Which instances?');
        btn.title = `Open Behaviors with the instances ${id || 'the model'} hurts most (${ui.mode} activation error)`;
        btn.addEventListener('click', () => {
          // the worst tenth of the sample (10 to 100 instances), by the largest error over the models
          const n = data.get(withActs[0]!)!.acts!.ids.length;
          const k = Math.min(n, Math.max(10, Math.min(100, Math.ceil(n / 10))));
          const seen = new Map<string, number>();
          for (const o of withActs) for (const x of topInstancesForLayer(data.get(o)!.acts!, id, ui.mode, n) ?? []) seen.set(x.id, Math.max(seen.get(x.id) ?? 0, x.value));
          const instances = [...seen.entries()].sort((a, b) => b[1] - a[1]).slice(0, k).map(([key]) => key);
          void rpc.request('openPanel', { view: 'behaviors', models: ids, focus: { layer: id, instances, reason: `the ${instances.length} instances ${id || 'the model'} hurts most (${ui.mode} activation error)` } }).catch(showError);
        });
        parts.push(el('div', { class: 'toolbar' }, btn));
      }
    }
    detailEl.replaceChildren(...parts);
  };

  // -- activation heatmap -------------------------------------------------------------------
  /** Fetches one page of activation tiles of `module` (rows: `rows` instance ids). */
  const actTiles = async (module: string, what: 'diff' | 'model' | 'base', model: string, rows: string[], level: number, w: { r0: number; c0: number; r1: number; c1: number }) => {
    const side = what === 'diff' ? { model: base, other: model } : { model: what === 'base' ? base : model };
    // `source` and `instances` ride along to bonsai/tensor/tiles (the host forwards them)
    const params = { ...side, tensor: module, source: 'activation' as const, instances: rows, level, x0: w.c0, y0: w.r0, x1: w.c1, y1: w.r1 };
    const r = await rpc.request('tiles', params);
    const res = resultsOf(r.pages)[0];
    if (!res) throw new Error(`no tiles came back for ${module}`);
    return { meta: res.meta, tiles: tilesOfResult(res.meta, res.tensors), range: res.meta.range as { min: number | null; max: number | null } | undefined };
  };

  const activationHeatmap = (id: string, parts: Node[]) => {
    const have = others.filter((o) => { const m = index.get(o)?.modules.get(id); return m && m.status === 'ok'; });
    if (!have.length) return;
    const ids = data.get(have[0]!)!.acts!.ids;
    if (!ids.length) return;
    const model0 = have.includes(ui.heatModel) ? ui.heatModel : have[0]!;
    const pick = el('select', { 'aria-label': 'Activation heatmap model' }, ...have.map((o) => el('option', { value: o }, name(o))));
    pick.value = model0;
    const what = el('select', { 'aria-label': 'Activation heatmap of' }, el('option', { value: 'diff' }, 'difference (model \u2212 base)'), el('option', { value: 'model' }, 'model output'), el('option', { value: 'base' }, 'base output'));
    what.value = ui.actWhat;
    // the server stacks at most 256 instances per heatmap
    const counts = [...new Set([8, 16, 32, 64, 128, 256].filter((n) => n < ids.length).concat([Math.min(256, ids.length)]))];
    const count = el('select', { 'aria-label': 'Activation heatmap instances' }, ...counts.map((n) => el('option', { value: String(n) }, `first ${n} instances`)));
    count.value = String(counts.includes(ui.actCount) ? ui.actCount : counts.find((n) => n >= 16) ?? counts[counts.length - 1]!);
    const box = el('div', { id: 'act-heatmap' });
    const draw = () => {
      if (actHeat) actHeat.dispose();
      actHeat = null;
      const model = pick.value;
      const w = what.value as 'diff' | 'model' | 'base';
      const rows = ids.slice(0, Number(count.value));
      const key = `${w}\u0000${w === 'base' ? base : model}\u0000${id}\u0000${rows.length}`;
      let src = actSources.get(key);
      if (!src) {
        // the coarsest level (-1) over everything: one tile, and the pyramid's shape
        src = actTiles(id, w, model, rows, -1, { r0: 0, c0: 0, r1: 2 ** 31 - 1, c1: 2 ** 31 - 1 }).then((probe) => {
          const p = pyramidOfMeta(probe.meta);
          if (!p) throw new Error(`the tiles of ${id} came without their pyramid (rows, cols, levels, shape)`);
          const info: PyramidInfo = { rows: p.rows, cols: p.cols, tile: p.tile, levels: p.levels };
          const client = new TilePyramidClient(info, async (level, win): Promise<{ tiles: TileData[]; range?: { min: number | null; max: number | null } }> => {
            const r = await actTiles(id, w, model, rows, level, win);
            return { tiles: r.tiles, ...(r.range ? { range: r.range } : {}) };
          });
          client.seed(probe.tiles, probe.range);
          const lengths = Array.isArray(probe.meta['lengths']) ? (probe.meta['lengths'] as unknown[]).map(Number) : undefined;
          return { client, shape: p.shape, lengths };
        });
        src.catch(() => actSources.delete(key)); // a failure is not kept: choosing again retries
        actSources.set(key, src);
      }
      box.replaceChildren(el('p', { class: 'muted' }, `Running ${rows.length} instances through ${w === 'diff' ? `base and ${name(model)}` : name(w === 'base' ? base : model)}\u2026`));
      const mine = src;
      mine.then(({ client, shape, lengths }) => {
        if (actSources.get(key) !== mine || !box.isConnected) return;
        const layout = activationLayout(shape, rows, lengths);
        actHeat = heatmap(client, {
          title: `${id || 'model'} output ${w === 'diff' ? `difference (${name(model)} \u2212 base)` : `of ${name(w === 'base' ? base : model)}`}`,
          axes: { rows: layout.rows, cols: layout.cols },
          describe: (r, c) => describeCell(layout, rows, r, c),
          fill: true,
          onError: (m) => box.replaceChildren(notice('error', m)),
        });
        box.replaceChildren(actHeat.element);
      }, (e: unknown) => box.replaceChildren(notice('error', `Activation heatmap of ${id}: ${errorText(e)}`)));
    };
    pick.addEventListener('change', () => { ui.heatModel = pick.value; save(); draw(); });
    what.addEventListener('change', () => { ui.actWhat = what.value as 'diff' | 'model' | 'base'; save(); draw(); });
    count.addEventListener('change', () => { ui.actCount = Number(count.value); save(); draw(); });
    parts.push(el('h3', {}, 'Activation heatmap'), el('div', { class: 'toolbar' }, pick, what, count, el('span', { class: 'muted' }, 'wheel / + \u2212 zoom, drag / arrows pan, 0 resets')), box);
    queueMicrotask(draw);
  };

  const showError = (e: unknown) => {
    const msg = errorText(e);
    errors.push(msg);
    errorEl.replaceChildren(...errors.map((m) => notice('error', m)));
  };

  const showAll = () => {
    showProgress();
    showToolbar();
    showDrill();
    showDepth();
    showTree();
    showDetail();
  };

  // -- streaming ----------------------------------------------------------------------------
  const start = () => {
    const crpc = rpc as unknown as CompareRpc;
    // Weights, then activations: each result page fills its model's data as it arrives.
    const stream = (kind: 'weights' | 'activations', apply: (r: Parameters<typeof weightsOf>[0]) => string | null) =>
      streamCompare(crpc, { kind, base, models: others }, (r) => {
        try {
          const id = apply(r);
          if (id === null) return; // a model this panel does not show
          reindex(id);
          showAll();
        } catch (e) {
          showError(e);
        }
      }, (received, expected) => {
        progress = { ...progress, received, expected };
        showProgress();
      });
    const into = <K extends 'weights' | 'acts'>(key: K, value: NonNullable<ModelData[K]>): string | null => {
      const d = data.get(value.other);
      if (!d) return null;
      d[key] = value;
      return value.other;
    };
    run = stream('weights', (r) => into('weights', weightsOf(r)));
    run.done
      .then(() => {
        if (run?.cancelled) {
          // by the panel's Cancel, or on the server (the progress notification): say so, and
          // do not start the activations
          progress = { ...progress, label: 'Cancelled:', running: false };
          showProgress();
          return;
        }
        progress = { label: 'Comparing activations…', received: 0, expected: others.length, running: true };
        showProgress();
        run = stream('activations', (r) => into('acts', activationsOf(r)));
        return run.done.then(() => {
          progress = { ...progress, label: run?.cancelled ? 'Cancelled:' : 'Compared weights and activations of', running: false };
          showProgress();
        });
      })
      .catch((e: unknown) => {
        progress = { ...progress, label: 'Stopped:', running: false };
        showProgress();
        showError(e);
        showDepth();
        showDrill();
      });
  };

  rpc.on('lineageChanged', (d) => {
    models = d.models;
  });
  rpc.on('drill', (d) => {
    ui.drill = d;
    if (d.layer) select(d.layer);
    save();
    showDrill();
  });
  rpc.ready();
  void rpc
    .request('lineage', {})
    .then((r) => {
      models = r.models;
      mount(
        header(),
        ...intro(name),
        progressEl,
        errorEl,
        toolbar,
        drillEl,
        depthEl,
        el('div', { class: 'split' }, el('div', {}, el('h2', {}, 'Modules'), treeEl), detailEl),
      );
      showAll();
      start();
    })
    .catch((e: unknown) => mount(header(), notice('error', errorText(e))));
}

function fmtOr(v: number | null, f: (x: number) => string): string {
  return v === null ? '—' : f(v);
}
