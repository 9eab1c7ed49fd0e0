/**
 * The provenance map on a canvas (an SVG of thousands of nodes would be slow to pan): tapered
 * edges coloured by the change of the colour metric, nodes filled and sized by the chosen
 * metrics, live status rings, fixed column headers, zoom and pan, hover, and selection by click,
 * shift-click, shift-drag rectangle, column header, and keyboard.
 */
import { el, onNextFrame, sizeCanvas } from '../shared/dom';
import type { App, Change } from './app';
import { change, type Lineage, type MetricDef } from './lineage';
import type { LayoutNode } from './layout';
import { COL_W, fitColumns, HEADER_H, K_NAMES, PAD, ROW_H, taper, worldX, worldY } from './geometry';
import { placeLabels, type LabelItem, type PlacedLabel } from './labels';
import { themeColors, type Theme } from './scales';
import type { Tooltip } from './tooltip';
import type { Zoom } from './state';

const K_MIN = 0.02;
/** The cached map bitmap reaches this far (CSS px) beyond each side of the view. */
const CACHE_M = 320;

interface Cache {
  canvas: HTMLCanvasElement;
  ctx: CanvasRenderingContext2D;
  zoom: Zoom;
  dpr: number;
  w: number;
  h: number;
  dirty: boolean;
}
const K_MAX = 6;

export class MapView {
  readonly root: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D;
  private zoom: Zoom = { k: 1, x: 0, y: 0 };
  private width = 0;
  private height = 0;
  private theme: Theme = themeColors();
  private drag: { mode: 'pan' | 'rect'; x0: number; y0: number; x1: number; y1: number; zx: number; zy: number; moved: boolean } | null = null;
  private cursor: string | null = null;
  private cache: Cache | null = null;
  private restored = false;
  /** Extra offset of sx/sy while painting into the cache (its margin). */
  private off = 0;
  private settle: ReturnType<typeof setTimeout> | undefined;
  /** World width of a column: stretched so a fitted map fills the view's width (fitColumns). */
  private colW = COL_W;
  /** The labels of the last painted content, in cache coordinates (the DOM summary reads them). */
  private labels: PlacedLabel[] = [];
  /** Called after every drawn frame with its duration (the benchmark listens). */
  onDraw: ((ms: number) => void) | null = null;

  constructor(
    private readonly app: App,
    private readonly tooltip: Tooltip,
  ) {
    this.canvas = el('canvas', { tabindex: '0', role: 'img', 'aria-label': 'Provenance map. Arrow keys move between models, Space selects (Shift+Space adds), A selects the column, C collapses, + and - zoom, 0 fits, 9 shows everything.' });
    this.root = el('div', { class: 'mm-map' }, this.canvas);
    this.ctx = this.canvas.getContext('2d')!;
    new ResizeObserver(() => this.resize()).observe(this.root);
    this.bindPointer();
    this.bindKeys();
    app.on((c) => this.onChange(c));
    // VS Code switches theme by changing the body's class: repaint with the new colours.
    new MutationObserver(() => {
      this.theme = themeColors();
      app.emit('encoding');
    }).observe(document.body, { attributes: true, attributeFilter: ['class'] });
  }

  private onChange(c: Change): void {
    // The saved zoom applies once, on the first lineage; live updates keep the zoom as it is
    // (even in the middle of a drag).
    if (c === 'data' && !this.restored) {
      this.restored = true;
      if (this.app.state.mapZoom) this.zoom = { ...this.app.state.mapZoom };
    }
    if (c === 'encoding' || c === 'data') this.theme = themeColors();
    if (c === 'layout' || c === 'data') this.updateColumns();
    if (c === 'layout' && !this.app.state.mapZoom) this.fit();
    // Hover and zoom leave the content as it is; everything else changes what it shows.
    if (c !== 'hover' && c !== 'zoom' && this.cache) this.cache.dirty = true;
    this.request();
  }

  /** Everything in view, however small (the overview). */
  fitAll(): void {
    const l = this.app.layout;
    const w = PAD * 2 + Math.max(0, l.columns.length - 1) * this.colW + 80;
    const h = PAD + Math.max(1, l.rows) * ROW_H;
    this.zoom = { k: Math.max(K_MIN, Math.min(1.2, this.width / w, (this.height - HEADER_H) / h)), x: 4, y: 0 };
    this.commitZoom();
    this.request();
  }

  /** The map's width in view, its top rows legible (zoomed no closer than 1.2), its columns
   * stretched to fill the width (fitColumns). */
  fit(): void {
    const l = this.app.layout;
    // Wide maps fit their width; tall ones (a row per branch) are not shrunk past legibility:
    // the user scrolls down them instead.
    const { k } = fitColumns(this.width, this.height, l.columns.length, l.rows);
    this.updateColumns();
    this.zoom = { k: Math.max(K_MIN, k), x: 4, y: 0 };
    this.commitZoom();
  }

  /** The column width for this view size and layout (not the zoom: a restored zoom shows the
   * map as it was saved, in a view of the same size). */
  private updateColumns(): void {
    const l = this.app.layout;
    const w = fitColumns(this.width, this.height, l.columns.length, l.rows).colW;
    if (w !== this.colW) {
      this.colW = w;
      if (this.cache) this.cache.dirty = true;
    }
  }

  private commitZoom(): void {
    this.app.state.mapZoom = { ...this.zoom };
    this.app.emit('zoom');
  }

  /** Reads the size the layout gave the map and repaints (also called once the panel is mounted). */
  resize(): void {
    const r = this.root.getBoundingClientRect();
    // Hidden (another tab shows): keep the size it had, or a fit would zoom for a 50 px map.
    if (r.width === 0 || r.height === 0) return;
    this.width = Math.max(50, r.width);
    this.height = Math.max(50, r.height);
    sizeCanvas(this.canvas, this.width, this.height);
    this.updateColumns();
    if (!this.app.state.mapZoom) this.fit();
    this.draw();
  }

  /** Redraws on the next frame (once, however many changes come before it). */
  readonly request = onNextFrame(() => this.draw());

  // -- coordinates ---------------------------------------------------------------------------
  sx(n: LayoutNode): number {
    return worldX(n, this.colW) * this.zoom.k + this.zoom.x + this.off;
  }

  sy(n: LayoutNode): number {
    return worldY(n) * this.zoom.k + this.zoom.y + HEADER_H + this.off;
  }

  private r(id: string): number {
    // Nodes shrink with the zoom, but stay visible when the map is zoomed far out.
    return Math.max(1.5, this.app.radiusOf(id) * Math.min(1.5, this.zoom.k));
  }

  /** The node under a canvas point, nearest first. */
  hit(x: number, y: number): string | null {
    let best: string | null = null;
    let bestD = Infinity;
    for (const n of this.app.layout.nodes) {
      const dx = this.sx(n) - x;
      const dy = this.sy(n) - y;
      const d = dx * dx + dy * dy;
      const rr = Math.max(this.r(n.id) + 3, 5);
      if (d <= rr * rr && d < bestD) {
        best = n.id;
        bestD = d;
      }
    }
    return best;
  }

  private columnAt(x: number): number | null {
    const col = Math.round((x - this.zoom.x) / this.zoom.k / this.colW - PAD / this.colW);
    return col >= 0 && col < this.app.layout.columns.length ? col : null;
  }

  zoomAt(factor: number, cx: number, cy: number): void {
    const k = Math.min(K_MAX, Math.max(K_MIN, this.zoom.k * factor));
    const f = k / this.zoom.k;
    this.zoom = { k, x: cx - (cx - this.zoom.x) * f, y: cy - HEADER_H - (cy - HEADER_H - this.zoom.y) * f };
    this.commitZoom();
    this.request();
  }

  panBy(dx: number, dy: number): void {
    this.zoom = { ...this.zoom, x: this.zoom.x + dx, y: this.zoom.y + dy };
    this.commitZoom();
    this.request();
  }

  /** Brings a model into view (used by search, keyboard and the host's focus event). */
  reveal(id: string): void {
    const n = this.app.layout.byId.get(id);
    if (!n) return;
    const x = this.sx(n);
    const y = this.sy(n);
    if (x < 40 || x > this.width - 40 || y < HEADER_H + 20 || y > this.height - 20) {
      this.zoom = { ...this.zoom, x: this.zoom.x + this.width / 2 - x, y: this.zoom.y + this.height / 2 - y };
      this.commitZoom();
    }
    this.request();
  }

  // -- drawing -------------------------------------------------------------------------------
  /**
   * A frame: the map content comes from a cached bitmap larger than the view by CACHE_M on every
   * side, so panning only blits it, and zooming shows it scaled until the gesture settles and
   * the content is painted afresh. Hover rings, headers and the selection rectangle are drawn
   * over it every frame.
   */
  draw(): void {
    const t0 = performance.now();
    const { ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    const z = this.zoom;
    let c = this.cache;
    const W = this.width + 2 * CACHE_M;
    const H = this.height + 2 * CACHE_M;
    const fresh = !c || c.dirty || c.dpr !== dpr || c.w !== W || c.h !== H;
    const outside = c && (Math.abs(z.x - c.zoom.x) > CACHE_M * 0.9 || Math.abs(z.y - c.zoom.y) > CACHE_M * 0.9);
    if (c && !fresh && c.zoom.k !== z.k) {
      // Zooming: preview now, crisp when the wheel stops.
      clearTimeout(this.settle);
      this.settle = setTimeout(() => {
        if (this.cache) this.cache.dirty = true;
        this.request();
      }, 120);
    } else if (fresh || outside) {
      c = this.paintCache(dpr, W, H);
    }
    c = c!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    const f = z.k / c.zoom.k;
    // Cache pixel p shows world w = (p - origin) / k0; on screen it goes to w * k + z.
    const dx = z.x - (c.zoom.x + CACHE_M) * f;
    const dy = z.y + HEADER_H - (c.zoom.y + HEADER_H + CACHE_M) * f;
    ctx.drawImage(c.canvas, dx, dy, W * f, H * f);
    this.paintOverlay();
    this.onDraw?.(performance.now() - t0);
    // The labels in view, in the DOM for tests and tools, once the map is still (not per frame).
    clearTimeout(this.summaryTimer);
    this.summaryTimer = setTimeout(() => {
      this.canvas.dataset.labels = JSON.stringify(this.summary().labels);
    }, 150);
  }

  private summaryTimer: ReturnType<typeof setTimeout> | undefined;

  private paintCache(dpr: number, W: number, H: number): Cache {
    let c = this.cache;
    if (!c) {
      const canvas = document.createElement('canvas');
      c = this.cache = { canvas, ctx: canvas.getContext('2d')!, zoom: { ...this.zoom }, dpr, w: 0, h: 0, dirty: true };
    }
    if (c.w !== W || c.h !== H || c.dpr !== dpr) {
      c.canvas.width = Math.round(W * dpr);
      c.canvas.height = Math.round(H * dpr);
      c.w = W;
      c.h = H;
      c.dpr = dpr;
    }
    c.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.ctx.clearRect(0, 0, W, H);
    c.zoom = { ...this.zoom };
    c.dirty = false;
    this.off = CACHE_M;
    try {
      this.paintContent(c.ctx, W, H);
    } finally {
      this.off = 0;
    }
    return c;
  }

  /** Edges, their labels, nodes and names, for the view plus the cache margin. */
  private paintContent(ctx: CanvasRenderingContext2D, W: number, H: number): void {
    const { app, theme } = this;
    const { layout, lin } = app;
    const k = this.zoom.k;
    const metric = app.state.colorMetric;
    const def = metric ? lin.metricDef(metric) : undefined;
    const inView = (x: number, y: number, m: number) => x > -m && x < W + m && y > -m && y < H + m;
    const margin = this.colW * k + 20;

    // Edges first, under the nodes, batched into one path per colour and opacity: thousands of
    // separate fills are what makes a software-rendered canvas slow.
    const edgePaths = new Map<string, Path2D>();
    const simple = k < 0.25;
    for (const [p, c] of layout.edges) {
      const pn = layout.byId.get(p)!;
      const cn = layout.byId.get(c)!;
      const px = this.sx(pn);
      const py = this.sy(pn);
      const cx = this.sx(cn);
      const cy = this.sy(cn);
      if (!inView(px, py, margin) && !inView(cx, cy, margin) && !((py < 0 && cy > H) || (cy < 0 && py > H))) continue;
      const colour = edgeColour(lin, def, p, c, theme);
      const faded = !app.pass.has(c) || !app.pass.has(p);
      const alpha = faded ? 0.12 : app.selection.size && !(app.selection.has(c) || app.selection.has(p)) ? 0.45 : 0.8;
      const key = `${colour}|${alpha}`;
      let path = edgePaths.get(key);
      if (!path) edgePaths.set(key, (path = new Path2D()));
      const t = taper(px, py, this.r(p), cx, cy, this.r(c));
      path.moveTo(t.top[0], t.top[1]);
      // Zoomed far out the curve is a few pixels: straight segments look the same and cost less.
      if (simple) path.lineTo(t.top[6], t.top[7]);
      else path.bezierCurveTo(t.top[2], t.top[3], t.top[4], t.top[5], t.top[6], t.top[7]);
      path.lineTo(t.bottom[0], t.bottom[1]);
      if (simple) path.lineTo(t.bottom[6], t.bottom[7]);
      else path.bezierCurveTo(t.bottom[2], t.bottom[3], t.bottom[4], t.bottom[5], t.bottom[6], t.bottom[7]);
      // No closePath: fill() closes every subpath anyway, and in Chromium closePath on a long
      // Path2D costs time that grows with the path.
    }
    for (const [key, path] of edgePaths) {
      const [colour, alpha] = key.split('|');
      ctx.globalAlpha = Number(alpha);
      ctx.fillStyle = colour!;
      ctx.fill(path);
    }
    ctx.globalAlpha = 1;

    // Nodes: fills batched per colour level, outlines in one path; status, selection and hover
    // rings are few and drawn one by one.
    const showNames = k >= K_NAMES;
    const fills = new Map<string, Path2D>();
    const outlines = [new Path2D(), new Path2D()];
    const visible: LayoutNode[] = [];
    for (const n of layout.nodes) {
      const x = this.sx(n);
      const y = this.sy(n);
      if (!inView(x, y, 30)) continue;
      visible.push(n);
      const r = this.r(n.id);
      const faded = !app.pass.has(n.id);
      const key = `${app.colorOf(n.id) ?? theme.bg}|${faded ? 1 : 0}`;
      let path = fills.get(key);
      if (!path) fills.set(key, (path = new Path2D()));
      path.moveTo(x + r, y);
      path.arc(x, y, r, 0, Math.PI * 2);
      const o = outlines[faded ? 1 : 0]!;
      o.moveTo(x + r, y);
      o.arc(x, y, r, 0, Math.PI * 2);
    }
    for (const [key, path] of fills) {
      const [fill, faded] = key.split('|');
      ctx.globalAlpha = faded === '1' ? 0.15 : 1;
      ctx.fillStyle = fill!;
      ctx.fill(path);
    }
    ctx.lineWidth = 1;
    ctx.strokeStyle = theme.highContrast ? theme.border : theme.muted;
    ctx.globalAlpha = 1;
    if (k >= 0.15 || theme.highContrast) ctx.stroke(outlines[0]!);
    ctx.globalAlpha = 0.15;
    ctx.stroke(outlines[1]!);
    ctx.globalAlpha = 1;
    const nameFont = `${Math.round(11 * Math.min(1.3, Math.max(0.9, k)))}px ${theme.font}`;
    const opFont = `${Math.round(10 * Math.min(1.3, k))}px ${theme.font}`;
    const lineH = Math.round(11 * Math.min(1.3, Math.max(0.9, k))) + 2;
    // Names (and the status marks, and how many a collapsed node hides) as label candidates,
    // the selected ones first, then failed or running ones; rings drawn now.
    const names: LabelItem[] = [];
    const urgent: LabelItem[] = [];
    for (const n of visible) {
      const m = lin.byId.get(n.id)!;
      const selected = app.selection.has(n.id);
      if (m.status === 'ok' && !selected && !n.hidden && !showNames) continue;
      const x = this.sx(n);
      const y = this.sy(n);
      const r = this.r(n.id);
      ctx.globalAlpha = app.pass.has(n.id) ? 1 : 0.15;
      if (m.status !== 'ok') {
        ctx.beginPath();
        ctx.arc(x, y, r, 0, Math.PI * 2);
        ctx.lineWidth = m.status === 'stale' ? 1 : 2;
        ctx.strokeStyle = m.status === 'running' ? theme.running : m.status === 'stale' ? theme.muted : theme.failed;
        ctx.setLineDash(m.status === 'running' ? [3, 2] : m.status === 'stale' ? [1, 2] : []);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      if (selected) {
        ctx.beginPath();
        ctx.arc(x, y, r + 3, 0, Math.PI * 2);
        ctx.lineWidth = 2.5;
        ctx.strokeStyle = theme.focus;
        ctx.stroke();
      }
      let label = '';
      if (k >= 0.3 || showNames) {
        if (m.status === 'failed' || m.status === 'broken') label = '⚠ ';
        else if (m.status === 'running') label = '⟳ ';
      }
      if (showNames) label += m.name;
      if (n.hidden) label += ` (+${n.hidden})`;
      if (!label.trim()) continue;
      const item: LabelItem = { id: n.id, text: label.trim(), x, y, r: r + (selected ? 3 : 0), kind: 'name', force: selected };
      (selected ? names : m.status !== 'ok' ? urgent : names).push(item);
    }
    names.sort((a, b) => Number(!!b.force) - Number(!!a.force));
    // Edge labels: the op once zoomed in, its parameters closer still; after every name.
    const ops: LabelItem[] = [];
    if (k >= 0.85) {
      for (const [p, c] of layout.edges) {
        const cn = layout.byId.get(c)!;
        const pn = layout.byId.get(p)!;
        const cx = this.sx(cn);
        const cy = this.sy(cn);
        if (!inView(cx, cy, 0)) continue;
        const m = lin.byId.get(c)!;
        const lx = (this.sx(pn) + cx) / 2 + (cn.row !== pn.row ? this.colW * k * 0.12 : 0);
        ops.push({ id: `op:${c}`, text: shortOp(m.op ?? ''), x: lx, y: cy - 5 - lineH / 2, r: 0, kind: 'op' });
        if (k >= 1.6) {
          const params = Object.entries(m.params)
            .map(([a, b]) => `${a}=${typeof b === 'string' ? b : JSON.stringify(b)}`)
            .join(' ');
          if (params) ops.push({ id: `par:${c}`, text: params.length > 40 ? `${params.slice(0, 39)}…` : params, x: lx, y: cy + 5 + lineH / 2, r: 0, kind: 'op' });
        }
      }
    }
    const widths = new Map<string, number>();
    const measure = (t: string, kind: 'name' | 'op'): number => {
      const key = `${kind}|${t}`;
      let w = widths.get(key);
      if (w === undefined) {
        ctx.font = kind === 'name' ? nameFont : opFont;
        w = ctx.measureText(t).width;
        widths.set(key, w);
      }
      return w;
    };
    const circles = visible.map((n) => ({ x: this.sx(n), y: this.sy(n), r: this.r(n.id) }));
    this.labels = placeLabels([...names.filter((x) => x.force), ...urgent, ...names.filter((x) => !x.force), ...ops], circles, measure, { height: lineH, gap: 4, minChars: 4, drop: showNames ? 9 * Math.min(1.3, k) : 0 });
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    for (const l of this.labels) {
      const id = l.kind === 'name' ? l.id : l.id.slice(l.id.indexOf(':') + 1);
      const m = lin.byId.get(id)!;
      ctx.globalAlpha = app.pass.has(id) ? 1 : l.kind === 'name' ? 0.15 : 0.3;
      ctx.font = l.kind === 'name' ? nameFont : opFont;
      ctx.fillStyle = l.kind === 'op' ? theme.muted : m.status === 'failed' || m.status === 'broken' ? theme.failed : theme.fg;
      haloText(ctx, l.text, l.x, l.y, theme.bg);
    }
    ctx.globalAlpha = 1;
  }

  /** What the map shows now, for tests and assistive summaries: the column headers drawn and
   * each label in view (text and its box in canvas coordinates). */
  summary(): { headers: string[]; labels: { text: string; kind: string; box: [number, number, number, number] }[] } {
    const c = this.cache;
    const dx = c ? this.zoom.x - c.zoom.x - CACHE_M : 0;
    const dy = c ? this.zoom.y - c.zoom.y - CACHE_M : 0;
    const labels = c && c.zoom.k === this.zoom.k
      ? this.labels
          .map((l) => ({ text: l.text, kind: l.kind, box: [l.box.x0 + dx, l.box.y0 + dy, l.box.x1 + dx, l.box.y1 + dy] as [number, number, number, number] }))
          .filter((l) => l.box[2] > 0 && l.box[0] < this.width && l.box[3] > HEADER_H && l.box[1] < this.height)
      : [];
    return { headers: this.headers, labels };
  }

  private headers: string[] = [];

  /** Hover and keyboard rings, the column headers and the selection rectangle. */
  private paintOverlay(): void {
    const { ctx, app, theme } = this;
    const { layout } = app;
    const k = this.zoom.k;
    for (const id of new Set([app.hover, this.cursor])) {
      const n = id !== null ? layout.byId.get(id) : undefined;
      if (!n) continue;
      ctx.beginPath();
      ctx.arc(this.sx(n), this.sy(n), this.r(n.id) + (app.selection.has(n.id) ? 6 : 3), 0, Math.PI * 2);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = theme.fg;
      if (id !== app.hover) ctx.setLineDash([2, 2]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // Column headers, fixed at the top; a click takes the whole column.
    ctx.fillStyle = theme.bg;
    ctx.fillRect(0, 0, this.width, HEADER_H);
    ctx.strokeStyle = theme.border;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, HEADER_H - 0.5);
    ctx.lineTo(this.width, HEADER_H - 0.5);
    ctx.stroke();
    ctx.font = `600 11px ${theme.font}`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = theme.muted;
    const stride = Math.max(1, Math.ceil(70 / (this.colW * k)));
    const drawn: string[] = [];
    layout.columns.forEach((c, i) => {
      if (i % stride) return;
      const x = (PAD + i * this.colW) * k + this.zoom.x;
      if (x < -60 || x > this.width + 60) return;
      ctx.fillText(shortOp(c.label), x, HEADER_H / 2);
      drawn.push(c.label);
    });
    this.headers = drawn;
    this.canvas.dataset.headers = drawn.join('|');

    if (this.drag?.mode === 'rect' && this.drag.moved) {
      const d = this.drag;
      ctx.setLineDash([4, 3]);
      ctx.strokeStyle = theme.focus;
      ctx.strokeRect(Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.abs(d.x1 - d.x0), Math.abs(d.y1 - d.y0));
      ctx.setLineDash([]);
    }
  }

  // -- input ---------------------------------------------------------------------------------
  private local(e: MouseEvent): [number, number] {
    const r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  private bindPointer(): void {
    const c = this.canvas;
    c.addEventListener('wheel', (e) => {
      e.preventDefault();
      const [x, y] = this.local(e);
      if (e.ctrlKey || !e.shiftKey) this.zoomAt(Math.exp(-e.deltaY * 0.0015), x, y);
      else this.panBy(-e.deltaY, 0);
    }, { passive: false });
    c.addEventListener('mousedown', (e) => {
      if (e.button !== 0) return;
      c.focus();
      const [x, y] = this.local(e);
      if (y < HEADER_H) {
        const col = this.columnAt(x);
        if (col !== null) this.app.select(this.app.layout.nodes.filter((n) => n.col === col).map((n) => n.id), e.shiftKey || e.metaKey || e.ctrlKey ? 'add' : 'replace');
        return;
      }
      const id = this.hit(x, y);
      if (id) {
        this.cursor = id;
        this.app.select([id], e.shiftKey || e.metaKey || e.ctrlKey ? 'toggle' : 'replace');
        return;
      }
      this.drag = { mode: e.shiftKey ? 'rect' : 'pan', x0: x, y0: y, x1: x, y1: y, zx: this.zoom.x, zy: this.zoom.y, moved: false };
    });
    window.addEventListener('mousemove', (e) => {
      const [x, y] = this.local(e);
      const d = this.drag;
      if (d) {
        d.x1 = x;
        d.y1 = y;
        d.moved ||= Math.abs(x - d.x0) + Math.abs(y - d.y0) > 3;
        if (d.mode === 'pan') {
          this.zoom = { ...this.zoom, x: d.zx + x - d.x0, y: d.zy + y - d.y0 };
        }
        this.request();
        return;
      }
      if (e.target !== c) return;
      const id = y >= HEADER_H ? this.hit(x, y) : null;
      this.app.setHover(id);
      if (id) this.tooltip.show(id, e.clientX, e.clientY);
      else this.tooltip.hide();
      c.style.cursor = id || y < HEADER_H ? 'pointer' : 'grab';
    });
    window.addEventListener('mouseup', (e) => {
      const d = this.drag;
      this.drag = null;
      if (!d) return;
      if (d.mode === 'pan') {
        if (d.moved) this.commitZoom();
        else if (!e.shiftKey) this.app.select([], 'replace');
      } else if (d.moved) {
        const [x0, x1] = [Math.min(d.x0, d.x1), Math.max(d.x0, d.x1)];
        const [y0, y1] = [Math.min(d.y0, d.y1), Math.max(d.y0, d.y1)];
        const ids = this.app.layout.nodes.filter((n) => {
          const x = this.sx(n);
          const y = this.sy(n);
          return x >= x0 && x <= x1 && y >= y0 && y <= y1;
        });
        this.app.select(ids.map((n) => n.id), 'add');
      }
      this.request();
    });
    c.addEventListener('mouseleave', () => {
      this.app.setHover(null);
      this.tooltip.hide();
    });
    c.addEventListener('dblclick', (e) => {
      const [x, y] = this.local(e);
      const id = this.hit(x, y);
      if (id) this.app.toggleCollapse(id);
      else this.fit();
    });
  }

  private bindKeys(): void {
    this.canvas.addEventListener('keydown', (e) => {
      const l = this.app.layout;
      const cur = this.cursor !== null ? l.byId.get(this.cursor) : undefined;
      const move = (id: string | undefined) => {
        if (id === undefined) return;
        this.cursor = id;
        this.app.setHover(id);
        this.reveal(id);
        const n = l.byId.get(id)!;
        const r = this.canvas.getBoundingClientRect();
        this.tooltip.show(id, r.left + this.sx(n), r.top + this.sy(n));
      };
      const nearest = (pred: (n: LayoutNode) => boolean, from: LayoutNode) => {
        let best: LayoutNode | undefined;
        for (const n of l.nodes) {
          if (!pred(n)) continue;
          const d = Math.abs(n.row - from.row) * 10 + Math.abs(n.col - from.col);
          const bd = best ? Math.abs(best.row - from.row) * 10 + Math.abs(best.col - from.col) : Infinity;
          if (d < bd) best = n;
        }
        return best?.id;
      };
      let handled = true;
      switch (e.key) {
        case 'ArrowLeft':
          if (cur) move(this.app.lin.parentOf(cur.id));
          else move(l.nodes[0]?.id);
          break;
        case 'ArrowRight':
          if (cur) move((this.app.lin.children.get(cur.id) ?? []).find((x) => l.byId.has(x)));
          else move(l.nodes[0]?.id);
          break;
        case 'ArrowDown':
          if (cur) move(nearest((n) => n.row > cur.row, { ...cur, row: cur.row + 1 }));
          else move(l.nodes[0]?.id);
          break;
        case 'ArrowUp':
          if (cur) move(nearest((n) => n.row < cur.row, { ...cur, row: cur.row - 1 }));
          break;
        case ' ':
          if (cur) this.app.select([cur.id], e.shiftKey || e.ctrlKey ? 'toggle' : 'replace');
          break;
        case 'a':
        case 'A':
          // The keyboard's column-header click: the cursor's whole column.
          if (cur) this.app.select(l.nodes.filter((n) => n.col === cur.col).map((n) => n.id), e.shiftKey ? 'add' : 'replace');
          break;
        case 'c':
        case 'C':
          if (cur) this.app.toggleCollapse(cur.id);
          break;
        case '+':
        case '=':
          this.zoomAt(1.25, this.width / 2, this.height / 2);
          break;
        case '-':
          this.zoomAt(0.8, this.width / 2, this.height / 2);
          break;
        case '0':
          this.fit();
          break;
        case '9':
          this.fitAll();
          break;
        case 'Escape':
          this.tooltip.hide();
          this.app.select([], 'replace');
          break;
        default:
          handled = false;
      }
      if (handled) {
        e.preventDefault();
        this.request();
      }
    });
    this.canvas.addEventListener('blur', () => {
      this.tooltip.hide();
    });
  }

  /** The canvas as it is now (PNG export). */
  toDataUrl(): string {
    return this.canvas.toDataURL('image/png');
  }
}

/** "prune.magnitude" stays, long user op names are cut for a column. */
/** An edge's colour: the child's `def` metric against its parent's (better, worse, same or unknown). */
export function edgeColour(lin: Lineage, def: MetricDef | undefined, parent: string, child: string, theme: Theme): string {
  if (!def) return theme.same;
  const a = lin.metric(child, def.key);
  const b = lin.metric(parent, def.key);
  if (a === undefined || b === undefined) return theme.same;
  const better = change(a, b, def.higherIsBetter).better;
  return better === null ? theme.same : better ? theme.better : theme.worse;
}

export function shortOp(op: string): string {
  return op.length > 22 ? `${op.slice(0, 21)}…` : op;
}

/** Text over a thin outline in the background colour, so edges passing under a name or an op
 * label do not make it unreadable. */
function haloText(ctx: CanvasRenderingContext2D, text: string, x: number, y: number, bg: string): void {
  const width = ctx.lineWidth;
  ctx.lineWidth = 3;
  ctx.lineJoin = 'round';
  ctx.strokeStyle = bg;
  ctx.strokeText(text, x, y);
  ctx.lineWidth = width;
  ctx.fillText(text, x, y);
}
