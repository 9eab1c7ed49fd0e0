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
export async function quickOpen(t, file) {
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
export async function panelFrame(t, what, marker, ms = 60_000) {
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

export async function closeAllEditors(t) {
  await t.palette('View: Close All Editors');
  await t.page.waitForTimeout(500);
}

/** "Bonsai: Compare Models…": base, the others (multi-select), then the view. */
export async function compareModels(t, baseName, others, view) {
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

/** The workbench as the issue 19 review had it: the side bar (the Lineage view) and the bottom
 * panel both open, so the Model Map gets what is left of 1400×900. */
export async function sideBarAndPanelOpen(t) {
  const { page } = t;
  const panelShown = () => page.locator('.part.panel').first().isVisible().catch(() => false);
  if (!(await panelShown())) await t.palette('View: Toggle Panel Visibility');
  await t.waitFor('the bottom panel open', 10_000, panelShown);
  // The panel opens on a terminal that takes the keyboard (Ctrl+P went to the shell, and the
  // quick pick never opened): show the Problems view there instead, as a user checking a file has.
  const problems = page.locator('.part.panel .composite-bar .action-item', { hasText: 'Problems' }).first();
  if (await problems.count()) await problems.click();
  await t.waitFor('the side bar open', 10_000, () => page.locator('.part.sidebar').first().isVisible().catch(() => false));
}

/** Opens the Model Map (side bar and panel open) and waits until its table lists `names`. */
export async function openModelMap(t, names) {
  await closeAllEditors(t);
  await sideBarAndPanelOpen(t);
  await t.palette('Bonsai: Open Model Map');
  const frame = await panelFrame(t, 'Model Map', '[role="toolbar"][aria-label="Model Map"]');
  await t.waitFor(`the Model Map table to list ${names.join(', ')}`, 30_000, async () => {
    await showTab(frame, 'table');
    const rows = await frame.locator('tr[data-model]').evaluateAll((trs) => trs.map((r) => r.querySelector('td')?.innerText ?? ''));
    return names.every((n) => rows.includes(n));
  }, 500);
  return frame;
}

/** Shows one of the Model Map's views: in the stacked layout the map is always there and the
 * tabs pick the scatterplot or the table; in the tabbed one each is a tab. */
async function showTab(frame, which) {
  const tab = frame.locator(`#tab-${which}`);
  if ((await tab.count()) && (await tab.isVisible()) && (await tab.getAttribute('aria-selected')) !== 'true') await tab.click({ timeout: 2000 });
}

const overlap = (a, b) => a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];

/** Issue 19 item 3 on the DOM: each view at a usable size, the legend off the map, every column
 * header drawn, labels that do not collide (and name every model in view); item 4: the
 * scatterplot's default axes. Returns what it read. */
async function modelMapLayout(t, frame, names, axes) {
  const root = frame.locator('.mm-root');
  const tabbed = /\btabbed\b/.test((await root.getAttribute('class')) ?? '');
  await showTab(frame, 'map');
  const mapCanvas = frame.locator('.mm-map canvas');
  const map = await mapCanvas.boundingBox();
  if (!map || map.height < 200 || map.width < 400) throw new Error(`the map is ${map?.width}×${map?.height} px (tabbed: ${tabbed}); it needs at least 400×200`);
  const strip = await frame.locator('.mm-legend-strip').boundingBox();
  const legend = await frame.locator('[aria-label^="Legend:"]').first().boundingBox();
  if (!strip || !legend || legend.y < map.y + map.height - 0.5) throw new Error(`the legend (top ${legend?.y}) lies over the map (${map.y}–${map.y + map.height})`);
  // Fit, then read the headers drawn and the labels the map placed (canvas coordinates).
  await frame.getByRole('button', { name: 'Fit the map to the view' }).click();
  let headers = '';
  await t.waitFor('the fitted map to draw its column headers "base" and "step 1"', 10_000, async () => {
    headers = (await mapCanvas.getAttribute('data-headers')) ?? '';
    const cols = headers.split('|');
    return cols.includes('base') && cols.includes('step 1');
  }, 250).catch((e) => {
    throw new Error(`${e.message}; the map's headers are "${headers}"`);
  });
  const labels = await t.waitFor('the map labels of every model in view', 10_000, async () => {
    const ls = JSON.parse((await mapCanvas.getAttribute('data-labels')) || '[]');
    const texts = ls.filter((l) => l.kind === 'name').map((l) => l.text);
    const named = (n) => texts.some((x) => x === n || (x.endsWith('…') && n.startsWith(x.slice(0, -1))));
    return names.every(named) ? ls : undefined;
  }, 500);
  for (let i = 0; i < labels.length; i++) {
    for (let j = i + 1; j < labels.length; j++) if (overlap(labels[i].box, labels[j].box)) throw new Error(`map labels "${labels[i].text}" and "${labels[j].text}" overlap`);
  }
  // Content spread over the width: the rightmost label ends past half the map.
  const right = Math.max(...labels.map((l) => l.box[2]));
  if (right < map.width * 0.5) throw new Error(`the map's content ends at ${right.toFixed(0)} of ${map.width.toFixed(0)} px: a strip`);
  await t.shot(`${axes.shot}-map`);
  await showTab(frame, 'scatter');
  const sc = frame.locator('.mm-scatter canvas');
  const read = await t.waitFor('the scatterplot drawn with its axes', 10_000, async () => {
    const box = await sc.boundingBox();
    const d = await sc.evaluate((c) => ({ ...c.dataset }));
    return box && box.height > 0 && d.yTitle ? { box, ...d } : undefined;
  }, 500);
  if (read.box.height < 200) throw new Error(`the scatterplot is ${read.box.height.toFixed(0)} px tall (tabbed: ${tabbed}); it needs 200`);
  if (!read.yTitle.startsWith(axes.yLabel) || read.yTitle.endsWith('…')) throw new Error(`the scatterplot's y title is cut: "${read.yTitle}"`);
  if (!axes.x.includes(read.x) || read.y !== axes.y) throw new Error(`the scatterplot defaults to ${read.x} × ${read.y}; expected ${axes.x.join(' or ')} × ${axes.y}`);
  t.log(`model map layout: ${tabbed ? 'tabbed' : 'stacked'}; map ${map.width.toFixed(0)}×${map.height.toFixed(0)}, scatterplot ${read.box.width.toFixed(0)}×${read.box.height.toFixed(0)}; headers ${headers}; ${labels.length} labels, none overlapping, content to ${right.toFixed(0)} px; axes ${read.x} × ${read.y} ("${read.xTitle}" / "${read.yTitle}")`);
  await t.shot(`${axes.shot}-scatter`);
  return { tabbed };
}

/** The recipe diff in the selection details: rows that differ as [label, a, b]. */
async function recipeDiffRows(t, frame, want) {
  const details = frame.locator('section.mm-details');
  return t.waitFor(`the recipe diff (${want})`, 20_000, async () => {
    const table = details.locator('table.mm-diff');
    if (!(await table.count())) return undefined;
    return table.locator('tbody tr').evaluateAll((trs) =>
      trs.map((tr) => ({ kind: tr.dataset.kind, same: tr.dataset.same === 'true', cells: [...tr.children].map((c) => c.innerText.trim()) })),
    );
  }, 500);
}

/** Selects rows of the Model Map's table by name (click, then shift-click), as dispatched
 * events: under load the table re-renders its rows continually while the pointer is over it. */
export async function selectRows(t, frame, ids, names) {
  const rowOf = (name) => frame.locator(`tr[data-model="${ids[name]}"]`);
  const selected = async (name) => /\bfocus\b/.test((await rowOf(name).getAttribute('class')) ?? '');
  await showTab(frame, 'table');
  await t.waitFor(`the table rows ${names.join(', ')} selected (click, shift-click)`, 20_000, async () => {
    for (const [i, n] of names.entries()) if (!(await selected(n))) await rowOf(n).dispatchEvent('click', { bubbles: true, shiftKey: i > 0 });
    for (const n of names) if (!(await selected(n))) return false;
    return true;
  }, 500);
}

/** Issue 7 and issue 19 items 3 and 4: the Model Map on digits with the side bar and panel open —
 * layout, default axes, colour metric and legend, two selected models with their recipe diff and
 * bar charts. */
export async function modelMapStep(t, expect) {
  const ids = expect.ids;
  t.log('digits: opening the Model Map');
  const names = Object.keys(ids);
  const frame = await openModelMap(t, names);
  await modelMapLayout(t, frame, names, { x: ['stored_size'], y: 'accuracy', yLabel: 'accuracy', shot: '10a-digits-model-map' });

  // Colour metric: pick another metric; the legend must name it.
  await showTab(frame, 'map');
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
  await colour.selectOption(current);
  await t.shot('10-digits-model-map-colour');

  // Two models: the details show their recipe diff, what varies and bar charts.
  const [a, b] = ['layer-0.5', 'layer-0.9'];
  if (!ids[a] || !ids[b]) throw new Error(`the digits lineage has no ${a} / ${b} (models: ${names.join(', ')})`);
  await selectRows(t, frame, ids, [a, b]);
  const details = frame.locator('section.mm-details');
  const charts = await t.waitFor(`comparison bar charts (.mm-bars) with a bar for ${a} and for ${b}`, 20_000, async () => {
    const n = await details.locator('.mm-bars').count();
    if (!n) return undefined;
    const bars = await details.locator('.mm-bars rect[data-model]').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-model')));
    return bars.includes(ids[a]) && bars.includes(ids[b]) ? n : undefined;
  });
  const varies = await details.locator('.mm-varies').innerText().catch(() => '');
  if (!/sparsity/.test(varies)) throw new Error(`"What varies" for ${a} and ${b} does not name sparsity: ${JSON.stringify(varies)}`);
  const diff = await recipeDiffRows(t, frame, `${a} vs ${b}`);
  const differs = diff.filter((r) => !r.same).map((r) => r.cells);
  if (JSON.stringify(differs) !== JSON.stringify([['· sparsity', '0.5', '0.9']])) throw new Error(`the recipe diff of ${a} and ${b} marks ${JSON.stringify(differs)}; only sparsity 0.5 / 0.9 differs`);
  if (!diff.some((r) => r.kind === 'op' && r.same && r.cells[1] === 'prune.magnitude')) throw new Error(`the recipe diff has no shared prune.magnitude op row: ${JSON.stringify(diff)}`);
  const captions = await details.locator('.mm-bars figcaption').allInnerTexts();
  t.log(`bar charts: ${charts} (${captions.join(' | ')}); what varies: ${varies.replace(/\s+/g, ' ').slice(0, 80)}; recipe diff: ${diff.length} rows, differing ${JSON.stringify(differs)}`);
  await showTab(frame, 'map');
  await t.shot('11-digits-model-map-selection-bars', 'screenshot.png');
}

/** Issue 19 item 3: a multi-op variant (channels-0.5: prune.structured, then bn.recalibrate) shows
 * as one model — in the table, the map and search — until its steps are asked for. */
export async function foldedStepsStep(t) {
  const variant = 'channels-0.5';
  const step = `${variant}/1`;
  const frame = await openModelMap(t, [variant]);
  const rows = async () => frame.locator('tr[data-model]').evaluateAll((trs) => trs.map((r) => [...r.querySelectorAll('td')].slice(0, 3).map((td) => td.innerText)));
  const folded = await rows();
  const row = folded.find((r) => r[0] === variant);
  if (folded.some((r) => r[0] === step)) throw new Error(`the table lists ${step} while its variant is folded`);
  if (row?.[2] !== 'prune.structured + bn.recalibrate') throw new Error(`the table's op for ${variant} is "${row?.[2]}"; the folded variant's ops are prune.structured + bn.recalibrate`);
  const search = frame.getByLabel('Search models by name or op');
  await search.fill(step);
  await search.press('Enter');
  const found = await frame.locator('.mm-toolbar [role="status"]').innerText();
  if (found !== '1 found') throw new Error(`searching "${step}" says "${found}"; it should find its variant`);
  const selectedRow = await frame.locator('tr[data-model].focus td').first().innerText();
  if (selectedRow !== variant) throw new Error(`searching "${step}" selected ${selectedRow}`);
  await showTab(frame, 'map');
  const mapLabels = await t.waitFor(`the map to name ${variant}`, 10_000, async () => {
    const ls = JSON.parse((await frame.locator('.mm-map canvas').getAttribute('data-labels')) || '[]').map((l) => l.text);
    return ls.includes(variant) ? ls : undefined;
  }, 500);
  if (mapLabels.includes(step)) throw new Error(`the map names ${step} while its variant is folded`);
  await t.shot('18-digits-model-map-folded');
  // Unfolded on request: the step is back in the table.
  const steps = frame.getByLabel('Show the intermediate models of multi-op variants');
  await steps.check();
  await showTab(frame, 'table');
  await t.waitFor(`the table to list ${step} once steps are shown`, 10_000, async () => (await rows()).some((r) => r[0] === step), 500);
  await steps.uncheck();
  t.log(`${variant} folded (op "${row[2]}"), found by "${step}", unfolded on request`);
}

/** Issue 19 item 1 on MiniLM: "Compare Recipe with…" from the Lineage tree's context menu opens the
 * Model Map with both models selected and their recipe diff, which names the one setting that
 * differs (exclude); "What varies" names it too once the base is added. */
export async function recipeDiffStep(t, { base, variant, other }) {
  const { page } = t;
  await closeAllEditors(t);
  await sideBarAndPanelOpen(t);
  const sidebar = page.locator('.sidebar');
  const row = sidebar.locator(`[role="treeitem"][aria-label^="${variant},"]`).first();
  await t.waitFor(`the Lineage tree row ${variant}`, 30_000, async () => {
    for (const r of await sidebar.locator('[role="treeitem"][aria-expanded="false"]').all()) await r.click().catch(() => {});
    return (await row.count()) > 0 && (await sidebar.locator(`[role="treeitem"][aria-label^="${other},"]`).count()) > 0;
  }, 1000);
  await row.click({ button: 'right' });
  const item = page.locator('.context-view .action-item', { hasText: 'Compare Recipe with…' }).first();
  await item.waitFor({ state: 'visible', timeout: 10_000 });
  const widget = page.locator('.quick-input-widget');
  const input = widget.locator('input').first();
  // A click on a menu that is still opening can be taken as a hover only (the item highlights and
  // the menu stays): click again while the menu is up, open it again if it closed with no pick.
  await t.waitFor('the pick of "Compare Recipe with…"', 20_000, async () => {
    if (await input.isVisible()) return true;
    if (await item.isVisible()) await item.click().catch(() => {});
    else await row.click({ button: 'right' }).catch(() => {});
    await input.waitFor({ state: 'visible', timeout: 1500 }).catch(() => {});
    return await input.isVisible();
  }, 250);
  await input.fill(other);
  await widget.locator('.quick-input-list .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: new RegExp(`^${other.replace(/[.]/g, '\\.')}$`) }) }).first().click();
  const frame = await panelFrame(t, 'Model Map', '[role="toolbar"][aria-label="Model Map"]');
  const diff = await recipeDiffRows(t, frame, `${variant} vs ${other}`);
  const differs = diff.filter((r) => !r.same).map((r) => r.cells);
  t.log(`recipe diff ${variant} / ${other}: ${diff.length} rows; differing ${JSON.stringify(differs)}`);
  if (JSON.stringify(differs) !== JSON.stringify([['· exclude', '—', '["*LayerNorm*"]']])) throw new Error(`the recipe diff of ${variant} and ${other} marks ${JSON.stringify(differs)}; only exclude (unset / ["*LayerNorm*"]) differs`);
  const shown = diff.map((r) => r.cells[0]);
  for (const want of ['base', 'op 1', '· include', '· scope', '· sparsity', 'seed', 'task', 'instances']) if (!shown.includes(want)) throw new Error(`the recipe diff has no "${want}" row: ${shown.join(', ')}`);
  const summary = await frame.locator('.mm-diff-summary').innerText();
  if (summary !== '1 difference: exclude') throw new Error(`the recipe diff says "${summary}"`);
  const minilmNames = [base, variant, other];
  // x: stored size, or the ratio where the sizes do not vary; y: the task's quality, not latency
  await modelMapLayout(t, frame, minilmNames, { x: ['stored_size', 'compression_ratio'], y: 'cosine_agreement', yLabel: 'cosine_agreement', shot: '19a-minilm-model-map' });
  await showTab(frame, 'map');
  await t.shot('19-minilm-recipe-diff', 'recipe-diff.png');
  // With the base added, "What varies" names the op and the exclude pattern.
  await showTab(frame, 'table');
  const ids = Object.fromEntries(await frame.locator('tr[data-model]').evaluateAll((trs) => trs.map((r) => [r.querySelector('td')?.innerText ?? '', r.dataset.model])));
  await selectRows(t, frame, ids, [variant, other, base]);
  const varies = await t.waitFor('"What varies" for the three models', 20_000, async () => {
    const v = await frame.locator('section.mm-details .mm-varies').innerText().catch(() => '');
    return v || undefined;
  }, 500);
  if (!/prune\.magnitude\.exclude/.test(varies)) throw new Error(`"What varies" with the base added does not name prune.magnitude.exclude: ${JSON.stringify(varies)}`);
  t.log(`what varies (base added): ${varies.replace(/\s+/g, ' ')}`);
}

/** The first number in a cell such as "−100.0 pt [−100.0 pt, −76.9 pt]", as a fraction; a change of
 * accuracy must read in points (pt), not % (issue 19 item 6). */
function pct(text) {
  const m = /([-+±]?\d+(?:\.\d+)?) pt/.exec(text.replace(/\u2212/g, '-'));
  return m ? Number(m[1].replace(/^[+±]/, '')) / 100 : null;
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

/** Structured pruning in Layers, on digits: the user adds a channels variant to the experiment
 * file (prune.structured then bn.recalibrate, as digits.bonsai.yaml's channels-{amount}) and runs it; Layers shows for
 * the first conv which output channels went, one strip cell per base channel, checked against the
 * kept indices the op recorded in the artifact's manifest. */
export async function removedChannelsStep(t, workspace, base) {
  const file = 'small.bonsai.yaml';
  const variant = 'channels-0.5';
  // two ops, as digits.bonsai.yaml's channels-{amount}: the step after the first is an
  // intermediate model (channels-0.5/1), which the Model Map folds into the variant
  appendFileSync(join(workspace, file), `  - name: ${variant}\n    ops:\n      - prune.structured: {amount: 0.5}\n      - bn.recalibrate: {batches: 4}\n`);
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
