/**
 * Selection details. One model: its recipe (the ops from the root, intermediate steps included)
 * and its metrics with their change against the parent. Two models: their recipe diff, side by
 * side. 2–16 models: what varies among them, one bar chart per headline
 * metric grouped by up to two varying variables, a refine menu to narrow the selection, and
 * hover linked with the other views. Buttons open Behaviors or Layers for the selection, with
 * the selected model closest to the root as the base.
 */
import { el, icon, onNextFrame } from '../shared/dom';
import { barAxis, formatDelta, formatMetric } from '../shared/format';
import type { App, Change } from './app';
import { change } from './lineage';
import { linear, short, themeColors } from './scales';
import { svg } from '../shared/charts';
import { ABSENT, closestToRoot, groupBars, recipe, whatVaries, type Variable } from './whatVaries';
import { recipeDiff } from './recipeDiff';

export const MAX_COMPARE = 16;
const PALETTE = ['--vscode-charts-blue', '--vscode-charts-orange', '--vscode-charts-green', '--vscode-charts-purple', '--vscode-charts-yellow', '--vscode-charts-red'];
const FALLBACK = ['#3794ff', '#d18616', '#89d185', '#b180d7', '#cca700', '#f14c4c'];

export class DetailsView {
  readonly root: HTMLElement;

  constructor(
    private readonly app: App,
    private readonly open: (view: 'behaviors' | 'layers', base: string, others: string[]) => void,
  ) {
    this.root = el('section', { class: 'mm-details', 'aria-label': 'Selection details', 'aria-live': 'polite' });
    app.on((c: Change) => {
      if (c === 'selection' || c === 'data' || c === 'filters' || c === 'encoding') this.request();
      else if (c === 'hover') this.highlight();
    });
  }

  /** Redraws on the next frame (once, however many changes come before it). */
  readonly request = onNextFrame(() => this.render());

  private render(): void {
    const ids = this.app.lin.order.filter((id) => this.app.selection.has(id));
    const header = el('h2', {}, ids.length ? `Selection: ${ids.length} model${ids.length === 1 ? '' : 's'}` : 'Selection');
    if (ids.length === 0) {
      this.root.replaceChildren(header, el('p', { class: 'muted' }, 'Click a model, shift-click or shift-drag for several, or click a column header. Two to 16 models are compared here.'));
      return;
    }
    const parts: HTMLElement[] = [header, this.actions(ids)];
    if (ids.length === 1) parts.push(...this.single(ids[0]!));
    else if (ids.length <= MAX_COMPARE) parts.push(...this.multi(ids));
    else parts.push(el('p', { class: 'muted' }, `Narrow the selection to ${MAX_COMPARE} models or fewer to see what varies.`));
    this.root.replaceChildren(...parts);
    this.highlight();
  }

  private actions(ids: string[]): HTMLElement {
    const base = closestToRoot(this.app.lin, ids)!;
    const others = ids.filter((id) => id !== base);
    const mk = (view: 'behaviors' | 'layers', label: string, codicon: string) => {
      const b = el('button', { title: `${label}: ${this.app.lin.byId.get(base)!.name} is the base` }, icon(codicon), ` ${label}`);
      b.addEventListener('click', () => this.open(view, base, others));
      return b;
    };
    const grow = el('select', { 'aria-label': 'Add to the selection' });
    grow.append(el('option', { value: '' }, '+ add…'));
    for (const k of ['parents', 'children', 'ancestors', 'descendants']) grow.append(el('option', { value: k }, `+ ${k}`));
    grow.addEventListener('change', () => {
      if (grow.value) this.app.extend(grow.value as 'parents');
    });
    const clear = el('button', { class: 'secondary' }, 'Clear');
    clear.addEventListener('click', () => this.app.select([], 'replace'));
    return el('div', { class: 'mm-subbar' }, mk('behaviors', 'Behaviors', 'symbol-event'), mk('layers', 'Layers', 'layers'), grow, clear);
  }

  private single(id: string): HTMLElement[] {
    const { lin } = this.app;
    const full = this.app.full;
    const m = lin.byId.get(id)!;
    const steps = recipe(full, id);
    const root = full.byId.get(full.ancestry(id)[0]!)!;
    const list = el('ol', { class: 'mm-recipe' }, el('li', {}, el('strong', {}, root.name), ' (base)'));
    for (const s of steps) {
      const params = Object.entries(s.params).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
      const li = el('li', {}, el('code', {}, s.op), params.length ? ` ${params.join(', ')}` : '', el('span', { class: 'muted' }, ` → ${full.byId.get(s.id)!.name}`));
      li.dataset.model = s.id;
      li.addEventListener('mouseenter', () => this.app.setHover(s.id));
      list.append(li);
    }
    const parent = lin.parentOf(id);
    const rows = m.metrics.map((x) => {
      const pv = parent !== undefined ? lin.metric(parent, x.key) : undefined;
      const c = pv !== undefined ? change(x.value, pv, x.higherIsBetter) : undefined;
      return el(
        'tr',
        {},
        el('td', {}, lin.label(x.key) + (x.headline ? ' ★' : '')),
        el('td', { class: 'num' }, formatMetric(x)),
        el('td', { class: `num ${c ? (c.better === null ? 'same' : c.better ? 'better' : 'worse') : ''}` }, c ? formatDelta(c.delta, x.unit) : ''),
      );
    });
    const collapse = el('button', { class: 'secondary' }, this.app.state.collapsed.includes(id) ? 'Expand subtree' : 'Collapse subtree');
    collapse.addEventListener('click', () => this.app.toggleCollapse(id));
    // A multi-op variant: its intermediate models are folded into it (or shown, on request).
    const chain = this.app.folded.get(id);
    const stepsShown = !chain && this.app.state.expanded.includes(id);
    const stepsBtn = el('button', { class: 'secondary mm-steps' }, chain ? `Show its ${chain.length} intermediate model${chain.length === 1 ? '' : 's'}` : 'Fold its intermediate models');
    stepsBtn.addEventListener('click', () => this.app.setSteps(id, !!chain));
    return [
      el('h3', {}, m.name, m.status !== 'ok' ? el('span', { class: `status-${m.status}` }, ` ${m.status}`) : ''),
      ...(m.statusReason ? [el('p', { class: `status-${m.status}` }, m.statusReason)] : []),
      el('h3', {}, 'Recipe'),
      list,
      el('h3', {}, 'Metrics ', el('span', { class: 'muted' }, 'vs parent')),
      el('table', {}, el('tbody', {}, ...rows)),
      ...((lin.children.get(id) ?? []).length ? [collapse] : []),
      ...(chain || stepsShown ? [stepsBtn] : []),
    ];
  }

  /** Two recipes side by side: a row per op (aligned by name) and per parameter, the seeds and
   * the evaluation; rows that differ are marked, and listed first in the summary line. */
  private diff(a: string, b: string): HTMLElement[] {
    const { full } = this.app;
    const d = recipeDiff(full, a, b);
    const name = (id: string) => full.byId.get(id)!.name;
    const head = el('tr', {}, el('th', {}, ''), el('th', { 'data-model': a }, name(a)), el('th', { 'data-model': b }, name(b)));
    const body = el('tbody');
    for (const r of d.rows) {
      const cls = [`mm-diff-${r.kind}`, r.same ? 'same' : 'differs'].join(' ');
      const cell = (text: string, id: string | undefined) => {
        const td = el('td', { class: text === ABSENT ? 'muted' : '' }, el(r.kind === 'param' || r.kind === 'op' ? 'code' : 'span', {}, text));
        if (id !== undefined) {
          td.dataset.model = id;
          td.title = name(id);
          td.addEventListener('mouseenter', () => this.app.setHover(this.app.shownAs(id) ?? null));
        }
        return td;
      };
      const tr = el('tr', { class: cls }, el('th', { scope: 'row' }, r.kind === 'param' ? `· ${r.label}` : r.label), cell(r.a, r.aId), cell(r.b, r.bId));
      tr.dataset.kind = r.kind;
      tr.dataset.same = String(r.same);
      body.append(tr);
    }
    const differing = d.rows.filter((r) => !r.same).map((r) => (r.kind === 'param' ? r.label : r.kind === 'op' ? `op ${r.step}` : r.label));
    const summary = d.differences === 0 ? 'The two recipes are the same.' : `${d.differences} difference${d.differences === 1 ? '' : 's'}: ${[...new Set(differing)].join(', ')}`;
    return [el('h3', {}, 'Recipe diff'), el('p', { class: 'mm-diff-summary' }, summary), el('table', { class: 'mm-diff', 'aria-label': `Recipe diff of ${name(a)} and ${name(b)}` }, el('thead', {}, head), body)];
  }

  private multi(ids: string[]): HTMLElement[] {
    const { lin, state } = this.app;
    const vars = whatVaries(this.app.full, ids);
    // Two models: the recipe diff first (the base, or the one nearer it, on the left).
    const base = closestToRoot(lin, ids)!;
    const pair = ids.length === 2 ? this.diff(base, ids.find((x) => x !== base)!) : [];
    const out: HTMLElement[] = [...pair, el('h3', {}, 'What varies')];
    if (vars.length === 0) out.push(el('p', { class: 'muted' }, 'The selected models share the same recipe.'));
    else {
      const list = el('ul', { class: 'mm-varies' });
      for (const v of vars) {
        // Refine: keep only the models at one level of this variable.
        const refine = el('select', { 'aria-label': `Keep only models with ${v.key} =` });
        refine.append(el('option', { value: '' }, 'refine…'));
        for (const l of v.levels) refine.append(el('option', { value: l }, `only ${l}`));
        refine.addEventListener('change', () => {
          if (!refine.value) return;
          this.app.select(ids.filter((id) => v.values.get(id) === refine.value), 'replace');
        });
        list.append(el('li', {}, el('code', {}, v.key), ` ${v.levels.join(' · ')} `, refine));
      }
      out.push(list);
    }
    // Grouping variables: the user's choice when still varying, else the first two.
    const byKey = new Map(vars.map((v) => [v.key, v]));
    let chosen = state.groupBy.filter((k) => byKey.has(k));
    if (chosen.length === 0) chosen = vars.slice(0, 2).map((v) => v.key);
    const by1 = chosen[0] !== undefined ? byKey.get(chosen[0])! : null;
    const by2 = chosen[1] !== undefined ? byKey.get(chosen[1])! : null;
    const pick = (i: 0 | 1) => {
      const s = el('select', { 'aria-label': i === 0 ? 'Group bars by' : 'Then colour by' });
      s.append(el('option', { value: '' }, i === 0 ? 'no grouping' : 'no colouring'));
      for (const v of vars) s.append(el('option', { value: v.key }, v.key));
      s.value = chosen[i] ?? '';
      s.addEventListener('change', () => {
        const next = [...chosen];
        next[i] = s.value;
        state.groupBy = next.filter((x, j) => x && (j === 0 || x !== next[0]));
        this.app.emit('selection');
      });
      return s;
    };
    if (vars.length) out.push(el('div', { class: 'mm-subbar' }, 'group by ', pick(0), ' colour by ', pick(1)));
    // the legend above the charts it explains, not below the last of them
    if (by2) out.push(this.legend(by2));
    const headline = lin.metrics.filter((m) => m.headline);
    for (const def of headline.length ? headline : lin.metrics.slice(0, 3)) out.push(this.barChart(ids, def.key, by1, by2));
    return out;
  }

  private colors(): string[] {
    const s = getComputedStyle(document.body);
    return PALETTE.map((v, i) => s.getPropertyValue(v).trim() || FALLBACK[i]!);
  }

  private legend(by2: Variable): HTMLElement {
    const colors = this.colors();
    return el('div', { class: 'mm-legend-row' }, `${by2.key}: `, ...by2.levels.map((l, i) => {
      const sw = el('span', { class: 'mm-swatch' });
      sw.style.background = colors[i % colors.length]!;
      return el('span', {}, sw, ` ${l} `);
    }));
  }

  /** One metric as bars: groups along x (first variable), bars coloured by the second. */
  private barChart(ids: string[], metric: string, by1: Variable | null, by2: Variable | null): HTMLElement {
    const { lin } = this.app;
    const def = lin.metricDef(metric)!;
    const groups = groupBars(lin, ids, metric, by1, by2);
    const theme = themeColors();
    const colors = this.colors();
    const W = 300;
    const NAMES = 58; // room under the bars for each model's name, slanted
    const H = 120 + NAMES;
    const ml = 44;
    const mb = 30 + NAMES;
    const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v): v is number => v !== undefined);
    // 98.0 against 99.1 from a zero baseline would look equal: the axis may start near the lowest
    // value, and the caption says so
    const axis = barAxis(values);
    const { lo, hi } = axis;
    const y = linear([lo, hi], [H - mb, 8]);
    const foot = axis.zero ? 0 : lo; // where the bars start
    const chart = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${lin.label(metric)} of the selected models${by1 ? ` grouped by ${by1.key}` : ''}` });
    chart.append(svg('line', { x1: ml, x2: W, y1: y(foot), y2: y(foot), stroke: theme.border, ...(axis.zero ? {} : { 'stroke-dasharray': '3 2' }) }));
    chart.append(svg('text', { x: ml - 4, y: y(hi) + 4, 'text-anchor': 'end', fill: theme.muted, 'font-size': 10 }, short(hi)));
    if (lo !== 0) chart.append(svg('text', { x: ml - 4, y: y(lo), 'text-anchor': 'end', fill: theme.muted, 'font-size': 10 }, short(lo)));
    const names: SVGTextElement[] = [];
    const nBars = groups.reduce((a, g) => a + g.bars.length, 0);
    const gap = 10;
    const bw = Math.max(4, Math.min(28, (W - ml - gap * groups.length) / Math.max(1, nBars)));
    let x = ml + gap / 2;
    const subIndex = new Map((by2?.levels ?? []).map((l, i) => [l, i]));
    for (const g of groups) {
      const gx = x;
      for (const b of g.bars) {
        if (b.value !== undefined) {
          const y0 = y(Math.max(foot, b.value));
          const h = Math.abs(y(b.value) - y(foot));
          const rect = svg('rect', { x: x + 1, y: y0, width: bw - 2, height: Math.max(1, h), fill: colors[(subIndex.get(b.sub) ?? 0) % colors.length]!, 'data-model': b.id, tabindex: 0 });
          const m = lin.byId.get(b.id)!;
          rect.append(svg('title', {}, `${m.name}: ${formatMetric({ value: b.value, unit: def.unit })}${by2 ? ` (${by2.key} ${b.sub})` : ''}`));
          rect.addEventListener('mouseenter', () => this.app.setHover(b.id));
          rect.addEventListener('mouseleave', () => this.app.setHover(null));
          rect.addEventListener('click', (e) => this.app.select([b.id], e.shiftKey ? 'toggle' : 'replace'));
          chart.append(rect);
          // the model's name under its bar (slanted: bars are narrower than names)
          const nx = x + bw / 2;
          const ny = H - mb + 10;
          const label = m.name.length > 16 ? `${m.name.slice(0, 15)}…` : m.name;
          const t = svg('text', { x: nx, y: ny, 'text-anchor': 'end', transform: `rotate(-40 ${nx} ${ny})`, fill: theme.fg, 'font-size': 9, class: 'mm-bar-name', 'data-model': b.id }, label);
          names.push(t);
        }
        x += bw;
      }
      if (by1) chart.append(svg('text', { x: (gx + x) / 2, y: H - 14, 'text-anchor': 'middle', fill: theme.fg, 'font-size': 10 }, g.level === ABSENT ? '(none)' : g.level));
      x += gap;
    }
    chart.append(...names);
    if (by1) chart.append(svg('text', { x: (ml + W) / 2, y: H - 3, 'text-anchor': 'middle', fill: theme.muted, 'font-size': 10 }, by1.key));
    const caption = el('figcaption', {}, `${lin.label(metric, { unit: true })} ${def.higherIsBetter ? '↑ higher is better' : '↓ lower is better'}`);
    if (axis.note) caption.append(' · ', el('span', { class: 'mm-axis-note' }, axis.note));
    return el('figure', { class: 'mm-bars' }, caption, chart);
  }

  /** Hover linked from other views: outline the hovered model's bars and recipe step. */
  private highlight(): void {
    const h = this.app.hover;
    for (const e of this.root.querySelectorAll<SVGElement | HTMLElement>('[data-model]')) e.classList.toggle('hovered', e.dataset.model === h);
  }
}
