import { describe, expect, it } from 'vitest';
import { Lineage } from '../../../webview/modelMap/lineage';
import { metricDelta, sortRows, tableColumns, toCsv } from '../../../webview/modelMap/table';
import { model, sample } from './fixture';

describe('table', () => {
  const lin = new Lineage([...sample(), model('run', 'p70', 'finetune', { note: 'a, "b"' }, 7, null, 'running')]);
  const cols = tableColumns(lin);
  const col = (key: string) => cols.find((c) => c.key === key)!;

  it('a column per metric (headline first) and per op parameter', () => {
    expect(cols.map((c) => c.key)).toEqual(['name', 'parent', 'op', 'status', 'metric:accuracy', 'metric:size', 'metric:latency', 'param:bits', 'param:note', 'param:sparsity']);
  });

  it('sorts numbers and text, missing values last in both directions, stable ties', () => {
    expect(sortRows(lin, lin.order, col('metric:accuracy'), true)).toEqual(['base', 'q8', 'p50', 'p50q8', 'p70', 'p70q8', 'p50q4', 'run']);
    expect(sortRows(lin, lin.order, col('metric:accuracy'), false)).toEqual(['p50q4', 'p70', 'p70q8', 'p50q8', 'p50', 'q8', 'base', 'run']);
    expect(sortRows(lin, lin.order, col('param:bits'), false)).toEqual(['p50q4', 'p50q8', 'p70q8', 'q8', 'base', 'p50', 'p70', 'run']);
  });

  it('deltas against the parent or a chosen reference', () => {
    expect(metricDelta(lin, 'p50q8', 'accuracy', { kind: 'parent' })).toBe(-0.5);
    expect(metricDelta(lin, 'base', 'accuracy', { kind: 'parent' })).toBeUndefined();
    expect(metricDelta(lin, 'q8', 'size', { kind: 'reference', id: 'base' })).toBe(-750);
    expect(metricDelta(lin, 'run', 'size', { kind: 'reference', id: 'base' })).toBeUndefined();
  });

  it('CSV with deltas, quoting and empty missing cells', () => {
    const some = [col('name'), col('op'), col('metric:accuracy'), col('param:note')];
    expect(toCsv(lin, ['base', 'p50q8', 'run'], some, { kind: 'parent' })).toBe(
      'model,op,accuracy (%),Δ accuracy (%),note\nbase,base,98,,\np50q8,quantize.weights,96.5,-0.5,\nrun,finetune,,,"a, ""b"""\n',
    );
    expect(toCsv(lin, ['p70q8'], [col('name'), col('metric:accuracy')], { kind: 'none' })).toBe('model,accuracy (%)\np70q8,95\n');
  });
});
