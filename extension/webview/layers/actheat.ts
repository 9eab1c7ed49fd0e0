/**
 * The layer detail's activation heatmap: a module's output (or its difference from the base) on
 * the first sampled instances, one row per instance. The pyramid's shape is known only from the
 * server's first answer (the stacked output's shape), so each source is probed once at its
 * coarsest level and kept in the state.
 */
import { el, notice } from '../shared/dom';
import { errorText } from '../../shared/errors';
import { activationLayout, describeCell } from './actlayout';
import { heatmap } from './heatmap';
import { HEATMAP_KEYS, type LayersPanel } from './panel';
import type { ActSource, ActWhat } from './state';
import { fetchTiles } from './tilefetch';
import { TilePyramidClient, pyramidOfMeta, type PyramidInfo, type TileData, type Viewport } from './tiles';

/** The server stacks at most this many instances per heatmap. */
export const MAX_HEATMAP_INSTANCES = 256;

/** The everything-window of the probe at the coarsest level. */
const ALL: Viewport = { r0: 0, c0: 0, r1: 2 ** 31 - 1, c1: 2 ** 31 - 1 };

/** `tiles` params for a module's activations on `rows` (instance ids, one row each). */
export function activationTileParams(base: string, module: string, what: ActWhat, model: string, rows: string[], level: number, w: Viewport) {
  const side = what === 'diff' ? { model: base, other: model } : { model: what === 'base' ? base : model };
  // `source` and `instances` ride along to bonsai/tensor/tiles (the host forwards them)
  return { ...side, tensor: module, source: 'activation' as const, instances: rows, level, x0: w.c0, y0: w.r0, x1: w.c1, y1: w.r1 };
}

/** The instance counts to offer for a sample of `n`: powers of two below it, then all (at most 256). */
export function instanceCounts(n: number): number[] {
  return [...new Set([8, 16, 32, 64, 128, 256].filter((k) => k < n).concat([Math.min(MAX_HEATMAP_INSTANCES, n)]))];
}

/** The saved count when it is offered, else the first offered of at least 16, else the largest. */
export function initialCount(counts: number[], saved: number): number {
  return counts.includes(saved) ? saved : counts.find((n) => n >= 16) ?? counts[counts.length - 1]!;
}

/** One source per what, model (the base's output is the same for every model), module and row count. */
export function activationSourceKey(what: ActWhat, base: string, model: string, module: string, rows: number): string {
  return `${what}\u0000${what === 'base' ? base : model}\u0000${module}\u0000${rows}`;
}

/** Fetches one page of activation tiles of `module`. */
function actTiles(p: LayersPanel, module: string, what: ActWhat, model: string, rows: string[], level: number, w: Viewport) {
  return fetchTiles(p, activationTileParams(p.base, module, what, model, rows, level, w), module);
}

/** Probes a source at its coarsest level: one tile, and the pyramid's shape. */
async function probeSource(p: LayersPanel, id: string, what: ActWhat, model: string, rows: string[]): Promise<ActSource> {
  const probe = await actTiles(p, id, what, model, rows, -1, ALL);
  const pyr = pyramidOfMeta(probe.meta);
  if (!pyr) throw new Error(`the tiles of ${id} came without their pyramid (rows, cols, levels, shape)`);
  const info: PyramidInfo = { rows: pyr.rows, cols: pyr.cols, tile: pyr.tile, levels: pyr.levels };
  const client = new TilePyramidClient(info, async (level, win): Promise<{ tiles: TileData[]; range?: { min: number | null; max: number | null } }> => {
    const r = await actTiles(p, id, what, model, rows, level, win);
    return { tiles: r.tiles, ...(r.range ? { range: r.range } : {}) };
  });
  client.seed(probe.tiles, probe.range);
  const lengths = Array.isArray(probe.meta['lengths']) ? (probe.meta['lengths'] as unknown[]).map(Number) : undefined;
  return { client, shape: pyr.shape, lengths };
}

/** Appends the activation heatmap section of module `id` to `parts` (when a model compared it) and draws it next. */
export function activationHeatmapSection(p: LayersPanel, id: string, parts: Node[]): void {
  const s = p.state;
  const ui = s.ui;
  const have = p.others.filter((o) => s.index.get(o)?.modules.get(id)?.status === 'ok');
  if (!have.length) return;
  const ids = s.data.get(have[0]!)!.acts!.ids;
  if (!ids.length) return;
  const pick = el('select', { 'aria-label': 'Activation heatmap model' }, ...have.map((o) => el('option', { value: o }, p.name(o))));
  pick.value = have.includes(ui.heatModel) ? ui.heatModel : have[0]!;
  const what = el('select', { 'aria-label': 'Activation heatmap of' }, el('option', { value: 'diff' }, 'difference (model \u2212 base)'), el('option', { value: 'model' }, 'model output'), el('option', { value: 'base' }, 'base output'));
  what.value = ui.actWhat;
  const counts = instanceCounts(ids.length);
  const count = el('select', { 'aria-label': 'Activation heatmap instances' }, ...counts.map((n) => el('option', { value: String(n) }, `first ${n} instances`)));
  count.value = String(initialCount(counts, ui.actCount));
  const box = el('div', { id: 'act-heatmap' });
  const draw = () => {
    s.actHeat?.dispose();
    s.actHeat = null;
    const model = pick.value;
    const w = what.value as ActWhat;
    const rows = ids.slice(0, Number(count.value));
    const key = activationSourceKey(w, p.base, model, id, rows.length);
    let src = s.actSources.get(key);
    if (!src) {
      src = probeSource(p, id, w, model, rows);
      src.catch(() => s.actSources.delete(key)); // a failure is not kept: choosing again retries
      s.actSources.set(key, src);
    }
    box.replaceChildren(el('p', { class: 'muted' }, `Running ${rows.length} instances through ${w === 'diff' ? `base and ${p.name(model)}` : p.name(w === 'base' ? p.base : model)}\u2026`));
    const mine = src;
    mine.then(({ client, shape, lengths }) => {
      // a newer choice, or another selection, replaced this heatmap meanwhile
      if (s.actSources.get(key) !== mine || !box.isConnected) return;
      const layout = activationLayout(shape, rows, lengths);
      s.actHeat = heatmap(client, {
        title: `${id || 'model'} output ${w === 'diff' ? `difference (${p.name(model)} \u2212 base)` : `of ${p.name(w === 'base' ? p.base : model)}`}`,
        axes: { rows: layout.rows, cols: layout.cols },
        describe: (r, c) => describeCell(layout, rows, r, c),
        fill: true,
        onError: (m) => box.replaceChildren(notice('error', m)),
      });
      box.replaceChildren(s.actHeat.element);
    }, (e: unknown) => box.replaceChildren(notice('error', `Activation heatmap of ${id}: ${errorText(e)}`)));
  };
  pick.addEventListener('change', () => { ui.heatModel = pick.value; p.save(); draw(); });
  what.addEventListener('change', () => { ui.actWhat = what.value as ActWhat; p.save(); draw(); });
  count.addEventListener('change', () => { ui.actCount = Number(count.value); p.save(); draw(); });
  parts.push(el('h3', {}, 'Activation heatmap'), el('div', { class: 'toolbar' }, pick, what, count, el('span', { class: 'muted' }, HEATMAP_KEYS)), box);
  queueMicrotask(draw);
}
