/**
 * Which Python runs the server, and whether `modelbonsai` is importable there.
 *
 * Order: the `bonsai.pythonPath` setting, then the Python extension's active interpreter (only
 * when that extension is installed: it is never a dependency), then `python3` on PATH.
 * Pure apart from the injected `Env`, so every branch is unit-tested.
 */
import * as path from 'node:path';

export type PythonSource = 'setting' | 'python-extension' | 'default';

export interface ResolvedPython {
  command: string;
  source: PythonSource;
}

export interface PythonEnv {
  /** The `bonsai.pythonPath` setting ('' when unset). */
  settingPath: string;
  /** The Python extension's active interpreter for `resource`, or undefined. */
  pythonExtensionPath: () => Promise<string | undefined>;
  /** Expands `${workspaceFolder}` and `~`. */
  workspaceFolder?: string;
  home?: string;
  platform?: NodeJS.Platform;
}

export async function resolvePython(env: PythonEnv): Promise<ResolvedPython> {
  const setting = env.settingPath.trim();
  if (setting) return { command: expand(setting, env), source: 'setting' };
  try {
    const fromExtension = await env.pythonExtensionPath();
    if (fromExtension) return { command: fromExtension, source: 'python-extension' };
  } catch {
    // The Python extension is optional; a failure to ask it is the same as not having it.
  }
  return { command: (env.platform ?? process.platform) === 'win32' ? 'python' : 'python3', source: 'default' };
}

function expand(p: string, env: PythonEnv): string {
  let out = p;
  if (env.workspaceFolder) out = out.replace(/\$\{workspaceFolder\}/g, env.workspaceFolder);
  if (env.home && (out === '~' || out.startsWith('~/'))) out = path.join(env.home, out.slice(1));
  if (env.workspaceFolder && !path.isAbsolute(out) && (out.includes('/') || out.includes('\\'))) {
    out = path.resolve(env.workspaceFolder, out);
  }
  return out;
}

/** Server launch arguments: `python -m modelbonsai.cli serve` works without the console script on PATH. */
export function serverArgs(): string[] {
  return ['-m', 'modelbonsai.cli', 'serve'];
}

/** The folder inside the extension that holds the server wheel (the Makefile builds it there). */
export const WHEEL_FOLDER = path.join('dist', 'python');

const WHEEL_NAME = /^modelbonsai-\d+(?:\.\d+)*[^-]*-py3-none-any\.whl$/;

/**
 * The server wheel shipped in the extension, or undefined when this build carries none (one run
 * from its sources without `make package`). The Makefile deletes the old wheel before it builds
 * one, so a packaged extension holds exactly one (vsix.test.ts checks it), and VS Code installs
 * each version into its own folder: several here means a broken build, and which one to install
 * is not ours to guess, so that throws an Error saying so. `list` is fs.readdirSync (throws when
 * the folder is missing).
 */
export function findBundledWheel(extensionRoot: string, list: (dir: string) => string[]): string | undefined {
  const dir = path.join(extensionRoot, WHEEL_FOLDER);
  let names: string[];
  try {
    names = list(dir);
  } catch {
    return undefined;
  }
  const wheels = names.filter((n) => WHEEL_NAME.test(n)).sort();
  if (wheels.length > 1) {
    throw new Error(`This build of the Bonsai extension is broken: ${dir} holds ${wheels.length} server wheels (${wheels.join(', ')}) where it ships one. Reinstall the extension, or install one yourself (python -m pip install WHEEL) into the Python that bonsai.pythonPath names.`);
  }
  return wheels[0] === undefined ? undefined : path.join(dir, wheels[0]);
}

/**
 * The exact install command the notification shows and runs, or undefined when no command can
 * work (modelbonsai is not on PyPI). In a checkout of the Bonsai repo (a pyproject.toml naming
 * `modelbonsai` above the workspace or the extension) it is an editable install of it; elsewhere
 * an install of the wheel shipped inside the extension.
 */
export function installCommand(python: string, repoRoot?: string, bundledWheel?: string): string[] | undefined {
  if (repoRoot) return [python, '-m', 'pip', 'install', '-e', repoRoot];
  if (bundledWheel) return [python, '-m', 'pip', 'install', bundledWheel];
  return undefined;
}

/** What to tell the user when there is no install command to offer: how to get the package. */
export function manualInstallMessage(python: string): string {
  return (
    `The Bonsai server package (modelbonsai) is not installed for ${python}, and this build of the extension carries no copy of it. ` +
    `Install it from a checkout of the Bonsai repository: ${shellQuote([python, '-m', 'pip', 'install', '-e'])} <path to the checkout>, ` +
    'or set "bonsai.pythonPath" to a Python that has it.'
  );
}

/** Quote for display and for a terminal (POSIX shells and PowerShell both accept '...'). */
export function shellQuote(args: string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export type ProbeResult = { ok: true; version: string } | { ok: false; reason: 'no-python' | 'no-package'; detail: string };

/** Runs `python -c "import modelbonsai"`; `run` is child_process.execFile wrapped in a promise. */
export async function probe(
  python: string,
  run: (cmd: string, args: string[]) => Promise<{ code: number | null; stdout: string; stderr: string; spawnError?: string }>,
): Promise<ProbeResult> {
  const r = await run(python, ['-c', 'import modelbonsai, sys; sys.stdout.write(getattr(modelbonsai, "__version__", "?"))']);
  if (r.spawnError) return { ok: false, reason: 'no-python', detail: `cannot run ${python}: ${r.spawnError}` };
  if (r.code === 0) return { ok: true, version: r.stdout.trim() };
  if (/No module named ['"]?modelbonsai/.test(r.stderr)) {
    return { ok: false, reason: 'no-package', detail: `modelbonsai is not installed for ${python}` };
  }
  return { ok: false, reason: 'no-package', detail: r.stderr.trim().split('\n').slice(-1)[0] ?? `import failed with ${python}` };
}
