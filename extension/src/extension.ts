/** Bonsai's entry point: wires the server, the Lineage view, jobs, status, panels and commands. */
import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { JobTracker } from './jobs';
import { LineageProvider } from './lineage/provider';
import * as P from '../shared/protocol';
import { errorText } from '../shared/errors';
import { BonsaiServer } from './server';
import { StatusItem } from './status';
import { PanelManager } from './webviews/panels';
import { applyFixVariant } from './fixVariantCommand';
import { runScan, scansOf, writeBudgetedVariant } from './scanCommands';

let server: BonsaiServer | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel('Bonsai', { log: true });
  context.subscriptions.push(log);
  log.info(`Bonsai ${context.extension.packageJSON.version as string} activating (no telemetry is collected).`);

  server = new BonsaiServer(context, log);
  const srv = server;
  const jobs = new JobTracker(srv, log);
  const lineage = new LineageProvider(srv);
  const treeView = vscode.window.createTreeView('bonsai.lineage', {
    treeDataProvider: lineage,
    canSelectMany: true,
    showCollapseAll: true,
  });
  const status = new StatusItem();
  const panels = new PanelManager(context.extensionUri, {
    request: (method, params, token) => srv.request(method, params, token),
    storageDir: () => (context.storageUri ?? context.globalStorageUri).fsPath,
    lineage: () => lineage.models,
    openModel: async (id, view) => {
      const m = lineage.model(id);
      panels.open(view, view === 'modelMap' ? { focus: id } : { models: m?.parent ? [m.parent, id] : [id] });
    },
    revealInExperiment: async (id) => {
      const node = lineage.model(id);
      if (node) await vscode.commands.executeCommand('bonsai.lineage.reveal', { model: node, children: [], depth: 0 });
    },
    addFixVariant: (req) => applyFixVariant(lineage.models, req),
    scans: (model) => scansOf(srv, lineage.models, model),
    runScan: (model) => runScan(srv, lineage.models, model),
    budgetVariant: (req) => writeBudgetedVariant(srv, lineage.models, req),
    log,
  });
  context.subscriptions.push(srv, jobs, lineage, treeView, status, panels);

  // Models that appear while the view is open are revealed (their parents expanded), so a run's
  // results show up where the user is looking. Not on the first load: that would expand everything.
  let known: Set<string> | undefined;
  const revealNew = (models: P.ModelInfo[]) => {
    const fresh = known ? models.filter((m) => !known!.has(m.id)) : [];
    known = new Set(models.map((m) => m.id));
    if (!treeView.visible) return;
    for (const m of fresh.slice(-5)) {
      const node = lineage.node(m.id);
      if (node) treeView.reveal(node, { select: false, focus: false, expand: false }).then(undefined, () => undefined);
    }
  };
  const setContext = (key: string, value: unknown) => void vscode.commands.executeCommand('setContext', key, value);
  const updateView = () => {
    const s = srv.state;
    const trusted = vscode.workspace.isTrusted;
    const restricted = trusted ? undefined : 'Restricted Mode: Bonsai shows the lineage but does not load models or run experiments. Trust this workspace to use them.';
    if (s.kind === 'starting') treeView.message = 'Starting the Bonsai server…';
    else if (s.kind === 'stopped') treeView.message = `The Bonsai server is stopped: ${s.reason}`;
    else treeView.message = lineage.message ?? restricted;
    const active = jobs.active.length;
    status.update(s, active);
    treeView.badge = active ? { value: active, tooltip: `${active} Bonsai ${active === 1 ? 'job' : 'jobs'} running` } : undefined;
    setContext('bonsai.serverStopped', s.kind === 'stopped');
  };

  // Lineage refreshes are coalesced: a run emits many notifications in a burst.
  let refreshTimer: NodeJS.Timeout | undefined;
  let lensRetry: NodeJS.Timeout | undefined;
  const scheduleRefresh = (delay = 150) => {
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      refreshTimer = undefined;
      if (srv.state.kind === 'ready') {
        void lineage.refresh().then(() => {
          updateView();
          srv.refreshCodeLenses();
          // VS Code drops a CodeLens change event that lands while its own lens request for the
          // same document is in flight (seen in the e2e trace): ask once more after it settles.
          if (lensRetry) clearTimeout(lensRetry);
          lensRetry = setTimeout(() => {
            lensRetry = undefined;
            if (srv.state.kind === 'ready') srv.refreshCodeLenses();
          }, 750);
        });
      }
    }, delay);
  };
  context.subscriptions.push({
    dispose: () => {
      if (refreshTimer) clearTimeout(refreshTimer);
      if (lensRetry) clearTimeout(lensRetry);
    },
  });

  context.subscriptions.push(
    srv.onDidChangeState((s) => {
      updateView();
      panels.broadcast('serverState', {
        state: s.kind,
        ...(s.kind === 'stopped' ? { reason: s.reason } : {}),
        trusted: vscode.workspace.isTrusted,
      });
      if (s.kind === 'ready') {
        scheduleRefresh(0);
        jobs.refresh().catch((e: unknown) => log.warn(`bonsai/jobs: ${errorText(e)}`));
      }
    }),
    srv.onLineageChanged(() => scheduleRefresh()),
    srv.onJobChanged((job) => {
      // A job ending changes model statuses (running -> ok/failed) even without lineageChanged.
      if (P.JOB_FINAL_STATES.includes(job.state) || job.state === 'running') scheduleRefresh();
    }),
    jobs.onDidChange(updateView),
    lineage.onDidLoad((models) => {
      setContext('bonsai.lineageEmpty', models.length === 0);
      revealNew(models);
      panels.broadcast('lineageChanged', { models });
    }),
    vscode.workspace.onDidGrantWorkspaceTrust(updateView),
    vscode.workspace.onDidChangeWorkspaceFolders(() => scheduleRefresh()),
    ...registerCommands({ server: srv, jobs, lineage, panels, treeView }),
  );

  updateView();
  // Not awaited: activation must not wait for Python to start.
  void srv.start();
}

export async function deactivate(): Promise<void> {
  await server?.stop();
  server = undefined;
}
