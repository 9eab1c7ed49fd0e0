import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { closeAllEditors, quickOpen, sideBarAndPanelOpen } from './sample-steps.mjs';

// Issue 19 item 8 on the DOM, at 1400×900 with the side bar and the bottom panel open: "Create
// Experiment File" from a plain PyTorch model. The toy workspace's toy_model.py has `build()`
// returning an nn.Module; the lens over it writes toy_model.bonsai.yaml beside it, which opens in
// the editor and validates with no problems.
// `t` is the harness from run.mjs: { page, base, log, shot, waitFor, palette, noErrorToast, markLog }.

/** The lens over build() in toy_model.py creates the experiment file; its text is read from the
 * editor and from disk. */
export async function createFromPythonStep(t, workspace) {
  const { page } = t;
  const target = join(workspace, 'toy_model.bonsai.yaml');
  if (existsSync(target)) throw new Error(`${target} exists before the lens made it`);
  await closeAllEditors(t);
  await sideBarAndPanelOpen(t);
  await quickOpen(t, 'toy_model.py');
  await page.locator('.monaco-editor .view-lines', { hasText: 'def build' }).first().waitFor({ timeout: 20_000 });
  const lens = page.locator('.monaco-editor .codelens-decoration a', { hasText: 'Create experiment file for build()' }).first();
  await t.waitFor('the CodeLens "Create experiment file for build()" over toy_model.py', 30_000, async () => {
    await t.noErrorToast();
    return (await lens.count()) > 0;
  }, 500);
  await t.shot('20-create-from-py-lens');
  t.markLog();
  await lens.click();
  // the written file opens in the editor: its tab, and its text on the screen
  const tab = page.locator('.tabs-container .tab.active', { hasText: 'toy_model.bonsai.yaml' });
  await t.waitFor('the new toy_model.bonsai.yaml open in the active editor', 30_000, async () => {
    await t.noErrorToast();
    return (await tab.count()) > 0;
  }, 500);
  const editor = page.locator('.editor-instance .monaco-editor .view-lines').first();
  const shown = await t.waitFor('the editor to show the base loaded by toy_model.py:build', 20_000, async () => {
    const text = (await editor.innerText()).replace(/\u00a0/g, ' ');
    return /load: toy_model\.py:build/.test(text) && /name: toy_model/.test(text) ? text : undefined;
  });
  for (const want of ['# Bonsai experiment for the PyTorch model that build() in toy_model.py returns.', 'variants:', 'prune.magnitude', 'quantize.weights']) {
    if (!shown.includes(want)) throw new Error(`the new file on screen lacks "${want}":\n${shown.slice(0, 600)}`);
  }
  if (!existsSync(target)) throw new Error(`${target} was not written`);
  const written = readFileSync(target, 'utf8');
  if (!written.includes('base:\n  name: toy_model\n  load: toy_model.py:build\n')) {
    throw new Error(`${target} does not load the base from toy_model.py:build:\n${written.slice(0, 600)}`);
  }
  // it validates: the variants get their run lenses and the status bar counts no error
  await t.waitFor('run CodeLenses over the new file\'s variants', 30_000, async () => {
    const texts = await page.locator('.monaco-editor .codelens-decoration').allInnerTexts();
    return texts.some((s) => /Run/.test(s));
  }, 500);
  const errors = await page.locator('.statusbar-item[id="status.problems"]').first().innerText().catch(() => '');
  t.log(`created ${target}; status bar problems: ${errors.replace(/\s+/g, ' ')}`);
  const count = errors.match(/\d+/g)?.[0]; // errors first, then warnings
  if (count !== undefined && Number(count) !== 0) throw new Error(`the new file has problems: the status bar says "${errors.replace(/\s+/g, ' ')}"`);
  await t.shot('21-create-from-py-written');
}
