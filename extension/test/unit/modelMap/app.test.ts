// The linked state behind every view: selection rules, filters, collapse, search, restored state.
import { describe, expect, it } from 'vitest';
import { App } from '../../../webview/modelMap/app';
import { defaultState, restoreState } from '../../../webview/modelMap/state';
import { colorScale, ramp, sizeScale, ticks, R_MAX, R_MIN } from '../../../webview/modelMap/scales';
import { tableColumns } from '../../../webview/modelMap/table';
import { lineageModels, type LineageResult } from '../../../shared/protocol';
import { minilm, sample } from './fixture';

function app(): App {
  const a = new App();
  a.setModels(sample());
  return a;
}

describe('App', () => {
  it('defaults the encodings to the headline metrics', () => {
    const a = app();
    expect([a.state.colorMetric, a.state.sizeMetric, a.state.scatterX, a.state.scatterY]).toEqual(['accuracy', 'size', 'size', 'accuracy']);
  });

  it('filtered-out models cannot be selected and leave the selection when a filter hides them', () => {
    const a = app();
    a.select(['p50', 'q8', 'p70q8']);
    a.setFilters([{ metric: 'accuracy', lo: 96, hi: 100 }]);
    expect([...a.selection]).toEqual(['p50', 'q8']);
    a.select(['p70', 'p50q8'], 'add');
    expect([...a.selection].sort()).toEqual(['p50', 'p50q8', 'q8']);
    a.select(['q8'], 'toggle');
    expect([...a.selection].sort()).toEqual(['p50', 'p50q8']);
  });

  it('grows the selection along the lineage', () => {
    const a = app();
    a.select(['p50q4']);
    a.extend('parents');
    expect([...a.selection].sort()).toEqual(['p50', 'p50q4']);
    a.select(['p50']);
    a.extend('children');
    expect([...a.selection].sort()).toEqual(['p50', 'p50q4', 'p50q8']);
    a.select(['p70q8']);
    a.extend('ancestors');
    expect([...a.selection].sort()).toEqual(['base', 'p70', 'p70q8']);
    a.select(['base']);
    a.extend('descendants');
    expect(a.selection.size).toBe(7);
  });

  it('collapses only models with children, and searches names and ops', () => {
    const a = app();
    a.toggleCollapse('q8');
    expect(a.state.collapsed).toEqual([]);
    a.toggleCollapse('p50');
    expect(a.layout.nodes.map((n) => n.id)).toEqual(['base', 'p50', 'p70', 'p70q8', 'q8']);
    expect(a.search('Q8')).toEqual(['p50q8', 'p70q8', 'q8']);
    expect(a.search('prune')).toEqual(['p50', 'p70']);
  });

  it('finds a model by the name of a variant matched to it', () => {
    const a = new App();
    a.setModels(sample().map((m) => (m.id === 'p70' ? { ...m, aliases: ['twin-70'] } : m)));
    expect(a.search('TWIN')).toEqual(['p70']);
  });

  it('restores saved state, dropping what no longer exists', () => {
    const a = new App();
    const saved = restoreState({ ...defaultState(), colorMetric: 'gone', sizeMetric: 'latency', selection: ['p50', 'deleted'], filters: [{ metric: 'gone', lo: 0, hi: 1 }, { metric: 'size', lo: 0, hi: 400 }], collapsed: ['p70', 'x'], columnMode: 'op' });
    a.setModels(sample(), saved);
    expect(a.state.colorMetric).toBe('accuracy');
    expect(a.state.sizeMetric).toBe('latency');
    expect(a.state.filters).toEqual([{ metric: 'size', lo: 0, hi: 400 }]);
    expect(a.state.collapsed).toEqual(['p70']);
    // p50 (size 500) fails the size filter, so it is not selected.
    expect([...a.selection]).toEqual([]);
    expect(a.layout.columns.map((c) => c.key)).toEqual(['(base)', 'prune.magnitude', 'quantize.weights']);
  });
});

describe('two metric definitions under one name (acc and acc#2 on the wire)', () => {
  // What bonsai/lineage sends when one task reports acc in percent (higher better) and another
  // reports an error rate also named acc (a fraction, lower better).
  const reply: LineageResult = {
    folder: '/w',
    metrics: {
      acc: { name: 'acc', unit: '%', higherIsBetter: true, headline: true },
      'acc#2': { name: 'acc', unit: '', higherIsBetter: false, headline: true },
    },
    models: [
      { id: 'base', name: 'base', parent: null, op: null, params: {}, status: 'ok', metrics: { acc: 98, 'acc#2': 0.02 }, created: '2026-01-01T00:00:00Z' },
      { id: 'p50', name: 'p50', parent: 'base', op: 'prune.magnitude', params: { sparsity: 0.5 }, status: 'ok', metrics: { acc: 95, 'acc#2': 0.05 }, created: '2026-01-01T00:00:01Z' },
    ],
  };

  it('keeps both series, each under its own key, with labels a user can tell apart', () => {
    const a = new App();
    a.setModels(lineageModels(reply));
    const lin = a.lin;
    expect(lin.metrics.map((m) => m.key)).toEqual(['acc', 'acc#2']);
    expect([...lin.column('acc')]).toEqual([98, 95]);
    expect([...lin.column('acc#2')]).toEqual([0.02, 0.05]);
    expect(lin.metricDef('acc#2')).toMatchObject({ unit: '', higherIsBetter: false });
    // the pickers' and rows' labels, and the table's headers (which always show the unit)
    expect(lin.metrics.map((m) => lin.label(m.key))).toEqual(['acc (%) ↑', 'acc ↓']);
    expect(tableColumns(lin).filter((c) => c.kind === 'metric').map((c) => c.label)).toEqual(['acc (%) ↑', 'acc ↓']);
    // the default encodings pick the two metrics, not one of them twice
    expect([a.state.colorMetric, a.state.sizeMetric]).toEqual(['acc', 'acc#2']);
    // a filter on one does not filter by the other
    a.setFilters([{ metric: 'acc#2', lo: 0, hi: 0.03 }]);
    expect([...a.pass]).toEqual(['base']);
  });

  it('restores saved choices by definition when the keys are numbered the other way after a reload', async () => {
    let saved: unknown;
    const a = new App((s) => (saved = JSON.parse(JSON.stringify(s))));
    a.setModels(lineageModels(reply));
    a.state.scatterX = 'acc#2'; // the error rate
    a.state.sortKey = 'metric:acc#2';
    a.setFilters([{ metric: 'acc#2', lo: 0, hi: 0.03 }]);
    await new Promise((r) => setTimeout(r, 300)); // the debounced save
    // next session: the error rate is met first, so it is `acc` and the percentage `acc#2`
    const swapped: LineageResult = {
      ...reply,
      metrics: { acc: reply.metrics['acc#2']!, 'acc#2': reply.metrics.acc! },
      models: reply.models.map((m) => ({ ...m, metrics: { acc: m.metrics['acc#2']!, 'acc#2': m.metrics.acc! } })),
    };
    const b = new App();
    b.setModels(lineageModels(swapped), restoreState(saved));
    expect(b.lin.metricDef('acc')).toMatchObject({ unit: '', higherIsBetter: false });
    expect(b.state.scatterX).toBe('acc');
    expect(b.state.sortKey).toBe('metric:acc');
    expect(b.state.filters).toEqual([{ metric: 'acc', lo: 0, hi: 0.03 }]);
    expect([...b.pass]).toEqual(['base']);
  });

  it('restores state saved before definitions were saved by the bare names it holds', () => {
    const b = new App();
    b.setModels(lineageModels(reply), restoreState({ scatterX: 'acc', filters: [{ metric: 'acc', lo: 96, hi: 100 }] }));
    expect(b.state.scatterX).toBe('acc');
    expect([...b.pass]).toEqual(['base']);
  });
});

describe('restoreState', () => {
  it('keeps only well-typed fields', () => {
    const s = restoreState({ columnMode: 'sideways', selection: ['a', 3], mapZoom: { k: -1, x: 0, y: 0 }, scatterZoom: { k: 2, x: 0.5, y: 0.5 }, delta: 'reference', groupBy: ['a', 'b', 'c'], bottom: 'table', sortDesc: 'yes' });
    expect(s).toMatchObject({ columnMode: 'step', selection: ['a'], mapZoom: null, scatterZoom: { k: 2, x: 0.5, y: 0.5 }, delta: 'reference', groupBy: ['a', 'b'], bottom: 'table', sortDesc: false });
    expect(restoreState(null)).toEqual(defaultState());
  });
});

describe('scales', () => {
  it('round ticks', () => {
    expect(ticks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(ticks(13, 87, 4)).toEqual([20, 40, 60, 80]);
    expect(ticks(5, 5)).toEqual([5]);
  });

  it('the colour ramp puts the better end bright, whichever the direction', () => {
    const ext = { min: 0, max: 10 };
    const up = colorScale({ key: 'a', name: 'a', unit: '', higherIsBetter: true, headline: true }, ext);
    const down = colorScale({ key: 'b', name: 'b', unit: '', higherIsBetter: false, headline: true }, ext);
    expect(up(10)).toBe(ramp(1));
    expect(down(0)).toBe(ramp(1));
    expect(down(10)).toBe(ramp(0));
    expect(up(undefined)).toBeNull();
  });

  it('node area grows with the value', () => {
    const r = sizeScale({ min: 0, max: 100 });
    expect(r(0)).toBe(R_MIN);
    expect(r(100)).toBe(R_MAX);
    expect(r(25)).toBeCloseTo(R_MIN + 0.5 * (R_MAX - R_MIN));
  });
});

describe('App: multi-op variants folded', () => {
  it('shows a variant without its steps until expanded; search finds it by a step name', () => {
    const a = new App();
    a.setModels(minilm());
    expect(a.lin.order).toEqual(['base', 'all', 'restore', 'nonorm', 'kd']);
    expect(a.full.order).toHaveLength(6);
    expect(a.lin.byId.get('kd')!.op).toBe('prune.magnitude + finetune');
    expect(a.search('0.3-kd/1')).toEqual(['kd']);
    expect(a.shownAs('kd1')).toBe('kd');
    a.select(['kd']);
    a.setSteps('kd', true);
    expect(a.lin.order).toEqual(['base', 'all', 'restore', 'nonorm', 'kd1', 'kd']);
    expect([...a.selection]).toEqual(['kd']);
    a.setSteps('kd', false);
    a.setSteps('all', true);
    expect(a.lin.order).toHaveLength(6);
    expect(a.state.showSteps).toBe(true);
  });
});
