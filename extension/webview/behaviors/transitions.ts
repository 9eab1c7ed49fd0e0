/** The most frequent "base prediction → new prediction" changes per model. */
import type { BehaviorModel } from './data';

export interface TransitionItem {
  model: string;
  label: string;
  base: string;
  other: string;
  count: number;
  /** Share of all instances. */
  share: number;
  ids: string[];
}

/** The `k` most frequent changes (base ≠ new) of one model, most frequent first. */
export function topTransitions(m: BehaviorModel, k = 10, includeUnchanged = false): TransitionItem[] {
  const total = m.ids.length || 1;
  return m.transitions
    .filter((t) => includeUnchanged || t.base !== t.other)
    .map((t) => ({ model: m.id, label: `${t.base} → ${t.other}`, base: t.base, other: t.other, count: t.count, share: t.count / total, ids: t.ids }))
    .sort((a, b) => b.count - a.count || a.base.localeCompare(b.base, undefined, { numeric: true }) || a.other.localeCompare(b.other, undefined, { numeric: true }))
    .slice(0, k);
}
