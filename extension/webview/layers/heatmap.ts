/**
 * A canvas heatmap over server tiles: wheel or +/- to zoom (finer tiles load), drag or arrow
 * keys to pan. Colours: a diverging scale around zero, from the theme's chart colours.
 */
import { el } from '../shared/dom';
import { levelFor, robustMax, valueAt, type PyramidInfo, type TileData, type TilePyramidClient, type Viewport } from './tiles';
import { errorText } from '../../shared/errors';

type RGB = [number, number, number];

function cssColor(name: string, fallback: RGB): RGB {
  const v = getComputedStyle(document.body).getPropertyValue(name).trim();
  const m = /^#([0-9a-f]{6})/i.exec(v);
  if (!m) return fallback;
  const n = parseInt(m[1]!, 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

export interface HeatmapHandle {
  element: HTMLElement;
  dispose(): void;
}

export interface HeatmapOptions {
  title: string;
  onError: (msg: string) => void;
  useMaxAbs?: boolean;
  /** Captions of the two axes (what a row and a column are). */
  axes?: { rows: string; cols: string };
  /** Stretch the whole matrix over the canvas (rows and columns scaled apart) instead of keeping
   * elements square: for activations, a few instances by thousands of columns. */
  fill?: boolean;
  /** What element (row, column) is, for the hover readout (default "row r · column c"). */
  describe?: (r: number, c: number) => string;
}

export function heatmap(client: TilePyramidClient, opts: HeatmapOptions): HeatmapHandle {
  const info: PyramidInfo = client.info;
  const W = 420;
  const H = opts.fill ? Math.max(120, Math.min(320, info.rows * 8)) : Math.max(120, Math.min(420, Math.round((W * info.rows) / Math.max(1, info.cols))));
  const canvas = el('canvas', { width: String(W), height: String(H), tabindex: '0', role: 'img', 'aria-label': `${opts.title}: heatmap; + and − zoom, arrows pan, 0 resets` });
  const status = el('span', { class: 'muted heat-status' });
  const readout = el('div', { class: 'heat-readout', 'aria-live': 'polite' }, '\u00a0');
  const axes = opts.axes ? [el('div', { class: 'muted heat-axes' }, `rows: ${opts.axes.rows}`), el('div', { class: 'muted heat-axes' }, `columns: ${opts.axes.cols}`)] : [];
  const root = el('div', { class: 'heatmap' }, canvas, el('div', {}, status), ...axes, readout);
  let shown: TileData[] = [];
  // Colours saturate at the 99th percentile of |x| of the first full view, kept while zooming so
  // colours stay comparable (the tensor's max |x| would wash most cells out to the background).
  let scale: number | null = null;
  const ctx = canvas.getContext('2d');
  const neg = cssColor('--vscode-charts-blue', [55, 148, 255]);
  const pos = cssColor('--vscode-charts-red', [241, 76, 76]);
  const bg = cssColor('--vscode-editor-background', [30, 30, 30]);
  // Keep the aspect of the matrix: one element is square on screen.
  const full = (): Viewport => {
    if (opts.fill) return { r0: 0, c0: 0, r1: info.rows, c1: info.cols };
    const scale = Math.max(info.rows / H, info.cols / W);
    return { r0: 0, c0: 0, r1: H * scale, c1: W * scale };
  };
  let view = full();
  let disposed = false;
  let seq = 0;

  const colour = (v: number, max: number): RGB => {
    if (!Number.isFinite(v)) return [255, 0, 255];
    const t = Math.min(1, Math.abs(v) / (max || 1));
    const c = v < 0 ? neg : pos;
    return [bg[0] + (c[0] - bg[0]) * t, bg[1] + (c[1] - bg[1]) * t, bg[2] + (c[2] - bg[2]) * t];
  };

  const draw = (tiles: TileData[]) => {
    if (!ctx) return;
    ctx.fillStyle = `rgb(${bg.join(',')})`;
    ctx.fillRect(0, 0, W, H);
    const r = client.range;
    if (scale === null && tiles.length) scale = robustMax(tiles, 0.99) || Math.max(Math.abs(r?.min ?? 0), Math.abs(r?.max ?? 0)) || 1;
    const max = scale ?? 1;
    const sy = H / (view.r1 - view.r0);
    const sx = W / (view.c1 - view.c0);
    for (const t of tiles) {
      const k = 1 << t.level;
      const span = info.tile * k;
      const img = new ImageData(t.cols, t.rows);
      const vals = opts.useMaxAbs ? t.maxabs : t.mean;
      for (let i = 0; i < t.rows * t.cols; i++) {
        const [cr, cg, cb] = colour(vals[i]!, max);
        img.data[i * 4] = cr;
        img.data[i * 4 + 1] = cg;
        img.data[i * 4 + 2] = cb;
        img.data[i * 4 + 3] = 255;
      }
      const off = document.createElement('canvas');
      off.width = t.cols;
      off.height = t.rows;
      off.getContext('2d')!.putImageData(img, 0, 0);
      // shrinking: smooth (cells average into the pixel); enlarging: crisp cells
      ctx.imageSmoothingEnabled = k * sx < 1 || k * sy < 1;
      const y = (t.ty * span - view.r0) * sy;
      const x = (t.tx * span - view.c0) * sx;
      ctx.drawImage(off, x, y, t.cols * k * sx, t.rows * k * sy);
    }
  };

  const load = () => {
    const my = ++seq;
    const level = levelFor(info, view, { w: W, h: H }, opts.fill ? 'min' : 'max');
    status.textContent = `level ${level} of ${info.levels} · loading…`;
    client.load(level, view).then(
      (tiles) => {
        if (disposed || my !== seq) return;
        draw(tiles);
        shown = tiles;
        canvas.dataset.tiles = String(tiles.length);
        canvas.dataset.level = String(level);
        const r = client.range;
        status.textContent = `${info.rows}×${info.cols} · level ${level} (${1 << level}×${1 << level} per cell) · rows ${Math.round(view.r0)}–${Math.round(Math.min(info.rows, view.r1))}` +
          (r && r.min !== null ? ` · range ${r.min.toPrecision(3)} … ${r.max!.toPrecision(3)}` : '') +
          (scale !== null ? ` · colour saturates at \u00b1${scale.toPrecision(3)} (99th percentile of |x|)` : '');
      },
      (e: unknown) => {
        if (!disposed) opts.onError(errorText(e));
      },
    );
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(load, 120);
  };

  const zoom = (f: number, cy = 0.5, cx = 0.5) => {
    const h = (view.r1 - view.r0) * f;
    const w = (view.c1 - view.c0) * f;
    if (h < 4 && f < 1) return;
    const py = view.r0 + (view.r1 - view.r0) * cy;
    const px = view.c0 + (view.c1 - view.c0) * cx;
    view = { r0: py - h * cy, r1: py + h * (1 - cy), c0: px - w * cx, c1: px + w * (1 - cx) };
    later();
  };
  const pan = (dy: number, dx: number) => {
    const h = view.r1 - view.r0;
    const w = view.c1 - view.c0;
    view = { r0: view.r0 + dy * h, r1: view.r1 + dy * h, c0: view.c0 + dx * w, c1: view.c1 + dx * w };
    later();
  };
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const b = canvas.getBoundingClientRect();
    zoom(e.deltaY < 0 ? 0.7 : 1 / 0.7, (e.clientY - b.top) / b.height, (e.clientX - b.left) / b.width);
  });
  let drag: { x: number; y: number; v: Viewport } | null = null;
  canvas.addEventListener('pointerdown', (e) => {
    drag = { x: e.clientX, y: e.clientY, v: view };
    canvas.setPointerCapture(e.pointerId);
  });
  const describe = opts.describe ?? ((r: number, c: number) => `row ${r} \u00b7 column ${c}`);
  canvas.addEventListener('pointermove', (e) => {
    if (!drag) {
      const b = canvas.getBoundingClientRect();
      const r = Math.floor(view.r0 + ((e.clientY - b.top) / b.height) * (view.r1 - view.r0));
      const c = Math.floor(view.c0 + ((e.clientX - b.left) / b.width) * (view.c1 - view.c0));
      const v = valueAt(info, shown, r, c);
      readout.textContent = v ? `${describe(r, c)}: ${v.mean.toPrecision(4)}${v.level ? ` (mean of its ${1 << v.level}\u00d7${1 << v.level} cell; max |x| ${v.maxabs.toPrecision(3)})` : ''}` : '\u00a0';
      return;
    }
    const b = canvas.getBoundingClientRect();
    const dy = ((e.clientY - drag.y) / b.height) * (drag.v.r1 - drag.v.r0);
    const dx = ((e.clientX - drag.x) / b.width) * (drag.v.c1 - drag.v.c0);
    view = { r0: drag.v.r0 - dy, r1: drag.v.r1 - dy, c0: drag.v.c0 - dx, c1: drag.v.c1 - dx };
    later();
  });
  canvas.addEventListener('pointerup', () => (drag = null));
  canvas.addEventListener('keydown', (e) => {
    const k: Record<string, () => void> = {
      '+': () => zoom(0.5), '=': () => zoom(0.5), '-': () => zoom(2), '0': () => { view = full(); later(); },
      ArrowUp: () => pan(-0.25, 0), ArrowDown: () => pan(0.25, 0), ArrowLeft: () => pan(0, -0.25), ArrowRight: () => pan(0, 0.25),
    };
    const f = k[e.key];
    if (f) {
      e.preventDefault();
      f();
    }
  });
  load();
  return {
    element: root,
    dispose: () => {
      disposed = true;
      clearTimeout(timer);
    },
  };
}
