/**
 * What the user types for a budgeted variant ("1.5 MB", "300 KiB"; "0.01"), and the server's
 * insertion applied to a text (the same edit the WorkspaceEdit makes). Pure (no vscode): tested.
 */

const UNITS: Record<string, number> = { b: 1, kb: 1000, kib: 1024, mb: 1000 ** 2, mib: 1024 ** 2, gb: 1000 ** 3, gib: 1024 ** 3 };

/** A size in bytes from "1.5 MB", "300KiB", "20000 B"; a bare number is MB. */
export function parseSize(text: string): { bytes: number } | { error: string } {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i.exec(text);
  if (!m) return { error: 'a size like 1.5 MB, 300 KiB or 20000 B (a bare number is MB)' };
  const bytes = Math.floor(Number(m[1]) * UNITS[(m[2] ?? 'MB').toLowerCase()]!);
  return bytes > 0 ? { bytes } : { error: 'a size above 0' };
}

/** How much worse than the base a recipe may be: a number of 0 or more (the scan's unit). */
export function parseLoss(text: string): { loss: number } | { error: string } {
  const t = text.trim();
  const v = Number(t);
  if (t === '' || !Number.isFinite(v)) return { error: 'a number, e.g. 0.01' };
  if (v < 0) return { error: 'how much worse than the base: 0 or more' };
  return { loss: v };
}

/** `text` with `edit.text` inserted at (line, character) (UTF-16 columns, as the editor counts). */
export function applyInsert(text: string, edit: { line: number; character: number; text: string }): string {
  let offset = 0;
  for (let l = 0; l < edit.line; l++) {
    const nl = text.indexOf('\n', offset);
    if (nl < 0) {
      offset = text.length;
      break;
    }
    offset = nl + 1;
  }
  offset = Math.min(text.length, offset + edit.character);
  return text.slice(0, offset) + edit.text + text.slice(offset);
}

/**
 * A size budget the user states for the whole model, as the scan's budget: the bytes its scanned
 * weights may take. The rest of the model (what the scan did not cover: embeddings, norms, biases,
 * the manifest) stays as the base stores it, so scanned = whole − (base size − base's scanned bytes).
 */
export function scannedBudget(whole: number, baseStoredSize: number, baseScannedBytes: number): { bytes: number } | { error: string } {
  const rest = baseStoredSize - baseScannedBytes;
  const bytes = whole - rest;
  if (bytes <= 0) return { error: `the rest of the model (what the scan does not cover) already takes ${rest.toLocaleString('en-US')} bytes: give more than that` };
  return { bytes };
}

/** The variant name the input box proposes: budget-<size> / within-<loss>, made unique. */
export function defaultVariantName(kind: 'size' | 'loss', value: number, taken: readonly string[]): string {
  const base = kind === 'size' ? `budget-${sizeLabel(value)}` : `within-${value}`;
  let name = base;
  for (let n = 2; taken.includes(name); n++) name = `${base}-${n}`;
  return name;
}

function sizeLabel(n: number): string {
  if (n >= 1000 ** 2) return `${+(n / 1000 ** 2).toPrecision(4)}MB`;
  if (n >= 1000) return `${+(n / 1000).toPrecision(4)}KB`;
  return `${n}B`;
}
