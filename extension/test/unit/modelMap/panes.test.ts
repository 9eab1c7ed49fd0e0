// How the Model Map's panes share the panel, and how a fitted map fills its width.
import { describe, expect, it } from 'vitest';
import { paneLayout } from '../../../webview/modelMap/panes';
import { COL_W, fitColumns } from '../../../webview/modelMap/geometry';

describe('panes', () => {
  it('stacked beside the details while each pane keeps its minimum', () => {
    expect(paneLayout(1100, 504)).toEqual({ tabbed: false, sideTab: false });
  });
  it('tabs when too short for map and scatterplot both (the bottom panel open)', () => {
    expect(paneLayout(1100, 503)).toEqual({ tabbed: true, sideTab: false });
    expect(paneLayout(1050, 420)).toEqual({ tabbed: true, sideTab: false });
  });
  it('the details column a tab too when too narrow for it', () => {
    expect(paneLayout(719, 900)).toEqual({ tabbed: true, sideTab: true });
    expect(paneLayout(720, 900)).toEqual({ tabbed: false, sideTab: false });
  });
});

describe('fitting the map', () => {
  it('a tall map (the 45-model digits) keeps names legible and stretches its columns over the width', () => {
    // 3 columns, 40 rows: names need k 0.6; in 540 px the columns fill the width, in 700 px
    // they stop at three times their width (550 of 700 px; it was 238 px at k 0.6 before)
    const f = fitColumns(540, 360, 3, 40);
    expect(f.k).toBe(0.6);
    expect(f.colW).toBeCloseTo((540 / 0.6 - 56 - 80) / 2, 9);
    expect((28 * 2 + 2 * f.colW + 80) * f.k).toBeCloseTo(540, 9);
    const g = fitColumns(700, 360, 3, 40);
    expect([g.k, g.colW, (56 + 2 * g.colW + 80) * g.k]).toEqual([0.6, 3 * COL_W, 549.6]);
  });
  it('a wide map fits its width at the usual column width', () => {
    const f = fitColumns(600, 400, 8, 4);
    expect(f.colW).toBe(COL_W);
    expect(f.k).toBeCloseTo(600 / (56 + 7 * COL_W + 80), 9);
  });
  it('columns widen at most threefold, and one column stays as it is', () => {
    expect(fitColumns(2000, 300, 2, 3).colW).toBe(3 * COL_W);
    expect(fitColumns(2000, 300, 1, 3).colW).toBe(COL_W);
  });
});
