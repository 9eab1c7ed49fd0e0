/**
 * One-click fixes from a layer: which parameters a fix names for the selected node, and which
 * compared models it can be written for (those made from an experiment file). The host writes
 * the variant (src/fixVariant.ts); this only says what to ask for. Pure: no DOM.
 */
import type { ModelInfo } from '../../shared/protocol';

export interface FixTarget {
  /** Glob patterns over parameter names: a module's `path.*`, or a tensor's own name. */
  patterns: string[];
  /** The compared parameter tensors the patterns cover (what the user is told). */
  tensors: string[];
  /** Compared models a variant can be added for: made from an experiment file. */
  models: { id: string; name: string; variant: string }[];
}

/**
 * The fix target of a node (null for the model itself, or a module none of whose parameters was
 * compared: a pattern that matches no parameter fails the run). `tensors` are the compared
 * parameter names of every model (the weights results').
 */
export function fixTarget(node: { id: string; kind: 'module' | 'tensor' }, tensors: Iterable<string>, models: readonly ModelInfo[], others: readonly string[]): FixTarget | null {
  if (!node.id) return null;
  const under = [...new Set([...tensors].filter((t) => (node.kind === 'tensor' ? t === node.id : t.startsWith(`${node.id}.`))))].sort();
  if (!under.length) return null;
  const withFile = others.flatMap((o) => {
    const m = models.find((x) => x.id === o);
    return m?.experiment ? [{ id: o, name: m.name, variant: m.experiment.variant }] : [];
  });
  if (!withFile.length) return null;
  // `path.*` also covers the module's buffers (a norm's running statistics): restored together
  return { patterns: node.kind === 'tensor' ? [node.id] : [`${node.id}.*`], tensors: under, models: withFile };
}
