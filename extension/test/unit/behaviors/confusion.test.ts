import { describe, expect, it } from 'vitest';
import { cellLabel, changeText, confusionMatrix, confusionOf, mcnemarOf, mcnemarText, pText } from '../../../webview/behaviors/confusion';

// tests/compare/test_behavior_confusion_mcnemar.py's hand-worked case, as the server sends it
const wire = {
  classes: [0, 1, 2],
  names: ['cat', 'dog', 'eel'],
  classes_total: 3,
  base: [[3, 0, 0], [0, 1, 1], [0, 1, 2]],
  other: [[1, 2, 0], [0, 2, 0], [1, 0, 2]],
  cells: [
    { true: 0, predicted: 0, entered: [], left: ['x1', 'x2'] },
    { true: 0, predicted: 1, entered: ['x1', 'x2'], left: [] },
    { true: 1, predicted: 1, entered: ['x4'], left: [] },
    { true: 1, predicted: 2, entered: [], left: ['x4'] },
    { true: 2, predicted: 0, entered: ['x6'], left: [] },
    { true: 2, predicted: 1, entered: [], left: ['x6'] },
  ],
};

describe('confusion change', () => {
  const c = confusionOf(wire)!;
  const { rows, maxChange } = confusionMatrix(c);
  it('reads the result, and nothing from an older result or a malformed one', () => {
    expect(c.classesTotal).toBe(3);
    expect(confusionOf(undefined)).toBeNull();
    expect(confusionOf({ ...wire, base: [[1, 2], [3, 4]] })).toBeNull();
    expect(confusionOf({ ...wire, names: ['cat'] })).toBeNull();
  });
  it('gives each cell its change, meaning and strength', () => {
    expect(maxChange).toBe(2);
    expect(rows.map((r) => r.map((x) => changeText(x.change)))).toEqual([['\u22122', '+2', ''], ['', '+1', '\u22121'], ['+1', '\u22121', '']]);
    // the diagonal: fewer correct is worse, more correct better; elsewhere more is worse
    expect(rows.map((r) => r.map((x) => x.effect))).toEqual([
      ['worse', 'worse', 'none'],
      ['none', 'better', 'better'],
      ['worse', 'better', 'none'],
    ]);
    expect(rows.map((r) => r.map((x) => x.strength))).toEqual([[1, 1, 0], [0, 0.5, 0.5], [0.5, 0.5, 0]]);
    expect([rows[0]![1]!.entered, rows[0]![1]!.left, rows[2]![2]!.entered]).toEqual([['x1', 'x2'], [], []]);
  });
  it('words a cell', () => {
    expect(cellLabel(c, rows[0]![1]!)).toBe('true cat predicted as dog: 0 → 2 (+2; 2 in, 0 out)');
    expect(cellLabel(c, rows[0]![0]!)).toBe('cat predicted correctly: 3 → 1 (\u22122; 0 in, 2 out)');
    expect(cellLabel(c, rows[2]![2]!)).toBe('eel predicted correctly: 2 → 2 (±0; 0 in, 0 out)');
  });
});

describe("McNemar's test", () => {
  it('says p, the test and the discordant counts', () => {
    const exact = mcnemarOf({ test: 'exact binomial', statistic: null, p: 79 / 2048, base_only: 10, other_only: 2 })!;
    expect(mcnemarText(exact)).toEqual({ p: 'p = 0.039', detail: 'exact binomial · right only in base 10, only in model 2' });
    const chi = mcnemarOf({ test: 'chi-square with continuity correction', statistic: 9.025, p: 0.002663119259138558, base_only: 30, other_only: 10 })!;
    expect(mcnemarText(chi)).toEqual({ p: 'p = 0.0027', detail: 'chi-square with continuity correction, χ² = 9.03 · right only in base 30, only in model 10' });
    expect(mcnemarOf({ p: 0.5 })).toBeNull();
  });
  it('formats p as people read it', () => {
    expect([pText(1), pText(0.99999), pText(0.5), pText(0.0125), pText(0.00999), pText(0.0004)]).toEqual(['1', '1', '0.500', '0.013', '0.010', '< 0.001']);
  });
});
