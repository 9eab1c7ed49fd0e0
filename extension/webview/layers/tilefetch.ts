/** The one way both heatmaps ask the host for a page of tiles. */
import type { WebviewRequests } from '../../shared/messages';
import { resultsOf } from '../shared/stream';
import type { LayersPanel } from './panel';
import { tilesOfResult } from './tiles';

/** A page of tiles: the result's meta (pyramid, range), its tiles, and the value range. */
export async function fetchTiles(p: LayersPanel, params: WebviewRequests['tiles']['params'], what: string) {
  const r = await p.rpc.request('tiles', params);
  const res = resultsOf(r.pages)[0];
  if (!res) throw new Error(`no tiles came back for ${what}`);
  return { meta: res.meta, tiles: tilesOfResult(res.meta, res.tensors), range: res.meta.range as { min: number | null; max: number | null } | undefined };
}
