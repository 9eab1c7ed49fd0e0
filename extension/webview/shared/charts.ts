/**
 * Small SVG charts shared by the Behaviors and Layers panels: histograms (with an optional
 * brush), line charts, and bars for table cells. Colours come from --vscode-* variables through
 * CSS classes (base.css / the panels' own styles), so charts follow the theme.
 */
const SVG = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, ...children: (Node | string)[]): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return e;
}

/** Counts of finite `values` over `bins` equal bins of [lo, hi] (values outside are clamped in). */
export function binValues(values: ArrayLike<number>, lo: number, hi: number, bins: number, rows?: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(bins);
  const width = hi > lo ? (hi - lo) / bins : 1;
  const n = rows ? rows.length : values.length;
  for (let k = 0; k < n; k++) {
    const v = values[rows ? rows[k]! : k]!;
    if (!Number.isFinite(v)) continue;
    let b = Math.floor((v - lo) / width);
    if (b < 0) b = 0;
    else if (b >= bins) b = bins - 1;
    out[b]!++;
  }
  return out;
}

/** Finite [min, max] of `values` (null when none are finite). */
export function finiteRange(values: ArrayLike<number>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

export interface HistSeries {
  label: string;
  counts: ArrayLike<number>;
  cls: string;
}

/**
 * A histogram of one or more series over the same bins. `edges` label the x axis (first and
 * last). With `onBrush`, dragging selects a bin range (called with [loBin, hiBin) or null).
 */
export function histogram(opts: {
  series: HistSeries[];
  edges: [number, number];
  width?: number;
  height?: number;
  log?: boolean;
  title: string;
  format?: (v: number) => string;
  brush?: [number, number] | null;
  onBrush?: (bins: [number, number] | null) => void;
}): SVGSVGElement {
  const w = opts.width ?? 320;
  const h = opts.height ?? 90;
  const pad = 14;
  const bins = opts.series[0]?.counts.length ?? 0;
  const tx = (v: number) => (opts.log ? Math.log10(1 + v) : v);
  let max = 0;
  for (const s of opts.series) for (let i = 0; i < s.counts.length; i++) max = Math.max(max, tx(s.counts[i]!));
  const bw = bins ? w / bins : w;
  const root = svg('svg', { width: w, height: h + pad, class: 'chart hist', role: 'img', 'aria-label': opts.title });
  root.append(svg('title', {}, opts.title));
  const brushRect = svg('rect', { class: 'brush', y: 0, height: h, x: 0, width: 0 });
  root.append(brushRect);
  const showBrush = (b: [number, number] | null | undefined) => {
    if (!b) brushRect.setAttribute('width', '0');
    else {
      brushRect.setAttribute('x', String(b[0] * bw));
      brushRect.setAttribute('width', String((b[1] - b[0]) * bw));
    }
  };
  showBrush(opts.brush);
  opts.series.forEach((s, si) => {
    const g = svg('g', { class: s.cls });
    const sub = bw / opts.series.length;
    for (let i = 0; i < s.counts.length; i++) {
      const c = s.counts[i]!;
      if (!c) continue;
      const bh = max ? (tx(c) / max) * h : 0;
      const r = svg('rect', { x: i * bw + si * sub, y: h - bh, width: Math.max(0.5, sub - 0.5), height: bh });
      r.append(svg('title', {}, `${s.label}: ${c}`));
      g.append(r);
    }
    root.append(g);
  });
  const fmt = opts.format ?? ((v: number) => v.toPrecision(3));
  root.append(svg('text', { x: 0, y: h + pad - 2, class: 'axis' }, fmt(opts.edges[0])));
  root.append(svg('text', { x: w, y: h + pad - 2, class: 'axis', 'text-anchor': 'end' }, fmt(opts.edges[1])));
  if (opts.onBrush) {
    const onBrush = opts.onBrush;
    let start: number | null = null;
    const bin = (e: PointerEvent) => {
      const box = root.getBoundingClientRect();
      return Math.max(0, Math.min(bins, Math.round(((e.clientX - box.left) / Math.max(1, box.width)) * bins)));
    };
    root.addEventListener('pointerdown', (e) => {
      start = bin(e);
      root.setPointerCapture(e.pointerId);
    });
    root.addEventListener('pointermove', (e) => {
      if (start === null) return;
      const b = bin(e);
      showBrush([Math.min(start, b), Math.max(start, b)]);
    });
    root.addEventListener('pointerup', (e) => {
      if (start === null) return;
      const b = bin(e);
      const range: [number, number] | null = b === start ? null : [Math.min(start, b), Math.max(start, b)];
      start = null;
      showBrush(range);
      onBrush(range);
    });
  }
  return root;
}

export interface LineSeries {
  label: string;
  values: (number | null)[];
  cls: string;
}

/** A line chart over categorical x positions (one line per series, gaps at nulls). */
export function lineChart(opts: {
  series: LineSeries[];
  labels: string[];
  marks?: number[];
  width?: number;
  height?: number;
  title: string;
  format?: (v: number) => string;
  onPick?: (index: number) => void;
}): SVGSVGElement {
  const w = opts.width ?? 640;
  const h = opts.height ?? 160;
  const left = 48;
  const n = opts.labels.length;
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of opts.series) for (const v of s.values) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!(lo <= hi)) { lo = 0; hi = 1; }
  if (hi === lo) hi = lo + 1;
  const x = (i: number) => left + (n > 1 ? (i / (n - 1)) * (w - left - 8) : (w - left) / 2);
  const y = (v: number) => 6 + (1 - (v - lo) / (hi - lo)) * (h - 12);
  const root = svg('svg', { width: w, height: h + 4, class: 'chart lines', role: 'img', 'aria-label': opts.title });
  root.append(svg('title', {}, opts.title));
  for (const m of opts.marks ?? []) root.append(svg('line', { class: 'mark', x1: x(m), x2: x(m), y1: 0, y2: h }));
  const fmt = opts.format ?? ((v: number) => v.toPrecision(3));
  root.append(svg('text', { x: left - 4, y: 12, class: 'axis', 'text-anchor': 'end' }, fmt(hi)));
  root.append(svg('text', { x: left - 4, y: h - 2, class: 'axis', 'text-anchor': 'end' }, fmt(lo)));
  for (const s of opts.series) {
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    const g = svg('g', { class: s.cls });
    g.append(svg('path', { d, fill: 'none' }));
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      const c = svg('circle', { cx: x(i), cy: y(v), r: 2.5 });
      c.append(svg('title', {}, `${s.label} · ${opts.labels[i]}: ${fmt(v)}`));
      if (opts.onPick) c.addEventListener('click', () => opts.onPick!(i));
      g.append(c);
    });
    root.append(g);
  }
  return root;
}

/** A horizontal bar for a table cell: `value` in [-max, max] (centred) or [0, max]. */
export function cellBar(value: number | null, max: number, signed: boolean, ci?: [number, number] | null): SVGSVGElement {
  const w = 60;
  const h = 10;
  const root = svg('svg', { width: w, height: h, class: 'cellbar', 'aria-hidden': 'true' });
  if (value === null || !Number.isFinite(value) || !(max > 0)) return root;
  const scale = (v: number) => (signed ? w / 2 + (Math.max(-max, Math.min(max, v)) / max) * (w / 2) : (Math.max(0, Math.min(max, v)) / max) * w);
  const x0 = signed ? w / 2 : 0;
  const x1 = scale(value);
  root.append(svg('rect', { class: value < 0 ? 'neg' : 'pos', x: Math.min(x0, x1), y: 2, width: Math.max(1, Math.abs(x1 - x0)), height: h - 4 }));
  if (ci) root.append(svg('line', { class: 'ci', x1: scale(ci[0]), x2: scale(ci[1]), y1: h / 2, y2: h / 2 }));
  if (signed) root.append(svg('line', { class: 'zero', x1: w / 2, x2: w / 2, y1: 0, y2: h }));
  return root;
}

/** Series colour classes (charts.css gives each a --vscode-charts-* colour). */
export const SERIES = ['s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7'];
