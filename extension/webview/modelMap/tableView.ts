/**
 * The table: one row per model (those hidden by a collapsed subtree included), a column per
 * metric and per op parameter, sortable headers, deltas against the parent or a reference model,
 * row selection, CSV export. Rows are windowed so 2,000 models scroll smoothly.
 */
import { el, onNextFrame } from '../shared/dom';
import { formatDelta, formatMetric } from '../shared/format';
import type { App, Change } from './app';
import { measuredCell } from './errorBars';
import { change } from './lineage';
import { cellValue, deltaBase, sortRows, tableColumns, toCsv, type Column, type DeltaMode } from './table';

const ROW = 24;

export class TableView {
  readonly root: HTMLElement;
  private readonly scroller: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly table: HTMLTableElement;
  private cols: Column[] = [];
  private rows: string[] = [];

  constructor(
    private readonly app: App,
    private readonly exportCsv: (name: string, text: string) => void,
  ) {
    this.table = el('table', { class: 'mm-table', role: 'grid', 'aria-label': 'Models' });
    this.spacer = el('div', { class: 'mm-spacer' });
    this.scroller = el('div', { class: 'mm-table-scroll', tabindex: '0' }, this.spacer, this.table);
    this.root = el('div', { class: 'mm-table-wrap' }, this.toolbar(), this.scroller);
    this.scroller.addEventListener('scroll', () => this.request());
    new ResizeObserver(() => this.request()).observe(this.scroller);
    app.on((c: Change) => {
      if (c === 'data' || c === 'filters' || c === 'table') this.rebuild();
      if (c !== 'zoom') this.request();
    });
  }

  private deltaMode(): DeltaMode {
    const s = this.app.state;
    if (s.delta === 'reference' && s.reference) return { kind: 'reference', id: s.reference };
    return s.delta === 'none' ? { kind: 'none' } : { kind: 'parent' };
  }

  private toolbar(): HTMLElement {
    const mode = el('select', { 'aria-label': 'Deltas against' });
    for (const [v, t] of [['none', 'no deltas'], ['parent', 'Δ vs parent'], ['reference', 'Δ vs reference']] as const) mode.append(el('option', { value: v }, t));
    const setRef = el('button', { class: 'secondary', title: 'Use the selected model as the reference' }, 'Selected as reference');
    const csv = el('button', { class: 'secondary' }, 'Export CSV');
    const info = el('span', { class: 'muted' });
    const sync = () => {
      mode.value = this.app.state.delta;
      const ref = this.app.state.reference ? this.app.lin.byId.get(this.app.state.reference)?.name : undefined;
      info.textContent = this.app.state.delta === 'reference' ? (ref ? `reference: ${ref}` : 'select a model, then "Selected as reference"') : '';
    };
    this.app.on((c) => {
      if (c === 'data' || c === 'table') sync();
    });
    mode.addEventListener('change', () => {
      this.app.state.delta = mode.value as 'none' | 'parent' | 'reference';
      this.app.emit('table');
    });
    setRef.addEventListener('click', () => {
      const first = [...this.app.selection][0];
      if (first === undefined) return;
      this.app.state.reference = first;
      this.app.state.delta = 'reference';
      this.app.emit('table');
    });
    csv.addEventListener('click', () => {
      const ids = this.app.selection.size ? this.rows.filter((id) => this.app.selection.has(id)) : this.rows;
      this.exportCsv('models.csv', toCsv(this.app.lin, ids, this.cols, this.deltaMode()));
    });
    sync();
    return el('div', { class: 'mm-subbar' }, mode, setRef, csv, info);
  }

  private focusId: string | null = null;
  private refocus = false;

  /** Up/Down move between rows, Space/Enter select (Shift or Ctrl toggles). */
  private rowKey(e: KeyboardEvent, id: string): void {
    const i = this.rows.indexOf(id);
    let next: string | undefined;
    if (e.key === 'ArrowDown') next = this.rows[i + 1];
    else if (e.key === 'ArrowUp') next = this.rows[i - 1];
    else if (e.key === ' ' || e.key === 'Enter') {
      e.preventDefault();
      this.refocus = true;
      this.app.select([id], e.shiftKey || e.ctrlKey || e.metaKey ? 'toggle' : 'replace');
      return;
    } else return;
    e.preventDefault();
    if (next === undefined) return;
    this.focusId = next;
    this.refocus = true;
    const j = this.rows.indexOf(next);
    // Keep the row inside the visible window, then re-render and focus it.
    const top = (j + 1) * ROW;
    if (top < this.scroller.scrollTop + ROW) this.scroller.scrollTop = top - ROW;
    else if (top + ROW > this.scroller.scrollTop + this.scroller.clientHeight) this.scroller.scrollTop = top + ROW - this.scroller.clientHeight;
    this.render();
  }

  private rebuild(): void {
    const { lin, state } = this.app;
    this.cols = tableColumns(lin);
    const sortCol = this.cols.find((c) => c.key === state.sortKey);
    this.rows = sortRows(lin, lin.order, sortCol, state.sortDesc);
    this.spacer.style.height = `${(this.rows.length + 1) * ROW}px`;
  }

  /** Redraws on the next frame (once, however many changes come before it). */
  readonly request = onNextFrame(() => this.render());

  private render(): void {
    if (!this.root.isConnected) return;
    const { lin, state, selection } = this.app;
    const mode = this.deltaMode();
    const head = el('tr', {});
    for (const c of this.cols) {
      const sorted = state.sortKey === c.key;
      const th = el('th', { class: c.kind === 'metric' || c.kind === 'param' ? 'num' : '', tabindex: '0', 'aria-sort': sorted ? (state.sortDesc ? 'descending' : 'ascending') : 'none', title: 'Sort' }, c.label + (sorted ? (state.sortDesc ? ' ▼' : ' ▲') : ''));
      const sort = () => {
        if (state.sortKey === c.key) state.sortDesc = !state.sortDesc;
        else {
          state.sortKey = c.key;
          // Metrics open with their best first.
          state.sortDesc = c.kind === 'metric' ? (lin.metricDef(c.metric)?.higherIsBetter ?? false) : false;
        }
        this.app.emit('table');
      };
      th.addEventListener('click', sort);
      th.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          sort();
        }
      });
      head.append(th);
    }
    const top = this.scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW) - 5);
    const count = Math.ceil(this.scroller.clientHeight / ROW) + 10;
    const body = el('tbody');
    for (const id of this.rows.slice(first, first + count)) {
      const m = lin.byId.get(id)!;
      const base = deltaBase(lin, id, mode);
      const tr = el('tr', { 'data-model': id, class: [selection.has(id) ? 'focus' : '', this.app.pass.has(id) ? '' : 'faded', this.app.hover === id ? 'hover' : ''].join(' ') });
      for (const c of this.cols) {
        const v = cellValue(lin, id, c);
        if (c.kind === 'metric') {
          const x = m.metrics.find((y) => y.key === c.metric);
          const cell = measuredCell(x, formatMetric);
          const td = el('td', { class: x?.noisy ? 'num noisy' : 'num', ...(cell.title ? { title: cell.title } : {}) }, cell.text);
          const bv = base !== undefined ? lin.metric(base, c.metric) : undefined;
          if (x && bv !== undefined) {
            const ch = change(x.value, bv, x.higherIsBetter);
            // with its unit: a percentage's change in points, a size's in KiB/MiB (shared/format)
            td.append(el('span', { class: `delta ${ch.better === null ? 'same' : ch.better ? 'better' : 'worse'}` }, ` ${formatDelta(ch.delta, x.unit)}`));
          }
          tr.append(td);
        } else if (c.kind === 'status') tr.append(el('td', { class: `status-${m.status}`, title: m.statusReason ?? '' }, m.status));
        else tr.append(el('td', { class: c.kind === 'param' && typeof v === 'number' ? 'num' : '' }, v === undefined ? '' : String(v)));
      }
      tr.tabIndex = 0;
      tr.addEventListener('click', (e) => this.app.select([id], e.shiftKey || e.ctrlKey || e.metaKey ? 'toggle' : 'replace'));
      tr.addEventListener('mouseenter', () => this.app.setHover(id));
      tr.addEventListener('focus', () => {
        this.focusId = id;
        this.app.setHover(id);
      });
      tr.addEventListener('keydown', (e) => this.rowKey(e, id));
      body.append(tr);
    }
    const thead = el('thead', {}, head);
    // Keyboard focus survives the re-render (rows are rebuilt on every change).
    const hadFocus = this.table.contains(document.activeElement);
    this.table.replaceChildren(thead, body);
    if (this.focusId !== null && (this.refocus || hadFocus)) {
      this.refocus = false;
      body.querySelector<HTMLElement>(`tr[data-model="${CSS.escape(this.focusId)}"]`)?.focus({ preventScroll: true });
    }
    // The slice sits where its rows would be in the full table.
    this.table.style.transform = `translateY(${first * ROW}px)`;
    thead.style.transform = `translateY(${top - first * ROW}px)`;
  }
}
