// Budgeted variants: the input box's parsing, the default name, and the server's insertion as text.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ScanBudgetResult } from '../../shared/protocol';
import { applyInsert, defaultVariantName, parseLoss, parseSize, scannedBudget } from '../../src/budget';

describe('budget input', () => {
  it('parses sizes with units, a bare number as MB', () => {
    expect(parseSize('1.5 MB')).toEqual({ bytes: 1_500_000 });
    expect(parseSize('300KiB')).toEqual({ bytes: 307_200 });
    expect(parseSize('20000 b')).toEqual({ bytes: 20_000 });
    expect(parseSize('2')).toEqual({ bytes: 2_000_000 });
    expect(parseSize('0')).toEqual({ error: 'a size above 0' });
    expect(parseSize('big')).toEqual({ error: 'a size like 1.5 MB, 300 KiB or 20000 B (a bare number is MB)' });
  });

  it('parses a loss of 0 or more', () => {
    expect(parseLoss(' 0.01 ')).toEqual({ loss: 0.01 });
    expect(parseLoss('0')).toEqual({ loss: 0 });
    expect(parseLoss('-1')).toEqual({ error: 'how much worse than the base: 0 or more' });
    expect(parseLoss('')).toEqual({ error: 'a number, e.g. 0.01' });
  });

  it('turns a whole-model size into the bytes the scanned weights may take', () => {
    // base: 10 MB stored, 8 MB of it the scanned weights; the rest (2 MB) stays as it is
    expect(scannedBudget(6_000_000, 10_000_000, 8_000_000)).toEqual({ bytes: 4_000_000 });
    expect(scannedBudget(2_000_000, 10_000_000, 8_000_000)).toEqual({
      error: 'the rest of the model (what the scan does not cover) already takes 2,000,000 bytes: give more than that',
    });
  });

  it('names the variant after its budget, unique in the file', () => {
    expect(defaultVariantName('size', 12_000, [])).toBe('budget-12KB');
    expect(defaultVariantName('size', 1_500_000, ['budget-1.5MB'])).toBe('budget-1.5MB-2');
    expect(defaultVariantName('loss', 0.01, ['within-0.01', 'within-0.01-2'])).toBe('within-0.01-3');
    expect(defaultVariantName('size', 512, [])).toBe('budget-512B');
  });
});

describe('the budgeted variant written into the file', () => {
  const fixture = JSON.parse(readFileSync(join(__dirname, '../../../tests/fixtures/protocol/bonsai-scan-budget.json'), 'utf8')) as {
    result: ScanBudgetResult;
  };

  it('goes after the last variant, before what follows it', () => {
    const text = 'base:\n  name: toy\nvariants:\n  - name: a\n    ops:\n      - prune.magnitude: {sparsity: 0.1}\n\n# notes\n';
    const edit = { line: 6, character: 0, text: '  - name: b\n    ops:\n      - cast: {dtype: fp16}\n' };
    expect(applyInsert(text, edit)).toBe(
      'base:\n  name: toy\nvariants:\n  - name: a\n    ops:\n      - prune.magnitude: {sparsity: 0.1}\n  - name: b\n    ops:\n      - cast: {dtype: fp16}\n\n# notes\n',
    );
    // the server's fixture: the edit's text is the variant itself
    expect(fixture.result.edit!.text).toBe(fixture.result.variant);
  });

  it('at the end of a file without a final newline, the edit starts a line of its own', () => {
    expect(applyInsert('variants:\n  - name: a', { line: 1, character: 11, text: '\n  - name: b\n' })).toBe('variants:\n  - name: a\n  - name: b\n');
  });
});
