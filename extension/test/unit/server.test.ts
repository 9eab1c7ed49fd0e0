// The server lifecycle with a fake language client: Python probe, initialize options, crash
// restarts with back-off, giving up with the reason, restarts on settings change and on command.
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import { LanguageClient } from 'vscode-languageclient/node';
import { BonsaiServer, type ServerState } from '../../src/server';
import type { LanguageClient as MockClient } from './languageclient.mock';
import { __fireConfigChange, __setConfig } from './vscode.mock';

const dir = mkdtempSync(join(tmpdir(), 'bonsai-py-'));
function fakePython(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}
const goodPython = fakePython('good', 'printf 0.1.0');
const noPackage = fakePython('nopkg', `echo "ModuleNotFoundError: No module named 'modelbonsai'" >&2; exit 1`);

const clients = () => (LanguageClient as unknown as typeof MockClient).instances;
const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn(), show: vi.fn() } as unknown as vscode.LogOutputChannel;
const context = {
  extensionPath: resolve(__dirname, '../..'), // this checkout's extension folder
  storageUri: vscode.Uri.file('/storage/ws'),
  globalStorageUri: vscode.Uri.file('/storage/global'),
} as unknown as vscode.ExtensionContext;

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('BonsaiServer', () => {
  let server: BonsaiServer;
  let states: ServerState['kind'][];

  beforeEach(() => {
    clients().length = 0;
    (LanguageClient as unknown as typeof MockClient).failStart = undefined;
    __setConfig('bonsai.pythonPath', goodPython);
    __setConfig('bonsai.device', 'cpu');
    __setConfig('bonsai.maxInstances', 64);
    server = new BonsaiServer(context, log);
    states = [];
    server.onDidChangeState((s) => states.push(s.kind));
  });

  afterEach(() => {
    server.dispose();
    vi.useRealTimers();
  });

  it('starts `python -m modelbonsai.cli serve` with the initialization options', async () => {
    await server.start();
    expect(server.state).toEqual({ kind: 'ready' });
    expect(states).toEqual(['starting', 'ready']);
    const c = clients()[0]!;
    expect(c.serverOptions).toMatchObject({ command: goodPython, args: ['-m', 'modelbonsai.cli', 'serve'] });
    expect(c.clientOptions.initializationOptions).toEqual({ storagePath: '/storage/ws', device: 'cpu', maxInstances: 64, trusted: true });
    await server.request('bonsai/jobs', {});
    expect(c.requests).toEqual([['bonsai/jobs', {}]]);
  });

  it("sends no instance limit by default: package.json's default leaves it to the experiment files", async () => {
    const pkg = JSON.parse(readFileSync(join(context.extensionPath, 'package.json'), 'utf8'));
    // VS Code answers `get` with the contributed default when the user set nothing
    __setConfig('bonsai.maxInstances', pkg.contributes.configuration.properties['bonsai.maxInstances'].default);
    await server.start();
    expect(clients()[0]!.clientOptions.initializationOptions).toEqual({ storagePath: '/storage/ws', device: 'cpu', trusted: true });
  });

  it('stops with the reason and offers the install command when modelbonsai is missing', async () => {
    __setConfig('bonsai.pythonPath', noPackage);
    const warn = vscode.window.showWarningMessage as ReturnType<typeof vi.fn>;
    warn.mockClear();
    await server.start();
    expect(server.state).toMatchObject({ kind: 'stopped', reason: `modelbonsai is not installed for ${noPackage}`, canInstall: true });
    expect(clients()).toHaveLength(0);
    await until(() => warn.mock.calls.length > 0);
    expect(warn.mock.calls[0]![0]).toMatch(new RegExp(`Install it with: ${noPackage} -m pip install (-e \\S+|modelbonsai)`));
    await expect(server.request('bonsai/jobs', {})).rejects.toThrow(/not running \(modelbonsai is not installed/);
  });

  it('restarts after a crash with growing delays, then gives up and says why', async () => {
    await server.start();
    const shown = vscode.window.showErrorMessage as ReturnType<typeof vi.fn>;
    shown.mockClear();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    for (let crash = 1; crash <= 4; crash++) {
      clients().at(-1)!.crash();
      expect(server.state.kind).toBe('starting');
      const delay = Math.min(8000, 500 * 2 ** (crash - 1));
      expect(log.warn).toHaveBeenLastCalledWith(`The server stopped unexpectedly; restart ${crash} in ${delay} ms.`);
      await vi.advanceTimersByTimeAsync(delay);
      vi.useRealTimers();
      await until(() => clients().length === crash + 1 && server.state.kind === 'ready');
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    }
    clients().at(-1)!.crash();
    expect(server.state).toMatchObject({ kind: 'stopped', reason: expect.stringMatching(/crashed 5 times in a row/) });
    expect(shown).toHaveBeenCalledWith(expect.stringMatching(/crashed 5 times/), 'Show Logs', 'Restart Server');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(clients()).toHaveLength(5); // no further restart
  });

  it('restarts on a relevant settings change and on command, with a fresh client', async () => {
    await server.start();
    __fireConfigChange('editor.fontSize');
    await new Promise((r) => setTimeout(r, 20));
    expect(clients()).toHaveLength(1);
    __setConfig('bonsai.device', 'cuda');
    __fireConfigChange('bonsai.device');
    await until(() => clients().length === 2 && server.state.kind === 'ready');
    expect(clients()[0]!.stopped).toBe(true);
    expect(clients()[1]!.clientOptions.initializationOptions).toMatchObject({ device: 'cuda' });
    await server.restart();
    expect(clients()).toHaveLength(3);
    expect(clients()[1]!.stopped).toBe(true);
  });

  it('forwards valid server notifications and drops malformed ones', async () => {
    await server.start();
    const c = clients()[0]!;
    const lineage: unknown[] = [];
    const jobs: unknown[] = [];
    server.onLineageChanged((e) => lineage.push(e));
    server.onJobChanged((j) => jobs.push(j));
    c.notifications.get('bonsai/lineageChanged')!({ folder: '/w' });
    c.notifications.get('bonsai/lineageChanged')!({ folder: 7 });
    c.notifications.get('bonsai/jobChanged')!({ job: { id: 'j1', kind: 'run', title: 't', state: 'running' } });
    c.notifications.get('bonsai/jobChanged')!({ job: { id: 'j1', state: 'exploded' } });
    expect(lineage).toEqual([{ folder: '/w' }]);
    expect(jobs).toHaveLength(1);
  });
});
