// Export into a folder that holds files: the server refuses with exportExists, the command asks
// with a modal naming what would be replaced, and re-sends with force only when the user agrees.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import { Commands, type CommandDeps } from '../../src/commands';
import * as P from '../../shared/protocol';

type Mocked = ReturnType<typeof vi.fn>;
const window = vscode.window as unknown as {
  showQuickPick: Mocked;
  showOpenDialog: Mocked;
  showWarningMessage: Mocked;
  showInformationMessage: Mocked;
};
const model = { id: 'm1', name: 'prune-50' } as P.ModelInfo;
const refusal = Object.assign(
  new Error('export to /home/me/out: the folder is not empty (exporting there replaces config.json, model.safetensors; keeps tokenizer.json)'),
  { code: P.ErrorCodes.exportExists },
);

function commands(request: ReturnType<typeof vi.fn>): Commands {
  const server = { request, log: { info: vi.fn(), error: vi.fn() } };
  return new Commands({ server } as unknown as CommandDeps);
}

describe('export', () => {
  beforeEach(() => {
    window.showQuickPick = vi.fn(async (items: { format: string }[]) => items.find((i) => i.format === 'hf'));
    window.showOpenDialog = vi.fn(async () => [vscode.Uri.file('/home/me/out')]);
    window.showWarningMessage = vi.fn(async () => undefined);
    window.showInformationMessage = vi.fn(async () => undefined);
  });

  it('asks before replacing files in a non-empty folder, then re-sends with force', async () => {
    const request = vi.fn().mockRejectedValueOnce(refusal).mockResolvedValueOnce({ path: '/home/me/out' });
    window.showWarningMessage = vi.fn(async () => 'Replace');
    await commands(request).exportModel(model);
    const [title, options, button] = window.showWarningMessage.mock.calls[0]!;
    expect(title).toMatch(/out is not empty\. Replace\?/);
    expect(options).toEqual({ modal: true, detail: refusal.message });
    expect(button).toBe('Replace');
    expect(request.mock.calls.map((c) => c[1])).toEqual([
      { id: 'm1', dir: '/home/me/out', format: 'hf' },
      { id: 'm1', dir: '/home/me/out', format: 'hf', force: true },
    ]);
    for (const call of request.mock.calls) expect(P.problem(call[1], P.Shapes.ExportParams)).toBeUndefined();
    expect(window.showInformationMessage.mock.calls[0]![0]).toBe('Exported prune-50 to /home/me/out');
  });

  it('writes nothing when the user declines', async () => {
    const request = vi.fn().mockRejectedValueOnce(refusal);
    await commands(request).exportModel(model);
    expect(request).toHaveBeenCalledTimes(1);
    expect(window.showInformationMessage).not.toHaveBeenCalled();
  });

  it('passes any other error on without asking', async () => {
    const other = Object.assign(new Error('not a Hugging Face model'), { code: P.ErrorCodes.userError });
    const request = vi.fn().mockRejectedValueOnce(other);
    await expect(commands(request).exportModel(model)).rejects.toBe(other);
    expect(window.showWarningMessage).not.toHaveBeenCalled();
  });
});
