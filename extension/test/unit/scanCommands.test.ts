// Which experiment file a Layers panel's base belongs to (its scans), and the root of a lineage.
import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../../shared/protocol';
import { experimentFileOf, rootOf } from '../../src/scanCommands';

const model = (id: string, parent: string | null, file?: string): ModelInfo =>
  ({ id, name: `n-${id}`, parent, op: null, params: {}, status: 'ok', metrics: [], created: '', ...(file ? { experiment: { file, variant: id } } : {}) }) as ModelInfo;

describe('experimentFileOf', () => {
  const models = [model('b', null), model('p', 'b', '/w/x.bonsai.yaml'), model('q', 'p', '/w/x.bonsai.yaml'), model('lone', null)];

  it('is the model\'s own file, or for a base the file of the models made from it', () => {
    expect(experimentFileOf(models, 'q')).toBe('/w/x.bonsai.yaml');
    expect(experimentFileOf(models, 'b')).toBe('/w/x.bonsai.yaml');
    expect(() => experimentFileOf(models, 'lone')).toThrow('n-lone was not made from an experiment file, so it has no scan to show.');
    expect(rootOf(models, 'q')?.id).toBe('b');
    expect(rootOf(models, 'b')?.id).toBe('b');
  });
});
