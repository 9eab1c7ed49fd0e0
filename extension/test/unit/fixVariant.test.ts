// The one-click fix's text (src/fixVariant.ts) against the shared fixtures in
// tests/fixtures/fix-variant/: each case's expected file is the input with the new variant in it,
// exactly; tests/experiment/test_fix_variant.py checks that the server parses those files with no
// problem and expands the new variant as intended.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../../shared/protocol';
import { FixError, declaredVariants, findDeclared, flow, planFixVariant, type FixAction } from '../../src/fixVariant';

const dir = resolve(__dirname, '../../../tests/fixtures/fix-variant');
const lineage = JSON.parse(readFileSync(join(dir, 'lineage.json'), 'utf8')) as Record<string, ModelInfo[]>;
const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as {
  file: string; lineage: string; model: string; action: FixAction; patterns: string[]; expected: string; variant: string;
}[];

/** The text with the plan applied, as the WorkspaceEdit does it. */
function apply(text: string, line: number, insert: string): string {
  const lines = text.split('\n');
  return [...lines.slice(0, line), ...insert.replace(/\n$/, '').split('\n'), ...lines.slice(line)].join('\n');
}

describe('fix variant text', () => {
  for (const c of cases) {
    it(`${c.action} ${c.patterns.join(', ')} of ${c.model} in ${c.file}`, () => {
      const text = readFileSync(join(dir, c.file), 'utf8');
      const plan = planFixVariant(text, lineage[c.lineage]!, { model: c.model, action: c.action, patterns: c.patterns });
      expect(plan.name).toBe(c.variant);
      const out = apply(text, plan.line, plan.text);
      if (process.env.BONSAI_UPDATE_FIXTURES) writeFileSync(join(dir, c.expected), out);
      expect(out).toBe(readFileSync(join(dir, c.expected), 'utf8'));
    });
  }

  it('reads the declared variants: names, item lines, op counts', () => {
    const text = readFileSync(join(dir, 'minilm.bonsai.yaml'), 'utf8');
    expect(declaredVariants(text).map((d) => [d.name, d.start, d.end, d.dash, d.key, d.ops])).toEqual([
      ['layer-all-0.1', 11, 14, 2, 4, 1],
      ['layer-nonorm-0.1', 16, 19, 2, 4, 1],
      ['layer-all-0.1-restore-ln', 19, 23, 2, 4, 2],
      ['global-all-0.1', 23, 26, 2, 4, 1],
    ]);
    const digits = readFileSync(join(dir, 'digits.bonsai.yaml'), 'utf8');
    expect(findDeclared(digits, 'layer-0.9')?.name).toBe('layer-{sparsity}');
    expect(findDeclared(digits, 'layer-0.9-bn')?.name).toBe('layer-0.9-bn');
    expect(findDeclared('variants:\n  - name: prune\n    ops: [a]\n', 'prune-sparsity0.5')?.name).toBe('prune');
  });

  it('writes flow YAML that reads back as the same values', () => {
    expect(flow({ sparsity: 0.1, include: ['*'], 'odd key': true, n: null })).toBe('{sparsity: 0.1, include: ["*"], "odd key": true, n: null}');
  });

  it('a unique name, and words for what it cannot do', () => {
    const text = readFileSync(join(dir, 'minilm.bonsai.yaml'), 'utf8');
    const models = lineage.minilm!;
    const taken = [...models, { ...models[1]!, id: 'z', name: 'layer-all-0.1-no-x', aliases: [] }];
    expect(planFixVariant(text, taken, { model: 'a', action: 'exclude', patterns: ['x.*'] }).name).toBe('layer-all-0.1-no-x-2');
    expect(planFixVariant(text, models, { model: 'a', action: 'exclude', patterns: ['x.*', 'y.*'] }).name).toBe('layer-all-0.1-no-layers');
    expect(() => planFixVariant(text, models, { model: 'r', action: 'exclude', patterns: ['x.*'] })).toThrow(FixError);
    const digits = readFileSync(join(dir, 'digits.bonsai.yaml'), 'utf8');
    expect(() => planFixVariant(digits, lineage.digits!, { model: 'bn', action: 'exclude', patterns: ['4.*'] })).toThrow(/no op of layer-0.9-bn \(bn.recalibrate\) selects parameters/);
  });
});
