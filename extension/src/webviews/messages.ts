/**
 * The typed message protocol between the extension host and a webview. Imported by both
 * bundles (no vscode or DOM imports here). Every request carries an id; the other side answers
 * with a reply or an error of the same id. Events carry no id and get no answer.
 */
import type { ModelInfo } from '../protocol';

export type PanelKind = 'modelMap' | 'behaviors' | 'layers';

/** What a panel needs to be reopened after a reload (kept by the serializer and setState). */
export interface PanelState {
  /** Model ids: the first is the base of a comparison. */
  models?: string[];
  /** Model to highlight. */
  focus?: string;
  /** Anything else the panel wants to keep (scroll, sort). */
  view?: Record<string, unknown>;
}

/** Requests a webview sends, each with its params and the reply it gets. */
export interface WebviewRequests {
  lineage: { params: Record<string, never>; result: { models: ModelInfo[] } };
  /** Runs a comparison and streams its pages back as `resultPage` events; replies when all are in. */
  compare: {
    params: { kind: 'weights' | 'activations' | 'behavior'; base: string; models: string[]; options?: Record<string, unknown> };
    result: { resultId: string; pages: number };
  };
  openModel: { params: { id: string; view: PanelKind }; result: null };
  revealInExperiment: { params: { id: string }; result: null };
}

export type RequestName = keyof WebviewRequests;

/** Events the host pushes to a webview. */
export interface HostEvents {
  lineageChanged: { models: ModelInfo[] };
  focus: { id: string };
  state: PanelState;
  /** One msgpack page of a result, as a transferred ArrayBuffer. */
  resultPage: { requestId: number; resultId: string; page: number; pages: number; done: boolean; bytes: ArrayBuffer };
  serverState: { state: 'starting' | 'ready' | 'stopped'; reason?: string; trusted: boolean };
}

export type EventName = keyof HostEvents;

export type ToHost =
  | { [K in RequestName]: { type: 'request'; id: number; method: K; params: WebviewRequests[K]['params'] } }[RequestName]
  | { type: 'ready' }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string };

export type ToWebview =
  | { type: 'reply'; id: number; result: unknown }
  | { type: 'error'; id: number; error: { message: string; code?: number } }
  | { [K in EventName]: { type: 'event'; name: K; data: HostEvents[K] } }[EventName];

/** Narrowing for what arrives from a webview: it is untrusted input. */
export function isToHost(m: unknown): m is ToHost {
  if (typeof m !== 'object' || m === null) return false;
  const o = m as Record<string, unknown>;
  if (o.type === 'ready') return true;
  if (o.type === 'log') return typeof o.message === 'string';
  return o.type === 'request' && Number.isInteger(o.id) && typeof o.method === 'string' && typeof o.params === 'object' && o.params !== null;
}
