/**
 * How the server lays a module's activations out as a heatmap matrix (compare/api.activation_tiles
 * and tensors.as_matrix): the outputs for the requested instances are stacked [instances, ...];
 * rows are the instances in the order asked, columns one instance's output flattened row-major
 * (a 1-D stack is a single row, one column per instance). This names the axes and each cell.
 */

export interface ActivationLayout {
  /** Per-instance output shape and the name of each of its dims (row-major flattening). */
  perShape: number[];
  dimNames: string[];
  /** Axis captions for the heatmap. */
  rows: string;
  cols: string;
  /** Each row's own length along the first per-instance dim when the server zero-padded rows of
   * different lengths (text batched with different padding) to the longest. */
  lengths?: number[];
}

function dimNamesOf(rank: number): string[] {
  if (rank === 1) return ['feature'];
  if (rank === 2) return ['position', 'feature']; // [tokens, hidden] of a sequence model
  if (rank === 3) return ['channel', 'y', 'x']; // [C, H, W] of a conv net
  return Array.from({ length: rank }, (_, i) => `d${i + 1}`);
}

// y, x and d1… read as axis names ("8 y"); the nouns take a plural
const NOUNS = new Set(['instance', 'position', 'feature', 'channel']);
const plural = (n: number, w: string) => `${n} ${w}${n !== 1 && NOUNS.has(w) ? 's' : ''}`;

/** The layout of a stacked activation of `shape` ([instances, ...]) for instances `ids`;
 * `lengths` as the tiles' meta gives it (rows zero-padded to the longest). */
export function activationLayout(shape: readonly number[], ids: readonly string[], lengths?: readonly number[]): ActivationLayout {
  const n = shape[0] ?? 0;
  const span = ids.length ? (ids.length === 1 ? `instance ${ids[0]}` : `instances ${ids[0]} … ${ids[ids.length - 1]}`) : 'instances';
  if (shape.length <= 1) {
    return { perShape: [], dimNames: [], rows: `one row`, cols: `${plural(n, 'instance')} (${span}), one value each` };
  }
  const per = shape.slice(1);
  const names = dimNamesOf(per.length);
  const parts = per.map((d, i) => plural(d, names[i]!));
  // column = d0·(s1·s2…) + d1·(s2…) + … + d_last
  const strides = per.map((_, i) => per.slice(i + 1).reduce((a, b) => a * b, 1));
  const formula = names.map((x, i) => (strides[i] === 1 ? x : `${x}\u00b7${strides[i]}`)).join(' + ');
  const cols = per.length === 1 ? parts[0]! : `${parts.join(' \u00d7 ')}, flattened (column = ${formula})`;
  const rows = `${plural(n, 'instance')} (${span}), in sample order`;
  if (lengths && lengths.length === n && new Set(lengths).size > 1) {
    const padded = `${rows}; shorter ones zero-padded to ${plural(per[0]!, names[0]!)} (${lengths.length} lengths ${Math.min(...lengths)}–${Math.max(...lengths)})`;
    return { perShape: per, dimNames: names, rows: padded, cols, lengths: [...lengths] };
  }
  return { perShape: per, dimNames: names, rows, cols };
}

/** Row-major unflattening of column `c` over `shape`. */
export function unflatten(c: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(0);
  let rest = Math.floor(c);
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    out[i] = d > 0 ? rest % d : 0;
    rest = d > 0 ? Math.floor(rest / d) : rest;
  }
  return out;
}

/** What element (r, c) of the heatmap is: "instance 7 · position 3 · feature 120". */
export function describeCell(layout: ActivationLayout, ids: readonly string[], r: number, c: number): string {
  if (!layout.perShape.length) return `instance ${ids[Math.floor(c)] ?? c}`;
  const at = unflatten(c, layout.perShape);
  const text = [`instance ${ids[Math.floor(r)] ?? r}`, ...at.map((v, i) => `${layout.dimNames[i]} ${v}`)].join(' · ');
  const own = layout.lengths?.[Math.floor(r)];
  return own !== undefined && at[0]! >= own ? `${text} (padding: this instance has ${own})` : text;
}
