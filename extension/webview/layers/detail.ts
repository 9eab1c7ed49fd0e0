/**
 * The layer detail: for the selected module or tensor, its metrics per model, removed channels,
 * zero masks, histograms, heatmaps, and "Which instances?" (the instances it hurts most, opened
 * in Behaviors). The tables' contents are computed by the pure functions here.
 */
import { SERIES, histogram } from '../shared/charts';
import { el, icon } from '../shared/dom';
import { fmtOr } from '../shared/format';
import { activationHeatmapSection } from './actheat';
import { removedChannels, type RemovedDim } from './channels';
import { activationHists, activationSparsity, histRow, modulePath, type PairMetrics } from './data';
import { topInstancesForLayer } from './depth';
import { MEASURES, maskOverlapText, type Mode } from './measures';
import type { LayersPanel } from './panel';
import { removedStrip } from './strip';
import { disposeHeatmaps, type LayersState } from './state';
import { fixTarget } from './fix';
import type { TreeNode } from './tree';
import { weightHeatmapSection } from './weightheat';

/** The weight metrics of a node in one model: a tensor's own, or a module's roll-up. */
function weightMetrics(s: LayersState, o: string, node: TreeNode): PairMetrics | undefined {
  return node.kind === 'tensor' ? s.index.get(o)?.tensors.get(node.id)?.metrics : s.index.get(o)?.nodes.get(node.id)?.metrics;
}

/** The metrics table: one row per label, one cell per model of `others`. */
export function metricRows(s: LayersState, others: string[], node: TreeNode): { label: string; cells: string[] }[] {
  const id = node.id;
  const mode: Mode = s.ui.mode;
  const rowsOf: [string, (o: string) => string][] = [];
  const wm = (o: string) => weightMetrics(s, o, node);
  const am = (o: string) => s.index.get(o)?.modules.get(id)?.[mode];
  if (node.kind === 'tensor') {
    rowsOf.push(['status', (o) => { const t = s.index.get(o)?.tensors.get(id); return t ? `${t.status}${t.message ? `: ${t.message}` : ''}` : '—'; }]);
    rowsOf.push(['shape base → other', (o) => { const t = s.index.get(o)?.tensors.get(id); return t ? `[${t.shape_base?.join('×') ?? '—'}] → [${t.shape_other?.join('×') ?? '—'}]` : '—'; }]);
  }
  for (const ms of MEASURES) {
    if (ms.source === 'weights') rowsOf.push([ms.label, (o) => { const m = wm(o); return !m ? '—' : ms.key === 'maskOverlap' ? maskOverlapText(m) : fmtOr(ms.pick(m), ms.format); }]);
    else if (node.kind === 'module') rowsOf.push([`${ms.label} (${mode})`, (o) => { const m = am(o); return m ? fmtOr(ms.pick(m), ms.format) : '—'; }]);
  }
  if (node.kind === 'module') {
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    rowsOf.push([`Activation CKA over instances (${mode})`, (o) => fmtOr(am(o)?.cka_instances, (x) => x.toFixed(4))]);
    rowsOf.push([`Activation sparsity base \u2192 model (${mode})`, (o) => { const sp = activationSparsity(s.index.get(o)?.modules.get(id), mode); return sp ? `${pct(sp.base)} \u2192 ${pct(sp.other)}` : '\u2014'; }]);
  }
  rowsOf.push(['max |diff|', (o) => fmtOr(wm(o)?.max_abs_diff, (x) => x.toPrecision(3))]);
  return rowsOf.map(([label, fn]) => ({ label, cells: others.map(fn) }));
}

/** Removed channels or heads: a strip per listed dim, or only a count (older cached results). */
export type RemovedItem = { kind: 'strip'; who: string; dim: RemovedDim } | { kind: 'count'; who: string; dim: number; removed: number; of: number | '?' };

/** The removed channels of a tensor, or for a module those of its parameters, per model. */
export function removedItems(s: LayersState, others: string[], node: TreeNode, name: (id: string) => string): RemovedItem[] {
  const id = node.id;
  const out: RemovedItem[] = [];
  for (const o of others) {
    const ts = node.kind === 'tensor' ? [s.index.get(o)?.tensors.get(id)] : [...(s.index.get(o)?.tensors.values() ?? [])].filter((t) => modulePath(t.name) === id);
    for (const t of ts) {
      if (!t?.removed || !Object.keys(t.removed).length) continue;
      const dims = removedChannels(t);
      const who = `${name(o)}${node.kind === 'module' ? ` (${t.name.slice(id ? id.length + 1 : 0)})` : ''}`;
      for (const d of dims) out.push({ kind: 'strip', who, dim: d });
      // dims the result counts but does not list: the count only
      for (const [dim, n] of Object.entries(t.removed)) {
        if (!dims.some((d) => d.dim === Number(dim))) out.push({ kind: 'count', who, dim: Number(dim), removed: n, of: t.shape_base?.[Number(dim)] ?? '?' });
      }
    }
  }
  return out;
}

/** Zero-mask counts per model (zero in both, only in the base, only in the model); models without zeros left out. */
export function zeroMasks(s: LayersState, others: string[], node: TreeNode): { model: string; both: number; onlyBase: number; onlyOther: number }[] {
  return others.flatMap((o) => {
    const m = weightMetrics(s, o, node);
    if (!m) return [];
    const both = m.zero_both ?? 0;
    const onlyBase = m.zero_only_base ?? 0;
    const onlyOther = m.zero_only_other ?? 0;
    return both + onlyBase + onlyOther > 0 ? [{ model: o, both, onlyBase, onlyOther }] : [];
  });
}

/**
 * "Which instances?": the worst tenth of the activation sample (10 to 100 instances) for module
 * `id`, by the largest error over the models that compared it; worst first.
 */
export function worstInstances(s: LayersState, withActs: string[], id: string): string[] {
  const n = s.data.get(withActs[0]!)!.acts!.ids.length;
  const k = Math.min(n, Math.max(10, Math.min(100, Math.ceil(n / 10))));
  const seen = new Map<string, number>();
  for (const o of withActs) for (const x of topInstancesForLayer(s.data.get(o)!.acts!, id, s.ui.mode, n) ?? []) seen.set(x.id, Math.max(seen.get(x.id) ?? 0, x.value));
  return [...seen.entries()].sort((a, b) => b[1] - a[1]).slice(0, k).map(([key]) => key);
}

export function renderDetail(p: LayersPanel, detailEl: HTMLElement): void {
  const s = p.state;
  const { ui, tree } = s;
  disposeHeatmaps(s);
  const id = ui.selected;
  const node = tree.get(id);
  detailEl.dataset.node = node ? id : '\u0000'; // which node it shows (none: never a node id)
  if (!node) {
    detailEl.replaceChildren(el('p', { class: 'muted' }, 'Select a module or tensor (click, or Enter in the tree).'));
    return;
  }
  const parts: Node[] = [el('h2', {}, node.kind === 'tensor' ? icon('symbol-array') : icon('symbol-module'), ` ${id || '(model)'}`)];
  // metrics per model
  const body = el('tbody', {});
  for (const r of metricRows(s, p.others, node)) body.append(el('tr', {}, el('td', {}, r.label), ...r.cells.map((c) => el('td', { class: 'num' }, c))));
  parts.push(el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, ''), ...p.others.map((o) => el('th', { class: 'num' }, p.name(o))))), body));
  parts.push(...fixParts(p, node));
  const pruned = removedItems(s, p.others, node, p.name).map((x) =>
    x.kind === 'strip' ? removedStrip(x.dim, x.who) : el('p', {}, el('span', { class: 'badge' }, 'structured'), ` ${x.who} removed ${x.removed} of ${x.of} along dim ${x.dim}.`),
  );
  if (pruned.length) parts.push(el('h3', {}, 'Removed channels'), el('div', { id: 'removed-channels' }, ...pruned));
  parts.push(...zeroMaskParts(p, node));
  parts.push(...weightHistograms(p, node));
  if (node.kind === 'module') parts.push(...activationHistograms(p, id));
  if (node.kind === 'tensor') weightHeatmapSection(p, id, parts);
  if (node.kind === 'module') {
    activationHeatmapSection(p, id, parts);
    parts.push(...whichInstances(p, id));
  }
  detailEl.replaceChildren(...parts);
}

/**
 * One-click fixes: a new variant in the model's experiment file that leaves this layer's
 * parameters out of its ops, or restores them from the model the variant starts from.
 */
function fixParts(p: LayersPanel, node: TreeNode): Node[] {
  const names = p.others.flatMap((o) => [...(p.state.index.get(o)?.tensors.keys() ?? [])]);
  const target = fixTarget(node, names, p.state.models, p.others);
  if (!target) return [];
  const status = el('div', { class: 'muted fix-status', role: 'status', 'aria-live': 'polite' });
  const rows = target.models.map((m) => {
    const button = (action: 'exclude' | 'restore', label: string, codicon: string, what: string) => {
      const b = el('button', { class: 'secondary', 'data-action': action, 'data-model': m.id, title: `${what} (${target.patterns.join(', ')}), written after ${m.variant} in its experiment file` }, icon(codicon), ` ${label}`);
      b.addEventListener('click', () => {
        b.disabled = true;
        status.textContent = 'Adding the variant…';
        void p.rpc.request('addFixVariant', { model: m.id, action, patterns: target.patterns }).then(
          (r) => {
            status.textContent = `Added ${r.variant} to ${r.file.replace(/^.*[\\/]/, '')}: run it from its CodeLens.`;
            b.disabled = false;
          },
          (e: unknown) => {
            status.textContent = '';
            b.disabled = false;
            p.showError(e);
          },
        );
      });
      return b;
    };
    return el('div', { class: 'toolbar fix-row' },
      target.models.length > 1 ? el('span', {}, `${m.name}:`) : '',
      button('exclude', 'Add a variant that excludes these parameters', 'exclude', `The recipe of ${m.name} again, with this layer left out of its ops`),
      button('restore', 'Add a variant that restores these parameters', 'history', `The recipe of ${m.name} again, then this layer restored from the model it starts from`));
  });
  const shown = target.tensors.length > 3 ? `${target.tensors.slice(0, 3).join(', ')} and ${target.tensors.length - 3} more` : target.tensors.join(', ');
  return [el('h3', {}, 'Fix from this layer'), el('div', { class: 'muted' }, `Parameters: ${shown} (${target.patterns.join(', ')})`), ...rows, status];
}

function zeroMaskParts(p: LayersPanel, node: TreeNode): Node[] {
  const masks = zeroMasks(p.state, p.others, node);
  if (!masks.length) return [];
  const parts: Node[] = [el('h3', {}, 'Zero masks')];
  for (const { model: o, both, onlyBase: ob, onlyOther: oo } of masks) {
    const tot = Math.max(1, both + ob + oo);
    const bar = el('div', { class: 'mask', title: `zero in both ${both}, only base ${ob}, only ${p.name(o)} ${oo}` });
    for (const [cls, n] of [['both', both], ['ob', ob], ['oo', oo]] as const) {
      const sp = el('span', { class: cls });
      sp.style.width = `${(n / tot) * 100}%`;
      bar.append(sp);
    }
    parts.push(el('div', { class: 'toolbar' }, el('span', {}, p.name(o)), bar, el('span', { class: 'muted' }, `both ${both} · only base ${ob} · only ${p.name(o)} ${oo}`)));
  }
  return parts;
}

/** Relative change (log10) per model, and for a tensor its values in the base and the model. */
function weightHistograms(p: LayersPanel, node: TreeNode): Node[] {
  const id = node.id;
  const hists: Node[] = [];
  p.others.forEach((o, i) => {
    const w = p.state.data.get(o)?.weights;
    if (!w) return;
    const ti = node.kind === 'tensor' ? w.tensors.findIndex((t) => t.name === id) : w.tree.findIndex((n) => n.path === id);
    if (ti < 0) return;
    const rel = histRow(node.kind === 'tensor' ? w.relHist : w.treeRelHist, ti);
    const edges = w.relEdgesLog10;
    if (rel && edges.length > 1) hists.push(el('div', {}, el('div', { class: 'muted' }, `${p.name(o)}: relative change |Δ|/|base| (log10)`), histogram({ title: `relative change of ${id} in ${p.name(o)}`, series: [{ label: p.name(o), counts: rel, cls: SERIES[i % SERIES.length]! }], edges: [edges[0]!, edges[edges.length - 1]!], log: true, format: (x) => `1e${x}` })));
    if (node.kind === 'tensor') {
      const t = w.tensors[ti]!;
      const vb = histRow(w.valueHistBase, ti);
      const vo = histRow(w.valueHistOther, ti);
      if (vb && vo && t.value_range) hists.push(el('div', {}, el('div', { class: 'muted' }, `values: base vs ${p.name(o)}`), histogram({ title: `values of ${id}`, series: [{ label: 'base', counts: vb, cls: 's6' }, { label: p.name(o), counts: vo, cls: SERIES[i % SERIES.length]! }], edges: [-t.value_range, t.value_range], log: true })));
    }
  });
  return hists.length ? [el('h3', {}, 'Histograms'), ...hists] : [];
}

/** A module's output values (base vs model) and their relative change, per model. */
function activationHistograms(p: LayersPanel, id: string): Node[] {
  const name = p.name;
  const ah: Node[] = [];
  p.others.forEach((o, i) => {
    const acts = p.state.data.get(o)?.acts;
    const h = acts ? activationHists(acts, id) : null;
    if (!h) return;
    const cls = SERIES[i % SERIES.length]!;
    if (h.values) ah.push(el('div', { class: 'act-hist', 'data-kind': 'values' }, el('div', { class: 'muted' }, `output values: base vs ${name(o)} (propagated, sampled)`), histogram({ title: `activation values of ${id || 'the model'}: base vs ${name(o)}`, series: [{ label: 'base', counts: h.values.base, cls: 's6' }, { label: name(o), counts: h.values.other, cls }], edges: [-h.values.range, h.values.range], log: true })));
    if (h.rel) ah.push(el('div', { class: 'act-hist', 'data-kind': 'rel' }, el('div', { class: 'muted' }, `${name(o)}: relative change of outputs |\u0394|/|base| (log10, propagated)`), histogram({ title: `activation relative change of ${id || 'the model'} in ${name(o)}`, series: [{ label: name(o), counts: h.rel.counts, cls }], edges: h.rel.edges, log: true, format: (x) => `1e${x}` })));
  });
  return ah.length ? [el('h3', {}, 'Activation histograms'), el('div', { id: 'act-hists' }, ...ah)] : [];
}

/** The "Which instances?" button: opens Behaviors on the instances this module hurts most. */
function whichInstances(p: LayersPanel, id: string): Node[] {
  const ui = p.state.ui;
  const withActs = p.others.filter((o) => p.state.data.get(o)?.acts?.modules.some((m) => m.name === id));
  if (!withActs.length) return [];
  const btn = el('button', {}, icon('symbol-event'), ' Which instances?');
  btn.title = `Open Behaviors with the instances ${id || 'the model'} hurts most (${ui.mode} activation error)`;
  btn.addEventListener('click', () => {
    const instances = worstInstances(p.state, withActs, id);
    void p.rpc.request('openPanel', { view: 'behaviors', models: p.ids, focus: { layer: id, instances, reason: `the ${instances.length} instances ${id || 'the model'} hurts most (${ui.mode} activation error)` } }).catch(p.showError);
  });
  return [el('div', { class: 'toolbar' }, btn)];
}
