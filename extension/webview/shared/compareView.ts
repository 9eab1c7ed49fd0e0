/**
 * The shared minimal comparison panel (Behaviors and Layers get their full views in their own
 * issues): asks the host for a comparison, receives its msgpack pages as ArrayBuffers, decodes
 * them, and lists what arrived (result kind, meta, every tensor's dtype and shape).
 */
import type { ModelInfo } from '../../src/protocol';
import { el, icon, mount, notice } from './dom';
import { PanelStore, RequestError, Rpc, vscodeApi } from './rpc';
import { decodeEnvelope, joinPages, type Envelope } from './wire';

export function startCompareView(opts: { title: string; codicon: string; kind: 'weights' | 'behavior' }): void {
  const api = vscodeApi();
  const rpc = new Rpc(api);
  const store = new PanelStore(api);
  let models: ModelInfo[] = [];
  const name = (id: string) => models.find((m) => m.id === id)?.name ?? id;
  const header = () => el('h1', {}, icon(opts.codicon), opts.title);

  const ids = store.state.models ?? [];
  if (ids.length === 0) {
    mount(header(), notice('info', 'Choose models to compare: select them in the Lineage view and use Compare Selected.'));
    rpc.ready();
    return;
  }
  const pages: Envelope[] = [];
  let requestId = -1;
  const status = el('p', { class: 'muted', id: 'progress' }, 'Comparing…');

  const show = () => {
    const [base, ...others] = ids;
    const parts: Node[] = [header(), el('p', {}, `Base ${name(base!)} against ${others.map(name).join(', ') || '—'}`), status];
    if (pages.length && pages.length === (pages[0]!.page?.count ?? 1)) {
      const result = joinPages(pages);
      const rows = Object.entries(result.tensors).map(([n, t]) =>
        el('tr', {}, el('td', {}, n), el('td', {}, t.origDtype ? `${t.dtype} (from ${t.origDtype})` : t.dtype), el('td', { class: 'num' }, `[${t.shape.join(', ')}]`)),
      );
      parts.push(
        el('h2', {}, `Result: ${result.kind}`),
        el('table', { id: 'tensors' }, el('thead', {}, el('tr', {}, el('th', {}, 'tensor'), el('th', {}, 'dtype'), el('th', { class: 'num' }, 'shape'))), el('tbody', {}, ...rows)),
      );
    }
    mount(...parts);
  };

  rpc.on('resultPage', (p) => {
    if (p.requestId !== requestId) return;
    try {
      pages.push(decodeEnvelope(p.bytes));
      status.textContent = `Received page ${p.page + 1} of ${p.pages}${p.done ? '' : ' (computing…)'}`;
      show();
    } catch (e) {
      mount(header(), notice('error', `Could not decode the result: ${(e as Error).message}`));
    }
  });
  rpc.on('lineageChanged', (d) => {
    models = d.models;
  });
  rpc.on('serverState', (s) => {
    if (!s.trusted) mount(header(), notice('info', 'Restricted Mode: Bonsai does not load models to compare them. Trust this workspace to compare.'));
  });

  rpc.ready();
  void rpc.request('lineage', {}).then((r) => {
    models = r.models;
    show();
    requestId = rpc.peekId();
    const [base, ...others] = ids;
    return rpc.request('compare', { kind: opts.kind, base: base!, models: others }).then((r2) => {
      status.textContent = `${r2.pages} page${r2.pages === 1 ? '' : 's'} received.`;
    });
  }).catch((e: unknown) => {
    const msg = e instanceof RequestError || e instanceof Error ? e.message : String(e);
    mount(header(), notice('error', msg));
  });
}
