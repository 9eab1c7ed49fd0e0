/** Rendering instances as the task renders them (bonsai/instances): image, text or tokens. */
import { el } from '../shared/dom';
import type { Result } from '../shared/wire';

export interface RenderedInstance {
  id: string;
  kind: string;
  label: string | null;
  text?: string;
  tokens?: string[];
  png?: string; // data URL
  predictions: Record<string, unknown>;
  target: unknown;
  /** A token sequence's prediction (a causal LM's next token at each position) as the server's
   * tokenizer decodes it, one string per token; absent for class predictions. */
  predictionTokens?: Record<string, string[] | null>;
  targetTokens?: string[] | null;
}

export function pngDataUrl(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:image/png;base64,${btoa(s)}`;
}

/** Instances out of an `instances` result, with their PNGs as data URLs and predictions per model. */
export function instancesOf(r: Result): { items: RenderedInstance[]; classNames: string[] | null } {
  const meta = r.meta as {
    instances?: { id: string; kind: string; label?: string | null; text?: string; tokens?: string[]; png?: string }[];
    predictions?: Record<string, unknown[]>;
    targets?: unknown[] | null;
    classNames?: string[] | null;
    predictionTokens?: Record<string, (string[] | null)[]>;
    targetTokens?: (string[] | null)[] | null;
  };
  const items = (meta.instances ?? []).map((x, i) => {
    const predictions: Record<string, unknown> = {};
    for (const [m, list] of Object.entries(meta.predictions ?? {})) predictions[m] = list[i];
    const png = x.png ? r.tensors[x.png] : undefined;
    const out: RenderedInstance = { id: String(x.id), kind: x.kind, label: x.label ?? null, predictions, target: meta.targets?.[i] ?? null };
    if (x.text !== undefined) out.text = x.text;
    if (x.tokens) out.tokens = x.tokens;
    if (png && png.data instanceof Uint8Array) out.png = pngDataUrl(png.data);
    if (meta.predictionTokens) {
      out.predictionTokens = {};
      for (const [m, list] of Object.entries(meta.predictionTokens)) out.predictionTokens[m] = list[i] ?? null;
      out.targetTokens = meta.targetTokens?.[i] ?? null;
    }
    return out;
  });
  return { items, classNames: meta.classNames ?? null };
}

/** A prediction as words: a class name for class indices, else a short JSON. */
export function predictionText(p: unknown, classNames: string[] | null): string {
  if (p === null || p === undefined) return '—';
  if (typeof p === 'number' && classNames && classNames[p] !== undefined) return classNames[p]!;
  const s = JSON.stringify(p);
  return s.length > 40 ? `${s.slice(0, 39)}…` : s;
}

/** A piece of text with its whitespace made visible, as the editor's "render whitespace" shows
 * it: a space as ·, a tab as →, a newline as ↵ followed by the line break itself. A generation of
 * only spaces and newlines would otherwise look empty. */
export interface WsPart {
  text: string;
  ws: boolean; // a marker (dimmed), standing for whitespace
  br: boolean; // a line break follows
}

const MARK: Record<string, string> = { ' ': '\u00b7', '\t': '\u2192', '\n': '\u21b5', '\r': '\u240d' };

export function whitespaceParts(text: string): WsPart[] {
  const out: WsPart[] = [];
  let run = '';
  const flush = () => {
    if (run) out.push({ text: run, ws: false, br: false });
    run = '';
  };
  for (const ch of text) {
    const m = MARK[ch];
    if (m === undefined) {
      run += ch;
      continue;
    }
    flush();
    const last = out[out.length - 1];
    // consecutive markers of one run share a span (ten spaces are one element, not ten)
    if (last && last.ws && !last.br && ch !== '\n') last.text += m;
    else out.push({ text: m, ws: true, br: ch === '\n' });
  }
  flush();
  return out;
}

/** `text` as DOM nodes with visible whitespace (see `whitespaceParts`). */
export function visibleText(text: string): Node[] {
  const nodes: Node[] = [];
  for (const p of whitespaceParts(text)) {
    nodes.push(p.ws ? el('span', { class: 'ws', 'aria-hidden': 'true' }, p.text) : document.createTextNode(p.text));
    if (p.br) nodes.push(el('br'));
  }
  return nodes;
}

/** Positions where `other`'s tokens differ from `base`'s (a longer side's extra tokens differ). */
export function tokenChanges(base: readonly string[] | null, other: readonly string[]): boolean[] {
  return other.map((t, i) => !base || i >= base.length || base[i] !== t);
}

/** "agrees on 56 of 64 next tokens" for a model's predictions against the base's. */
export function agreementText(base: readonly string[] | null, other: readonly string[]): string {
  if (!base) return `${other.length} next tokens`;
  const n = Math.max(base.length, other.length);
  const same = tokenChanges(base, other).filter((c) => !c).length;
  return same === n ? `same ${n} next tokens` : `agrees on ${same} of ${n} next tokens`;
}

/** Tokens coloured by a per-token divergence (|Δ log-prob| or 1 − agreement); `values[j]` is token j+shift. */
export function tokenView(tokens: string[], values: ArrayLike<number> | null, label: string, changed?: readonly boolean[]): HTMLElement {
  const box = el('div', { class: 'tokens', 'aria-label': `tokens coloured by ${label}` });
  let max = 0;
  if (values) for (let j = 0; j < values.length; j++) if (Number.isFinite(values[j]!)) max = Math.max(max, Math.abs(values[j]!));
  // Targets are the next tokens: with one value per target, token i is predicted at step i-1.
  const shift = values && tokens.length === values.length + 1 ? 1 : 0;
  tokens.forEach((t, i) => {
    const s = el('span', { class: changed?.[i] ? 'tok changed' : 'tok', 'data-token': t }, ...visibleText(t));
    const v = values && i - shift >= 0 && i - shift < values.length ? values[i - shift]! : NaN;
    if (Number.isFinite(v) && max > 0) {
      s.style.background = `color-mix(in srgb, var(--vscode-charts-red) ${Math.round((Math.abs(v) / max) * 70)}%, transparent)`;
      s.title = `${label}: ${v.toPrecision(3)}`;
    }
    box.append(s);
  });
  return box;
}

/** Two generations side by side, the other's text marked from where it departs from the base;
 * whitespace visible (a generation of newlines is not an empty box). */
export function generationPair(base: string, other: string): [HTMLElement, HTMLElement] {
  let k = 0;
  while (k < base.length && k < other.length && base[k] === other[k]) k++;
  const left = el('div', { class: 'gen' }, ...visibleText(base.slice(0, k)), el('mark', {}, ...visibleText(base.slice(k))));
  const right = el('div', { class: 'gen' }, ...visibleText(other.slice(0, k)), el('mark', {}, ...visibleText(other.slice(k))));
  if (k === base.length && k === other.length) {
    left.replaceChildren(...visibleText(base));
    right.replaceChildren(...visibleText(other));
  }
  return [left, right];
}
