// Which Python runs the server, and the import probe (fake and real interpreters).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findBundledWheel, installCommand, manualInstallMessage, probe, resolvePython, serverArgs, shellQuote } from '../../src/python';

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
  it('is an editable install of the repo checkout, when there is one', () => {
    expect(shellQuote(installCommand('/p y/python', '/src/bon sai')!)).toBe("'/p y/python' -m pip install -e '/src/bon sai'");
    // a checkout wins over the wheel: the user is working on these sources
    expect(installCommand('/usr/bin/python3', '/src/bonsai', '/ext/dist/python/modelbonsai-0.1.0-py3-none-any.whl')).toEqual(['/usr/bin/python3', '-m', 'pip', 'install', '-e', '/src/bonsai']);
    expect(serverArgs()).toEqual(['-m', 'modelbonsai.cli', 'serve']);
  });

  it('else installs the wheel shipped in the extension', () => {
    const wheel = '/home/u/.vscode/extensions/modelbonsai.bonsai-0.1.0/dist/python/modelbonsai-0.1.0-py3-none-any.whl';
    expect(installCommand('/usr/bin/python3', undefined, wheel)).toEqual(['/usr/bin/python3', '-m', 'pip', 'install', wheel]);
    expect(shellQuote(installCommand('C:\\Py thon\\python.exe', undefined, 'C:\\ext\\modelbonsai-0.1.0-py3-none-any.whl')!)).toBe(
      "'C:\\Py thon\\python.exe' -m pip install 'C:\\ext\\modelbonsai-0.1.0-py3-none-any.whl'",
    );
  });

  it('proposes no command without a checkout or a wheel, and says how to install instead', () => {
    expect(installCommand('/usr/bin/python3')).toBeUndefined();
    expect(installCommand('/usr/bin/python3', undefined, undefined)).toBeUndefined();
    const msg = manualInstallMessage('/opt/py 3/bin/python');
    expect(msg).toContain('not installed for /opt/py 3/bin/python');
    expect(msg).toContain("Install it from a checkout of the Bonsai repository: '/opt/py 3/bin/python' -m pip install -e <path to the checkout>");
    expect(msg).not.toMatch(/pip install modelbonsai/);
  });
});

describe('findBundledWheel', () => {
  const lister = (files: Record<string, string[]>) => (dir: string) => {
    const f = files[dir];
    if (!f) throw Object.assign(new Error(`ENOENT: no such file or directory, scandir '${dir}'`), { code: 'ENOENT' });
    return f;
  };

  it('finds the wheel under dist/python of the extension', () => {
    const list = lister({ [join('/ext', 'dist', 'python')]: ['modelbonsai-0.1.0-py3-none-any.whl'] });
    expect(findBundledWheel('/ext', list)).toBe(join('/ext', 'dist', 'python', 'modelbonsai-0.1.0-py3-none-any.whl'));
  });

  it('is undefined when the folder is missing or holds no server wheel', () => {
    expect(findBundledWheel('/ext', lister({}))).toBeUndefined();
    const list = lister({ [join('/ext', 'dist', 'python')]: ['.stamp', 'other-1.0-py3-none-any.whl', 'modelbonsai-0.1.0.tar.gz', 'modelbonsai-0.1.0-cp311-cp311-linux_x86_64.whl'] });
    expect(findBundledWheel('/ext', list)).toBeUndefined();
  });

  it('refuses to choose among several wheels (a broken build) and names them', () => {
    const dir = join('/ext', 'dist', 'python');
    const list = lister({ [dir]: ['modelbonsai-0.9.0-py3-none-any.whl', 'modelbonsai-0.10.1-py3-none-any.whl', 'README'] });
    expect(() => findBundledWheel('/ext', list)).toThrow(
      `This build of the Bonsai extension is broken: ${dir} holds 2 server wheels (modelbonsai-0.10.1-py3-none-any.whl, modelbonsai-0.9.0-py3-none-any.whl) where it ships one. Reinstall the extension, or install one yourself (python -m pip install WHEEL) into the Python that bonsai.pythonPath names.`,
    );
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
