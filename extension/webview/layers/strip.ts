/**
 * The removed-channel strip of the layer detail: one cell per base channel (or per head), removed
 * ones marked, the index on hover; the removed indices as ranges beside it.
 */
import { svg } from '../shared/charts';
import { el } from '../shared/dom';
import { cellTitle, type RemovedDim } from './channels';

const WIDTH = 480;
const HEIGHT = 12;
// Beyond this many cells one rect each would be a lot of DOM for sub-pixel cells: runs are drawn
// instead and the hover names the cell under the pointer.
const MAX_RECTS = 1024;

export function removedStrip(d: RemovedDim, label: string): HTMLElement {
  const n = d.cells.length;
  const w = WIDTH / n;
  const removedCells = d.cells.filter((c) => c.removed).length;
  const root = svg('svg', { width: WIDTH, height: HEIGHT, class: 'strip', role: 'img', 'aria-label': `${label}: ${removedCells} of ${n} ${d.unit}s removed (${d.ranges})` });
  if (n <= MAX_RECTS) {
    d.cells.forEach((c, i) => {
      const r = svg('rect', { x: i * w, y: 0, width: Math.max(0.5, w - (w > 3 ? 1 : 0)), height: HEIGHT, class: c.removed ? 'removed' : 'kept', 'data-index': i });
      r.append(svg('title', {}, cellTitle(d, i)));
      root.append(r);
    });
  } else {
    root.append(svg('rect', { x: 0, y: 0, width: WIDTH, height: HEIGHT, class: 'kept' }));
    for (let i = 0; i < n; ) {
      if (!d.cells[i]!.removed) { i++; continue; }
      let j = i;
      while (j + 1 < n && d.cells[j + 1]!.removed) j++;
      root.append(svg('rect', { x: i * w, y: 0, width: Math.max(0.5, (j + 1 - i) * w), height: HEIGHT, class: 'removed' }));
      i = j + 1;
    }
    const tip = svg('title', {}, '');
    root.append(tip);
    root.addEventListener('pointermove', (e) => {
      const b = root.getBoundingClientRect();
      const i = Math.max(0, Math.min(n - 1, Math.floor(((e.clientX - b.left) / Math.max(1, b.width)) * n)));
      tip.textContent = cellTitle(d, i);
    });
  }
  const what = d.block > 1
    ? `${removedCells} of ${n} heads (${d.block} channels each${d.inferred ? ', grouping inferred from the removed runs' : ''})`
    : `${removedCells} of ${n} ${d.unit}s`;
  return el('div', { class: 'removed-channels', 'data-dim': String(d.dim), 'data-removed': d.ranges },
    el('div', {}, el('span', { class: 'badge' }, 'structured'), ` ${label} removed ${what} along dim ${d.dim}`),
    root,
    el('div', { class: 'muted ranges' }, `removed ${d.block > 1 ? 'heads' : 'indices'}: ${d.ranges}`));
}
