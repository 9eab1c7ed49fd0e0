// The import graph of the extension's code (src/, shared/, webview/): no cycle (they break
// bundling order and make modules half-initialised at load), webview code never imports the
// extension host's src/ (a webview bundle would pull host code in; what both need is in shared/),
// and shared/ imports only shared/ (both kinds of bundle include it).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const folders = ['src', 'shared', 'webview'];

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

// Static imports and re-exports (type-only ones too: a cycle of types still ties the modules
// together), side-effect imports and dynamic import() of a literal.
const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"]*?\sfrom\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;

/** The relative imports of `file`, resolved to files of the repository (packages are left out). */
export function importsOf(file: string, text: string = readFileSync(file, 'utf8')): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of code.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec === undefined || !spec.startsWith('.')) continue;
    const base = resolve(dirname(file), spec);
    const hit = [`${base}.ts`, join(base, 'index.ts'), base].find((p) => existsSync(p) && statSync(p).isFile());
    if (hit === undefined) throw new Error(`${relative(root, file)}: cannot resolve '${spec}'`);
    out.push(hit);
  }
  return out;
}

/** Every cycle's files, as found by a depth-first walk (one per back edge). */
export function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 'open') found.push([...stack.slice(stack.indexOf(m)), m]);
      else if (state.get(m) === undefined) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of graph.keys()) if (state.get(n) === undefined) visit(n);
  return found;
}

const files = folders.flatMap((f) => tsFiles(join(root, f)));
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const rel = (p: string): string => relative(root, p).split('\\').join('/');

describe('the import graph of src/, shared/ and webview/', () => {
  it('walks every file', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(graph.get(join(root, 'src/extension.ts'))?.length).toBeGreaterThan(0);
  });

  it('has no cycle', () => {
    expect(cycles(graph).map((c) => c.map(rel).join(' -> '))).toEqual([]);
  });

  it('keeps webview code out of src/ and shared/ to itself', () => {
    const bad = [...graph].flatMap(([from, tos]) =>
      tos
        .filter((to) => (rel(from).startsWith('webview/') && rel(to).startsWith('src/')) || (rel(from).startsWith('shared/') && !rel(to).startsWith('shared/')))
        .map((to) => `${rel(from)} -> ${rel(to)}`),
    );
    expect(bad).toEqual([]);
  });

  it('finds a cycle and a forbidden import when there is one', () => {
    const a = join(root, 'src/a.ts');
    const b = join(root, 'src/b.ts');
    expect(cycles(new Map([[a, [b]], [b, [a]]])).map((c) => c.map(rel))).toEqual([['src/a.ts', 'src/b.ts', 'src/a.ts']]);
    const view = join(root, 'webview/shared/format.ts');
    const text = "import type { X } from '../../src/lineage/model';\nexport { y } from '../../shared/metrics';\nconst z = await import('./dom');";
    expect(importsOf(view, text).map(rel)).toEqual(['src/lineage/model.ts', 'shared/metrics.ts', 'webview/shared/dom.ts']);
  });
});
