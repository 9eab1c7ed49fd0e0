/**
 * The Behaviors panel: per-model summary, groups table, transitions, an instance browser
 * (filter, sort, brush, paged task renderings with every model's prediction) and, for causal
 * LMs, generations side by side. "Why?" on an instance opens Layers ranked by it.
 */
import type { ModelInfo } from '../../shared/protocol';
import type { DrillFocus } from '../../shared/messages';
import { SERIES, binValues, cellBar, finiteRange, histogram } from '../shared/charts';
import { el, icon, mount, notice } from '../shared/dom';
import { formatPointDelta } from '../shared/format';
import { resultsOf, stillToCompare, streamCompare, type CompareRpc, type CompareRun } from '../shared/stream';
import { openComparePanel, progressLine, type CompareProgress } from '../shared/comparePanel';
import { behaviorOf, buildInstanceTable, col, headline, interval, metricNames, tokenMeasure, type BehaviorModel, type InstanceTable } from './data';
import { groupRows, sortGroups, type GroupColumn, type GroupRow } from './groups';
import { filterInstances, higherIsWorse, maxColumn, pageOf, sortInstances } from './instances';
import { agreementText, generationPair, instancesOf, predictionText, tokenChanges, tokenView, visibleText, type RenderedInstance } from './render';
import { topTransitions } from './transitions';
import { cellLabel, changeText, confusionMatrix, mcnemarOf, mcnemarText } from './confusion';
import { errorText } from '../../shared/errors';

const CSS = `
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 220px), 1fr)); gap: 8px; }
/* a language model's window and its predictions are lines of text: wider cards */
.cards.lm { grid-template-columns: repeat(auto-fill, minmax(min(100%, 380px), 1fr)); }
/* min-width 0: a grid item's long unbreakable text must wrap, not widen the page sideways */
.card, .cards > div { border: 1px solid var(--vscode-editorWidget-border, rgba(128,128,128,0.3)); padding: 6px; min-width: 0; overflow-wrap: anywhere; }
.card .preds { width: 100%; table-layout: fixed; border-collapse: collapse; }
.card .preds td { vertical-align: top; }
.card .preds td.who { width: 30%; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.card .preds td.kl { width: 5.5em; white-space: nowrap; text-align: right; }
.card .preds .agree { display: block; font-size: 0.9em; }
.ws { opacity: 0.45; }
.tok.changed { outline: 1px solid var(--vscode-errorForeground); outline-offset: -1px; }
.card img { image-rendering: pixelated; width: 84px; height: 84px; }
.card .preds td { padding: 1px 4px; }
.card .changed { color: var(--vscode-errorForeground); font-weight: 600; }
.tokens { line-height: 1.6; font-family: var(--vscode-editor-font-family); white-space: pre-wrap; overflow-wrap: anywhere; }
.gen { font-family: var(--vscode-editor-font-family); white-space: pre-wrap; overflow-wrap: anywhere; }
mark { background: var(--vscode-editor-findMatchHighlightBackground); color: inherit; }
th[aria-sort] { cursor: pointer; }
.transitions { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 8px; }
/* the confusion change: one matrix per model, side by side while they fit, scrolling inside */
.confusions { display: flex; flex-wrap: wrap; gap: 16px; }
.confusions > div { max-width: 100%; overflow-x: auto; }
table.confusion { width: auto; border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.confusion th, table.confusion td { width: 2.6em; min-width: 2.6em; height: 1.9em; padding: 0 2px; text-align: center; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
table.confusion th { font-weight: normal; font-size: 0.9em; }
table.confusion th.rowhead { width: auto; max-width: 9em; text-align: right; padding-right: 6px; }
table.confusion td { border: 1px solid var(--vscode-editorWidget-border, rgba(128,128,128,0.25)); }
/* an inset shadow, not an outline: collapsed borders paint over a cell's outline */
table.confusion td.diag { box-shadow: inset 0 0 0 1px var(--vscode-foreground, #888); }
table.confusion td.moved { cursor: pointer; }
table.confusion td.moved:hover, table.confusion td.moved:focus { outline: 2px solid var(--vscode-focusBorder); outline-offset: -2px; }
table.confusion td.worse { background: color-mix(in srgb, var(--vscode-charts-red, #e51400) calc(var(--s) * 70%), transparent); }
table.confusion td.better { background: color-mix(in srgb, var(--vscode-charts-blue, #1a85ff) calc(var(--s) * 70%), transparent); }
.axis-note { font-size: 0.9em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle; margin: 0 3px 0 8px; }
.swatch.worse { background: color-mix(in srgb, var(--vscode-charts-red, #e51400) 70%, transparent); }
.swatch.better { background: color-mix(in srgb, var(--vscode-charts-blue, #1a85ff) 70%, transparent); }
`;

const PAGE = 24;

export function startBehaviors(): void {
  const panel = openComparePanel({ title: 'Behaviors', codicon: 'symbol-event', maxOthers: 8, css: CSS });
  if (!panel) return;
  const { rpc, store, ids, base, others, header, intro } = panel;
  const v = (store.state.view ?? {}) as Record<string, unknown>;
  const ui = {
    sortGroup: (v.sortGroup as GroupColumn | undefined) ?? ({ model: others[0]!, field: 'delta' } as GroupColumn),
    sortGroupDesc: v.sortGroupDesc === true,
    grouping: typeof v.grouping === 'string' ? v.grouping : '',
    sortCol: typeof v.sortCol === 'string' ? v.sortCol : '',
    desc: v.desc !== false,
    onlyDisagree: v.onlyDisagree === true,
    page: typeof v.page === 'number' ? v.page : 0,
    filter: (v.filter as { ids: string[]; label: string } | null | undefined) ?? null,
    brush: (v.brush as { column: string; lo: number; hi: number; bins: [number, number] } | null | undefined) ?? null,
    drill: (v.drill ?? null) as DrillFocus | null,
  };
  if (ui.drill?.instances?.length) ui.filter = { ids: ui.drill.instances, label: ui.drill.reason ?? `instances from ${ui.drill.layer ?? 'a layer'}` };
  const save = () => store.update({ view: { ...ui } });

  let models: ModelInfo[] = [];
  const name = (id: string) => models.find((m) => m.id === id)?.name ?? id;
  const results: BehaviorModel[] = [];
  let table: InstanceTable = buildInstanceTable([]);
  const rendered = new Map<string, RenderedInstance>();
  let classNames: string[] | null = null;
  let run: CompareRun | null = null;
  let progress: CompareProgress = { received: 0, expected: others.length, running: true, label: 'Comparing behaviour…' };

  const progressEl = el('div', { class: 'progress', role: 'status', 'aria-live': 'polite' });
  const errorEl = el('div', {});
  const summaryEl = el('div', { id: 'summary' });
  const groupsEl = el('div', { id: 'groups' });
  const transEl = el('div', { id: 'transitions' });
  const confusionEl = el('div', { id: 'confusion' });
  const browserEl = el('div', { id: 'instances' });
  const gensEl = el('div', { id: 'generations' });
  const ordered = () => others.map((o) => results.find((r) => r.id === o)).filter((r): r is BehaviorModel => !!r);

  const showError = (e: unknown) => {
    errorEl.append(notice('error', errorText(e)));
  };

  const showProgress = () => {
    progressEl.replaceChildren(...progressLine(progress, () => {
      run?.cancel();
      progress = { ...progress, running: false, label: 'Cancelled:', cancelled: true };
      showProgress();
    }, () => void compare()));
  };

  // -- summary ------------------------------------------------------------------------------
  // 'pt': a change of a share (accuracy 0.98 -> 0.86) is 12 percentage points, not "-12%"
  const fmtI = (x: ReturnType<typeof interval>, pct: boolean | 'pt') => {
    if (!x || x.value === null) return '—';
    const f = (n: number) => (pct === 'pt' ? formatPointDelta(n) : pct ? `${(n * 100).toFixed(1)}%` : n.toPrecision(3));
    return x.ci ? `${f(x.value)} [${f(x.ci[0])}, ${f(x.ci[1])}]` : f(x.value);
  };
  const showSummary = () => {
    const rs = ordered();
    if (!rs.length) {
      summaryEl.replaceChildren();
      return;
    }
    const h = headline(rs[0]!.taskKind);
    const max = Math.max(1e-9, ...rs.map((r) => Math.abs(interval(r.summary[h.key])?.value ?? 0)));
    // McNemar's test needs each model's correctness: classifiers with targets only
    const paired = rs.some((r) => mcnemarOf(r.summary.mcnemar));
    const body = el('tbody', {}, ...rs.map((r, i) => {
      const d = interval(r.summary[h.key]);
      const kl = typeof r.summary.mean_kl === 'number' ? r.summary.mean_kl.toPrecision(3) : '—';
      const inf = typeof r.summary.infinite_kl === 'number' && r.summary.infinite_kl > 0 ? ` (+${r.summary.infinite_kl} infinite)` : '';
      return el('tr', {},
        el('td', {}, el('span', { class: `badge ${SERIES[i % SERIES.length]}` }, ' '), ` ${name(r.id)}`),
        el('td', { class: 'num' }, String(r.summary.instances ?? r.ids.length)),
        el('td', { class: 'num' }, fmtI(interval(r.summary[h.agreement]), h.agreement !== 'cosine')),
        ...(paired ? [mcnemarCell(r)] : []),
        el('td', { class: 'num' }, cellBar(d?.value ?? null, max, true, d?.ci), ` ${fmtI(d, h.key === 'accuracy_delta' ? 'pt' : false)}`),
        el('td', { class: 'num' }, kl + inf));
    }));
    summaryEl.replaceChildren(el('h2', {}, 'Summary'), el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'model'), el('th', { class: 'num' }, 'instances'), el('th', { class: 'num' }, 'agreement [95% CI]'), ...(paired ? [el('th', { class: 'num', title: "McNemar's paired test: do base and model differ in accuracy on the same instances? Only the instances one gets right and the other wrong count." }, "McNemar's p (accuracy)")] : []), el('th', { class: 'num' }, `${h.label} [95% CI]`), el('th', { class: 'num' }, 'mean KL(base‖model)'))), body));
  };

  /** McNemar's p beside the agreement interval, the test it used (exact or chi-square) under it. */
  const mcnemarCell = (r: BehaviorModel): HTMLElement => {
    const m = mcnemarOf(r.summary.mcnemar);
    if (!m) return el('td', { class: 'num muted' }, '—');
    const t = mcnemarText(m);
    return el('td', { class: 'num mcnemar', 'data-p': String(m.p), title: t.detail }, t.p, el('div', { class: 'muted axis-note' }, t.detail));
  };

  // -- confusion change ---------------------------------------------------------------------
  const showConfusion = () => {
    const rs = ordered().filter((r) => r.confusion);
    if (!rs.length) {
      confusionEl.replaceChildren();
      return;
    }
    const boxes = rs.map((r) => {
      const c = r.confusion!;
      const { rows, maxChange } = confusionMatrix(c);
      const head = el('tr', {}, el('th', { class: 'rowhead muted' }, 'true ↓ / predicted →'), ...c.names.map((n) => el('th', { title: n, scope: 'col' }, n)));
      const body = rows.map((row, i) => el('tr', {}, el('th', { class: 'rowhead', title: c.names[i]!, scope: 'row' }, c.names[i]!), ...row.map((cell) => {
        const movedHere = cell.entered.length + cell.left.length > 0;
        const td = el('td', {
          class: [cell.effect, cell.row === cell.col ? 'diag' : '', movedHere ? 'moved' : ''].filter(Boolean).join(' '),
          title: cellLabel(c, cell),
          'data-true': c.names[cell.row]!,
          'data-predicted': c.names[cell.col]!,
          'data-change': String(cell.change),
          ...(movedHere ? { tabindex: '0', role: 'button' } : {}),
        }, changeText(cell.change));
        td.style.setProperty('--s', cell.strength.toFixed(3));
        if (movedHere) {
          const pick = () => setFilter({ ids: [...cell.entered, ...cell.left], label: `${name(r.id)}: ${cellLabel(c, cell)}` });
          td.addEventListener('click', pick);
          td.addEventListener('keydown', (k) => (k.key === 'Enter' || k.key === ' ') && (k.preventDefault(), pick()));
        }
        return td;
      })));
      const more = c.classesTotal > c.classes.length ? el('p', { class: 'muted axis-note' }, `the ${c.classes.length} of ${c.classesTotal} classes with the most instances moving`) : '';
      return el('div', { class: 'confusion-box', 'data-model': r.id }, el('h3', {}, name(r.id)), el('table', { class: 'confusion', 'aria-label': `Confusion change of ${name(r.id)}` }, el('thead', {}, head), el('tbody', {}, ...body)), more,
        maxChange ? '' : el('p', { class: 'muted' }, 'No count changed.'));
    });
    confusionEl.replaceChildren(
      el('h2', {}, 'Confusion change (base → model)'),
      el('p', { class: 'muted axis-note' }, 'Each cell: model count − base count of (true class, predicted class); the outlined diagonal is the correct predictions.',
        el('span', { class: 'swatch worse' }), 'worse (fewer correct, more confused)', el('span', { class: 'swatch better' }), 'better. Click a cell for the instances that moved in or out of it.'),
      el('div', { class: 'confusions' }, ...boxes));
  };

  // -- groups -------------------------------------------------------------------------------
  const showGroups = () => {
    const rs = ordered();
    const all = groupRows(rs);
    if (!all.length) {
      groupsEl.replaceChildren();
      return;
    }
    const groupings = [...new Set(all.map((r) => r.grouping))];
    if (!groupings.includes(ui.grouping)) ui.grouping = groupings[0]!;
    const rows = sortGroups(all.filter((r) => r.grouping === ui.grouping), ui.sortGroup, ui.sortGroupDesc);
    const h = headline(rs[0]!.taskKind);
    const max = Math.max(1e-9, ...rows.flatMap((r) => Object.values(r.cells).map((c) => Math.abs(c.delta?.value ?? 0))));
    const same = (a: GroupColumn, b: GroupColumn) => JSON.stringify(a) === JSON.stringify(b);
    const th = (label: string, c: GroupColumn, num = true) => {
      const sorted = same(ui.sortGroup, c);
      const e = el('th', { class: num ? 'num' : '', tabindex: '0', 'aria-sort': sorted ? (ui.sortGroupDesc ? 'descending' : 'ascending') : 'none' }, label + (sorted ? (ui.sortGroupDesc ? ' ▾' : ' ▴') : ''));
      const go = () => {
        ui.sortGroupDesc = sorted ? !ui.sortGroupDesc : false;
        ui.sortGroup = c;
        save();
        showGroups();
      };
      e.addEventListener('click', go);
      e.addEventListener('keydown', (k) => (k.key === 'Enter' || k.key === ' ') && (k.preventDefault(), go()));
      return e;
    };
    const head = el('tr', {}, th('group', 'group', false), th('n', 'count'), ...rs.flatMap((r) => [th(`${name(r.id)} ${h.label}`, { model: r.id, field: 'delta' }), th('agree', { model: r.id, field: 'agreement' }), ...(h.key === 'accuracy_delta' ? [th('KL', { model: r.id, field: 'kl' })] : [])]));
    const body = el('tbody', {}, ...rows.map((g: GroupRow) => {
      const tr = el('tr', { class: g.uncertain ? 'uncertain' : '', tabindex: '0', title: g.uncertain ? `uncertain: ${g.count} instances (or a wide interval)` : '' },
        el('td', {}, g.group, g.uncertain ? el('span', { class: 'muted' }, ' (uncertain)') : ''),
        el('td', { class: 'num' }, String(g.count)),
        ...rs.flatMap((r) => {
          const c = g.cells[r.id];
          return [
            el('td', { class: 'num' }, cellBar(c?.delta?.value ?? null, max, true, c?.delta?.ci), ` ${fmtI(c?.delta ?? null, h.key === 'accuracy_delta' ? 'pt' : false)}`),
            el('td', { class: 'num' }, fmtI(c?.agreement ?? null, true)),
            ...(h.key === 'accuracy_delta' ? [el('td', { class: 'num' }, c?.kl === null || c?.kl === undefined ? '—' : c.kl.toPrecision(3))] : []),
          ];
        }));
      const pick = () => {
        if (!g.ids) {
          showError(new Error(`The comparison result does not list which instances are in group '${g.group}' (the server sends counts only).`));
          return;
        }
        setFilter({ ids: g.ids, label: `${g.grouping} = ${g.group}` });
      };
      tr.addEventListener('click', pick);
      tr.addEventListener('keydown', (k) => k.key === 'Enter' && pick());
      return tr;
    }));
    const sel = el('select', { 'aria-label': 'Grouping' }, ...groupings.map((x) => el('option', { value: x }, x)));
    sel.value = ui.grouping;
    sel.addEventListener('change', () => {
      ui.grouping = sel.value;
      save();
      showGroups();
    });
    groupsEl.replaceChildren(el('h2', {}, 'Groups'), el('div', { class: 'toolbar' }, el('label', {}, 'Grouping ', sel), el('span', { class: 'muted' }, 'italic rows: fewer than 30 instances or a wide interval')), el('table', {}, el('thead', {}, head), body));
  };

  // -- transitions --------------------------------------------------------------------------
  const showTransitions = () => {
    const rs = ordered().filter((r) => r.transitions.length);
    if (!rs.length) {
      transEl.replaceChildren();
      return;
    }
    const boxes = rs.map((r) => {
      const items = topTransitions(r, 8);
      const list = el('ol', {}, ...items.map((t) => {
        const b = el('button', { class: 'link' }, `${t.label}`);
        b.addEventListener('click', () => setFilter({ ids: t.ids, label: `${name(r.id)}: ${t.label}` }));
        return el('li', {}, b, el('span', { class: 'muted' }, ` ${t.count} (${(t.share * 100).toFixed(1)}%)`));
      }));
      return el('div', {}, el('h3', {}, name(r.id)), items.length ? list : el('p', { class: 'muted' }, 'No prediction changed.'));
    });
    transEl.replaceChildren(el('h2', {}, 'Most frequent changes (base → model)'), el('div', { class: 'transitions' }, ...boxes));
  };

  // -- instance browser ---------------------------------------------------------------------
  const setFilter = (f: { ids: string[]; label: string } | null) => {
    ui.filter = f;
    ui.page = 0;
    save();
    showBrowser();
    browserEl.scrollIntoView({ block: 'start' });
  };
  const column = (key: string): string => {
    if (key.startsWith('max\u0000') && !table.columns.has(key)) {
      const metric = key.slice(4);
      table.columns.set(key, maxColumn(table, table.models.map((m) => col(m, metric)), higherIsWorse(metric) ? 'max' : 'min'));
    }
    return key;
  };
  const label = (key: string) => (key.startsWith('max\u0000') ? `${key.slice(4)} (worst over models)` : `${key.split('\u0000')[1]} · ${name(key.split('\u0000')[0]!)}`);

  const showBrowser = () => {
    const rs = ordered();
    if (!rs.length) {
      browserEl.replaceChildren();
      return;
    }
    const metrics = metricNames(rs);
    const options = [...metrics.map((m) => `max\u0000${m}`), ...rs.flatMap((r) => Object.keys(r.perInstance).map((m) => col(r.id, m)))];
    if (!options.includes(ui.sortCol)) {
      ui.sortCol = options.find((o) => /kl|logp_change|rel_l2/.test(o)) ?? options[0] ?? '';
      ui.desc = higherIsWorse(ui.sortCol);
    }
    const sortKey = ui.sortCol ? column(ui.sortCol) : null;
    const t0 = performance.now();
    const kept = filterInstances(table, {
      ids: ui.filter ? new Set(ui.filter.ids) : null,
      disagree: ui.onlyDisagree ? rs.filter((r) => r.perInstance.agree).map((r) => col(r.id, 'agree')) : [],
    });
    const brushed = ui.brush && ui.brush.column === sortKey ? filterInstances(table, { ids: new Set(Array.from(kept, (i) => table.ids[i]!)), ranges: [ui.brush] }) : kept;
    const sorted = sortInstances(table, brushed, sortKey, ui.desc);
    const ms = performance.now() - t0;
    const pg = pageOf(sorted, ui.page, PAGE);
    ui.page = pg.page;

    const sel = el('select', { 'aria-label': 'Sort instances by' }, ...options.map((o) => el('option', { value: o }, label(o))));
    sel.value = ui.sortCol;
    sel.addEventListener('change', () => {
      ui.sortCol = sel.value;
      ui.desc = higherIsWorse(sel.value.split('\u0000')[1] ?? ''); // worst first
      ui.brush = null;
      ui.page = 0;
      save();
      showBrowser();
    });
    const dir = el('button', { class: 'secondary', 'aria-label': 'Sort direction' }, ui.desc ? 'largest first' : 'smallest first');
    dir.addEventListener('click', () => {
      ui.desc = !ui.desc;
      save();
      showBrowser();
    });
    const dis = el('input', { type: 'checkbox', id: 'only-dis' });
    dis.checked = ui.onlyDisagree;
    dis.addEventListener('change', () => {
      ui.onlyDisagree = dis.checked;
      ui.page = 0;
      save();
      showBrowser();
    });
    const bar = el('div', { class: 'toolbar' }, el('label', {}, 'Sort by ', sel), dir, el('label', {}, dis, 'only where a model disagrees with the base'));
    if (ui.filter) {
      const clear = el('button', { class: 'link' }, 'show all');
      clear.addEventListener('click', () => {
        ui.drill = null;
        setFilter(null);
      });
      bar.append(el('span', { class: 'badge' }, `${ui.filter.label} (${ui.filter.ids.length})`), clear);
    }
    // histogram of the sort metric over the filtered set, brushable
    let hist: Node = el('span', {});
    const values = sortKey ? table.columns.get(sortKey) : undefined;
    if (values) {
      const picked = Array.from(kept);
      const range = finiteRange(picked.map((i) => values[i]!));
      if (range) {
        const BINS = 40;
        const [lo, hi] = range[0] === range[1] ? [range[0] - 0.5, range[1] + 0.5] : range;
        const counts = binValues(values, lo, hi, BINS, picked);
        hist = el('div', {}, histogram({
          title: `${label(ui.sortCol)}: drag to filter`,
          series: [{ label: label(ui.sortCol), counts, cls: 's0' }],
          edges: [lo, hi],
          width: 480,
          log: true,
          brush: ui.brush && ui.brush.column === sortKey ? ui.brush.bins : null,
          onBrush: (b) => {
            const w = (hi - lo) / BINS;
            ui.brush = b ? { column: sortKey!, lo: lo + b[0] * w, hi: lo + b[1] * w, bins: b } : null;
            ui.page = 0;
            save();
            showBrowser();
          },
        }), el('div', { class: 'muted' }, ui.brush && ui.brush.column === sortKey ? `brushed ${ui.brush.lo.toPrecision(3)} … ${ui.brush.hi.toPrecision(3)} (click the chart to clear)` : 'drag on the histogram to keep a range'), rangeInputs(sortKey!, lo, hi, BINS));
      }
    }
    const prev = el('button', { class: 'secondary' }, '‹ previous');
    const next = el('button', { class: 'secondary' }, 'next ›');
    prev.disabled = pg.page === 0;
    next.disabled = pg.page >= pg.pages - 1;
    prev.addEventListener('click', () => { ui.page--; save(); showBrowser(); });
    next.addEventListener('click', () => { ui.page++; save(); showBrowser(); });
    const pageIds = Array.from(pg.rows, (i) => table.ids[i]!);
    const cards = el('div', { class: pageIds.some((x) => rendered.get(x)?.tokens) ? 'cards lm' : 'cards', role: 'list' }, ...pageIds.map((id) => card(id, rs)));
    browserEl.replaceChildren(
      el('h2', {}, 'Instances'),
      bar,
      hist,
      el('div', { class: 'toolbar' }, prev, el('span', {}, `${sorted.length} instances · page ${pg.page + 1} of ${pg.pages}`), next, el('span', { class: 'muted' }, `filtered and sorted in ${ms.toFixed(1)} ms`)),
      cards,
    );
    const missing = pageIds.filter((id) => !rendered.has(id));
    if (missing.length) {
      rpc.request('instances', { ids: missing, models: ids }).then((r) => {
        for (const res of resultsOf(r.pages)) {
          const got = instancesOf(res);
          classNames = got.classNames ?? classNames;
          for (const it of got.items) rendered.set(it.id, it);
        }
        for (const id of missing) if (!rendered.has(id)) rendered.set(id, { id, kind: 'missing', label: null, predictions: {}, target: null });
        showBrowser();
      }, (e: unknown) => {
        for (const id of missing) rendered.set(id, { id, kind: 'missing', label: errorText(e), predictions: {}, target: null });
        showBrowser();
      });
    }
  };

  /** The brush from the keyboard: a range typed in two fields. */
  const rangeInputs = (column: string, lo: number, hi: number, bins: number): HTMLElement => {
    const cur = ui.brush && ui.brush.column === column ? ui.brush : null;
    const a = el('input', { type: 'number', step: 'any', 'aria-label': 'Keep values from', value: cur ? String(cur.lo) : '' });
    const b = el('input', { type: 'number', step: 'any', 'aria-label': 'Keep values up to', value: cur ? String(cur.hi) : '' });
    const apply = () => {
      const x = a.value === '' ? NaN : Number(a.value);
      const y = b.value === '' ? NaN : Number(b.value);
      if (Number.isNaN(x) && Number.isNaN(y)) ui.brush = null;
      else {
        const l = Number.isNaN(x) ? lo : x;
        const h = Number.isNaN(y) ? hi : y;
        const w = (hi - lo) / bins || 1;
        const bin = (v: number) => Math.max(0, Math.min(bins, Math.round((v - lo) / w)));
        ui.brush = { column, lo: Math.min(l, h), hi: Math.max(l, h), bins: [bin(Math.min(l, h)), bin(Math.max(l, h))] };
      }
      ui.page = 0;
      save();
      showBrowser();
    };
    a.addEventListener('change', apply);
    b.addEventListener('change', apply);
    return el('div', { class: 'toolbar' }, el('label', {}, 'keep from ', a), el('label', {}, 'to ', b));
  };

  const card = (id: string, rs: BehaviorModel[]): HTMLElement => {
    const it = rendered.get(id);
    const row0 = table.index.get(id)!;
    const body: Node[] = [el('div', { class: 'toolbar' }, el('strong', {}, id), it?.label ? el('span', { class: 'muted' }, it.label) : '')];
    if (!it) body.push(el('p', { class: 'muted' }, 'loading…'));
    else {
      if (it.png) body.push(el('img', { src: it.png, alt: `instance ${id}` }));
      if (it.tokens) {
        // Per-token KL(base‖model) is the divergence itself; Δ log-prob of the target token is
        // the fallback for results computed without both models at hand.
        const measure = tokenMeasure(rs);
        const k = measure ? measure.model.ids.indexOf(id) : -1;
        const pt = measure?.values;
        body.push(tokenView(it.tokens, pt && k >= 0 ? pt.data.subarray(k * pt.tokens, (k + 1) * pt.tokens) : null, measure ? `${measure.label} (${name(measure.model.id)})` : 'divergence'));
      } else if (it.text !== undefined) body.push(el('div', { class: 'tokens' }, it.text));
      const bp = it.predictions[base];
      if (it.predictionTokens) {
        // A language model: each model's next-token predictions as text (decoded by the task on
        // the server), the tokens that differ from the base's outlined; KL in a column of its own
        const bt = it.predictionTokens[base] ?? null;
        const row = (who: string, toks: string[] | null, kl: string, changed?: boolean[], agree?: string) =>
          el('tr', { 'data-model': who }, el('td', { class: 'muted who', title: name(who) }, name(who)),
            el('td', {}, toks ? tokenView(toks, null, `next-token predictions of ${name(who)}`, changed) : el('span', { class: 'muted' }, '—'), agree ? el('span', { class: 'muted agree' }, agree) : ''),
            el('td', { class: 'num muted kl' }, kl));
        body.push(el('div', { class: 'muted' }, 'predicted next tokens'));
        body.push(el('table', { class: 'preds lm' }, el('tbody', {},
          row(base, bt, ''),
          ...rs.map((r) => {
            const toks = it.predictionTokens![r.id] ?? null;
            const kl = table.columns.get(col(r.id, 'kl'))?.[row0];
            return row(r.id, toks, kl !== undefined && Number.isFinite(kl) ? `KL ${kl.toPrecision(2)}` : '', toks ? tokenChanges(bt, toks) : undefined, toks ? agreementText(bt, toks) : undefined);
          }))));
      } else {
        const preds = el('table', { class: 'preds' }, el('tbody', {},
          ...(it.target !== null && it.target !== undefined ? [el('tr', {}, el('td', { class: 'muted' }, 'target'), el('td', {}, predictionText(it.target, classNames)))] : []),
          el('tr', {}, el('td', { class: 'muted' }, name(base)), el('td', {}, predictionText(bp, classNames))),
          ...rs.map((r) => {
            const p = it.predictions[r.id];
            const changed = JSON.stringify(p) !== JSON.stringify(bp);
            const kl = table.columns.get(col(r.id, 'kl'))?.[row0];
            return el('tr', {}, el('td', { class: 'muted' }, name(r.id)), el('td', { class: changed ? 'changed' : '' }, predictionText(p, classNames)), el('td', { class: 'num muted kl' }, kl !== undefined && Number.isFinite(kl) ? `KL ${kl.toPrecision(2)}` : ''));
          })));
        body.push(preds);
      }
    }
    const why = el('button', { class: 'link', title: `Open Layers ranked by the divergence of instance ${id} per layer` }, icon('layers'), ' Why?');
    why.addEventListener('click', () => {
      void rpc.request('openPanel', { view: 'layers', models: ids.slice(0, 5), focus: { instance: id } }).catch(showError);
    });
    body.push(why);
    return el('div', { class: 'card', role: 'listitem' }, ...body);
  };

  // -- generations --------------------------------------------------------------------------
  const showGenerations = () => {
    const rs = ordered().filter((r) => r.generations.length);
    if (!rs.length) {
      gensEl.replaceChildren();
      return;
    }
    const n = Math.max(...rs.map((r) => r.generations.length));
    const rows: Node[] = [];
    for (let k = 0; k < n; k++) {
      const g0 = rs.find((r) => r.generations[k])?.generations[k];
      rows.push(el('h3', {}, `Prompt: ${g0?.prompt ?? '—'}`));
      const baseText = g0?.base ?? '';
      const cells: Node[] = [el('div', {}, el('div', { class: 'muted' }, name(base)), el('div', { class: 'gen' }, ...visibleText(baseText)))];
      for (const r of rs) {
        const g = r.generations[k];
        const [, right] = generationPair(baseText, g?.other ?? '');
        cells.push(el('div', {}, el('div', { class: 'muted' }, `${name(r.id)}${g?.first_difference !== null && g?.first_difference !== undefined ? ` · first diverging token #${g.first_difference}` : ' · same tokens'}`), right));
      }
      const grid = el('div', { class: 'cards lm' }, ...cells);
      rows.push(grid);
    }
    gensEl.replaceChildren(el('h2', {}, 'Generations'), ...rows);
  };

  const showAll = () => {
    table = buildInstanceTable(ordered());
    showProgress();
    showSummary();
    showGroups();
    showConfusion();
    showTransitions();
    showGenerations();
    showBrowser();
  };

  rpc.on('lineageChanged', (d) => {
    models = d.models;
  });
  rpc.on('drill', (d) => {
    ui.drill = d;
    if (d.instances?.length) setFilter({ ids: d.instances, label: d.reason ?? `instances from ${d.layer ?? 'a layer'}` });
  });
  rpc.ready();
  void rpc
    .request('lineage', {})
    .then((r) => {
      models = r.models;
      mount(header(), ...intro(name), progressEl, errorEl, summaryEl, groupsEl, confusionEl, transEl, gensEl, browserEl);
      return compare();
    })
    .catch(stopped);

  function stopped(e: unknown): void {
    progress = { ...progress, running: false, label: 'Stopped:' };
    showProgress();
    showError(e);
  }

  /** Compares the models whose result is not in yet (all of them at first; after a cancel, Resume
   * asks only for the rest, keeping what is in). */
  function compare(): Promise<void> {
    const todo = stillToCompare(others, (id) => results.some((r) => r.id === id));
    const before = others.length - todo.length;
    progress = { received: before, expected: others.length, running: true, label: 'Comparing behaviour…' };
    showProgress();
    const current = streamCompare(rpc as unknown as CompareRpc, { kind: 'behavior', base, models: todo }, (res) => {
      try {
        results.push(behaviorOf(res));
        showAll();
      } catch (e) {
        showError(e);
      }
    }, (received) => {
      progress = { ...progress, received: before + received, expected: others.length };
      showProgress();
    });
    run = current;
    return current.done.then(() => {
      progress = { ...progress, running: false, cancelled: current.cancelled, label: current.cancelled ? 'Cancelled:' : 'Compared' };
      showProgress();
    }, stopped);
  }
}
