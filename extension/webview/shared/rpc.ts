/**
 * The webview side of the message protocol (shared/messages.ts): requests with ids and
 * promised replies, host events, and state kept across reloads with vscode.setState/getState.
 */
import type { EventName, HostEvents, PanelState, RequestName, ToHost, ToWebview, WebviewRequests } from '../../shared/messages';

interface VsCodeApi {
  postMessage(message: ToHost): void;
  getState(): unknown;
  setState(state: unknown): void;
}

declare function acquireVsCodeApi(): VsCodeApi;

export class RequestError extends Error {
  constructor(
    message: string,
    readonly code?: number,
  ) {
    super(message);
  }
}

type Listener<K extends EventName> = (data: HostEvents[K]) => void;

export class Rpc {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Map<EventName, Set<Listener<EventName>>>();

  constructor(
    private readonly api: VsCodeApi,
    target: { addEventListener(type: 'message', fn: (e: MessageEvent) => void): void } = window,
  ) {
    target.addEventListener('message', (e: MessageEvent) => this.receive(e.data as ToWebview));
  }

  /** Sends a request; resolves with the reply or rejects with the host's error message. */
  request<K extends RequestName>(method: K, params: WebviewRequests[K]['params']): Promise<WebviewRequests[K]['result']> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.api.postMessage({ type: 'request', id, method, params } as ToHost);
    });
  }

  /** The id the next request will get (to match result pages streamed for it). */
  peekId(): number {
    return this.nextId;
  }

  on<K extends EventName>(name: K, fn: Listener<K>): () => void {
    const set = this.listeners.get(name) ?? new Set();
    set.add(fn as Listener<EventName>);
    this.listeners.set(name, set);
    return () => set.delete(fn as Listener<EventName>);
  }

  ready(): void {
    this.api.postMessage({ type: 'ready' });
  }

  log(level: 'info' | 'warn' | 'error', message: string): void {
    this.api.postMessage({ type: 'log', level, message });
  }

  private receive(m: ToWebview): void {
    if (typeof m !== 'object' || m === null) return;
    if (m.type === 'reply' || m.type === 'error') {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.type === 'reply') p.resolve(m.result);
      else p.reject(new RequestError(m.error.message, m.error.code));
      return;
    }
    if (m.type === 'event') {
      for (const fn of this.listeners.get(m.name) ?? []) fn(m.data);
    }
  }
}

/** Panel state: what the serializer restores (vscode.getState) over what the host embedded. */
export class PanelStore {
  state: PanelState;

  constructor(private readonly api: VsCodeApi) {
    const embedded = parseState(document.body.dataset.state);
    const saved = api.getState() as PanelState | undefined;
    this.state = { ...embedded, ...(saved ?? {}) };
    this.api.setState(this.state);
  }

  update(patch: Partial<PanelState>): void {
    this.state = { ...this.state, ...patch };
    this.api.setState(this.state);
  }
}

function parseState(text: string | undefined): PanelState {
  try {
    return text ? (JSON.parse(text) as PanelState) : {};
  } catch {
    return {};
  }
}

let api: VsCodeApi | undefined;
/** acquireVsCodeApi may be called once per webview: share it. */
export function vscodeApi(): VsCodeApi {
  api ??= acquireVsCodeApi();
  return api;
}
