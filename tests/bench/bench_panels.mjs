// Benchmark of the Behaviors and Layers panels' pure modules (no DOM), in Node:
//  - Behaviors: filter + sort of 10,000 instances x 4 models (target < 100 ms);
//  - Layers: decoding three weights envelopes of a 12-layer transformer (server result shape),
//    building the module tree, roll-ups, visible rows and row texts: first content (target < 2 s).
// The TypeScript modules are bundled in memory with the extension's esbuild.
// Run: node tests/bench/bench_panels.mjs   (from the repository root; needs extension/node_modules)
// Prints one JSON object as the last line.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ext = join(root, 'extension');
const require = createRequire(join(ext, 'package.json'));
const esbuild = require('esbuild');
const { encode } = require('@msgpack/msgpack');

const entry = `
export * from './webview/behaviors/data';
export * from './webview/behaviors/instances';
export * from './webview/layers/data';
export * from './webview/layers/tree';
export * from './webview/layers/measures';
export * from './webview/layers/depth';
export { decodeEnvelope } from './webview/shared/wire';
`;
const out = await esbuild.build({ stdin: { contents: entry, resolveDir: ext, loader: 'ts' }, bundle: true, write: false, format: 'esm', platform: 'node', logLevel: 'error' });
const M = await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString('base64')}`);

// Deterministic pseudo-random numbers (mulberry32).
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const time = (fn, reps) => {
  const ts = [];
  let r;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    r = fn();
    ts.push(performance.now() - t0);
  }
  return { ms: median(ts), result: r };
};

// -- Behaviors ------------------------------------------------------------------------------
const N = 10_000;
const MODELS = 4;
const rand = rng(1);
const ids = Array.from({ length: N }, (_, i) => `inst-${i}`);
const models = Array.from({ length: MODELS }, (_, k) => {
  const kl = new Float32Array(N);
  const agree = new Float32Array(N);
  const margin = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    kl[i] = -Math.log(rand() + 1e-9) * 0.05 * (k + 1);
    agree[i] = rand() < 0.9 ? 1 : 0;
    margin[i] = rand() - 0.5;
  }
  return { id: `m${k}`, taskKind: 'classification', ids, summary: {}, groups: [], transitions: [], generations: [], perInstance: { kl, agree, margin_change: margin }, perToken: {} };
});
const tb0 = performance.now();
const table = M.buildInstanceTable(models);
const tableMs = performance.now() - tb0;
const groupIds = new Set(ids.filter((_, i) => i % 2 === 0)); // a group / transition of 5,000
const klCols = models.map((m) => M.col(m.id, 'kl'));
const filterSort = time(() => {
  table.columns.delete('max\u0000kl');
  const maxKl = M.maxColumn(table, klCols);
  table.columns.set('max\u0000kl', maxKl);
  const rows = M.filterInstances(table, { ids: groupIds, ranges: [{ column: M.col('m1', 'margin_change'), lo: -0.4, hi: 0.4 }], disagree: models.map((m) => M.col(m.id, 'agree')) });
  return M.sortInstances(table, rows, 'max\u0000kl', true);
}, 15);
const plainSort = time(() => M.sortInstances(table, M.filterInstances(table, {}), M.col('m2', 'kl'), true), 15);

// -- Layers ---------------------------------------------------------------------------------
const LAYERS = 12;
const D = 768;
const paramShapes = [['embeddings.word_embeddings.weight', [30522, D]], ['embeddings.LayerNorm.weight', [D]], ['embeddings.LayerNorm.bias', [D]]];
for (let l = 0; l < LAYERS; l++) {
  const p = `encoder.layer.${l}`;
  for (const n of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) paramShapes.push([`${p}.${n}.weight`, [D, D]], [`${p}.${n}.bias`, [D]]);
  paramShapes.push([`${p}.attention.output.LayerNorm.weight`, [D]], [`${p}.attention.output.LayerNorm.bias`, [D]]);
  paramShapes.push([`${p}.intermediate.dense.weight`, [4 * D, D]], [`${p}.intermediate.dense.bias`, [4 * D]]);
  paramShapes.push([`${p}.output.dense.weight`, [D, 4 * D]], [`${p}.output.dense.bias`, [D]]);
  paramShapes.push([`${p}.output.LayerNorm.weight`, [D]], [`${p}.output.LayerNorm.bias`, [D]]);
}
paramShapes.push(['pooler.dense.weight', [D, D]], ['pooler.dense.bias', [D]]);
const metrics = (r) => ({ n: 1000, rel_l2: r(), sqnr_db: 20 * r(), identical: false, cosine: 1 - r() / 10, max_abs_diff: r(), sparsity_base: 0, sparsity_other: r(), zero_only_base: 0, zero_only_other: 10, zero_both: 5, nan_base: 0, nan_other: 0, inf_base: 0, inf_other: 0, rel_change: {} });
const f32 = (rows, cols, r) => {
  const a = new Float32Array(rows * cols);
  for (let i = 0; i < a.length; i++) a[i] = Math.floor(r() * 100);
  return { dtype: 'float32', shape: [rows, cols], data: new Uint8Array(a.buffer) };
};
function weightsEnvelope(k) {
  const r = rng(100 + k);
  const tensors = paramShapes.map(([name, shape]) => ({ name, status: 'ok', shape_base: shape, shape_other: shape, metrics: metrics(r), value_range: 1, hist_stride: 1 }));
  const paths = new Set(['']);
  for (const [name] of paramShapes) {
    const parts = name.split('.').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) paths.add(parts.slice(0, i).join('.'));
  }
  const tree = [...paths].map((p) => ({ path: p, parent: p === '' ? null : p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '', params: 1000, tensors: 2, not_compared: 0, metrics: metrics(r) }));
  const T = tensors.length;
  return encode({
    v: 1, kind: 'weights',
    meta: { base: 'base', other: `m${k}`, options: {}, rel_edges_log10: Array.from({ length: 41 }, (_, i) => -8 + i * 0.25), value_bins: 64, tensors, tree },
    tensors: { rel_hist: f32(T, 40, r), value_hist_base: f32(T, 64, r), value_hist_other: f32(T, 64, r), tree_rel_hist: f32(tree.length, 40, r) },
  });
}
const envelopes = [0, 1, 2].map(weightsEnvelope);
const firstContent = time(() => {
  const tree = new M.ModuleTree();
  const index = [];
  for (const bytes of envelopes) {
    const env = M.decodeEnvelope(bytes);
    const w = M.weightsOf({ kind: env.kind, meta: env.meta, tensors: env.tensors });
    for (const t of w.tensors) tree.addTensor(t.name);
    for (const n of w.tree) tree.addModule(n.path);
    index.push(new M.ModelIndex({ weights: w }));
  }
  const ms = M.measure('relL2');
  const rolled = index.map((ix) => M.rollUp(tree, (id, n) => ix.value(id, n.kind, ms, 'propagated'), ms.worse));
  const expanded = new Set(['', 'encoder', 'encoder.layer', ...Array.from({ length: LAYERS }, (_, l) => `encoder.layer.${l}`)]);
  const rows = M.visibleRows(tree, expanded, null);
  const texts = rows.map((row) => `${'  '.repeat(row.node.depth)}${row.node.label} ${rolled.map((r) => { const x = r.get(row.node.id); return x?.value == null ? '—' : ms.format(x.value); }).join(' ')}`);
  const depth = M.depthProfile(tree, index.map((ix, k) => ({ id: `m${k}`, index: ix })), ms, 'propagated');
  return { nodes: tree.nodes.size, rows: texts.length, depthPoints: depth.paths.length };
}, 5);
const filterAll = time(() => {
  const tree = new M.ModuleTree();
  for (const [name] of paramShapes) tree.addTensor(name);
  return M.visibleRows(tree, new Set(), M.parseFilter('/LayerNorm/').match).length;
}, 5);

const result = {
  behaviors: { instances: N, models: MODELS, table_build_ms: +tableMs.toFixed(2), filter_sort_ms: +filterSort.ms.toFixed(2), kept: filterSort.result.length, sort_all_ms: +plainSort.ms.toFixed(2), target_ms: 100, ok: filterSort.ms < 100 },
  layers: { layers: LAYERS, models: 3, tensors: paramShapes.length, envelope_bytes: envelopes[0].byteLength, first_content_ms: +firstContent.ms.toFixed(2), ...firstContent.result, regex_filter_ms: +filterAll.ms.toFixed(2), target_ms: 2000, ok: firstContent.ms < 2000 },
};
result.figures = [
  { name: 'Behaviors filter + sort (ms)', value: result.behaviors.filter_sort_ms, target: 100, ok: result.behaviors.ok },
  { name: 'Layers first content (ms)', value: result.layers.first_content_ms, target: 2000, ok: result.layers.ok },
];
console.log(JSON.stringify(result));
if (!result.figures.every((f) => f.ok)) process.exitCode = 1;
