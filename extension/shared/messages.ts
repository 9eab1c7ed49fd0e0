/**
 * The typed message protocol between the extension host and a webview. Imported by both
 * bundles (no vscode or DOM imports here). Every request carries an id; the other side answers
 * with a reply or an error of the same id. Events carry no id and get no answer.
 */
import type { JobInfo, ModelInfo, ScanInfo } from './protocol';

export type PanelKind = 'modelMap' | 'behaviors' | 'layers';

/** What a panel needs to be reopened after a reload (kept by the serializer and setState). */
export interface PanelState {
  /** Model ids: the first is the base of a comparison. */
  models?: string[];
  /** Model to highlight. */
  focus?: string;
  /** Models to select once the panel has its lineage (the Model Map: "Compare Recipe with…"
   * selects two, which shows their recipe diff); consumed by the panel. */
  select?: string[];
  /** Anything else the panel wants to keep (scroll, sort). */
  view?: Record<string, unknown>;
}

/** Where a drill-down lands: an instance (Layers ranks layers by it), a layer, or instances to show. */
export interface DrillFocus {
  instance?: string;
  layer?: string;
  instances?: string[];
  /** Words for the user: why these instances / this ranking. */
  reason?: string;
}

/** Requests a webview sends, each with its params and the reply it gets. */
export interface WebviewRequests {
  lineage: { params: Record<string, never>; result: { models: ModelInfo[] } };
  /** Runs a comparison and streams its pages back as `resultPage` events; replies when all are in,
   * or with `cancelled` when its job was cancelled (by `cancel`, or on the server) before that. */
  compare: {
    params: { kind: 'weights' | 'activations' | 'behavior'; base: string; models: string[]; options?: Record<string, unknown> };
    result: { resultId: string; pages: number; cancelled?: boolean };
  };
  /** Heatmap tiles of a weight, or of a module's activations on `instances` (one row each), or of
   * other − model: every page's msgpack bytes in the reply. */
  tiles: {
    params: {
      model: string; tensor: string; other?: string; source?: 'weight' | 'activation'; instances?: string[];
      level: number; x0: number; y0: number; x1: number; y1: number;
    };
    result: { resultId: string; pages: ArrayBuffer[] };
  };
  /** Instances as the task renders them, with each model's prediction: pages' bytes in the reply. */
  instances: { params: { ids: string[]; models: string[] }; result: { resultId: string; pages: ArrayBuffer[] } };
  /** Cancels an earlier request (its id): the server's job stops and page fetching ends;
   * `cancelled: false` when it was no longer in flight. */
  cancel: { params: { requestId: number }; result: { cancelled: boolean } };
  openModel: { params: { id: string; view: PanelKind }; result: null };
  revealInExperiment: { params: { id: string }; result: null };
  /** Opens Behaviors or Layers for several models; the first is the base of the comparison.
   * With `focus` it is the linked drill-down (an open panel for those models gets a `drill` event). */
  openPanel: { params: { view: 'behaviors' | 'layers'; models: string[]; focus?: DrillFocus }; result: null };
  /** One-click fix from a layer (Layers): writes a new variant into the experiment file `model`
   * came from — its recipe with `patterns` added to `exclude`, or followed by a `restore` of them —
   * and shows it in the editor; replies with the file and the new variant's name. */
  addFixVariant: {
    params: { model: string; action: 'exclude' | 'restore'; patterns: string[] };
    result: { file: string; variant: string };
  };
  /** The stored sensitivity scans (newest first) of the experiment file `model` came from (Layers). */
  scans: { params: { model: string }; result: { file: string; scans: ScanInfo[] } };
  /** Runs that file's `scan:` (progress and Cancel in the job notification); replies when it ends. */
  runScan: { params: { model: string }; result: { state: JobInfo['state']; message: string } };
  /** "Make a variant under X MB" / "within Y of the base" over a stored scan: the host asks for the
   * budget and the name and writes the variant into the file; `message` when nothing was written
   * (no recipe meets the budget: the closest one's size); null when the user dismissed the box. */
  budgetVariant: {
    params: { model: string; scan: string; budget: 'size' | 'loss'; baseBytes: number };
    result: { file: string; variant: string } | { message: string } | null;
  };
  /** Saves a file the webview made (SVG, PNG, CSV) where the user picks; null when cancelled. */
  exportFile: { params: { name: string; data: string; encoding: 'utf8' | 'base64' }; result: { path: string } | null };
}

export type RequestName = keyof WebviewRequests;

/** Events the host pushes to a webview. */
export interface HostEvents {
  lineageChanged: { models: ModelInfo[] };
  focus: { id: string };
  /** Select these models (the Model Map, already open, for "Compare Recipe with…"). */
  select: { ids: string[] };
  state: PanelState;
  /** One msgpack page of a result, as a transferred ArrayBuffer. */
  resultPage: { requestId: number; resultId: string; page: number; pages: number; done: boolean; bytes: ArrayBuffer };
  serverState: { state: 'starting' | 'ready' | 'stopped'; reason?: string; trusted: boolean };
  /** A drill-down arrived for an open panel (openPanel from another panel). */
  drill: DrillFocus;
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
