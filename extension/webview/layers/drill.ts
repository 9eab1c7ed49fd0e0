/**
 * "Why?" from Behaviors: the layers where one instance diverged most, ranked by the largest
 * activation error over the compared models.
 */
import { el, notice } from '../shared/dom';
import { rankLayersForInstance } from './depth';
import type { LayersPanel } from './panel';
import type { LayersState } from './state';
import { fmtOr } from '../shared/format';

export interface DrillRanking {
  /** The models with an activation comparison, in panel order. */
  models: string[];
  /** Per model: its error per module for the instance; null when the instance was not sampled. */
  values: (Map<string, number> | null)[];
  /** Models whose sample lacks the instance. */
  missing: string[];
  /** The modules to list, worst first (at most `limit`). */
  top: string[];
}

/** The ranking for `instance` (null while no model has an activation comparison). */
export function drillRanking(s: LayersState, others: string[], instance: string, limit = 15): DrillRanking | null {
  const models = others.filter((o) => s.data.get(o)?.acts);
  if (!models.length) return null;
  const ranks = models.map((o) => rankLayersForInstance(s.data.get(o)!.acts!, instance, s.ui.mode));
  const best = new Map<string, number>();
  // the whole model's output is not a layer to blame: it ranks first for every instance
  for (const r of ranks) for (const y of r ?? []) if (y.module) best.set(y.module, Math.max(best.get(y.module) ?? -Infinity, y.value));
  return {
    models,
    values: ranks.map((r) => (r ? new Map(r.map((y) => [y.module, y.value])) : null)),
    missing: models.filter((_, i) => ranks[i] === null),
    top: [...best.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([module]) => module),
  };
}

export function renderDrill(p: LayersPanel, drillEl: HTMLElement): void {
  const ui = p.state.ui;
  if (!ui.drill?.instance) {
    drillEl.replaceChildren();
    return;
  }
  const inst = ui.drill.instance;
  const clear = el('button', { class: 'link' }, 'clear');
  clear.addEventListener('click', () => {
    ui.drill = null;
    p.save();
    p.show.drill();
  });
  const parts: Node[] = [el('h2', {}, `Why? Layers where instance ${inst} diverged (${ui.mode})`, clear)];
  const ranking = drillRanking(p.state, p.others, inst);
  if (!ranking) {
    parts.push(el('p', { class: 'muted' }, p.state.progress.running ? 'Waiting for the activation comparison…' : 'No activation comparison: the ranking needs one.'));
  } else {
    if (ranking.missing.length) parts.push(notice('info', `Instance ${inst} is not in the activation sample of ${ranking.missing.map(p.name).join(', ')} (the first instances of the task are sampled).`));
    if (ranking.top.length) {
      const body = el('tbody', {});
      for (const module of ranking.top) {
        const tr = el('tr', { tabindex: '0' }, el('td', {}, module || '(model)'), ...ranking.values.map((v) => el('td', { class: 'num' }, fmtOr(v?.get(module) ?? null, ui.measure.format))));
        tr.addEventListener('click', () => p.select(module));
        tr.addEventListener('keydown', (e) => e.key === 'Enter' && p.select(module));
        body.append(tr);
      }
      parts.push(el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'module'), ...ranking.models.map((o) => el('th', { class: 'num' }, `${p.name(o)} rel. error`)))), body));
    }
  }
  drillEl.replaceChildren(...parts);
}
