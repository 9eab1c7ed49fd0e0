import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../../../shared/protocol';
import { fixTarget } from '../../../webview/layers/fix';

const models = [
  { id: 'r', name: 'all-MiniLM-L6-v2', parent: null },
  { id: 'a', name: 'layer-all-0.1', parent: 'r', experiment: { file: '/w/small.bonsai.yaml', variant: 'layer-all-0.1' } },
  { id: 'x', name: 'imported', parent: 'r' },
] as unknown as ModelInfo[];
const tensors = ['encoder.layer.0.attention.output.LayerNorm.weight', 'encoder.layer.0.attention.output.LayerNorm.bias', 'encoder.layer.0.attention.output.dense.weight', 'encoder.layer.1.output.LayerNorm.weight'];

describe('one-click fix target', () => {
  it("names a module's parameters by one pattern, and the models made from a file", () => {
    expect(fixTarget({ id: 'encoder.layer.0.attention.output.LayerNorm', kind: 'module' }, tensors, models, ['a', 'x'])).toEqual({
      patterns: ['encoder.layer.0.attention.output.LayerNorm.*'],
      tensors: ['encoder.layer.0.attention.output.LayerNorm.bias', 'encoder.layer.0.attention.output.LayerNorm.weight'],
      models: [{ id: 'a', name: 'layer-all-0.1', variant: 'layer-all-0.1' }],
    });
  });
  it('a tensor by its name', () => {
    expect(fixTarget({ id: 'encoder.layer.0.attention.output.dense.weight', kind: 'tensor' }, tensors, models, ['a'])?.patterns).toEqual(['encoder.layer.0.attention.output.dense.weight']);
  });
  it('nothing for the model, a module without compared parameters, or models from no file', () => {
    expect(fixTarget({ id: '', kind: 'module' }, tensors, models, ['a'])).toBeNull();
    expect(fixTarget({ id: 'encoder.layer.0.attention.dropout', kind: 'module' }, tensors, models, ['a'])).toBeNull();
    // "encoder.layer.1" must not take "encoder.layer.10..." (the dot is part of the prefix)
    expect(fixTarget({ id: 'encoder.layer.1', kind: 'module' }, ['encoder.layer.10.output.dense.weight'], models, ['a'])).toBeNull();
    expect(fixTarget({ id: 'encoder.layer.0.attention.output.LayerNorm', kind: 'module' }, tensors, models, ['x'])).toBeNull();
  });
});
