// "Bonsai: Save HTML Report…": one self-contained page of a folder's lineage for people who do not
// run Bonsai (the server writes it: bonsai/report). From the Lineage view with models selected, the
// page also compares them: two or more, the first against the others; one, it against its parent.
import * as path from 'node:path';
import * as vscode from 'vscode';
import * as P from '../shared/protocol';
import type { LineageNode } from './lineage/model';

export interface ReportDeps {
  server: { request<R>(method: string, params: unknown): Promise<R> };
}

/** The workspace folder holding a model's experiment file (its lineage lives in that folder). */
export function folderOf(m: P.ModelInfo, folders: readonly string[]): string | undefined {
  const file = m.experiment?.file;
  if (!file) return undefined;
  return folders
    .filter((f) => file === f || file.startsWith(f.endsWith(path.sep) ? f : f + path.sep))
    .sort((a, b) => b.length - a.length)[0];
}

/** Which models the page compares: the first selected against the others, or one against its parent. */
export function comparedIds(models: readonly P.ModelInfo[]): string[] | undefined {
  if (models.length >= 2) return models.map((m) => m.id);
  const [only] = models;
  return only?.parent ? [only.parent, only.id] : undefined;
}

export async function saveReport(d: ReportDeps, nodes: readonly LineageNode[] = []): Promise<string | undefined> {
  const folders = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  if (!folders.length) throw new Error('Open the folder that holds your experiment files first.');
  const models = nodes.map((n) => n.model);
  let folder = models.map((m) => folderOf(m, folders)).find((f) => f !== undefined);
  if (!folder && folders.length > 1) {
    const picked = await vscode.window.showQuickPick(
      folders.map((f) => ({ label: path.basename(f), description: f, folder: f })),
      { title: 'Bonsai: report the lineage of' },
    );
    if (!picked) return undefined;
    folder = picked.folder;
  }
  folder ??= folders[0]!;
  const target = await vscode.window.showSaveDialog({
    defaultUri: vscode.Uri.file(path.join(folder, 'bonsai-report.html')),
    filters: { 'HTML page': ['html'] },
    saveLabel: 'Save Report',
    title: 'Bonsai: save a self-contained HTML report',
  });
  if (!target) return undefined;
  const compare = comparedIds(models);
  const params: P.ReportParams = { folder, path: target.fsPath, ...(compare ? { compare } : {}) };
  const r = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'Writing the Bonsai report…' },
    () => d.server.request<P.PathResult>(P.REPORT, params),
  );
  const pick = await vscode.window.showInformationMessage(
    `Saved ${path.basename(r.path)}: one file, nothing loaded from the network.`,
    'Open in Browser',
    'Reveal',
  );
  if (pick === 'Open in Browser') await vscode.env.openExternal(vscode.Uri.file(r.path));
  else if (pick === 'Reveal') await vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(r.path));
  return r.path;
}
