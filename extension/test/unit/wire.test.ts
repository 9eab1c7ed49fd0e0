// The webview's msgpack decoder, against the shared fixtures (tests/fixtures/wire/, also decoded
// by the Python tests) and against hand-made envelopes with unaligned tensor data.
import { encode } from '@msgpack/msgpack';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { at, decodeEnvelope, joinPages, typedArray, WireError } from '../../webview/shared/wire';

const dir = resolve(__dirname, '../../../tests/fixtures/wire');
const specs = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];

interface Expected {
  dtype: string;
  shape: number[];
  orig_dtype?: string;
  first: (number | string | boolean)[];
  sum: number | string;
  nan?: number;
  posinf?: number;
  neginf?: number;
}

const num = (v: number | string | boolean): number | bigint =>
  typeof v === 'boolean' ? Number(v) : v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : typeof v === 'string' ? BigInt(v) : v;

describe('wire fixtures', () => {
  // The fixtures are written by the wire helper; a checkout without them has nothing to check.
  it.skipIf(specs.length > 0)('are present (tests/fixtures/wire)', () => {
    expect.fail(`no fixtures in ${dir}`);
  });

  it.each(specs)('%s decodes to what the spec says', (file) => {
    const spec = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { kind: string; meta: Record<string, unknown>; pages: string[]; tensors: Record<string, Expected> };
    const pages = spec.pages.map((p) => {
      const buf = readFileSync(join(dir, p));
      return decodeEnvelope(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    });
    const result = joinPages(pages);
    expect(result.kind).toBe(spec.kind);
    expect(result.meta).toEqual(spec.meta);
    expect(Object.keys(result.tensors).sort()).toEqual(Object.keys(spec.tensors).sort());
    for (const [name, want] of Object.entries(spec.tensors)) {
      const t = result.tensors[name]!;
      expect(t.dtype, name).toBe(want.dtype);
      expect(t.shape, name).toEqual(want.shape);
      expect(t.origDtype, name).toBe(want.orig_dtype);
      expect(t.data.length).toBe(want.shape.reduce((a, b) => a * b, 1));
      // typed arrays are always aligned views, whatever the offset inside the message
      expect(t.data.byteOffset % t.data.BYTES_PER_ELEMENT).toBe(0);
      const first = Array.from(t.data.subarray(0, want.first.length) as ArrayLike<number | bigint>);
      first.forEach((v, i) => {
        const w = num(want.first[i]!);
        if (typeof w === 'bigint') expect(v, `${name}[${i}]`).toBe(w);
        else if (Number.isNaN(w)) expect(Number.isNaN(v as number), `${name}[${i}]`).toBe(true);
        else expect(v, `${name}[${i}]`).toBe(w);
      });
      if (typeof want.sum === 'string') {
        let s = 0n;
        for (const v of t.data as BigInt64Array) s += v;
        expect(s.toString(), name).toBe(want.sum);
      } else {
        let s = 0;
        let nan = 0;
        let pos = 0;
        let neg = 0;
        for (const v of t.data as Float64Array) {
          if (Number.isNaN(v)) nan++;
          else if (v === Infinity) pos++;
          else if (v === -Infinity) neg++;
          else s += v;
        }
        expect(s, name).toBeCloseTo(want.sum, 3);
        if (want.nan !== undefined) expect([nan, pos, neg], name).toEqual([want.nan, want.posinf, want.neginf]);
      }
    }
  });

  it.skipIf(!specs.includes('basic.json'))('basic.msgpack has float32 data at an unaligned offset, decoded by copy', () => {
    const buf = readFileSync(join(dir, 'basic.msgpack'));
    const env = decodeEnvelope(new Uint8Array(buf));
    const values = env.tensors.values!;
    expect(values.data).toBeInstanceOf(Float32Array);
    expect(at(values, 0, 1)).toBeCloseTo(0.5194932222366333, 6);
  });
});

describe('decodeEnvelope', () => {
  const f32 = new Float32Array([1.5, -2, 3.25, 4]);
  const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

  it('views aligned data in place and copies unaligned data', () => {
    const raw = bytesOf(f32);
    const big = new Uint8Array(raw.length + 1);
    big.set(raw, 1); // offset 1: not a multiple of 4
    const unaligned = typedArray('float32', big.subarray(1), 'x');
    expect(Array.from(unaligned as Float32Array)).toEqual([1.5, -2, 3.25, 4]);
    expect(unaligned.buffer).not.toBe(big.buffer);
    const aligned4 = new Uint8Array(raw.length + 4);
    aligned4.set(raw, 4);
    const view = typedArray('float32', aligned4.subarray(4), 'x');
    expect(view.buffer).toBe(aligned4.buffer); // zero-copy
    expect(() => typedArray('float32', new Uint8Array(6), 'odd')).toThrow(/6 bytes is not a multiple of float32/);
  });

  it('decodes every dtype and checks shapes', () => {
    const msg = encode({
      v: 1,
      kind: 'k',
      meta: { a: 1 },
      tensors: {
        i8: { dtype: 'int8', shape: [2], data: bytesOf(new Int8Array([-1, 2])) },
        u16: { dtype: 'uint16', shape: [1], data: bytesOf(new Uint16Array([65535])) },
        i64: { dtype: 'int64', shape: [1], data: bytesOf(new BigInt64Array([-(2n ** 62n)])) },
        f64: { dtype: 'float64', shape: [1, 1], data: bytesOf(new Float64Array([Math.PI])) },
        b: { dtype: 'bool', shape: [3], data: new Uint8Array([1, 0, 1]) },
      },
    });
    const env = decodeEnvelope(msg);
    expect(Array.from(env.tensors.i8!.data as Int8Array)).toEqual([-1, 2]);
    expect(env.tensors.u16!.data[0]).toBe(65535);
    expect(env.tensors.i64!.data[0]).toBe(-(2n ** 62n));
    expect(at(env.tensors.f64!, 0, 0)).toBe(Math.PI);
    expect(Array.from(env.tensors.b!.data as Uint8Array)).toEqual([1, 0, 1]);
  });

  it('names what is wrong', () => {
    const t = (x: object) => encode({ v: 1, kind: 'k', meta: {}, tensors: { x } });
    expect(() => decodeEnvelope(new Uint8Array([0xc1]))).toThrow(WireError);
    expect(() => decodeEnvelope(encode({ v: 2, kind: 'k', meta: {}, tensors: {} }))).toThrow(/not a version-1 result envelope/);
    expect(() => decodeEnvelope(encode({ v: 1, kind: 'k', tensors: {} }))).toThrow(/lacks 'meta'/);
    expect(() => decodeEnvelope(t({ dtype: 'complex64', shape: [1], data: new Uint8Array(8) }))).toThrow(/unknown dtype "complex64"/);
    expect(() => decodeEnvelope(t({ dtype: 'float32', shape: [3], data: new Uint8Array(8) }))).toThrow(/holds 2 elements, shape \[3\] needs 3/);
    expect(() => decodeEnvelope(t({ dtype: 'float32', shape: [-1], data: new Uint8Array(4) }))).toThrow(/bad shape/);
    expect(() => decodeEnvelope(t({ dtype: 'uint8', shape: [4], data: new Uint8Array(2), range: [3, 5] }))).toThrow(/bad range/);
  });

  it('joins ranged pieces from pages in any order and reports missing pages', () => {
    const all = new Int16Array([0, 1, 2, 3, 4, 5]);
    const page = (index: number, start: number, stop: number) =>
      decodeEnvelope(
        encode({
          v: 1,
          kind: 'tiles',
          meta: index === 0 ? { m: 1 } : {},
          page: { index, count: 2 },
          tensors: { x: { dtype: 'int16', shape: [2, 3], data: bytesOf(all.slice(start, stop)), range: [start, stop] } },
        }),
      );
    const r = joinPages([page(1, 3, 6), page(0, 0, 3)]);
    expect(Array.from(r.tensors.x!.data as Int16Array)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(r.meta).toEqual({ m: 1 });
    expect(at(r.tensors.x!, 1, 2)).toBe(5);
    expect(() => joinPages([page(0, 0, 3)])).toThrow(/have 1 of 2 pages/);
  });
});
