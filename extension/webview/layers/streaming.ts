/**
 * The panel's two comparisons, streamed: weights first, then activations. Each result page
 * fills its model's data as it arrives and redraws what it changes; a cancel (the panel's, or the
 * server's) ends the progress line as Cancelled and skips the activations. Starting again
 * (Resume) asks each stage only for the models whose result is not in yet: what was compared
 * before the cancel stays.
 */
import { stillToCompare, streamCompare, type CompareRpc, type CompareRun } from '../shared/stream';
import { activationsOf, weightsOf } from './data';
import type { LayersPanel } from './panel';
import { reindex, storeResult } from './state';

export function startComparisons(p: LayersPanel): void {
  const s = p.state;
  const crpc = p.rpc as unknown as CompareRpc;
  const total = p.others.length;
  /** One stage: its models not in yet, streamed; null when every model's result is in. */
  const stage = (kind: 'weights' | 'activations', label: string, apply: (r: Parameters<typeof weightsOf>[0]) => string | null,
    has: (id: string) => boolean): CompareRun | null => {
    const todo = stillToCompare(p.others, has);
    const before = total - todo.length;
    s.progress = { label, received: before, expected: total, running: todo.length > 0 };
    p.show.progress();
    if (!todo.length) return null;
    s.run = streamCompare(crpc, { kind, base: p.base, models: todo }, (r) => {
      try {
        const id = apply(r);
        if (id === null) return; // a model this panel does not show
        reindex(s, id);
        p.show.result(id);
      } catch (e) {
        p.showError(e);
      }
    }, (received) => {
      s.progress = { ...s.progress, received: before + received, expected: total };
      p.show.progress();
    });
    return s.run;
  };
  const cancelled = () => {
    // by the panel's Cancel, or on the server (the progress notification): say so, and do not
    // start what follows
    s.progress = { ...s.progress, label: 'Cancelled:', running: false, cancelled: true };
    p.show.progress();
  };
  const weights = stage('weights', 'Comparing weights…', (r) => storeResult(s, 'weights', weightsOf(r)),
    (id) => !!s.data.get(id)?.weights);
  (weights?.done ?? Promise.resolve())
    .then(() => {
      if (weights?.cancelled) return cancelled();
      const acts = stage('activations', 'Comparing activations…', (r) => storeResult(s, 'acts', activationsOf(r)),
        (id) => !!s.data.get(id)?.acts);
      return (acts?.done ?? Promise.resolve()).then(() => {
        if (acts?.cancelled) return cancelled();
        s.progress = { ...s.progress, label: 'Compared weights and activations of', running: false, cancelled: false };
        p.show.progress();
      });
    })
    .catch((e: unknown) => {
      s.progress = { ...s.progress, label: 'Stopped:', running: false };
      p.show.progress();
      p.showError(e);
      p.show.depth();
      p.show.drill();
    });
}
