import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../../../shared/protocol';
import { formatMetric } from '../../../webview/shared/format';
import { errorBars, measuredCell } from '../../../webview/modelMap/errorBars';
import { Lineage } from '../../../webview/modelMap/lineage';
import { linear } from '../../../webview/modelMap/scales';
import { sample } from './fixture';

/** The sample lineage with latency spreads: base measured well, q8 noisy, the rest without one. */
function withSpreads(): ModelInfo[] {
  return sample().map((m) => ({
    ...m,
    metrics: m.metrics.map((x) => {
      if (x.key !== 'latency') return x;
      if (m.id === 'base') return { ...x, spread: 0.5, noisy: false };
      if (m.id === 'q8') return { ...x, spread: 4, noisy: true, note: 'noisy: the rounds disagree' };
      return x;
    }),
  }));
}

const round = (v: number) => Math.round(v * 1e6) / 1e6;

describe('error bars', () => {
  const lin = new Lineage(withSpreads());
  // identity scales: pixels are data units, so the bars read as the data
  const xs = linear([0, 100], [0, 100]);
  const ys = linear([0, 2000], [0, 2000]);

  it('run from the value to value + spread along the latency axis, noisy ones flagged', () => {
    const bars = errorBars(lin, 'latency', 'size', xs, ys).map((b) => ({ ...b, x0: round(b.x0), x1: round(b.x1) }));
    expect(bars).toEqual([
      { id: 'base', axis: 'x', x0: 10, y0: 1000, x1: 10.5, y1: 1000, noisy: false },
      { id: 'q8', axis: 'x', x0: 7, y0: 250, x1: 11, y1: 250, noisy: true },
    ]);
    // latency on y: vertical bars
    expect(errorBars(lin, 'size', 'latency', ys, xs).map((b) => [b.id, b.axis, b.x0, b.x1, round(b.y0), round(b.y1)])).toEqual([
      ['base', 'y', 1000, 1000, 10, 10.5],
      ['q8', 'y', 250, 250, 7, 11],
    ]);
  });

  it('none for metrics without a spread', () => {
    expect(errorBars(lin, 'accuracy', 'size', xs, ys)).toEqual([]);
  });

  it('a cell marks a noisy value with ~ and says why; a good one shows its spread', () => {
    const q8 = lin.byId.get('q8')!.metrics.find((x) => x.key === 'latency');
    const base = lin.byId.get('base')!.metrics.find((x) => x.key === 'latency');
    const p50 = lin.byId.get('p50')!.metrics.find((x) => x.key === 'latency');
    const noisy = measuredCell(q8, formatMetric);
    expect(noisy.text).toBe('~7.00 ms');
    expect(noisy.title).toBe('latency is noisy (noisy: the rounds disagree); Bonsai: Measure Latency measures it again. spread 4.00 ms');
    expect(measuredCell(base, formatMetric)).toEqual({ text: '10.0 ms', title: 'spread 0.500 ms' });
    expect(measuredCell(p50, formatMetric)).toEqual({ text: '9.00 ms', title: '' });
    expect(measuredCell(undefined, formatMetric)).toEqual({ text: '', title: '' });
  });
});
