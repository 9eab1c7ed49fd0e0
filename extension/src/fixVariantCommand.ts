/**
 * Applies a one-click fix (fixVariant.ts plans the text) as a WorkspaceEdit on the experiment
 * file the model came from, saves it when it had no unsaved changes before (so a run from the
 * command line sees the variant too), and shows the new variant in the editor: its CodeLens
 * offers Run once the server has re-read the file.
 */
import * as vscode from 'vscode';
import type { ModelInfo } from '../shared/protocol';
import { FixError, planFixVariant, type FixRequest } from './fixVariant';

export async function applyFixVariant(models: readonly ModelInfo[], req: FixRequest): Promise<{ file: string; variant: string }> {
  const m = models.find((x) => x.id === req.model);
  if (!m?.experiment) throw new FixError(`${m?.name ?? req.model} was not made from an experiment file, so there is no file to add a variant to.`);
  const uri = vscode.Uri.file(m.experiment.file);
  const doc = await vscode.workspace.openTextDocument(uri);
  const wasDirty = doc.isDirty;
  const plan = planFixVariant(doc.getText(), models, req);
  const eol = doc.eol === vscode.EndOfLine.CRLF ? '\r\n' : '\n';
  const edit = new vscode.WorkspaceEdit();
  let at: vscode.Position;
  let text = plan.text.replace(/\n/g, eol);
  if (plan.line < doc.lineCount) at = new vscode.Position(plan.line, 0);
  else {
    // the variant is the file's last text and no newline ends it: start a line of our own
    at = doc.lineAt(doc.lineCount - 1).range.end;
    text = eol + text.slice(0, -eol.length);
  }
  edit.insert(uri, at, text, { label: `Add variant ${plan.name}`, needsConfirmation: false });
  if (!(await vscode.workspace.applyEdit(edit))) throw new Error(`could not edit ${vscode.workspace.asRelativePath(uri)}`);
  if (!wasDirty) await doc.save();
  const editor = await vscode.window.showTextDocument(doc, { preview: false });
  const first = new vscode.Position(plan.line < doc.lineCount ? plan.line : at.line + 1, 0);
  const last = doc.lineAt(Math.min(doc.lineCount - 1, first.line + plan.text.split('\n').length - 2)).range.end;
  editor.selection = new vscode.Selection(first, last);
  editor.revealRange(new vscode.Range(first, last), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  void vscode.window.showInformationMessage(`Added variant ${plan.name} after ${plan.variant} in ${vscode.workspace.asRelativePath(uri)}: run it from its CodeLens.`);
  return { file: uri.fsPath, variant: plan.name };
}
