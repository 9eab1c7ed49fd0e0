/**
 * Budgeted variants on the Model Map: a variant written from a scan under a size budget is named
 * `budget-<size>` (the Layers panel's "Make a variant under…": the whole model's stored size, e.g.
 * budget-1.5MB, budget-300KB, budget-512B; `-2`, ... when the name was taken). On a stored-size x
 * axis the map draws that budget as a vertical line and names the model it made. Pure: tested.
 */
import type { ModelInfo } from '../../shared/protocol';

export interface BudgetMark {
  /** the model made from the budgeted variant */
  id: string;
  variant: string;
  /** the budget: the model's stored size, in bytes */
  bytes: number;
}

const NAME = /^budget-(\d+(?:\.\d+)?)(B|KB|MB|GB)(?:-\d+)?$/;
const UNIT: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9 };

/** The size budget a variant's name states, or null. */
export function budgetOf(variant: string): number | null {
  const m = NAME.exec(variant);
  return m ? Math.round(Number(m[1]) * UNIT[m[2]!]!) : null;
}

export function budgetMarks(models: readonly ModelInfo[]): BudgetMark[] {
  const out: BudgetMark[] = [];
  for (const m of models) {
    const variant = m.experiment?.variant;
    const bytes = variant ? budgetOf(variant) : null;
    if (variant && bytes !== null) out.push({ id: m.id, variant, bytes });
  }
  return out;
}

/** Whether a metric is the stored size (the budget's quantity) by its name and unit. */
export function isStoredSize(def: { name: string; unit: string }): boolean {
  return def.name === 'stored_size' && def.unit === 'B';
}
