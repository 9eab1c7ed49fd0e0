/**
 * Error bars of the scatterplot: a metric measured in rounds (latency) carries a spread, how far
 * above its value the rounds' medians' upper quartile lies; its bar runs from the value to
 * value + spread along that metric's axis (the figure is the lowest round, interference only adds
 * time, so the bar is one-sided). A noisy measurement's bar is flagged (drawn dashed). Pure.
 */
import type { MetricInfo } from '../../shared/protocol';
import type { Lineage } from './lineage';
import type { Linear } from './scales';

export interface ErrorBar {
  id: string;
  axis: 'x' | 'y';
  /** pixels: the bar from (x0, y0) to (x1, y1) */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  noisy: boolean;
}

function spreadOf(lin: Lineage, id: string, key: string): MetricInfo | undefined {
  const x = lin.byId.get(id)?.metrics.find((m) => m.key === key);
  return x && x.spread !== undefined && Number.isFinite(x.spread) && x.spread > 0 ? x : undefined;
}

/** The bars of every plotted model that has a spread on either axis. */
export function errorBars(lin: Lineage, xKey: string, yKey: string, xs: Linear, ys: Linear): ErrorBar[] {
  const out: ErrorBar[] = [];
  for (const id of lin.order) {
    const xv = lin.metric(id, xKey);
    const yv = lin.metric(id, yKey);
    if (xv === undefined || yv === undefined) continue;
    const px = xs(xv);
    const py = ys(yv);
    const sx = spreadOf(lin, id, xKey);
    if (sx) out.push({ id, axis: 'x', x0: px, y0: py, x1: xs(xv + sx.spread!), y1: py, noisy: sx.noisy === true });
    const sy = spreadOf(lin, id, yKey);
    if (sy) out.push({ id, axis: 'y', x0: px, y0: py, x1: px, y1: ys(yv + sy.spread!), noisy: sy.noisy === true });
  }
  return out;
}

/** A table cell's (or hover card's) text and tooltip for a metric: `~` before a noisy value, and
 * why; the spread otherwise. */
export function measuredCell(x: MetricInfo | undefined, format: (m: MetricInfo) => string): { text: string; title: string } {
  if (!x) return { text: '', title: '' };
  const text = `${x.noisy ? '~' : ''}${format(x)}`;
  const spread = x.spread !== undefined ? `spread ${format({ ...x, value: x.spread })}` : '';
  if (x.noisy) {
    const why = `${x.name} is noisy (${x.note ?? 'its rounds disagreed'}); Bonsai: Measure Latency measures it again`;
    return { text, title: spread ? `${why}. ${spread}` : why };
  }
  return { text, title: spread };
}
