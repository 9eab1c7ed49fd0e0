// "Save HTML Report…": which folder and which models the request names, and what the user sees.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import * as P from '../../shared/protocol';
import { comparedIds, folderOf, saveReport } from '../../src/report';
import type { LineageNode } from '../../src/lineage/model';
import type { ReportDeps } from '../../src/report';

type Mocked = ReturnType<typeof vi.fn>;
const window = vscode.window as unknown as { showSaveDialog: Mocked; showQuickPick: Mocked; showInformationMessage: Mocked };
const workspace = vscode.workspace as unknown as { workspaceFolders: { uri: vscode.Uri; name: string; index: number }[] | undefined };

const model = (id: string, parent: string | null, file?: string): P.ModelInfo =>
  ({ id, name: id, parent, op: null, params: {}, status: 'ok', metrics: [], created: '', ...(file ? { experiment: { file, variant: id } } : {}) }) as P.ModelInfo;
const node = (m: P.ModelInfo): LineageNode => ({ model: m, children: [], depth: 0 });
const deps = (request: Mocked): ReportDeps => ({ server: { request } as unknown as ReportDeps['server'] });
const folder = (p: string, index = 0) => ({ uri: vscode.Uri.file(p), name: p.split('/').pop()!, index });

describe('save HTML report', () => {
  beforeEach(() => {
    workspace.workspaceFolders = [folder('/ws/a'), folder('/ws/ab', 1)];
    window.showSaveDialog = vi.fn(async () => vscode.Uri.file('/ws/ab/r.html'));
    window.showQuickPick = vi.fn(async (items: { folder: string }[]) => items[1]);
    window.showInformationMessage = vi.fn(async () => undefined);
  });

  it('finds the folder of a model by its experiment file (the longest folder that holds it)', () => {
    expect(folderOf(model('m', null, '/ws/ab/exp.bonsai.yaml'), ['/ws/a', '/ws/ab'])).toBe('/ws/ab');
    expect(folderOf(model('m', null, '/ws/a/sub/exp.bonsai.yaml'), ['/ws/a', '/ws/ab'])).toBe('/ws/a');
    expect(folderOf(model('m', null), ['/ws/a'])).toBeUndefined();
  });

  it('compares the selection: the first against the others, or one model against its parent', () => {
    expect(comparedIds([model('b', null), model('x', 'b'), model('y', 'x')])).toEqual(['b', 'x', 'y']);
    expect(comparedIds([model('x', 'b')])).toEqual(['b', 'x']);
    expect(comparedIds([model('b', null)])).toBeUndefined();
    expect(comparedIds([])).toBeUndefined();
  });

  it('sends bonsai/report for the selection, in the folder its models come from', async () => {
    const request = vi.fn(async () => ({ path: '/ws/ab/r.html' }));
    const picked = [node(model('base', null, '/ws/ab/e.bonsai.yaml')), node(model('int8', 'base', '/ws/ab/e.bonsai.yaml'))];
    expect(await saveReport(deps(request), picked)).toBe('/ws/ab/r.html');
    expect(request).toHaveBeenCalledWith(P.REPORT, { folder: '/ws/ab', path: '/ws/ab/r.html', compare: ['base', 'int8'] });
    expect(P.problem((request.mock.calls[0] as unknown[])[1], P.Shapes.ReportParams)).toBeUndefined();
    expect(window.showQuickPick).not.toHaveBeenCalled();
    expect(window.showInformationMessage.mock.calls[0]![0]).toBe('Saved r.html: one file, nothing loaded from the network.');
  });

  it('asks for the folder when nothing is selected and there are several, and writes nothing when the save is cancelled', async () => {
    const request = vi.fn(async () => ({ path: '/ws/ab/r.html' }));
    await saveReport(deps(request));
    expect(request).toHaveBeenCalledWith(P.REPORT, { folder: '/ws/ab', path: '/ws/ab/r.html' });
    window.showSaveDialog = vi.fn(async () => undefined);
    request.mockClear();
    expect(await saveReport(deps(request))).toBeUndefined();
    expect(request).not.toHaveBeenCalled();
  });

  it('says what to do without a workspace folder', async () => {
    workspace.workspaceFolders = undefined;
    await expect(saveReport(deps(vi.fn()))).rejects.toThrow('Open the folder that holds your experiment files first.');
  });
});
