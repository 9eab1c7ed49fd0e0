/** The depth profile: the chosen measure along the model's layers, one line per model. */
import { SERIES, lineChart, svg } from '../shared/charts';
import { el } from '../shared/dom';
import { depthProfile } from './depth';
import type { LayersPanel } from './panel';
import type { LayersState } from './state';

/** Why there is no profile yet (activations may still be on their way). */
export function emptyDepthText(s: LayersState): string {
  const m = s.ui.measure;
  return m.source === 'activations' && s.progress.running ? 'Waiting for activations…' : `No ${m.label.toLowerCase()} per layer yet.`;
}

export function renderDepth(p: LayersPanel, depthEl: HTMLElement): void {
  const { ui, index, tree } = p.state;
  const list = p.others.filter((o) => index.has(o)).map((o) => ({ id: o, index: index.get(o)! }));
  const prof = depthProfile(tree, list, ui.measure, ui.mode);
  if (!prof.paths.length) {
    depthEl.replaceChildren(el('h2', {}, 'Depth profile'), el('p', { class: 'muted' }, emptyDepthText(p.state)));
    return;
  }
  const chart = lineChart({
    title: `${ui.measure.label} along depth`,
    labels: prof.paths,
    marks: prof.norms,
    series: prof.series.map((s, i) => ({ label: p.name(s.model), values: s.values, cls: SERIES[i % SERIES.length]! })),
    format: ui.measure.format,
    width: Math.max(480, Math.min(1100, prof.paths.length * 10)),
    onPick: (i) => p.select(prof.paths[i]!),
  });
  const legend = el('div', { class: 'toolbar' }, ...prof.series.map((s, i) => el('span', {}, svg('svg', { width: 10, height: 10, class: SERIES[i % SERIES.length]! }, svg('rect', { width: 10, height: 10 })), ` ${p.name(s.model)}`)));
  if (prof.norms.length) legend.append(el('span', { class: 'muted' }, `dashed: normalisation layers (${prof.norms.length})`));
  const axis = el('p', { class: 'muted depth-axis' }, `x: modules in the order they run (${prof.paths.length}, input to output; hover a point for its path) · y: ${ui.measure.label}`);
  depthEl.replaceChildren(el('h2', {}, 'Depth profile'), chart, axis, legend);
}
