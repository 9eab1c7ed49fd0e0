/**
 * Filters: one brushable histogram per metric. Dragging over a histogram keeps the models in
 * that range (double-click or the clear button removes it); the badge counts the models that
 * pass. Bars show all models faintly and those passing the other filters solidly.
 */
import { el, onNextFrame, sizeCanvas } from '../shared/dom';
import type { App, Change } from './app';
import { filterList, histogram, passes, setFilter } from './filters';
import { linear, short, themeColors } from './scales';

const W = 200;
const H = 38;
const BINS = 24;

export class FiltersView {
  readonly root: HTMLElement;
  readonly badge: HTMLElement;
  private readonly list: HTMLElement;
  private readonly items = new Map<string, HTMLElement>();
  private readonly open = new Set<string>(); // folded groups the user opened

  constructor(private readonly app: App) {
    this.badge = el('span', { class: 'mm-badge', role: 'status', 'aria-live': 'polite' });
    const clear = el('button', { class: 'secondary' }, 'Clear filters');
    clear.addEventListener('click', () => this.app.setFilters([]));
    this.list = el('div', { class: 'mm-filters-list' });
    this.root = el('section', { class: 'mm-filters', 'aria-label': 'Filters' }, el('h2', {}, 'Filters ', this.badge, ' ', clear), this.list);
    app.on((c: Change) => {
      if (c === 'data' || c === 'filters' || c === 'hover' || c === 'selection' || c === 'encoding') this.request();
    });
  }

  /** Redraws on the next frame (once, however many changes come before it). */
  readonly request = onNextFrame(() => this.render());

  private render(): void {
    const { lin, state } = this.app;
    this.badge.textContent = `${this.app.pass.size} of ${lin.order.length} pass`;
    const theme = themeColors();
    const existing = this.items;
    const items: HTMLElement[] = [];
    const shown = filterList(lin.metrics.map((d) => d.key), (k) => lin.column(k));
    const keep = new Set([...shown.metrics, ...shown.groups.flatMap((g) => g.keys)]);
    for (const def of lin.metrics) {
      if (!keep.has(def.key)) continue;
      const values = lin.column(def.key);
      // A bar's solid part: models that pass every *other* filter, so the brush shows what it would keep.
      const others = state.filters.filter((f) => f.metric !== def.key);
      const mask = others.length ? lin.order.map((id) => passes(lin, id, others)) : undefined;
      const h = histogram(values, BINS, mask);
      const f = state.filters.find((x) => x.metric === def.key);
      let item = existing.get(def.key);
      if (!item) {
        item = this.item(def.key);
        existing.set(def.key, item);
      }
      items.push(item);
      const canvas = item.querySelector('canvas')!;
      const label = item.querySelector('.mm-filter-label')!;
      label.textContent = `${lin.label(def.key, { unit: true, direction: true })}${f ? `: ${short(f.lo)} – ${short(f.hi)}` : ''}`;
      canvas.setAttribute('aria-label', `${lin.label(def.key)} histogram, ${short(h.min)} to ${short(h.max)}${f ? `, filtered to ${short(f.lo)} – ${short(f.hi)}` : ''}. Arrow keys narrow, Delete clears.`);
      (canvas as HTMLCanvasElement & { hist?: typeof h }).hist = h;
      const ctx = canvas.getContext('2d')!;
      const dpr = window.devicePixelRatio || 1;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, W, H);
      const max = Math.max(1, ...h.counts);
      const bw = W / BINS;
      h.counts.forEach((n, i) => {
        const bh = (n / max) * (H - 4);
        ctx.fillStyle = theme.muted;
        ctx.globalAlpha = 0.25;
        ctx.fillRect(i * bw + 0.5, H - bh, bw - 1, bh);
        ctx.globalAlpha = 1;
        const ph = (h.passing[i]! / max) * (H - 4);
        const binMid = h.min + ((i + 0.5) / BINS) * (h.max - h.min);
        const inRange = !f || (binMid >= f.lo && binMid <= f.hi);
        ctx.fillStyle = inRange ? theme.focus : theme.muted;
        ctx.globalAlpha = inRange ? 0.85 : 0.4;
        ctx.fillRect(i * bw + 0.5, H - ph, bw - 1, ph);
      });
      ctx.globalAlpha = 1;
      const x = linear([h.min, h.max], [0, W]);
      if (f) {
        ctx.strokeStyle = theme.fg;
        ctx.lineWidth = 1;
        ctx.strokeRect(Math.max(0, x(f.lo)) + 0.5, 0.5, Math.max(1, Math.min(W, x(f.hi)) - Math.max(0, x(f.lo)) - 1), H - 1);
      }
      // Linked marks: hovered model (line) and selected models (ticks).
      ctx.fillStyle = theme.fg;
      for (const id of this.app.selection) {
        const v = lin.metric(id, def.key);
        if (v !== undefined) ctx.fillRect(x(v) - 0.5, H - 5, 1.5, 5);
      }
      const hv = this.app.hover ? lin.metric(this.app.hover, def.key) : undefined;
      if (hv !== undefined) {
        ctx.fillStyle = theme.focus;
        ctx.fillRect(x(hv) - 1, 0, 2, H);
      }
      item.querySelector('.mm-filter-range')!.textContent = `${short(h.min)} … ${short(h.max)}`;
    }
    const byKey = new Map(items.map((i) => [i.dataset.metric ?? '', i]));
    const rows: HTMLElement[] = shown.metrics.map((k) => byKey.get(k)!).filter(Boolean);
    for (const g of shown.groups) {
      // per-class metrics: one folded group, not ten histograms in a row
      const details = el('details', { class: 'mm-filter-group', 'data-group': g.prefix }, el('summary', {}, `${g.prefix} (${g.keys.length})`), ...g.keys.map((k) => byKey.get(k)!).filter(Boolean));
      details.open = this.open.has(g.prefix) || state.filters.some((f) => g.keys.includes(f.metric));
      details.addEventListener('toggle', () => (details.open ? this.open.add(g.prefix) : this.open.delete(g.prefix)));
      rows.push(details);
    }
    if (shown.constant.length) rows.push(el('p', { class: 'muted mm-filter-constant' }, `the same for every model (no filter): ${shown.constant.map((k) => lin.label(k)).join(', ')}`));
    this.list.replaceChildren(...rows);
  }

  private item(metric: string): HTMLElement {
    const canvas = el('canvas', { tabindex: '0', role: 'slider' });
    sizeCanvas(canvas, W, H);
    const hist = () => (canvas as HTMLCanvasElement & { hist?: { min: number; max: number } }).hist ?? { min: 0, max: 1 };
    const valueAt = (clientX: number) => {
      const r = canvas.getBoundingClientRect();
      const h = hist();
      return linear([0, W], [h.min, h.max])(Math.min(W, Math.max(0, clientX - r.left)));
    };
    let start: number | null = null;
    canvas.addEventListener('mousedown', (e) => {
      start = valueAt(e.clientX);
      e.preventDefault();
    });
    window.addEventListener('mousemove', (e) => {
      if (start === null) return;
      this.app.state.filters = setFilter(this.app.state.filters, metric, [start, valueAt(e.clientX)]);
      this.app.refilter();
      this.app.emit('filters');
    });
    window.addEventListener('mouseup', (e) => {
      if (start === null) return;
      const end = valueAt(e.clientX);
      const h = hist();
      // A click without a drag clears this metric's filter.
      const tiny = Math.abs(end - start) < (h.max - h.min) / 200;
      this.app.setFilters(setFilter(this.app.state.filters, metric, tiny ? null : [start, end]));
      start = null;
    });
    canvas.addEventListener('dblclick', () => this.app.setFilters(setFilter(this.app.state.filters, metric, null)));
    canvas.addEventListener('keydown', (e) => {
      // Keyboard: arrows move the range's ends inward/outward by a twentieth of the span.
      const h = hist();
      const step = (h.max - h.min) / 20 || 1;
      const f = this.app.state.filters.find((x) => x.metric === metric) ?? { metric, lo: h.min, hi: h.max };
      let range: [number, number] | null = [f.lo, f.hi];
      if (e.key === 'ArrowRight') range = [Math.min(f.lo + step, f.hi), f.hi];
      else if (e.key === 'ArrowLeft') range = [Math.max(h.min, f.lo - step), f.hi];
      else if (e.key === 'ArrowDown') range = [f.lo, Math.max(f.lo, f.hi - step)];
      else if (e.key === 'ArrowUp') range = [f.lo, Math.min(h.max, f.hi + step)];
      else if (e.key === 'Delete' || e.key === 'Backspace' || e.key === 'Escape') range = null;
      else return;
      e.preventDefault();
      this.app.setFilters(setFilter(this.app.state.filters, metric, range));
    });
    const item = el('div', { class: 'mm-filter' }, el('div', { class: 'mm-filter-label' }), canvas, el('div', { class: 'mm-filter-range muted' }));
    item.dataset.metric = metric;
    return item;
  }
}
