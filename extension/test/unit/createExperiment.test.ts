// "Create Experiment File" from a plain PyTorch model (issue 19 item 8): what the extension asks
// before the create request, for a config.json, a .py and .safetensors weights.
import { describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import { BROWSE_LABEL, chooseFactory, factoryItems, modelFileKind, type CreateUi, type FactoryItem } from '../../src/createExperiment';
import { Commands, registerCommands, type CommandDeps } from '../../src/commands';
import * as P from '../../shared/protocol';

const f = (file: string, fn: string, line: number, required: string[] = [], kind: 'function' | 'class' = 'function'): P.ModelFactoryInfo => ({
  file,
  function: fn,
  kind,
  line,
  required,
});

function ui(byFile: Record<string, P.ModelFactoryInfo[]>, answers: { pick?: (items: FactoryItem[]) => FactoryItem | undefined; python?: string } = {}) {
  const calls = { factories: [] as string[], picks: [] as [string[], string][], python: [] as [string, string][] };
  const u: CreateUi = {
    factories: async (file) => {
      calls.factories.push(file);
      return byFile[file] ?? [];
    },
    pick: async (items, title) => {
      calls.picks.push([items.map((i) => `${i.label} | ${i.description ?? ''}`), title]);
      return answers.pick?.(items);
    },
    choosePython: async (title, near) => {
      calls.python.push([title, near]);
      return answers.python;
    },
  };
  return { u, calls };
}

describe('model file kinds', () => {
  it('tells the three forms apart by name', () => {
    expect(['/m/config.json', '/m/net.py', '/m/model.SAFETENSORS', '/m/model.pt', '/m/config.json.bak'].map(modelFileKind)).toEqual([
      'hf-config',
      'python',
      'weights',
      'other',
      'other',
    ]);
  });
});

describe('factory items', () => {
  it('lists only what builds the model without arguments, paths relative to the model, lines 1-based', () => {
    const items = factoryItems([f('/w/net.py', 'block', 4, ['width']), f('/w/net.py', 'build', 8), f('/w/lib/nets.py', 'Net', 2, [], 'class')], '/w/model');
    expect(items.map((i) => [i.label, i.description, i.detail])).toEqual([
      ['build()', '../net.py:9', 'returns an nn.Module'],
      ['Net()', '../lib/nets.py:3', 'an nn.Module subclass (calling it builds the model)'],
    ]);
  });
});

describe('choosing the factory', () => {
  it('asks nothing for a config.json, or for a .py function the lens named', async () => {
    const { u, calls } = ui({});
    expect(await chooseFactory(u, '/w/model/config.json')).toEqual({});
    expect(await chooseFactory(u, '/w/net.py', 'build')).toEqual({ function: 'build' });
    expect(calls.factories).toEqual([]);
  });

  it('takes the only function of a .py, and asks among several', async () => {
    const one = ui({ '/w/net.py': [f('/w/net.py', 'block', 4, ['width']), f('/w/net.py', 'build', 8)] });
    expect(await chooseFactory(one.u, '/w/net.py')).toEqual({ function: 'build' });
    expect(one.calls.picks).toEqual([]);
    const two = ui({ '/w/net.py': [f('/w/net.py', 'build', 8), f('/w/net.py', 'Net', 20, [], 'class')] }, { pick: (items) => items[1] });
    expect(await chooseFactory(two.u, '/w/net.py')).toEqual({ function: 'Net' });
    expect(two.calls.picks).toEqual([[['build() | net.py:9', 'Net() | net.py:21'], 'Which function of net.py builds the model?']]);
    // none usable: the create request goes without one, and the server's message says why
    expect(await chooseFactory(ui({}).u, '/w/util.py')).toEqual({});
  });

  it('uses the one factory found beside weights, and offers the others and a file to choose', async () => {
    const one = ui({ '/w/model/model.safetensors': [f('/w/model.py', 'build', 11)] });
    expect(await chooseFactory(one.u, '/w/model/model.safetensors')).toEqual({ factory: '/w/model.py:build' });
    const two = ui(
      { '/w/model/model.safetensors': [f('/w/model.py', 'build', 11), f('/w/model/other.py', 'make', 0)] },
      { pick: (items) => items[0] },
    );
    expect(await chooseFactory(two.u, '/w/model/model.safetensors')).toEqual({ factory: '/w/model.py:build' });
    expect(two.calls.picks).toEqual([
      [['build() | ../model.py:12', 'make() | other.py:1', `${BROWSE_LABEL} | `], 'Which function builds the model of model.safetensors?'],
    ]);
  });

  it('asks for a Python file when none is found beside the weights, then for its function', async () => {
    const { u, calls } = ui(
      { '/src/nets.py': [f('/src/nets.py', 'small', 3), f('/src/nets.py', 'large', 9)] },
      { python: '/src/nets.py', pick: (items) => items.find((i) => i.label === 'large()') },
    );
    expect(await chooseFactory(u, '/w/weights.safetensors')).toEqual({ factory: '/src/nets.py:large' });
    expect(calls.python).toEqual([['Choose the Python file whose function builds the model of weights.safetensors', '/w']]);
    expect(calls.factories).toEqual(['/w/weights.safetensors', '/src/nets.py']);
  });

  it('says so when the chosen file has no model function, and stops when a prompt is dismissed', async () => {
    const empty = ui({ '/src/util.py': [f('/src/util.py', 'make', 1, ['n'])] }, { python: '/src/util.py' });
    await expect(chooseFactory(empty.u, '/w/weights.safetensors')).rejects.toThrow(
      'util.py has no function that returns an nn.Module without arguments; add one that builds the model of weights.safetensors.',
    );
    expect(await chooseFactory(ui({}).u, '/w/weights.safetensors')).toBeUndefined();
    const dismissed = ui({ '/w/net.py': [f('/w/net.py', 'a', 1), f('/w/net.py', 'b', 5)] }, { pick: () => undefined });
    expect(await chooseFactory(dismissed.u, '/w/net.py')).toBeUndefined();
  });
});

describe('the command', () => {
  type Mocked = ReturnType<typeof vi.fn>;
  const win = vscode.window as unknown as { showQuickPick: Mocked; showTextDocument: Mocked; showOpenDialog: Mocked };

  it('sends the chosen factory with the weights and opens the written file', async () => {
    const request = vi.fn(async (method: string, params: Record<string, unknown>) => {
      if (method === P.EXPERIMENT_FACTORIES) return { factories: [f('/w/model.py', 'build', 11)] };
      expect(params).toEqual({ configPath: '/w/model/model.safetensors', factory: '/w/model.py:build' });
      return { path: '/w/digits.bonsai.yaml' };
    });
    win.showTextDocument = vi.fn(async () => undefined);
    const c = new Commands({ server: { request } } as unknown as CommandDeps);
    await c.createExperimentFile(vscode.Uri.file('/w/model/model.safetensors'));
    expect(request.mock.calls.map((x) => x[0])).toEqual([P.EXPERIMENT_FACTORIES, P.EXPERIMENT_CREATE]);
    expect((win.showTextDocument.mock.calls[0]![0] as vscode.Uri).fsPath).toBe('/w/digits.bonsai.yaml');
  });

  it('takes the explorer menu\'s second argument (the selection) for no function', async () => {
    const request = vi.fn(async () => ({ path: '/w/m.bonsai.yaml' }));
    win.showTextDocument = vi.fn(async () => undefined);
    const register = vscode.commands.registerCommand as unknown as Mocked;
    register.mockClear();
    registerCommands({ server: { request, log: { error: vi.fn() } }, jobs: {}, lineage: {}, panels: {}, treeView: {} } as unknown as CommandDeps);
    const handler = register.mock.calls.find((call) => call[0] === P.CMD_CREATE_EXPERIMENT_FILE)![1] as (...a: unknown[]) => Promise<void>;
    const uri = vscode.Uri.file('/w/model/config.json');
    await handler(uri, [uri]);
    expect(request.mock.calls).toEqual([[P.EXPERIMENT_CREATE, { configPath: '/w/model/config.json' }]]);
  });

  it('passes the lens function straight to the create request', async () => {
    const request = vi.fn(async () => ({ path: '/w/net.bonsai.yaml' }));
    win.showTextDocument = vi.fn(async () => undefined);
    await new Commands({ server: { request } } as unknown as CommandDeps).createExperimentFile(vscode.Uri.file('/w/net.py'), 'build');
    expect(request.mock.calls).toEqual([[P.EXPERIMENT_CREATE, { configPath: '/w/net.py', function: 'build' }]]);
  });
});
