import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { closeAllEditors, compareModels, panelFrame, sideBarAndPanelOpen } from './sample-steps.mjs';

// Issue 19 item 9 on the DOM, at 1400×900 with the side bar and the bottom panel open: the
// confusion change and McNemar's p in Behaviors (digits), and the Layers one-click fix writing a
// variant into the experiment file (MiniLM). `t` is run.mjs's harness.

/** Digits, base vs the variant samples.py picked: McNemar's p beside the agreement interval, the
 * test named; the confusion change as a 10×10 matrix whose rows each add up to no change (every
 * true class keeps its instances), the collapsed class losing on its diagonal; readable (inside
 * the panel, cells at least 20 px); a cell's click filters the instances to those that moved. */
export async function confusionMcnemarStep(t, expect) {
  const { variant, base, worstClasses } = expect;
  await closeAllEditors(t);
  await sideBarAndPanelOpen(t);
  await compareModels(t, base, [variant], 'Behaviors');
  const frame = await panelFrame(t, 'Behaviors', 'h1:has-text("Behaviors")');
  const table = frame.locator('#confusion table.confusion').first();
  await t.waitFor('the confusion change and McNemar\'s p in Behaviors', 180_000, async () => {
    await t.noErrorToast();
    return (await table.count()) > 0 && (await frame.locator('#summary td.mcnemar').count()) > 0;
  }, 1000);

  // McNemar's p right after the agreement interval, naming its test
  const heads = (await frame.locator('#summary table thead th').allInnerTexts()).map((s) => s.trim());
  const at = heads.indexOf('agreement [95% CI]');
  if (at < 0 || heads[at + 1] !== "McNemar's p (accuracy)") throw new Error(`McNemar's p is not beside the agreement interval: ${heads.join(' | ')}`);
  const cell = (await frame.locator('#summary td.mcnemar').first().innerText()).replace(/\s+/g, ' ').trim();
  const p = Number(await frame.locator('#summary td.mcnemar').first().getAttribute('data-p'));
  t.log(`McNemar: "${cell}" (p ${p})`);
  if (!/^p (= [\d.]+|< 0\.001) (exact binomial|chi-square with continuity correction(, χ² = [\d.e+-]+)?) · right only in base \d+, only in model \d+$/.test(cell)) {
    throw new Error(`the McNemar cell should say p, the test and the discordant counts: "${cell}"`);
  }
  const [, bOnly, oOnly] = /right only in base (\d+), only in model (\d+)/.exec(cell).map(Number);
  if ((bOnly + oOnly < 25) !== cell.includes('exact binomial')) throw new Error(`${bOnly + oOnly} discordant pairs but the test is "${cell}"`);

  // the matrix: class names, rows adding up to zero, the collapsed class losing on the diagonal
  const m = await table.evaluate((tb) => {
    const cols = [...tb.querySelectorAll('thead th')].slice(1).map((th) => th.textContent);
    const rows = [...tb.querySelectorAll('tbody tr')].map((tr) => ({
      name: tr.querySelector('th').textContent,
      changes: [...tr.querySelectorAll('td')].map((td) => Number(td.dataset.change)),
    }));
    const r = tb.getBoundingClientRect();
    const td = tb.querySelector('tbody td').getBoundingClientRect();
    return { cols, rows, right: r.right, width: document.documentElement.clientWidth, cellW: td.width, cellH: td.height, font: parseFloat(getComputedStyle(tb.querySelector('tbody td')).fontSize) };
  });
  t.log(`confusion change: ${m.rows.length}×${m.cols.length}, cells ${m.cellW.toFixed(0)}×${m.cellH.toFixed(0)} px at ${m.font}px, right edge ${m.right.toFixed(0)} of ${m.width}; diagonal ${m.rows.map((r, i) => `${r.name}:${r.changes[i]}`).join(' ')}`);
  if (m.rows.length !== 10 || m.cols.join() !== m.rows.map((r) => r.name).join()) throw new Error(`the confusion change should be 10×10 with the same class names on both axes: ${m.cols.join(',')} / ${m.rows.map((r) => r.name).join(',')}`);
  const unbalanced = m.rows.filter((r) => r.changes.reduce((a, b) => a + b, 0) !== 0);
  if (unbalanced.length) throw new Error(`rows of the confusion change do not add up to zero: ${unbalanced.map((r) => r.name).join(', ')}`);
  const worst = m.rows.findIndex((r) => worstClasses.includes(r.name));
  if (worst < 0 || !(m.rows[worst].changes[worst] < 0)) throw new Error(`the collapsed class ${worstClasses.join('/')} does not lose correct predictions on the diagonal`);
  if (m.right > m.width + 1 || m.cellW < 20 || m.cellH < 16 || m.font < 11) throw new Error(`the confusion change is not readable: right edge ${m.right} of ${m.width}, cells ${m.cellW}×${m.cellH} px, font ${m.font}px`);

  // the largest off-diagonal growth: clicking it filters the instances to those that moved
  const pick = m.rows.flatMap((r, i) => r.changes.map((c, j) => ({ i, j, c }))).filter((x) => x.i !== x.j).reduce((a, b) => (b.c > a.c ? b : a));
  const target = table.locator('tbody tr').nth(pick.i).locator('td').nth(pick.j);
  const title = await target.getAttribute('title');
  const [, moveIn, moveOut] = /; (\d+) in, (\d+) out\)$/.exec(title).map(Number);
  await target.scrollIntoViewIfNeeded();
  await t.shot('12a-digits-behaviors-confusion-mcnemar');
  await target.click();
  const badge = await t.waitFor(`the instances filtered to true ${m.rows[pick.i].name} predicted as ${m.cols[pick.j]}`, 15_000, async () => {
    const b = await frame.locator('#instances .toolbar .badge').first().innerText().catch(() => '');
    return b.includes(`true ${m.rows[pick.i].name} predicted as ${m.cols[pick.j]}`) ? b : undefined;
  }, 500);
  const count = Number(/\((\d+)\)$/.exec(badge)?.[1]);
  t.log(`clicked ${title}: filter "${badge}"`);
  if (count !== moveIn + moveOut) throw new Error(`the filter holds ${count} instances; ${moveIn} moved in and ${moveOut} out of the cell`);
}

/** MiniLM, base vs layer-all-0.1: from the LayerNorm whose error stands out most on the depth
 * profile, "Add a variant that restores these parameters" writes the variant after layer-all-0.1
 * in small.bonsai.yaml (the editor shows it, the file on disk holds it, it parses: a ▶ Run lens). */
export async function layersFixStep(t, workspace, { base, variant }) {
  const { page } = t;
  await closeAllEditors(t);
  await sideBarAndPanelOpen(t);
  await compareModels(t, base, [variant], 'Layers');
  const frame = await panelFrame(t, 'Layers', 'h1:has-text("Layers")');
  const depth = frame.locator('#depth-profile');
  const titles = await t.waitFor('the depth profile\'s points', 180_000, async () => {
    await t.noErrorToast();
    const ts = await depth.locator('svg.chart circle title').allTextContents();
    return ts.length >= 10 ? ts : undefined;
  }, 1000);
  const norms = titles.map((s) => /· (.+): (\S+)$/.exec(s)).filter((x) => x && /LayerNorm/.test(x[1])).map((x) => ({ path: x[1], value: Number(x[2]) }));
  if (!norms.length) throw new Error('no LayerNorm on the depth profile');
  const top = norms.reduce((a, b) => (b.value > a.value ? b : a));
  const detail = frame.locator('#layer-detail');
  const point = depth.locator('svg.chart circle').filter({ has: frame.locator('title', { hasText: `· ${top.path}:` }) }).first();
  await t.waitFor(`the layer detail of ${top.path}`, 20_000, async () => {
    if ((await detail.locator('h2').first().innerText().catch(() => '')).includes(top.path)) return true;
    await point.dispatchEvent('click');
    return false;
  }, 1000);
  const restore = detail.locator('button[data-action="restore"]').first();
  await t.waitFor('"Add a variant that restores these parameters" in the layer detail', 30_000, async () => (await restore.count()) > 0 && /restores these parameters/.test(await restore.innerText()), 500);
  if (!(await detail.locator('button[data-action="exclude"]', { hasText: 'excludes these parameters' }).count())) throw new Error('no "Add a variant that excludes these parameters" beside it');
  await restore.scrollIntoViewIfNeeded();
  await t.shot('13b-minilm-layers-fix');
  await restore.click();

  const name = `${variant}-restore-${top.path}`;
  const file = join(workspace, 'small.bonsai.yaml');
  const want = [`- name: "${name}"`, 'from: "base"', `- restore: {patterns: ["${top.path}.*"]}`];
  const lines = page.locator('.part.editor .monaco-editor .view-lines');
  const shown = await t.waitFor(`the editor to show the new variant ${name}`, 30_000, async () => {
    await t.noErrorToast();
    const text = (await lines.first().innerText().catch(() => '')).replace(/\u00a0/g, ' ');
    return want.every((w) => text.includes(w)) ? text : undefined;
  }, 500);
  const disk = readFileSync(file, 'utf8');
  const after = disk.indexOf(`- name: "${name}"`);
  t.log(`fix: ${name} in the editor and on disk at offset ${after}`);
  if (after < 0 || !want.every((w) => disk.includes(w))) throw new Error(`small.bonsai.yaml on disk does not hold the variant: ${disk.slice(-400)}`);
  // placed right after the model's variant, before the next one
  if (!(disk.indexOf('- name: layer-all-0.1\n') < after && after < disk.indexOf('- name: layer-nonorm-0.1'))) throw new Error('the new variant is not right after layer-all-0.1');
  // ready to run: the server parsed it with no problem and puts its ▶ Run lens over it
  const lens = await t.waitFor(`a ▶ Run CodeLens over ${name}`, 30_000, async () => {
    await t.noErrorToast();
    return page.evaluate((n) => {
      const line = [...document.querySelectorAll('.monaco-editor .view-line')].find((l) => l.textContent.replace(/\u00a0/g, ' ').includes(`name: "${n}"`));
      if (!line) return undefined;
      const y = line.getBoundingClientRect().top;
      const above = [...document.querySelectorAll('.monaco-editor .codelens-decoration')].filter((d) => {
        const r = d.getBoundingClientRect();
        return r.bottom <= y + 2 && r.bottom > y - 2 * line.getBoundingClientRect().height;
      });
      const text = above.map((d) => d.textContent).join(' ');
      return /▶ Run/.test(text) ? text : undefined;
    }, name);
  }, 1000);
  const errors = await page.locator('.monaco-editor .squiggly-error').count();
  t.log(`lens over ${name}: ${lens.replace(/\s+/g, ' ')}; ${errors} error squiggles; editor shows ${shown.split('\n').length} lines`);
  if (errors) throw new Error(`the file has ${errors} error squiggle(s) after the fix`);
  await t.shot('13c-minilm-fix-variant-in-file');
}
