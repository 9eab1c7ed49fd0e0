import { describe, expect, it } from 'vitest';
import { TileCache, TilePyramidClient, levelFor, pyramidInfo, tileKey, tilesFor, windowOf, type TileData, type Viewport } from '../../../webview/layers/tiles';

const fake = (level: number, ty: number, tx: number): TileData => ({ level, ty, tx, rows: 1, cols: 1, mean: new Float32Array(1), maxabs: new Float32Array(1) });

describe('tile pyramid', () => {
  it('matches the server pyramid info', () => {
    expect(pyramidInfo([3072, 768])).toEqual({ rows: 3072, cols: 768, tile: 256, levels: 4 });
    expect(pyramidInfo([64, 3, 3, 3])).toEqual({ rows: 64, cols: 27, tile: 256, levels: 0 });
    expect(pyramidInfo([1000])).toEqual({ rows: 1, cols: 1000, tile: 256, levels: 2 });
    expect(pyramidInfo([])).toEqual({ rows: 1, cols: 1, tile: 256, levels: 0 });
  });

  it('lists the tiles of a viewport and the window to ask for', () => {
    const info = pyramidInfo([3072, 768]);
    expect(tilesFor(info, 4, { r0: 0, c0: 0, r1: 3072, c1: 768 }).map(tileKey)).toEqual(['L4_0_0']);
    expect(tilesFor(info, 0, { r0: 200, c0: 500, r1: 600, c1: 900 }).map(tileKey)).toEqual(['L0_0_1', 'L0_0_2', 'L0_1_1', 'L0_1_2', 'L0_2_1', 'L0_2_2']);
    expect(tilesFor(info, 0, { r0: 5000, c0: 0, r1: 6000, c1: 10 })).toEqual([]);
    const t = tilesFor(info, 1, { r0: 600, c0: 0, r1: 1100, c1: 768 });
    expect(t.map(tileKey)).toEqual(['L1_1_0', 'L1_1_1', 'L1_2_0', 'L1_2_1']);
    expect(windowOf(info, t)).toEqual({ r0: 512, c0: 0, r1: 1536, c1: 768 });
  });

  it('picks the finest level whose cells are at least a pixel, within 64 tiles', () => {
    const info = pyramidInfo([3072, 768]);
    const all: Viewport = { r0: 0, c0: 0, r1: 3072, c1: 768 };
    expect(levelFor(info, all, { w: 400, h: 400 })).toBe(2); // 7.68 elements per pixel -> 4x4 cells
    expect(levelFor(info, { r0: 0, c0: 0, r1: 300, c1: 300 }, { w: 400, h: 400 })).toBe(0);
    expect(levelFor(info, all, { w: 100_000, h: 100_000 })).toBe(0); // 12 x 3 = 36 tiles at level 0
    const huge = pyramidInfo([16384, 16384]);
    expect(levelFor(huge, { r0: 0, c0: 0, r1: 16384, c1: 16384 }, { w: 100_000, h: 100_000 })).toBe(3); // 8 x 8 = 64 tiles
  });

  it('keeps the rows of a wide activation matrix apart when stretched to the canvas', () => {
    const info = pyramidInfo([16, 30, 384]); // 16 instances x 30 tokens x 384 features
    expect(info).toEqual({ rows: 16, cols: 11520, tile: 256, levels: 6 });
    const all: Viewport = { r0: 0, c0: 0, r1: 16, c1: 11520 };
    expect(levelFor(info, all, { w: 420, h: 128 })).toBe(4); // square cells: 16 rows in one cell
    expect(levelFor(info, all, { w: 420, h: 128 }, 'min')).toBe(0); // one row per cell, 45 tiles
    const wide = pyramidInfo([256, 40000]);
    expect(levelFor(wide, { r0: 0, c0: 0, r1: 256, c1: 40000 }, { w: 420, h: 128 }, 'min')).toBe(2); // level 1 would need 79 tiles
  });

  it('caches tiles (LRU) and asks only for the missing ones', async () => {
    const info = pyramidInfo([1024, 1024]);
    const asked: [number, Viewport][] = [];
    const client = new TilePyramidClient(info, async (level, w) => {
      asked.push([level, w]);
      return { tiles: tilesFor(info, level, w).map((t) => fake(t.level, t.ty, t.tx)), range: { min: -1, max: 1 } };
    }, 6);
    const a = await client.load(0, { r0: 0, c0: 0, r1: 512, c1: 512 });
    expect(a.map(tileKey)).toEqual(['L0_0_0', 'L0_0_1', 'L0_1_0', 'L0_1_1']);
    const b = await client.load(0, { r0: 256, c0: 256, r1: 768, c1: 768 });
    expect(b.map(tileKey)).toEqual(['L0_1_1', 'L0_1_2', 'L0_2_1', 'L0_2_2']);
    expect(asked).toEqual([
      [0, { r0: 0, c0: 0, r1: 512, c1: 512 }],
      [0, { r0: 256, c0: 256, r1: 768, c1: 768 }], // bounding window of L0_1_2, L0_2_1, L0_2_2
    ]);
    expect(client.cache.size).toBe(6); // capacity: the oldest were dropped
    expect(client.range).toEqual({ min: -1, max: 1 });
    await client.load(0, { r0: 256, c0: 256, r1: 768, c1: 768 });
    expect(asked.length).toBe(2);
    const c = new TileCache(2);
    c.put('a', fake(0, 0, 0));
    c.put('b', fake(0, 0, 1));
    c.get('a');
    c.put('c', fake(0, 0, 2));
    expect(c.keys()).toEqual(['a', 'c']);
  });

  it('shares one request between concurrent loads', async () => {
    const info = pyramidInfo([512, 512]);
    let calls = 0;
    const client = new TilePyramidClient(info, async (level, w) => {
      calls++;
      await new Promise((r) => setTimeout(r, 5));
      return { tiles: tilesFor(info, level, w).map((t) => fake(t.level, t.ty, t.tx)) };
    });
    const [x, y] = await Promise.all([client.load(1, { r0: 0, c0: 0, r1: 512, c1: 512 }), client.load(1, { r0: 0, c0: 0, r1: 100, c1: 100 })]);
    expect(calls).toBe(1);
    expect(x.map(tileKey)).toEqual(['L1_0_0']);
    expect(y.map(tileKey)).toEqual(['L1_0_0']);
  });
});
