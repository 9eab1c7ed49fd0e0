/**
 * The panel's own stylesheet. The CSP allows styles only from the extension or with the page's
 * nonce, so the sheet is added as a <style> carrying the nonce of the script that loaded us.
 */
const CSS = `
body { padding: 0; margin: 0; overflow: hidden; }
#app { height: 100vh; }
.mm-root { display: grid; grid-template-rows: auto 1fr; height: 100vh; }
.mm-toolbar, .mm-subbar { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; padding: 4px 8px; }
.mm-toolbar { border-bottom: 1px solid var(--vscode-panel-border, var(--vscode-editorWidget-border, rgba(128,128,128,.35))); }
.mm-toolbar h1 { margin: 0 8px 0 0; font-size: 1.1em; }
.mm-toolbar label, .mm-subbar label { display: inline-flex; gap: 4px; align-items: center; }
select, input[type=search] { color: var(--vscode-dropdown-foreground, var(--vscode-foreground)); background: var(--vscode-dropdown-background, var(--vscode-input-background)); border: 1px solid var(--vscode-dropdown-border, var(--vscode-contrastBorder, transparent)); font-family: inherit; font-size: inherit; padding: 2px 4px; }
input[type=search] { background: var(--vscode-input-background); color: var(--vscode-input-foreground); border-color: var(--vscode-input-border, var(--vscode-contrastBorder, transparent)); width: 14em; }
button.secondary { color: var(--vscode-button-secondaryForeground); background: var(--vscode-button-secondaryBackground); }
button.secondary:hover { background: var(--vscode-button-secondaryHoverBackground); }
.mm-main { display: grid; grid-template-columns: 1fr minmax(250px, 320px); min-height: 0; }
/* Stacked: the map, its legend strip, the tabs, the scatterplot or table; each keeps its minimum
   (panes.ts switches to tabs before they would shrink below it). */
.mm-left { display: grid; grid-template-columns: minmax(0, 1fr); grid-template-rows: auto minmax(200px, 3fr) auto minmax(220px, 2fr); grid-template-areas: "tabs" "map" "legend" "bottom"; min-height: 0; min-width: 0; }
.mm-left > .mm-tabs { grid-area: tabs; order: 3; }
.mm-left > .mm-map-wrap { grid-area: map; }
.mm-left > .mm-legend-strip { grid-area: legend; }
.mm-left > .mm-bottom { grid-area: bottom; }
.mm-root:not(.tabbed) .mm-left { grid-template-areas: "map" "legend" "tabs" "bottom"; grid-template-rows: minmax(200px, 3fr) auto auto minmax(220px, 2fr); }
/* Tabbed: one view at a time, the whole height. */
.mm-root.tabbed .mm-left { grid-template-rows: auto 1fr auto; grid-template-areas: "tabs" "view" "legend"; }
.mm-root.tabbed .mm-map-wrap, .mm-root.tabbed .mm-bottom { grid-area: view; }
.mm-root.tabbed:not([data-view=map]) .mm-map-wrap, .mm-root.tabbed:not([data-view=map]) .mm-legend-strip { display: none; }
.mm-root.tabbed:not([data-view=scatter]):not([data-view=table]) .mm-bottom { display: none; }
.mm-root.side-tab .mm-main { grid-template-columns: 1fr; }
.mm-root.side-tab .mm-side { grid-area: 1 / 1; border-left: none; }
.mm-root.side-tab:not([data-view=details]) .mm-side { display: none; }
.mm-root.side-tab[data-view=details] .mm-map-wrap, .mm-root.side-tab[data-view=details] .mm-legend-strip { display: none; }
.mm-map-wrap { position: relative; min-height: 0; }
.mm-map, .mm-scatter { position: absolute; inset: 0; overflow: hidden; }
.mm-map canvas, .mm-scatter canvas { display: block; }
/* the legend and the hint share a strip under the map: the hint goes after the legend when both do not fit */
.mm-legend-strip { display: flex; flex-wrap: nowrap; justify-content: space-between; align-items: flex-end; gap: 2px 12px; padding: 2px 6px; border-top: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); }
.mm-legend-box { line-height: 0; }
.mm-hint { font-size: .85em; flex: 1 1 0; min-width: 0; text-align: right; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.mm-tabs { display: flex; gap: 2px; align-items: center; border-top: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); padding: 0 6px; }
.mm-tabs [role=tab] { background: none; color: var(--vscode-foreground); border-bottom: 2px solid transparent; opacity: .75; }
.mm-tabs [role=tab][aria-selected=true] { border-bottom-color: var(--vscode-panelTitle-activeBorder, var(--vscode-focusBorder)); opacity: 1; }
.mm-tabs [role=tab][hidden] { display: none; }
.mm-bottom { position: relative; min-height: 0; }
.mm-bottom > .mm-bottom-body { position: absolute; inset: 0; }
.mm-bottom-body { position: relative; min-height: 0; }
.mm-table-wrap { position: absolute; inset: 0; display: grid; grid-template-rows: auto 1fr; }
.mm-table-scroll { position: relative; overflow: auto; min-height: 0; }
.mm-spacer { width: 1px; }
.mm-table { position: absolute; top: 0; left: 0; width: max-content; min-width: 100%; }
.mm-table th, .mm-table td { height: 23px; box-sizing: border-box; white-space: nowrap; padding: 2px 8px; }
.mm-table thead { background: var(--vscode-editor-background); position: relative; z-index: 1; }
.mm-table th { cursor: pointer; }
.mm-table tr.faded { opacity: .35; }
.mm-table tr.hover { background: var(--vscode-list-hoverBackground); }
.delta { font-size: .85em; margin-left: 4px; }
.better { color: var(--vscode-charts-green, #89d185); }
.worse { color: var(--vscode-charts-red, #f14c4c); }
.same { color: var(--vscode-descriptionForeground); }
.mm-side { overflow: auto; border-left: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); padding: 0 10px 12px; min-height: 0; }
.mm-side h2 { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.mm-side h3 { font-size: 1em; margin: .8em 0 .3em; }
.mm-badge { background: var(--vscode-badge-background); color: var(--vscode-badge-foreground); border-radius: 8px; padding: 0 6px; font-size: .85em; font-weight: normal; }
.mm-filter { margin: 4px 0 8px; }
.mm-filter canvas { display: block; cursor: crosshair; }
.mm-filter-label { font-size: .9em; }
.mm-filter-range { font-size: .8em; }
.mm-recipe { padding-left: 1.4em; margin: 0; }
.mm-varies { padding-left: 1.1em; margin: 0; }
.mm-varies li { margin: 2px 0; }
.mm-bars { margin: 6px 0; }
.mm-bars figcaption { font-size: .9em; }
.mm-bars rect { cursor: pointer; }
.mm-bars rect.hovered, .mm-bars rect:focus { stroke: var(--vscode-focusBorder); stroke-width: 2; }
.mm-recipe li.hovered { background: var(--vscode-list-hoverBackground); }
.mm-diff { border-collapse: collapse; width: 100%; font-size: .9em; table-layout: fixed; }
.mm-diff th, .mm-diff td { text-align: left; padding: 1px 4px; vertical-align: top; overflow-wrap: break-word; }
.mm-diff code { font-size: .85em; }
.mm-diff thead th { font-weight: 600; overflow-wrap: anywhere; border-bottom: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); }
.mm-diff tbody th { font-weight: normal; width: 22%; color: var(--vscode-descriptionForeground); }
.mm-diff tr.mm-diff-op th, .mm-diff tr.mm-diff-base th { color: var(--vscode-foreground); }
.mm-diff tr.mm-diff-op { border-top: 1px solid var(--vscode-panel-border, rgba(128,128,128,.25)); }
.mm-diff tr.differs td { background: var(--vscode-diffEditor-insertedTextBackground, rgba(155,185,85,.2)); }
.mm-diff tr.differs th::before { content: "≠ "; color: var(--vscode-charts-orange, #d18616); }
.mm-diff td.hovered { outline: 1px solid var(--vscode-focusBorder); }
.mm-diff-summary { margin: 0 0 4px; }
.mm-swatch { display: inline-block; width: 10px; height: 10px; margin-left: 4px; }
.mm-legend-row { font-size: .85em; }
.mm-tooltip { position: fixed; z-index: 10; max-width: 360px; padding: 6px 8px; pointer-events: none; background: var(--vscode-editorHoverWidget-background, var(--vscode-editor-background)); color: var(--vscode-editorHoverWidget-foreground, var(--vscode-foreground)); border: 1px solid var(--vscode-editorHoverWidget-border, var(--vscode-contrastBorder, rgba(128,128,128,.5))); font-size: .9em; }
.mm-tooltip table { width: auto; }
.mm-tooltip td { padding: 0 6px; border: none; }
.mm-tt-title { font-weight: 600; }
.mm-tt-params { font-family: var(--vscode-editor-font-family, monospace); font-size: .9em; margin: 2px 0; }
.mm-banner { position: absolute; top: 28px; left: 8px; right: 8px; z-index: 2; }
`;

export function installStyle(): void {
  const script = (document.currentScript as HTMLScriptElement | null) ?? document.querySelector<HTMLScriptElement>('script[nonce]');
  const style = document.createElement('style');
  if (script?.nonce) style.nonce = script.nonce;
  style.textContent = CSS;
  document.head.append(style);
}
