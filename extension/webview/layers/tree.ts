/**
 * The module tree of the Layers panel: modules by dotted path ('' is the model), parameter
 * tensors as leaves under their module. Pure (no DOM): building, roll-ups, filtering,
 * visible rows and keyboard navigation are unit-tested.
 */
export interface TreeNode {
  id: string;
  label: string;
  parent: string | null;
  depth: number;
  kind: 'module' | 'tensor';
  children: string[];
}

export class ModuleTree {
  readonly nodes = new Map<string, TreeNode>();
  /** Bumped whenever a node is added: what was computed from the tree at one version holds. */
  private changes = 0;

  get version(): number {
    return this.changes;
  }

  constructor() {
    this.nodes.set('', { id: '', label: '(model)', parent: null, depth: 0, kind: 'module', children: [] });
  }

  /** Adds a module path and its ancestors (idempotent; children keep first-seen order). */
  addModule(path: string): TreeNode {
    const have = this.nodes.get(path);
    if (have) return have;
    const cut = path.lastIndexOf('.');
    const parentPath = cut < 0 ? '' : path.slice(0, cut);
    const parent = this.addModule(parentPath);
    const node: TreeNode = { id: path, label: moduleLabel(path), parent: parentPath, depth: parent.depth + 1, kind: 'module', children: [] };
    this.nodes.set(path, node);
    parent.children.push(path);
    this.changes++;
    return node;
  }

  /** Adds a parameter tensor ('a.b.weight') under its module. Ids of tensors are their names. */
  addTensor(name: string): TreeNode {
    const have = this.nodes.get(name);
    if (have) return have;
    const cut = name.lastIndexOf('.');
    const parent = this.addModule(cut < 0 ? '' : name.slice(0, cut));
    const node: TreeNode = { id: name, label: cut < 0 ? name : name.slice(cut + 1), parent: parent.id, depth: parent.depth + 1, kind: 'tensor', children: [] };
    this.nodes.set(name, node);
    parent.children.push(name);
    this.changes++;
    return node;
  }

  get(id: string): TreeNode | undefined {
    return this.nodes.get(id);
  }

  /** Every id in depth-first order (parents before children). */
  order(): string[] {
    const out: string[] = [];
    const walk = (id: string) => {
      out.push(id);
      for (const c of this.nodes.get(id)!.children) walk(c);
    };
    walk('');
    return out;
  }

  isLeafModule(id: string): boolean {
    const n = this.nodes.get(id);
    return !!n && n.kind === 'module' && n.children.every((c) => this.nodes.get(c)!.kind === 'tensor');
  }
}

export interface Rolled {
  /** The node's own value, else the worst of its children's (then `rolled` is true). */
  value: number | null;
  rolled: boolean;
  /** The worst value anywhere in the subtree (own included) and where it is. */
  worst: number | null;
  worstId: string | null;
}

/**
 * Roll-up of a measure over the tree. `own(id)` gives a node's own value (weights: the server's
 * exact per-module statistics; activations: the module's own output). A node without one shows
 * the worst of its children, so a collapsed container still flags a bad layer inside it.
 */
export function rollUp(tree: ModuleTree, own: (id: string, node: TreeNode) => number | null, worse: 'higher' | 'lower'): Map<string, Rolled> {
  const out = new Map<string, Rolled>();
  const isWorse = (a: number, b: number) => (worse === 'higher' ? a > b : a < b);
  const visit = (id: string): Rolled => {
    const node = tree.get(id)!;
    let childWorst: number | null = null;
    let childWorstId: string | null = null;
    let worst: number | null = null;
    let worstId: string | null = null;
    for (const c of node.children) {
      const r = visit(c);
      if (r.value !== null && (childWorst === null || isWorse(r.value, childWorst))) {
        childWorst = r.value;
        childWorstId = c;
      }
      if (r.worst !== null && (worst === null || isWorse(r.worst, worst))) {
        worst = r.worst;
        worstId = r.worstId;
      }
    }
    const mine = own(id, node);
    if (mine !== null && (worst === null || !isWorse(worst, mine))) {
      worst = mine;
      worstId = id;
    }
    const r: Rolled = mine !== null ? { value: mine, rolled: false, worst, worstId } : { value: childWorst, rolled: childWorst !== null, worst, worstId: worstId ?? childWorstId };
    out.set(id, r);
    return r;
  };
  visit('');
  return out;
}

export type Matcher = (node: TreeNode) => boolean;

/** '/regex/' (or '/regex/i') filters by regular expression over the full path; anything else is a case-insensitive substring. */
export function parseFilter(text: string): { match: Matcher | null; error?: string } {
  const t = text.trim();
  if (!t) return { match: null };
  const re = /^\/(.*)\/([a-z]*)$/.exec(t);
  if (re) {
    try {
      const rx = new RegExp(re[1]!, re[2]);
      return { match: (n) => rx.test(n.id) };
    } catch (e) {
      return { match: null, error: `invalid regular expression: ${(e as Error).message}` };
    }
  }
  const low = t.toLowerCase();
  return { match: (n) => n.id.toLowerCase().includes(low) };
}

export interface Row {
  node: TreeNode;
  expanded: boolean;
  hasChildren: boolean;
  /** True when the row matches the filter itself (not only shown as an ancestor). */
  hit: boolean;
}

/**
 * The rows shown: the expanded part of the tree; with a filter, the matching nodes and their
 * ancestors (ancestors open as if expanded; matches keep their own expansion state).
 */
export function visibleRows(tree: ModuleTree, expanded: ReadonlySet<string>, match: Matcher | null): Row[] {
  const rows: Row[] = [];
  let keep: Set<string> | null = null;
  const hits = new Set<string>();
  const above = new Set<string>(); // strict ancestors of hits: shown open
  if (match) {
    keep = new Set();
    for (const node of tree.nodes.values()) {
      if (!match(node)) continue;
      hits.add(node.id);
      keep.add(node.id);
      for (let p = node.parent; p !== null && !above.has(p); p = tree.get(p)!.parent) {
        above.add(p);
        keep.add(p);
      }
    }
  }
  const walk = (id: string, forcedOpen: boolean) => {
    const node = tree.get(id)!;
    if (keep && !forcedOpen && !keep.has(id)) return;
    const isHit = hits.has(id);
    const open = above.has(id) || expanded.has(id);
    rows.push({ node, expanded: open, hasChildren: node.children.length > 0, hit: isHit });
    if (!open) return;
    // Below a hit, everything the user expands shows, filtered or not.
    for (const c of node.children) walk(c, forcedOpen || (isHit && expanded.has(id)));
  };
  walk('', false);
  return rows;
}

export interface NavResult {
  index: number;
  expand?: string;
  collapse?: string;
}

/** Tree keyboard navigation (WAI-ARIA tree pattern) over the visible rows. */
export function navigate(rows: Row[], index: number, key: string): NavResult | null {
  const row = rows[index];
  if (!row) return rows.length ? { index: 0 } : null;
  switch (key) {
    case 'ArrowDown':
      return { index: Math.min(rows.length - 1, index + 1) };
    case 'ArrowUp':
      return { index: Math.max(0, index - 1) };
    case 'Home':
      return { index: 0 };
    case 'End':
      return { index: rows.length - 1 };
    case 'ArrowRight':
      if (row.hasChildren && !row.expanded) return { index, expand: row.node.id };
      if (row.hasChildren && rows[index + 1]?.node.parent === row.node.id) return { index: index + 1 };
      return { index };
    case 'ArrowLeft': {
      if (row.hasChildren && row.expanded) return { index, collapse: row.node.id };
      const p = rows.findIndex((r) => r.node.id === row.node.parent);
      return { index: p >= 0 ? p : index };
    }
    default:
      return null;
  }
}

/** A module's name in the tree: its last path segment, or, when that is only an index into a
 * container ("12" of `features.12`), the path from the nearest named segment (`features.12`),
 * which says where it is; "12" alone does not. */
export function moduleLabel(path: string): string {
  const parts = path.split('.');
  let i = parts.length - 1;
  while (i > 0 && /^\d+$/.test(parts[i]!)) i--;
  return i === parts.length - 1 ? parts[i]! : parts.slice(i).join('.');
}
