#!/usr/bin/env node
// Model Map benchmark: a synthetic lineage of 2,000 models (depth up to 8, 20 metrics) rendered by
// the built webview bundle (extension/dist/webview/modelMap.js) in headless Chromium, behind a stub
// acquireVsCodeApi that answers the lineage request. Measures the first paint (navigation start
// and lineage reply -> first map frame on screen) and the frame rate while panning and zooming
// (each animation frame moves the view, so a slow draw lowers the rate). Panning blits a cached
// bitmap larger than the view; zooming shows it scaled and repaints it 120 ms after the wheel
// stops, so full_repaint_all_nodes_ms is reported too. Prints one JSON object as
// its last line (`figures`: name, value, target, ok) and exits 1 on a miss. Targets: first paint
// < 1 s, pan/zoom >= 50 fps, a full repaint of all nodes <= 33 ms (30 fps).
//
//   node tests/bench/bench_modelmap.mjs [--models 2000] [--screenshot out.png]
//
// Needs `npm run build` in extension/ first, and Chromium at /usr/bin/chromium (or CHROMIUM=path).
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const ext = resolve(here, '../../extension');
const require = createRequire(join(ext, 'package.json'));
const { chromium } = require('playwright-core');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const N = Number(arg('models', '2000'));
const screenshot = arg('screenshot', '');
const bundle = join(ext, 'dist/webview/modelMap.js');
if (!existsSync(bundle)) {
  console.error(`bench_modelmap: ${bundle} is missing; run "npm run build" in extension/ first`);
  process.exit(2);
}

// The page generates the lineage itself (seeded), so the reply is a structured-clone postMessage
// like the real host's, not a large file to parse.
function generator(n) {
  let s = 12345;
  const rnd = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const ops = [
    ['prune.magnitude', () => ({ sparsity: [0.3, 0.5, 0.7, 0.9][Math.floor(rnd() * 4)], scope: rnd() < 0.5 ? 'global' : 'layer' })],
    ['prune.nm', () => ({ n: 2, m: 4 })],
    ['quantize.weights', () => ({ bits: [2, 3, 4, 8][Math.floor(rnd() * 4)], granularity: rnd() < 0.5 ? 'per-channel' : 'per-tensor' })],
    ['lowrank.svd', () => ({ rank: [8, 16, 32, 64][Math.floor(rnd() * 4)] })],
    ['cast', () => ({ dtype: rnd() < 0.5 ? 'float16' : 'bfloat16' })],
    ['finetune', () => ({ steps: [50, 100, 200][Math.floor(rnd() * 3)], lr: 1e-4 })],
    ['restore.layers', () => ({ include: ['*.0.*'] })],
    ['bn.recalibrate', () => ({ batches: 8 })],
  ];
  const metricDefs = Array.from({ length: 20 }, (_, i) => ({ name: i === 0 ? 'accuracy' : i === 1 ? 'stored_size' : `metric_${String(i).padStart(2, '0')}`, unit: i === 0 ? '%' : i === 1 ? 'B' : '', higherIsBetter: i === 0 || i % 3 === 0, headline: i < 3 }));
  const models = [];
  const depth = [];
  const vals = [];
  for (let i = 0; i < n; i++) {
    let parent = null;
    let d = 0;
    if (i > 0) {
      // Prefer recent models as parents (deep chains), never deeper than 8.
      let p;
      do p = Math.floor(i - 1 - Math.floor(rnd() * Math.min(i, 40)) * (rnd() < 0.7 ? 1 : i / 40));
      while (p < 0 || depth[p] >= 8);
      parent = p;
      d = depth[p] + 1;
    }
    depth.push(d);
    const v = metricDefs.map((m, j) => (parent === null ? (j === 0 ? 95 : j === 1 ? 4e6 : 50 + j) : vals[parent][j] * (0.9 + rnd() * 0.2)));
    vals.push(v);
    const [op, params] = parent === null ? [null, () => ({})] : ops[Math.floor(rnd() * ops.length)];
    const status = i > 0 && i % 97 === 0 ? 'running' : i > 0 && i % 89 === 0 ? 'failed' : 'ok';
    models.push({
      id: `m${i}`,
      name: parent === null ? 'base' : `v${i}`,
      parent: parent === null ? null : `m${parent}`,
      op,
      params: params(),
      status,
      metrics: status === 'ok' ? metricDefs.map((m, j) => ({ key: m.name, ...m, value: v[j] })) : [],
      created: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
    });
  }
  return models;
}

const dir = process.env.BENCH_DIR || mkdtempSync(join(tmpdir(), "bench-modelmap-"));
const html = `<!DOCTYPE html><html><head><meta charset="UTF-8">
<link rel="stylesheet" href="${pathToFileURL(join(ext, 'dist/webview/base.css'))}">
<style>body { --vscode-foreground: #cccccc; --vscode-editor-background: #1e1e1e; --vscode-font-family: sans-serif; --vscode-font-size: 13px; }</style>
<script>
window.__bench = { models: (${generator.toString()})(${N}) };
window.acquireVsCodeApi = () => ({
  getState: () => undefined,
  setState: (s) => (window.__bench.state = s),
  postMessage: (m) => {
    if (m.type === 'request' && m.method === 'lineage') {
      window.__bench.reply = performance.now();
      setTimeout(() => window.postMessage({ type: 'reply', id: m.id, result: { models: window.__bench.models } }, '*'), 0);
    } else if (m.type === 'request') {
      (window.__bench.requests ??= []).push(m);
      setTimeout(() => window.postMessage({ type: 'reply', id: m.id, result: null }, '*'), 0);
    }
  },
});
</script></head>
<body data-bench="1" data-state="{}"><div id="app"></div>
<script src="${pathToFileURL(bundle)}"></script></body></html>`;
const page_ = join(dir, 'bench.html');
writeFileSync(page_, html);

// CPU time of Chromium's processes (browser, renderer, GPU/raster), from /proc: on a loaded
// machine wall-clock figures stretch with the load, CPU time does not.
const TICK_MS = 10; // USER_HZ is 100 on Linux
function procCpuMs(rootPid) {
  const stats = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const t = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = t.slice(t.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(d), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) * TICK_MS });
    } catch {
      /* gone */
    }
  }
  let total = 0;
  const want = new Set([rootPid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, s] of stats) if (!want.has(pid) && want.has(s.ppid)) (want.add(pid), (grew = true));
  }
  for (const pid of want) if (pid !== rootPid) total += stats.get(pid)?.cpu ?? 0;
  return total;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--allow-file-access-from-files'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // Chromium's processes are this script's descendants (this process itself is left out).
  const pid = process.pid;
  // Warm-up navigation: the renderer process exists before the measured load, as a webview's does.
  const blank = join(dir, 'blank.html');
  writeFileSync(blank, '<!DOCTYPE html><html><body></body></html>');
  await page.goto(pathToFileURL(blank).href);
  const cpu0 = procCpuMs(pid);
  await page.goto(pathToFileURL(page_).href);
  await page.waitForFunction(() => window.__modelMap && window.__modelMap.firstDraw, null, { timeout: 30000 });
  // First paint: the map drawn and the next frame presented.
  const paint = await page.evaluate(
    () =>
      new Promise((res) =>
        requestAnimationFrame(() => {
          const mm = window.__modelMap;
          res({ firstDrawMs: mm.firstDraw, reply: window.__bench.reply, presented: performance.now(), nodes: mm.app.layout.nodes.length, rows: mm.app.layout.rows, columns: mm.app.layout.columns.length });
        }),
      ),
  );
  const paintCpu = procCpuMs(pid) - cpu0;
  // Pan and zoom: every animation frame moves the view; frames counted over a fixed time.
  const motion = async (kind) => {
    const c0 = procCpuMs(pid);
    const r = await page.evaluate(
      ({ kind }) =>
        new Promise((res) => {
          const { map } = window.__modelMap;
          if (kind === 'zoom-all') map.fitAll();
          else map.zoomAt(1 / map['zoom'].k, 0, 0); // k = 1: names and op labels drawn
          const draws = [];
          map.onDraw = (ms) => draws.push(ms);
          let frames = 0;
          const t0 = performance.now();
          const step = (t) => {
            frames++;
            if (kind === 'pan') map.panBy(frames % 120 < 60 ? -6 : 6, frames % 90 < 45 ? -4 : 4);
            else map.zoomAt(frames % 60 < 30 ? 1.03 : 1 / 1.03, 500, 400);
            if (t - t0 < 2000) requestAnimationFrame(step);
            else {
              map.onDraw = null;
              const s = [...draws].sort((a, b) => a - b);
              res({ frames, fps: (frames / (t - t0)) * 1000, draws: draws.length, drawMsMedian: s[Math.floor(s.length / 2)] ?? 0, drawMsP95: s[Math.floor(s.length * 0.95)] ?? 0 });
            }
          };
          requestAnimationFrame(step);
        }),
      { kind },
    );
    return { ...r, cpuMsPerFrame: (procCpuMs(pid) - c0) / Math.max(1, r.frames) };
  };
  const pan = await motion('pan');
  const zoom = await motion('zoom-all');
  // A settled frame repaints the whole content (the cache) at the new zoom: its script time,
  // with every node in view.
  const repaint = await page.evaluate(() => {
    const { map } = window.__modelMap;
    map.fitAll();
    const ms = [];
    for (let i = 0; i < 10; i++) {
      map['cache'].dirty = true;
      const t = performance.now();
      map.draw();
      ms.push(performance.now() - t);
    }
    ms.sort((a, b) => a - b);
    return ms[5];
  });
  if (screenshot) {
    await page.evaluate(() => {
      const { app, map } = window.__modelMap;
      map.fit();
      app.select(app.lin.order.slice(5, 9));
    });
    await page.waitForTimeout(300);
    await page.screenshot({ path: screenshot });
  }
  const r = (x) => Math.round(x * 10) / 10;
  const result = {
    bench: 'modelmap',
    models: N,
    nodes: paint.nodes,
    rows: paint.rows,
    columns: paint.columns,
    first_paint_ms: r(paint.presented),
    first_paint_after_reply_ms: r(paint.presented - paint.reply),
    // CPU time Chromium spent from navigation to first paint (all its processes; includes start-up).
    first_paint_cpu_ms: r(paintCpu),
    pan_fps: r(pan.fps),
    pan_draw_ms_median: r(pan.drawMsMedian),
    pan_draw_ms_p95: r(pan.drawMsP95),
    pan_cpu_ms_per_frame: r(pan.cpuMsPerFrame),
    zoom_all_nodes_fps: r(zoom.fps),
    zoom_draw_ms_median: r(zoom.drawMsMedian),
    zoom_draw_ms_p95: r(zoom.drawMsP95),
    zoom_cpu_ms_per_frame: r(zoom.cpuMsPerFrame),
    full_repaint_all_nodes_ms_median: r(repaint),
    load_avg_1m: r(loadavg()[0]),
    cpus: cpus().length,
    page_errors: errors,
    targets: { first_paint_ms: 1000, fps: 50, full_repaint_ms: 33 },
  };
  // a full repaint of every node must fit a 30 fps frame (issue 18: the cached bitmap's pan rate
  // alone hid a 40 ms repaint)
  result.figures = [
    { name: 'first paint (ms)', value: result.first_paint_ms, target: 1000, ok: paint.presented < 1000 },
    { name: 'pan (fps, at least)', value: result.pan_fps, target: 50, ok: pan.fps >= 50 },
    { name: 'zoom (fps, at least)', value: result.zoom_all_nodes_fps, target: 50, ok: zoom.fps >= 50 },
    { name: 'full repaint of all nodes (ms)', value: result.full_repaint_all_nodes_ms_median, target: 33, ok: repaint <= 33 },
    { name: 'page errors', value: errors.length, target: 0, ok: errors.length === 0 },
  ];
  result.pass = result.figures.every((f) => f.ok);
  console.log(JSON.stringify(result));
  if (!result.pass) process.exitCode = 1;
} finally {
  await browser.close();
  if (!process.env.BENCH_DIR) rmSync(dir, { recursive: true, force: true });
}
