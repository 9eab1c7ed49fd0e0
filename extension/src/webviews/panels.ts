/**
 * Webview panels (Model Map, Behaviors, Layers): creation, one serializer per kind so panels
 * survive reloads, the HTML shell with a nonce CSP, and the host side of the message protocol.
 */
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import * as P from '../../shared/protocol';
import { fetchPages, toArrayBuffer } from '../results';
import { errorText } from '../../shared/errors';
import { Flight, isCancelledError } from './flight';
import type { FixRequest } from '../fixVariant';
import { isToHost, type DrillFocus, type HostEvents, type PanelKind, type PanelState, type ToHost, type ToWebview } from '../../shared/messages';

export const PANEL_TITLES: Record<PanelKind, string> = {
  modelMap: 'Model Map',
  behaviors: 'Behaviors',
  layers: 'Layers',
};

export const viewType = (kind: PanelKind): string => `bonsai.${kind}`;

export interface PanelHost {
  /** A request to the server; `token` cancels it ($/cancelRequest). */
  request<R>(method: string, params: unknown, token?: vscode.CancellationToken): Promise<R>;
  storageDir(): string | undefined;
  lineage(): P.ModelInfo[];
  openModel(id: string, view: PanelKind): Promise<void>;
  revealInExperiment(id: string): Promise<void>;
  /** Writes a one-click fix variant into the model's experiment file (src/fixVariantCommand.ts). */
  addFixVariant(req: FixRequest): Promise<{ file: string; variant: string }>;
  /** The Sensitivity view (src/scanCommands.ts): stored scans, "Run scan", a budgeted variant. */
  scans(model: string): Promise<{ file: string; scans: P.ScanInfo[] }>;
  runScan(model: string): Promise<{ state: P.JobInfo['state']; message: string }>;
  budgetVariant(req: { model: string; scan: string; budget: 'size' | 'loss'; baseBytes: number }): Promise<{ file: string; variant: string } | { message: string } | null>;
  log: vscode.LogOutputChannel;
}

/** default-src 'none'; scripts only with the nonce; styles, fonts and images only from the extension. */
export function contentSecurityPolicy(cspSource: string, nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${cspSource} 'nonce-${nonce}'`,
    `img-src ${cspSource} data:`,
    `font-src ${cspSource}`,
  ].join('; ');
}

export function newNonce(): string {
  return randomBytes(18).toString('base64').replace(/[^A-Za-z0-9]/g, '');
}

export function panelHtml(opts: {
  kind: PanelKind;
  cspSource: string;
  nonce: string;
  scriptUri: string;
  styleUri: string;
  codiconUri: string;
  state: PanelState;
}): string {
  const title = PANEL_TITLES[opts.kind];
  // The initial state is embedded as JSON in a data attribute: escaped, so it cannot close the tag.
  const stateAttr = JSON.stringify(opts.state).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(opts.cspSource, opts.nonce)}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${opts.codiconUri}">
<link rel="stylesheet" href="${opts.styleUri}">
<title>${title}</title>
</head>
<body data-panel="${opts.kind}" data-state="${stateAttr}">
<div id="app" role="main" aria-label="${title}"><p class="muted">Loading ${title}…</p></div>
<script nonce="${opts.nonce}" src="${opts.scriptUri}"></script>
</body>
</html>`;
}

class Panel implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];
  /** Webview requests (by id) whose results the server is computing: Cancel and closing stop them. */
  private readonly flights = new Map<number, Flight>();
  private disposed = false;
  state: PanelState;

  constructor(
    readonly kind: PanelKind,
    readonly panel: vscode.WebviewPanel,
    state: PanelState,
    private readonly manager: PanelManager,
  ) {
    this.state = state;
    const webview = panel.webview;
    webview.options = { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(manager.extensionUri, 'dist')] };
    panel.iconPath = vscode.Uri.joinPath(manager.extensionUri, 'media', 'bonsai.svg');
    const dist = (...p: string[]) => webview.asWebviewUri(vscode.Uri.joinPath(manager.extensionUri, 'dist', ...p)).toString();
    webview.html = panelHtml({
      kind,
      cspSource: webview.cspSource,
      nonce: newNonce(),
      scriptUri: dist('webview', `${kind}.js`),
      styleUri: dist('webview', 'base.css'),
      codiconUri: dist('codicons', 'codicon.css'),
      state,
    });
    this.disposables.push(
      webview.onDidReceiveMessage((m: unknown) => void this.onMessage(m)),
      panel.onDidDispose(() => this.dispose()),
    );
  }

  post(message: ToWebview): Thenable<boolean> {
    // A reply to a request that was in flight when the panel closed has nowhere to go.
    if (this.disposed) return Promise.resolve(false);
    return this.panel.webview.postMessage(message);
  }

  event<K extends keyof HostEvents>(name: K, data: HostEvents[K]): void {
    void this.post({ type: 'event', name, data } as ToWebview);
  }

  private async onMessage(m: unknown): Promise<void> {
    if (!isToHost(m)) {
      this.manager.host.log.warn(`${this.kind}: ignored malformed message from the webview`);
      return;
    }
    if (m.type === 'ready') {
      this.event('serverState', this.manager.serverState);
      return;
    }
    if (m.type === 'log') {
      this.manager.host.log[m.level](`[${this.kind}] ${m.message}`);
      return;
    }
    try {
      const result = await this.handle(m);
      await this.post({ type: 'reply', id: m.id, result });
    } catch (e) {
      const code = typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : undefined;
      await this.post({ type: 'error', id: m.id, error: { message: errorText(e), code } });
    }
  }

  private async handle(m: Extract<ToHost, { type: 'request' }>): Promise<unknown> {
    const host = this.manager.host;
    switch (m.method) {
      case 'lineage':
        return { models: host.lineage() };
      case 'compare': {
        const { kind, base, models, options } = m.params;
        if (!['weights', 'activations', 'behavior'].includes(kind)) throw new Error(`unknown comparison '${kind}'`);
        this.state = { ...this.state, models: [base, ...models] };
        return this.flying(m.id, (flight) => this.compare(m.id, flight, `bonsai/compare/${kind}`, { base, models, ...(options ? { options } : {}) }));
      }
      case 'tiles': {
        const { model, tensor, other, source, instances, level, x0, y0, x1, y1 } = m.params;
        const params = {
          model, tensor, ...(other ? { other } : {}), source: source ?? 'weight', ...(instances ? { instances } : {}),
          level, x0, y0, x1, y1,
        };
        return this.flying(m.id, async (flight) => this.collect(flight, await flight.request<P.ResultRef>(P.TENSOR_TILES, params)));
      }
      case 'instances':
        return this.flying(m.id, async (flight) => this.collect(flight, await flight.request<P.ResultRef>(P.INSTANCES, { ids: m.params.ids, models: m.params.models })));
      case 'cancel': {
        // The panel's Cancel: stop the server's job, not only the fetching of its pages.
        const flight = this.flights.get(m.params.requestId);
        if (!flight) return { cancelled: false };
        await flight.cancel();
        return { cancelled: true };
      }
      case 'openModel':
        await host.openModel(m.params.id, m.params.view);
        return null;
      case 'revealInExperiment':
        await host.revealInExperiment(m.params.id);
        return null;
      case 'openPanel': {
        const { view, models } = m.params;
        if (view !== 'behaviors' && view !== 'layers') throw new Error(`unknown panel '${String(view)}'`);
        if (!Array.isArray(models) || models.length === 0 || !models.every((x) => typeof x === 'string')) {
          throw new Error('openPanel needs at least one model id');
        }
        if (m.params.focus) this.manager.drill(view, models, m.params.focus);
        else this.manager.open(view, { models });
        return null;
      }
      case 'addFixVariant': {
        // untrusted input: the shape is checked before it reaches the file
        const { model, action, patterns } = m.params;
        if (typeof model !== 'string' || (action !== 'exclude' && action !== 'restore') || !Array.isArray(patterns) || !patterns.length || !patterns.every((x) => typeof x === 'string' && x.length > 0)) {
          throw new Error('addFixVariant needs a model id, an action (exclude or restore) and parameter patterns');
        }
        return host.addFixVariant({ model, action, patterns });
      }
      case 'scans':
      case 'runScan': {
        const model = m.params.model;
        if (typeof model !== 'string') throw new Error(`${m.method} needs a model id`);
        return m.method === 'scans' ? host.scans(model) : host.runScan(model);
      }
      case 'budgetVariant': {
        const { model, scan, budget, baseBytes } = m.params;
        if (typeof model !== 'string' || typeof scan !== 'string' || (budget !== 'size' && budget !== 'loss') || typeof baseBytes !== 'number') {
          throw new Error('budgetVariant needs a model id, a scan id, a budget (size or loss) and the base bytes');
        }
        return host.budgetVariant({ model, scan, budget, baseBytes });
      }
      case 'exportFile':
        return saveExport(m.params);
    }
  }

  /** Runs `work` as the in-flight request `id` (cancellable by the webview and by closing). */
  private async flying<T>(id: number, work: (flight: Flight) => Promise<T>): Promise<T> {
    const flight = new Flight(this.manager.host, this.manager.host.log);
    this.flights.set(id, flight);
    try {
      return await work(flight);
    } finally {
      this.flights.delete(id);
    }
  }

  /** Streams a comparison's pages to the webview as `resultPage` events; replies with the count,
   * and `cancelled` when it was cancelled (here, or on the server: e.g. the progress notification). */
  private async compare(id: number, flight: Flight, method: string, params: unknown): Promise<{ resultId: string; pages: number; cancelled?: true }> {
    let resultId = '';
    let pages = 0;
    try {
      const first = await flight.request<P.ResultRef>(method, params);
      resultId = first.resultId;
      for await (const page of fetchPages(first, flight, { storageDir: this.manager.host.storageDir() })) {
        if (flight.cancelled) break;
        this.event('resultPage', {
          requestId: id,
          resultId: page.ref.resultId,
          page: page.ref.page,
          pages: page.ref.pages,
          done: page.ref.done,
          bytes: toArrayBuffer(page.bytes),
        });
        pages++;
      }
    } catch (e) {
      if (!flight.cancelled && !isCancelledError(e)) throw e;
      return { resultId, pages, cancelled: true };
    }
    return flight.cancelled ? { resultId, pages, cancelled: true } : { resultId, pages };
  }

  /** Every page of a (small) result, as ArrayBuffers for the reply. */
  private async collect(flight: Flight, first: P.ResultRef): Promise<{ resultId: string; pages: ArrayBuffer[] }> {
    const pages: ArrayBuffer[] = [];
    for await (const page of fetchPages(first, flight, { storageDir: this.manager.host.storageDir() })) pages.push(toArrayBuffer(page.bytes));
    return { resultId: first.resultId, pages };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // Closing a panel stops what it was waiting for: the server's jobs too.
    for (const flight of this.flights.values()) void flight.cancel();
    this.manager.forget(this);
    for (const d of this.disposables) d.dispose();
  }
}

export class PanelManager implements vscode.Disposable {
  private readonly panels = new Set<Panel>();
  private readonly disposables: vscode.Disposable[] = [];
  serverState: HostEvents['serverState'] = { state: 'starting', trusted: vscode.workspace.isTrusted };

  constructor(
    readonly extensionUri: vscode.Uri,
    readonly host: PanelHost,
  ) {
    for (const kind of Object.keys(PANEL_TITLES) as PanelKind[]) {
      this.disposables.push(
        vscode.window.registerWebviewPanelSerializer(viewType(kind), {
          deserializeWebviewPanel: async (panel: vscode.WebviewPanel, state: unknown) => {
            this.adopt(kind, panel, sanitizeState(state));
          },
        }),
      );
    }
  }

  /** Opens a panel of `kind`; the Model Map is a singleton, comparisons get one panel per model set. */
  open(kind: PanelKind, state: PanelState = {}): vscode.WebviewPanel {
    const existing = [...this.panels].find((p) => p.kind === kind && (kind === 'modelMap' || sameModels(p.state.models, state.models)));
    if (existing) {
      existing.panel.reveal();
      if (state.focus) existing.event('focus', { id: state.focus });
      if (state.select?.length) existing.event('select', { ids: state.select });
      return existing.panel;
    }
    const title = state.models?.length ? `${PANEL_TITLES[kind]}: ${this.names(state.models)}` : PANEL_TITLES[kind];
    const panel = vscode.window.createWebviewPanel(viewType(kind), title, vscode.ViewColumn.Active, {
      enableScripts: true,
      retainContextWhenHidden: false,
      localResourceRoots: [vscode.Uri.joinPath(this.extensionUri, 'dist')],
    });
    this.adopt(kind, panel, state);
    return panel;
  }

  /** Linked drill-down: the panel of `kind` for `models` gets `focus` (opened with it, or sent it). */
  drill(kind: PanelKind, models: string[], focus: DrillFocus): void {
    const existing = [...this.panels].find((p) => p.kind === kind && sameModels(p.state.models, models));
    if (existing) {
      existing.panel.reveal();
      existing.event('drill', focus);
      return;
    }
    this.open(kind, { models, view: { drill: focus } });
  }

  private adopt(kind: PanelKind, panel: vscode.WebviewPanel, state: PanelState): void {
    this.panels.add(new Panel(kind, panel, state, this));
  }

  forget(p: Panel): void {
    this.panels.delete(p);
  }

  broadcast<K extends keyof HostEvents>(name: K, data: HostEvents[K]): void {
    if (name === 'serverState') this.serverState = data as HostEvents['serverState'];
    for (const p of this.panels) p.event(name, data);
  }

  private names(ids: string[]): string {
    const models = this.host.lineage();
    return ids.map((id) => models.find((m) => m.id === id)?.name ?? id).join(' ↔ ');
  }

  dispose(): void {
    for (const p of [...this.panels]) p.panel.dispose();
    for (const d of this.disposables) d.dispose();
  }
}

/** Asks where to save a file a webview made (untrusted input: the name is reduced to a base name). */
async function saveExport(p: { name: string; data: string; encoding: 'utf8' | 'base64' }): Promise<{ path: string } | null> {
  if (typeof p.name !== 'string' || typeof p.data !== 'string' || (p.encoding !== 'utf8' && p.encoding !== 'base64')) {
    throw new Error('exportFile needs a name, data and an encoding (utf8 or base64)');
  }
  const name = p.name.replace(/^.*[\\/]/, '').replace(/[^\w.-]/g, '_') || 'export';
  const ext = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1) : '';
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  const uri = await vscode.window.showSaveDialog({
    ...(folder ? { defaultUri: vscode.Uri.joinPath(folder, name) } : {}),
    ...(ext ? { filters: { [ext.toUpperCase()]: [ext] } } : {}),
  });
  if (!uri) return null;
  await vscode.workspace.fs.writeFile(uri, Buffer.from(p.data, p.encoding));
  return { path: uri.fsPath };
}

function sameModels(a?: string[], b?: string[]): boolean {
  return (a ?? []).join('\n') === (b ?? []).join('\n');
}

/** Serialized state comes from disk: keep only the fields we know, with the right types. */
export function sanitizeState(raw: unknown): PanelState {
  const out: PanelState = {};
  if (typeof raw !== 'object' || raw === null) return out;
  const o = raw as Record<string, unknown>;
  if (Array.isArray(o.models) && o.models.every((x) => typeof x === 'string')) out.models = o.models as string[];
  if (typeof o.focus === 'string') out.focus = o.focus;
  if (Array.isArray(o.select) && o.select.every((x) => typeof x === 'string')) out.select = o.select as string[];
  if (typeof o.view === 'object' && o.view !== null && !Array.isArray(o.view)) out.view = o.view as Record<string, unknown>;
  return out;
}
