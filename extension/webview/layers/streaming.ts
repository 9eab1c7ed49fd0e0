/**
 * The panel's two comparisons, streamed: weights first, then activations. Each result page
 * fills its model's data as it arrives and redraws what it changes; a cancel (the panel's, or the server's)
 * ends the progress line as Cancelled and skips the activations.
 */
import { streamCompare, type CompareRpc } from '../shared/stream';
import { activationsOf, weightsOf } from './data';
import type { LayersPanel } from './panel';
import { reindex, storeResult } from './state';

export function startComparisons(p: LayersPanel): void {
  const s = p.state;
  const crpc = p.rpc as unknown as CompareRpc;
  const stream = (kind: 'weights' | 'activations', apply: (r: Parameters<typeof weightsOf>[0]) => string | null) =>
    streamCompare(crpc, { kind, base: p.base, models: p.others }, (r) => {
      try {
        const id = apply(r);
        if (id === null) return; // a model this panel does not show
        reindex(s, id);
        p.show.result(id);
      } catch (e) {
        p.showError(e);
      }
    }, (received, expected) => {
      s.progress = { ...s.progress, received, expected };
      p.show.progress();
    });
  s.run = stream('weights', (r) => storeResult(s, 'weights', weightsOf(r)));
  s.run.done
    .then(() => {
      if (s.run?.cancelled) {
        // by the panel's Cancel, or on the server (the progress notification): say so, and
        // do not start the activations
        s.progress = { ...s.progress, label: 'Cancelled:', running: false };
        p.show.progress();
        return;
      }
      s.progress = { label: 'Comparing activations…', received: 0, expected: p.others.length, running: true };
      p.show.progress();
      s.run = stream('activations', (r) => storeResult(s, 'acts', activationsOf(r)));
      return s.run.done.then(() => {
        s.progress = { ...s.progress, label: s.run?.cancelled ? 'Cancelled:' : 'Compared weights and activations of', running: false };
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
