/**
 * The confusion change of a classifier (compare/behavior.py `confusion_change`) and McNemar's
 * paired test (compare/stats.py `mcnemar`) as the Behaviors panel shows them. The server computes
 * both; this module only lays them out and words them. Pure: no DOM.
 */

/** One cell some instance entered or left (as the server sends it). */
export interface ConfusionCellWire {
  true: number;
  predicted: number;
  entered: string[];
  left: string[];
}

export interface ConfusionChange {
  /** Class indices shown (ascending), and their names. */
  classes: number[];
  names: string[];
  /** How many classes the task has (more than `classes.length` when the server kept the busiest). */
  classesTotal: number;
  /** Count matrices over the shown classes: rows true class, columns predicted. */
  base: number[][];
  other: number[][];
  cells: ConfusionCellWire[];
}

/** A result's `confusion`, checked (null when absent or malformed: older cached results have none). */
export function confusionOf(raw: unknown): ConfusionChange | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const o = raw as Record<string, unknown>;
  const nums = (x: unknown): x is number[] => Array.isArray(x) && x.every((v) => typeof v === 'number');
  const matrix = (x: unknown, n: number): x is number[][] => Array.isArray(x) && x.length === n && x.every((r) => nums(r) && r.length === n);
  if (!nums(o.classes) || !Array.isArray(o.names) || o.names.length !== o.classes.length) return null;
  const n = o.classes.length;
  if (!matrix(o.base, n) || !matrix(o.other, n) || !Array.isArray(o.cells)) return null;
  return {
    classes: o.classes,
    names: o.names.map(String),
    classesTotal: typeof o.classes_total === 'number' ? o.classes_total : n,
    base: o.base,
    other: o.other,
    cells: o.cells as ConfusionCellWire[],
  };
}

/** A cell of the drawn matrix. */
export interface MatrixCell {
  /** Row and column in the shown matrix. */
  row: number;
  col: number;
  base: number;
  other: number;
  /** other − base. */
  change: number;
  /** Instances the model puts here and the base did not, and the reverse. */
  entered: string[];
  left: string[];
  /** What the change means: on the diagonal more is better, elsewhere more is worse. */
  effect: 'better' | 'worse' | 'none';
  /** |change| over the largest |change| of the matrix, for the colour's strength (0..1). */
  strength: number;
}

/** The matrix to draw: rows of cells, and the largest |change| (the colour scale's end). */
export function confusionMatrix(c: ConfusionChange): { rows: MatrixCell[][]; maxChange: number } {
  const moved = new Map<string, ConfusionCellWire>();
  for (const cell of c.cells) moved.set(`${cell.true},${cell.predicted}`, cell);
  let maxChange = 0;
  for (let i = 0; i < c.classes.length; i++) for (let j = 0; j < c.classes.length; j++) maxChange = Math.max(maxChange, Math.abs(c.other[i]![j]! - c.base[i]![j]!));
  const rows = c.classes.map((ti, i) =>
    c.classes.map((pj, j) => {
      const base = c.base[i]![j]!;
      const other = c.other[i]![j]!;
      const change = other - base;
      const m = moved.get(`${ti},${pj}`);
      const good = i === j ? change > 0 : change < 0;
      return {
        row: i, col: j, base, other, change,
        entered: m?.entered ?? [], left: m?.left ?? [],
        effect: change === 0 ? 'none' : good ? 'better' : 'worse',
        strength: maxChange ? Math.abs(change) / maxChange : 0,
      } satisfies MatrixCell;
    }),
  );
  return { rows, maxChange };
}

const MINUS = '\u2212';

/** A count change as the cell shows it: "+3", "−2", "" for none. */
export function changeText(d: number): string {
  return d > 0 ? `+${d}` : d < 0 ? `${MINUS}${-d}` : '';
}

/** Words for a cell (its tooltip and the instance filter's label). */
export function cellLabel(c: ConfusionChange, cell: MatrixCell): string {
  const t = c.names[cell.row]!;
  const p = c.names[cell.col]!;
  const what = cell.row === cell.col ? `${t} predicted correctly` : `true ${t} predicted as ${p}`;
  return `${what}: ${cell.base} → ${cell.other} (${changeText(cell.change) || '±0'}; ${cell.entered.length} in, ${cell.left.length} out)`;
}

export interface McNemar {
  test: string;
  statistic: number | null;
  p: number;
  baseOnly: number;
  otherOnly: number;
}

export function mcnemarOf(raw: unknown): McNemar | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const o = raw as Record<string, unknown>;
  if (typeof o.p !== 'number' || typeof o.test !== 'string' || typeof o.base_only !== 'number' || typeof o.other_only !== 'number') return null;
  return { test: o.test, statistic: typeof o.statistic === 'number' ? o.statistic : null, p: o.p, baseOnly: o.base_only, otherOnly: o.other_only };
}

/** A p-value as people read it: 3 significant digits, "< 0.001" below a thousandth. */
export function pText(p: number): string {
  if (p < 0.001) return '< 0.001';
  if (p >= 0.9995) return '1';
  return p >= 0.01 ? p.toFixed(3) : p.toPrecision(2);
}

/**
 * McNemar's result in one cell: "p = 0.039" and the test's name with the discordant counts,
 * e.g. "exact binomial · base-only correct 10, model-only 2"; the test's statistic when it has one.
 */
export function mcnemarText(m: McNemar): { p: string; detail: string } {
  const p = pText(m.p);
  const stat = m.statistic === null ? '' : `, χ² = ${m.statistic.toPrecision(3)}`;
  return { p: p.startsWith('<') ? `p ${p}` : `p = ${p}`, detail: `${m.test}${stat} · right only in base ${m.baseOnly}, only in model ${m.otherOnly}` };
}
