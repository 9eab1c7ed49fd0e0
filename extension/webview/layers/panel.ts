/**
 * What every part of the Layers panel is handed: the state, the host connection, which models
 * are compared, and the panel's few actions (save, select, report an error, redraw a part).
 * app.ts builds it; the view modules only read `state` and call these.
 */
import type { Rpc } from '../shared/rpc';
import type { LayersState } from './state';

export interface LayersPanel {
  state: LayersState;
  rpc: Rpc;
  /** The base first, then the others. */
  ids: string[];
  base: string;
  others: string[];
  /** A model's display name. */
  name: (id: string) => string;
  /** Saves the user's choices in the webview state. */
  save: () => void;
  /** Selects a module or tensor and shows it (tree and detail). */
  select: (id: string) => void;
  /** Adds an error to the panel's error list. */
  showError: (e: unknown) => void;
  show: {
    all: () => void;
    /** After a result for model `id` arrived: everything it changes, and the detail only if
     * the result covers the selected node (redrawing it drops the heatmaps' zoom). */
    result: (id: string) => void;
    progress: () => void;
    tree: () => void;
    detail: () => void;
    drill: () => void;
    depth: () => void;
  };
}

/** The note under both heatmaps' pickers. */
export const HEATMAP_KEYS = 'wheel / + \u2212 zoom, drag / arrows pan, 0 resets';
