/**
 * A panel's own stylesheet, added at run time: base.css is the one file the bundle ships, and
 * the CSP allows styles only with the page's nonce, which the panel script carries too.
 */
export function addStyles(css: string): void {
  const nonce = (document.querySelector('script[nonce]') as HTMLScriptElement | null)?.nonce;
  const style = document.createElement('style');
  if (nonce) style.nonce = nonce;
  style.textContent = css;
  document.head.append(style);
}

/** Styles both comparison panels use (charts, cells, progress). Colours are --vscode-* only. */
export const COMPARE_CSS = `
.chart text.axis { fill: var(--vscode-descriptionForeground); font-size: 10px; }
.chart .brush { fill: var(--vscode-editor-selectionBackground); opacity: 0.6; }
.chart .mark { stroke: var(--vscode-editorWarning-foreground); stroke-dasharray: 2 2; }
.chart.lines path { stroke-width: 1.5; }
.s0 { fill: var(--vscode-charts-blue); stroke: var(--vscode-charts-blue); }
.s1 { fill: var(--vscode-charts-orange); stroke: var(--vscode-charts-orange); }
.s2 { fill: var(--vscode-charts-green); stroke: var(--vscode-charts-green); }
.s3 { fill: var(--vscode-charts-purple); stroke: var(--vscode-charts-purple); }
.s4 { fill: var(--vscode-charts-red); stroke: var(--vscode-charts-red); }
.s5 { fill: var(--vscode-charts-yellow); stroke: var(--vscode-charts-yellow); }
.s6 { fill: var(--vscode-charts-foreground); stroke: var(--vscode-charts-foreground); }
.s7 { fill: var(--vscode-charts-lines); stroke: var(--vscode-charts-lines); }
.chart.lines path.s0, .chart.lines g path { fill: none; }
.cellbar .pos { fill: var(--vscode-charts-green); }
.cellbar .neg { fill: var(--vscode-charts-red); }
.cellbar .ci { stroke: var(--vscode-foreground); stroke-width: 1; }
.cellbar .zero { stroke: var(--vscode-descriptionForeground); }
.toolbar { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 6px 0; }
.toolbar label { display: inline-flex; gap: 4px; align-items: center; }
input, select { color: var(--vscode-input-foreground); background: var(--vscode-input-background); border: 1px solid var(--vscode-input-border, transparent); font-family: inherit; padding: 2px 4px; }
.progress { display: flex; gap: 8px; align-items: center; }
progress { width: 160px; }
.uncertain { font-style: italic; color: var(--vscode-descriptionForeground); }
.badge { font-size: 0.85em; padding: 0 4px; border-radius: 3px; background: var(--vscode-badge-background); color: var(--vscode-badge-foreground); }
.split { display: grid; grid-template-columns: minmax(320px, 1fr) minmax(320px, 1fr); gap: 16px; }
.cell { display: inline-block; min-width: 4.5em; text-align: right; font-variant-numeric: tabular-nums; padding: 0 4px; }
button.link { background: none; color: var(--vscode-textLink-foreground); padding: 0 4px; }
button.link:hover { text-decoration: underline; background: none; }
button.secondary { color: var(--vscode-button-secondaryForeground); background: var(--vscode-button-secondaryBackground); }
`;
