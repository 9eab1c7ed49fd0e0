/**
 * The Bonsai language server's lifecycle: which Python runs it, starting it over stdio,
 * restarting it (on crash with back-off, on settings change, on command), and its state.
 */
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  CloseAction,
  CodeLensRequest,
  ErrorAction,
  LanguageClient,
  State,
  type LanguageClientOptions,
  type ServerOptions,
} from 'vscode-languageclient/node';
import { RestartPolicy } from './backoff';
import { errorText } from '../shared/errors';
import * as P from '../shared/protocol';
import { findBundledWheel, installCommand, manualInstallMessage, probe, resolvePython, serverArgs, shellQuote, type ResolvedPython } from './python';

export type ServerState =
  | { kind: 'starting' }
  | { kind: 'ready' }
  | { kind: 'stopped'; reason: string; canInstall?: boolean };

/** Settings whose change needs a new server process (the trace level is applied live). */
const RESTART_SETTINGS = ['bonsai.pythonPath', 'bonsai.device', 'bonsai.maxInstances'];

export class BonsaiServer implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly policy = new RestartPolicy();
  private stateValue: ServerState = { kind: 'stopped', reason: 'not started' };
  private readonly stateEmitter = new vscode.EventEmitter<ServerState>();
  private readonly lineageEmitter = new vscode.EventEmitter<P.LineageChangedParams>();
  private readonly jobEmitter = new vscode.EventEmitter<P.JobInfo>();
  private readonly disposables: vscode.Disposable[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  /** Serialises start/stop so a settings change during start cannot leave two servers. */
  private chain: Promise<void> = Promise.resolve();
  private generation = 0;
  python: ResolvedPython | undefined;

  readonly onDidChangeState = this.stateEmitter.event;
  readonly onLineageChanged = this.lineageEmitter.event;
  readonly onJobChanged = this.jobEmitter.event;

  constructor(
    private readonly context: vscode.ExtensionContext,
    readonly log: vscode.LogOutputChannel,
  ) {
    this.disposables.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (RESTART_SETTINGS.some((s) => e.affectsConfiguration(s))) {
          this.log.info('Settings changed: restarting the server.');
          void this.restart();
        }
      }),
      // Trust changes what the server may do; it learns it only at initialize.
      vscode.workspace.onDidGrantWorkspaceTrust(() => {
        this.log.info('Workspace trusted: restarting the server.');
        void this.restart();
      }),
    );
  }

  get state(): ServerState {
    return this.stateValue;
  }

  private setState(s: ServerState): void {
    this.stateValue = s;
    this.stateEmitter.fire(s);
  }

  start(): Promise<void> {
    return this.enqueue(() => this.doStart());
  }

  /** A deliberate restart forgets past crashes. */
  restart(): Promise<void> {
    this.policy.reset();
    return this.enqueue(async () => {
      await this.doStop();
      await this.doStart();
    });
  }

  stop(): Promise<void> {
    return this.enqueue(() => this.doStop());
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    this.chain = this.chain.then(step, step).catch((e: unknown) => {
      this.log.error(`Server lifecycle: ${errorText(e)}`);
    });
    return this.chain;
  }

  private async doStart(): Promise<void> {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const generation = ++this.generation;
    this.setState({ kind: 'starting' });
    const python = await resolvePython({
      settingPath: vscode.workspace.getConfiguration('bonsai').get<string>('pythonPath', ''),
      pythonExtensionPath: pythonExtensionInterpreter,
      workspaceFolder: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
      home: process.env.HOME ?? process.env.USERPROFILE,
    });
    this.python = python;
    this.log.info(`Python: ${python.command} (from ${python.source})`);
    const probed = await probe(python.command, execFile);
    if (!probed.ok) {
      const reason = probed.detail;
      this.log.error(reason);
      this.setState({ kind: 'stopped', reason, canInstall: probed.reason === 'no-package' });
      void this.offerFix(python, probed.reason);
      return;
    }
    this.log.info(`modelbonsai ${probed.version}`);

    const config = vscode.workspace.getConfiguration('bonsai');
    const storage = this.context.storageUri ?? this.context.globalStorageUri;
    await vscode.workspace.fs.createDirectory(storage);
    // bonsai.maxInstances only fills in for files that set no max_instances, and is unset by
    // default (every instance): sent only when set, so the server applies the same rule as the CLI.
    const maxInstances = config.get<number | null>('maxInstances', null);
    const initializationOptions: P.InitializationOptions = {
      storagePath: storage.fsPath,
      device: config.get<'auto' | 'cpu' | 'cuda' | 'mps'>('device', 'auto'),
      ...(typeof maxInstances === 'number' && Number.isInteger(maxInstances) && maxInstances > 0 ? { maxInstances } : {}),
      trusted: vscode.workspace.isTrusted,
    };
    // Not started in the workspace: `python -m` puts its folder first on sys.path, so a workspace
    // file named like any module the server imports (yaml.py, difflib.py, torch/) would run in it,
    // trusted or not. PYTHONSAFEPATH (3.11+) keeps the folder off sys.path as well; the server
    // needs no particular folder (it gets the workspace folders from initialize).
    const serverOptions: ServerOptions = {
      command: python.command,
      args: serverArgs(),
      options: {
        cwd: storage.fsPath,
        env: { ...process.env, PYTHONUNBUFFERED: '1', PYTHONIOENCODING: 'utf-8', PYTHONSAFEPATH: '1' },
      },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [
        { scheme: 'file', pattern: `**/*${P.EXPERIMENT_SUFFIX}` },
        { scheme: 'file', pattern: '**/config.json' },
        // a model's .py: the lens over each function that returns an nn.Module
        { scheme: 'file', language: 'python' },
      ],
      initializationOptions,
      // One channel for our logs, the server's stderr and the trace.
      outputChannel: this.log,
      traceOutputChannel: this.log,
      revealOutputChannelOn: 4, // RevealOutputChannelOn.Never: the status item leads to it.
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue }),
        closed: () => {
          if (generation === this.generation && this.client === client) this.onCrash();
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    const client = new LanguageClient('bonsai', 'Bonsai Language Server', serverOptions, clientOptions);
    this.client = client;
    client.onNotification(P.LINEAGE_CHANGED, (params: unknown) => {
      if (P.is(params, P.Shapes.LineageChangedParams)) this.lineageEmitter.fire(params);
      else this.log.warn(`Ignored malformed ${P.LINEAGE_CHANGED}: ${P.problem(params, P.Shapes.LineageChangedParams)}`);
    });
    client.onNotification(P.JOB_CHANGED, (params: unknown) => {
      const job = (params as { job?: unknown } | null)?.job;
      if (P.is(job, P.Shapes.JobInfo)) this.jobEmitter.fire(job);
      else this.log.warn(`Ignored malformed ${P.JOB_CHANGED}: ${P.problem(job, P.Shapes.JobInfo, 'job')}`);
    });
    try {
      await client.start();
    } catch (e) {
      if (generation !== this.generation || this.client !== client) return;
      this.log.error(`The server did not start: ${errorText(e)}`);
      this.client = undefined;
      this.onCrash(errorText(e));
      return;
    }
    if (generation === this.generation && client.state === State.Running) {
      this.log.info('Server ready.');
      this.setState({ kind: 'ready' });
    }
  }

  private async doStop(): Promise<void> {
    this.generation++;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        if (client.needsStop()) await client.stop(5000);
      } catch (e) {
        this.log.warn(`Stopping the server: ${errorText(e)}`);
      }
    }
    this.setState({ kind: 'stopped', reason: 'stopped' });
  }

  private onCrash(detail?: string): void {
    this.client = undefined;
    const decision = this.policy.onCrash();
    if (decision.restart) {
      this.log.warn(`The server stopped unexpectedly; restart ${decision.attempt} in ${decision.delayMs} ms.`);
      this.setState({ kind: 'starting' });
      this.restartTimer = setTimeout(() => void this.start(), decision.delayMs);
      return;
    }
    const reason = `The Bonsai server crashed ${decision.crashes} times in a row${detail ? ` (${detail})` : ''}; it was not restarted again.`;
    this.log.error(reason);
    this.setState({ kind: 'stopped', reason });
    void vscode.window.showErrorMessage(reason, 'Show Logs', 'Restart Server').then((pick) => {
      if (pick === 'Show Logs') this.log.show();
      if (pick === 'Restart Server') void this.restart();
    });
  }

  /** Python missing, or modelbonsai missing from it: say so, and offer the exact fix. */
  private async offerFix(python: ResolvedPython, reason: 'no-python' | 'no-package'): Promise<void> {
    if (reason === 'no-python') {
      const pick = await vscode.window.showErrorMessage(
        `Bonsai could not run Python '${python.command}'. Set "bonsai.pythonPath" to a Python 3.10+ interpreter.`,
        'Open Settings',
        'Show Logs',
      );
      this.onPick(pick);
      return;
    }
    // A checkout around the workspace, else around the extension itself (run from its sources).
    const root = this.context.extensionPath;
    const repoRoot = findRepoRoot([...(vscode.workspace.workspaceFolders?.map((f) => f.uri.fsPath) ?? []), root]);
    let wheel: string | undefined;
    try {
      // A checkout installs editable (installCommand), so a wheel is looked for only outside one.
      wheel = repoRoot ? undefined : findBundledWheel(root, (dir) => fs.readdirSync(dir));
    } catch (e) {
      this.log.error(errorText(e));
      const pick = await vscode.window.showErrorMessage(errorText(e), 'Choose Another Python', 'Show Logs');
      this.onPick(pick);
      return;
    }
    const args = installCommand(python.command, repoRoot, wheel);
    if (!args) {
      // Nothing to offer that could work (modelbonsai is not on PyPI): say how to get it.
      this.log.error(`No install command: no Bonsai checkout around the workspace and no server wheel in ${root}.`);
      const pick = await vscode.window.showErrorMessage(manualInstallMessage(python.command), 'Choose Another Python', 'Show Logs');
      this.onPick(pick);
      return;
    }
    const command = shellQuote(args);
    const pick = await vscode.window.showWarningMessage(
      `The Bonsai server package (modelbonsai) is not installed for ${python.command}. Install it with: ${command}`,
      'Install',
      'Choose Another Python',
    );
    if (pick !== 'Install') {
      this.onPick(pick);
      return;
    }
    const [cmd, ...rest] = args;
    const task = new vscode.Task(
      { type: 'process', bonsai: 'install' },
      vscode.TaskScope.Workspace,
      'Install modelbonsai',
      'Bonsai',
      new vscode.ProcessExecution(cmd ?? python.command, rest),
    );
    const done = vscode.tasks.onDidEndTaskProcess((e) => {
      if (e.execution.task !== task) return;
      done.dispose();
      if (e.exitCode === 0) void this.restart();
      else void vscode.window.showErrorMessage(`Installing modelbonsai failed (exit code ${e.exitCode ?? '?'}); see the terminal.`);
    });
    await vscode.tasks.executeTask(task);
  }

  /** The prompts' shared choices: the Python setting, or the server's log. */
  private onPick(pick: string | undefined): void {
    if (pick === 'Open Settings' || pick === 'Choose Another Python') void vscode.commands.executeCommand('workbench.action.openSettings', 'bonsai.pythonPath');
    if (pick === 'Show Logs') this.log.show();
  }

  /**
   * Asks VS Code to re-request the CodeLenses of visible experiment files. The server also sends
   * workspace/codeLens/refresh when the lineage changes; doing it from the client too keeps the
   * metrics lenses current with a server or client that drops that request.
   */
  refreshCodeLenses(): void {
    const feature = this.client?.getFeature(CodeLensRequest.method);
    if (!feature) return;
    const fired = new Set<unknown>();
    for (const editor of vscode.window.visibleTextEditors) {
      const shape = feature.getProvider(editor.document);
      if (shape && !fired.has(shape)) {
        fired.add(shape);
        shape.onDidChangeCodeLensEmitter.fire();
      }
    }
  }

  /** A request to the running server; a clear error when it is not running. */
  async request<R>(method: string, params: unknown, token?: vscode.CancellationToken): Promise<R> {
    const client = this.client;
    if (!client || this.stateValue.kind !== 'ready') {
      const why = this.stateValue.kind === 'stopped' ? this.stateValue.reason : 'it is still starting';
      throw new Error(`The Bonsai server is not running (${why}).`);
    }
    // An explicit `undefined` token would be sent as a second positional parameter.
    return token ? client.sendRequest<R>(method, params, token) : client.sendRequest<R>(method, params);
  }

  dispose(): void {
    void this.stop();
    for (const d of this.disposables) d.dispose();
    this.stateEmitter.dispose();
    this.lineageEmitter.dispose();
    this.jobEmitter.dispose();
  }
}

/** The Python extension's interpreter, through its public API; undefined when it is not installed. */
async function pythonExtensionInterpreter(): Promise<string | undefined> {
  const ext = vscode.extensions.getExtension<PythonExtensionApi>('ms-python.python');
  if (!ext) return undefined;
  const api = ext.isActive ? ext.exports : await ext.activate();
  const resource = vscode.workspace.workspaceFolders?.[0]?.uri;
  const env = api?.environments?.getActiveEnvironmentPath?.(resource);
  if (env?.path) {
    const resolved = await api.environments?.resolveEnvironment?.(env);
    return resolved?.executable?.uri?.fsPath ?? env.path;
  }
  return api?.settings?.getExecutionDetails?.(resource)?.execCommand?.[0];
}

interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath?(resource?: vscode.Uri): { path: string } | undefined;
    resolveEnvironment?(env: { path: string }): Promise<{ executable?: { uri?: vscode.Uri } } | undefined>;
  };
  settings?: { getExecutionDetails?(resource?: vscode.Uri): { execCommand?: string[] } };
}

function execFile(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; spawnError?: string }> {
  return new Promise((resolve) => {
    cp.execFile(cmd, args, { timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      if (e && typeof e.code === 'string') resolve({ code: null, stdout, stderr, spawnError: e.message });
      else resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr });
    });
  });
}

/** The Bonsai repo root when a workspace folder is inside a checkout of it (for `pip install -e`). */
export function findRepoRoot(folders: string[]): string | undefined {
  for (const start of folders) {
    let dir = start;
    for (;;) {
      const pyproject = path.join(dir, 'pyproject.toml');
      try {
        if (/^name\s*=\s*["']modelbonsai["']/m.test(fs.readFileSync(pyproject, 'utf8'))) return dir;
      } catch {
        // no pyproject here: keep walking up
      }
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return undefined;
}

