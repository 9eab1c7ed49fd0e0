/** Number formatting and metric labels shared by the panels (the Lineage tree's own rules, for the same look). */
export { formatMetric, formatBytes, metricIdentity, metricLabel } from '../../src/lineage/model';

/** `f(v)`, or an em dash where there is no value. */
export function fmtOr(v: number | null | undefined, f: (x: number) => string): string {
  return v === null || v === undefined ? '\u2014' : f(v);
}
