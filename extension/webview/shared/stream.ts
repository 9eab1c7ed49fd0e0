/**
 * Streaming a comparison into a panel: the host posts one `resultPage` event per msgpack page.
 * A comparison of a base with N models is N envelopes in the order asked (one per model); an
 * envelope too big for one page arrives split (`page: {index, count}`) and is joined here.
 */
import { decodeEnvelope, joinPages, type Envelope, type Result } from './wire';

export class EnvelopeAssembler {
  private parts: Envelope[] = [];

  /** Feeds one page; returns a whole result when this page completes one, else null. */
  push(bytes: ArrayBuffer | Uint8Array): Result | null {
    const env = decodeEnvelope(bytes);
    const count = env.page?.count ?? 1;
    if (count <= 1) return { kind: env.kind, meta: env.meta, tensors: env.tensors };
    this.parts.push(env);
    if (this.parts.length < count) return null;
    const whole = joinPages(this.parts);
    this.parts = [];
    return whole;
  }
}

/** Every whole result in a list of page bytes (a `tiles` / `instances` reply). */
export function resultsOf(pages: ArrayBuffer[]): Result[] {
  const asm = new EnvelopeAssembler();
  const out: Result[] = [];
  for (const p of pages) {
    const r = asm.push(p);
    if (r) out.push(r);
  }
  return out;
}

/**
 * The models of `all` whose result is not in yet, in the order asked: what a resumed comparison
 * asks for, so a cancel loses at most the model that was being compared.
 */
export function stillToCompare(all: readonly string[], has: (id: string) => boolean): string[] {
  return all.filter((id) => !has(id));
}

/** The webview side of a streamed comparison (the parts of Rpc it needs). */
export interface CompareRpc {
  peekId(): number;
  request(method: 'compare', params: { kind: 'weights' | 'activations' | 'behavior'; base: string; models: string[]; options?: Record<string, unknown> }): Promise<{ resultId: string; pages: number; cancelled?: boolean }>;
  request(method: 'cancel', params: { requestId: number }): Promise<{ cancelled: boolean }>;
  on(name: 'resultPage', fn: (p: { requestId: number; page: number; pages: number; done: boolean; bytes: ArrayBuffer }) => void): () => void;
}

export interface CompareRun {
  requestId: number;
  /** Resolves when every page is in (or the run was cancelled); rejects with the host's error. */
  done: Promise<void>;
  /** Asks the host to cancel the comparison's job on the server (and to stop fetching pages). */
  cancel(): void;
  /** True once cancelled: by `cancel()`, or by the server (its job was cancelled elsewhere). */
  cancelled: boolean;
}

/**
 * Starts a comparison and calls `onResult` for each whole envelope as its pages stream in
 * (one per compared model), `onProgress(received, expected)` after each page: models whose
 * result is in, of the models compared (pages are not models: a cancel said "1 of 1 model"
 * while two were compared).
 */
export function streamCompare(
  rpc: CompareRpc,
  params: { kind: 'weights' | 'activations' | 'behavior'; base: string; models: string[]; options?: Record<string, unknown> },
  onResult: (r: Result) => void,
  onProgress: (received: number, expected: number, done: boolean) => void,
): CompareRun {
  const asm = new EnvelopeAssembler();
  const requestId = rpc.peekId();
  let received = 0; // whole results (models)
  const expected = () => Math.max(params.models.length, received);
  const run: CompareRun = {
    requestId,
    cancelled: false,
    done: Promise.resolve(),
    cancel: () => {
      if (run.cancelled) return;
      run.cancelled = true;
      off();
      void rpc.request('cancel', { requestId }).catch(() => undefined);
      onProgress(received, expected(), true);
    },
  };
  const off = rpc.on('resultPage', (p) => {
    if (p.requestId !== requestId || run.cancelled) return;
    const r = asm.push(p.bytes);
    if (r) received++;
    onProgress(received, expected(), p.done);
    if (r) onResult(r);
  });
  run.done = rpc.request('compare', params).then(
    (reply) => {
      off();
      if (reply?.cancelled && !run.cancelled) {
        // cancelled on the server (e.g. from VS Code's progress notification): the panel says so
        run.cancelled = true;
        onProgress(received, expected(), true);
      }
    },
    (e: unknown) => {
      off();
      if (!run.cancelled) throw e;
    },
  );
  return run;
}
