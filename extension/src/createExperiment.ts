/**
 * "Create Experiment File" from a model's file: a Hugging Face config.json, a .py with a function
 * returning an nn.Module, or .safetensors weights with the factory that builds their architecture.
 *
 * The server reads the files (bonsai/experiment/factories: a syntax-tree read, nothing imported)
 * and writes the starter (bonsai/experiment/create); this module only decides what to ask the user:
 * nothing when the choice is clear, a pick among the functions when several could build the model,
 * and a Python file to read when none is found beside the weights.
 */
import * as path from 'node:path';
import type * as vscode from 'vscode';
import * as P from '../shared/protocol';

export type ModelFileKind = 'hf-config' | 'python' | 'weights' | 'other';

export function modelFileKind(file: string): ModelFileKind {
  const base = path.basename(file);
  if (base === 'config.json') return 'hf-config';
  const ext = path.extname(base).toLowerCase();
  if (ext === '.py') return 'python';
  if (ext === '.safetensors') return 'weights';
  return 'other';
}

/** What the create request needs beyond the model's file. */
export interface FactoryChoice {
  function?: string;
  factory?: string;
}

export interface FactoryItem extends vscode.QuickPickItem {
  factory?: P.ModelFactoryInfo;
  browse?: boolean;
}

/** The user-facing side of the choice: the server request and two prompts (faked in tests). */
export interface CreateUi {
  factories(file: string): Promise<P.ModelFactoryInfo[]>;
  pick(items: FactoryItem[], title: string): Promise<FactoryItem | undefined>;
  /** A Python file chosen by the user, or undefined when dismissed. */
  choosePython(title: string, near: string): Promise<string | undefined>;
}

export const BROWSE_LABEL = '$(folder-opened) Choose another Python file…';

/** One line per function that can build the model without arguments; paths relative to `near`. */
export function factoryItems(factories: readonly P.ModelFactoryInfo[], near: string): FactoryItem[] {
  return factories
    .filter((f) => f.required.length === 0)
    .map((f) => ({
      label: `${f.function}()`,
      description: `${path.relative(near, f.file).split(path.sep).join('/')}:${f.line + 1}`,
      detail: f.kind === 'class' ? 'an nn.Module subclass (calling it builds the model)' : 'returns an nn.Module',
      factory: f,
    }));
}

/** The `factory` value of the create request: the function's file (absolute) and its name. */
export function factoryRef(f: P.ModelFactoryInfo): string {
  return `${f.file}:${f.function}`;
}

/**
 * What to send with the create request for `file`, asking the user only when needed; undefined
 * when the user dismissed a prompt (nothing is created then).
 */
export async function chooseFactory(ui: CreateUi, file: string, fn?: string): Promise<FactoryChoice | undefined> {
  const kind = modelFileKind(file);
  if (kind === 'hf-config' || kind === 'other') return {}; // the server names what is wrong with `other`
  const name = path.basename(file);
  if (kind === 'python') {
    if (fn) return { function: fn };
    const usable = factoryItems(await ui.factories(file), path.dirname(file));
    // none: the server's message says why (no model function, or each needs arguments)
    if (usable.length <= 1) return usable[0] ? { function: usable[0].factory!.function } : {};
    const picked = await ui.pick(usable, `Which function of ${name} builds the model?`);
    return picked?.factory ? { function: picked.factory.function } : undefined;
  }
  // weights: the factory that builds their architecture
  const near = path.dirname(file);
  const usable = factoryItems(await ui.factories(file), near);
  if (usable.length === 1) return { factory: factoryRef(usable[0]!.factory!) };
  let chosen: P.ModelFactoryInfo | undefined;
  if (usable.length > 1) {
    const picked = await ui.pick([...usable, { label: BROWSE_LABEL, browse: true }], `Which function builds the model of ${name}?`);
    if (!picked) return undefined;
    chosen = picked.factory;
  }
  if (!chosen) {
    const py = await ui.choosePython(`Choose the Python file whose function builds the model of ${name}`, near);
    if (!py) return undefined;
    const inPy = factoryItems(await ui.factories(py), path.dirname(py));
    if (inPy.length === 0) {
      throw new Error(`${path.basename(py)} has no function that returns an nn.Module without arguments; add one that builds the model of ${name}.`);
    }
    const picked = inPy.length === 1 ? inPy[0] : await ui.pick(inPy, `Which function of ${path.basename(py)} builds the model?`);
    if (!picked?.factory) return undefined;
    chosen = picked.factory;
  }
  return { factory: factoryRef(chosen) };
}
