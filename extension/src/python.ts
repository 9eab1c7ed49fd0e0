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

/**
 * The exact install command the notification shows and runs. In a checkout of the Bonsai repo
 * (a pyproject.toml naming `modelbonsai` above the workspace) it is an editable install of it.
 */
export function installCommand(python: string, repoRoot?: string): string[] {
  return repoRoot ? [python, '-m', 'pip', 'install', '-e', repoRoot] : [python, '-m', 'pip', 'install', 'modelbonsai'];
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
