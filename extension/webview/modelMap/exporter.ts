/**
 * Export: the whole map or the current scatterplot as a standalone SVG (drawn from the same
 * geometry as the canvas), or what the canvas shows as PNG.
 */
import type { App } from './app';
import { COL_W, HEADER_H, PAD, ROW_H, taper, taperSvgPath, worldX, worldY } from './geometry';
import { legendSvg } from './legend';
import { short, themeColors, ticks, type Linear } from './scales';
import { svg } from '../shared/charts';
import { edgeColour, shortOp } from './mapView';
import { errorBars } from './errorBars';

function finish(root: SVGSVGElement): string {
  root.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(root)}\n`;
}

export function mapSvg(app: App): string {
  const theme = themeColors();
  const { layout, lin, state } = app;
  const legendH = 50;
  const W = PAD * 2 + Math.max(0, layout.columns.length - 1) * COL_W + 160;
  const H = HEADER_H + PAD + Math.max(1, layout.rows) * ROW_H + legendH;
  const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'font-family': theme.font, 'font-size': 11 });
  root.append(svg('rect', { width: W, height: H, fill: theme.bg }));
  layout.columns.forEach((c, i) => root.append(svg('text', { x: PAD + i * COL_W, y: 16, 'text-anchor': 'middle', fill: theme.muted, 'font-weight': 600 }, shortOp(c.label))));
  const g = svg('g', { transform: `translate(0 ${HEADER_H})` });
  const def = state.colorMetric ? lin.metricDef(state.colorMetric) : undefined;
  for (const [p, c] of layout.edges) {
    const pn = layout.byId.get(p)!;
    const cn = layout.byId.get(c)!;
    const colour = edgeColour(lin, def, p, c, theme);
    const t = taper(worldX(pn), worldY(pn), app.radiusOf(p), worldX(cn), worldY(cn), app.radiusOf(c));
    g.append(svg('path', { d: taperSvgPath(t), fill: colour, opacity: app.pass.has(c) ? 0.8 : 0.12 }));
    g.append(svg('text', { x: (worldX(pn) + worldX(cn)) / 2, y: worldY(cn) - 5, 'text-anchor': 'middle', fill: theme.muted, 'font-size': 9 }, shortOp(lin.byId.get(c)!.op ?? '')));
  }
  for (const n of layout.nodes) {
    const m = lin.byId.get(n.id)!;
    const x = worldX(n);
    const y = worldY(n);
    const r = app.radiusOf(n.id);
    const stroke = m.status === 'running' ? theme.running : m.status === 'failed' || m.status === 'broken' ? theme.failed : theme.muted;
    const node = svg('circle', { cx: x, cy: y, r, fill: app.colorOf(n.id) ?? theme.bg, stroke, opacity: app.pass.has(n.id) ? 1 : 0.15 });
    node.append(svg('title', {}, `${m.name}${m.op ? ` (${m.op})` : ''}`));
    g.append(node);
    if (app.selection.has(n.id)) g.append(svg('circle', { cx: x, cy: y, r: r + 3, fill: 'none', stroke: theme.focus, 'stroke-width': 2.5 }));
    g.append(svg('text', { x: x + r + 4, y: y + 12, fill: theme.fg, 'font-size': 10 }, m.name + (n.hidden ? ` (+${n.hidden})` : '')));
  }
  root.append(g);
  const legend = svg('g', { transform: `translate(${PAD} ${H - legendH + 4})` });
  legend.append(...[...legendSvg(app).childNodes]);
  root.append(legend);
  return finish(root);
}

export function scatterSvg(app: App, s: { xs: Linear; ys: Linear; width: number; height: number }, front: readonly string[]): string {
  const theme = themeColors();
  const { lin, state } = app;
  const { xs, ys, width: W, height: H } = s;
  const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'font-family': theme.font, 'font-size': 10 });
  root.append(svg('rect', { width: W, height: H, fill: theme.bg }));
  const [x0, x1] = xs.range;
  const [y0, y1] = ys.range;
  for (const t of ticks(xs.domain[0], xs.domain[1])) {
    root.append(svg('line', { x1: xs(t), x2: xs(t), y1: y0, y2: y1, stroke: theme.border, opacity: 0.3 }));
    root.append(svg('text', { x: xs(t), y: y0 + 14, 'text-anchor': 'middle', fill: theme.muted }, short(t)));
  }
  for (const t of ticks(ys.domain[0], ys.domain[1])) {
    root.append(svg('line', { x1: x0, x2: x1, y1: ys(t), y2: ys(t), stroke: theme.border, opacity: 0.3 }));
    root.append(svg('text', { x: x0 - 4, y: ys(t) + 3, 'text-anchor': 'end', fill: theme.muted }, short(t)));
  }
  root.append(svg('text', { x: (x0 + x1) / 2, y: H - 2, 'text-anchor': 'middle', fill: theme.fg }, state.scatterX ? lin.label(state.scatterX, { unit: true }) : ''));
  root.append(svg('text', { x: 12, y: (y0 + y1) / 2, 'text-anchor': 'middle', fill: theme.fg, transform: `rotate(-90 12 ${(y0 + y1) / 2})` }, state.scatterY ? lin.label(state.scatterY, { unit: true }) : ''));
  const frontSet = new Set(front);
  // The front as the same staircase the canvas draws (through the corner both neighbours beat).
  const xHigher = lin.metricDef(state.scatterX ?? '')?.higherIsBetter ?? true;
  const pts = front.map((id) => [xs(lin.metric(id, state.scatterX!)!), ys(lin.metric(id, state.scatterY!)!)] as const).sort((a, b) => a[0] - b[0]);
  const stairs: string[] = [];
  pts.forEach(([x, y], i) => {
    if (i > 0) {
      const [px, py] = pts[i - 1]!;
      stairs.push(xHigher ? `${px.toFixed(1)},${y.toFixed(1)}` : `${x.toFixed(1)},${py.toFixed(1)}`);
    }
    stairs.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  if (pts.length > 1) root.append(svg('polyline', { points: stairs.join(' '), fill: 'none', stroke: theme.fg, 'stroke-dasharray': '5 3', opacity: 0.6 }));
  // the same error bars as the canvas (latency's spread; noisy ones dashed)
  if (state.scatterX && state.scatterY) {
    for (const b of errorBars(lin, state.scatterX, state.scatterY, xs, ys)) {
      const [cx, cy] = b.axis === 'x' ? [0, 3] : [3, 0];
      const d = `M${b.x0.toFixed(1)},${b.y0.toFixed(1)}L${b.x1.toFixed(1)},${b.y1.toFixed(1)}M${(b.x1 - cx).toFixed(1)},${(b.y1 - cy).toFixed(1)}L${(b.x1 + cx).toFixed(1)},${(b.y1 + cy).toFixed(1)}`;
      root.append(svg('path', { d, stroke: theme.muted, fill: 'none', ...(b.noisy ? { 'stroke-dasharray': '3 2' } : {}), opacity: app.pass.has(b.id) ? 0.9 : 0.15 }));
    }
  }
  for (const id of lin.order) {
    const xv = lin.metric(id, state.scatterX ?? '');
    const yv = lin.metric(id, state.scatterY ?? '');
    if (xv === undefined || yv === undefined) continue;
    const c = svg('circle', { cx: xs(xv).toFixed(1), cy: ys(yv).toFixed(1), r: app.radiusOf(id), fill: app.colorOf(id) ?? theme.muted, stroke: frontSet.has(id) ? theme.fg : 'none', opacity: app.pass.has(id) ? 0.9 : 0.12 });
    c.append(svg('title', {}, lin.byId.get(id)!.name));
    root.append(c);
  }
  return finish(root);
}
