/**
 * The hover card shared by the map and the scatterplot: op, parameters, status and every metric
 * with its change against the parent (▲/▼, coloured by whether that is better).
 */
import { el } from '../shared/dom';
import { formatMetric } from '../shared/format';
import type { App } from './app';
import { measuredCell } from './errorBars';
import { change } from './lineage';
import { short } from './scales';

export class Tooltip {
  readonly node = el('div', { class: 'mm-tooltip', role: 'tooltip' });

  constructor(private readonly app: App) {
    this.node.hidden = true;
    document.body.append(this.node);
  }

  show(id: string, clientX: number, clientY: number): void {
    const lin = this.app.lin;
    const m = lin.byId.get(id);
    if (!m) return this.hide();
    const parentId = lin.parentOf(id);
    const parent = parentId !== undefined ? lin.byId.get(parentId) : undefined;
    const rows = m.metrics.map((x) => {
      const pv = parent ? lin.metric(parent.id, x.key) : undefined;
      let deltaCell: HTMLElement = el('td', { class: 'num' });
      if (pv !== undefined) {
        const c = change(x.value, pv, x.higherIsBetter);
        const cls = c.better === null ? 'same' : c.better ? 'better' : 'worse';
        deltaCell = el('td', { class: `num ${cls}` }, c.delta === 0 ? '=' : `${c.delta > 0 ? '▲ +' : '▼ '}${short(c.delta)}`);
      }
      return el('tr', {}, el('td', {}, lin.label(x.key) + (x.headline ? ' ★' : '')), el('td', { class: 'num' }, measuredCell(x, formatMetric).text), deltaCell);
    });
    const params = Object.entries(m.params).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
    this.node.replaceChildren(
      el('div', { class: 'mm-tt-title' }, m.name),
      ...(m.aliases?.length ? [el('div', { class: 'muted' }, `also ${m.aliases.join(', ')} (same recipe, one model)`)] : []),
      el('div', { class: 'muted' }, m.op ? `${m.op}${parent ? ` ← ${parent.name}` : ''}` : 'base model'),
      ...(params.length ? [el('div', { class: 'mm-tt-params' }, params.join(', '))] : []),
      ...(m.status !== 'ok' ? [el('div', { class: `status-${m.status}` }, `${m.status}${m.statusReason ? `: ${m.statusReason}` : ''}`)] : []),
      ...(rows.length ? [el('table', {}, el('tbody', {}, ...rows))] : []),
      // why a value is marked ~ (the card follows the pointer: no title to hover)
      ...m.metrics.filter((x) => x.noisy).map((x) => el('div', { class: 'muted' }, measuredCell(x, formatMetric).title)),
    );
    this.node.hidden = false;
    const w = this.node.offsetWidth;
    const h = this.node.offsetHeight;
    const x = clientX + 14 + w > window.innerWidth ? clientX - w - 10 : clientX + 14;
    const y = clientY + 14 + h > window.innerHeight ? Math.max(0, clientY - h - 10) : clientY + 14;
    this.node.style.left = `${Math.max(0, x)}px`;
    this.node.style.top = `${y}px`;
  }

  hide(): void {
    this.node.hidden = true;
  }
}
