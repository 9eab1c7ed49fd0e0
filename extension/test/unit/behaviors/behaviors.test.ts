import { describe, expect, it } from 'vitest';
import { buildInstanceTable, col } from '../../../webview/behaviors/data';
import { groupRows, sortGroups } from '../../../webview/behaviors/groups';
import { filterInstances, higherIsWorse, maxColumn, pageOf, sortInstances } from '../../../webview/behaviors/instances';
import { topTransitions } from '../../../webview/behaviors/transitions';
import { m1, m2 } from './fixture';

describe('groups table', () => {
  const rows = groupRows([m1, m2]);
  it('joins groups of every model and marks small groups uncertain', () => {
    expect(rows.map((r) => [r.group, r.count, r.uncertain])).toEqual([['cat', 40, false], ['dog', 12, true], ['cow', 50, false]]);
    expect(rows[0]!.cells.m2).toEqual({ count: 40, delta: { value: -0.3, ci: [-0.4, -0.2] }, agreement: { value: 0.7, ci: [0.55, 0.8] }, kl: 0.4 });
    expect(rows[1]!.cells.m2!.delta).toBeNull();
    expect(rows[2]!.cells.m2).toBeUndefined();
  });
  it('sorts by any column, nulls last', () => {
    const g = (rs: typeof rows) => rs.map((r) => r.group);
    expect(g(sortGroups(rows, { model: 'm1', field: 'delta' }, false))).toEqual(['dog', 'cat', 'cow']);
    expect(g(sortGroups(rows, { model: 'm1', field: 'delta' }, true))).toEqual(['cow', 'cat', 'dog']);
    expect(g(sortGroups(rows, { model: 'm2', field: 'delta' }, false))).toEqual(['cat', 'cow', 'dog']);
    expect(g(sortGroups(rows, { model: 'm2', field: 'delta' }, true))).toEqual(['cat', 'cow', 'dog']);
    expect(g(sortGroups(rows, 'count', true))).toEqual(['cow', 'cat', 'dog']);
    expect(g(sortGroups(rows, 'group', false))).toEqual(['cat', 'cow', 'dog']);
    expect(g(sortGroups(rows, { model: 'm1', field: 'kl' }, true))).toEqual(['dog', 'cat', 'cow']);
  });
});

describe('transitions', () => {
  it('lists the most frequent changes, unchanged left out', () => {
    expect(topTransitions(m1).map((t) => [t.label, t.count, t.share, t.ids])).toEqual([
      ['cow → dog', 1, 0.2, ['e']],
      ['dog → cat', 1, 0.2, ['d']],
    ]);
    expect(topTransitions(m2, 1).map((t) => t.label)).toEqual(['cat → cow']);
    expect(topTransitions(m2, 10, true).map((t) => `${t.label}:${t.count}`)).toEqual(['cat → cow:2', 'cat → dog:2', 'dog → dog:1']);
  });
});

describe('instance browser', () => {
  const table = buildInstanceTable([m1, m2]);
  const ids = (rows: Int32Array) => Array.from(rows, (r) => table.ids[r]);
  it('aligns models by instance id', () => {
    expect(table.ids).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(Array.from(table.columns.get(col('m2', 'kl'))!)).toEqual([0.7, 0.6, 0.8, 0.05, NaN, 0.3].map(Math.fround));
  });
  it('filters by ids, brushed ranges and disagreement', () => {
    expect(ids(filterInstances(table, {}))).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(ids(filterInstances(table, { ids: new Set(['f', 'd', 'zz']) }))).toEqual(['d', 'f']);
    expect(ids(filterInstances(table, { ranges: [{ column: col('m1', 'kl'), lo: 0.1, hi: 0.6 }] }))).toEqual(['b', 'e']);
    expect(ids(filterInstances(table, { disagree: [col('m1', 'agree')] }))).toEqual(['d', 'e']);
    expect(ids(filterInstances(table, { disagree: [col('m1', 'agree'), col('m2', 'agree')] }))).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(ids(filterInstances(table, { ids: new Set(['a', 'b', 'c']), ranges: [{ column: col('m2', 'kl'), lo: 0.65, hi: 1 }] }))).toEqual(['a', 'c']);
  });
  it('sorts by any per-instance column, NaN last, and pages', () => {
    const all = filterInstances(table, {});
    expect(ids(sortInstances(table, all, col('m1', 'kl'), true))).toEqual(['d', 'e', 'b', 'a', 'c', 'f']);
    expect(ids(sortInstances(table, all, col('m1', 'kl'), false))).toEqual(['a', 'b', 'e', 'd', 'c', 'f']);
    expect(ids(sortInstances(table, all, null, true))).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    table.columns.set('max', maxColumn(table, [col('m1', 'kl'), col('m2', 'kl')]));
    expect(ids(sortInstances(table, all, 'max', true))).toEqual(['d', 'c', 'a', 'b', 'e', 'f']);
    const p = pageOf(sortInstances(table, all, 'max', true), 1, 4);
    expect([ids(p.rows), p.page, p.pages]).toEqual([['e', 'f'], 1, 2]);
    expect(pageOf(all, 9, 4).page).toBe(1);
  });
});

describe('worst over models', () => {
  it('takes the max of divergences and the min of the rest', () => {
    const table = buildInstanceTable([m1, m2]);
    expect(Array.from(maxColumn(table, [col('m1', 'agree'), col('m2', 'agree')], 'min'))).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(maxColumn(table, [col('m1', 'kl')], 'min')).map((x) => (Number.isNaN(x) ? 'NaN' : x.toFixed(2)))).toEqual(['0.01', '0.20', 'NaN', '0.90', '0.50', 'NaN']);
    expect([higherIsWorse('kl'), higherIsWorse('rel_l2'), higherIsWorse('logp_change'), higherIsWorse('agree')]).toEqual([true, true, false, false]);
  });
});
