// Opens a Bonsai HTML report in Chromium (headless, offline) and prints what a reader sees as one
// JSON line: whether anything was requested from the network, the page's errors, the scatterplot's
// points and Pareto front, the table before and after its filters, a model's recipe, and the
// comparisons. Used by tests/share/test_report_html.py.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const [file, extensionDir] = process.argv.slice(2);
const require = createRequire(`${extensionDir}/package.json`);
const { chromium } = require('playwright-core');

const browser = await chromium.launch({
  executablePath: process.env.BONSAI_E2E_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
});
const out = { requests: [], errors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, offline: true });
  const page = await context.newPage();
  const url = pathToFileURL(file).href;
  page.on('request', (r) => { if (r.url() !== url) out.requests.push(r.url()); });
  page.on('pageerror', (e) => out.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') out.errors.push(m.text()); });
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
  const rows = async () => page.$$eval('#models tbody tr.model', (trs) => trs.map((t) => t.getAttribute('data-model')));
  out.title = await page.textContent('#title');
  out.axes = await page.evaluate(() => [document.getElementById('x-axis').value, document.getElementById('y-axis').value]);
  out.points = await page.$$eval('#map circle.dot', (cs) => cs.map((c) => c.getAttribute('data-model')));
  out.front = await page.$$eval('#map circle.dot.front', (cs) => cs.map((c) => c.getAttribute('data-model')).sort());
  out.mapHeight = await page.evaluate(() => document.getElementById('map').getBoundingClientRect().height);
  out.rows = await rows();
  out.header = await page.$$eval('#models thead th', (ths) => ths.map((t) => t.textContent));
  await page.fill('#search', 'restore');
  out.searched = await rows();
  out.dimmed = await page.$$eval('#map circle.dot.dim', (cs) => cs.map((c) => c.getAttribute('data-model')).sort());
  await page.fill('#search', '');
  const firstMin = await page.$('#range-filters input[data-bound="min"]');
  out.rangeMetric = firstMin ? await firstMin.getAttribute('data-metric') : null;
  out.rangeMetrics = await page.$$eval('#range-filters input[data-bound="min"]', (es) => es.map((e) => e.getAttribute('data-metric')));
  if (process.env.REPORT_RANGE) {
    const [metric, min] = process.env.REPORT_RANGE.split('=');
    await page.click('details.ranges summary'); // the ranges are folded until asked for
    await page.fill(`#range-filters input[data-metric="${metric}"][data-bound="min"]`, min);
    out.ranged = await rows();
    await page.fill(`#range-filters input[data-metric="${metric}"][data-bound="min"]`, '');
  }
  const last = out.rows[out.rows.length - 1];
  await page.click(`#models tbody tr.model[data-model="${last}"]`);
  out.detail = await page.textContent(`#models tbody tr.detail[data-detail="${last}"]`);
  out.comparisons = await page.$$eval('.comparison', (cs) => cs.map((c) => ({
    other: c.getAttribute('data-other'),
    heading: c.querySelector('h3')?.textContent,
    cards: [...c.querySelectorAll('.card')].map((k) => k.textContent),
    groups: c.querySelectorAll('table.groups tr').length - 1,
    transitions: [...c.querySelectorAll('table.transitions tr')].slice(1).map((r) => r.textContent),
    bars: [...c.querySelectorAll('svg.profile rect.bar')].map((b) => b.getAttribute('data-path')),
  })));
  out.horizontalScroll = await page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
