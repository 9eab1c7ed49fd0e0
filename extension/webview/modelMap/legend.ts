/**
 * The map legend: the colour ramp of the fill metric (its better end marked) and three node
 * sizes of the size metric. An SVG, so the same element goes into the SVG export.
 */
import type { App } from './app';
import { extent, ramp, short, themeColors } from './scales';
import { svg } from '../shared/charts';

let gradientSeq = 0;

/** Average glyph width of the legend's 10 px font, rounded up: titles are placed by it (an SVG
 * cannot measure text before it is in the document). */
export const CHAR_WIDTH = 6;
const GAP = 18;
const RAMP_WIDTH = 130;
const EDGE_KEY_WIDTH = 64;

/**
 * Where the legend's sections start, left to right, and the width they need: each section is as
 * wide as its title or its graphic, whichever is wider, so a long metric name pushes the next
 * section along instead of running into it.
 */
export function legendLayout(sections: readonly { title: string; graphic: number }[]): { x: number[]; width: number } {
  const x: number[] = [];
  let at = 4;
  for (const s of sections) {
    x.push(at);
    at += Math.max(s.title.length * CHAR_WIDTH, s.graphic) + GAP;
  }
  return { x, width: Math.max(at - GAP + 4, 0) };
}

export function legendSvg(app: App): SVGSVGElement {
  const theme = themeColors();
  const { lin, state } = app;
  const cm = state.colorMetric ? lin.metricDef(state.colorMetric) : undefined;
  const ce = state.colorMetric ? extent(lin, state.colorMetric) : undefined;
  const sm = state.sizeMetric ? lin.metricDef(state.sizeMetric) : undefined;
  const se = state.sizeMetric ? extent(lin, state.sizeMetric) : undefined;
  const fillTitle = cm && ce ? `fill: ${lin.label(cm.key, { unit: true })}, ${cm.higherIsBetter ? 'higher' : 'lower'} is better` : '';
  const sizeTitle = sm && se ? `size: ${lin.label(sm.key, { unit: true })}` : '';
  const sizes = sm && se ? [se.min, (se.min + se.max) / 2, se.max] : [];
  const circles = sizes.reduce((w, v) => w + 2 * app.size(v) + 34, 6);
  const sections = [
    ...(fillTitle ? [{ id: 'fill', title: fillTitle, graphic: RAMP_WIDTH }] : []),
    ...(sizeTitle ? [{ id: 'size', title: sizeTitle, graphic: circles }] : []),
    ...(cm ? [{ id: 'edge', title: 'edge vs parent', graphic: EDGE_KEY_WIDTH }] : []),
  ];
  const { x: starts, width: W } = legendLayout(sections);
  const at = (id: string): number => starts[sections.findIndex((sec) => sec.id === id)] ?? 4;
  const H = 44;
  const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'mm-legend', role: 'img' });
  const font = { 'font-size': 10, 'font-family': theme.font, fill: theme.fg };
  const labels: string[] = [];
  if (cm && ce) {
    const x0 = at('fill');
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
    root.append(svg('text', { x: x0, y: 11, ...font }, fillTitle));
    root.append(svg('rect', { x: x0, y: 16, width: RAMP_WIDTH, height: 10, fill: `url(#${id})`, stroke: theme.border }));
    root.append(svg('text', { x: x0, y: 38, ...font }, short(ce.min)));
    root.append(svg('text', { x: x0 + RAMP_WIDTH, y: 38, 'text-anchor': 'end', ...font }, short(ce.max)));
    labels.push(`fill ${lin.label(cm.key)} from ${short(ce.min)} to ${short(ce.max)}`);
  }
  if (sm && se) {
    const x0 = at('size');
    root.append(svg('text', { x: x0, y: 11, ...font }, sizeTitle));
    let x = x0 + 6;
    for (const v of sizes) {
      const r = app.size(v);
      root.append(svg('circle', { cx: x + r, cy: 24, r, fill: 'none', stroke: theme.fg }));
      root.append(svg('text', { x: x + r, y: 42, 'text-anchor': 'middle', ...font }, short(v)));
      x += 2 * r + 34;
    }
    labels.push(`size ${lin.label(sm.key)} from ${short(se.min)} to ${short(se.max)}`);
  }
  if (cm) {
    // Edges: the fill metric's change against the parent.
    const x0 = at('edge');
    root.append(svg('text', { x: x0, y: 11, ...font }, 'edge vs parent'));
    const swatch = (y: number, colour: string, text: string) => {
      root.append(svg('rect', { x: x0, y: y - 7, width: 14, height: 6, fill: colour }));
      root.append(svg('text', { x: x0 + 18, y, ...font }, text));
    };
    swatch(25, theme.better, 'better');
    swatch(38, theme.worse, 'worse');
    labels.push(`edges green when ${lin.label(cm.key)} got better than the parent, red when worse`);
  }
  root.setAttribute('aria-label', `Legend: ${labels.join('; ') || 'no metrics'}`);
  return root;
}
