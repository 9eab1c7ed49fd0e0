/**
 * The map legend: the colour ramp of the fill metric (its better end marked) and three node
 * sizes of the size metric. An SVG, so the same element goes into the SVG export.
 */
import type { App } from './app';
import { extent, ramp, short, themeColors } from './scales';
import { svg } from '../shared/charts';

let gradientSeq = 0;

export function legendSvg(app: App): SVGSVGElement {
  const theme = themeColors();
  const { lin, state } = app;
  const W = 440;
  const H = 44;
  const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'mm-legend', role: 'img' });
  const font = { 'font-size': 10, 'font-family': theme.font, fill: theme.fg };
  const cm = state.colorMetric ? lin.metricDef(state.colorMetric) : undefined;
  const ce = state.colorMetric ? extent(lin, state.colorMetric) : undefined;
  const labels: string[] = [];
  if (cm && ce) {
    const id = `mm-ramp-${++gradientSeq}`;
    const grad = svg('linearGradient', { id, x1: 0, x2: 1, y1: 0, y2: 0 });
    for (let i = 0; i <= 10; i++) {
      // Left to right: low value to high value; the ramp's bright end is the better end.
      const t = i / 10;
      grad.append(svg('stop', { offset: t, 'stop-color': ramp(cm.higherIsBetter ? t : 1 - t) }));
    }
    const defs = svg('defs');
    defs.append(grad);
    root.append(defs);
    root.append(svg('text', { x: 4, y: 11, ...font }, `fill: ${lin.label(cm.key, { unit: true })}, ${cm.higherIsBetter ? 'higher' : 'lower'} is better`));
    root.append(svg('rect', { x: 4, y: 16, width: 130, height: 10, fill: `url(#${id})`, stroke: theme.border }));
    root.append(svg('text', { x: 4, y: 38, ...font }, short(ce.min)));
    root.append(svg('text', { x: 134, y: 38, 'text-anchor': 'end', ...font }, short(ce.max)));
    labels.push(`fill ${lin.label(cm.key)} from ${short(ce.min)} to ${short(ce.max)}`);
  }
  const sm = state.sizeMetric ? lin.metricDef(state.sizeMetric) : undefined;
  const se = state.sizeMetric ? extent(lin, state.sizeMetric) : undefined;
  if (sm && se) {
    root.append(svg('text', { x: 160, y: 11, ...font }, `size: ${lin.label(sm.key, { unit: true })}`));
    const vals = [se.min, (se.min + se.max) / 2, se.max];
    let x = 166;
    for (const v of vals) {
      const r = app.size(v);
      root.append(svg('circle', { cx: x + r, cy: 24, r, fill: 'none', stroke: theme.fg }));
      root.append(svg('text', { x: x + r, y: 42, 'text-anchor': 'middle', ...font }, short(v)));
      x += 2 * r + 34;
    }
    labels.push(`size ${lin.label(sm.key)} from ${short(se.min)} to ${short(se.max)}`);
  }
  if (cm) {
    // Edges: the fill metric's change against the parent.
    root.append(svg('text', { x: 340, y: 11, ...font }, 'edge vs parent'));
    const swatch = (y: number, colour: string, text: string) => {
      root.append(svg('rect', { x: 340, y: y - 7, width: 14, height: 6, fill: colour }));
      root.append(svg('text', { x: 358, y, ...font }, text));
    };
    swatch(25, theme.better, 'better');
    swatch(38, theme.worse, 'worse');
    labels.push(`edges green when ${lin.label(cm.key)} got better than the parent, red when worse`);
  }
  root.setAttribute('aria-label', `Legend: ${labels.join('; ') || 'no metrics'}`);
  return root;
}
