// Lineage tree: building from ModelInfo[], wording, icons, and the TreeDataProvider over a fake server.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as vscode from 'vscode';
import { buildForest, contextValue, delta, describe as describeModel, formatMetric, metricLabel, statusIcon, tooltipMarkdown, treeLabel } from '../../src/lineage/model';
import { LineageProvider } from '../../src/lineage/provider';
import { latencyText } from '../../src/commands';
import { lineageModels, type LineageResult, type MetricInfo, type ModelInfo } from '../../shared/protocol';

const metric = (name: string, value: number, unit: string, headline = true, higherIsBetter = true, key = name): MetricInfo => ({ key, name, value, unit, headline, higherIsBetter });
const model = (id: string, parent: string | null, extra: Partial<ModelInfo> = {}): ModelInfo => ({
  id,
  name: id,
  parent,
  op: parent ? 'prune.magnitude' : null,
  params: {},
  status: 'ok',
  metrics: [],
  created: `2026-01-01T00:00:0${id.length}Z`,
  ...extra,
});

describe('buildForest', () => {
  it('puts each model under its parent, siblings oldest first', () => {
    const models = [
      model('c', 'a', { created: '2026-01-03' }),
      model('b', 'a', { created: '2026-01-02' }),
      model('a', null, { created: '2026-01-01' }),
      model('d', 'b', { created: '2026-01-04' }),
    ];
    const roots = buildForest(models);
    expect(roots.map((n) => n.model.id)).toEqual(['a']);
    expect(roots[0]!.children.map((n) => n.model.id)).toEqual(['b', 'c']);
    expect(roots[0]!.children[0]!.children.map((n) => [n.model.id, n.depth])).toEqual([['d', 2]]);
  });

  it('keeps an orphan (parent not listed) as a root and breaks parent cycles', () => {
    const roots = buildForest([model('x', 'gone'), model('p', 'q'), model('q', 'p'), model('s', 's')]);
    const ids = roots.map((n) => n.model.id).sort();
    // every model is shown exactly once
    const all: string[] = [];
    const walk = (ns: typeof roots) => ns.forEach((n) => (all.push(n.model.id), walk(n.children)));
    walk(roots);
    expect(all.sort()).toEqual(['p', 'q', 's', 'x']);
    expect(ids).toContain('x');
    expect(ids).toContain('s');
  });

  it('builds the shared fixture lineage', () => {
    const fx = JSON.parse(readFileSync(resolve(__dirname, '../../../tests/fixtures/protocol/bonsai-lineage.json'), 'utf8')) as { result: LineageResult };
    const roots = buildForest(lineageModels(fx.result));
    expect(roots).toHaveLength(1);
    expect(roots[0]!.children[0]!.model.name).toBe('prune-50');
  });
});

describe('wording', () => {
  it('formats metrics by unit', () => {
    expect(formatMetric({ value: 97.25, unit: '%' })).toBe('97.3%');
    expect(formatMetric({ value: 1268000, unit: 'B' })).toBe('1.21 MiB');
    expect(formatMetric({ value: 310000, unit: 'B' })).toBe('303 KiB');
    expect(formatMetric({ value: 512, unit: 'B' })).toBe('512 B');
    expect(formatMetric({ value: 0.0123, unit: 's' })).toBe('12.3 ms');
    expect(formatMetric({ value: 4.0, unit: 'x' })).toBe('4×');
    expect(formatMetric({ value: 1234567, unit: '' })).toBe('1.23M');
    expect(formatMetric({ value: 3.14159, unit: 'dB' })).toBe('3.142 dB');
  });

  it('labels a model with the variants that are the same model, leaving steps to the tooltip', () => {
    expect(treeLabel({ name: 'int8' })).toBe('int8');
    expect(treeLabel({ name: 'int8', aliases: ['twin/1'] })).toBe('int8');
    expect(treeLabel({ name: 'int8', aliases: ['twin', 'twin/2', 'again'] })).toBe('int8 = twin, again');
    const md = tooltipMarkdown(model('p', 'a', { aliases: ['twin', 'twin/1'] }));
    expect(md).toContain('also `twin`, `twin/1`: the same recipe, so the same model');
  });

  it('describes op, status and headline metrics only', () => {
    const m = model('p', 'a', { metrics: [metric('accuracy', 97.1, '%'), metric('latency', 0.002, 's', false)] });
    expect(describeModel(m)).toBe('prune.magnitude · accuracy 97.1%');
    expect(describeModel({ ...m, status: 'stale' })).toBe('stale · prune.magnitude · accuracy 97.1%');
    expect(describeModel(model('a', null))).toBe('base');
  });

  it('marks a model imported from Compress and Compare, in the description and the tooltip', () => {
    const imported = { tool: 'Compress and Compare', file: 'cc/models.json', id: 'pruning0.5' };
    const m = model('p', 'a', { op: 'Pruning', imported, metrics: [metric('Accuracy', 40, '%')] });
    expect(describeModel(m)).toBe('imported · Pruning · Accuracy 40.0%');
    expect(tooltipMarkdown(m)).toContain('*imported* from Compress and Compare (models\\.json): its recipe and metrics, no weights');
  });

  it('tooltip lists every metric with the change against the parent', () => {
    const parent = model('a', null, { metrics: [metric('accuracy', 98, '%'), metric('stored_size', 2000, 'B', true, false)] });
    const m = model('p', 'a', {
      params: { sparsity: 0.5 },
      status: 'failed',
      statusReason: 'out of memory',
      metrics: [metric('accuracy', 96, '%'), metric('stored_size', 1000, 'B', true, false), metric('latency', 0.01, 's', false, false)],
      experiment: { file: '/w/exp.bonsai.yaml', variant: 'p' },
    });
    const md = tooltipMarkdown(m, parent);
    expect(md).toContain('| accuracy ★ | 96.0% | ▼ -2.0 pt (worse) |');
    expect(md).toContain('| stored\\_size ★ | 1000 B | ▼ -50.0% (better) |');
    expect(md).toContain('| latency | 10.0 ms |  |');
    expect(md).toContain('*failed*: out of memory');
    expect(md).toContain('`sparsity`: `0.5`');
    expect(md).toContain('exp\\.bonsai\\.yaml');
    expect(delta(metric('a', 5, ''), metric('a', 5, ''))).toBe('=');
  });

  it('labels metrics under one name by what tells them apart: unit, direction, else the key', () => {
    const ms = metric('latency', 1, 'ms', false, false);
    const s = metric('latency', 1, 's', false, false, 'latency#2');
    const acc = metric('acc', 1, '%');
    const accLow = metric('acc', 1, '%', true, false, 'acc#2');
    const accPlain = metric('acc', 1, '%', false, true, 'acc#3'); // only the headline flag differs from `acc`
    const all = [ms, s, acc, accLow, accPlain];
    expect(all.map((m) => metricLabel(m, all))).toEqual(['latency (ms)', 'latency (s)', 'acc ↑', 'acc ↓', 'acc ↑ #3']);
    // alone under its name: the bare name, unless asked for the unit or direction
    expect(metricLabel(s, [s, acc])).toBe('latency');
    expect(metricLabel(s, [s], { unit: true, direction: true })).toBe('latency (s) ↓');
    expect(metricLabel(acc, [acc, accPlain])).toBe('acc');
    expect(metricLabel(accPlain, [acc, accPlain])).toBe('acc #3');
  });

  it('tooltip and description tell two definitions under one name apart, and compare each with its own', () => {
    const parent = model('a', null, { metrics: [metric('latency', 20, 'ms', true, false), metric('latency', 0.5, 's', true, false, 'latency#2')] });
    const m = model('p', 'a', { metrics: [metric('latency', 10, 'ms', true, false), metric('latency', 0.5, 's', true, false, 'latency#2')] });
    const md = tooltipMarkdown(m, parent);
    expect(md).toContain('| latency \\(ms\\) ★ | 10.0 ms | ▼ -50.0% (better) |');
    expect(md).toContain('| latency \\(s\\) ★ | 500 ms | = |');
    expect(describeModel(m)).toBe('prune.magnitude · latency (ms) 10.0 ms · latency (s) 500 ms');
  });

  it('a model with one of two same-named metrics is labelled as the lineage tells them apart', () => {
    const ms = metric('latency', 10, 'ms', true, false);
    const s = metric('latency', 0.5, 's', true, false, 'latency#2');
    const m = model('p', 'a', { metrics: [ms] });
    expect(describeModel(m)).toBe('prune.magnitude · latency 10.0 ms'); // alone, it needs no unit
    expect(describeModel(m, [ms, s])).toBe('prune.magnitude · latency (ms) 10.0 ms');
    expect(tooltipMarkdown(m, undefined, [ms, s])).toContain('| latency \\(ms\\) ★ | 10.0 ms |');
  });

  it('marks a noisy latency with ~, says why, and shows each spread', () => {
    const noisy: MetricInfo = { ...metric('latency', 3.9, 'ms', true, false), spread: 2.1, noisy: true, note: 'noisy: the rounds disagree' };
    const good: MetricInfo = { ...metric('latency', 3.16, 'ms', true, false), spread: 0.04, noisy: false };
    const base = model('b', null, { metrics: [good] });
    const p = model('p', 'b', { metrics: [noisy] });
    expect(describeModel(p)).toBe('prune.magnitude · latency ~3.90 ms');
    expect(describeModel(base)).toBe('base · latency 3.16 ms');
    const md = tooltipMarkdown(p, base);
    expect(md).toContain('| latency ★ | ~3.90 ms (spread 2.10 ms) | ~▲ +23.4% (worse) |');
    expect(md).toContain('*~ latency is noisy \\(noisy: the rounds disagree\\); Bonsai: Measure Latency measures it again');
    expect(tooltipMarkdown(base)).toContain('| latency ★ | 3.16 ms (spread 0.0400 ms) |');
    expect(tooltipMarkdown(base)).not.toContain('is noisy');
    expect(latencyText(p)).toBe('~3.90 ms (noisy)');
    expect(latencyText(model('x', null))).toBeUndefined();
  });

  it('icons and context values follow status and relations', () => {
    expect(statusIcon(model('a', null)).id).toBe('package');
    expect(statusIcon(model('b', 'a', { status: 'running' })).id).toBe('sync~spin');
    expect(statusIcon(model('b', 'a', { status: 'failed' }))).toEqual({ id: 'error', color: 'testing.iconFailed' });
    expect(statusIcon(model('b', 'a', { status: 'broken' })).id).toBe('warning');
    expect(statusIcon(model('b', 'a', { status: 'stale' })).id).toBe('history');
    expect(contextValue(model('b', 'a', { experiment: { file: 'f', variant: 'v' } }))).toBe('model hasParent hasExperiment ok');
    expect(contextValue(model('a', null))).toBe('model ok');
  });
});

describe('LineageProvider', () => {
  it('asks bonsai/lineage for each workspace folder and builds tree items', async () => {
    const calls: unknown[] = [];
    (vscode.workspace as { workspaceFolders: unknown }).workspaceFolders = [{ uri: vscode.Uri.file('/w1'), name: 'w1', index: 0 }];
    const p = new LineageProvider({
      request: async <R>(method: string, params: unknown) => {
        calls.push([method, params]);
        // as the server sends it: metric definitions once, values per model
        const wire: LineageResult = {
          folder: '/w1',
          metrics: { accuracy: { name: 'accuracy', unit: '%', higherIsBetter: true, headline: true } },
          models: [{ ...model('a', null), metrics: { accuracy: 99 } }, { ...model('b', 'a', { status: 'running' }), metrics: {} }],
        };
        return wire as R;
      },
    });
    let loaded = 0;
    p.onDidLoad(() => loaded++);
    await p.refresh();
    expect(calls).toEqual([['bonsai/lineage', { folder: '/w1' }]]);
    expect(loaded).toBe(1);
    const [root] = p.getChildren();
    const item = p.getTreeItem(root!);
    expect(item.label).toBe('a');
    expect(item.description).toBe('base · accuracy 99.0%');
    expect(item.collapsibleState).toBe(vscode.TreeItemCollapsibleState.Expanded);
    expect((item.tooltip as vscode.MarkdownString).value).toContain('| accuracy ★ | 99.0% |');
    const child = p.getChildren(root)[0]!;
    expect(p.getParent(child)?.model.id).toBe('a');
    expect((p.getTreeItem(child).iconPath as vscode.ThemeIcon).id).toBe('sync~spin');
    expect(p.model('b')?.status).toBe('running');
    (vscode.workspace as { workspaceFolders: unknown }).workspaceFolders = undefined;
  });

  it('keeps a readable message when the server fails', async () => {
    const p = new LineageProvider({
      request: async () => {
        throw new Error('The Bonsai server is not running (stopped).');
      },
    });
    await p.refresh();
    expect(p.message).toBe('Could not read the lineage: The Bonsai server is not running (stopped).');
    expect(p.getChildren()).toEqual([]);
  });
});
