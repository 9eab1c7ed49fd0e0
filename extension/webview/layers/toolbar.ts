/** The Layers toolbar: the measure, the activation mode, and the module filter. */
import { el } from '../shared/dom';
import { MEASURES, measure, type Mode } from './measures';
import type { LayersPanel } from './panel';
import { parseFilter } from './tree';

export function renderToolbar(p: LayersPanel, toolbar: HTMLElement): void {
  const ui = p.state.ui;
  const sel = el('select', { 'aria-label': 'Measure' });
  for (const m of MEASURES) {
    const o = el('option', { value: m.key }, m.label);
    if (m.key === ui.measure.key) o.selected = true;
    sel.append(o);
  }
  sel.addEventListener('change', () => {
    ui.measure = measure(sel.value);
    p.save();
    p.show.all();
  });
  const mode = el('select', { 'aria-label': 'Activation mode' }, el('option', { value: 'propagated' }, 'propagated'), el('option', { value: 'isolated' }, 'isolated'));
  mode.value = ui.mode;
  // the mode applies to activation measures only
  mode.disabled = ui.measure.source !== 'activations';
  mode.addEventListener('change', () => {
    ui.mode = mode.value as Mode;
    p.save();
    p.show.all();
  });
  const filter = el('input', { type: 'search', placeholder: 'Filter: name or /regex/', 'aria-label': 'Filter modules', value: ui.filter });
  const ferr = el('span', { class: 'muted', role: 'alert' });
  filter.addEventListener('input', () => {
    ui.filter = filter.value;
    ferr.textContent = parseFilter(ui.filter).error ?? '';
    p.save();
    p.show.tree();
  });
  toolbar.replaceChildren(el('label', {}, 'Measure ', sel), el('label', {}, 'Activations ', mode), filter, ferr);
}
