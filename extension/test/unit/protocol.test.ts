// protocol.ts against the shared fixtures (tests/fixtures/protocol/) and the server's protocol.py.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as P from '../../shared/protocol';

const repo = resolve(__dirname, '../../..');
const fixtureDir = join(repo, 'tests/fixtures/protocol');
const fixtures = readdirSync(fixtureDir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ file: f, msg: JSON.parse(readFileSync(join(fixtureDir, f), 'utf8')) as { method: string; kind: string; params: unknown; result?: unknown } }));

describe('protocol fixtures', () => {
  it('exist', () => {
    expect(fixtures.length).toBeGreaterThan(0);
  });

  it.each(fixtures.map((f) => [f.file, f.msg] as const))('%s fits protocol.ts', (_file, msg) => {
    const def = P.METHODS.get(msg.method);
    expect(def, `unknown method ${msg.method}`).toBeDefined();
    expect(msg.kind).toBe(def!.kind);
    expect(P.problem(msg.params, def!.params, 'params')).toBeUndefined();
    if (def!.kind === 'request') {
      expect(msg.result, 'a request fixture carries its result').toBeDefined();
      expect(P.problem(msg.result, def!.result!, 'result')).toBeUndefined();
    }
  });

  it('cover every method', () => {
    const covered = new Set(fixtures.map((f) => f.msg.method));
    expect([...P.METHODS.keys()].filter((m) => !covered.has(m))).toEqual([]);
  });

  it('declare the same methods as the server (protocol.py)', () => {
    const py = readFileSync(join(repo, 'server/modelbonsai/lsp/protocol.py'), 'utf8');
    const serverMethods = new Set([...py.matchAll(/^[A-Z_]+ = "(bonsai\/[^"]+)"/gm)].map((m) => m[1]));
    expect(new Set(P.METHODS.keys())).toEqual(serverMethods);
    const serverCommands = new Set([...py.matchAll(/^CMD_[A-Z_]+ = "([^"]+)"/gm)].map((m) => m[1]));
    expect(serverCommands).toEqual(new Set([P.CMD_RUN_VARIANT, P.CMD_COMPARE_WITH_PARENT, P.CMD_SHOW_IN_MODEL_MAP, P.CMD_SHOW_SWEEP, P.CMD_CREATE_EXPERIMENT_FILE, P.CMD_INSPECT_MODEL]));
    // Bonsai's own codes are declared once, with the error classes that carry them (errors.py)
    const errorsPy = readFileSync(join(repo, 'server/modelbonsai/errors.py'), 'utf8');
    const code = (name: string) => Number(new RegExp(`^${name} = (-\\d+)`, 'm').exec(`${py}\n${errorsPy}`)?.[1]);
    expect(code('WORKSPACE_UNTRUSTED')).toBe(P.ErrorCodes.workspaceUntrusted);
    expect(code('USER_ERROR')).toBe(P.ErrorCodes.userError);
    expect(code('NOT_FOUND')).toBe(P.ErrorCodes.notFound);
    expect(code('JOB_FAILED')).toBe(P.ErrorCodes.jobFailed);
    expect(code('EXPORT_EXISTS')).toBe(P.ErrorCodes.exportExists);
  });
});

describe('problem()', () => {
  const lineage = fixtures.find((f) => f.msg.method === P.LINEAGE)!.msg.result as P.LineageResult;

  it('names a renamed field', () => {
    const bad = structuredClone(lineage) as unknown as { models: Record<string, unknown>[] };
    bad.models[0]!.higherIsBetter = true;
    delete bad.models[0]!.created;
    expect(P.problem(bad, P.METHODS.get(P.LINEAGE)!.result!, 'result')).toBe('result.models[0].created is missing');
  });

  it('rejects a wrong literal and an unknown field', () => {
    const m = { ...lineage.models[0]!, status: 'done' };
    expect(P.problem(m, P.Shapes.ModelInfo)).toMatch(/params.status must be 'ok' \| 'running'/);
    expect(P.problem({ jobId: 'j', extra: 1 }, P.Shapes.CancelParams)).toMatch(/extra is not a known field/);
  });

  it('accepts LSP progress tokens on any request and rejects non-integers where integers go', () => {
    expect(P.problem({ jobId: 'j', workDoneToken: 3 }, P.Shapes.CancelParams)).toBeUndefined();
    expect(P.problem({ resultId: 'r', page: 1.5 }, P.Shapes.ResultPageParams)).toMatch(/page must be an integer/);
    expect(P.problem({ resultId: 'r', page: 1 }, P.Shapes.ResultPageParams)).toBeUndefined();
  });

  it('joins each metric value to its definition (lineageModels)', () => {
    const [base, pruned] = P.lineageModels(lineage);
    expect(base!.metrics).toEqual([
      { key: 'accuracy', name: 'accuracy', value: 0.982, unit: '%', higherIsBetter: true, headline: true },
      { key: 'stored_size', name: 'stored_size', value: 1268000, unit: 'B', higherIsBetter: false, headline: true },
      { key: 'latency', name: 'latency', value: 3.16, unit: 'ms', higherIsBetter: false, headline: true, spread: 0.04, noisy: false },
    ]);
    expect(pruned!.metrics).toEqual([]);
    // a noisy latency keeps its spread, flag and why
    const noisy = P.lineageModels(lineage)[2]!.metrics.find((m) => m.name === 'latency')!;
    expect([noisy.value, noisy.spread, noisy.noisy]).toEqual([3.9, 2.1, true]);
    expect(noisy.note).toMatch(/rounds disagree/);
    expect({ ...base!, metrics: undefined }).toEqual({ ...lineage.models[0]!, metrics: undefined });
    // another definition under the same name has its own key; an undefined key shows by its name
    const two = P.lineageModels({
      folder: '/x',
      metrics: { score: { name: 'score', unit: '', higherIsBetter: true, headline: true }, 'score#2': { name: 'score', unit: 'ms', higherIsBetter: false, headline: false } },
      models: [{ ...lineage.models[1]!, metrics: { 'score#2': 3, score: 0.5, odd: 1 } }],
    });
    expect(two[0]!.metrics.map((m) => [m.key, m.name, m.value, m.unit, m.higherIsBetter])).toEqual([
      ['score#2', 'score', 3, 'ms', false],
      ['score', 'score', 0.5, '', true],
      ['odd', 'odd', 1, '', true],
    ]);
  });

  it('gives a definition one key across the replies of several folders (MetricKeys)', () => {
    const ms = { name: 'latency', unit: 'ms', higherIsBetter: false, headline: false };
    const s = { name: 'latency', unit: 's', higherIsBetter: false, headline: false };
    const one = (folder: string, metrics: Record<string, P.MetricDef>, values: Record<string, number>): P.LineageResult => ({
      folder,
      metrics,
      models: [{ ...lineage.models[1]!, id: folder, metrics: values }],
    });
    const keys = new P.MetricKeys();
    // folder a calls seconds `latency`; folder b calls milliseconds `latency` and seconds `latency#2`
    const [a] = P.lineageModels(one('a', { latency: s }, { latency: 2 }), keys);
    const [b] = P.lineageModels(one('b', { latency: ms, 'latency#2': s }, { latency: 5, 'latency#2': 3 }), keys);
    expect(a!.metrics.map((m) => [m.key, m.unit, m.value])).toEqual([['latency', 's', 2]]);
    expect(b!.metrics.map((m) => [m.key, m.unit, m.value])).toEqual([
      ['latency#2', 'ms', 5],
      ['latency', 's', 3],
    ]);
    // the same keys on the next load, whatever order the reply lists its definitions in
    const [b2] = P.lineageModels(one('b', { 'latency#2': s, latency: ms }, { latency: 6, 'latency#2': 4 }), keys);
    expect(b2!.metrics.map((m) => [m.key, m.unit])).toEqual([
      ['latency#2', 'ms'],
      ['latency', 's'],
    ]);
  });

  it('keeps one key for a metric whose headline flag differs between replies', () => {
    const keys = new P.MetricKeys();
    const plain: P.MetricDef = { name: 'agreement', unit: '%', higherIsBetter: true, headline: false };
    const flagged: P.MetricDef = { ...plain, headline: true };
    expect(keys.key(plain)).toBe(keys.key(flagged));
    expect(keys.key({ ...plain, unit: '' })).toBe('agreement#2');
  });

  it('narrows with is()', () => {
    const v: unknown = { folder: '/x' };
    expect(P.is(v, P.Shapes.LineageChangedParams)).toBe(true);
    expect(P.is({ folder: 3 }, P.Shapes.LineageChangedParams)).toBe(false);
  });
});
