/**
 * The panel's own stylesheet. The CSP allows styles only from the extension or with the page's
 * nonce, so the sheet is added as a <style> carrying the nonce of the script that loaded us.
 */
const CSS = `
body { padding: 0; overflow: hidden; }
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
.mm-left { display: grid; grid-template-rows: 3fr auto 2fr; min-height: 0; min-width: 0; }
.mm-map-wrap { position: relative; min-height: 0; }
.mm-map, .mm-scatter { position: absolute; inset: 0; overflow: hidden; }
.mm-map canvas, .mm-scatter canvas { display: block; }
/* the legend and the hint share the map's bottom edge: the hint goes above the legend when both do not fit */
.mm-overlay { position: absolute; left: 6px; right: 8px; bottom: 6px; display: flex; flex-wrap: wrap-reverse; justify-content: space-between; align-items: flex-end; gap: 4px 12px; pointer-events: none; }
.mm-legend-box { background: var(--vscode-editorWidget-background, var(--vscode-editor-background)); border: 1px solid var(--vscode-editorWidget-border, rgba(128,128,128,.35)); opacity: .95; pointer-events: none; }
.mm-hint { font-size: .85em; pointer-events: none; }
.mm-tabs { display: flex; gap: 2px; align-items: center; border-top: 1px solid var(--vscode-panel-border, rgba(128,128,128,.35)); padding: 0 6px; }
.mm-tabs [role=tab] { background: none; color: var(--vscode-foreground); border-bottom: 2px solid transparent; opacity: .75; }
.mm-tabs [role=tab][aria-selected=true] { border-bottom-color: var(--vscode-panelTitle-activeBorder, var(--vscode-focusBorder)); opacity: 1; }
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
