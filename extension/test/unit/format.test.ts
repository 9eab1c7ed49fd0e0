// Units in the panels: changes carry their unit (pt for percentages), sizes in binary units, and
// bar charts say when their axis does not start at zero.
import { describe, expect, it } from 'vitest';
import { barAxis, formatBytes, formatDelta, formatPointDelta } from '../../webview/shared/format';

describe('formatDelta', () => {
  it('says pt for a change of a percentage', () => {
    expect(formatDelta(-0.4, '%')).toBe('\u22120.4 pt');
    expect(formatDelta(1.1, '%')).toBe('+1.1 pt');
    expect(formatDelta(0.04, '%')).toBe('+0.04 pt');
    expect(formatDelta(0, '%')).toBe('=');
  });
  it('gives sizes in KiB/MiB and times in ms', () => {
    expect(formatDelta(-310_000, 'B')).toBe('\u2212303 KiB');
    expect(formatDelta(2 * 1024 * 1024, 'B')).toBe('+2.00 MiB');
    expect(formatDelta(512, 'B')).toBe('+512 B');
    expect(formatDelta(0.0021, 's')).toBe('+2.10 ms');
    expect(formatDelta(-0.35, 'ms')).toBe('\u22120.350 ms');
  });
  it('keeps a unitless change as a number and names any other unit', () => {
    expect(formatDelta(-1.2345, '')).toBe('\u22121.23');
    expect(formatDelta(-12_000, '')).toBe('\u221212.0k');
    expect(formatDelta(3, 'tokens')).toBe('+3 tokens');
    expect(formatDelta(0.824, 'x')).toBe('+0.824×');
  });
});

describe('formatPointDelta', () => {
  it('writes a change of a fraction in points', () => {
    expect(formatPointDelta(-0.125)).toBe('\u221212.5 pt');
    expect(formatPointDelta(0.011)).toBe('+1.1 pt');
    expect(formatPointDelta(0.0001)).toBe('\u00b10.0 pt');
  });
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect([512, 1024, 310_000, 1_268_000, 3 * 1024 ** 3].map(formatBytes)).toEqual(['512 B', '1.00 KiB', '303 KiB', '1.21 MiB', '3.00 GiB']);
  });
});

describe('barAxis', () => {
  it('starts at zero when the bars differ visibly from there', () => {
    expect(barAxis([10, 90])).toEqual({ lo: 0, hi: 90, zero: true, note: null });
    expect(barAxis([-2, 3])).toEqual({ lo: -2, hi: 3, zero: true, note: null });
    expect(barAxis([])).toEqual({ lo: 0, hi: 1, zero: true, note: null });
  });
  it('does not hide 98.0 against 99.1 behind a zero baseline, and says so', () => {
    const a = barAxis([98.0, 99.1]);
    expect(a).toEqual({ lo: 97, hi: 100, zero: false, note: 'axis starts at 97, not 0' });
  });
  it('works for values close together below zero', () => {
    expect(barAxis([-5.1, -5.0])).toEqual({ lo: -5.2, hi: -4.9, zero: false, note: 'axis starts at -5.2, not 0' });
  });
});
