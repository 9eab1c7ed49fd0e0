import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { closeAllEditors, compareModels, panelFrame, sideBarAndPanelOpen } from './sample-steps.mjs';

/** Issue 23: the Layers panel's Sensitivity view on the toy workspace (its `scan:` is int4 and
 * int8 per tensor, proxy): Run scan fills the chart (one row per Linear layer in depth order, one
 * column per setting), a column header sorts it, a row shows that layer's detail, and "Make a
 * variant within…" 10 (a loss every recipe meets: the smallest, int4 everywhere) writes within-10
 * after the file's last variant. */
export async function sensitivityStep(t, workspace) {
  const { page } = t;
  await closeAllEditors(t);
  await sideBarAndPanelOpen(t);
  await compareModels(t, 'toy-mlp', ['prune-50'], 'Layers');
  const frame = await panelFrame(t, 'Layers', 'h1:has-text("Layers")');
  const sens = frame.locator('#sensitivity');
  await t.waitFor('the Sensitivity view (no stored scan yet)', 30_000, async () => (await sens.locator('#sens-empty').count()) > 0, 500);
  await sens.locator('#sens-run').click();
  const table = sens.locator('#sensitivity-table');
  await t.waitFor('the scan to fill the Sensitivity chart', 120_000, async () => {
    await t.noErrorToast();
    return (await table.locator('tr.sens-row').count()) > 0;
  }, 500);
  const units = await table.locator('tr.sens-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-unit')));
  if (units.join(',') !== '0,2') throw new Error(`rows ${units.join(',')}, want the two Linear layers 0,2 in depth order`);
  const cols = await table.locator('thead th.sens-setting').allInnerTexts();
  const want = ['quantize.weights(bits=4, granularity=tensor)', 'quantize.weights(bits=8, granularity=tensor)'];
  if (cols.map((c) => c.trim()).join('|') !== want.join('|')) throw new Error(`columns ${cols.join('|')}, want ${want.join('|')}`);
  const values = async (key) => (await table.locator(`td[data-col="${key}"]`).allInnerTexts()).map(Number);
  const int4 = await values('0:proxy');
  const int8 = await values('1:proxy');
  if (!int4.every((v, i) => v > int8[i] && int8[i] > 0)) throw new Error(`int4 errors ${int4} should exceed int8's ${int8} on every layer`);
  // sort by the int4 column: the most sensitive layer first
  await table.locator('button[data-sort="0:proxy"]').click();
  const sorted = await table.locator('tr.sens-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-unit')));
  const top = int4[0] >= int4[1] ? ['0', '2'] : ['2', '0'];
  if (sorted.join(',') !== top.join(',')) throw new Error(`sorted by int4 ${sorted.join(',')}, want ${top.join(',')} (values ${int4})`);
  // a row shows that layer's detail
  await table.locator('tr.sens-row[data-unit="2"]').click();
  await t.waitFor('the layer detail of 2', 20_000, async () => /\b2\b/.test(await frame.locator('#layer-detail h2').first().innerText().catch(() => '')), 500);
  await sens.scrollIntoViewIfNeeded();
  await t.shot('14a-toy-layers-sensitivity');

  // a budgeted variant: the size, then the name the box proposes
  await sens.locator('#sens-budget-loss').click();
  const input = page.locator('.quick-input-widget input').first();
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill('10');
  await page.keyboard.press('Enter');
  await t.waitFor('the name box proposing within-10', 10_000, async () => (await input.inputValue()) === 'within-10', 250);
  await page.keyboard.press('Enter');
  const lines = page.locator('.part.editor .monaco-editor .view-lines');
  const shown = await t.waitFor('the editor to show within-10', 30_000, async () => {
    await t.noErrorToast();
    const text = (await lines.first().innerText().catch(() => '')).replace(/\u00a0/g, ' ');
    return text.includes('- name: within-10') ? text : undefined;
  }, 500);
  const disk = readFileSync(join(workspace, 'toy.bonsai.yaml'), 'utf8');
  const variant = '  - name: within-10\n    ops:\n      - quantize.weights: {bits: 4, granularity: tensor, include: ["0.weight", "2.weight"]}\n';
  const at = disk.indexOf(variant);
  if (at < 0) throw new Error(`toy.bonsai.yaml does not end with the budgeted variant ${JSON.stringify(variant)}: ${disk.slice(-400)}`);
  if (disk.indexOf('  - name: prune-50-int8\n') > at) throw new Error('within-10 is not after the last variant');
  t.log(`budgeted variant written; the editor shows ${shown.split('\n').length} lines`);
  await t.shot('14b-toy-budgeted-variant');
}
