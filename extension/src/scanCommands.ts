/**
 * The host side of the Layers panel's Sensitivity view: the stored scans of the experiment file a
 * model came from (bonsai/scans), "Run scan" (bonsai/scan: a job, its progress and Cancel in the
 * job notification like a run's; the reply waits for its end), and a budgeted variant: an input
 * box for the budget and the name, bonsai/scan/budget, and the server's insertion applied as a
 * WorkspaceEdit after the file's last variant (its CodeLens then runs it like any other).
 */
import * as vscode from 'vscode';
import * as P from '../shared/protocol';
import { defaultVariantName, parseLoss, parseSize, scannedBudget } from './budget';

export interface ScanServer {
  request<R>(method: string, params: unknown): Promise<R>;
  onJobChanged: vscode.Event<P.JobInfo>;
}

export type BudgetKind = 'size' | 'loss';

/** The experiment file `model` came from; a base model (stored without a variant) is the root of
 * the models an experiment file made from it. */
export function experimentFileOf(models: readonly P.ModelInfo[], model: string): string {
  const m = models.find((x) => x.id === model);
  if (m?.experiment) return m.experiment.file;
  const child = models.find((x) => x.experiment && rootOf(models, x.id)?.id === model);
  if (child?.experiment) return child.experiment.file;
  throw new Error(`${m?.name ?? model} was not made from an experiment file, so it has no scan to show.`);
}

/** The root (the base model) of `id`'s lineage. */
export function rootOf(models: readonly P.ModelInfo[], id: string): P.ModelInfo | undefined {
  const byId = new Map(models.map((x) => [x.id, x]));
  let m = byId.get(id);
  for (let n = 0; m?.parent && n < models.length; n++) m = byId.get(m.parent) ?? m;
  return m;
}

export async function scansOf(server: ScanServer, models: readonly P.ModelInfo[], model: string): Promise<{ file: string; scans: P.ScanInfo[] }> {
  const file = experimentFileOf(models, model);
  const reply = await server.request<P.ScansResult>(P.SCANS, { file: vscode.Uri.file(file).toString() });
  return { file, scans: reply.scans };
}

/** Runs the file's scan and waits for its job to end: its final state and message. */
export async function runScan(server: ScanServer, models: readonly P.ModelInfo[], model: string): Promise<{ state: P.JobInfo['state']; message: string }> {
  const file = experimentFileOf(models, model);
  const ended = new Map<string, P.JobInfo>();
  let wanted = '';
  let done: ((j: P.JobInfo) => void) | undefined;
  const sub = server.onJobChanged((j) => {
    if (!P.JOB_FINAL_STATES.includes(j.state)) return;
    if (j.id === wanted) done?.(j);
    else ended.set(j.id, j);
  });
  try {
    const { jobId } = await server.request<P.RunResult>(P.SCAN, { file: vscode.Uri.file(file).toString() });
    wanted = jobId;
    const job = ended.get(jobId) ?? (await new Promise<P.JobInfo>((resolve) => (done = resolve)));
    return { state: job.state, message: job.message ?? '' };
  } finally {
    sub.dispose();
  }
}

/**
 * Asks for the budget and the variant's name, solves it on the server and writes the variant into
 * the file; null when the user dismissed a box. A budget no recipe meets writes nothing and says
 * so with the closest recipe's size (`message`).
 */
export async function writeBudgetedVariant(
  server: ScanServer,
  models: readonly P.ModelInfo[],
  req: { model: string; scan: string; budget: BudgetKind; baseBytes: number },
): Promise<{ file: string; variant: string } | { message: string } | null> {
  const file = experimentFileOf(models, req.model);
  const uri = vscode.Uri.file(file);
  // A size budget is the whole model's stored size (what the Model Map's x axis shows): it needs
  // the experiment's base model stored, whose size tells what the scan does not cover.
  const made = models.find((m) => m.experiment?.file === file);
  const base = made ? rootOf(models, made.id) : undefined;
  const baseSize = base?.metrics.find((x) => x.name === 'stored_size')?.value;
  if (req.budget === 'size' && baseSize === undefined) {
    return { message: `Run the base model of ${vscode.workspace.asRelativePath(uri)} first: a size budget is the whole model's stored size, which starts from the base's.` };
  }
  const typed = await vscode.window.showInputBox({
    title: req.budget === 'size' ? 'Make a variant under a size' : 'Make a variant within a loss of the base',
    prompt:
      req.budget === 'size'
        ? `The model's stored size (the base's is ${formatSize(baseSize ?? 0)}), e.g. 1.5 MB or 300 KiB`
        : 'How much worse than the base the recipe may be, in the scan’s unit (the full metric, else the proxy error)',
    validateInput: (v) => {
      const r = req.budget === 'size' ? parseSize(v) : parseLoss(v);
      return 'error' in r ? r.error : undefined;
    },
  });
  if (typed === undefined) return null;
  const parsed = req.budget === 'size' ? parseSize(typed) : parseLoss(typed);
  if ('error' in parsed) return { message: parsed.error };
  const scanned = 'bytes' in parsed ? scannedBudget(parsed.bytes, baseSize ?? 0, req.baseBytes) : undefined;
  if (scanned && 'error' in scanned) return { message: scanned.error };
  const doc = await vscode.workspace.openTextDocument(uri);
  const taken = [...doc.getText().matchAll(/^\s*-\s*name:\s*(\S+)\s*$/gm)].map((m) => m[1]!);
  const name = await vscode.window.showInputBox({
    title: 'Name of the budgeted variant',
    value: defaultVariantName(req.budget, 'bytes' in parsed ? parsed.bytes : parsed.loss, taken),
    validateInput: (v) => (/^[A-Za-z0-9][\w.-]*$/.test(v) ? (taken.includes(v) ? `${file} already has a variant named ${v}` : undefined) : 'letters, digits, . _ -'),
  });
  if (name === undefined) return null;
  const params: P.ScanBudgetParams = { scan: req.scan, name, file: uri.toString(), ...(scanned && 'bytes' in scanned ? { maxBytes: scanned.bytes } : { maxLoss: 'loss' in parsed ? parsed.loss : 0 }) };
  const r = await server.request<P.ScanBudgetResult>(P.SCAN_BUDGET, params);
  if (!r.feasible) {
    const whole = (baseSize ?? 0) - req.baseBytes + r.bytes;
    return { message: `No recipe stores the model in ${typed.trim()}: the closest (the smallest) stores it in about ${formatSize(whole)} (${r.bytes.toLocaleString('en-US')} bytes of scanned weights); nothing was written.` };
  }
  if (!r.edit) return { message: 'Within this budget every scanned layer stays as in the base: there is no variant to write.' };
  const eol = doc.eol === vscode.EndOfLine.CRLF ? '\r\n' : '\n';
  const wasDirty = doc.isDirty;
  const edit = new vscode.WorkspaceEdit();
  const at = new vscode.Position(r.edit.line, r.edit.character);
  edit.insert(uri, at, r.edit.text.replace(/\n/g, eol), { label: `Add variant ${r.name}`, needsConfirmation: false });
  if (!(await vscode.workspace.applyEdit(edit))) throw new Error(`could not edit ${vscode.workspace.asRelativePath(uri)}`);
  if (!wasDirty) await doc.save();
  const editor = await vscode.window.showTextDocument(doc, { preview: false });
  const first = new vscode.Position(r.edit.text.startsWith('\n') ? at.line + 1 : at.line, 0);
  editor.selection = new vscode.Selection(first, first);
  editor.revealRange(new vscode.Range(first, first), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  void vscode.window.showInformationMessage(
    `Added variant ${r.name} to ${vscode.workspace.asRelativePath(uri)}: ${r.bytes.toLocaleString('en-US')} bytes of scanned weights (the base's take ${r.baseBytes.toLocaleString('en-US')}); run it from its CodeLens.`,
  );
  return { file, variant: r.name };
}

function formatSize(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toPrecision(3)} MB` : n >= 1e3 ? `${(n / 1e3).toPrecision(3)} KB` : `${Math.round(n)} B`;
}
