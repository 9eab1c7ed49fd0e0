/**
 * How the Model Map's panes share the panel. Side by side and stacked while each keeps a usable
 * size (the map, its legend strip, the tabs and the scatterplot or table under it, the details
 * column beside them); when the panel is too short for that (the bottom panel open) the map, the
 * scatterplot and the table become tabs that each get the whole height, and when it is too
 * narrow the details column becomes a tab too. Pure: no DOM.
 */

/** Smallest map, bottom pane (scatterplot or table) and details column worth drawing (px). */
export const MAP_MIN_H = 200;
export const BOTTOM_MIN_H = 220;
export const MAP_MIN_W = 420;
export const SIDE_W = 300;
/** The legend strip and the tab bar between the map and the bottom pane. */
export const STRIP_H = 56;
export const TABS_H = 28;

export interface Panes {
  /** One view at a time (map, scatterplot, table), chosen by tabs. */
  tabbed: boolean;
  /** The details and filters column is a tab too (else it sits on the right). */
  sideTab: boolean;
}

/** `width` × `height`: the panel's area under its toolbar. */
export function paneLayout(width: number, height: number): Panes {
  const sideTab = width < MAP_MIN_W + SIDE_W;
  const tabbed = sideTab || height < MAP_MIN_H + STRIP_H + TABS_H + BOTTOM_MIN_H;
  return { tabbed, sideTab };
}
