/**
 * One-click fixes from a diagnosis (the Layers panel): from a layer whose error stands out, a new
 * variant in the experiment file the model came from — the model's own recipe again, either with
 * the layer's parameters added to each targeting op's `exclude`, or followed by a `restore` of
 * them from the model the variant starts from. The text is planned here (pure: no vscode; the
 * unit tests give exact expected text, tests/experiment checks the server parses it with no
 * problem); `applyFixVariant` in fixVariantCommand.ts makes it a WorkspaceEdit.
 *
 * The ops come from the lineage, not from the file's text: a swept variant's file text holds
 * lists (`sparsity: [0.1, 0.2]`) while the model was made with one value of each, and the
 * lineage keeps exactly the parameters each step ran with (defaults filled in), so the new
 * variant repeats the model's steps as they ran (`restore` then reuses them: same fingerprints).
 * The file gives where the variant is declared (the new one goes right after it), how many ops
 * it has, and the names already taken.
 */
import type { ModelInfo } from '../shared/protocol';

export type FixAction = 'exclude' | 'restore';

export interface FixRequest {
  /** The model whose layer stands out (a variant's model, or one of its intermediate steps). */
  model: string;
  action: FixAction;
  /** Glob patterns over parameter names: the layer's (`module.*`, or one tensor's name). */
  patterns: string[];
}

export interface FixPlan {
  /** The new variant's name (unique in the file and the lineage). */
  name: string;
  /** 0-based line the text is inserted at (before it), and the text (whole lines). */
  line: number;
  text: string;
  /** The declared variant the model came from (for messages). */
  variant: string;
}

/**
 * Ops that select parameters by `include`/`exclude` (weight-targeting ops): the exclude fix adds
 * the layer to theirs. `restore` has an `exclude` too, but it means "not restored". The op
 * registry is the source: tests/experiment/test_fix_variant.py checks this list against it.
 */
export const TARGETING_OPS: ReadonlySet<string> = new Set([
  'lowrank', 'palettize', 'prune.magnitude', 'prune.nm', 'prune.random', 'prune.sparsegpt', 'prune.structured',
  'prune.taylor', 'prune.wanda', 'quantize.awq', 'quantize.calibrated', 'quantize.dynamic', 'quantize.static', 'quantize.weights',
  'smoothquant',
]);

/** Whether a step's op selects parameters: a built-in one of the list, or a user op whose
 * parameters, as it ran, hold `include` or `exclude` (their meaning then is the same). */
export function targets(op: string, params: Record<string, unknown>): boolean {
  return TARGETING_OPS.has(op) || (op !== 'restore' && ('include' in params || 'exclude' in params));
}

/** A fix that cannot be planned, with words for the user. */
export class FixError extends Error {}

interface Line {
  text: string;
  indent: number;
  /** blank or a comment only */
  empty: boolean;
}

function linesOf(text: string): Line[] {
  return text.split(/\r?\n/).map((t) => ({ text: t, indent: t.length - t.trimStart().length, empty: /^\s*(#.*)?$/.test(t) }));
}

/** A scalar as written after `name:` or `from:` (quotes and a trailing comment removed). */
function scalar(raw: string): string {
  const s = raw.trim();
  const q = /^(["'])(.*)\1\s*(#.*)?$/.exec(s);
  if (q) return q[1] === '"' ? (JSON.parse(`"${q[2]!}"`) as string) : q[2]!.replace(/''/g, "'");
  return s.replace(/\s+#.*$/, '');
}

/** A declared variant in the file: its name (maybe a template), the lines of its list item. */
interface Declared {
  name: string;
  /** The item's first line (with its `- `), the line after its last content line. */
  start: number;
  end: number;
  /** Column of the item's dash, and of its keys. */
  dash: number;
  key: number;
  /** Number of ops (block list under `ops:`). */
  ops: number;
}

/** Every variant declared in `variants:` (block style), in file order. */
export function declaredVariants(text: string): Declared[] {
  const ls = linesOf(text);
  const top = ls.findIndex((l) => /^variants\s*:\s*(#.*)?$/.test(l.text));
  if (top < 0) return [];
  const out: Declared[] = [];
  let i = top + 1;
  while (i < ls.length) {
    const l = ls[i]!;
    if (l.empty) {
      i++;
      continue;
    }
    if (l.indent === 0 && !l.text.startsWith('-')) break; // the next top-level key
    const item = /^(\s*)-\s+/.exec(l.text);
    if (!item) {
      i++;
      continue;
    }
    const dash = item[1]!.length;
    const key = item[0].length;
    // the item runs while lines are indented past its dash (blank lines and comments inside too)
    let j = i + 1;
    let last = i;
    while (j < ls.length && (ls[j]!.empty || ls[j]!.indent > dash)) {
      if (!ls[j]!.empty) last = j;
      j++;
    }
    let name = '';
    let ops = 0;
    let opsIndent = -1;
    for (let k = i; k <= last; k++) {
      const t = k === i ? ' '.repeat(key) + ls[k]!.text.slice(key) : ls[k]!.text;
      const kv = /^(\s*)(name|ops)\s*:(.*)$/.exec(t);
      if (kv && kv[1]!.length === key) {
        if (kv[2] === 'name') name = scalar(kv[3]!);
        else opsIndent = -2; // ops items follow
        continue;
      }
      if (opsIndent !== -1 && !ls[k]!.empty) {
        const op = /^(\s*)-\s+/.exec(ls[k]!.text);
        if (op && (opsIndent === -2 || op[1]!.length === opsIndent)) {
          opsIndent = op[1]!.length;
          ops++;
        } else if (ls[k]!.indent <= key) opsIndent = -1; // another key of the variant
      }
    }
    if (name) out.push({ name, start: i, end: last + 1, dash, key, ops });
    i = last + 1;
  }
  return out;
}

/** Whether `declared` (a name, maybe a sweep template with `{param}`) makes the variant `name`. */
function makes(declared: string, name: string): 0 | 1 | 2 | 3 {
  if (declared === name) return 3;
  if (/\{[^{}]*\}/.test(declared)) {
    const re = new RegExp(`^${declared.split(/\{[^{}]*\}/).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.+')}$`);
    if (re.test(name)) return 2;
  }
  // a sweep whose name has no placeholder: the values are appended ("prune-sparsity0.5")
  return name.startsWith(`${declared}-`) ? 1 : 0;
}

/** The declared variant that makes `name`: the exact name, else a template, else a prefix (longest). */
export function findDeclared(text: string, name: string): Declared | undefined {
  let best: Declared | undefined;
  let score = 0;
  for (const d of declaredVariants(text)) {
    const s = makes(d.name, name);
    if (s > score || (s === score && s > 0 && best && d.name.length > best.name.length)) {
      best = d;
      score = s;
    }
  }
  return best;
}

/** A YAML flow value (JSON is YAML; keys that are plain words stay bare). */
export function flow(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(flow).join(', ')}]`;
  if (v && typeof v === 'object') return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${/^[A-Za-z_][\w.-]*$/.test(k) ? k : JSON.stringify(k)}: ${flow(x)}`).join(', ')}}`;
  return v === undefined ? 'null' : JSON.stringify(v);
}

function patternsOf(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** A name for the layer in a variant name: its path, or "layers" for several. */
function layerWord(patterns: string[]): string {
  if (patterns.length !== 1) return 'layers';
  return patterns[0]!.replace(/\.\*$/, '').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'layers';
}

/** The names of a model usable in `from:` (a variant's name, not a step's `name/k`). */
function variantNameOf(m: ModelInfo): string | undefined {
  return [m.name, ...(m.aliases ?? [])].find((n) => !n.includes('/'));
}

/**
 * The new variant for `req`: its text right after the declared variant of `req.model` in `text`
 * (the experiment file the model came from). Throws FixError with words for the user.
 */
export function planFixVariant(text: string, models: readonly ModelInfo[], req: FixRequest): FixPlan {
  const byId = new Map(models.map((m) => [m.id, m]));
  const m = byId.get(req.model);
  if (!m) throw new FixError(`model ${req.model} is not in the lineage`);
  if (!m.experiment) throw new FixError(`${m.name} was not made from an experiment file, so there is no file to add a variant to.`);
  if (!req.patterns.length) throw new FixError('no parameters to exclude or restore');
  const vname = m.experiment.variant;
  const decl = findDeclared(text, vname);
  if (!decl) throw new FixError(`the variant ${vname} is not declared in ${m.experiment.file} (as a block list item under variants:)`);
  if (!decl.ops) throw new FixError(`the variant ${decl.name} in ${m.experiment.file} lists no ops (as a block list under ops:)`);
  // an intermediate model "v/k" repeats the variant's first k ops; the variant's model all of them
  const stepOf = [m.name, ...(m.aliases ?? [])].map((n) => new RegExp(`^${vname.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/(\\d+)$`).exec(n)).find(Boolean);
  const k = stepOf ? Number(stepOf[1]) : decl.ops;
  const chain: ModelInfo[] = [];
  let cur: ModelInfo | undefined = m;
  while (chain.length < k && cur && cur.parent) {
    chain.unshift(cur);
    cur = byId.get(cur.parent);
  }
  if (chain.length < k || !cur) throw new FixError(`the lineage does not hold the ${k} steps of ${vname} (it was made from a different recipe?)`);
  const origin = cur.parent === null ? 'base' : variantNameOf(cur);
  if (!origin) throw new FixError(`the model ${vname} starts from (${cur.name}) is not a variant of the file`);

  const ops: { op: string; params: Record<string, unknown> }[] = chain.map((s) => ({ op: s.op ?? '', params: { ...s.params } }));
  if (ops.some((o) => !o.op)) throw new FixError(`a step of ${vname} has no op in the lineage`);
  if (req.action === 'exclude') {
    const targeting = ops.filter((o) => targets(o.op, o.params));
    if (!targeting.length) throw new FixError(`no op of ${vname} (${ops.map((o) => o.op).join(', ')}) selects parameters with include/exclude`);
    for (const o of targeting) {
      const have = patternsOf(o.params.exclude);
      o.params.exclude = [...have, ...req.patterns.filter((p) => !have.includes(p))];
    }
  } else {
    ops.push({ op: 'restore', params: { patterns: [...req.patterns] } });
  }

  // unique among the declared names (templates included) and every model name of the lineage
  const taken = new Set<string>([...declaredVariants(text).map((d) => d.name), ...models.flatMap((x) => [x.name, ...(x.aliases ?? [])])]);
  const stem = `${vname}-${req.action === 'exclude' ? 'no' : 'restore'}-${layerWord(req.patterns)}`;
  let name = stem;
  // (a sweep template's members are known by the lineage's names once run; not guessed here)
  for (let n = 2; taken.has(name); n++) name = `${stem}-${n}`;

  const pad = (n: number) => ' '.repeat(n);
  const what = req.action === 'exclude' ? `as ${vname}, with ${req.patterns.join(', ')} left out of ${ops.filter((o) => targets(o.op, o.params)).map((o) => o.op).join(', ')}` : `as ${vname}, then ${req.patterns.join(', ')} restored from ${origin}`;
  const out = [
    `${pad(decl.dash)}- name: ${JSON.stringify(name)}`,
    `${pad(decl.key)}description: ${JSON.stringify(what)}`,
    `${pad(decl.key)}from: ${JSON.stringify(origin)}`,
    `${pad(decl.key)}ops:`,
    ...ops.map((o) => `${pad(decl.key + 2)}- ${o.op}${Object.keys(o.params).length ? `: ${flow(o.params)}` : ''}`),
  ];
  return { name, line: decl.end, text: `${out.join('\n')}\n`, variant: decl.name };
}
