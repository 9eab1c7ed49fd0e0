// The Sensitivity view's data (webview/layers/sensitivity.ts) on the shared bonsai/scans fixture.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ScansResult } from '../../../shared/protocol';
import {
  cellText,
  columnMax,
  columnTitle,
  heat,
  nextSort,
  rhoText,
  sensitivityColumns,
  sensitivityRows,
  sortRows,
} from '../../../webview/layers/sensitivity';

const repo = join(__dirname, '../../../..');
const fixture = JSON.parse(readFileSync(join(repo, 'tests/fixtures/protocol/bonsai-scans.json'), 'utf8')) as { result: ScansResult };
const scan = fixture.result.scans[0]!.result;

describe('sensitivity table', () => {
  const columns = sensitivityColumns(scan);
  const rows = sensitivityRows(scan, columns);

  it('puts proxy and full side by side per setting, with their rank correlation', () => {
    expect(columns.map((c) => c.key)).toEqual(['0:proxy', '0:full', '1:proxy', '1:full']);
    expect(columns.map(columnTitle)).toEqual([
      'quantize.weights(bits=4, granularity=tensor) · proxy',
      'quantize.weights(bits=4, granularity=tensor) · full',
      'prune.magnitude(sparsity=0.5) · proxy',
      'prune.magnitude(sparsity=0.5) · full',
    ]);
    expect(columns.map((c) => rhoText(c.rho))).toEqual(['ρ 0.50', 'ρ 0.50', 'ρ —', 'ρ —']);
  });

  it('has one row per unit in depth order, skipped cells with their reason', () => {
    expect(rows.map((r) => [r.name, r.numel, r.baseBytes])).toEqual([
      ['conv1', 288, 1152],
      ['conv2', 4608, 18432],
      ['fc', 1280, 5120],
    ]);
    expect(rows[1]!.cells[2]).toEqual({ value: null, bytes: null, skipped: 'prune.magnitude: conv2.weight is excluded' });
    expect(rows[0]!.cells[1]).toEqual({ value: 0.0156, bytes: 184 });
    expect(rows.map((r) => r.cells.map((c, i) => cellText(c, columns[i]!.fidelity, scan.metric)))).toEqual([
      ['0.0810', '+0.0156', '0.410', '+0.125'],
      ['0.0520', '0.00', 'skipped', 'skipped'],
      ['0.0340', '+0.0312', '0.220', '+0.0470'],
    ]);
  });

  it('sorts by any column, unmeasured cells last, ties in depth order', () => {
    const names = (by: string, descending: boolean) => sortRows(rows, columns, { by, descending }).map((r) => r.name);
    expect(names('0:proxy', true)).toEqual(['conv1', 'conv2', 'fc']);
    expect(names('0:proxy', false)).toEqual(['fc', 'conv2', 'conv1']);
    expect(names('0:full', true)).toEqual(['fc', 'conv1', 'conv2']);
    expect(names('1:proxy', true)).toEqual(['conv1', 'fc', 'conv2']);
    expect(names('1:proxy', false)).toEqual(['fc', 'conv1', 'conv2']);
    expect(names('depth', true)).toEqual(['fc', 'conv2', 'conv1']);
    expect(names('no-such-column', true)).toEqual(['conv1', 'conv2', 'fc']);
    expect(nextSort({ by: 'depth', descending: false }, '0:full')).toEqual({ by: '0:full', descending: true });
    expect(nextSort({ by: '0:full', descending: true }, '0:full')).toEqual({ by: '0:full', descending: false });
    expect(nextSort({ by: '0:full', descending: true }, 'depth')).toEqual({ by: 'depth', descending: false });
  });

  it('heats each cell by its share of its column top', () => {
    expect([0, 1, 2, 3].map((c) => columnMax(rows, c))).toEqual([0.081, 0.0312, 0.41, 0.125]);
    expect(heat(0.0405, 0.081)).toBe(0.5);
    expect(heat(0.2, 0.1)).toBe(1);
    expect(heat(-0.01, 0.1)).toBe(0);
    expect(heat(null, 0.1)).toBe(0);
    expect(heat(0.05, 0)).toBe(0);
  });

  it('a proxy-only scan has one column per setting', () => {
    const proxyOnly = { ...scan, full: null, rankCorrelation: [null, null] };
    expect(sensitivityColumns(proxyOnly).map((c) => c.key)).toEqual(['0:proxy', '1:proxy']);
  });
});
