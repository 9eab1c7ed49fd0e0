/**
 * Multi-op variants fold into one model. A variant with several ops stores the model after each
 * op, named `<variant>/1`, `<variant>/2`, ... before the variant's own model: every view shows
 * those steps as models of their own by default, which doubles a lineage of two-op variants and
 * puts names like "x-restore-ln/1" beside "x-restore-ln". Folded, the variant's model hangs from
 * where its first step started, its op is the chain of ops ("prune.magnitude + restore") and its
 * parameters those of every step. A variant is shown unfolded on request (`expanded`). The full
 * lineage stays what the recipe views read. Pure: no DOM.
 */
import type { ModelInfo } from '../../shared/protocol';
import type { Lineage } from './lineage';

const STEP = /^(.*)\/(\d+)$/;

/**
 * The variants' models that have intermediate steps: final model id -> its intermediate models,
 * first step first. A step is folded only when it is named `<variant>/<k>`, leads to the variant's
 * model (named so, or answering to it as an alias) through steps of the same variant, and has no
 * other child (a variant started from an intermediate model keeps it visible).
 */
export function stepChains(lin: Lineage): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const id of lin.order) {
    const m = lin.byId.get(id)!;
    const match = STEP.exec(m.name);
    if (!match) continue;
    const variant = match[1]!;
    // Only the first step of a chain starts one (its parent is not a step of the same variant).
    const p = lin.parentOf(id);
    if (p !== undefined && lin.byId.get(p)!.name.startsWith(`${variant}/`)) continue;
    const chain: string[] = [];
    let cur = id;
    let final: string | undefined;
    for (;;) {
      const kids = lin.children.get(cur) ?? [];
      const name = lin.byId.get(cur)!.name;
      if (!name.startsWith(`${variant}/`) || !STEP.test(name) || kids.length !== 1) break;
      chain.push(cur);
      const next = lin.byId.get(kids[0]!)!;
      if (next.name === variant || (next.aliases ?? []).includes(variant)) {
        final = next.id;
        break;
      }
      cur = next.id;
    }
    if (final !== undefined && chain.length) out.set(final, chain);
  }
  return out;
}

/** Parameters of several steps as one record; a name two steps share is told apart by its op. */
function mergedParams(steps: readonly ModelInfo[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const owner = new Map<string, string>();
  for (const s of steps) {
    for (const [k, v] of Object.entries(s.params)) {
      if (!owner.has(k)) {
        owner.set(k, s.op ?? '');
        out[k] = v;
      } else out[`${s.op ?? ''}.${k}`] = v;
    }
  }
  return out;
}

export interface Folded {
  /** The models the views show. */
  models: ModelInfo[];
  /** Final model id -> the intermediate models folded into it (first step first). */
  folded: Map<string, string[]>;
}

/** The lineage as the views show it: every variant's steps folded, but those in `expanded`. */
export function foldSteps(lin: Lineage, expanded: (finalId: string) => boolean): Folded {
  const chains = stepChains(lin);
  const hidden = new Set<string>();
  const replaced = new Map<string, ModelInfo>();
  const folded = new Map<string, string[]>();
  for (const [final, chain] of chains) {
    if (expanded(final)) continue;
    const steps = [...chain, final].map((x) => lin.byId.get(x)!);
    for (const x of chain) hidden.add(x);
    folded.set(final, chain);
    const first = steps[0]!;
    replaced.set(final, { ...lin.byId.get(final)!, parent: first.parent, op: steps.map((s) => s.op ?? '').join(' + '), params: mergedParams(steps) });
  }
  const models = lin.models.filter((m) => !hidden.has(m.id)).map((m) => replaced.get(m.id) ?? m);
  return { models, folded };
}
