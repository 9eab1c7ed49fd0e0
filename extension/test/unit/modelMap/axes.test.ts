// The scatterplot's default axes: size against the task's quality, never two collinear metrics.
import { describe, expect, it } from 'vitest';
import type { MetricInfo, ModelInfo } from '../../../shared/protocol';
import { Lineage } from '../../../webview/modelMap/lineage';
import { collinear, correlation, defaultAxes, qualityMetrics } from '../../../webview/modelMap/axes';
import { model } from './fixture';

const DEFS: Record<string, Omit<MetricInfo, 'key' | 'name' | 'value'>> = {
  accuracy: { unit: '%', higherIsBetter: true, headline: true },
  agreement: { unit: '%', higherIsBetter: true, headline: true },
  stored_size: { unit: 'B', higherIsBetter: false, headline: true },
  compression_ratio: { unit: 'x', higherIsBetter: true, headline: false },
  latency: { unit: 'ms', higherIsBetter: false, headline: true },
  onnxruntime_latency: { unit: 'ms', higherIsBetter: false, headline: false },
  onnxruntime_agreement: { unit: '%', higherIsBetter: true, headline: false },
};

function lineage(cols: Record<string, number[]>): Lineage {
  const n = Object.values(cols)[0]!.length;
  const models: ModelInfo[] = [];
  for (let i = 0; i < n; i++) {
    const m = model(`m${i}`, i ? 'm0' : null, i ? 'prune.magnitude' : null, {}, i, null);
    m.metrics = Object.entries(cols).map(([name, vs]) => ({ key: name, name, value: vs[i]!, ...DEFS[name]! }));
    models.push(m);
  }
  return new Lineage(models);
}

describe('default scatterplot axes', () => {
  // digits: agreement is accuracy within a point; latency noise
  const digits = lineage({
    accuracy: [97.2, 96.9, 95.0, 80.3, 96.1],
    agreement: [100, 98.9, 96.8, 81.5, 97.6],
    stored_size: [103_000, 61_000, 45_000, 28_000, 30_000],
    compression_ratio: [1, 1.69, 2.29, 3.68, 3.43],
    latency: [0.21, 0.22, 0.2, 0.21, 0.23],
  });

  it('correlation over the models that have both', () => {
    expect(correlation(digits, 'accuracy', 'agreement')!.toFixed(4)).toBe('0.9982');
    expect(collinear(digits, 'accuracy', 'agreement')).toBe(true);
    expect(collinear(digits, 'stored_size', 'accuracy')).toBe(false);
    expect(correlation(lineage({ accuracy: [1, 2] , latency: [3, 4] }), 'accuracy', 'latency')).toBeNull();
    expect(correlation(lineage({ accuracy: [1, 1, 1], latency: [3, 4, 5] }), 'accuracy', 'latency')).toBeNull();
  });

  it('stored size against the headline quality metric', () => {
    expect(defaultAxes(digits)).toEqual({ x: 'stored_size', y: 'accuracy' });
  });

  it('a quality metric collinear with size gives way to the next one', () => {
    const l = lineage({
      accuracy: [90, 80, 70, 60],
      agreement: [100, 70, 95, 60],
      stored_size: [4000, 3000, 2000, 1000],
      latency: [1, 2, 3, 4],
    });
    expect(defaultAxes(l)).toEqual({ x: 'stored_size', y: 'agreement' });
  });

  it('a constant size (every model stored alike) gives way to the ratio, never to latency first', () => {
    const l = lineage({
      accuracy: [90, 85, 88, 70],
      stored_size: [1000, 1000, 1000, 1000],
      compression_ratio: [1, 2, 4, 1.5],
      latency: [3, 1, 2, 5],
    });
    expect(defaultAxes(l)).toEqual({ x: 'compression_ratio', y: 'accuracy' });
  });

  it('no efficiency metric: two metrics that are not collinear', () => {
    expect(defaultAxes(lineage({ accuracy: [1, 2, 3], agreement: [2, 4, 6.01] }))).toEqual({ x: 'agreement', y: 'accuracy' });
  });

  it("a deploy target's latency and parity are no quality metric (they stay on the menus)", () => {
    const lin = lineage({
      stored_size: [100, 50, 25, 12],
      onnxruntime_latency: [0.4, 0.8, 0.9, 0.4],
      onnxruntime_agreement: [100, 100, 99, 100],
      accuracy: [97, 96, 90, 80],
    });
    expect(qualityMetrics(lin).map((m) => m.name)).toEqual(['accuracy']);
    expect(defaultAxes(lin)).toEqual({ x: 'stored_size', y: 'accuracy' });
  });
});
