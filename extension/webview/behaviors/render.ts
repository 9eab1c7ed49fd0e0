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
  };
  const items = (meta.instances ?? []).map((x, i) => {
    const predictions: Record<string, unknown> = {};
    for (const [m, list] of Object.entries(meta.predictions ?? {})) predictions[m] = list[i];
    const png = x.png ? r.tensors[x.png] : undefined;
    const out: RenderedInstance = { id: String(x.id), kind: x.kind, label: x.label ?? null, predictions, target: meta.targets?.[i] ?? null };
    if (x.text !== undefined) out.text = x.text;
    if (x.tokens) out.tokens = x.tokens;
    if (png && png.data instanceof Uint8Array) out.png = pngDataUrl(png.data);
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

/** Tokens coloured by a per-token divergence (|Δ log-prob| or 1 − agreement); `values[j]` is token j+shift. */
export function tokenView(tokens: string[], values: ArrayLike<number> | null, label: string): HTMLElement {
  const box = el('div', { class: 'tokens', 'aria-label': `tokens coloured by ${label}` });
  let max = 0;
  if (values) for (let j = 0; j < values.length; j++) if (Number.isFinite(values[j]!)) max = Math.max(max, Math.abs(values[j]!));
  // Targets are the next tokens: with one value per target, token i is predicted at step i-1.
  const shift = values && tokens.length === values.length + 1 ? 1 : 0;
  tokens.forEach((t, i) => {
    const s = el('span', { class: 'tok' }, t);
    const v = values && i - shift >= 0 && i - shift < values.length ? values[i - shift]! : NaN;
    if (Number.isFinite(v) && max > 0) {
      s.style.background = `color-mix(in srgb, var(--vscode-charts-red) ${Math.round((Math.abs(v) / max) * 70)}%, transparent)`;
      s.title = `${label}: ${v.toPrecision(3)}`;
    }
    box.append(s);
  });
  return box;
}

/** Two generations side by side, the other's text marked from where it departs from the base. */
export function generationPair(base: string, other: string): [HTMLElement, HTMLElement] {
  let k = 0;
  while (k < base.length && k < other.length && base[k] === other[k]) k++;
  const left = el('div', { class: 'gen' }, base.slice(0, k), el('mark', {}, base.slice(k)));
  const right = el('div', { class: 'gen' }, other.slice(0, k), el('mark', {}, other.slice(k)));
  if (k === base.length && k === other.length) {
    left.replaceChildren(base);
    right.replaceChildren(other);
  }
  return [left, right];
}
