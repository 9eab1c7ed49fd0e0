/** The layer detail's weight heatmap: a tensor's difference (model − base) or its weight, from server tiles. */
import { el, notice } from '../shared/dom';
import { heatmap } from './heatmap';
import { HEATMAP_KEYS, type LayersPanel } from './panel';
import { fetchTiles } from './tilefetch';
import { TilePyramidClient, pyramidInfo, type Viewport } from './tiles';

/** `tiles` params for a weight: the difference asks base against model, else the model's own. */
export function weightTileParams(base: string, model: string, tensor: string, diff: boolean, level: number, w: Viewport) {
  return { model: diff ? base : model, ...(diff ? { other: model } : {}), tensor, level, x0: w.c0, y0: w.r0, x1: w.c1, y1: w.r1 };
}

/** One tile client (and cache) per source: what it shows, of which model, of which tensor. */
export function weightSourceKey(diff: boolean, model: string, tensor: string): string {
  return `${diff ? 'diff' : 'weight'}\u0000${model}\u0000${tensor}`;
}

/** Appends the heatmap section for tensor `id` to `parts` (when it exists in a compared model) and draws it next. */
export function weightHeatmapSection(p: LayersPanel, id: string, parts: Node[]): void {
  const s = p.state;
  const ui = s.ui;
  const t = s.index.get(ui.heatModel)?.tensors.get(id) ?? s.index.get(p.others[0]!)?.tensors.get(id);
  if (!t || t.status !== 'ok' || !t.shape_other) return;
  const pick = el('select', { 'aria-label': 'Heatmap model' }, ...p.others.map((o) => el('option', { value: o }, p.name(o))));
  pick.value = ui.heatModel;
  const what = el('select', { 'aria-label': 'Heatmap of' }, el('option', { value: 'diff' }, 'difference (model − base)'), el('option', { value: 'weight' }, 'weight'));
  what.value = ui.heatDiff ? 'diff' : 'weight';
  const box = el('div', {});
  const draw = () => {
    s.heat?.dispose();
    const model = ui.heatModel;
    const diff = ui.heatDiff;
    const shape = s.index.get(model)?.tensors.get(id)?.shape_other ?? t.shape_other!;
    const key = weightSourceKey(diff, model, id);
    const client = s.clients.get(key) ?? new TilePyramidClient(pyramidInfo(shape), async (level, w) => {
      const r = await fetchTiles(p, weightTileParams(p.base, model, id, diff, level, w), id);
      return { tiles: r.tiles, ...(r.range ? { range: r.range } : {}) };
    });
    s.clients.set(key, client);
    s.heat = heatmap(client, { title: `${id} ${diff ? 'difference' : 'weight'} in ${p.name(model)}`, onError: (m) => box.replaceChildren(notice('error', m)) });
    box.replaceChildren(s.heat.element);
  };
  pick.addEventListener('change', () => { ui.heatModel = pick.value; p.save(); draw(); });
  what.addEventListener('change', () => { ui.heatDiff = what.value === 'diff'; p.save(); draw(); });
  parts.push(el('h3', {}, 'Heatmap'), el('div', { class: 'toolbar' }, pick, what, el('span', { class: 'muted' }, HEATMAP_KEYS)), box);
  queueMicrotask(draw);
}
