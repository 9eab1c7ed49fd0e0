// Which Python runs the server, and the import probe (fake and real interpreters).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { installCommand, probe, resolvePython, serverArgs, shellQuote } from '../../src/python';

const run = (cmd: string, args: string[]) =>
  new Promise<{ code: number | null; stdout: string; stderr: string; spawnError?: string }>((res) =>
    execFile(cmd, args, { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: string | number }) | null;
      if (e && typeof e.code === 'string') res({ code: null, stdout, stderr, spawnError: e.message });
      else res({ code: e ? Number(e.code ?? 1) : 0, stdout, stderr });
    }),
  );

describe('resolvePython', () => {
  it('prefers the setting, expanding ${workspaceFolder} and ~', async () => {
    const ext = async () => '/from/python/ext';
    expect(await resolvePython({ settingPath: '${workspaceFolder}/.venv/bin/python', pythonExtensionPath: ext, workspaceFolder: '/w' })).toEqual({
      command: '/w/.venv/bin/python',
      source: 'setting',
    });
    expect((await resolvePython({ settingPath: '~/py/bin/python', pythonExtensionPath: ext, home: '/home/u' })).command).toBe('/home/u/py/bin/python');
    expect((await resolvePython({ settingPath: '.venv/bin/python', pythonExtensionPath: ext, workspaceFolder: '/w' })).command).toBe('/w/.venv/bin/python');
    expect((await resolvePython({ settingPath: 'python3.11', pythonExtensionPath: ext, workspaceFolder: '/w' })).command).toBe('python3.11');
  });

  it("then the Python extension's interpreter, then python3", async () => {
    expect(await resolvePython({ settingPath: '  ', pythonExtensionPath: async () => '/envs/a/bin/python' })).toEqual({
      command: '/envs/a/bin/python',
      source: 'python-extension',
    });
    expect(await resolvePython({ settingPath: '', pythonExtensionPath: async () => undefined, platform: 'linux' })).toEqual({ command: 'python3', source: 'default' });
    const throws = async (): Promise<string> => {
      throw new Error('extension API broke');
    };
    expect((await resolvePython({ settingPath: '', pythonExtensionPath: throws, platform: 'win32' })).command).toBe('python');
  });
});

describe('install command', () => {
  it('is pip install modelbonsai, or an editable install of the repo checkout', () => {
    expect(shellQuote(installCommand('/usr/bin/python3'))).toBe('/usr/bin/python3 -m pip install modelbonsai');
    expect(shellQuote(installCommand('/p y/python', '/src/bon sai'))).toBe("'/p y/python' -m pip install -e '/src/bon sai'");
    expect(serverArgs()).toEqual(['-m', 'modelbonsai.cli', 'serve']);
  });
});

describe('probe', () => {
  it('tells a missing interpreter from a missing package', async () => {
    expect(await probe('/no/such/python', run)).toMatchObject({ ok: false, reason: 'no-python' });
    const fake = async () => ({ code: 1, stdout: '', stderr: "Traceback...\nModuleNotFoundError: No module named 'modelbonsai'" });
    expect(await probe('python3', fake)).toEqual({ ok: false, reason: 'no-package', detail: 'modelbonsai is not installed for python3' });
    const broken = async () => ({ code: 1, stdout: '', stderr: 'Traceback...\nImportError: libtorch.so: cannot open' });
    expect(await probe('python3', broken)).toMatchObject({ ok: false, reason: 'no-package', detail: 'ImportError: libtorch.so: cannot open' });
  });

  const venv = resolve(__dirname, '../../../.venv/bin/python');
  it.skipIf(!existsSync(venv))('finds modelbonsai in the repo venv', async () => {
    const r = await probe(venv, run);
    expect(r.ok).toBe(true);
  });
});
