/**
 * Map geometry shared by the canvas renderer and the SVG export: where a layout cell sits in
 * world coordinates, and the tapered edge between a parent and a child (a cubic with level
 * tangents, its width going from the parent's node size to the child's).
 */
import type { LayoutNode } from './layout';

export const COL_W = 130;
export const ROW_H = 30;
export const HEADER_H = 24;
export const PAD = 28;
/** An edge is this fraction of the node diameter wide at each end. */
export const TAPER = 0.55;

/** `colW`: the column width in world units (the map stretches its columns to fill its width). */
export function worldX(n: Pick<LayoutNode, 'col'>, colW: number = COL_W): number {
  return PAD + n.col * colW;
}

/** Below this zoom the map draws no names: fitting a map zooms no further out than this. */
export const K_NAMES = 0.6;

/**
 * The zoom a fitted map starts at and the column width that fills the view's width at that zoom:
 * the whole width fits when it can (k up to 1.2), the height only down to a zoom where names are
 * drawn (a tall map scrolls instead of shrinking into a strip), and columns widen to use the
 * width left over (at most three times their width, so a branch still reads as one).
 */
export function fitColumns(width: number, height: number, columns: number, rows: number): { k: number; colW: number } {
  const cols = Math.max(1, columns);
  const w = PAD * 2 + (cols - 1) * COL_W + 80;
  const h = PAD + Math.max(1, rows) * ROW_H;
  const k = Math.max(0.02, Math.min(1.2, width / w, Math.max(K_NAMES, (height - HEADER_H) / h)));
  const colW = cols > 1 ? Math.max(COL_W, Math.min(3 * COL_W, (width / k - PAD * 2 - 80) / (cols - 1))) : COL_W;
  return { k, colW };
}

export function worldY(n: Pick<LayoutNode, 'row'>): number {
  return PAD / 2 + n.row * ROW_H;
}

export interface Taper {
  /** Top curve from parent to child, then bottom curve back: M, C, L, C, Z. */
  top: [number, number, number, number, number, number, number, number];
  bottom: [number, number, number, number, number, number, number, number];
}

export function taper(px: number, py: number, rp: number, cx: number, cy: number, rc: number): Taper {
  const wp = Math.max(0.6, rp * TAPER);
  const wc = Math.max(0.6, rc * TAPER);
  // Same-column edges (op-kind columns can hold a child under its parent) bend out to the right.
  const dx = cx - px;
  const bend = Math.abs(dx) < 1 ? COL_W * 0.4 : dx / 2;
  const m1 = px + bend;
  const m2 = Math.abs(dx) < 1 ? cx + bend : cx - dx / 2;
  return {
    top: [px, py - wp, m1, py - wp, m2, cy - wc, cx, cy - wc],
    bottom: [cx, cy + wc, m2, cy + wc, m1, py + wp, px, py + wp],
  };
}

export function taperSvgPath(t: Taper): string {
  const f = (v: number) => v.toFixed(1);
  const [a, b, c, d, e, g, h, i] = t.top;
  const [j, k, l, m, n, o, p, q] = t.bottom;
  return `M${f(a)},${f(b)}C${f(c)},${f(d)} ${f(e)},${f(g)} ${f(h)},${f(i)}L${f(j)},${f(k)}C${f(l)},${f(m)} ${f(n)},${f(o)} ${f(p)},${f(q)}Z`;
}
