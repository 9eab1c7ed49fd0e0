import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { closeAllEditors, compareModels, openModelMap, panelFrame, quickOpen, selectRows, sideBarAndPanelOpen } from './sample-steps.mjs';

// Issue 19 items 2, 5, 6 and 7 on the DOM, at 1400×900 with the side bar and the bottom panel
// open: CodeLens on sweeps, units and labels in the panels, editor polish (op docs, one typo one
// diagnostic, lenses on the variants an error does not touch), language-model instances.
// `t` is the harness from run.mjs: { page, base, log, shot, waitFor, palette, noErrorToast, markLog }.

const lensTexts = async (page) => (await page.locator('.monaco-editor .codelens-decoration').allInnerTexts()).map((s) => s.replace(/\s+/g, ' '));

/** Item 5: the sweep `layer-{sparsity}` has one summary lens, and its "show all" lists each model
 * on a line of its own with its change against its parent and the base; a variant made from
 * another (layer-0.9-bn) says both. Item 6: pt and KiB in the lens. Item 7: the op's hover is
 * Markdown (no code block from an indented paragraph; the parameters listed). */
export async function sweepLensesStep(t, workspace, file) {
  const { page } = t;
  await closeAllEditors(t);
  await sideBarAndPanelOpen(t);
  await quickOpen(t, file);
  let texts = [];
  const lenses = await t.waitFor('a summary CodeLens over layer-{sparsity} and metrics over layer-0.9-bn and int4', 30_000, async () => {
    texts = await lensTexts(page);
    const all = texts.flatMap((s) => s.split(' | '));
    const summary = all.find((l) => /^2 models · acc [\d.–]+% · .*KiB · show all$/.test(l));
    // quality first (acc, agree), then the size, each against the parent and the base
    const bn = all.find((l) => /^acc [\d.]+% \([−+±][\d.]+ pt vs parent, [−+±][\d.]+ pt vs base\) · (.* · )?[\d.]+ KiB \([\d.]+× vs parent, [\d.]+× vs base\)/.test(l));
    const int4 = all.find((l) => /^acc [\d.]+% \([−+±][\d.]+ pt vs base\) · (.* · )?[\d.]+ KiB \([\d.]+× vs base\)/.test(l));
    return summary && bn && int4 ? { summary, bn, int4, all } : undefined;
  }, 1000).catch((e) => {
    throw new Error(`${e.message}; the lenses say: ${texts.join(' / ')}`);
  });
  t.log(`lenses: ${lenses.summary} / ${lenses.bn} / ${lenses.int4}`);
  // no model's metrics share a line with another's: each metrics lens is one model
  if (lenses.all.some((l) => /layer-0\.5: .*layer-0\.9: /.test(l))) throw new Error(`two models' metrics on one lens: ${lenses.all.join(' | ')}`);
  await t.shot('14-digits-codelens-sweep');
  await page.locator('.monaco-editor .codelens-decoration a', { hasText: 'show all' }).first().click();
  const rows = page.locator('.quick-input-widget .quick-input-list .monaco-list-row');
  const picked = await t.waitFor('the sweep\'s "show all" pick with a line per model', 15_000, async () => {
    const r = await rows.allInnerTexts();
    return r.length === 2 ? r.map((s) => s.replace(/\s+/g, ' ')) : undefined;
  });
  t.log(`show all: ${picked.join(' / ')}`);
  for (const [name, line] of [['layer-0.5', picked[0]], ['layer-0.9', picked[1]]]) {
    if (!line.startsWith(name) || !/acc [\d.]+% \([−+±][\d.]+ pt vs base\)/.test(line) || !/KiB \([\d.]+× vs base\)/.test(line)) {
      throw new Error(`the "show all" line of ${name} should give its accuracy in pt and size in KiB against the base: ${line}`);
    }
  }
  await t.shot('14a-digits-codelens-show-all');
  await page.keyboard.press('Escape');

  // the op's documentation on hover: Markdown paragraphs and a parameter list, no code block.
  // The cursor goes on the op (Go to Line/Column) and the hover opens from the keyboard: a
  // pointer over a line's span lands wherever the span's middle is.
  const lines = readFileSync(join(workspace, file), 'utf8').split('\n');
  const line = lines.findIndex((l) => l.includes('- prune.magnitude'));
  const col = lines[line].indexOf('prune.magnitude') + 3;
  const hover = page.locator('.monaco-hover:visible', { hasText: 'Parameters' }).first();
  await t.waitFor(`the hover of prune.magnitude (line ${line + 1}) with its parameters`, 30_000, async () => {
    await t.palette('Go to Line/Column');
    // the picker's text starts with ':' (Go to Line's prefix); without it the text is a file search
    await page.locator('.quick-input-widget input').fill(`:${line + 1}:${col}`);
    await page.keyboard.press('Enter');
    await t.palette('Show or Focus Hover');
    await page.waitForTimeout(1000);
    return (await hover.count()) > 0;
  }, 1000);
  const blocks = await hover.locator('pre, .monaco-tokenized-source, code.language-plaintext').count();
  const items = await hover.locator('li').allInnerTexts();
  const text = (await hover.innerText()).replace(/\s+/g, ' ');
  t.log(`hover: ${items.length} parameters, ${blocks} code blocks; "${text.slice(0, 120)}…"`);
  if (blocks !== 0) throw new Error(`the op's hover shows ${blocks} code block(s): its docstring's paragraphs should be prose`);
  if (!items.some((i) => /^sparsity \(float/.test(i))) throw new Error(`the hover does not list sparsity among its parameters: ${items.join(' | ')}`);
  await t.shot('14b-digits-op-hover');
  await page.keyboard.press('Escape');
}

/** Item 7: a file with one misspelt parameter in a sweep whose models have children: one error in
 * the status bar and the editor (not a bad placeholder, not an unknown parent beside it), and the
 * variant the typo does not touch keeps its lenses. */
export const TYPO_FILE = 'typo.bonsai.yaml';

/** Written before VS Code opens the workspace: Quick Open lists the files it found then. */
export function writeTypoFile(workspace) {
  writeFileSync(join(workspace, TYPO_FILE), [
    'seed: 0',
    'base:',
    '  name: digits-cnn',
    '  load: model/model.safetensors',
    '  factory: model.py:build',
    'task:',
    '  kind: image-classification',
    '  data: data',
    'variants:',
    '  - name: "global-{sparsity}"',
    '    ops:',
    '      - prune.magnitude: {sparsty: [0.5, 0.7], scope: global}',
    '  - name: "global-{sparsity}-bn"',
    '    from: "global-{sparsity}"',
    '    ops:',
    '      - bn.recalibrate: {batches: 2}',
    '  - name: global-0.7-bn-int8',
    '    from: global-0.7-bn',
    '    ops:',
    '      - quantize.weights: {bits: 8}',
    '  - name: untouched',
    '    ops:',
    '      - quantize.weights: {bits: 4}',
    '',
  ].join('\n'));
}

export async function oneTypoStep(t, workspace) {
  const { page } = t;
  const file = TYPO_FILE;
  const path = join(workspace, file);
  try {
    await closeAllEditors(t);
    await sideBarAndPanelOpen(t);
    await quickOpen(t, file);
    const status = page.locator('#status\\.problems, .statusbar-item[id*="problems"]').first();
    const said = await t.waitFor('the status bar to count the typo\'s diagnostics', 30_000, async () => {
      const label = (await status.getAttribute('aria-label').catch(() => null)) ?? (await status.innerText().catch(() => ''));
      const squiggles = await page.locator('.monaco-editor .squiggly-error').count();
      return /Errors?: ?[1-9]|[1-9] Errors?/i.test(label) && squiggles > 0 ? { label, squiggles } : undefined;
    }, 1000);
    t.log(`one typo: status "${said.label}", ${said.squiggles} squiggle(s)`);
    if (!/Errors?: ?1\b|\b1 Error\b/i.test(said.label)) throw new Error(`one typo should give one error; the status bar says "${said.label}"`);
    if (said.squiggles !== 1) throw new Error(`one typo should give one squiggle; the editor has ${said.squiggles}`);
    // the lenses stay: every declared variant keeps its actions (the untouched one included)
    const texts = await t.waitFor('the lenses of the typo file', 20_000, async () => {
      const x = await lensTexts(page);
      return x.filter((s) => s.includes('Run')).length >= 4 ? x : undefined;
    }, 1000);
    t.log(`lenses beside the typo: ${texts.length} lines`);
    await t.shot('14c-digits-one-typo-one-diagnostic');
  } finally {
    await closeAllEditors(t).catch(() => {});
    if (existsSync(path)) rmSync(path);
  }
}

/** Item 6 on the Model Map: table deltas with units, and the selection bar charts naming their
 * models (and saying when their axis does not start at zero). */
export async function modelMapUnitsStep(t, expect) {
  const ids = expect.ids;
  const names = ['digits-cnn', 'layer-0.5', 'layer-0.9'];
  const frame = await openModelMap(t, names);
  const deltas = await t.waitFor('the table\'s deltas', 20_000, async () => {
    const d = await frame.locator('tr[data-model] .delta').allInnerTexts();
    return d.length ? d.map((s) => s.trim()) : undefined;
  }, 500);
  // every delta is a signed number with the metric's unit (pt, KiB, ms, ×, nats, …) or none;
  // a tiny one (a runtime's max abs difference: 4.77e-7) in scientific notation
  const bad = deltas.filter((d) => d !== '=' && !/^[−+±][\d.]+(e[−+-]?\d+)?(k|×)?( \S+)?$/.test(d));
  const percentDelta = deltas.filter((d) => /%$/.test(d));
  t.log(`table deltas: ${[...new Set(deltas)].slice(0, 12).join(', ')}`);
  if (percentDelta.length) throw new Error(`table deltas in %: ${percentDelta.join(', ')} (a percentage's change is in pt)`);
  if (bad.length) throw new Error(`table deltas not as a signed number with its unit: ${bad.join(', ')}`);
  if (deltas.some((d) => / x$/.test(d))) throw new Error(`a ratio's delta reads "x": ${deltas.join(', ')}`);
  if (!deltas.some((d) => / pt$/.test(d)) || !deltas.some((d) => / (KiB|B)$/.test(d))) throw new Error(`the table's deltas give no pt or KiB: ${deltas.join(', ')}`);
  await selectRows(t, frame, ids, ['layer-0.5', 'layer-0.9']);
  const details = frame.locator('section.mm-details');
  const named = await t.waitFor('the bar charts naming layer-0.5 and layer-0.9 under their bars', 20_000, async () => {
    const n = await details.locator('.mm-bars .mm-bar-name').allTextContents();
    return n.includes('layer-0.5') && n.includes('layer-0.9') ? n : undefined;
  }, 500);
  const captions = await details.locator('.mm-bars figcaption').allInnerTexts();
  t.log(`bar names: ${[...new Set(named)].join(', ')}; captions: ${captions.join(' | ')}`);
  await details.locator('.mm-bars').first().scrollIntoViewIfNeeded();
  await t.shot('11b-digits-model-map-bars-named');
}

/** Item 6 on Layers (MiniLM, the panel layersStep left open): the tree says what — and ▲ mean and
 * names an index module with its container, the depth profile's x axis has a label. */
export async function layersLabelsStep(t) {
  const frame = await panelFrame(t, 'Layers', 'h1:has-text("Layers")');
  const key = (await frame.locator('#module-tree .tree-key').innerText()).trim();
  const axis = (await frame.locator('#depth-profile .depth-axis').innerText()).trim();
  const rowNames = await frame.locator('#module-tree [role="treeitem"] .name').allInnerTexts();
  t.log(`tree key: "${key}"; depth axis: "${axis}"; rows: ${rowNames.slice(0, 6).map((s) => s.trim()).join(', ')}`);
  if (!/— no value/.test(key) || !/▲ a collapsed row hides/.test(key)) throw new Error(`the module tree does not explain — and ▲: "${key}"`);
  if (!/^x: modules in the order they run/.test(axis)) throw new Error(`the depth profile's x axis has no label: "${axis}"`);
  const bare = rowNames.map((s) => s.replace(/[\s\u00a0▸▾]+/g, '')).filter((s) => /^\d+$/.test(s));
  if (bare.length) throw new Error(`tree rows named by a bare index: ${bare.join(', ')}`);
}

/** Item 2: charlm's Behaviors instance cards: decoded text (no token-id arrays), each model's
 * predictions as text with visible whitespace, KL in its own column, nothing overflowing its card
 * and no sideways scroll. */
export async function charlmInstancesStep(t, { base, variant }) {
  const { page } = t;
  await closeAllEditors(t);
  await sideBarAndPanelOpen(t);
  await compareModels(t, base, [variant], 'Behaviors');
  const frame = await panelFrame(t, 'Behaviors', 'h1:has-text("Behaviors")');
  const cards = frame.locator('#instances .card');
  const n = await t.waitFor('the charlm instance cards with each model\'s predicted next tokens', 180_000, async () => {
    await t.noErrorToast();
    const k = await frame.locator('#instances .card table.preds.lm tr[data-model] .tokens').count();
    return k >= 2 ? k : undefined;
  }, 1000);
  const report = await cards.evaluateAll((cs) => cs.slice(0, 8).map((c) => {
    const kl = c.querySelector('td.kl');
    const toks = c.querySelector('table.preds.lm tr:last-child td:nth-child(2)');
    const a = kl?.getBoundingClientRect();
    const b = toks?.getBoundingClientRect();
    return {
      text: c.innerText,
      overflow: c.scrollWidth - c.clientWidth,
      klOverlaps: !!(a && b && a.width > 0 && a.left < b.right - 0.5),
      ws: c.querySelectorAll('.ws').length,
    };
  }));
  const page0 = await frame.locator('html').evaluate((h) => ({ scroll: h.scrollWidth, width: h.clientWidth }));
  t.log(`charlm: ${n} prediction rows; cards: ${report.map((r) => `overflow ${r.overflow}, ws ${r.ws}`).join('; ')}; page ${page0.scroll}/${page0.width}`);
  const ids = report.find((r) => /\[\d+,\s*\d+,\s*\d+/.test(r.text));
  if (ids) throw new Error(`an instance card shows token ids: ${ids.text.slice(0, 120)}`);
  if (report.some((r) => r.overflow > 1)) throw new Error(`an instance card overflows: ${report.map((r) => r.overflow).join(', ')} px`);
  if (report.some((r) => r.klOverlaps)) throw new Error('a KL label overlaps the predicted tokens');
  if (!report.some((r) => r.ws > 0)) throw new Error('no whitespace marker (·, →, ↵) in any card: Python source has spaces');
  if (page0.scroll > page0.width + 1) throw new Error(`the Behaviors page scrolls sideways: ${page0.scroll} > ${page0.width}`);
  await frame.locator('#instances').scrollIntoViewIfNeeded();
  await t.shot('18-charlm-behaviors-instances');
  void page;
}
