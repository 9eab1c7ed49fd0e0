/** Every command the extension contributes: palette, Lineage context menu, and CodeLens. */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { chooseFactory } from './createExperiment';
import type { JobTracker } from './jobs';
import { formatMetric, type LineageNode } from './lineage/model';
import type { LineageProvider } from './lineage/provider';
import * as P from '../shared/protocol';
import { errorText } from '../shared/errors';
import type { BonsaiServer } from './server';
import { saveReport } from './report';
import type { PanelManager } from './webviews/panels';

export interface CommandDeps {
  server: BonsaiServer;
  jobs: JobTracker;
  lineage: LineageProvider;
  panels: PanelManager;
  treeView: vscode.TreeView<LineageNode>;
}

export function registerCommands(deps: CommandDeps): vscode.Disposable[] {
  const { server, jobs, lineage, panels } = deps;
  const c = new Commands(deps);
  const reg = (id: string, fn: (...args: never[]) => unknown) =>
    vscode.commands.registerCommand(id, async (...args: never[]) => {
      try {
        await fn(...args);
      } catch (e) {
        server.log.error(`${id}: ${errorText(e)}`);
        void vscode.window.showErrorMessage(errorText(e));
      }
    });
  return [
    reg('bonsai.runExperimentFile', (uri?: vscode.Uri) => c.runFile(uri)),
    reg('bonsai.runVariantPick', (uri?: vscode.Uri) => c.runVariantPick(uri)),
    reg(P.CMD_RUN_VARIANT, (file: string | vscode.Uri, variant: string) => c.run(toUri(file), [variant])),
    reg('bonsai.cancelJob', () => c.cancelJob()),
    reg('bonsai.openModelMap', () => panels.open('modelMap')),
    reg('bonsai.compareModels', () => c.compareModels()),
    reg('bonsai.createExperimentFileForModel', () => c.createExperimentFileForModel()),
    // from a lens: (modelUri, function); from the explorer menu: (uri, selectedUris)
    reg(P.CMD_CREATE_EXPERIMENT_FILE, (model: string | vscode.Uri, fn?: unknown) =>
      c.createExperimentFile(toUri(model), typeof fn === 'string' ? fn : undefined),
    ),
    reg(P.CMD_INSPECT_MODEL, (config: string | vscode.Uri) => c.inspectModel(toUri(config))),
    reg('bonsai.restartServer', () => server.restart()),
    reg('bonsai.showLogs', () => server.log.show()),
    reg('bonsai.openSamples', () => c.openSamples()),
    reg('bonsai.refreshLineage', () => lineage.refresh()),
    reg(P.CMD_COMPARE_WITH_PARENT, (file: string | vscode.Uri, variant: string) => {
      const m = c.modelForVariant(toUri(file), variant);
      if (m) return c.compareWithParent(m);
    }),
    reg(P.CMD_SHOW_IN_MODEL_MAP, (file: string | vscode.Uri, variant: string) => {
      const m = c.modelForVariant(toUri(file), variant, true);
      panels.open('modelMap', m ? { focus: m.id } : {});
    }),
    reg(P.CMD_SHOW_SWEEP, (file: string | vscode.Uri, variant: string, rows: P.SweepRow[]) => c.showSweep(toUri(file), variant, rows)),
    reg('bonsai.lineage.compareWithParent', (n?: LineageNode) => c.compareWithParent(c.pick(n))),
    reg('bonsai.lineage.compareWith', (n?: LineageNode) => c.compareWith(c.pick(n))),
    reg('bonsai.lineage.compareRecipe', (n?: LineageNode) => c.compareRecipe(c.pick(n))),
    reg('bonsai.lineage.compareSelected', (n?: LineageNode, all?: LineageNode[]) => c.compareSelected(all ?? (n ? [n] : []))),
    reg('bonsai.lineage.openLayers', (n?: LineageNode) => c.openView('layers', c.pick(n))),
    reg('bonsai.lineage.openBehaviors', (n?: LineageNode) => c.openView('behaviors', c.pick(n))),
    reg('bonsai.lineage.reveal', (n?: LineageNode) => c.reveal(c.pick(n))),
    reg('bonsai.lineage.export', (n?: LineageNode) => c.exportModel(c.pick(n))),
    reg('bonsai.lineage.delete', (n?: LineageNode) => c.deleteModel(c.pick(n))),
    reg('bonsai.saveReport', (n?: LineageNode, all?: LineageNode[]) => saveReport({ server }, all ?? (n ? [n] : []))),
    reg('bonsai.measureLatency', (n?: LineageNode, all?: LineageNode[]) => c.measureLatency(all ?? (n ? [n] : undefined))),
    // Jobs feed the status; keep a reference so the tracker is not collected.
    { dispose: () => void jobs },
  ];
}

function toUri(v: string | vscode.Uri): vscode.Uri {
  if (typeof v !== 'string') return v;
  return /^[a-z][\w+.-]*:/i.test(v) && !/^[a-z]:[\\/]/i.test(v) ? vscode.Uri.parse(v) : vscode.Uri.file(v);
}

function samePath(a: string, b: string): boolean {
  const norm = (p: string) => path.resolve(p.startsWith('file:') ? vscode.Uri.parse(p).fsPath : p);
  return norm(a) === norm(b);
}

/** "3.16 ms", "~3.9 ms (noisy)" or undefined: a model's latency as the measure picker shows it. */
export function latencyText(m: P.ModelInfo): string | undefined {
  const lat = m.metrics.find((x) => x.name === 'latency' && x.unit === 'ms');
  if (!lat) return undefined;
  return lat.noisy ? `~${formatMetric(lat)} (noisy)` : formatMetric(lat);
}

/** Exported for the unit tests; `registerCommands` is how the extension uses it. */
export class Commands {
  constructor(private readonly d: CommandDeps) {}

  pick(n?: LineageNode): P.ModelInfo {
    const node = n ?? this.d.treeView.selection[0];
    if (!node) throw new Error('Select a model in the Lineage view first.');
    return node.model;
  }

  private async experimentFile(uri?: vscode.Uri): Promise<vscode.Uri | undefined> {
    if (uri) return uri;
    const active = vscode.window.activeTextEditor?.document.uri;
    if (active?.fsPath.endsWith(P.EXPERIMENT_SUFFIX)) return active;
    const files = await vscode.workspace.findFiles(P.EXPERIMENT_GLOB, '**/{node_modules,.bonsai,.venv}/**', 200);
    if (files.length === 0) {
      const pick = await vscode.window.showInformationMessage('There is no *.bonsai.yaml experiment file in this workspace.', 'Create One');
      if (pick) await vscode.commands.executeCommand('bonsai.createExperimentFileForModel');
      return undefined;
    }
    if (files.length === 1) return files[0];
    const chosen = await vscode.window.showQuickPick(
      files.map((f) => ({ label: path.basename(f.fsPath), description: vscode.workspace.asRelativePath(f), uri: f })),
      { title: 'Bonsai: choose an experiment file' },
    );
    return chosen?.uri;
  }

  async runFile(uri?: vscode.Uri): Promise<void> {
    const file = await this.experimentFile(uri);
    if (file) await this.run(file);
  }

  async run(file: vscode.Uri, variants?: string[]): Promise<void> {
    // Run what the user sees: save the file first.
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === file.toString());
    if (doc?.isDirty) await doc.save();
    const params: P.RunParams = { file: file.toString(), ...(variants ? { variants } : {}) };
    const r = await this.d.server.request<P.RunResult>(P.RUN, params);
    this.d.server.log.info(`Run ${vscode.workspace.asRelativePath(file)}${variants ? ` [${variants.join(', ')}]` : ''}: job ${r.jobId}`);
  }

  async runVariantPick(uri?: vscode.Uri): Promise<void> {
    const file = await this.experimentFile(uri);
    if (!file) return;
    const doc = await vscode.workspace.openTextDocument(file);
    const names = variantNames(doc.getText());
    if (names.length === 0) throw new Error(`${path.basename(file.fsPath)} declares no variants.`);
    const models = this.d.lineage.models;
    const picked = await vscode.window.showQuickPick(
      names.map((name) => {
        const m = models.find((x) => x.experiment && samePath(x.experiment.file, file.fsPath) && x.experiment.variant === name);
        return { label: name, description: m ? `${m.status}${m.op ? ` · ${m.op}` : ''}` : 'not run yet' };
      }),
      { title: `Bonsai: run variants of ${path.basename(file.fsPath)}`, canPickMany: true, placeHolder: 'Choose the variants to run' },
    );
    if (picked?.length) await this.run(file, picked.map((p) => p.label));
  }

  async cancelJob(): Promise<void> {
    const active = this.d.jobs.active;
    if (active.length === 0) {
      void vscode.window.showInformationMessage('No Bonsai job is running.');
      return;
    }
    const pick =
      active.length === 1
        ? { job: active[0]! }
        : await vscode.window.showQuickPick(
            active.map((job) => ({ label: job.title, description: job.state, job })),
            { title: 'Bonsai: cancel a job' },
          );
    if (pick) await this.d.jobs.cancel(pick.job.id);
  }

  modelForVariant(file: vscode.Uri, variant: string, quiet = false): P.ModelInfo | undefined {
    const candidates = this.d.lineage.models.filter(
      (m) => m.experiment && m.experiment.variant === variant && samePath(m.experiment.file, file.fsPath),
    );
    // A variant with several ops records intermediate models; the newest is the variant's result.
    const m = candidates.sort((a, b) => b.created.localeCompare(a.created))[0];
    if (!m && !quiet) void vscode.window.showInformationMessage(`Variant '${variant}' has not been run yet.`);
    return m;
  }

  /** A sweep's lens lists its models here, one line each (a CodeLens line holds one): picking one
   * shows it in the Model Map. */
  async showSweep(file: vscode.Uri, variant: string, rows: P.SweepRow[]): Promise<void> {
    const picked = await vscode.window.showQuickPick(
      rows.map((r) => ({ label: r.name, detail: r.title, description: r.tooltip ? '~ noisy' : undefined, row: r })),
      { title: `${variant}: ${rows.length} models, each against its parent and the base`, placeHolder: 'Show a model in the Model Map', matchOnDetail: true },
    );
    if (!picked) return;
    const m = this.modelForVariant(file, picked.row.name, true);
    this.d.panels.open('modelMap', m ? { focus: m.id } : {});
  }

  async compareWithParent(m: P.ModelInfo): Promise<void> {
    if (!m.parent) throw new Error(`${m.name} is a base model: it has no parent to compare with.`);
    this.d.panels.open('behaviors', { models: [m.parent, m.id] });
  }

  async compareWith(m: P.ModelInfo): Promise<void> {
    const others = this.d.lineage.models.filter((x) => x.id !== m.id);
    const picked = await vscode.window.showQuickPick(
      others.map((x) => ({ label: x.name, description: x.op ?? 'base', model: x })),
      { title: `Bonsai: compare ${m.name} with…`, canPickMany: true },
    );
    if (picked?.length) this.d.panels.open('behaviors', { models: [m.id, ...picked.map((p) => p.model.id)] });
  }

  /** "Compare Recipe with…": the Model Map with `m` and one other model selected, which shows
   * their recipe diff (every op, parameter, seed and the evaluation, side by side). */
  async compareRecipe(m: P.ModelInfo): Promise<void> {
    const others = this.d.lineage.models.filter((x) => x.id !== m.id);
    if (others.length === 0) throw new Error('There is no other model to compare the recipe with.');
    const picked = await vscode.window.showQuickPick(
      others.map((x) => ({ label: x.name, description: x.op ?? 'base', model: x })),
      { title: `Bonsai: compare the recipe of ${m.name} with…` },
    );
    if (picked) this.d.panels.open('modelMap', { select: [m.id, picked.model.id] });
  }

  async compareSelected(nodes: LineageNode[]): Promise<void> {
    if (nodes.length < 2) throw new Error('Select two or more models (Ctrl/Cmd+click) to compare them.');
    // The base is the one nearest the root: comparisons read as "what changed from here".
    const sorted = [...nodes].sort((a, b) => a.depth - b.depth || a.model.created.localeCompare(b.model.created));
    this.d.panels.open('behaviors', { models: sorted.map((n) => n.model.id) });
  }

  /**
   * Measure the latency of models again (the tree's selection, else chosen from a list): one job,
   * each model with its base in turn, so their ratio is fair; the lineage then shows, per model,
   * the most trustworthy of its measurements.
   */
  async measureLatency(nodes?: LineageNode[]): Promise<void> {
    let models = (nodes ?? this.d.treeView.selection).map((n) => n.model);
    if (models.length === 0) {
      const items = this.d.lineage.models
        .filter((m) => m.status === 'ok' || m.status === 'stale')
        .map((m) => ({ label: m.name, description: latencyText(m) ?? (m.op ?? 'base'), model: m }));
      if (items.length === 0) throw new Error('There is no model to measure; run an experiment first.');
      const picked = await vscode.window.showQuickPick(items, {
        title: 'Bonsai: measure latency — each model is measured with its base, in turn',
        canPickMany: true,
      });
      if (!picked?.length) return;
      models = picked.map((p) => p.model);
    }
    const params: P.MeasureParams = { ids: models.map((m) => m.id) };
    const r = await this.d.server.request<P.RunResult>(P.MODEL_MEASURE, params);
    this.d.server.log.info(`Measure latency of ${models.map((m) => m.name).join(', ')}: job ${r.jobId}`);
  }

  async compareModels(): Promise<void> {
    const models = this.d.lineage.models;
    if (models.length < 2) throw new Error('Compare needs at least two models in the lineage; run an experiment first.');
    const items = models.map((x) => ({ label: x.name, description: x.op ?? 'base', model: x }));
    const base = await vscode.window.showQuickPick(items, { title: 'Bonsai: compare — choose the base model' });
    if (!base) return;
    const others = await vscode.window.showQuickPick(
      items.filter((i) => i.model.id !== base.model.id),
      { title: `Bonsai: compare with ${base.label} — choose the other models`, canPickMany: true },
    );
    if (!others?.length) return;
    const view = await vscode.window.showQuickPick(
      [
        { label: 'Behaviors', description: 'predictions, agreement, transitions', view: 'behaviors' as const },
        { label: 'Layers', description: 'weights and activations layer by layer', view: 'layers' as const },
      ],
      { title: 'Bonsai: compare in' },
    );
    if (view) this.d.panels.open(view.view, { models: [base.model.id, ...others.map((o) => o.model.id)] });
  }

  openView(kind: 'layers' | 'behaviors', m: P.ModelInfo): void {
    this.d.panels.open(kind, { models: m.parent ? [m.parent, m.id] : [m.id] });
  }

  async reveal(m: P.ModelInfo): Promise<void> {
    if (!m.experiment) throw new Error(`${m.name} was not made from an experiment file.`);
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(m.experiment.file));
    const line = findVariantLine(doc.getText(), m.experiment.variant);
    const editor = await vscode.window.showTextDocument(doc);
    if (line !== undefined) {
      const range = doc.lineAt(line).range;
      editor.selection = new vscode.Selection(range.start, range.end);
      editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
    }
  }

  async exportModel(m: P.ModelInfo): Promise<void> {
    const format = await vscode.window.showQuickPick(
      [
        { label: 'Hugging Face folder', description: 'config + safetensors, loadable with from_pretrained', format: 'hf' as const },
        { label: 'safetensors', description: 'one safetensors file of the dense weights', format: 'safetensors' as const },
        { label: 'ONNX', description: 'model.onnx for ONNX Runtime, checked in it against this model', format: 'onnx' as const },
        { label: 'ExecuTorch', description: 'model.pte (XNNPACK) for ExecuTorch, checked in it against this model', format: 'executorch' as const },
      ],
      { title: `Bonsai: export ${m.name} as` },
    );
    if (!format) return;
    const dir = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, openLabel: 'Export Here', title: `Export ${m.name}` });
    if (!dir?.[0]) return;
    const params: P.ExportParams = { id: m.id, dir: dir[0]!.fsPath, format: format.format };
    const send = (force: boolean) =>
      vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Exporting ${m.name}…` }, () =>
        this.d.server.request<P.PathResult>(P.MODEL_EXPORT, force ? { ...params, force } : params),
      );
    let r: P.PathResult;
    try {
      r = await send(false);
    } catch (e) {
      // A folder that holds files: the server names what an export there replaces and keeps.
      if ((e as { code?: unknown }).code !== P.ErrorCodes.exportExists) throw e;
      const ok = await vscode.window.showWarningMessage(
        `The folder ${path.basename(params.dir)} is not empty. Replace?`,
        { modal: true, detail: errorText(e) },
        'Replace',
      );
      if (ok !== 'Replace') return;
      r = await send(true);
    }
    const pick = await vscode.window.showInformationMessage(`Exported ${m.name} to ${r.path}`, 'Reveal');
    if (pick) await vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(r.path));
  }

  async deleteModel(m: P.ModelInfo): Promise<void> {
    const descendants = countDescendants(m.id, this.d.lineage.models);
    const detail = descendants
      ? `This also deletes the ${descendants} model${descendants === 1 ? '' : 's'} derived from it. Their artifacts are removed from .bonsai/.`
      : 'Its artifact is removed from .bonsai/. The experiment file is not changed: running it again remakes the model.';
    const ok = await vscode.window.showWarningMessage(`Delete ${m.name}?`, { modal: true, detail }, 'Delete');
    if (ok !== 'Delete') return;
    const r = await this.d.server.request<P.DeleteResult>(P.MODEL_DELETE, { id: m.id, recursive: descendants > 0 });
    this.d.server.log.info(`Deleted ${r.deleted.join(', ')}`);
    await this.d.lineage.refresh();
  }

  async createExperimentFileForModel(): Promise<void> {
    const picked = await vscode.window.showOpenDialog({
      canSelectFiles: true,
      canSelectMany: false,
      filters: { 'Model (config.json, Python, safetensors)': ['json', 'py', 'safetensors'] },
      openLabel: 'Use This Model',
      title: "Choose a model: a Hugging Face config.json, a .py whose function returns an nn.Module, or .safetensors weights",
      defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
    });
    if (picked?.[0]) await this.createExperimentFile(picked[0]);
  }

  /** A starter experiment file for the model in `model` (config.json, .py or .safetensors); `fn`:
   * the function of a .py (the CodeLens over it passes it). */
  async createExperimentFile(model: vscode.Uri, fn?: string): Promise<void> {
    const server = this.d.server;
    const choice = await chooseFactory(
      {
        factories: async (file) => (await server.request<P.FactoriesResult>(P.EXPERIMENT_FACTORIES, { path: file })).factories,
        pick: async (items, title) => vscode.window.showQuickPick(items, { title, matchOnDescription: true }),
        choosePython: async (title, near) =>
          (
            await vscode.window.showOpenDialog({
              canSelectFiles: true,
              canSelectMany: false,
              filters: { Python: ['py'] },
              openLabel: 'Use This File',
              title,
              defaultUri: vscode.Uri.file(near),
            })
          )?.[0]?.fsPath,
      },
      model.fsPath,
      fn,
    );
    if (!choice) return; // dismissed: nothing is created
    const r = await server.request<P.PathResult>(P.EXPERIMENT_CREATE, { configPath: model.fsPath, ...choice });
    await vscode.window.showTextDocument(vscode.Uri.file(r.path));
  }

  async inspectModel(config: vscode.Uri): Promise<void> {
    // A config's model is in the lineage once an experiment with it as base has run.
    const dir = path.dirname(config.fsPath);
    const base = this.d.lineage.models.find((m) => m.parent === null && m.experiment && path.dirname(m.experiment.file) === dir);
    if (base) {
      this.d.panels.open('layers', { models: [base.id] });
      return;
    }
    const pick = await vscode.window.showInformationMessage(
      'Bonsai inspects a model once an experiment file uses it as its base. Create one for this model?',
      'Create Experiment File',
    );
    if (pick) await this.createExperimentFile(config);
  }

  async openSamples(): Promise<void> {
    const files = await vscode.workspace.findFiles('**/samples/**/*.bonsai.yaml', '**/node_modules/**', 50);
    if (files.length === 0) {
      void vscode.window.showInformationMessage(
        'The samples (digits, minilm, charlm) are in the samples/ folder of the Bonsai repository. Open that folder to try them.',
      );
      return;
    }
    const pick =
      files.length === 1
        ? { uri: files[0]! }
        : await vscode.window.showQuickPick(
            files.map((f) => ({ label: vscode.workspace.asRelativePath(f), uri: f })),
            { title: 'Bonsai: open a sample' },
          );
    if (pick) await vscode.window.showTextDocument(pick.uri);
  }
}

/** Variant names of an experiment file, for the picker (the server validates the file itself). */
export function variantNames(text: string): string[] {
  const names: string[] = [];
  let inVariants = false;
  let itemIndent = -1;
  for (const line of text.split(/\r?\n/)) {
    if (/^\S/.test(line)) {
      inVariants = /^variants\s*:/.test(line);
      itemIndent = -1;
      continue;
    }
    if (!inVariants) continue;
    const item = /^(\s*)-\s+name\s*:\s*["']?([^"'#\s]+)["']?/.exec(line);
    if (item) {
      const indent = item[1]!.length;
      if (itemIndent === -1) itemIndent = indent;
      if (indent === itemIndent) names.push(item[2]!);
      continue;
    }
    const key = /^(\s+)name\s*:\s*["']?([^"'#\s]+)["']?/.exec(line);
    if (key && itemIndent !== -1 && key[1]!.length === itemIndent + 2) names.push(key[2]!);
  }
  return names;
}

export function findVariantLine(text: string, variant: string): number | undefined {
  const lines = text.split(/\r?\n/);
  const esc = variant.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`^\\s*(-\\s+)?name\\s*:\\s*["']?${esc}["']?\\s*(#.*)?$`);
  const i = lines.findIndex((l) => re.test(l));
  return i === -1 ? undefined : i;
}

export function countDescendants(id: string, models: P.ModelInfo[]): number {
  let n = 0;
  const stack = [id];
  const seen = new Set(stack);
  while (stack.length) {
    const cur = stack.pop()!;
    for (const m of models) {
      if (m.parent === cur && !seen.has(m.id)) {
        seen.add(m.id);
        n++;
        stack.push(m.id);
      }
    }
  }
  return n;
}
