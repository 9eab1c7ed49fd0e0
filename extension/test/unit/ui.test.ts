// Status wording, webview HTML/CSP, panel state from disk, and the command helpers.
import { describe, expect, it } from 'vitest';
import { countDescendants, findVariantLine, variantNames } from '../../src/commands';
import { isToHost } from '../../shared/messages';
import { contentSecurityPolicy, newNonce, panelHtml, sanitizeState } from '../../src/webviews/panels';
import { statusView } from '../../src/status';
import type { ModelInfo } from '../../shared/protocol';

describe('statusView', () => {
  it('says starting / ready / busy with N jobs / stopped', () => {
    expect(statusView({ kind: 'starting' }, 0, true)).toMatchObject({ text: 'Bonsai: starting', busy: true });
    expect(statusView({ kind: 'ready' }, 0, true)).toMatchObject({ text: 'Bonsai: ready', busy: false, severity: 'information' });
    expect(statusView({ kind: 'ready' }, 1, true).text).toBe('Bonsai: busy, 1 job');
    expect(statusView({ kind: 'ready' }, 3, true).text).toBe('Bonsai: busy, 3 jobs');
    expect(statusView({ kind: 'stopped', reason: 'modelbonsai is not installed for python3' }, 0, true)).toMatchObject({
      text: 'Bonsai: stopped',
      detail: 'modelbonsai is not installed for python3',
      severity: 'error',
    });
    expect(statusView({ kind: 'ready' }, 0, false)).toMatchObject({ severity: 'warning', detail: expect.stringContaining('Restricted Mode') });
  });
});

describe('webview HTML', () => {
  const nonce = newNonce();
  const html = panelHtml({
    kind: 'modelMap',
    cspSource: 'vscode-webview://abc',
    nonce,
    scriptUri: 'vscode-webview://abc/dist/webview/modelMap.js',
    styleUri: 'vscode-webview://abc/dist/webview/base.css',
    codiconUri: 'vscode-webview://abc/dist/codicons/codicon.css',
    state: { focus: '"><script>alert(1)</script>' },
  });

  it('has a strict CSP with a fresh nonce', () => {
    expect(nonce).toMatch(/^[A-Za-z0-9]{20,}$/);
    expect(newNonce()).not.toBe(nonce);
    expect(contentSecurityPolicy('src:', 'N')).toBe("default-src 'none'; script-src 'nonce-N'; style-src src: 'nonce-N'; img-src src: data:; font-src src:");
    expect(html).toContain(`content="${contentSecurityPolicy('vscode-webview://abc', nonce)}"`);
  });

  it('loads only nonce-tagged scripts and escapes embedded state', () => {
    const scripts = html.match(/<script[^>]*>/g) ?? [];
    expect(scripts).toHaveLength(1);
    expect(scripts[0]).toContain(`nonce="${nonce}"`);
    expect(html).not.toContain('<script>alert');
    expect(html).toContain('data-state="{&quot;focus&quot;:&quot;\\&quot;>&lt;script>alert(1)&lt;/script>&quot;}"');
  });

  it('keeps only known, well-typed fields of restored state', () => {
    expect(sanitizeState({ models: ['a', 'b'], focus: 'a', view: { sort: 'name' }, evil: 1 })).toEqual({ models: ['a', 'b'], focus: 'a', view: { sort: 'name' } });
    expect(sanitizeState({ models: ['a', 3], focus: 7, view: [] })).toEqual({});
    expect(sanitizeState(null)).toEqual({});
  });

  it('accepts only well-formed webview messages', () => {
    expect(isToHost({ type: 'request', id: 1, method: 'lineage', params: {} })).toBe(true);
    expect(isToHost({ type: 'request', id: '1', method: 'lineage', params: {} })).toBe(false);
    expect(isToHost({ type: 'ready' })).toBe(true);
    expect(isToHost('ready')).toBe(false);
  });
});

describe('command helpers', () => {
  const yaml = `base:
  name: toy
  load: m:build
variants:
  - name: prune-50
    from: base
    ops:
      - prune.magnitude: {sparsity: 0.5}
  - from: prune-50
    name: "int8"   # quoted
    ops:
      - quantize.weights: {bits: 8, name: nope}
task:
  name: not-a-variant
`;
  it('lists variant names of an experiment file', () => {
    expect(variantNames(yaml)).toEqual(['prune-50', 'int8']);
  });

  it('finds the line of a variant', () => {
    expect(findVariantLine(yaml, 'prune-50')).toBe(4);
    expect(findVariantLine(yaml, 'int8')).toBe(9);
    expect(findVariantLine(yaml, 'prune')).toBeUndefined();
  });

  it('counts descendants for the delete confirmation', () => {
    const m = (id: string, parent: string | null) => ({ id, parent }) as ModelInfo;
    const models = [m('a', null), m('b', 'a'), m('c', 'b'), m('d', 'a'), m('e', null)];
    expect(countDescendants('a', models)).toBe(3);
    expect(countDescendants('b', models)).toBe(1);
    expect(countDescendants('e', models)).toBe(0);
  });
});
