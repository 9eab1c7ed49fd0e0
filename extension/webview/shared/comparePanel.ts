/**
 * What every comparison panel (Behaviors, Layers) does first: connect to the host, read which
 * models it compares from its saved state (the first is the base), and explain itself when it
 * was opened without enough of them, or in Restricted Mode.
 */
import { el, icon, mount, notice } from './dom';
import { PanelStore, Rpc, vscodeApi } from './rpc';
import { COMPARE_CSS, addStyles } from './style';

export interface ComparePanel {
  rpc: Rpc;
  store: PanelStore;
  /** The base first, then at most `maxOthers` models. */
  ids: string[];
  base: string;
  others: string[];
  header: () => HTMLElement;
  /** What is compared, by model name, and a notice naming how many models were left out. */
  intro: (name: (id: string) => string) => Node[];
}

export function openComparePanel(o: { title: string; codicon: string; maxOthers: number; css: string }): ComparePanel | null {
  addStyles(COMPARE_CSS + o.css);
  const api = vscodeApi();
  const rpc = new Rpc(api);
  const store = new PanelStore(api);
  const all = store.state.models ?? [];
  const ids = all.slice(0, o.maxOthers + 1);
  const header = () => el('h1', {}, icon(o.codicon), o.title);
  if (ids.length < 2) {
    mount(header(), notice('info', `Choose a base and 1–${o.maxOthers} models to compare: select them in the Lineage view and use Compare Selected, or Compare with Parent.`));
    rpc.ready();
    return null;
  }
  const [base, ...others] = ids as [string, ...string[]];
  rpc.on('serverState', (s) => {
    if (!s.trusted) mount(header(), notice('info', 'Restricted Mode: Bonsai does not load models to compare them. Trust this workspace to compare.'));
  });
  const leftOut = all.length - ids.length;
  const intro = (name: (id: string) => string): Node[] => [
    el('p', {}, `Base ${name(base)} against ${others.map(name).join(', ')}`),
    ...(leftOut > 0 ? [notice('info', `${o.title} compares a base with at most ${o.maxOthers} models; ${leftOut} left out.`)] : []),
  ];
  return { rpc, store, ids, base, others, header, intro };
}

/** Where a panel's comparison stands: "label received of expected models". */
export interface CompareProgress {
  label: string;
  received: number;
  expected: number;
  running: boolean;
  /** Stopped by a cancel (the panel's or the server's): what is in stays, the rest can resume. */
  cancelled?: boolean;
}

/** How many models a Resume would compare: those a cancel left out (0: nothing to resume). */
export function resumable(p: CompareProgress): number {
  return !p.running && p.cancelled ? Math.max(0, p.expected - p.received) : 0;
}

/**
 * The progress line's contents: the count, and while running a bar and a Cancel button; after a
 * cancel that left models out, a Resume button (given `onResume`) that compares only those.
 */
export function progressLine(p: CompareProgress, onCancel: () => void, onResume?: () => void): Node[] {
  const parts: Node[] = [el('span', {}, `${p.label} ${p.received} of ${p.expected} model${p.expected === 1 ? '' : 's'}`)];
  if (p.running) {
    parts.unshift(el('progress', { max: String(Math.max(1, p.expected)), value: String(p.received) }));
    const cancel = el('button', { class: 'secondary' }, 'Cancel');
    cancel.addEventListener('click', onCancel);
    parts.push(cancel);
  } else if (onResume && resumable(p) > 0) {
    const left = resumable(p);
    const resume = el('button', { title: `Compare the ${left} model${left === 1 ? '' : 's'} not compared yet; results already in are kept` }, 'Resume');
    resume.addEventListener('click', onResume);
    parts.push(resume);
  }
  return parts;
}
