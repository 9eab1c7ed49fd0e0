/**
 * The scatterplot's default axes. A compression trade-off is what the model costs against how
 * well it still does: stored size (or the compression ratio) on x, the task's headline quality
 * metric on y. Two metrics that move together on this lineage (agreement and accuracy on digits:
 * nearly the same number) make a diagonal line, not a trade-off, so a pair whose values are
 * nearly collinear is never the default; latency is the last resort for x (it is noisy, and
 * noise then picks the Pareto front). Pure: no DOM.
 */
import type { Lineage, MetricDef } from './lineage';

/** |Pearson r| at or above this: the two metrics say the same thing. */
export const COLLINEAR = 0.98;

/** Efficiency metrics, by the names the engine gives them (metrics/efficiency.py), best x first. */
const COST = ['stored_size', 'compression_ratio', 'nonzero_parameters', 'parameters', 'peak_memory', 'latency'];
const NOT_QUALITY = new Set([...COST, 'throughput', 'batch_size']);

/** Pearson correlation of the models that have both metrics; null with fewer than 3 such models
 * or when either is constant over them (no line to speak of). */
export function correlation(lin: Lineage, a: string, b: string): number | null {
  const xa = lin.column(a);
  const xb = lin.column(b);
  let n = 0;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < xa.length; i++) {
    if (Number.isNaN(xa[i]!) || Number.isNaN(xb[i]!)) continue;
    n++;
    sa += xa[i]!;
    sb += xb[i]!;
  }
  if (n < 3) return null;
  const ma = sa / n;
  const mb = sb / n;
  let cab = 0;
  let caa = 0;
  let cbb = 0;
  for (let i = 0; i < xa.length; i++) {
    if (Number.isNaN(xa[i]!) || Number.isNaN(xb[i]!)) continue;
    const da = xa[i]! - ma;
    const db = xb[i]! - mb;
    cab += da * db;
    caa += da * da;
    cbb += db * db;
  }
  if (caa === 0 || cbb === 0) return null;
  return cab / Math.sqrt(caa * cbb);
}

export function collinear(lin: Lineage, a: string, b: string): boolean {
  if (a === b) return true;
  const r = correlation(lin, a, b);
  return r !== null && Math.abs(r) >= COLLINEAR;
}

/** Does the metric take more than one value on this lineage? A constant axis shows nothing. */
function varies(lin: Lineage, key: string): boolean {
  let first: number | undefined;
  for (const v of lin.column(key)) {
    if (Number.isNaN(v)) continue;
    if (first === undefined) first = v;
    else if (v !== first) return true;
  }
  return false;
}

/** A deploy target's metrics (deploy/targets.py METRICS: `onnxruntime_latency`, `_speedup`,
 * `_size`, `_max_abs_diff`, `_agreement`) and its parity flag: a runtime's cost and its check
 * against the evaluated model, not the task's quality (they stay on the axis menus). */
const DEPLOY = /^(onnxruntime|executorch)_(latency|speedup|size|max_abs_diff|agreement)$|^deploy_parity_flags$/;

/** Quality metrics: anything the engine does not name an efficiency or deploy metric and not in bytes. */
export function qualityMetrics(lin: Lineage): MetricDef[] {
  return lin.metrics.filter((m) => !NOT_QUALITY.has(m.name) && m.unit !== 'B' && !DEPLOY.test(m.name));
}

/**
 * x: the first of stored size, compression ratio, another metric in bytes, non-zeros,
 * parameters, peak memory, latency that varies; y: the first headline quality metric not collinear with it (then any quality
 * metric, then any other). When every quality metric is collinear with the first x, the next x
 * is tried.
 */
export function defaultAxes(lin: Lineage): { x: string | null; y: string | null } {
  const byName = (name: string) => lin.metrics.find((m) => m.name === name);
  // A size under another name (a user metric in bytes) comes before the counts and latency.
  const bytes = lin.metrics.filter((m) => m.unit === 'B' && !COST.includes(m.name));
  const named = COST.map(byName);
  const xs = [...named.slice(0, 2), ...bytes, ...named.slice(2)].filter((m): m is MetricDef => m !== undefined && varies(lin, m.key));
  const quality = qualityMetrics(lin);
  const ys = [...quality.filter((m) => m.headline), ...quality.filter((m) => !m.headline)];
  for (const x of xs) {
    const y = ys.find((m) => varies(lin, m.key) && !collinear(lin, x.key, m.key));
    if (y) return { x: x.key, y: y.key };
  }
  // Nothing fits the rule (one model, no efficiency metrics): any two metrics that are not collinear.
  const all = lin.metrics;
  for (const y of ys.length ? ys : all) {
    const x = all.find((m) => m.key !== y.key && !collinear(lin, m.key, y.key));
    if (x) return { x: x.key, y: y.key };
  }
  return { x: xs[0]?.key ?? all[1]?.key ?? all[0]?.key ?? null, y: ys[0]?.key ?? all[0]?.key ?? null };
}
