/**
 * Scatterplot of any metric against any metric, with the map's colour and size encodings, the
 * Pareto front of the two axes (each metric's better direction respected) drawn as a staircase
 * with its models ringed, drag to brush-select, wheel to zoom, hover linked with the map.
 */
import { el, onNextFrame, sizeCanvas } from '../shared/dom';
import type { App, Change } from './app';
import { budgetMarks, isStoredSize } from './budget';
import { paretoFront } from './pareto';
import { errorBars } from './errorBars';
import { extent, linear, short, themeColors, ticks, type Linear, type Theme } from './scales';
import type { Tooltip } from './tooltip';

const M = { l: 56, r: 14, t: 12, b: 36 };

export class ScatterView {
  readonly root: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D;
  private width = 0;
  private height = 0;
  private readonly schedule = onNextFrame(() => this.draw());
  private theme: Theme = themeColors();
  private front: string[] = [];
  private xs: Linear = linear([0, 1], [0, 1]);
  private ys: Linear = linear([0, 1], [0, 1]);
  private lastZoom: unknown = null;
  private brush: { x0: number; y0: number; x1: number; y1: number } | null = null;

  constructor(
    private readonly app: App,
    private readonly tooltip: Tooltip,
  ) {
    this.canvas = el('canvas', { tabindex: '0', role: 'img', 'aria-label': 'Scatterplot. Drag to select, wheel to zoom, double-click to reset.' });
    this.root = el('div', { class: 'mm-scatter' }, this.canvas);
    this.ctx = this.canvas.getContext('2d')!;
    new ResizeObserver(() => this.resize()).observe(this.root);
    this.bind();
    app.on((c: Change) => {
      if (c === 'data' || c === 'encoding' || c === 'filters') this.recompute();
      // The map's own zoom does not change the plot (its zoom is kept in the state too).
      if (c !== 'zoom' || this.lastZoom !== this.app.state.scatterZoom) this.request();
      this.lastZoom = this.app.state.scatterZoom;
    });
  }

  /** The Pareto front of the models that pass the filters. */
  recompute(): void {
    this.theme = themeColors();
    const { lin, state } = this.app;
    const xd = state.scatterX ? lin.metricDef(state.scatterX) : undefined;
    const yd = state.scatterY ? lin.metricDef(state.scatterY) : undefined;
    if (!xd || !yd) {
      this.front = [];
      return;
    }
    const pts: { id: string; x: number; y: number }[] = [];
    for (const id of lin.order) {
      const x = lin.metric(id, xd.key);
      const y = lin.metric(id, yd.key);
      if (x !== undefined && y !== undefined && this.app.pass.has(id)) pts.push({ id, x, y });
    }
    this.front = paretoFront(pts, xd.higherIsBetter, yd.higherIsBetter);
  }

  frontIds(): readonly string[] {
    return this.front;
  }

  private resize(): void {
    const r = this.root.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return; // hidden behind another tab
    this.width = Math.max(50, r.width);
    this.height = Math.max(50, r.height);
    sizeCanvas(this.canvas, this.width, this.height);
    this.draw();
  }

  request(): void {
    if (this.root.isConnected) this.schedule();
  }

  private scales(): boolean {
    const { lin, state } = this.app;
    const ex = state.scatterX ? extent(lin, state.scatterX) : undefined;
    const ey = state.scatterY ? extent(lin, state.scatterY) : undefined;
    if (!ex || !ey) return false;
    const pad = (e: { min: number; max: number }): [number, number] => {
      const s = e.max - e.min || Math.abs(e.max) || 1;
      return [e.min - s * 0.05, e.max + s * 0.05];
    };
    let dx = pad(ex);
    let dy = pad(ey);
    const z = state.scatterZoom;
    if (z) {
      // Zoom is kept in data-independent form: a scale factor and a centre in [0, 1] of the axis.
      const zoomed = (d: [number, number], c: number): [number, number] => {
        const span = (d[1] - d[0]) / z.k;
        const mid = d[0] + c * (d[1] - d[0]);
        return [mid - span / 2, mid + span / 2];
      };
      dx = zoomed(dx, z.x);
      dy = zoomed(dy, z.y);
    }
    this.xs = linear(dx, [M.l, this.width - M.r]);
    this.ys = linear(dy, [this.height - M.b, M.t]);
    return true;
  }

  draw(): void {
    const { ctx, app, theme } = this;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.font = `11px ${theme.font}`;
    if (!this.scales()) {
      ctx.fillStyle = theme.muted;
      ctx.fillText('No metrics to plot yet.', 12, 20);
      return;
    }
    const { lin, state } = app;
    const xKey = state.scatterX!;
    const yKey = state.scatterY!;
    const { xs, ys } = this;
    // Axes and grid.
    ctx.strokeStyle = theme.border;
    ctx.fillStyle = theme.muted;
    ctx.lineWidth = 1;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    // A grid line at a tick, faint, with its label at full opacity.
    const gridLine = (x0: number, y0: number, x1: number, y1: number, label: string, lx: number, ly: number): void => {
      ctx.globalAlpha = 0.3;
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.lineTo(x1, y1);
      ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.fillText(label, lx, ly);
    };
    for (const t of ticks(xs.domain[0], xs.domain[1], Math.max(2, Math.floor(this.width / 90)))) {
      const x = Math.round(xs(t)) + 0.5;
      gridLine(x, M.t, x, this.height - M.b, short(t), x, this.height - M.b + 4);
    }
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const t of ticks(ys.domain[0], ys.domain[1], Math.max(2, Math.floor(this.height / 50)))) {
      const y = Math.round(ys(t)) + 0.5;
      gridLine(M.l, y, this.width - M.r, y, short(t), M.l - 4, y);
    }
    const xd = lin.metricDef(xKey)!;
    // An axis title as long as its axis allows: with the better direction, else with an arrow,
    // else cut (a short plot cut the y title at both ends).
    const axisTitle = (key: string, room: number): string => {
      const d = lin.metricDef(key)!;
      const label = lin.label(key, { unit: true });
      const forms = [`${label} — ${d.higherIsBetter ? 'higher' : 'lower'} is better`, `${label} ${d.higherIsBetter ? '↑' : '↓'}`];
      for (const f of forms) if (ctx.measureText(f).width <= room) return f;
      const f = forms[1]!;
      for (let n = f.length - 1; n > 0; n--) if (ctx.measureText(`${f.slice(0, n)}…`).width <= room) return `${f.slice(0, n)}…`;
      return '';
    };
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.fillStyle = theme.fg;
    const xTitle = axisTitle(xKey, this.width - M.l - M.r);
    const yTitle = axisTitle(yKey, this.height - M.t - M.b);
    ctx.fillText(xTitle, (M.l + this.width - M.r) / 2, this.height - 2);
    ctx.save();
    ctx.translate(12, (M.t + this.height - M.b) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = 'middle';
    ctx.fillText(yTitle, 0, 0);
    ctx.restore();
    // What the axes say, in the DOM (tests, and a screen reader's description of the canvas).
    this.canvas.dataset.x = xKey;
    this.canvas.dataset.y = yKey;
    this.canvas.dataset.xTitle = xTitle;
    this.canvas.dataset.yTitle = yTitle;
    this.canvas.setAttribute('aria-label', `Scatterplot of ${yTitle} against ${xTitle}. Drag to select, wheel to zoom, double-click to reset.`);

    ctx.save();
    ctx.beginPath();
    ctx.rect(M.l, M.t, this.width - M.l - M.r, this.height - M.t - M.b);
    ctx.clip();
    // Pareto front: a staircase through its models, in x order.
    if (this.front.length) {
      const pts = this.front.map((id) => [xs(lin.metric(id, xKey)!), ys(lin.metric(id, yKey)!)] as const).sort((a, b) => a[0] - b[0]);
      ctx.strokeStyle = theme.fg;
      ctx.globalAlpha = 0.6;
      ctx.setLineDash([5, 3]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      pts.forEach(([x, y], i) => {
        if (i === 0) ctx.moveTo(x, y);
        else {
          // The step goes through the corner both neighbours dominate: with higher-x-is-better
          // the right one wins on x and the left one on y, so that corner is (left x, right y).
          const [px, py] = pts[i - 1]!;
          if (xd.higherIsBetter) ctx.lineTo(px, y);
          else ctx.lineTo(x, py);
          ctx.lineTo(x, y);
        }
      });
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.globalAlpha = 1;
    }
    // Size budgets of budgeted variants (Layers > Sensitivity): a vertical line at the budget on a
    // stored-size x axis, named after the variant (its model is the point left of it, or not).
    const marks = isStoredSize(xd) ? budgetMarks(lin.models) : [];
    this.canvas.dataset.budgets = marks.map((b) => `${b.variant}:${b.bytes}`).join(' ');
    if (marks.length) {
      ctx.strokeStyle = theme.focus;
      ctx.fillStyle = theme.focus;
      ctx.lineWidth = 1.5;
      ctx.setLineDash([2, 3]);
      ctx.textAlign = 'left';
      ctx.textBaseline = 'top';
      for (const b of marks) {
        const x = Math.round(xs(b.bytes)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(x, M.t);
        ctx.lineTo(x, this.height - M.b);
        ctx.stroke();
        const size = lin.metric(b.id, xKey);
        const over = size !== undefined && size > b.bytes;
        ctx.fillText(`budget of ${b.variant}${over ? ' (over it)' : ''}`, x + 3, M.t + 2);
      }
      ctx.setLineDash([]);
    }
    // Error bars (latency's spread): from each value to value + spread, noisy ones dashed.
    const bars = errorBars(lin, xKey, yKey, xs, ys);
    if (bars.length) {
      ctx.strokeStyle = theme.muted;
      ctx.lineWidth = 1.2;
      for (const noisy of [false, true]) {
        for (const faded of [false, true]) {
          ctx.setLineDash(noisy ? [3, 2] : []);
          ctx.globalAlpha = faded ? 0.15 : 0.9;
          ctx.beginPath();
          for (const b of bars) {
            if (b.noisy !== noisy || app.pass.has(b.id) === faded) continue;
            ctx.moveTo(b.x0, b.y0);
            ctx.lineTo(b.x1, b.y1);
            // a cap across the far end
            if (b.axis === 'x') {
              ctx.moveTo(b.x1, b.y1 - 3);
              ctx.lineTo(b.x1, b.y1 + 3);
            } else {
              ctx.moveTo(b.x1 - 3, b.y1);
              ctx.lineTo(b.x1 + 3, b.y1);
            }
          }
          ctx.stroke();
        }
      }
      ctx.setLineDash([]);
      ctx.globalAlpha = 1;
    }
    const frontSet = new Set(this.front);
    // Points batched per colour level (see the map); rings for the front, selection and hover.
    const fills = new Map<string, Path2D>();
    const rings = new Path2D();
    const pos = (id: string): [number, number] | null => {
      const xv = lin.metric(id, xKey);
      const yv = lin.metric(id, yKey);
      return xv === undefined || yv === undefined ? null : [xs(xv), ys(yv)];
    };
    const xcol = lin.column(xKey);
    const ycol = lin.column(yKey);
    for (let i = 0; i < lin.order.length; i++) {
      const id = lin.order[i]!;
      if (Number.isNaN(xcol[i]!) || Number.isNaN(ycol[i]!)) continue;
      const p: [number, number] = [xs(xcol[i]!), ys(ycol[i]!)];
      const r = app.radiusOf(id);
      const key = `${app.colorOf(id) ?? theme.muted}|${app.pass.has(id) ? 0 : 1}`;
      let path = fills.get(key);
      if (!path) fills.set(key, (path = new Path2D()));
      path.moveTo(p[0] + r, p[1]);
      path.arc(p[0], p[1], r, 0, Math.PI * 2);
      if (frontSet.has(id)) {
        rings.moveTo(p[0] + r + 2.5, p[1]);
        rings.arc(p[0], p[1], r + 2.5, 0, Math.PI * 2);
      }
    }
    for (const [key, path] of fills) {
      const [fill, faded] = key.split('|');
      ctx.globalAlpha = faded === '1' ? 0.12 : 0.85;
      ctx.fillStyle = fill!;
      ctx.fill(path);
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = theme.fg;
    ctx.lineWidth = 1.2;
    ctx.stroke(rings);
    const ring = (id: string, extra: number, colour: string, width: number) => {
      const p = pos(id);
      if (!p) return;
      ctx.beginPath();
      ctx.arc(p[0], p[1], app.radiusOf(id) + extra, 0, Math.PI * 2);
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.stroke();
    };
    for (const id of app.selection) ring(id, 4, theme.focus, 2.5);
    if (app.hover) ring(app.hover, 7, theme.fg, 1.5);
    ctx.globalAlpha = 1;
    if (this.brush) {
      const b = this.brush;
      ctx.setLineDash([4, 3]);
      ctx.strokeStyle = theme.focus;
      ctx.lineWidth = 1;
      ctx.strokeRect(Math.min(b.x0, b.x1), Math.min(b.y0, b.y1), Math.abs(b.x1 - b.x0), Math.abs(b.y1 - b.y0));
      ctx.setLineDash([]);
    }
    ctx.restore();
  }

  private hit(x: number, y: number): string | null {
    const { lin, state } = this.app;
    let best: string | null = null;
    let bestD = Infinity;
    for (const id of lin.order) {
      const xv = lin.metric(id, state.scatterX ?? '');
      const yv = lin.metric(id, state.scatterY ?? '');
      if (xv === undefined || yv === undefined) continue;
      const d = (this.xs(xv) - x) ** 2 + (this.ys(yv) - y) ** 2;
      const rr = this.app.radiusOf(id) + 3;
      if (d <= rr * rr && d < bestD) {
        best = id;
        bestD = d;
      }
    }
    return best;
  }

  private bind(): void {
    const c = this.canvas;
    const local = (e: MouseEvent): [number, number] => {
      const r = c.getBoundingClientRect();
      return [e.clientX - r.left, e.clientY - r.top];
    };
    c.addEventListener('mousedown', (e) => {
      if (e.button !== 0) return;
      const [x, y] = local(e);
      const id = this.hit(x, y);
      if (id) {
        this.app.select([id], e.shiftKey || e.ctrlKey || e.metaKey ? 'toggle' : 'replace');
        return;
      }
      this.brush = { x0: x, y0: y, x1: x, y1: y };
    });
    window.addEventListener('mousemove', (e) => {
      const [x, y] = local(e);
      if (this.brush) {
        this.brush.x1 = x;
        this.brush.y1 = y;
        this.request();
        return;
      }
      if (e.target !== c) return;
      const id = this.hit(x, y);
      this.app.setHover(id);
      if (id) this.tooltip.show(id, e.clientX, e.clientY);
      else this.tooltip.hide();
    });
    window.addEventListener('mouseup', (e) => {
      const b = this.brush;
      this.brush = null;
      if (!b) return;
      const { lin, state } = this.app;
      if (Math.abs(b.x1 - b.x0) + Math.abs(b.y1 - b.y0) < 4) {
        if (!e.shiftKey) this.app.select([], 'replace');
        return;
      }
      const [x0, x1] = [Math.min(b.x0, b.x1), Math.max(b.x0, b.x1)];
      const [y0, y1] = [Math.min(b.y0, b.y1), Math.max(b.y0, b.y1)];
      const ids = lin.order.filter((id) => {
        const xv = lin.metric(id, state.scatterX ?? '');
        const yv = lin.metric(id, state.scatterY ?? '');
        if (xv === undefined || yv === undefined) return false;
        const x = this.xs(xv);
        const y = this.ys(yv);
        return x >= x0 && x <= x1 && y >= y0 && y <= y1;
      });
      this.app.select(ids, e.shiftKey ? 'add' : 'replace');
    });
    c.addEventListener('mouseleave', () => {
      this.app.setHover(null);
      this.tooltip.hide();
    });
    c.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault();
        const [x, y] = local(e);
        const z = this.app.state.scatterZoom ?? { k: 1, x: 0.5, y: 0.5 };
        const k = Math.min(50, Math.max(1, z.k * Math.exp(-e.deltaY * 0.0015)));
        // Keep the data point under the cursor where it is.
        const fx = (x - M.l) / Math.max(1, this.width - M.l - M.r);
        const fy = 1 - (y - M.t) / Math.max(1, this.height - M.t - M.b);
        const cx = z.x + (fx - 0.5) * (1 / z.k - 1 / k);
        const cy = z.y + (fy - 0.5) * (1 / z.k - 1 / k);
        this.app.state.scatterZoom = k === 1 ? null : { k, x: cx, y: cy };
        this.app.emit('zoom');
      },
      { passive: false },
    );
    c.addEventListener('dblclick', () => {
      this.app.state.scatterZoom = null;
      this.app.emit('zoom');
    });
    c.addEventListener('keydown', (e) => {
      // Keyboard: P selects the Pareto front; + / - / 0 zoom.
      if (e.key === 'p' || e.key === 'P') this.app.select(this.front, e.shiftKey ? 'add' : 'replace');
      else if (e.key === '0') {
        this.app.state.scatterZoom = null;
        this.app.emit('zoom');
      } else if (e.key === '+' || e.key === '-') {
        const z = this.app.state.scatterZoom ?? { k: 1, x: 0.5, y: 0.5 };
        const k = Math.min(50, Math.max(1, z.k * (e.key === '+' ? 1.25 : 0.8)));
        this.app.state.scatterZoom = k === 1 ? null : { ...z, k };
        this.app.emit('zoom');
      } else return;
      e.preventDefault();
    });
  }

  toDataUrl(): string {
    return this.canvas.toDataURL('image/png');
  }

  /** The current plot's scales (the SVG export draws with the same). */
  currentScales(): { xs: Linear; ys: Linear; width: number; height: number } {
    this.scales();
    return { xs: this.xs, ys: this.ys, width: this.width, height: this.height };
  }
}
