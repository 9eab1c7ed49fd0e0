/**
 * The Pareto front of two metrics, each with its own better direction: the models no other
 * model beats on one axis without losing on the other. Exact ties (same x and y) are all kept:
 * neither dominates the other.
 */
export interface Point {
  id: string;
  x: number;
  y: number;
}

/** Ids on the front, ordered along x from worst to best. */
export function paretoFront(points: readonly Point[], xHigherIsBetter: boolean, yHigherIsBetter: boolean): string[] {
  // Flip to "higher is better" on both axes, then sweep from the best x down keeping the best y.
  const sx = xHigherIsBetter ? 1 : -1;
  const sy = yHigherIsBetter ? 1 : -1;
  const pts = points
    .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
    .map((p) => ({ id: p.id, x: p.x * sx, y: p.y * sy }))
    .sort((a, b) => b.x - a.x || b.y - a.y || a.id.localeCompare(b.id));
  const front: { id: string; x: number }[] = [];
  let bestY = -Infinity;
  let i = 0;
  while (i < pts.length) {
    // One x at a time: only that x's best y can be on the front, together with its exact ties.
    const x = pts[i]!.x;
    const topY = pts[i]!.y;
    let j = i;
    while (j < pts.length && pts[j]!.x === x) j++;
    if (topY > bestY) {
      for (let k = i; k < j && pts[k]!.y === topY; k++) front.push(pts[k]!);
      bestY = topY;
    }
    i = j;
  }
  return front.sort((a, b) => a.x - b.x || a.id.localeCompare(b.id)).map((p) => p.id);
}
