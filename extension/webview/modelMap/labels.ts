/**
 * Label placement for the map: names of nodes and op labels of edges, none drawn over another
 * or over a node. Greedy, in priority order (selected models first, then failed or running ones,
 * then the lineage order, op labels last): each label takes the first of its candidate places
 * that is free — right of its node, below-right, above-right, left — else the place right of
 * its node cut with an ellipsis to the room there, else it is left out (a selected model's name
 * never is). A grid of buckets keeps the checks local, so thousands of labels place in a frame.
 * Pure: no DOM (text widths come from `measure`).
 */

export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface LabelItem {
  id: string;
  text: string;
  /** The node's centre and radius; for an op label, the point its text is centred on (r 0). */
  x: number;
  y: number;
  r: number;
  kind: 'name' | 'op';
  /** Drawn even when every place is taken (a selected model's name). */
  force?: boolean;
}

export interface PlacedLabel {
  id: string;
  kind: 'name' | 'op';
  text: string;
  /** Where the text starts (left-aligned, vertically centred on y). */
  x: number;
  y: number;
  box: Box;
}

export interface LabelOptions {
  /** Text height (px). */
  height: number;
  /** Gap between a node and its label (px). */
  gap: number;
  /** Fewest characters a cut name keeps before the ellipsis (else it is left out). */
  minChars: number;
  /** How far below its node's centre a name's first place is (the map keeps the line of the
   * edge leaving a node to the right clear of its name); 0 by default. */
  drop?: number;
}

const CELL = 64;

class Grid {
  private readonly cells = new Map<string, Box[]>();

  private keys(b: Box): string[] {
    const out: string[] = [];
    for (let i = Math.floor(b.x0 / CELL); i <= Math.floor(b.x1 / CELL); i++) for (let j = Math.floor(b.y0 / CELL); j <= Math.floor(b.y1 / CELL); j++) out.push(`${i},${j}`);
    return out;
  }

  add(b: Box): void {
    for (const k of this.keys(b)) {
      const list = this.cells.get(k);
      if (list) list.push(b);
      else this.cells.set(k, [b]);
    }
  }

  /** The boxes that overlap `b` (each may come more than once). */
  hits(b: Box): Box[] {
    const out: Box[] = [];
    for (const k of this.keys(b)) for (const o of this.cells.get(k) ?? []) if (overlaps(o, b)) out.push(o);
    return out;
  }
}

export function overlaps(a: Box, b: Box): boolean {
  return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

/** Places `items` (already in priority order). `nodes`: every node's circle, which no label covers. */
export function placeLabels(items: readonly LabelItem[], nodes: readonly { x: number; y: number; r: number }[], measure: (text: string, kind: 'name' | 'op') => number, o: LabelOptions): PlacedLabel[] {
  const grid = new Grid();
  for (const n of nodes) grid.add({ x0: n.x - n.r, y0: n.y - n.r, x1: n.x + n.r, y1: n.y + n.r });
  const out: PlacedLabel[] = [];
  const h = o.height;
  const box = (x: number, y: number, w: number): Box => ({ x0: x, y0: y - h / 2, x1: x + w, y1: y + h / 2 });
  for (const it of items) {
    const w = measure(it.text, it.kind);
    const candidates: [number, number][] =
      it.kind === 'op'
        ? [[it.x - w / 2, it.y]]
        : [
            [it.x + it.r + o.gap, it.y + (o.drop ?? 0)],
            [it.x + it.r * 0.7 + o.gap, it.y + it.r + h / 2 + 1],
            [it.x + it.r * 0.7 + o.gap, it.y - it.r - h / 2 - 1],
            [it.x - it.r - o.gap - w, it.y],
          ];
    let placed: PlacedLabel | null = null;
    for (const [x, y] of candidates) {
      const b = box(x, y, w);
      if (grid.hits(b).length === 0) {
        placed = { id: it.id, kind: it.kind, text: it.text, x, y, box: b };
        break;
      }
    }
    if (!placed && it.kind === 'name') {
      // Right of the node, cut to the room before the nearest thing in the way.
      const [x, y] = candidates[0]!;
      const room = grid.hits(box(x, y, w)).reduce((m, b) => Math.min(m, b.x0 - x - 2), w);
      const cut = fit(it.text, room, (t) => measure(t, 'name'));
      if (cut !== null && cut.length - 1 >= o.minChars) placed = { id: it.id, kind: it.kind, text: cut, x, y, box: box(x, y, measure(cut, 'name')) };
      else if (it.force) placed = { id: it.id, kind: it.kind, text: it.text, x, y, box: box(x, y, w) };
    }
    if (placed) {
      grid.add(placed.box);
      out.push(placed);
    }
  }
  return out;
}

/** The longest start of `text` that fits `room` with an ellipsis after it; null if none does. */
export function fit(text: string, room: number, measure: (t: string) => number): string | null {
  if (measure(text) <= room) return text;
  let lo = 0;
  let hi = text.length - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (measure(`${text.slice(0, mid)}…`) <= room) lo = mid;
    else hi = mid - 1;
  }
  return lo > 0 ? `${text.slice(0, lo)}…` : null;
}
