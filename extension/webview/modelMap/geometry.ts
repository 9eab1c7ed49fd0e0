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

export function worldX(n: Pick<LayoutNode, 'col'>): number {
  return PAD + n.col * COL_W;
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
