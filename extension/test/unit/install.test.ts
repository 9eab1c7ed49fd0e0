// The install offer when modelbonsai is missing, end to end through BonsaiServer with the vscode
// mock: the wheel inside the extension, an editable install of a checkout, or no command at all.
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import { BonsaiServer } from '../../src/server';
import { __setConfig } from './vscode.mock';

const dir = mkdtempSync(join(tmpdir(), 'bonsai-install-'));
const noPackage = join(dir, 'python');
writeFileSync(noPackage, `#!/bin/sh\necho "ModuleNotFoundError: No module named 'modelbonsai'" >&2; exit 1\n`);
chmodSync(noPackage, 0o755);

/** An installed extension folder with these server wheels (none, the one it ships, or a broken build's two). */
function extensionFolder(name: string, withWheel: boolean | string[]): string {
  const root = join(dir, name);
  mkdirSync(join(root, 'dist', 'python'), { recursive: true });
  const wheels = withWheel === true ? ['modelbonsai-0.1.0-py3-none-any.whl'] : withWheel || [];
  for (const w of wheels) writeFileSync(join(root, 'dist', 'python', w), 'zip');
  return root;
}

const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn(), show: vi.fn() } as unknown as vscode.LogOutputChannel;
const warn = vscode.window.showWarningMessage as unknown as ReturnType<typeof vi.fn>;
const error = vscode.window.showErrorMessage as unknown as ReturnType<typeof vi.fn>;
const executeTask = vscode.tasks.executeTask as unknown as ReturnType<typeof vi.fn>;
const ws = vscode.workspace as { workspaceFolders: { uri: vscode.Uri; name: string; index: number }[] | undefined };

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function serverIn(extensionRoot: string): BonsaiServer {
  const context = {
    extensionUri: vscode.Uri.file(extensionRoot),
    extensionPath: extensionRoot,
    storageUri: vscode.Uri.file(join(dir, 'storage')),
    globalStorageUri: vscode.Uri.file(join(dir, 'storage')),
  } as unknown as vscode.ExtensionContext;
  return new BonsaiServer(context, log);
}

describe('install offer', () => {
  let server: BonsaiServer | undefined;

  beforeEach(() => {
    __setConfig('bonsai.pythonPath', noPackage);
    ws.workspaceFolders = undefined;
    warn.mockReset();
    error.mockReset();
    executeTask.mockClear();
  });

  afterEach(() => {
    server?.dispose();
    ws.workspaceFolders = undefined;
  });

  it('installs the wheel shipped in the extension outside a checkout', async () => {
    const root = extensionFolder('with-wheel', true);
    const wheel = join(root, 'dist', 'python', 'modelbonsai-0.1.0-py3-none-any.whl');
    warn.mockResolvedValueOnce('Install');
    server = serverIn(root);
    await server.start();
    await until(() => executeTask.mock.calls.length > 0);
    expect(warn.mock.calls[0]![0]).toBe(`The Bonsai server package (modelbonsai) is not installed for ${noPackage}. Install it with: ${noPackage} -m pip install ${wheel}`);
    const task = executeTask.mock.calls[0]![0] as vscode.Task;
    const exec = task.execution as vscode.ProcessExecution;
    expect([exec.process, ...exec.args]).toEqual([noPackage, '-m', 'pip', 'install', wheel]);
    expect(error).not.toHaveBeenCalled();
  });

  it('installs a checkout around the workspace editable, even with a wheel at hand', async () => {
    const checkout = join(dir, 'checkout');
    mkdirSync(join(checkout, 'samples', 'digits'), { recursive: true });
    writeFileSync(join(checkout, 'pyproject.toml'), '[project]\nname = "modelbonsai"\nversion = "0.1.0"\n');
    ws.workspaceFolders = [{ uri: vscode.Uri.file(join(checkout, 'samples', 'digits')), name: 'digits', index: 0 }];
    server = serverIn(extensionFolder('also-with-wheel', true));
    await server.start();
    await until(() => warn.mock.calls.length > 0);
    expect(warn.mock.calls[0]![0]).toMatch(new RegExp(`Install it with: ${noPackage} -m pip install -e ${checkout}$`));
    expect(executeTask).not.toHaveBeenCalled(); // nothing runs until the user picks Install
  });

  it('offers no command without a checkout or a wheel, and says how to install instead', async () => {
    server = serverIn(extensionFolder('without-wheel', false));
    await server.start();
    await until(() => error.mock.calls.length > 0);
    expect(server.state).toMatchObject({ kind: 'stopped', canInstall: true });
    expect(error.mock.calls[0]![0]).toMatch(/carries no copy of it\. Install it from a checkout of the Bonsai repository: \S+ -m pip install -e <path to the checkout>/);
    expect(error.mock.calls[0]!.slice(1)).toEqual(['Choose Another Python', 'Show Logs']);
    expect(warn).not.toHaveBeenCalled();
    expect(executeTask).not.toHaveBeenCalled();
  });

  it('says the build is broken rather than choose among several wheels', async () => {
    const root = extensionFolder('two-wheels', ['modelbonsai-0.1.0-py3-none-any.whl', 'modelbonsai-0.2.0-py3-none-any.whl']);
    server = serverIn(root);
    await server.start();
    await until(() => error.mock.calls.length > 0);
    expect(error.mock.calls[0]![0]).toBe(
      `This build of the Bonsai extension is broken: ${join(root, 'dist', 'python')} holds 2 server wheels (modelbonsai-0.1.0-py3-none-any.whl, modelbonsai-0.2.0-py3-none-any.whl) where it ships one. Reinstall the extension, or install one yourself (python -m pip install WHEEL) into the Python that bonsai.pythonPath names.`,
    );
    expect(error.mock.calls[0]!.slice(1)).toEqual(['Choose Another Python', 'Show Logs']);
    expect(warn).not.toHaveBeenCalled();
    expect(executeTask).not.toHaveBeenCalled();
  });
});
