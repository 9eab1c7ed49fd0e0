/**
 * A stand-in for vscode-languageclient/node: records each client the extension makes, so tests
 * can drive its lifecycle (start failing, the connection closing) without a real server.
 */
export enum State {
  Stopped = 1,
  Starting = 3,
  Running = 2,
}
export enum ErrorAction {
  Continue = 1,
  Shutdown = 2,
}
export enum CloseAction {
  DoNotRestart = 1,
  Restart = 2,
}
export const CodeLensRequest = { method: 'textDocument/codeLens' };

export interface ClientOptionsLike {
  initializationOptions: unknown;
  errorHandler: { closed(): { action: CloseAction; handled?: boolean } };
}

export class LanguageClient {
  static instances: LanguageClient[] = [];
  static failStart: Error | undefined;
  state = State.Stopped;
  stopped = false;
  readonly notifications = new Map<string, (params: unknown) => void>();
  readonly requests: [string, unknown][] = [];

  constructor(
    readonly id: string,
    readonly name: string,
    readonly serverOptions: { command: string; args: string[] },
    readonly clientOptions: ClientOptionsLike,
  ) {
    LanguageClient.instances.push(this);
  }

  async start(): Promise<void> {
    if (LanguageClient.failStart) throw LanguageClient.failStart;
    this.state = State.Running;
  }

  needsStop(): boolean {
    return this.state === State.Running;
  }

  async stop(): Promise<void> {
    this.state = State.Stopped;
    this.stopped = true;
  }

  onNotification(method: string, fn: (params: unknown) => void): void {
    this.notifications.set(method, fn);
  }

  async sendRequest(method: string, params: unknown): Promise<unknown> {
    this.requests.push([method, params]);
    return { ok: true };
  }

  getFeature(): undefined {
    return undefined;
  }

  /** Test helper: the server process died. */
  crash(): void {
    this.state = State.Stopped;
    this.clientOptions.errorHandler.closed();
  }
}
