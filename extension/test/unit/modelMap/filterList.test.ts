// The filter pane's metric list: constant metrics left out, per-class metrics folded (issue 19 item 6).
import { describe, expect, it } from 'vitest';
import { filterList } from '../../../webview/modelMap/filters';

describe('filterList', () => {
  const cols: Record<string, number[]> = {
    accuracy: [98, 97.1, 91],
    stored_size: [4000, 2000, 1000],
    params: [1234, 1234, 1234], // pruning keeps the parameter count: a histogram of one value
    batch_size: [NaN, 32, 32],
    'class_accuracy/0': [100, 90, 80],
    'class_accuracy/1': [100, 100, 60],
    'class_accuracy/2': [100, 100, 100],
    'top5/x': [1, 2, 3],
    empty: [NaN, NaN, NaN],
  };
  it('leaves out what does not vary and folds per-class metrics', () => {
    expect(filterList(Object.keys(cols), (k) => cols[k]!)).toEqual({
      metrics: ['accuracy', 'stored_size', 'top5/x'],
      groups: [{ prefix: 'class_accuracy', keys: ['class_accuracy/0', 'class_accuracy/1'] }],
      constant: ['params', 'batch_size', 'class_accuracy/2', 'empty'],
    });
  });
});
