// Budgeted variants on the Model Map: the size a variant's name states, and which models carry one.
import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../../../shared/protocol';
import { budgetMarks, budgetOf, isStoredSize } from '../../../webview/modelMap/budget';

describe('budget marks', () => {
  it('reads the size budget from the variant name the Sensitivity view writes', () => {
    expect(budgetOf('budget-1.5MB')).toBe(1_500_000);
    expect(budgetOf('budget-300KB')).toBe(300_000);
    expect(budgetOf('budget-512B')).toBe(512);
    expect(budgetOf('budget-20MB-2')).toBe(20_000_000);
    expect(budgetOf('within-0.01')).toBeNull();
    expect(budgetOf('budget-big')).toBeNull();
    expect(budgetOf('my-budget-1MB')).toBeNull();
  });

  it('marks the models made from budgeted variants', () => {
    const m = (id: string, variant?: string) => ({ id, ...(variant ? { experiment: { file: '/w/x.bonsai.yaml', variant } } : {}) }) as ModelInfo;
    expect(budgetMarks([m('a'), m('b', 'prune-50'), m('c', 'budget-20MB'), m('d', 'within-0.1')])).toEqual([{ id: 'c', variant: 'budget-20MB', bytes: 20_000_000 }]);
    expect(isStoredSize({ name: 'stored_size', unit: 'B' })).toBe(true);
    expect(isStoredSize({ name: 'compression_ratio', unit: '×' })).toBe(false);
  });
});
