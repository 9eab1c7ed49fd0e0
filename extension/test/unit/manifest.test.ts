// package.json against the code: every registered command contributed (and vice versa), the
// settings the client reads declared, activation only on need, trust and virtual workspaces.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as P from '../../shared/protocol';

const root = resolve(__dirname, '../..');
const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8'));
const commandsSrc = readFileSync(resolve(root, 'src/commands.ts'), 'utf8');
const constants: Record<string, string> = {
  'P.CMD_RUN_VARIANT': P.CMD_RUN_VARIANT,
  'P.CMD_COMPARE_WITH_PARENT': P.CMD_COMPARE_WITH_PARENT,
  'P.CMD_SHOW_IN_MODEL_MAP': P.CMD_SHOW_IN_MODEL_MAP,
  'P.CMD_SHOW_SWEEP': P.CMD_SHOW_SWEEP,
  'P.CMD_CREATE_EXPERIMENT_FILE': P.CMD_CREATE_EXPERIMENT_FILE,
  'P.CMD_INSPECT_MODEL': P.CMD_INSPECT_MODEL,
};
const sources = readdirSync(resolve(root, 'src'), { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts'))
  .map((f) => readFileSync(join(root, 'src', f), 'utf8'));
const registered = [
  ...[...commandsSrc.matchAll(/reg\(\s*('([^']+)'|P\.CMD_[A-Z_]+)/g)].map((m) => m[2] ?? constants[m[1]!]!),
  ...sources.flatMap((t) => [...t.matchAll(/registerCommand\(\s*'([^']+)'/g)].map((m) => m[1]!)),
];
const contributed: { command: string; title: string; category: string }[] = pkg.contributes.commands;

describe('package.json', () => {
  it('contributes exactly the commands the extension registers, all in category Bonsai', () => {
    expect(registered.length).toBeGreaterThan(20);
    expect(new Set(contributed.map((c) => c.command))).toEqual(new Set(registered));
    for (const c of contributed) expect(c.category, c.command).toBe('Bonsai');
  });

  it('has the palette commands the issue names', () => {
    const titles = contributed.map((c) => c.title);
    for (const t of ['Run Experiment File', 'Run Variant…', 'Cancel Job', 'Open Model Map', 'Compare Models…', 'Create Experiment File for Model…', 'Restart Server', 'Show Logs']) {
      expect(titles).toContain(t);
    }
    // CodeLens and tree-item commands need arguments: hidden from the palette
    const hidden = new Set(pkg.contributes.menus.commandPalette.filter((m: { when: string }) => m.when === 'false').map((m: { command: string }) => m.command));
    for (const c of Object.values(constants)) expect(hidden.has(c), c).toBe(true);
  });

  it('declares the settings the client reads', () => {
    const props = pkg.contributes.configuration.properties;
    expect(Object.keys(props).sort()).toEqual(['bonsai.device', 'bonsai.maxInstances', 'bonsai.pythonPath', 'bonsai.trace.server']);
    expect(props['bonsai.device'].enum).toEqual(['auto', 'cpu', 'cuda', 'mps']);
    expect(props['bonsai.trace.server'].enum).toEqual(['off', 'messages', 'verbose']);
  });

  it('activates only on need and declares limited trust support, no virtual workspaces', () => {
    expect(pkg.activationEvents).not.toContain('*');
    expect(pkg.activationEvents).toContain('workspaceContains:**/*.bonsai.yaml');
    for (const v of ['modelMap', 'behaviors', 'layers']) expect(pkg.activationEvents).toContain(`onWebviewPanel:bonsai.${v}`);
    expect(pkg.capabilities.untrustedWorkspaces.supported).toBe('limited');
    expect(pkg.capabilities.virtualWorkspaces).toBe(false);
    expect(pkg.contributes.views.bonsai[0].id).toBe('bonsai.lineage');
    expect(pkg.contributes.viewsWelcome.map((w: { contents: string }) => w.contents).join('\n')).toMatch(/command:bonsai\.createExperimentFileForModel[\s\S]*command:bonsai\.openSamples/);
  });

  it('has no telemetry dependency', () => {
    const deps = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies });
    expect(deps.filter((d) => /telemetry|applicationinsights/i.test(d))).toEqual([]);
  });
});
