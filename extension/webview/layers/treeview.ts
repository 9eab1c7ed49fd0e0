/**
 * The module tree: one row per visible module or tensor, a cell per model with the measure
 * (containers without their own value show the worst inside, in italics), shaded by how bad it
 * is; keyboard navigation as in a VS Code tree.
 */
import { el, icon } from '../shared/dom';
import type { Measure } from './measures';
import type { LayersPanel } from './panel';
import { refreshRows } from './state';
import { navigate, rollUp, type Rolled } from './tree';

/** A cell's badness in [0, 1] (shading): against the worst shown, or on the measure's own scale. */
export function cellShade(m: Measure, value: number, worst: number): number {
  let bad: number;
  if (m.worse === 'higher') bad = worst ? value / worst : 0;
  else if (m.key === 'sqnr' || m.key === 'actSqnr') bad = Math.max(0, Math.min(1, (40 - value) / 40)); // 40 dB and up: fine
  else bad = Math.max(0, Math.min(1, 1 - value));
  return Math.max(0, Math.min(1, bad));
}

/** The largest value shown (the shared scale of a higher-is-worse measure); 0 otherwise. */
export function worstShown(m: Measure, rolled: (Map<string, Rolled> | null)[]): number {
  let worst = 0;
  for (const r of rolled) for (const x of r?.values() ?? []) if (x.value !== null && m.worse === 'higher') worst = Math.max(worst, x.value);
  return worst;
}

/** Whether a row's value hides a clearly worse layer inside it (marked ▲). */
export function hidesWorse(m: Measure, x: Rolled, id: string): boolean {
  if (x.worst === null || x.value === null || x.worstId === id) return false;
  return m.worse === 'higher' ? x.worst > 1.5 * x.value : x.worst < x.value - Math.abs(x.value) * 0.05;
}

export function renderTree(p: LayersPanel, treeEl: HTMLElement): void {
  const { ui, tree, index } = p.state;
  const rows = refreshRows(p.state);
  const rolled = p.others.map((o) => {
    const ix = index.get(o);
    return ix ? rollUp(tree, (id, n) => ix.value(id, n.kind, ui.measure, ui.mode), ui.measure.worse) : null;
  });
  const worst = worstShown(ui.measure, rolled);
  const frag = document.createDocumentFragment();
  const head = el('div', { class: 'trow muted', 'aria-hidden': 'true' }, el('span', { class: 'name' }, 'module'), ...p.others.map((o) => el('span', { class: 'cell' }, p.name(o))));
  frag.append(head);
  // what the marks mean, once, above the rows that use them
  frag.append(el('div', { class: 'tree-key muted' }, '— no value (not compared, or the measure does not apply) · ▲ a collapsed row hides a clearly worse layer inside'));
  rows.forEach((row, i) => {
    const n = row.node;
    const cells = rolled.map((r) => {
      const x = r?.get(n.id);
      const showRolled = !!x && (x.rolled || (row.hasChildren && !row.expanded && x.worst !== null && x.worstId !== n.id));
      const text = x?.value === null || x === undefined ? '—' : ui.measure.format(x.value);
      const span = el('span', { class: `cell${x?.rolled ? ' rolled' : ''}` }, text);
      if (x?.value !== null && x !== undefined) {
        span.style.background = `color-mix(in srgb, var(--vscode-charts-red) ${Math.round(cellShade(ui.measure, x.value, worst) * 45)}%, transparent)`;
      }
      if (showRolled && x?.worstId) {
        span.title = `${x.rolled ? 'worst inside' : 'own value'}; worst below: ${x.worstId || '(model)'} = ${x.worst === null ? '—' : ui.measure.format(x.worst)}`;
        // a collapsed row hiding a clearly worse layer says so
        if (hidesWorse(ui.measure, x, n.id)) span.append(el('span', { class: 'worse', 'aria-label': 'a worse layer inside' }, ' ▲'));
      }
      return span;
    });
    const twisty = el('span', { class: 'twisty', 'aria-hidden': 'true' }, row.hasChildren ? (row.expanded ? '▾' : '▸') : '');
    // the module's class (Linear, LayerNorm…) from the activation comparison, when it has run
    const type = n.kind === 'module' ? moduleType(p, n.id) : undefined;
    const div = el('div', {
      class: `trow${n.id === ui.selected ? ' sel' : ''}${i === ui.active ? ' active' : ''}${row.hit ? ' hit' : ''}`,
      role: 'treeitem',
      id: `row-${i}`,
      'aria-level': String(n.depth + 1),
      'aria-selected': String(n.id === ui.selected),
      ...(row.hasChildren ? { 'aria-expanded': String(row.expanded) } : {}),
    }, el('span', { class: 'name', title: `${n.id || '(model)'}${type ? ` (${type})` : ''}` }, '\u00a0'.repeat(n.depth * 2), twisty, n.kind === 'tensor' ? icon('symbol-array') : icon('symbol-module'), ` ${n.label}`, type ? el('span', { class: 'muted mtype' }, ` ${type}`) : ''), ...cells);
    twisty.addEventListener('click', (e) => {
      e.stopPropagation();
      toggle(p, n.id, !row.expanded);
    });
    div.addEventListener('click', () => {
      ui.active = i;
      p.select(n.id);
    });
    frag.append(div);
  });
  treeEl.replaceChildren(frag);
  treeEl.setAttribute('aria-activedescendant', `row-${ui.active}`);
  document.getElementById(`row-${ui.active}`)?.scrollIntoView({ block: 'nearest' });
}

function toggle(p: LayersPanel, id: string, open: boolean): void {
  if (open) p.state.ui.expanded.add(id);
  else p.state.ui.expanded.delete(id);
  p.save();
  p.show.tree();
}

/**
 * A key in the tree: Enter or Space selects the active row, the arrows, Home and End move and
 * open or close (see `navigate`). True when the key was the tree's.
 */
export function treeKey(p: LayersPanel, key: string): boolean {
  const { ui, rows } = p.state;
  if (key === 'Enter' || key === ' ') {
    const r = rows[ui.active];
    if (r) p.select(r.node.id);
    return true;
  }
  const nav = navigate(rows, ui.active, key);
  if (!nav) return false;
  ui.active = nav.index;
  if (nav.expand) ui.expanded.add(nav.expand);
  if (nav.collapse) ui.expanded.delete(nav.collapse);
  p.save();
  p.show.tree();
  return true;
}

/** A module's class as the activation comparison recorded it (the base's; the other model's
 * when the base lacks the module), or undefined before that comparison has come in. */
export function moduleType(p: Pick<LayersPanel, 'others' | 'state'>, id: string): string | undefined {
  for (const o of p.others) {
    const m = p.state.index.get(o)?.modules.get(id);
    const t = m?.type_base ?? m?.type_other;
    if (t) return t;
  }
  return undefined;
}
