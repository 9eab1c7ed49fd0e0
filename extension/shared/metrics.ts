/**
 * How a metric is named and its value written, for the Lineage tree and every panel alike (both
 * the extension host bundle and the webview bundles import this). Pure: no vscode or DOM imports.
 */
import type { MetricInfo } from './protocol';

export { metricIdentity } from './protocol';

/** What tells metric definitions apart: one with `key` equal to `name`, the others `name#2`, ... */
export type MetricId = Pick<MetricInfo, 'key' | 'name' | 'unit' | 'higherIsBetter'>;

/**
 * A metric's name as shown where `all` (the metrics shown together) may hold other definitions
 * under the same name: those get the unit or the direction (↑/↓) that differs among them, and
 * where neither does (only the headline flag), the key's number ("accuracy #2"). `show` adds the
 * unit and the direction even where they tell nothing apart (a column header, an axis title).
 */
export function metricLabel(m: MetricId, all: readonly MetricId[], show: { unit?: boolean; direction?: boolean } = {}): string {
  const group = all.filter((o) => o.name === m.name && o.key !== m.key);
  const withUnit = show.unit || group.some((o) => o.unit !== m.unit);
  const withDirection = show.direction || group.some((o) => o.higherIsBetter !== m.higherIsBetter);
  const text = (x: MetricId) => `${x.name}${withUnit && x.unit ? ` (${x.unit})` : ''}${withDirection ? (x.higherIsBetter ? ' ↑' : ' ↓') : ''}`;
  const own = text(m);
  if (!group.some((o) => text(o) === own)) return own;
  if (m.key === m.name) return own;
  return m.key.startsWith(`${m.name}#`) ? `${own} #${m.key.slice(m.name.length + 1)}` : `${own} [${m.key}]`;
}

export function formatMetric(m: Pick<MetricInfo, 'value' | 'unit'>): string {
  const v = m.value;
  switch (m.unit) {
    case '%':
      // The server sends percentages as percent (80.0 for 4 of 5), not fractions.
      return `${v.toFixed(Math.abs(v) >= 10 ? 1 : 2)}%`;
    case 'B':
      return formatBytes(v);
    case 's':
      return v < 1 ? `${(v * 1000).toPrecision(3)} ms` : `${v.toPrecision(3)} s`;
    case 'ms':
      return `${v.toPrecision(3)} ms`;
    case '':
    case 'x':
    case '×':
      return `${compactNumber(v)}${m.unit === '' ? '' : '×'}`;
    default:
      return `${compactNumber(v)} ${m.unit}`;
  }
}

/** Binary units, as file managers and `du -h` show a stored file: 1.21 MiB, 302 KiB. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toPrecision(3)} ${units[i]}`;
}

function compactNumber(v: number): string {
  if (Number.isInteger(v) && Math.abs(v) < 1e4) return String(v);
  if (Math.abs(v) >= 1e9) return `${(v / 1e9).toPrecision(3)}G`;
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toPrecision(3)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toPrecision(3)}k`;
  return v.toPrecision(4).replace(/\.?0+$/, '');
}

/**
 * A metric's value as the views show it: `~` before a noisy one (its measurement's rounds
 * disagreed too much to trust it; `noisyWhy` says so in a tooltip).
 */
export function formatMeasured(m: Pick<MetricInfo, 'value' | 'unit' | 'noisy'>): string {
  return `${m.noisy ? '~' : ''}${formatMetric(m)}`;
}

/** Why a noisy metric is marked `~`, for a tooltip (undefined when it is not noisy). */
export function noisyWhy(m: Pick<MetricInfo, 'name' | 'noisy' | 'note'>): string | undefined {
  if (!m.noisy) return undefined;
  return `~ ${m.name} is noisy (${m.note ?? 'its rounds disagreed'}); Bonsai: Measure Latency measures it again, and the most trustworthy measurement is kept.`;
}

/** "spread 0.04 ms": how far above the value the measurement's rounds reached (undefined: none). */
export function spreadText(m: Pick<MetricInfo, 'spread' | 'unit'>): string | undefined {
  return m.spread === undefined ? undefined : `spread ${formatMetric({ value: m.spread, unit: m.unit })}`;
}

