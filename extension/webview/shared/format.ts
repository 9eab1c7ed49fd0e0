/** Number formatting and metric labels shared by the panels (the Lineage tree's own rules, for the same look). */
import { formatBytes } from '../../shared/metrics';

export { formatMetric, formatBytes, metricIdentity, metricLabel } from '../../shared/metrics';

/** `f(v)`, or an em dash where there is no value. */
export function fmtOr(v: number | null | undefined, f: (x: number) => string): string {
  return v === null || v === undefined ? '\u2014' : f(v);
}

const MINUS = '\u2212';

function sign(d: number, text: string): string {
  return `${d > 0 ? '+' : d < 0 ? MINUS : '\u00b1'}${text}`;
}

/**
 * A change of a metric, with its unit, as the tables show it beside the value: percentage points
 * for a percentage (97.8% against 98.2% is "−0.4 pt", not "−0.4%", which would read as a relative
 * change), bytes in KiB/MiB ("−302 KiB"), times in ms, a unitless number as it is.
 */
export function formatDelta(d: number, unit: string): string {
  if (!Number.isFinite(d)) return String(d);
  if (d === 0) return '=';
  const a = Math.abs(d);
  switch (unit) {
    case '%':
      return sign(d, `${a.toFixed(a >= 0.1 ? 1 : 2)} pt`);
    case 'B':
      return sign(d, formatBytes(a));
    case 's':
      return sign(d, a < 1 ? `${(a * 1000).toPrecision(3)} ms` : `${a.toPrecision(3)} s`);
    case 'ms':
      return sign(d, `${a.toPrecision(3)} ms`);
    case '':
      return sign(d, a >= 1e4 ? `${(a / 1e3).toPrecision(3)}k` : String(Number(a.toPrecision(3))));
    case 'x':
    case '×':
      return sign(d, `${Number(a.toPrecision(3))}×`);
    default:
      return sign(d, `${Number(a.toPrecision(3))} ${unit}`);
  }
}

/** A change of a share given as a fraction (0..1; Behaviors' accuracy deltas) in points:
 * −0.125 is "−12.5 pt". */
export function formatPointDelta(fraction: number, digits = 1): string {
  if (!Number.isFinite(fraction)) return String(fraction);
  const v = fraction * 100;
  return Number(Math.abs(v).toFixed(digits)) === 0 ? `\u00b10.${'0'.repeat(digits)} pt` : sign(v, `${Math.abs(v).toFixed(digits)} pt`);
}

/**
 * The value axis of a bar chart. From zero when that leaves the differences visible; when every
 * value is far from zero and close to the others (98.0 against 99.1), the axis starts near the
 * lowest value instead, and `note` says so: bars from zero would hide the difference.
 */
export function barAxis(values: readonly number[]): { lo: number; hi: number; zero: boolean; note: string | null } {
  const vs = values.filter(Number.isFinite);
  if (!vs.length) return { lo: 0, hi: 1, zero: true, note: null };
  const min = Math.min(...vs);
  const max = Math.max(...vs);
  const lo0 = Math.min(0, min);
  const hi0 = Math.max(0, max);
  // all of one sign, and the spread under a fifth of the scale: bars from zero differ by < 20%
  const sameSign = min > 0 || max < 0;
  const spread = max - min;
  const scale = Math.max(Math.abs(min), Math.abs(max));
  if (!sameSign || spread === 0 || spread >= 0.2 * scale) return { lo: lo0, hi: hi0 === lo0 ? lo0 + 1 : hi0, zero: true, note: null };
  const pad = spread * 0.25;
  const nice = (v: number, down: boolean) => {
    const step = 10 ** Math.floor(Math.log10(spread) + 1e-9); // 5.1 − 5.0 is 0.0999…: still a step of 0.1
    return Number(((down ? Math.floor(v / step) : Math.ceil(v / step)) * step).toPrecision(12));
  };
  const lo = max < 0 ? nice(min - pad, true) : Math.max(0, nice(min - pad, true));
  const hi = max < 0 ? Math.min(0, nice(max + pad, false)) : nice(max + pad, false);
  return { lo, hi, zero: false, note: `axis starts at ${Number(lo.toPrecision(4))}, not 0` };
}
