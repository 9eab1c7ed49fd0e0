import { readFileSync, readdirSync, existsSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';

// The e2e steps on the prepared small samples (test/e2e/samples.py): the Model Map and Behaviors
// on digits, Layers on MiniLM. Each step opens its panel from the command palette, reads the panel
// inside its webview frame, asserts on what it shows, and saves a screenshot. `t` is the harness
// from run.mjs: { page, base, log, shot, waitFor, palette, noErrorToast, markLog }.

/** Opens `folder` in the workbench and waits for the Lineage tree to list `root` (the store the
 * CLI wrote before VS Code started), or with `root` null for its "No models yet" welcome. */
export async function openWorkspace(t, folder, root) {
  const { page } = t;
  t.log(`opening workspace ${folder}`);
  await page.goto(`${t.base}/?folder=${encodeURIComponent(folder)}`);
  await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 90_000 });
  const bonsaiTab = page.locator('.activitybar [role="tab"][aria-label^="Bonsai"], .activitybar a[aria-label^="Bonsai"]').first();
  await bonsaiTab.waitFor({ state: 'visible', timeout: 60_000 });
  const sidebar = page.locator('.sidebar');
  t.markLog();
  // The tab toggles the side bar: click it only while the side bar does not show Bonsai, and give
  // the click time to land (clicking again on a slow machine would close it).
  let clicked = 0;
  const what = root ? `the Lineage tree of ${folder} to list ${root} (the server read the CLI's store)` : `the Lineage view of ${folder} to show "No models yet" (server ready)`;
  await t.waitFor(what, 90_000, async () => {
    await t.noErrorToast();
    const showing = (await page.locator('.sidebar:visible .composite.title', { hasText: 'Bonsai' }).count()) > 0;
    if (!showing && Date.now() - clicked > 3000) {
      await bonsaiTab.click();
      clicked = Date.now();
    }
    if (!root) return (await sidebar.getByText('No models yet', { exact: false }).count()) > 0;
    return (await sidebar.locator(`[role="treeitem"][aria-label^="${root},"]`).count()) > 0;
  }, 500);
}

/** Opens `file` in an editor through Quick Open (Ctrl+P). */
async function quickOpen(t, file) {
  const { page } = t;
  await page.keyboard.press('Control+P');
  const quick = page.locator('.quick-input-widget input');
  await quick.waitFor({ state: 'visible' });
  await quick.fill(file);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: file }).first().waitFor();
  await page.keyboard.press('Enter');
}

/** Opens `file` and runs it with "Bonsai: Run Experiment File"; waits until the Lineage tree lists
 * every model in `models` with an accuracy and none still running. */
export async function runExperimentFile(t, file, models, shotName = '09-digits-lineage-after-run') {
  const { page } = t;
  t.log(`running ${file} from the palette`);
  await quickOpen(t, file);
  await page.locator('.monaco-editor .view-lines', { hasText: 'variants' }).first().waitFor({ timeout: 20_000 });
  t.markLog();
  await t.palette('Bonsai: Run Experiment File');
  const sidebar = page.locator('.sidebar');
  const started = Date.now();
  let missing = models;
  await t.waitFor(`the Lineage tree to list ${models.join(', ')} with their accuracy`, 180_000, async () => {
    await t.noErrorToast();
    // New models are revealed; expand any parent the tree kept collapsed.
    for (const r of await sidebar.locator('[role="treeitem"][aria-expanded="false"]').all()) await r.click().catch(() => {});
    const labels = await sidebar.locator('[role="treeitem"]').evaluateAll((rs) => rs.map((r) => r.getAttribute('aria-label') ?? ''));
    missing = models.filter((m) => !labels.some((l) => l.startsWith(`${m},`) && /accuracy/.test(l) && !/running|queued/.test(l)));
    return missing.length === 0;
  }, 1000).catch((e) => {
    throw new Error(`${e.message}; still missing: ${missing.join(', ')}`);
  });
  t.log(`${file}: ${models.length} models in the Lineage tree after ${((Date.now() - started) / 1000).toFixed(0)}s`);
  await t.shot(shotName);
}

/** The content frame of the webview panel whose page shows `marker` (an h1 or toolbar label). */
async function panelFrame(t, what, marker, ms = 60_000) {
  const { page } = t;
  return t.waitFor(`the ${what} webview`, ms, async () => {
    await t.noErrorToast();
    const frames = page.frameLocator('iframe.webview.ready');
    const n = await page.locator('iframe.webview.ready').count();
    for (let i = n - 1; i >= 0; i--) {
      const f = frames.nth(i).frameLocator('#active-frame');
      if ((await f.locator(marker).count()) > 0) return f;
    }
    return undefined;
  }, 500);
}

async function closeAllEditors(t) {
  await t.palette('View: Close All Editors');
  await t.page.waitForTimeout(500);
}

/** "Bonsai: Compare Models…": base, the others (multi-select), then the view. */
async function compareModels(t, baseName, others, view) {
  const { page } = t;
  await t.palette('Bonsai: Compare Models');
  const widget = page.locator('.quick-input-widget');
  const input = widget.locator('input').first();
  const title = widget.locator('.quick-input-title');
  const row = (name) => widget.locator('.quick-input-list .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }) }).first();
  await t.waitFor('the "choose the base model" pick', 15_000, async () => /choose the base model/.test(await title.innerText()));
  await input.fill(baseName);
  await row(baseName).click();
  await t.waitFor('the "choose the other models" pick', 15_000, async () => /choose the other models/.test(await title.innerText()));
  for (const o of others) {
    await input.fill(o);
    await row(o).locator('.quick-input-list-checkbox, input[type="checkbox"], .monaco-custom-toggle').first().click();
  }
  await input.fill('');
  await widget.locator('.monaco-button', { hasText: 'OK' }).first().click();
  await t.waitFor('the "compare in" pick', 15_000, async () => /compare in/.test(await title.innerText()));
  await input.fill(view);
  await row(view).click();
}

/** Issue 7: the Model Map on digits — colour metric and legend, two selected nodes, bar charts. */
export async function modelMapStep(t, expect) {
  const { page } = t;
  const ids = expect.ids;
  t.log('digits: opening the Model Map');
  await closeAllEditors(t);
  await t.palette('Bonsai: Open Model Map');
  const frame = await panelFrame(t, 'Model Map', '[role="toolbar"][aria-label="Model Map"]');
  const tab = frame.getByRole('tab', { name: 'Table' }).or(frame.getByText('Table', { exact: true })).first();
  // The tabs may render after the toolbar: click Table until its rows are there.
  await t.waitFor('the Model Map Table tab', 30_000, async () => {
    if ((await frame.locator('tr[data-model]').count()) > 0) return true;
    if (await tab.count()) await tab.click({ timeout: 2000 });
    return false;
  }, 500);
  const rowOf = (name) => frame.locator(`tr[data-model="${ids[name]}"]`);
  await t.waitFor(`the Model Map table to list every digits model (${Object.keys(ids).join(', ')})`, 30_000, async () => {
    for (const name of Object.keys(ids)) if ((await rowOf(name).count()) === 0) return false;
    return true;
  });

  // Colour metric: pick another metric; the legend must name it.
  const colour = frame.getByLabel('Fill colour metric');
  const legend = frame.locator('[aria-label^="Legend:"]').first();
  await legend.waitFor({ timeout: 15_000 });
  const before = await legend.getAttribute('aria-label');
  const current = await colour.inputValue();
  const options = await colour.locator('option').evaluateAll((os) => os.map((o) => o.value));
  const next = ['agreement', 'stored_size', 'latency', ...options].find((o) => o !== current && options.includes(o));
  if (!next) throw new Error(`the Fill colour metric select offers no other metric than ${current} (options: ${options.join(', ')})`);
  await colour.selectOption(next);
  const after = await t.waitFor(`the legend to change from "${before}" to name the fill metric ${next}`, 10_000, async () => {
    const l = await legend.getAttribute('aria-label');
    return l !== before && l?.includes(`fill ${next}`) ? l : undefined;
  });
  t.log(`legend: ${before} -> ${after}`);
  await t.shot('10-digits-model-map-colour');

  // Two nodes (click, shift-click in the table): the details show what varies and bar charts.
  const [a, b] = ['layer-0.5', 'layer-0.9'];
  if (!ids[a] || !ids[b]) throw new Error(`the digits lineage has no ${a} / ${b} (models: ${Object.keys(ids).join(', ')})`);
  // The rows' own click handlers, as click events dispatched on the rows: under load the table
  // re-renders its rows continually while the pointer is over it (Playwright sees each row detached
  // again and again), so a real pointer click can miss; the selection logic is the same.
  const selected = async (name) => /\bfocus\b/.test((await rowOf(name).getAttribute('class')) ?? '');
  await t.waitFor(`the table rows ${a} and ${b} selected (click, shift-click)`, 20_000, async () => {
    if (!(await selected(a))) await rowOf(a).dispatchEvent('click', { bubbles: true });
    if (!(await selected(b))) await rowOf(b).dispatchEvent('click', { bubbles: true, shiftKey: true });
    return (await selected(a)) && (await selected(b));
  }, 500);
  const details = frame.locator('section.mm-details');
  const charts = await t.waitFor(`comparison bar charts (.mm-bars) with a bar for ${a} and for ${b}`, 20_000, async () => {
    const n = await details.locator('.mm-bars').count();
    if (!n) return undefined;
    const bars = await details.locator('.mm-bars rect[data-model]').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-model')));
    return bars.includes(ids[a]) && bars.includes(ids[b]) ? n : undefined;
  });
  const varies = await details.locator('.mm-varies').innerText().catch(() => '');
  if (!/sparsity/.test(varies)) throw new Error(`"What varies" for ${a} and ${b} does not name sparsity: ${JSON.stringify(varies)}`);
  const captions = await details.locator('.mm-bars figcaption').allInnerTexts();
  t.log(`bar charts: ${charts} (${captions.join(' | ')}); what varies: ${varies.replace(/\s+/g, ' ').slice(0, 80)}`);
  await details.locator('.mm-bars').first().scrollIntoViewIfNeeded();
  await t.shot('11-digits-model-map-selection-bars');
}

/** The first number in a cell such as "-100.0% [-100.0%, -76.9%]", as a fraction. */
function pct(text) {
  const m = /(-?\d+(?:\.\d+)?)%/.exec(text.replace(/\u2212/g, '-'));
  return m ? Number(m[1]) / 100 : null;
}

/** Issue 8: Behaviors for the digits case-study variant; the collapsed class in the group table. */
export async function behaviorsStep(t, expect) {
  const { variant, base, worstClasses, worst } = expect;
  t.log(`digits: Behaviors for ${base} vs ${variant} (expected collapsed class ${worstClasses.join('/')}, ${(worst * 100).toFixed(1)} points)`);
  await closeAllEditors(t);
  await compareModels(t, base, [variant], 'Behaviors');
  const frame = await panelFrame(t, 'Behaviors', 'h1:has-text("Behaviors")');
  const rows = frame.locator('#groups table tbody tr');
  const parsed = await t.waitFor('the Behaviors group table to list the ten digit classes with accuracy deltas', 180_000, async () => {
    await t.noErrorToast();
    const n = await rows.count();
    if (n < 10) return undefined;
    const out = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText)));
    const rs = out.map((tds) => ({ group: tds[0].replace(/\(uncertain\)/, '').trim(), delta: pct(tds[2] ?? '') }));
    return rs.every((r) => r.delta !== null) ? rs : undefined;
  }, 1000);
  const worstRow = parsed.reduce((m, r) => (r.delta < m.delta ? r : m));
  t.log(`group table: ${parsed.map((r) => `${r.group} ${(r.delta * 100).toFixed(1)}`).join(', ')}`);
  if (!worstClasses.includes(worstRow.group)) {
    throw new Error(`the group table's worst class is ${worstRow.group} (${(worstRow.delta * 100).toFixed(1)} points); the stored outputs say ${worstClasses.join('/')} (${(worst * 100).toFixed(1)})`);
  }
  if (Math.abs(worstRow.delta - worst) > 0.011) {
    throw new Error(`class ${worstRow.group}'s delta in the table is ${(worstRow.delta * 100).toFixed(1)} points; the stored outputs give ${(worst * 100).toFixed(1)}`);
  }
  // Sort by the variant's delta column both ways: the best class first, then the collapsed class.
  const header = frame.locator('#groups table thead th').nth(2);
  const firstGroup = async () => (await rows.first().locator('td').first().innerText()).replace(/\(uncertain\)/, '').trim();
  const best = parsed.reduce((m, r) => (r.delta > m.delta ? r : m));
  const bestGroups = parsed.filter((r) => r.delta === best.delta).map((r) => r.group);
  for (const [order, want] of [['descending', bestGroups], ['ascending', worstClasses]]) {
    await t.waitFor(`the group table sorted ${order} by ${variant}'s delta to start with class ${want.join('/')}`, 10_000, async () => {
      if ((await header.getAttribute('aria-sort')) !== order) await header.click();
      return (await header.getAttribute('aria-sort')) === order && want.includes(await firstGroup());
    }, 500);
  }
  await frame.locator('#groups').scrollIntoViewIfNeeded();
  await t.shot('12-digits-behaviors-collapsed-class');
}

/** Issue 8: Layers for MiniLM base vs the per-layer pruning that includes LayerNorm: the depth
 * profile has content, marks the normalisation layers, and jumps there. */
export async function layersStep(t, expect) {
  const { base, variant } = expect;
  t.log(`minilm: Layers for ${base} vs ${variant}`);
  await closeAllEditors(t);
  await compareModels(t, base, [variant], 'Layers');
  const frame = await panelFrame(t, 'Layers', 'h1:has-text("Layers")');
  const depth = frame.locator('#depth-profile');
  const points = await t.waitFor('the depth profile to draw a line with a point per layer and mark normalisation layers', 180_000, async () => {
    await t.noErrorToast();
    const titles = await depth.locator('svg.chart circle title').allTextContents();
    if (titles.length < 10 || (await depth.locator('svg.chart line.mark').count()) === 0) return undefined;
    return titles;
  }, 1000);
  const treeRows = await frame.locator('#module-tree [role="treeitem"], #module-tree .trow').count();
  if (treeRows < 2) throw new Error(`the module tree shows ${treeRows} rows`);
  const legend = await depth.innerText();
  const normCount = Number(/normalisation layers \((\d+)\)/.exec(legend)?.[1] ?? 0);
  // Each point's title: "<model> · <module path>: <value>".
  const vals = points.map((s) => {
    const m = /· (.+): (\S+)$/.exec(s);
    return m ? { path: m[1], value: Number(m[2]) } : null;
  }).filter((x) => x && Number.isFinite(x.value));
  const isNorm = (p) => /norm/i.test(p);
  const median = (xs) => {
    const s = [...xs].sort((x, y) => x - y);
    return s.length ? s[Math.floor(s.length / 2)] : NaN;
  };
  const normVals = vals.filter((v) => isNorm(v.path)).map((v) => v.value);
  const otherVals = vals.filter((v) => !isNorm(v.path)).map((v) => v.value);
  const ratio = median(normVals) / median(otherVals);
  t.log(`depth profile: ${vals.length} points, ${normCount} normalisation layers marked; median at norms ${median(normVals)}, elsewhere ${median(otherVals)} (x${ratio.toFixed(1)})`);
  if (normCount < 6 || normVals.length < 6) throw new Error(`the depth profile marks ${normCount} normalisation layers and has ${normVals.length} points at LayerNorms; MiniLM-L6 has 13`);
  if (normVals.length !== normCount) throw new Error(`the depth profile marks ${normCount} normalisation layers but ${normVals.length} of its points are LayerNorms`);
  if (!(ratio > 3)) throw new Error(`the depth profile does not jump at the LayerNorms: median ${median(normVals)} there vs ${median(otherVals)} elsewhere`);
  // A jump at every norm: each LayerNorm point above every other layer's.
  const lowNorm = vals.filter((v) => isNorm(v.path)).reduce((m, v) => (v.value < m.value ? v : m));
  const highOther = vals.filter((v) => !isNorm(v.path)).reduce((m, v) => (v.value > m.value ? v : m));
  if (!(lowNorm.value > highOther.value)) {
    throw new Error(`the depth profile does not jump at every LayerNorm: ${lowNorm.path} ${lowNorm.value} is not above ${highOther.path} ${highOther.value}`);
  }
  await depth.scrollIntoViewIfNeeded();
  await t.shot('13-minilm-layers-depth-profile');
  await layerNormDetail(t, frame, lowNorm.path);
}

/** The layer detail of a LayerNorm (picked on the depth profile): activation histograms of base
 * and model, and an activation heatmap drawn from server tiles (rows: instances; columns: tokens ×
 * features), with the value under the pointer. */
async function layerNormDetail(t, frame, path) {
  t.log(`minilm: layer detail of ${path}`);
  const detail = frame.locator('#layer-detail');
  // the depth profile's point for that module selects it (its click handler, as dispatched events
  // survive the panel re-rendering under the pointer)
  const point = frame.locator('#depth-profile svg.chart circle').filter({ has: frame.locator('title', { hasText: `· ${path}:` }) }).first();
  await t.waitFor(`the layer detail to show ${path}`, 20_000, async () => {
    if ((await detail.locator('h2').first().innerText().catch(() => '')).includes(path)) return true;
    await point.dispatchEvent('click');
    return false;
  }, 1000);

  // Activation heatmap: drawn tiles whose pixels vary (not a blank or uniform canvas), axes named.
  const canvas = detail.locator('#act-heatmap canvas');
  const drawn = await t.waitFor(`the activation heatmap of ${path} to draw its tiles`, 120_000, async () => {
    await t.noErrorToast();
    const err = await detail.locator('#act-heatmap .notice.error').innerText().catch(() => '');
    if (err) throw Object.assign(new Error(`the activation heatmap shows an error: ${err}`), { fatal: true });
    if ((await canvas.count()) === 0) return undefined;
    const tiles = Number((await canvas.getAttribute('data-tiles')) ?? 0);
    return tiles > 0 ? tiles : undefined;
  }, 1000);
  const pixels = await canvas.evaluate((c) => {
    const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
    const bg = [data[0], data[1], data[2]];
    const colours = new Set();
    let differ = 0;
    for (let i = 0; i < data.length; i += 4) {
      colours.add(`${data[i] >> 3},${data[i + 1] >> 3},${data[i + 2] >> 3}`);
      if (Math.abs(data[i] - bg[0]) + Math.abs(data[i + 1] - bg[1]) + Math.abs(data[i + 2] - bg[2]) > 12) differ++;
    }
    return { colours: colours.size, differ: differ / (data.length / 4), w: c.width, h: c.height };
  });
  const axes = await detail.locator('#act-heatmap .heat-axes').allInnerTexts();
  const status = await detail.locator('#act-heatmap .heat-status').innerText();
  t.log(`activation heatmap: ${drawn} tiles, ${pixels.w}x${pixels.h}, ${pixels.colours} colours, ${(pixels.differ * 100).toFixed(0)}% of pixels off the first one; ${status}; ${axes.join(' | ')}`);
  if (pixels.colours < 8 || pixels.differ < 0.05) throw new Error(`the activation heatmap of ${path} looks blank: ${pixels.colours} colours, ${(pixels.differ * 100).toFixed(1)}% of pixels differ`);
  if (!axes.some((a) => /^rows: \d+ instances/.test(a)) || !axes.some((a) => /^columns: \d+ positions × 384 features/.test(a))) {
    throw new Error(`the activation heatmap's axes should name instances and positions × 384 features: ${axes.join(' | ')}`);
  }
  // The value under the pointer names the instance, token position and feature.
  const box = await canvas.boundingBox();
  const readout = detail.locator('#act-heatmap .heat-readout');
  const said = await t.waitFor('the heatmap readout under the pointer', 10_000, async () => {
    await canvas.hover({ position: { x: Math.round(box.width * 0.3), y: Math.round(box.height * 0.5) } });
    const s = await readout.innerText();
    return /instance \S+ · position \d+ · feature \d+: -?[\d.]/.test(s) ? s : undefined;
  }, 500);
  t.log(`heatmap readout: ${said}`);
  // Activation histograms: values of base and model, and the relative change, each with counts.
  const hists = await t.waitFor(`activation histograms (values base vs model, relative change) for ${path}`, 120_000, async () => {
    await t.noErrorToast();
    const out = {};
    for (const kind of ['values', 'rel']) {
      const titles = await detail.locator(`#act-hists .act-hist[data-kind="${kind}"] svg rect title`).allTextContents();
      const bySeries = {};
      for (const s of titles) {
        const m = /^(.*): ([\d.e+-]+)$/.exec(s);
        if (m) bySeries[m[1]] = (bySeries[m[1]] ?? 0) + Number(m[2]);
      }
      if (!Object.keys(bySeries).length) return undefined;
      out[kind] = bySeries;
    }
    return out;
  }, 1000);
  const valueSeries = Object.entries(hists.values);
  if (valueSeries.length !== 2 || !valueSeries.every(([, n]) => n > 0)) throw new Error(`the activation value histogram of ${path} should have counts for base and model: ${JSON.stringify(hists.values)}`);
  if (!Object.values(hists.rel).every((n) => n > 0)) throw new Error(`the activation relative-change histogram of ${path} has no counts: ${JSON.stringify(hists.rel)}`);
  t.log(`activation histograms of ${path}: values ${JSON.stringify(hists.values)}, relative change ${JSON.stringify(hists.rel)}`);
  const sparsity = await detail.locator('tr', { hasText: 'Activation sparsity' }).innerText().catch(() => '');
  t.log(`activation sparsity row: ${sparsity.replace(/\s+/g, ' ')}`);

  // the activation histograms at the top of the view, the heatmap below them
  await detail.locator('#act-hists').evaluate((e) => (e.previousElementSibling ?? e).scrollIntoView({ block: 'start' }));
  await t.shot('15-minilm-layers-layernorm-detail');
}

/** The CodeLenses of `file` show metrics for each of the `models` it made: one metrics lens per
 * model; the models of a sweep (`name: "layer-{sparsity}"`) share their variant's line, each lens
 * prefixed with its model's name. */
export async function lensesStep(t, file, models, sweep) {
  const { page } = t;
  t.log(`${file}: CodeLens metrics for ${models.join(', ')}`);
  // Out of the webview first: there Ctrl+P is the browser's print, not Quick Open.
  await closeAllEditors(t);
  await quickOpen(t, file);
  let texts = [];
  const metric = /\bacc\b\s*[\d.]+/;
  await t.waitFor(`a CodeLens with metrics for each of ${models.join(', ')}`, 30_000, async () => {
    texts = (await page.locator('.monaco-editor .codelens-decoration').allInnerTexts()).map((s) => s.replace(/\s+/g, ' '));
    // One decoration per line, its lenses joined by " | ".
    const lenses = texts.flatMap((s) => s.split(' | ')).filter((l) => metric.test(l));
    return lenses.length === models.length && sweep.every((m) => lenses.some((l) => l.startsWith(`${m}: `)));
  }, 1000).catch((e) => {
    throw new Error(`${e.message}; the lenses say: ${texts.join(' / ')}`);
  });
  await t.shot('14-digits-codelens-metrics');
}

/** Structured pruning in Layers, on digits: the user adds a channels variant to the experiment
 * file (prune.structured, as digits.bonsai.yaml's channels-{amount}) and runs it; Layers shows for
 * the first conv which output channels went, one strip cell per base channel, checked against the
 * kept indices the op recorded in the artifact's manifest. */
export async function removedChannelsStep(t, workspace, base) {
  const file = 'small.bonsai.yaml';
  const variant = 'channels-0.5';
  appendFileSync(join(workspace, file), `  - name: ${variant}\n    ops:\n      - prune.structured: {amount: 0.5}\n`);
  await closeAllEditors(t);
  await runExperimentFile(t, file, [variant], '16-digits-channels-run');
  // The oracle: the op's own record (manifest kept_indices of the pruned model, base shape).
  const artifacts = join(workspace, '.bonsai', 'artifacts');
  const manifests = readdirSync(artifacts).map((d) => join(artifacts, d, 'manifest.json')).filter(existsSync).map((f) => JSON.parse(readFileSync(f, 'utf8')));
  const pruned = manifests.find((m) => m.kept_indices?.['0.weight']?.['0']);
  if (!pruned) throw new Error(`no artifact in ${artifacts} records kept indices for 0.weight after running ${variant}`);
  const size = Math.max(...manifests.map((m) => m.tensors?.['0.weight']?.shape?.[0] ?? 0));
  const kept = new Set(pruned.kept_indices['0.weight']['0']);
  const removed = [...Array(size).keys()].filter((i) => !kept.has(i));
  t.log(`${variant}: the manifest keeps ${kept.size} of ${size} output channels of 0.weight; removed ${removed.join(', ')}`);

  await closeAllEditors(t);
  await compareModels(t, base, [variant], 'Layers');
  const frame = await panelFrame(t, 'Layers', 'h1:has-text("Layers")');
  const detail = frame.locator('#layer-detail');
  const point = frame.locator('#depth-profile svg.chart circle').filter({ has: frame.locator('title', { hasText: '· 0:' }) }).first();
  const strip = detail.locator('#removed-channels .removed-channels[data-dim="0"]').first();
  await t.waitFor(`the layer detail of module 0 with its removed-channel strip`, 120_000, async () => {
    await t.noErrorToast();
    if ((await strip.count()) > 0) return true;
    if ((await point.count()) > 0) await point.dispatchEvent('click');
    return false;
  }, 1000);
  const cells = await strip.locator('svg.strip rect').evaluateAll((rs) => rs.map((r) => ({ cls: r.getAttribute('class'), index: Number(r.getAttribute('data-index')), title: r.querySelector('title')?.textContent ?? '' })));
  const shownRemoved = cells.filter((c) => c.cls === 'removed').map((c) => c.index);
  const ranges = await strip.getAttribute('data-removed');
  const text = (await strip.innerText()).replace(/\s+/g, ' ');
  t.log(`removed-channel strip: ${cells.length} cells, removed ${shownRemoved.join(', ')}; "${text}"`);
  if (cells.length !== size) throw new Error(`the strip has ${cells.length} cells; 0.weight has ${size} output channels in the base`);
  if (shownRemoved.join(',') !== removed.join(',')) throw new Error(`the strip marks channels ${shownRemoved.join(', ')} removed; the manifest says ${removed.join(', ')}`);
  const first = cells.find((c) => c.cls === 'removed');
  if (first.title !== `output channel ${first.index}: removed`) throw new Error(`a removed cell's hover says "${first.title}"`);
  const want = asRanges(removed);
  if (ranges !== want || !text.includes(`removed indices: ${want}`)) throw new Error(`the strip lists "${ranges}" ("${text}"); the removed channels are ${want}`);
  // The detail re-renders when a later result (the activation comparison) arrives: scroll the
  // strip as it is then, not the element found above.
  await t.waitFor('the removed-channel strip in view', 30_000, async () => {
    await strip.scrollIntoViewIfNeeded({ timeout: 2000 }); // a detached element throws: waitFor retries
    return true;
  }, 500);
  await t.shot('17-digits-layers-removed-channels');
}

/** Sorted indices as the panel writes them: [3, 4, 5, 12] -> "3–5, 12". */
function asRanges(xs) {
  const out = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    out.push(j === i ? `${xs[i]}` : `${xs[i]}\u2013${xs[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}
