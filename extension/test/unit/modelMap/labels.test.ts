// Map labels never overlap each other or a node: moved, cut with an ellipsis, or left out.
import { describe, expect, it } from 'vitest';
import { fit, overlaps, placeLabels, type LabelItem } from '../../../webview/modelMap/labels';

const measure = (s: string) => s.length * 6;
const O = { height: 12, gap: 4, minChars: 4 };
const name = (id: string, text: string, x: number, y: number, force = false): LabelItem => ({ id, text, x, y, r: 5, kind: 'name', force });
const show = (ps: ReturnType<typeof placeLabels>) => ps.map((p) => [p.id, p.text, p.x, p.y]);

describe('label placement', () => {
  it('a name that would run into the next node goes below it (the restore-ln/1 case)', () => {
    const items = [name('a', 'layer-all-0.1-restore-ln/1', 0, 0), name('b', 'layer-all-0.1-restore-ln', 100, 0)];
    const nodes = items.map((i) => ({ x: i.x, y: i.y, r: 5 }));
    expect(show(placeLabels(items, nodes, measure, O))).toEqual([
      ['a', 'layer-all-0.1-restore-ln/1', 7.5, 12],
      ['b', 'layer-all-0.1-restore-ln', 109, 0],
    ]);
  });

  it('boxed in on every side: cut to the room on the right, or left out when too short', () => {
    const blockers = [
      { x: 60, y: 0, r: 5 },
      { x: 20, y: -12, r: 5 },
      { x: 20, y: 14, r: 5 },
      { x: -20, y: 0, r: 5 },
    ];
    const nodes = [{ x: 0, y: 0, r: 5 }, ...blockers];
    expect(show(placeLabels([name('a', 'abcdefghijkl', 0, 0)], nodes, measure, O))).toEqual([['a', 'abcdef…', 9, 0]]);
    const closer = [{ x: 0, y: 0, r: 5 }, { x: 40, y: 0, r: 5 }, ...blockers.slice(1)];
    expect(show(placeLabels([name('a', 'abcdefghijkl', 0, 0)], closer, measure, O))).toEqual([]);
    // a selected model's name is always drawn
    expect(show(placeLabels([name('a', 'abcdefghijkl', 0, 0, true)], closer, measure, O))).toEqual([['a', 'abcdefghijkl', 9, 0]]);
  });

  it('op labels come last and are left out where a name is', () => {
    const items: LabelItem[] = [name('a', 'base', 0, 0), { id: 'e', text: 'prune', x: 30, y: 0, r: 0, kind: 'op' }, { id: 'f', text: 'quant', x: 30, y: 40, r: 0, kind: 'op' }];
    expect(show(placeLabels(items, [{ x: 0, y: 0, r: 5 }], measure, O))).toEqual([
      ['a', 'base', 9, 0],
      ['f', 'quant', 15, 40],
    ]);
  });

  it('no two placed labels overlap, however dense', () => {
    const items: LabelItem[] = [];
    for (let i = 0; i < 200; i++) items.push(name(`n${i}`, `model-${i}-with-a-long-name`, (i % 10) * 40, Math.floor(i / 10) * 10));
    const placed = placeLabels(items, items.map((i) => ({ x: i.x, y: i.y, r: 5 })), measure, O);
    for (let i = 0; i < placed.length; i++) for (let j = i + 1; j < placed.length; j++) expect(overlaps(placed[i]!.box, placed[j]!.box)).toBe(false);
    expect(placed.length).toBeGreaterThan(0);
  });

  it('fit: the longest start with an ellipsis', () => {
    expect(fit('abcdef', 36, measure)).toBe('abcdef');
    expect(fit('abcdef', 35, measure)).toBe('abcd…');
    expect(fit('abcdef', 11, measure)).toBeNull();
  });
});
