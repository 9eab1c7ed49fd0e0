/**
 * Model Map (minimal view; the provenance map itself comes in its own issue): every model of the
 * lineage in a table, indented under its parent, with op, status and headline metrics. Clicking a
 * row selects it (kept across reloads); double-click opens its Behaviors comparison.
 */
import type { ModelInfo } from '../../src/protocol';
import { buildForest, type LineageNode } from '../../src/lineage/model';
import { el, icon, mount, notice } from '../shared/dom';
import { formatMetric } from '../shared/format';
import { PanelStore, Rpc, vscodeApi } from '../shared/rpc';

const api = vscodeApi();
const rpc = new Rpc(api);
const store = new PanelStore(api);
let models: ModelInfo[] = [];

function render(): void {
  const header = el('h1', {}, icon('type-hierarchy'), 'Model Map');
  if (models.length === 0) {
    mount(header, notice('info', 'No models yet: run an experiment file (Bonsai: Run Experiment File).'));
    return;
  }
  const metricNames = [...new Set(models.flatMap((m) => m.metrics.filter((x) => x.headline).map((x) => x.name)))];
  const thead = el('thead', {}, el('tr', {}, el('th', {}, 'model'), el('th', {}, 'op'), el('th', {}, 'status'), ...metricNames.map((n) => el('th', { class: 'num' }, n))));
  const tbody = el('tbody');
  const rows = (nodes: LineageNode[]) => {
    for (const n of nodes) {
      const m = n.model;
      const nameCell = el('td', {}, m.name);
      // CSSOM styles are allowed by the CSP (style attributes in markup are not).
      nameCell.style.paddingLeft = `${8 + n.depth * 16}px`;
      const tr = el(
        'tr',
        { 'data-model': m.id, tabindex: '0', class: store.state.focus === m.id ? 'focus' : '' },
        nameCell,
        el('td', {}, m.op ?? 'base'),
        el('td', { class: `status-${m.status}`, title: m.statusReason ?? '' }, m.status),
        ...metricNames.map((name) => {
          const x = m.metrics.find((y) => y.name === name);
          return el('td', { class: 'num' }, x ? formatMetric(x) : '');
        }),
      );
      tr.addEventListener('click', () => focus(m.id));
      tr.addEventListener('dblclick', () => void rpc.request('openModel', { id: m.id, view: 'behaviors' }));
      tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') void rpc.request('openModel', { id: m.id, view: 'behaviors' });
      });
      tbody.append(tr);
      rows(n.children);
    }
  };
  rows(buildForest(models));
  mount(header, el('p', { class: 'muted' }, `${models.length} model${models.length === 1 ? '' : 's'}`), el('table', { id: 'models' }, thead, tbody));
}

function focus(id: string): void {
  store.update({ focus: id });
  for (const tr of document.querySelectorAll('tr[data-model]')) tr.classList.toggle('focus', tr.getAttribute('data-model') === id);
}

rpc.on('lineageChanged', (d) => {
  models = d.models;
  render();
});
rpc.on('focus', (d) => focus(d.id));
rpc.on('serverState', (s) => {
  if (s.state === 'stopped') mount(el('h1', {}, icon('type-hierarchy'), 'Model Map'), notice('error', `The Bonsai server is stopped: ${s.reason ?? ''}`));
});

rpc.ready();
rpc
  .request('lineage', {})
  .then((r) => {
    models = r.models;
    render();
  })
  .catch((e: Error) => mount(notice('error', e.message)));
