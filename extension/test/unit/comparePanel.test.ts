// The comparison panels' progress line: after a cancel that left models out (and only then) it
// offers to resume with the models not compared yet.
import { describe, expect, it } from 'vitest';
import { resumable } from '../../webview/shared/comparePanel';
import { stillToCompare } from '../../webview/shared/stream';

describe('resumable', () => {
  it('counts the models a cancel left out', () => {
    expect(resumable({ label: 'Cancelled:', received: 1, expected: 3, running: false, cancelled: true })).toBe(2);
  });

  it('is 0 while running, when nothing is left, and when not cancelled', () => {
    expect(resumable({ label: 'Comparing…', received: 1, expected: 3, running: true })).toBe(0);
    expect(resumable({ label: 'Cancelled:', received: 2, expected: 2, running: false, cancelled: true })).toBe(0);
    expect(resumable({ label: 'Stopped:', received: 0, expected: 2, running: false })).toBe(0);
  });
});

describe('stillToCompare', () => {
  it('keeps the order asked and leaves out what is in', () => {
    const have = new Set(['b']);
    expect(stillToCompare(['a', 'b', 'c'], (id) => have.has(id))).toEqual(['a', 'c']);
    expect(stillToCompare(['a'], () => true)).toEqual([]);
  });
});
