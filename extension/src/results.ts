/**
 * Fetching a result's msgpack pages from the server: inline (base64 in the ResultRef) or through
 * a file the server wrote in our storage folder (read, size and sha256 checked). Pure Node (no
 * vscode import) so it is unit-tested against real files.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import * as P from '../shared/protocol';
import { errorText } from '../shared/errors';

export interface PageRequester {
  request<R>(method: string, params: unknown): Promise<R>;
}

export class ResultError extends Error {}

export interface FetchOptions {
  /** Result files must lie inside this folder (the storagePath given at initialize). */
  storageDir?: string;
  read?: (file: string) => Promise<Uint8Array>;
}

/** The bytes of one page; throws ResultError when the page has no data or the file is wrong. */
export async function readPage(ref: P.ResultRef, opts: FetchOptions = {}): Promise<Uint8Array> {
  if (ref.data !== undefined) return new Uint8Array(Buffer.from(ref.data, 'base64'));
  if (!ref.file) throw new ResultError(`page ${ref.page} of result ${ref.resultId} has no data yet`);
  const file = path.resolve(ref.file.path);
  if (opts.storageDir) {
    const rel = path.relative(path.resolve(opts.storageDir), file);
    if (rel.startsWith('..') || path.isAbsolute(rel)) {
      throw new ResultError(`result file ${file} is outside the extension's storage folder; refused`);
    }
  }
  let bytes: Uint8Array;
  try {
    bytes = await (opts.read ?? readFile)(file);
  } catch (e) {
    throw new ResultError(`cannot read result file ${file}: ${errorText(e)}`);
  }
  if (bytes.byteLength !== ref.file.size) {
    throw new ResultError(`result file ${file} has ${bytes.byteLength} bytes, expected ${ref.file.size}`);
  }
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (digest !== ref.file.sha256.toLowerCase()) {
    throw new ResultError(`result file ${file} is corrupt (sha256 ${digest.slice(0, 12)}…, expected ${ref.file.sha256.slice(0, 12)}…)`);
  }
  return bytes;
}

export interface Page {
  ref: P.ResultRef;
  bytes: Uint8Array;
}

/**
 * Every page of a result, in order, starting from the ref a compare/tiles/instances request
 * returned. While the result is still computing (`done: false`) the server holds a page request
 * until that page exists, so views fill in page by page. `maxPages` bounds a runaway result.
 */
export async function* fetchPages(first: P.ResultRef, src: PageRequester, opts: FetchOptions & { maxPages?: number } = {}): AsyncGenerator<Page> {
  const maxPages = opts.maxPages ?? 10_000;
  let ref = first;
  let next = first.page;
  for (let guard = 0; guard < maxPages; guard++) {
    if (ref.page === next && (ref.data !== undefined || ref.file)) {
      yield { ref, bytes: await readPage(ref, opts) };
      next++;
    }
    if (ref.done && next >= ref.pages) return;
    ref = await src.request<P.ResultRef>(P.RESULT_PAGE, { resultId: first.resultId, page: next });
    const p = P.problem(ref, P.Shapes.ResultRef, 'result');
    if (p) throw new ResultError(`malformed ${P.RESULT_PAGE} reply: ${p}`);
  }
  throw new ResultError(`result ${first.resultId} has more than ${maxPages} pages; stopped`);
}

/** Copies `bytes` into a fresh ArrayBuffer of exactly its length (postMessage transfers whole buffers). */
export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const out = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(out).set(bytes);
  return out;
}
