// "Compare Recipe with…" on a Lineage tree item: one other model picked, the Model Map opened
// with both selected (which shows their recipe diff).
import { beforeEach, describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import { Commands, type CommandDeps } from '../../src/commands';
import * as P from '../../shared/protocol';
import { sanitizeState } from '../../src/webviews/panels';

type Mocked = ReturnType<typeof vi.fn>;
const window = vscode.window as unknown as { showQuickPick: Mocked };
const model = (id: string, op: string | null): P.ModelInfo => ({ id, name: `m-${id}`, parent: null, op, params: {}, status: 'ok', metrics: [], created: '2026-01-01' }) as P.ModelInfo;

function commands(models: P.ModelInfo[], open: Mocked): Commands {
  return new Commands({ lineage: { models }, panels: { open }, treeView: { selection: [] } } as unknown as CommandDeps);
}

describe('Compare Recipe with…', () => {
  beforeEach(() => {
    window.showQuickPick = vi.fn(async (items: { model: P.ModelInfo }[]) => items[1]);
  });

  it('offers the other models and opens the Model Map with both selected', async () => {
    const open = vi.fn();
    await commands([model('a', null), model('b', 'prune.magnitude'), model('c', 'quantize.weights')], open).compareRecipe(model('a', null));
    const items = (window.showQuickPick.mock.calls[0] as unknown[])[0] as { label: string; description: string }[];
    expect(items.map((i) => [i.label, i.description])).toEqual([['m-b', 'prune.magnitude'], ['m-c', 'quantize.weights']]);
    expect(open).toHaveBeenCalledWith('modelMap', { select: ['a', 'c'] });
  });

  it('does nothing when the pick is dismissed, and says so when there is no other model', async () => {
    window.showQuickPick = vi.fn(async () => undefined);
    const open = vi.fn();
    await commands([model('a', null), model('b', 'x')], open).compareRecipe(model('a', null));
    expect(open).not.toHaveBeenCalled();
    await expect(commands([model('a', null)], open).compareRecipe(model('a', null))).rejects.toThrow('no other model');
  });

  it('the selection survives the panel state sanitizer, typed', () => {
    expect(sanitizeState({ select: ['a', 'b'] })).toEqual({ select: ['a', 'b'] });
    expect(sanitizeState({ select: ['a', 2] })).toEqual({});
  });
});
