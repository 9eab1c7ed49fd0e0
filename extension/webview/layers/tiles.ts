/**
 * The tile-pyramid client for heatmaps (server side: compare/tensors.py). The tensor is a matrix
 * [rows, cols]; level L cells summarise 2^L x 2^L elements; tiles are `tile` x `tile` cells.
 * For a viewport (element coordinates) and a canvas size it picks a level, lists the tiles that
 * cover the viewport, serves the cached ones and asks the server once for the bounding window of
 * the missing ones (at most MAX_TILES per request, as the server allows).
 */
export const TILE = 256;
export const MAX_TILES = 64;

export interface PyramidInfo {
  rows: number;
  cols: number;
  tile: number;
  levels: number;
}

/** Same rule as the server's pyramid_info: N-D tensors are [d0, d1*...*dn]. */
export function pyramidInfo(shape: number[], tile = TILE): PyramidInfo {
  const rows = shape.length === 0 ? 1 : shape.length === 1 ? 1 : shape[0]!;
  const cols = shape.length === 0 ? 1 : shape.length === 1 ? shape[0]! : shape.slice(1).reduce((a, b) => a * b, 1);
  const big = Math.max(rows, cols, 1);
  const levels = big > tile ? Math.max(0, Math.ceil(Math.log2(big / tile))) : 0;
  return { rows, cols, tile, levels };
}

/** Element window [r0, r1) x [c0, c1). */
export interface Viewport {
  r0: number;
  c0: number;
  r1: number;
  c1: number;
}

export interface TileId {
  level: number;
  ty: number;
  tx: number;
}

export const tileKey = (t: TileId): string => `L${t.level}_${t.ty}_${t.tx}`;

function clip(info: PyramidInfo, v: Viewport): Viewport | null {
  const r0 = Math.max(0, Math.floor(v.r0));
  const c0 = Math.max(0, Math.floor(v.c0));
  const r1 = Math.min(info.rows, Math.ceil(v.r1));
  const c1 = Math.min(info.cols, Math.ceil(v.c1));
  return r0 < r1 && c0 < c1 ? { r0, c0, r1, c1 } : null;
}

/** The tiles of `level` that intersect the viewport, row by row. */
export function tilesFor(info: PyramidInfo, level: number, viewport: Viewport): TileId[] {
  const v = clip(info, viewport);
  if (!v) return [];
  const span = info.tile << level;
  const out: TileId[] = [];
  for (let ty = Math.floor(v.r0 / span); ty <= Math.floor((v.r1 - 1) / span); ty++) {
    for (let tx = Math.floor(v.c0 / span); tx <= Math.floor((v.c1 - 1) / span); tx++) out.push({ level, ty, tx });
  }
  return out;
}

/**
 * The level for drawing `viewport` on `pixels`: the finest whose cells are no smaller than a
 * pixel (so zooming in loads finer tiles), coarsened until the viewport needs <= MAX_TILES tiles.
 * Cells are square, so a viewport stretched to the canvas (`fit` 'min': a few instances by
 * thousands of columns) takes the level of its denser-drawn axis, keeping each row apart.
 */
export function levelFor(info: PyramidInfo, viewport: Viewport, pixels: { w: number; h: number }, fit: 'max' | 'min' = 'max'): number {
  const pr = (viewport.r1 - viewport.r0) / Math.max(1, pixels.h);
  const pc = (viewport.c1 - viewport.c0) / Math.max(1, pixels.w);
  const perPx = fit === 'max' ? Math.max(pr, pc) : Math.min(pr, pc);
  let level = perPx <= 1 ? 0 : Math.floor(Math.log2(perPx));
  level = Math.max(0, Math.min(info.levels, level));
  while (level < info.levels && tilesFor(info, level, viewport).length > MAX_TILES) level++;
  return level;
}

/** The element window covering `tiles` (what one server request asks for). */
export function windowOf(info: PyramidInfo, tiles: TileId[]): Viewport | null {
  if (!tiles.length) return null;
  const span = info.tile << tiles[0]!.level;
  let ty0 = Infinity;
  let ty1 = -Infinity;
  let tx0 = Infinity;
  let tx1 = -Infinity;
  for (const t of tiles) {
    ty0 = Math.min(ty0, t.ty);
    ty1 = Math.max(ty1, t.ty);
    tx0 = Math.min(tx0, t.tx);
    tx1 = Math.max(tx1, t.tx);
  }
  return { r0: ty0 * span, c0: tx0 * span, r1: Math.min(info.rows, (ty1 + 1) * span), c1: Math.min(info.cols, (tx1 + 1) * span) };
}

export interface TileData extends TileId {
  rows: number;
  cols: number;
  mean: Float32Array;
  maxabs: Float32Array;
}

/** Least-recently-used cache of tiles by key. */
export class TileCache {
  private readonly map = new Map<string, TileData>();

  constructor(readonly capacity = 256) {}

  get(key: string): TileData | undefined {
    const t = this.map.get(key);
    if (t) {
      this.map.delete(key);
      this.map.set(key, t);
    }
    return t;
  }

  put(key: string, t: TileData): void {
    this.map.delete(key);
    this.map.set(key, t);
    while (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as string);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  get size(): number {
    return this.map.size;
  }

  keys(): string[] {
    return [...this.map.keys()];
  }
}

/** Fetches the tiles of `level` intersecting `window` (one server request). */
export type TileFetcher = (level: number, window: Viewport) => Promise<{ tiles: TileData[]; range?: { min: number | null; max: number | null } }>;

export class TilePyramidClient {
  readonly cache: TileCache;
  range: { min: number | null; max: number | null } | null = null;
  private readonly inflight = new Map<string, Promise<void>>();
  requests = 0;

  constructor(
    readonly info: PyramidInfo,
    private readonly fetcher: TileFetcher,
    capacity = 256,
  ) {
    this.cache = new TileCache(capacity);
  }

  /** Keys of the tiles the viewport needs at `level` that are neither cached nor being fetched. */
  missing(level: number, viewport: Viewport): TileId[] {
    return tilesFor(this.info, level, viewport).filter((t) => !this.cache.has(tileKey(t)) && !this.inflight.has(tileKey(t)));
  }

  /** Tiles already fetched some other way (the probe that learnt the pyramid's shape). */
  seed(tiles: TileData[], range?: { min: number | null; max: number | null }): void {
    if (range) this.range = range;
    for (const t of tiles) this.cache.put(tileKey(t), t);
  }

  /** Tiles for the viewport at `level`: cached ones at once, the missing ones in one request. */
  async load(level: number, viewport: Viewport): Promise<TileData[]> {
    const need = tilesFor(this.info, level, viewport);
    const miss = this.missing(level, viewport);
    if (miss.length) {
      const win = windowOf(this.info, miss)!;
      this.requests++;
      const p = this.fetcher(level, win).then((r) => {
        if (r.range) this.range = r.range;
        for (const t of r.tiles) this.cache.put(tileKey(t), t);
      });
      for (const t of miss) this.inflight.set(tileKey(t), p);
      try {
        await p;
      } finally {
        for (const t of miss) this.inflight.delete(tileKey(t));
      }
    }
    await Promise.all(need.map((t) => this.inflight.get(tileKey(t))).filter(Boolean));
    return need.map((t) => this.cache.get(tileKey(t))).filter((t): t is TileData => t !== undefined);
  }
}

/** Tiles out of a `tiles` result (meta.tiles listing + `<key>_mean` / `<key>_maxabs` tensors). */
export function tilesOfResult(meta: Record<string, unknown>, tensors: Record<string, { data: unknown }>): TileData[] {
  const listing = (meta.tiles as { key: string; level: number; ty: number; tx: number; rows: number; cols: number }[] | undefined) ?? [];
  const out: TileData[] = [];
  for (const t of listing) {
    const mean = tensors[`${t.key}_mean`]?.data;
    const maxabs = tensors[`${t.key}_maxabs`]?.data;
    if (!(mean instanceof Float32Array) || !(maxabs instanceof Float32Array)) continue;
    out.push({ level: t.level, ty: t.ty, tx: t.tx, rows: t.rows, cols: t.cols, mean, maxabs });
  }
  return out;
}

/** The pyramid a `tiles` result describes (meta rows, cols, tile, levels, shape); null if it lacks them. */
export function pyramidOfMeta(meta: Record<string, unknown>): (PyramidInfo & { shape: number[] }) | null {
  const n = (k: string) => (typeof meta[k] === 'number' && Number.isInteger(meta[k]) && (meta[k] as number) >= 0 ? (meta[k] as number) : null);
  const rows = n('rows');
  const cols = n('cols');
  const tile = n('tile');
  const levels = n('levels');
  const shape = Array.isArray(meta.shape) && meta.shape.every((d) => Number.isInteger(d)) ? (meta.shape as number[]) : null;
  if (rows === null || cols === null || !tile || levels === null || !shape) return null;
  return { rows, cols, tile, levels, shape };
}

/** The cell holding element (r, c) among `tiles` (all of one level): its mean and max |x|. */
export function valueAt(info: PyramidInfo, tiles: readonly TileData[], r: number, c: number): { mean: number; maxabs: number; level: number } | null {
  if (!(r >= 0 && c >= 0 && r < info.rows && c < info.cols)) return null;
  for (const t of tiles) {
    const span = info.tile << t.level;
    if (Math.floor(r / span) !== t.ty || Math.floor(c / span) !== t.tx) continue;
    const y = (Math.floor(r) - t.ty * span) >> t.level;
    const x = (Math.floor(c) - t.tx * span) >> t.level;
    if (y >= t.rows || x >= t.cols) return null;
    return { mean: t.mean[y * t.cols + x]!, maxabs: t.maxabs[y * t.cols + x]!, level: t.level };
  }
  return null;
}

/**
 * The q-quantile of |mean| over the cells of `tiles` (finite values only), for a colour scale
 * that a few outliers do not wash out (LayerNorm outputs: most values within ±3, some at ±20).
 * 0 when there are no finite values.
 */
export function robustMax(tiles: readonly TileData[], q = 0.99): number {
  let n = 0;
  for (const t of tiles) n += t.mean.length;
  const xs = new Float32Array(n);
  let k = 0;
  for (const t of tiles) for (let i = 0; i < t.mean.length; i++) { const v = Math.abs(t.mean[i]!); if (Number.isFinite(v)) xs[k++] = v; }
  if (!k) return 0;
  const s = xs.subarray(0, k).sort();
  return s[Math.min(k - 1, Math.max(0, Math.ceil(q * k) - 1))]!;
}
