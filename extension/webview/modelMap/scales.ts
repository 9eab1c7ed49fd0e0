/**
 * Scales and encodings: linear maps, "nice" ticks, the sequential colour ramp (oriented so the
 * better end of a metric is always the bright end), node radius, and theme colours read from
 * VS Code's --vscode-* variables. Pure except `themeColors`, which reads the computed style.
 */
import type { Lineage, MetricDef } from './lineage';

export interface Linear {
  (v: number): number;
  domain: [number, number];
  range: [number, number];
  invert(px: number): number;
}

export function linear(domain: [number, number], range: [number, number]): Linear {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  const f = ((v: number) => r0 + ((v - d0) / span) * (r1 - r0)) as Linear;
  f.domain = domain;
  f.range = range;
  f.invert = (px: number) => d0 + ((px - r0) / (r1 - r0 || 1)) * span;
  return f;
}

/** About `count` round tick values covering [a, b]. */
export function ticks(a: number, b: number, count = 5): number[] {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return [];
  if (a === b) return [a];
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  const raw = (hi - lo) / Math.max(1, count);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? 10 * pow;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Viridis, sampled: perceptually even and readable for colour-blind users. */
const RAMP = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#b5de2b', '#fde725'];

export function ramp(t: number): string {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  return mix(RAMP[i]!, RAMP[i + 1]!, x - i);
}

function mix(a: string, b: string, t: number): string {
  const pa = parseInt(a.slice(1), 16);
  const pb = parseInt(b.slice(1), 16);
  const ch = (p: number, s: number) => (p >> s) & 255;
  const c = (s: number) => Math.round(ch(pa, s) + (ch(pb, s) - ch(pa, s)) * t);
  return `rgb(${c(16)},${c(8)},${c(0)})`;
}

const LEVELS = 48;
const levelCache: string[] = [];
function rampLevel(i: number): string {
  return (levelCache[i] ??= ramp(i / (LEVELS - 1)));
}

export interface Extent {
  min: number;
  max: number;
}

export function extent(lin: Lineage, metric: string): Extent | undefined {
  let min = Infinity;
  let max = -Infinity;
  for (const v of lin.column(metric)) {
    if (!Number.isFinite(v)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return min <= max ? { min, max } : undefined;
}

/** Colour encoding: value -> ramp colour, the better end bright. */
export function colorScale(def: MetricDef | undefined, ext: Extent | undefined): (v: number | undefined) => string | null {
  if (!def || !ext) return () => null;
  return (v) => {
    if (v === undefined) return null;
    const t = ext.max === ext.min ? 1 : (v - ext.min) / (ext.max - ext.min);
    // 48 levels: indistinguishable from continuous, and the map can fill each level in one call.
    return rampLevel(Math.round((def.higherIsBetter ? t : 1 - t) * (LEVELS - 1)));
  };
}

export const R_MIN = 3;
export const R_MAX = 11;
export const R_DEFAULT = 6;

/** Size encoding: area grows with the value (sqrt scale), so a doubling reads as a doubling. */
export function sizeScale(ext: Extent | undefined): (v: number | undefined) => number {
  if (!ext) return () => R_DEFAULT;
  const lo = Math.sqrt(Math.max(0, ext.min));
  const hi = Math.sqrt(Math.max(0, ext.max));
  return (v) => {
    if (v === undefined || !Number.isFinite(v)) return R_MIN;
    if (hi === lo) return R_DEFAULT;
    const t = (Math.sqrt(Math.max(0, v)) - lo) / (hi - lo);
    return R_MIN + Math.min(1, Math.max(0, t)) * (R_MAX - R_MIN);
  };
}

export interface Theme {
  fg: string;
  muted: string;
  bg: string;
  border: string;
  focus: string;
  better: string;
  worse: string;
  same: string;
  running: string;
  failed: string;
  select: string;
  font: string;
  highContrast: boolean;
}

export function themeColors(): Theme {
  const s = getComputedStyle(document.body);
  const v = (name: string, fallback: string) => s.getPropertyValue(name).trim() || fallback;
  const hc = document.body.classList.contains('vscode-high-contrast') || document.body.classList.contains('vscode-high-contrast-light');
  return {
    fg: v('--vscode-foreground', '#cccccc'),
    muted: v('--vscode-descriptionForeground', '#999999'),
    bg: v('--vscode-editor-background', '#1e1e1e'),
    border: v('--vscode-contrastBorder', '') || v('--vscode-editorWidget-border', '#555555'),
    focus: v('--vscode-focusBorder', '#007fd4'),
    better: v('--vscode-charts-green', '#89d185'),
    worse: v('--vscode-charts-red', '#f14c4c'),
    same: v('--vscode-disabledForeground', '#888888'),
    running: v('--vscode-charts-blue', '#3794ff'),
    failed: v('--vscode-errorForeground', '#f48771'),
    select: v('--vscode-list-activeSelectionBackground', '') || v('--vscode-focusBorder', '#007fd4'),
    font: v('--vscode-font-family', 'sans-serif'),
    highContrast: hc,
  };
}

/** Short number for axes and legends. */
export function short(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${(v / 1e3).toPrecision(3)}k`;
  if (a === 0 || a >= 0.01) return String(Number(v.toPrecision(3)));
  return v.toExponential(1);
}
