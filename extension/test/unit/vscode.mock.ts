/**
 * A small stand-in for the `vscode` module (which exists only inside VS Code), covering what the
 * extension-host modules under test touch. Window functions are vi.fn so tests can script answers.
 */
import { vi } from 'vitest';

type Listener<T> = (e: T) => unknown;

export class EventEmitter<T> {
  private listeners = new Set<Listener<T>>();
  event = (fn: Listener<T>) => {
    this.listeners.add(fn);
    return { dispose: () => this.listeners.delete(fn) };
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) l(e);
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export class Disposable {
  constructor(private readonly fn: () => void) {}
  dispose(): void {
    this.fn();
  }
}

export enum TreeItemCollapsibleState {
  None = 0,
  Collapsed = 1,
  Expanded = 2,
}

export class TreeItem {
  id?: string;
  description?: string;
  tooltip?: unknown;
  iconPath?: unknown;
  contextValue?: string;
  accessibilityInformation?: { label: string };
  constructor(
    public label: string,
    public collapsibleState: TreeItemCollapsibleState = TreeItemCollapsibleState.None,
  ) {}
}

export class ThemeColor {
  constructor(public id: string) {}
}

export class ThemeIcon {
  constructor(
    public id: string,
    public color?: ThemeColor,
  ) {}
}

export class MarkdownString {
  supportThemeIcons = false;
  constructor(public value = '') {}
}

export class Uri {
  private constructor(
    public scheme: string,
    public fsPath: string,
  ) {}
  static file(p: string): Uri {
    return new Uri('file', p);
  }
  static parse(s: string): Uri {
    return s.startsWith('file://') ? new Uri('file', decodeURIComponent(s.slice(7))) : new Uri(s.split(':')[0] ?? '', s);
  }
  static joinPath(u: Uri, ...parts: string[]): Uri {
    return new Uri(u.scheme, [u.fsPath, ...parts].join('/'));
  }
  toString(): string {
    return `${this.scheme}://${this.fsPath}`;
  }
}

export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}

export enum LanguageStatusSeverity {
  Information = 0,
  Warning = 1,
  Error = 2,
}

export class CancellationTokenSource {
  private emitter = new EventEmitter<void>();
  token = {
    isCancellationRequested: false,
    onCancellationRequested: this.emitter.event,
  };
  cancel(): void {
    this.token.isCancellationRequested = true;
    this.emitter.fire();
  }
}

const config = new Map<string, unknown>();
const configListeners = new Set<(e: { affectsConfiguration(s: string): boolean }) => void>();

/** Test helper: fire onDidChangeConfiguration for `key`. */
export function __fireConfigChange(key: string): void {
  for (const l of configListeners) l({ affectsConfiguration: (s: string) => key === s || key.startsWith(`${s}.`) });
}

export const workspace = {
  workspaceFolders: undefined as { uri: Uri; name: string; index: number }[] | undefined,
  isTrusted: true,
  getConfiguration: (section?: string) => ({
    get: <T>(key: string, dflt?: T): T => (config.has(`${section}.${key}`) ? (config.get(`${section}.${key}`) as T) : (dflt as T)),
  }),
  onDidChangeConfiguration: vi.fn((fn: (e: { affectsConfiguration(s: string): boolean }) => void) => {
    configListeners.add(fn);
    return { dispose: () => configListeners.delete(fn) };
  }),
  fs: { createDirectory: vi.fn(async () => undefined) },
  onDidGrantWorkspaceTrust: vi.fn(() => ({ dispose() {} })),
  onDidChangeWorkspaceFolders: vi.fn(() => ({ dispose() {} })),
};

/** Test helper: set a configuration value (`bonsai.pythonPath`, ...). */
export function __setConfig(key: string, value: unknown): void {
  if (value === undefined) config.delete(key);
  else config.set(key, value);
}

export enum ViewColumn {
  Active = -1,
  One = 1,
}

/** A fake webview panel: records posted messages and lets a test send messages from the page. */
export class FakePanel {
  posted: unknown[] = [];
  private receive = new EventEmitter<unknown>();
  private disposeEmitter = new EventEmitter<void>();
  revealed = 0;
  iconPath: unknown;
  webview = {
    html: '',
    options: {} as unknown,
    cspSource: 'vscode-webview://test',
    asWebviewUri: (u: Uri) => u,
    postMessage: async (m: unknown) => {
      this.posted.push(m);
      return true;
    },
    onDidReceiveMessage: this.receive.event,
  };
  onDidDispose = this.disposeEmitter.event;
  constructor(
    public viewType: string,
    public title: string,
  ) {}
  reveal(): void {
    this.revealed++;
  }
  dispose(): void {
    this.disposeEmitter.fire();
  }
  /** Test helper: a message from the page. */
  send(m: unknown): void {
    this.receive.fire(m);
  }
}
export const __panels: FakePanel[] = [];
export const __serializers = new Map<string, { deserializeWebviewPanel(panel: unknown, state: unknown): Promise<void> }>();

export const window = {
  visibleTextEditors: [] as unknown[],
  createWebviewPanel: vi.fn((viewType: string, title: string) => {
    const p = new FakePanel(viewType, title);
    __panels.push(p);
    return p;
  }),
  registerWebviewPanelSerializer: vi.fn((viewType: string, s: { deserializeWebviewPanel(panel: unknown, state: unknown): Promise<void> }) => {
    __serializers.set(viewType, s);
    return { dispose: () => __serializers.delete(viewType) };
  }),
  showErrorMessage: vi.fn(async (..._args: unknown[]) => undefined as string | undefined),
  showWarningMessage: vi.fn(async (..._args: unknown[]) => undefined as string | undefined),
  showInformationMessage: vi.fn(async (..._args: unknown[]) => undefined as string | undefined),
  withProgress: vi.fn(
    async <R>(
      _opts: unknown,
      task: (progress: { report: (v: unknown) => void }, token: CancellationTokenSource['token']) => Promise<R>,
    ): Promise<R> => task({ report: () => {} }, new CancellationTokenSource().token),
  ),
};

export const env = {
  openExternal: vi.fn(async (_uri: unknown) => true),
};

export const languages = {
  createLanguageStatusItem: vi.fn((id: string, selector: unknown) => ({ id, selector, dispose: vi.fn() })),
};

export const commands = {
  executeCommand: vi.fn(async () => undefined),
  registerCommand: vi.fn(() => ({ dispose() {} })),
};

export enum TaskScope {
  Global = 1,
  Workspace = 2,
}
export class ProcessExecution {
  constructor(
    public process: string,
    public args: string[],
  ) {}
}
export class Task {
  constructor(
    public definition: unknown,
    public scope: unknown,
    public name: string,
    public source: string,
    public execution: ProcessExecution,
  ) {}
}
export const tasks = {
  executeTask: vi.fn(async () => undefined),
  onDidEndTaskProcess: vi.fn(() => ({ dispose() {} })),
};

export const extensions = {
  getExtension: vi.fn(() => undefined),
};
