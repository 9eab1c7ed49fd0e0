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
