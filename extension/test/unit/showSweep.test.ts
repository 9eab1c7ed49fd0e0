// The sweep CodeLens's "show all": one line per model of the sweep, picking one shows it in the
// Model Map (issue 19 item 5).
import { describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import { Commands, type CommandDeps } from '../../src/commands';
import * as P from '../../shared/protocol';

type Mocked = ReturnType<typeof vi.fn>;
const window = vscode.window as unknown as { showQuickPick: Mocked };

describe('show every model of a sweep', () => {
  const rows: P.SweepRow[] = [
    { name: 'layer-0.5', title: 'acc 67.2% (−28.9 pt vs base) · 143 KiB (1.83× vs base)', tooltip: '' },
    { name: 'layer-0.9', title: 'acc 7.0% (−89.1 pt vs base) · 41.9 KiB (6.23× vs base)', tooltip: 'latency is noisy' },
  ];
  const file = vscode.Uri.file('/w/small.bonsai.yaml');
  const models = [{ id: 'id9', name: 'layer-0.9', created: '2026-01-01', experiment: { file: '/w/small.bonsai.yaml', variant: 'layer-0.9' } }];

  it('lists each model on its own line and opens the picked one in the Model Map', async () => {
    const open = vi.fn();
    window.showQuickPick = vi.fn(async (items: { label: string }[]) => items[1]);
    const c = new Commands({ server: {}, lineage: { models }, panels: { open } } as unknown as CommandDeps);
    await c.showSweep(file, 'layer-{sparsity}', rows);
    const [items, opts] = window.showQuickPick.mock.calls[0] as [{ label: string; detail: string; description?: string }[], { title: string }];
    expect(items.map((i) => [i.label, i.detail, i.description])).toEqual([
      ['layer-0.5', rows[0]!.title, undefined],
      ['layer-0.9', rows[1]!.title, '~ noisy'],
    ]);
    expect(opts.title).toBe('layer-{sparsity}: 2 models, each against its parent and the base');
    expect(open).toHaveBeenCalledWith('modelMap', { focus: 'id9' });
  });

  it('does nothing when the pick is dismissed', async () => {
    const open = vi.fn();
    window.showQuickPick = vi.fn(async () => undefined);
    await new Commands({ server: {}, lineage: { models }, panels: { open } } as unknown as CommandDeps).showSweep(file, 'x', rows);
    expect(open).not.toHaveBeenCalled();
  });
});
