/**
 * The Lineage tree's shape and wording, computed from bonsai/lineage's ModelInfo[]. Pure (no
 * vscode import) so tree building and formatting are unit-tested without an editor.
 */
import {
  formatMeasured,
  formatMetric,
  type MetricId,
  metricLabel,
  noisyWhy,
  spreadText,
} from '../../shared/metrics';
import type { MetricInfo, ModelInfo } from '../../shared/protocol';

// The metric formatting the panels share lives in shared/metrics.ts; re-exported for the tree's users.
export { formatBytes, formatMeasured, formatMetric, type MetricId, metricIdentity, metricLabel, noisyWhy, spreadText } from '../../shared/metrics';

export interface LineageNode {
  model: ModelInfo;
  children: LineageNode[];
  depth: number;
}

/**
 * Each model under its parent, siblings oldest first. A model whose parent is not listed (deleted,
 * or listed in another folder) becomes a root rather than disappearing; a parent cycle (a corrupt
 * store) is broken at the first model met twice.
 */
export function buildForest(models: readonly ModelInfo[]): LineageNode[] {
  const byId = new Map(models.map((m) => [m.id, m]));
  const nodes = new Map(models.map((m) => [m.id, { model: m, children: [] as LineageNode[], depth: 0 }]));
  const roots: LineageNode[] = [];
  for (const m of models) {
    const node = nodes.get(m.id)!;
    const parent = m.parent !== null && m.parent !== m.id ? nodes.get(m.parent) : undefined;
    if (parent && !createsCycle(m, byId)) parent.children.push(node);
    else roots.push(node);
  }
  const order = (a: LineageNode, b: LineageNode) =>
    a.model.created.localeCompare(b.model.created) || a.model.name.localeCompare(b.model.name);
  const visit = (list: LineageNode[], depth: number) => {
    list.sort(order);
    for (const n of list) {
      n.depth = depth;
      visit(n.children, depth + 1);
    }
  };
  visit(roots, 0);
  return roots;
}

function createsCycle(m: ModelInfo, byId: Map<string, ModelInfo>): boolean {
  const seen = new Set<string>([m.id]);
  let p = m.parent;
  while (p !== null) {
    if (seen.has(p)) return true;
    seen.add(p);
    p = byId.get(p)?.parent ?? null;
  }
  return false;
}

/** "prune.magnitude · accuracy 97.1% · stored_size 619 KiB" */
/** `all`: the metrics shown together (the whole lineage), so a name is told apart as in the Model Map. */
export function describe(m: ModelInfo, all: readonly MetricId[] = m.metrics): string {
  const head = m.metrics.filter((x) => x.headline).map((x) => `${metricLabel(x, all)} ${formatMeasured(x)}`);
  const parts = [m.op ?? (m.parent === null ? 'base' : ''), ...head].filter(Boolean);
  if (m.status !== 'ok') parts.unshift(m.status);
  else if (m.imported) parts.unshift('imported');
  return parts.join(' · ');
}

/**
 * The tree's label: the model's name, then the other variants that are this same model (their
 * fingerprint matched, so it was made once): `int8 = twin`. Intermediate steps' names (`twin/1`)
 * stay in the tooltip, where they do not crowd the tree.
 */
export function treeLabel(m: Pick<ModelInfo, 'name' | 'aliases'>): string {
  const finals = (m.aliases ?? []).filter((a) => !a.includes('/'));
  return finals.length ? `${m.name} = ${finals.join(', ')}` : m.name;
}

/** Markdown tooltip: what made the model, every metric, and why its status is not ok. */
export function tooltipMarkdown(m: ModelInfo, parent?: ModelInfo, all: readonly MetricId[] = m.metrics): string {
  const esc = (s: string) => s.replace(/([\\`*_{}[\]()#+\-.!|<>])/g, '\\$1');
  const lines = [`**${esc(m.name)}**${m.op ? ` — \`${m.op}\`` : m.parent === null ? ' — base model' : ''}`, ''];
  if (m.status !== 'ok') lines.push(`*${m.status}*${m.statusReason ? `: ${esc(m.statusReason)}` : ''}`, '');
  if (m.imported) {
    lines.push(`*imported* from ${esc(m.imported.tool)} (${esc(baseName(m.imported.file))}): its recipe and metrics, no weights, so comparisons that need weights do not apply`, '');
  }
  const params = Object.entries(m.params);
  if (params.length) lines.push(params.map(([k, v]) => `\`${k}\`: \`${JSON.stringify(v)}\``).join(', '), '');
  if (m.metrics.length) {
    lines.push('| metric | value | vs parent |', '|---|---:|---:|');
    for (const x of m.metrics) {
      const p = parent?.metrics.find((y) => y.key === x.key);
      const spread = spreadText(x);
      const value = `${formatMeasured(x)}${spread ? ` (${spread})` : ''}`;
      const change = p ? `${p.noisy || x.noisy ? '~' : ''}${delta(x, p)}` : '';
      lines.push(`| ${esc(metricLabel(x, all))}${x.headline ? ' ★' : ''} | ${value} | ${change} |`);
    }
    lines.push('');
    for (const x of m.metrics) {
      const why = noisyWhy(x);
      if (why) lines.push(`*${esc(why)}*`, '');
    }
  }
  if (m.experiment) lines.push(`from \`${m.experiment.variant}\` in ${esc(baseName(m.experiment.file))}`);
  if (m.aliases?.length) {
    lines.push(`also ${m.aliases.map((a) => `\`${a}\``).join(', ')}: the same recipe, so the same model`, '');
  }
  lines.push(`created ${m.created}`, `id \`${m.id}\``);
  return lines.join('\n');
}

/** Change against the parent, with ▲/▼ and whether that is better. */
export function delta(x: MetricInfo, p: MetricInfo): string {
  if (p.value === 0) return x.value === 0 ? '=' : '';
  const d = x.value - p.value;
  if (d === 0) return '=';
  const better = d > 0 === x.higherIsBetter;
  const rel = x.unit === '%' ? `${d.toFixed(1)} pt` : `${((d / Math.abs(p.value)) * 100).toFixed(1)}%`;
  return `${d > 0 ? '▲' : '▼'} ${d > 0 && !rel.startsWith('-') ? '+' : ''}${rel} ${better ? '(better)' : '(worse)'}`;
}

function baseName(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}

/** Codicon id and theme color for a status. */
export function statusIcon(m: ModelInfo): { id: string; color?: string } {
  switch (m.status) {
    case 'running':
      return { id: 'sync~spin' };
    case 'failed':
      return { id: 'error', color: 'testing.iconFailed' };
    case 'broken':
      return { id: 'warning', color: 'list.warningForeground' };
    case 'stale':
      return { id: 'history', color: 'list.deemphasizedForeground' };
    case 'ok':
      return { id: m.parent === null ? 'package' : 'circle-filled' };
  }
}

export function contextValue(m: ModelInfo): string {
  return ['model', m.parent !== null ? 'hasParent' : '', m.experiment ? 'hasExperiment' : '', m.status].filter(Boolean).join(' ');
}
