/**
 * The provenance map's layout, like a git graph: one row per branch (a model's first child
 * continues its row, every further child opens a new row below), and columns either by step
 * (depth from the root) or by op kind (one column per op, so models made by the same op line up
 * even at different depths). Collapsed models hide their descendants. Pure: no DOM.
 */
import type { Lineage } from './lineage';

export type ColumnMode = 'step' | 'op';

export interface LayoutNode {
  id: string;
  col: number;
  row: number;
  /** Descendants hidden under this collapsed node (0 when expanded or a leaf). */
  hidden: number;
}

export interface LayoutColumn {
  key: string;
  label: string;
}

export interface Layout {
  nodes: LayoutNode[];
  byId: Map<string, LayoutNode>;
  columns: LayoutColumn[];
  rows: number;
  /** Visible parent -> child pairs. */
  edges: [string, string][];
}

export const BASE_COLUMN = '(base)';

export function computeLayout(lin: Lineage, mode: ColumnMode, collapsed: ReadonlySet<string> = new Set()): Layout {
  // Which models show (a collapsed model hides its descendants), in depth-first order.
  const visible: string[] = [];
  const hidden = new Map<string, number>();
  const walk: string[] = [...lin.roots].reverse();
  while (walk.length) {
    const id = walk.pop()!;
    visible.push(id);
    const kids = lin.children.get(id) ?? [];
    if (collapsed.has(id) && kids.length) {
      hidden.set(id, lin.descendants(id).length);
      continue;
    }
    for (let i = kids.length - 1; i >= 0; i--) walk.push(kids[i]!);
  }

  let columns: LayoutColumn[];
  let colOf: (id: string) => number;
  if (mode === 'step') {
    const maxDepth = visible.reduce((a, id) => Math.max(a, lin.depth.get(id) ?? 0), 0);
    columns = Array.from({ length: maxDepth + 1 }, (_, d) => ({ key: String(d), label: d === 0 ? 'base' : `step ${d}` }));
    colOf = (id) => lin.depth.get(id) ?? 0;
  } else {
    // Op columns ordered by the shallowest model each op made, then by first appearance, so the
    // map still reads left to right from the base.
    const first = new Map<string, { depth: number; seen: number }>();
    visible.forEach((id, i) => {
      const key = opKey(lin, id);
      const d = lin.depth.get(id) ?? 0;
      const cur = first.get(key);
      if (!cur || d < cur.depth) first.set(key, { depth: d, seen: cur?.seen ?? i });
    });
    const keys = [...first.entries()].sort((a, b) => a[1].depth - b[1].depth || a[1].seen - b[1].seen).map(([k]) => k);
    columns = keys.map((k) => ({ key: k, label: k === BASE_COLUMN ? 'base' : k }));
    const index = new Map(keys.map((k, i) => [k, i]));
    colOf = (id) => index.get(opKey(lin, id))!;
  }

  // Rows: the oldest child continues its parent's row when it sits to its right (always, by
  // step; by op kind, a repeated or earlier op cannot), every other child opens a new row once
  // the branch before it is laid out.
  const rowOf = new Map<string, number>();
  let nextRow = 0;
  const visibleSet = new Set(visible);
  const stack: { id: string; row: number | null }[] = [...lin.roots].reverse().map((id) => ({ id, row: null }));
  while (stack.length) {
    const { id, row } = stack.pop()!;
    const r = row ?? nextRow++;
    rowOf.set(id, r);
    const kids = (lin.children.get(id) ?? []).filter((c) => visibleSet.has(c));
    for (let i = kids.length - 1; i >= 0; i--) {
      const c = kids[i]!;
      stack.push({ id: c, row: i === 0 && colOf(c) > colOf(id) ? r : null });
    }
  }

  const nodes = visible.map((id) => ({ id, col: colOf(id), row: rowOf.get(id)!, hidden: hidden.get(id) ?? 0 }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const edges: [string, string][] = [];
  for (const n of nodes) {
    const p = lin.parentOf(n.id);
    if (p !== undefined && byId.has(p)) edges.push([p, n.id]);
  }
  return { nodes, byId, columns, rows: nextRow, edges };
}

/** A root (or a model without an op) belongs to the base column. */
export function opKey(lin: Lineage, id: string): string {
  const m = lin.byId.get(id)!;
  return lin.parentOf(id) === undefined || !m.op ? BASE_COLUMN : m.op;
}
