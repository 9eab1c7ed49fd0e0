// The legend's sections are laid out by their titles' width: a long metric name must not run into
// the next section (it did: fixed columns at 160 and 340 px).
import { describe, expect, it } from 'vitest';
import { CHAR_WIDTH, legendLayout } from '../../../webview/modelMap/legend';

describe('legendLayout', () => {
  it('starts each section after the widest of the previous title and graphic', () => {
    const fill = 'fill: neighbour_overlap@5 (%), higher is better';
    const { x, width } = legendLayout([
      { title: fill, graphic: 130 },
      { title: 'size: agreement (%)', graphic: 90 },
      { title: 'edge vs parent', graphic: 64 },
    ]);
    expect(x[0]).toBe(4);
    expect(x[1]).toBeGreaterThan(4 + fill.length * CHAR_WIDTH);
    expect(x[2]).toBeGreaterThan(x[1]! + 'size: agreement (%)'.length * CHAR_WIDTH);
    expect(width).toBeGreaterThanOrEqual(x[2]! + Math.max('edge vs parent'.length * CHAR_WIDTH, 64));
  });

  it('gives a graphic wider than its title its own width', () => {
    const { x } = legendLayout([{ title: 'size: s', graphic: 200 }, { title: 'edge vs parent', graphic: 64 }]);
    expect(x[1]).toBeGreaterThanOrEqual(4 + 200);
  });

  it('lays out nothing for no sections', () => {
    expect(legendLayout([])).toEqual({ x: [], width: 0 });
  });
});
