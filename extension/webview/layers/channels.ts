/**
 * Which channels, neurons or heads structured pruning removed from a tensor, read from the weight
 * comparison (`removed_indices` / `kept_indices` per dim, in base indices; server:
 * compare/weights.py TensorResult.to_json), for the strip and the index list in the layer detail.
 */
import type { WeightTensor } from './data';

/** Sorted distinct indices as ranges: [3, 4, 5, 6, 7, 12] -> "3–7, 12". */
export function indexRanges(indices: readonly number[]): string {
  const xs = [...new Set(indices)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    out.push(j === i ? String(xs[i]) : `${xs[i]}\u2013${xs[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

/** Maximal runs of equal state over [0, size): [start, end) and whether removed. */
export function runs(size: number, removed: ReadonlySet<number>): { start: number; end: number; removed: boolean }[] {
  const out: { start: number; end: number; removed: boolean }[] = [];
  for (let i = 0; i < size; ) {
    const r = removed.has(i);
    let j = i + 1;
    while (j < size && removed.has(j) === r) j++;
    out.push({ start: i, end: j, removed: r });
    i = j;
  }
  return out;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

// Tensors whose pruned dim holds attention heads (BERT-style q/k/v rows and the output projection's
// columns; GPT-2-style c_attn and attn.c_proj), as ops/structured.py prunes them.
const HEAD_DIMS: [RegExp, number][] = [
  [/(^|\.)attention\.self\.(query|key|value)\.(weight|bias)$/, 0],
  [/(^|\.)attention\.output\.dense\.weight$/, 1],
  [/(^|\.)attn\.c_attn\.weight$/, 1],
  [/(^|\.)attn\.c_attn\.bias$/, 0],
  [/(^|\.)attn\.c_proj\.weight$/, 0],
];

/**
 * The channels per head of an attention tensor's pruned dim, inferred from the removal (for
 * results that do not carry `group_size`): the largest block that every run of removed and of kept
 * indices is made of, when it divides the dim into at least two heads. 1 = no grouping (not an
 * attention tensor, or nothing consistent). Adjacent removed heads can make this a multiple of
 * the true head size; the detail says the grouping is inferred.
 */
export function headBlock(name: string, dim: number, size: number, removed: ReadonlySet<number>): number {
  if (!HEAD_DIMS.some(([re, d]) => d === dim && re.test(name))) return 1;
  const rs = runs(size, removed);
  if (rs.length < 2) return 1;
  const g = rs.reduce((acc, r) => gcd(acc, r.end - r.start), 0);
  return g > 1 && size % g === 0 && size / g >= 2 ? g : 1;
}

export interface StripCell {
  /** Base indices [start, end) the cell stands for (one channel, or one head's channels). */
  start: number;
  end: number;
  removed: boolean;
}

export interface RemovedDim {
  dim: number;
  /** Base size of the dim. */
  size: number;
  /** Removed base indices, sorted. */
  removed: number[];
  /** Channels per cell: 1, or the head size of an attention tensor. */
  block: number;
  /** The head size was inferred from the removed runs (the result did not name it). */
  inferred: boolean;
  /** What one cell is: 'output channel', 'input', 'head', ... */
  unit: string;
  cells: StripCell[];
  /** The removed cells as index ranges ("3–7, 12"): channel indices, or head indices. */
  ranges: string;
}

function unitOf(t: WeightTensor, dim: number, block: number): string {
  if (block > 1) return 'head';
  const rank = t.shape_base?.length ?? 0;
  if (rank <= 1) return 'channel';
  if (dim === 0) return rank >= 3 ? 'output channel' : 'output neuron';
  return 'input';
}

/**
 * Per pruned dim of `t`: the removed indices, a strip (one cell per base channel, or per head for
 * attention), and the ranges. Indices come from `removed_indices`, else from `kept_indices` and the
 * base shape; a dim with only a count (older results) is left out, like a dim without removals.
 */
export function removedChannels(t: WeightTensor): RemovedDim[] {
  const out: RemovedDim[] = [];
  for (const key of Object.keys(t.removed ?? {}).sort((a, b) => Number(a) - Number(b))) {
    const dim = Number(key);
    const size = t.shape_base?.[dim];
    if (size === undefined || !Number.isInteger(size) || size <= 0) continue;
    let removed = t.removed_indices?.[key];
    if (!removed) {
      const kept = t.kept_indices?.[key];
      if (!kept) continue;
      const k = new Set(kept);
      removed = [];
      for (let i = 0; i < size; i++) if (!k.has(i)) removed.push(i);
    }
    removed = [...new Set(removed.filter((i) => Number.isInteger(i) && i >= 0 && i < size))].sort((a, b) => a - b);
    if (!removed.length) continue;
    const set = new Set(removed);
    const given = t.group_size?.[key];
    const named = given !== undefined && Number.isInteger(given) && given > 1 && size % given === 0;
    const block = named ? given : headBlock(t.name, dim, size, set);
    const cells: StripCell[] = [];
    for (let s = 0; s < size; s += block) cells.push({ start: s, end: Math.min(size, s + block), removed: set.has(s) });
    const ranges = block > 1 ? indexRanges(cells.map((c, i) => (c.removed ? i : -1)).filter((i) => i >= 0)) : indexRanges(removed);
    out.push({ dim, size, removed, block, inferred: block > 1 && !named, unit: unitOf(t, dim, block), cells, ranges });
  }
  return out;
}

/** The hover text of a strip cell. */
export function cellTitle(d: RemovedDim, i: number): string {
  const c = d.cells[i]!;
  const what = d.block > 1 ? `${d.unit} ${i} (channels ${c.start}\u2013${c.end - 1})` : `${d.unit} ${c.start}`;
  return `${what}: ${c.removed ? 'removed' : 'kept'}`;
}
