/**
 * Decoding Bonsai's msgpack result envelope (server/modelbonsai/wire.py) into typed arrays.
 *
 *   {"v": 1, "kind", "meta", "tensors": {name: {"dtype", "shape", "data", "orig_dtype"?, "range"?}}, "page"?}
 *
 * Data is little-endian. msgpack gives no alignment, so a tensor's bytes may start at any offset
 * inside the message: a typed array over them is made in place only when the offset is a multiple
 * of the element size; otherwise the bytes are copied into a fresh, aligned buffer.
 */
import { decode } from '@msgpack/msgpack';
import { errorText } from '../../shared/errors';

export const WIRE_VERSION = 1;

const CTORS = {
  bool: Uint8Array,
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  uint32: Uint32Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  float32: Float32Array,
  float64: Float64Array,
} as const;

export type WireDtype = keyof typeof CTORS;
export type TypedArray = InstanceType<(typeof CTORS)[WireDtype]>;

export interface Tensor {
  dtype: WireDtype;
  shape: number[];
  data: TypedArray;
  /** float16 / bfloat16 when the server widened them to float32. */
  origDtype?: string;
}

export interface Piece extends Tensor {
  /** Element range [start, stop) of the flattened tensor this page piece holds. */
  range?: [number, number];
}

export interface Envelope {
  kind: string;
  meta: Record<string, unknown>;
  tensors: Record<string, Piece>;
  page?: { index: number; count: number };
}

export class WireError extends Error {}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function isWireDtype(d: unknown): d is WireDtype {
  return typeof d === 'string' && Object.prototype.hasOwnProperty.call(CTORS, d);
}

/** A typed array over `bytes`: zero-copy when aligned (and the host is little-endian), else a copy. */
export function typedArray(dtype: WireDtype, bytes: Uint8Array, name = '?'): TypedArray {
  const Ctor = CTORS[dtype];
  const size = Ctor.BYTES_PER_ELEMENT;
  if (bytes.byteLength % size !== 0) {
    throw new WireError(`tensor '${name}': ${bytes.byteLength} bytes is not a multiple of ${dtype} (${size} bytes)`);
  }
  const n = bytes.byteLength / size;
  if (!LITTLE_ENDIAN && size > 1) return fromBigEndianHost(dtype, bytes, n);
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, n);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Ctor(copy.buffer, 0, n);
}

/** Rare: a big-endian host reads each element through a DataView. */
function fromBigEndianHost(dtype: WireDtype, bytes: Uint8Array, n: number): TypedArray {
  const Ctor = CTORS[dtype];
  const out = new Ctor(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = Ctor.BYTES_PER_ELEMENT;
  for (let i = 0; i < n; i++) {
    const o = i * size;
    const v =
      dtype === 'uint16' ? view.getUint16(o, true)
      : dtype === 'int16' ? view.getInt16(o, true)
      : dtype === 'uint32' ? view.getUint32(o, true)
      : dtype === 'int32' ? view.getInt32(o, true)
      : dtype === 'int64' ? view.getBigInt64(o, true)
      : dtype === 'uint64' ? view.getBigUint64(o, true)
      : dtype === 'float32' ? view.getFloat32(o, true)
      : view.getFloat64(o, true);
    (out as unknown as (number | bigint)[])[i] = v;
  }
  return out;
}

function decodeTensor(name: string, raw: unknown): Piece {
  if (typeof raw !== 'object' || raw === null) throw new WireError(`tensor '${name}' must be a map with dtype, shape and data`);
  const o = raw as Record<string, unknown>;
  if (!isWireDtype(o.dtype)) throw new WireError(`tensor '${name}' has unknown dtype ${JSON.stringify(o.dtype)}`);
  if (!Array.isArray(o.shape) || !o.shape.every((s) => Number.isInteger(s) && (s as number) >= 0)) {
    throw new WireError(`tensor '${name}' has a bad shape ${JSON.stringify(o.shape)}`);
  }
  if (!(o.data instanceof Uint8Array)) throw new WireError(`tensor '${name}': data must be binary`);
  const shape = o.shape as number[];
  const data = typedArray(o.dtype, o.data, name);
  const total = shape.reduce((a, b) => a * b, 1);
  let range: [number, number] | undefined;
  if (o.range !== undefined) {
    const r = o.range;
    if (!Array.isArray(r) || r.length !== 2 || !r.every(Number.isInteger) || r[0] < 0 || r[1] < r[0] || r[1] > total) {
      throw new WireError(`tensor '${name}' has a bad range ${JSON.stringify(r)}`);
    }
    range = [r[0] as number, r[1] as number];
    if (data.length !== range[1] - range[0]) {
      throw new WireError(`tensor '${name}': piece holds ${data.length} elements, range needs ${range[1] - range[0]}`);
    }
  } else if (data.length !== total) {
    throw new WireError(`tensor '${name}': data holds ${data.length} elements, shape [${shape.join(', ')}] needs ${total}`);
  }
  const out: Piece = { dtype: o.dtype, shape, data };
  if (typeof o.orig_dtype === 'string') out.origDtype = o.orig_dtype;
  if (range) out.range = range;
  return out;
}

/** Decode one msgpack envelope (one page). */
export function decodeEnvelope(message: ArrayBuffer | Uint8Array): Envelope {
  let env: unknown;
  try {
    env = decode(message instanceof Uint8Array ? message : new Uint8Array(message));
  } catch (e) {
    throw new WireError(`not a msgpack result: ${errorText(e)}`);
  }
  if (typeof env !== 'object' || env === null || (env as { v?: unknown }).v !== WIRE_VERSION) {
    throw new WireError(`not a version-${WIRE_VERSION} result envelope`);
  }
  const e = env as Record<string, unknown>;
  for (const key of ['kind', 'meta', 'tensors']) if (!(key in e)) throw new WireError(`result envelope lacks '${key}'`);
  if (typeof e.tensors !== 'object' || e.tensors === null) throw new WireError("result envelope's tensors must be a map");
  const tensors: Record<string, Piece> = {};
  for (const [name, raw] of Object.entries(e.tensors as Record<string, unknown>)) tensors[name] = decodeTensor(name, raw);
  const out: Envelope = { kind: String(e.kind), meta: (e.meta ?? {}) as Record<string, unknown>, tensors };
  const page = e.page as { index?: unknown; count?: unknown } | undefined;
  if (page && Number.isInteger(page.index) && Number.isInteger(page.count)) out.page = { index: page.index as number, count: page.count as number };
  return out;
}

export interface Result {
  kind: string;
  meta: Record<string, unknown>;
  tensors: Record<string, Tensor>;
}

/** Reassemble a paged result (pages in any order; tensors split into ranged pieces are joined). */
export function joinPages(pages: Envelope[]): Result {
  if (pages.length === 0) throw new WireError('no pages to join');
  const sorted = [...pages].sort((a, b) => (a.page?.index ?? 0) - (b.page?.index ?? 0));
  const count = sorted[0]!.page?.count ?? 1;
  if (sorted.length !== count) throw new WireError(`have ${sorted.length} of ${count} pages`);
  sorted.forEach((p, i) => {
    if ((p.page?.index ?? 0) !== i) throw new WireError(`page ${i} is missing`);
  });
  const first = sorted[0]!;
  const tensors: Record<string, Tensor> = {};
  const pieces = new Map<string, Piece[]>();
  for (const p of sorted) {
    for (const [name, t] of Object.entries(p.tensors)) {
      if (!t.range) {
        tensors[name] = stripRange(t);
        continue;
      }
      const list = pieces.get(name) ?? [];
      list.push(t);
      pieces.set(name, list);
    }
  }
  for (const [name, list] of pieces) {
    const { dtype, shape } = list[0]!;
    const total = shape.reduce((a, b) => a * b, 1);
    const Ctor = CTORS[dtype];
    const data = new Ctor(total);
    let covered = 0;
    for (const piece of list) {
      if (piece.dtype !== dtype || piece.shape.join() !== shape.join()) throw new WireError(`tensor '${name}': pieces disagree on dtype or shape`);
      (data as unknown as { set(a: ArrayLike<number | bigint>, o: number): void }).set(piece.data as ArrayLike<number | bigint>, piece.range![0]);
      covered += piece.range![1] - piece.range![0];
    }
    if (covered !== total) throw new WireError(`tensor '${name}': pieces cover ${covered} of ${total} elements`);
    tensors[name] = { dtype, shape, data, ...(list[0]!.origDtype ? { origDtype: list[0]!.origDtype } : {}) };
  }
  return { kind: first.kind, meta: first.meta, tensors };
}

function stripRange(t: Piece): Tensor {
  const { range: _range, ...rest } = t;
  return rest;
}

/** Element at a multi-index (row-major), for views and tests. */
export function at(t: Tensor, ...index: number[]): number | bigint {
  let flat = 0;
  for (let i = 0; i < t.shape.length; i++) flat = flat * t.shape[i]! + (index[i] ?? 0);
  return t.data[flat]!;
}
