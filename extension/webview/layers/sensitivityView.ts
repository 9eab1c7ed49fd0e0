/**
 * The Layers panel's Sensitivity view: the newest stored scan of the base's experiment file as a
 * heatmap table (layers in depth order × scanned settings, proxy and full side by side with their
 * rank correlation), sortable by any column, skipped cells with their reason on hover; a row
 * selects that layer in the module tree and shows its detail. Actions: Run scan (the host runs
 * the file's `scan:`; progress and Cancel in the job notification), and a budgeted variant
 * ("Make a variant under…" a size, "…within…" a loss of the base), written into the file by the host.
 */
import { errorText } from '../../shared/errors';
import type { ScanInfo } from '../../shared/protocol';
import { formatBytes } from '../shared/format';
import { el, icon, notice } from '../shared/dom';
import type { LayersPanel } from './panel';
import {
  cellText,
  columnMax,
  columnTitle,
  heat,
  nextSort,
  rhoText,
  sensitivityColumns,
  sensitivityRows,
  sortRows,
  type SensSort,
} from './sensitivity';

interface SensState {
  file: string | null;
  scans: ScanInfo[];
  scan: number;
  sort: SensSort;
  busy: string | null;
  note: { kind: 'info' | 'error'; text: string } | null;
  loaded: boolean;
}

export function startSensitivity(p: LayersPanel, host: HTMLElement): { reload: () => Promise<void> } {
  const s: SensState = { file: null, scans: [], scan: 0, sort: { by: 'depth', descending: false }, busy: null, note: null, loaded: false };
  const draw = () => renderSensitivity(p, host, s, actions);
  const reload = async () => {
    try {
      const r = await p.rpc.request('scans', { model: p.base });
      s.file = r.file;
      s.scans = r.scans;
      s.scan = 0;
    } catch (e) {
      s.note = { kind: 'error', text: errorText(e) };
    }
    s.loaded = true;
    draw();
  };
  const actions = {
    run: async () => {
      s.busy = 'Scanning… (progress and Cancel in the notification)';
      s.note = null;
      draw();
      try {
        const r = await p.rpc.request('runScan', { model: p.base });
        s.note = r.state === 'done' ? { kind: 'info', text: r.message || 'scan done' } : { kind: r.state === 'failed' ? 'error' : 'info', text: `Scan ${r.state}${r.message ? `: ${r.message}` : ''}` };
      } catch (e) {
        s.note = { kind: 'error', text: errorText(e) };
      }
      s.busy = null;
      await reload();
    },
    budget: async (budget: 'size' | 'loss') => {
      const scan = s.scans[s.scan];
      if (!scan) return;
      s.note = null;
      try {
        const baseBytes = scan.result.baseBytes.reduce((a, b) => a + b, 0);
        const r = await p.rpc.request('budgetVariant', { model: p.base, scan: scan.id, budget, baseBytes });
        if (r === null) return;
        s.note = 'message' in r ? { kind: 'info', text: r.message } : { kind: 'info', text: `Wrote variant ${r.variant}: run it from its CodeLens.` };
      } catch (e) {
        s.note = { kind: 'error', text: errorText(e) };
      }
      draw();
    },
    sort: (by: string) => {
      s.sort = nextSort(s.sort, by);
      draw();
    },
    pick: (i: number) => {
      s.scan = i;
      draw();
    },
  };
  draw();
  void reload();
  return { reload };
}

type Actions = {
  run: () => Promise<void>;
  budget: (b: 'size' | 'loss') => Promise<void>;
  sort: (by: string) => void;
  pick: (i: number) => void;
};

function renderSensitivity(p: LayersPanel, host: HTMLElement, s: SensState, a: Actions): void {
  const scan = s.scans[s.scan];
  const button = (id: string, label: string, codicon: string, onClick: () => void, disabled = false) => {
    const b = el('button', { id, type: 'button' }, icon(codicon), ` ${label}`);
    b.disabled = disabled || s.busy !== null;
    b.addEventListener('click', onClick);
    return b;
  };
  const bar = el(
    'div',
    { class: 'toolbar' },
    button('sens-run', 'Run scan', 'pulse', () => void a.run()),
    button('sens-budget-size', 'Make a variant under…', 'package', () => void a.budget('size'), !scan),
    button('sens-budget-loss', 'Make a variant within…', 'target', () => void a.budget('loss'), !scan),
  );
  if (s.scans.length > 1) {
    const sel = el('select', { 'aria-label': 'Stored scan' });
    s.scans.forEach((x, i) => {
      const o = el('option', { value: String(i) }, `${new Date(x.created * 1000).toLocaleString()} · ${x.result.spec.fidelity}`);
      if (i === s.scan) o.selected = true;
      sel.append(o);
    });
    sel.addEventListener('change', () => a.pick(Number(sel.value)));
    bar.append(sel);
  }
  const parts: Node[] = [el('h2', {}, 'Sensitivity'), bar];
  if (s.busy) parts.push(el('p', { class: 'muted', role: 'status' }, s.busy));
  if (s.note) parts.push(notice(s.note.kind, s.note.text));
  if (!s.loaded) parts.push(el('p', { class: 'muted' }, 'Loading stored scans…'));
  else if (!scan) parts.push(el('p', { class: 'muted', id: 'sens-empty' }, `No stored scan of ${s.file ? s.file.replace(/^.*[\\/]/, '') : 'this experiment file'}: Run scan measures its \`scan:\` section.`));
  else parts.push(scanTable(p, scan, s, a));
  host.replaceChildren(...parts);
}

function scanTable(p: LayersPanel, info: ScanInfo, s: SensState, a: Actions): HTMLElement {
  const scan = info.result;
  const columns = sensitivityColumns(scan);
  const rows = sortRows(sensitivityRows(scan, columns), columns, s.sort);
  const tops = columns.map((_, c) => columnMax(rows, c));
  const arrow = (by: string) => (s.sort.by === by ? (s.sort.descending ? ' ▼' : ' ▲') : '');
  const sortHead = (by: string, label: string, title: string) => {
    const b = el('button', { type: 'button', class: 'link', 'data-sort': by, title }, label + arrow(by));
    b.addEventListener('click', () => a.sort(by));
    const th = el('th', { scope: 'col', 'aria-sort': s.sort.by === by ? (s.sort.descending ? 'descending' : 'ascending') : 'none' }, b);
    return th;
  };
  // first header row: one group per setting (its proxy and full columns), with their rank correlation
  const groups = el('tr', {}, el('th', { colspan: '3' }, `${scan.units.length} ${scan.spec.granularity}s`));
  const perSetting = scan.proxy && scan.full ? 2 : 1;
  scan.spec.settings.forEach((st, i) => {
    const both = scan.proxy && scan.full;
    groups.append(el('th', { colspan: String(perSetting), scope: 'colgroup', class: 'sens-setting', title: st.label }, st.label, ...(both ? [el('span', { class: 'muted sens-rho' }, ` ${rhoText(scan.rankCorrelation[i] ?? null)}`)] : [])));
  });
  const heads = el('tr', {}, sortHead('depth', '#', 'depth order'), el('th', { scope: 'col' }, scan.spec.granularity), el('th', { scope: 'col' }, 'stored'));
  for (const c of columns) heads.append(sortHead(c.key, c.fidelity, `${columnTitle(c)}: sort`));
  const body = el('tbody', {});
  for (const r of rows) {
    const tr = el('tr', { class: 'sens-row', 'data-unit': r.name, tabindex: '0', title: `${r.name}: show its detail` }, el('td', {}, String(r.unit)), el('td', { class: 'sens-name' }, r.name), el('td', {}, formatBytes(r.baseBytes)));
    r.cells.forEach((cell, c) => {
      const col = columns[c]!;
      const td = el('td', { class: cell.skipped !== undefined ? 'sens-cell skipped' : 'sens-cell', 'data-col': col.key }, cellText(cell, col.fidelity, scan.metric));
      const h = heat(cell.value, tops[c]!);
      if (h > 0) td.style.background = `color-mix(in srgb, var(--vscode-charts-red) ${Math.round(h * 60)}%, transparent)`;
      td.title = cell.skipped ?? `${columnTitle(col)}: ${cell.value === null ? 'not measured' : cellText(cell, col.fidelity, scan.metric)}${cell.bytes !== null ? `, stored ${formatBytes(cell.bytes)}` : ''}`;
      tr.append(td);
    });
    const open = () => p.select(r.name);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') open();
    });
    body.append(tr);
  }
  const unit = scan.metric ? `full: loss of ${scan.metric.name} against the base's ${scan.metric.base.toPrecision(4)} on ${scan.spec.maxInstances} instances` : '';
  return el(
    'div',
    { class: 'sens' },
    el('table', { id: 'sensitivity-table', class: 'sens-table' }, el('thead', {}, groups, heads), body),
    el('p', { class: 'muted' }, ['proxy: relative output error of the layer alone', unit, 'ρ: rank correlation of proxy and full'].filter(Boolean).join(' · ')),
  );
}
