/**
 * Every custom LSP method between this extension and the Bonsai server, with its wire shapes.
 *
 * This is the TypeScript mirror of server/modelbonsai/lsp/protocol.py. Shapes are declared once, as runtime descriptors, and the static
 * types are inferred from them: the same table types the client code and validates the shared
 * fixture messages in tests/fixtures/protocol/, so a field renamed on either side fails a test.
 */

// ---------------------------------------------------------------------------------------------
// A tiny shape language: enough for JSON-RPC payloads, with static types inferred from it.
// ---------------------------------------------------------------------------------------------
export type Shape =
  | { readonly t: 'string' }
  | { readonly t: 'number' }
  | { readonly t: 'integer' }
  | { readonly t: 'boolean' }
  | { readonly t: 'null' }
  | { readonly t: 'any' }
  | { readonly t: 'literal'; readonly values: readonly string[] }
  | { readonly t: 'array'; readonly item: Shape }
  | { readonly t: 'record'; readonly item: Shape }
  | { readonly t: 'object'; readonly fields: Readonly<Record<string, Shape | Optional>> }
  | { readonly t: 'union'; readonly options: readonly Shape[] };

export interface Optional<S extends Shape = Shape> {
  readonly t: 'optional';
  readonly inner: S;
}

const string = { t: 'string' } as const;
const number = { t: 'number' } as const;
const integer = { t: 'integer' } as const;
const boolean = { t: 'boolean' } as const;
const nul = { t: 'null' } as const;
const any = { t: 'any' } as const;
const literal = <const V extends readonly string[]>(...values: V) => ({ t: 'literal', values }) as const;
const array = <const S extends Shape>(item: S) => ({ t: 'array', item }) as const;
const record = <const S extends Shape>(item: S) => ({ t: 'record', item }) as const;
const object = <const F extends Record<string, Shape | Optional>>(fields: F) => ({ t: 'object', fields }) as const;
const union = <const O extends readonly Shape[]>(...options: O) => ({ t: 'union', options }) as const;
const optional = <const S extends Shape>(inner: S): Optional<S> => ({ t: 'optional', inner });

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type RequiredKeys<F> = { [K in keyof F]: F[K] extends Optional ? never : K }[keyof F];
type OptionalKeys<F> = { [K in keyof F]: F[K] extends Optional ? K : never }[keyof F];

/** The static type a shape describes. */
export type Infer<S> = S extends { t: 'string' }
  ? string
  : S extends { t: 'number' } | { t: 'integer' }
    ? number
    : S extends { t: 'boolean' }
      ? boolean
      : S extends { t: 'null' }
        ? null
        : S extends { t: 'any' }
          ? unknown
          : S extends { t: 'literal'; values: readonly (infer V)[] }
            ? V
            : S extends { t: 'array'; item: infer I }
              ? Infer<I>[]
              : S extends { t: 'record'; item: infer I }
                ? Record<string, Infer<I>>
                : S extends { t: 'union'; options: readonly (infer O)[] }
                  ? Infer<O>
                  : S extends { t: 'object'; fields: infer F }
                    ? Simplify<
                        { [K in RequiredKeys<F>]: Infer<F[K]> } & {
                          [K in OptionalKeys<F>]?: F[K] extends Optional<infer I> ? Infer<I> : never;
                        }
                      >
                    : never;

// ---------------------------------------------------------------------------------------------
// Method names, commands, constants
// ---------------------------------------------------------------------------------------------
export const LINEAGE = 'bonsai/lineage';
export const RUN = 'bonsai/run';
export const JOBS = 'bonsai/jobs';
export const CANCEL = 'bonsai/cancel';
export const COMPARE_WEIGHTS = 'bonsai/compare/weights';
export const COMPARE_ACTIVATIONS = 'bonsai/compare/activations';
export const COMPARE_BEHAVIOR = 'bonsai/compare/behavior';
export const TENSOR_TILES = 'bonsai/tensor/tiles';
export const INSTANCES = 'bonsai/instances';
export const RESULT_PAGE = 'bonsai/result/page';
export const MODEL_DELETE = 'bonsai/model/delete';
export const MODEL_EXPORT = 'bonsai/model/export';
export const MODEL_MEASURE = 'bonsai/model/measure';
export const EXPERIMENT_CREATE = 'bonsai/experiment/create';
export const EXPERIMENT_FACTORIES = 'bonsai/experiment/factories';
export const REPORT = 'bonsai/report';
export const SCAN = 'bonsai/scan';
export const SCANS = 'bonsai/scans';
export const SCAN_BUDGET = 'bonsai/scan/budget';
export const LINEAGE_CHANGED = 'bonsai/lineageChanged';
export const JOB_CHANGED = 'bonsai/jobChanged';

/** Commands the client registers; the server's CodeLenses carry them with these arguments. */
export const CMD_RUN_VARIANT = 'bonsai.runVariant'; // (fileUri, variantName)
export const CMD_COMPARE_WITH_PARENT = 'bonsai.compareWithParent'; // (fileUri, variantName)
export const CMD_SHOW_IN_MODEL_MAP = 'bonsai.showInModelMap'; // (fileUri, variantName)
export const CMD_SHOW_SWEEP = 'bonsai.showSweep'; // (fileUri, variantName, SweepRow[]): a sweep's models, one a line
export const CMD_CREATE_EXPERIMENT_FILE = 'bonsai.createExperimentFile'; // (modelUri[, function])
export const CMD_INSPECT_MODEL = 'bonsai.inspectModel'; // (configUri)

export const EXPERIMENT_GLOB = '**/*.bonsai.yaml';
export const EXPERIMENT_SUFFIX = '.bonsai.yaml';
/** A msgpack page carried inline is at most this many bytes before base64. */
export const MAX_INLINE_PAGE_BYTES = 4 * 1024 * 1024;

export const ErrorCodes = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  requestCancelled: -32800,
  workspaceUntrusted: -32001,
  notFound: -32002,
  userError: -32003,
  jobFailed: -32004,
  /** model/export into a folder that holds files: the message names what a forced export replaces
   * and keeps; ask the user, then re-send with `force: true`. */
  exportExists: -32005,
} as const;

// ---------------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------------
const progressToken = union(integer, string);
const device = literal('auto', 'cpu', 'cuda', 'mps');
const modelStatus = literal('ok', 'running', 'failed', 'broken', 'stale');
const jobKind = literal('run', 'compare');
const jobState = literal('queued', 'running', 'done', 'failed', 'cancelled');
export const JOB_FINAL_STATES: readonly string[] = ['done', 'failed', 'cancelled'];

export const Shapes = {
  InitializationOptions: object({
    storagePath: optional(string),
    device: optional(device),
    maxInstances: optional(integer),
    trusted: optional(boolean),
  }),
  Empty: object({}),
  LineageParams: object({ folder: optional(string) }),
  /** What a metric is: sent once per lineage reply (LineageResult.metrics), not per model. */
  MetricDef: object({ name: string, unit: string, higherIsBetter: boolean, headline: boolean }),
  /** How far a model's metric can be trusted; only metrics measured in rounds have one (latency).
   * `spread` (the metric's unit): how far above the value the rounds' medians' upper quartile lies
   * (error bars run from value to value + spread); `noisy`: the rounds disagreed too much to trust
   * the figure; `note`: why, for a tooltip (noisy ones). */
  MetricSpread: object({ spread: number, noisy: boolean, note: optional(string) }),
  /** A model's metric with its definition, as `lineageModels` assembles it (not sent as such).
   * `key` tells it from another definition under the same name (see `MetricKeys`); `spread`,
   * `noisy` and `note` come from the model's `spreads`. */
  MetricInfo: object({
    key: string,
    name: string,
    value: number,
    unit: string,
    higherIsBetter: boolean,
    headline: boolean,
    spread: optional(number),
    noisy: optional(boolean),
    note: optional(string),
  }),
  ExperimentRef: object({ file: string, variant: string }),
  /** A model as bonsai/lineage sends it. */
  ModelInfo: object({
    id: string,
    name: string,
    parent: union(string, nul),
    op: union(string, nul),
    params: record(any),
    status: modelStatus,
    statusReason: optional(string),
    /** metric key (LineageResult.metrics) -> value */
    metrics: record(number),
    experiment: optional(object({ file: string, variant: string })),
    created: string,
    /** other variants' (or steps') names that resolve to this model: same fingerprint, made once */
    aliases: optional(array(string)),
    /** a model imported from another tool (`bonsai import-cc`): recipe and metrics, no weights */
    imported: optional(object({ tool: string, file: string, id: string })),
    /** metric key -> its spread, for the metrics that have one (latency) */
    spreads: optional(record(object({ spread: number, noisy: boolean, note: optional(string) }))),
    /** the seed its ops ran with, and what its metrics were evaluated on (task hash, instances
     * "evaluated/total"): the rest of its recipe, which the Model Map's recipe diff compares */
    seed: optional(integer),
    evaluation: optional(object({ task: string, instances: string })),
  }),
  RunParams: object({
    file: string,
    variants: optional(array(string)),
    force: optional(boolean),
    workDoneToken: optional(progressToken),
  }),
  RunResult: object({ jobId: string }),
  JobInfo: object({
    id: string,
    kind: jobKind,
    title: string,
    state: jobState,
    position: optional(integer),
    progress: optional(number),
    message: optional(string),
  }),
  CancelParams: object({ jobId: string }),
  CancelResult: object({ cancelled: boolean }),
  CompareParams: object({
    base: string,
    models: array(string),
    options: optional(record(any)),
    workDoneToken: optional(progressToken),
  }),
  TilesParams: object({
    model: string,
    tensor: string,
    other: optional(string),
    source: optional(literal('weight', 'activation')), // activation: `tensor` is a module name
    instances: optional(array(string)), // activation tiles: instance ids, one row each
    level: integer,
    x0: integer,
    y0: integer,
    x1: integer,
    y1: integer,
  }),
  InstancesParams: object({ ids: array(string), models: optional(array(string)) }),
  ResultPageParams: object({ resultId: string, page: integer }),
  ResultRef: object({
    resultId: string,
    /** The job computing this result (cancel it with bonsai/cancel); absent when no job made it. */
    jobId: optional(string),
    page: integer,
    pages: integer,
    done: boolean,
    data: optional(string),
    file: optional(object({ path: string, size: integer, sha256: string })),
  }),
  DeleteParams: object({ id: string, recursive: optional(boolean) }),
  DeleteResult: object({ deleted: array(string) }),
  // force: replace the export files in a non-empty `dir` (else exportExists); other files are kept
  ExportParams: object({ id: string, dir: string, format: literal('hf', 'safetensors', 'onnx', 'executorch'), force: optional(boolean) }),
  /** a folder's lineage as one self-contained HTML page; `compare`: a base, then others */
  ReportParams: object({ folder: string, path: string, compare: optional(array(string)) }),
  PathResult: object({ path: string }),
  /** Measure these models' latency again (ids or names), each with its base in turn: a job. */
  MeasureParams: object({ ids: array(string), workDoneToken: optional(progressToken) }),
  /** configPath: the model's file (config.json, a .py, a .safetensors); function: which function of
   * the .py returns the model; factory: "file.py:function" that builds a .safetensors' architecture. */
  CreateExperimentParams: object({ configPath: string, function: optional(string), factory: optional(string) }),
  FactoriesParams: object({ path: string }),
  ModelFactoryInfo: object({
    file: string,
    function: string,
    kind: literal('function', 'class'),
    /** 0-based line of its def/class. */
    line: integer,
    /** Parameters without a default: the starter cannot call it. */
    required: array(string),
  }),
  LineageChangedParams: object({ folder: string }),
  /** Measure a file's `scan:` section (or read it back when stored): a job (RunResult). */
  ScanParams: object({
    file: string,
    fidelity: optional(literal('proxy', 'full', 'both')),
    force: optional(boolean),
    workDoneToken: optional(progressToken),
  }),
  /** The stored scans of one experiment file, or of a workspace folder (default: the first). */
  ScansParams: object({ file: optional(string), folder: optional(string) }),
  /** scan/measure.py ScanResult.to_json: each [setting][unit] table has one row per setting. */
  ScanData: object({
    spec: object({
      settings: array(object({ op: string, params: record(any), label: string })),
      include: array(string),
      exclude: array(string),
      granularity: literal('layer', 'block'),
      fidelity: literal('proxy', 'full', 'both'),
      batches: integer,
      batchSize: integer,
      maxInstances: integer,
      seed: integer,
    }),
    /** layers (or blocks) in depth order, with the weights each holds */
    units: array(object({ name: string, params: array(string) })),
    baseBytes: array(integer),
    numel: array(integer),
    /** relative L2 error of the unit's outputs */
    proxy: union(array(array(union(number, nul))), nul),
    /** loss against the base in the metric's unit (base - model when higher is better) */
    full: union(array(array(union(number, nul))), nul),
    bytes: array(array(union(integer, nul))),
    /** "setting:unit" -> why that cell was not measured */
    skipped: record(string),
    metric: union(object({ name: string, unit: string, higherIsBetter: boolean, base: number }), nul),
    /** per setting: Spearman's rho of proxy and full (null: not both measured on 3+ units) */
    rankCorrelation: array(union(number, nul)),
  }),
  /** A recipe under one budget (maxBytes of the scanned weights, or maxLoss against the base);
   * with `file`, the edit that appends the variant to it. */
  ScanBudgetParams: object({
    scan: string,
    maxBytes: optional(integer),
    maxLoss: optional(number),
    name: optional(string),
    file: optional(string),
  }),
  ScanBudgetResult: object({
    /** false: no recipe meets the budget; this is the closest (`message` says its size) */
    feasible: boolean,
    message: string,
    choice: array(union(integer, nul)),
    bytes: integer,
    baseBytes: integer,
    loss: number,
    exact: boolean,
    name: string,
    /** the variant as YAML ("" when the recipe keeps every layer as in the base) */
    variant: string,
    /** where the variant goes in `file` (client position encoding) */
    edit: optional(object({ line: integer, character: integer, text: string })),
  }),
} as const;

/** `metrics`: metric key -> definition, once per reply; the key is the metric's name, or `name#2`,
 * ... for another definition under the same name. */
const lineageResult = object({ folder: string, metrics: record(Shapes.MetricDef), models: array(Shapes.ModelInfo) });
const jobsResult = object({ jobs: array(Shapes.JobInfo) });
const jobChangedParams = object({ job: Shapes.JobInfo });
const factoriesResult = object({ factories: array(Shapes.ModelFactoryInfo) });
const scansResult = object({
  folder: string,
  /** newest first */
  scans: array(object({ id: string, experimentFile: union(string, nul), created: number, result: Shapes.ScanData })),
});

export type InitializationOptions = Infer<typeof Shapes.InitializationOptions>;
export type LineageParams = Infer<typeof Shapes.LineageParams>;
export type MetricDef = Infer<typeof Shapes.MetricDef>;
export type MetricInfo = Infer<typeof Shapes.MetricInfo>;
/** A model as bonsai/lineage sends it: metric values by key. */
export type WireModelInfo = Infer<typeof Shapes.ModelInfo>;
/** A model as the extension uses it: each metric with its definition (see `lineageModels`). */
export type ModelInfo = Omit<WireModelInfo, 'metrics'> & { metrics: MetricInfo[] };
export type ModelStatus = ModelInfo['status'];
/** One model of a swept variant, as its CodeLens's "show all" lists it (CMD_SHOW_SWEEP). */
export interface SweepRow {
  name: string; // the expanded variant's name
  title: string; // its metrics, each against its parent and the base
  tooltip: string; // why a figure is marked ~ ("" when none is)
}
export type LineageResult = Infer<typeof lineageResult>;

/** What makes two metrics the same metric: name, unit and direction (not the headline flag, which
 * a task may change without changing what is measured). One string, comparable and a map key. */
export function metricIdentity(d: Pick<MetricDef, 'name' | 'unit' | 'higherIsBetter'>): string {
  return JSON.stringify([d.name, d.unit, d.higherIsBetter]);
}

/**
 * One key per metric definition (name, unit, direction), the same in every reply it is given: a
 * definition's key in one folder's reply can be another definition's in the next folder's, and
 * the views key metric values by it. Assigned as the server does (lsp/lineage.py MetricTable): the
 * name, or `name#2`, ... for another definition under the same name. The headline flag is not part
 * of the identity (a task that starts calling a metric headline does not split it in two); keys
 * are per session, so state saved across sessions is kept by definition (modelMap/state.ts).
 */
export class MetricKeys {
  private readonly byDef = new Map<string, string>();
  private readonly used = new Set<string>();

  key(d: Pick<MetricDef, 'name' | 'unit' | 'higherIsBetter'>): string {
    const def = metricIdentity(d);
    let key = this.byDef.get(def);
    if (key === undefined) {
      key = d.name;
      for (let n = 2; this.used.has(key); n++) key = `${d.name}#${n}`;
      this.byDef.set(def, key);
      this.used.add(key);
    }
    return key;
  }
}

export function lineageModels(reply: LineageResult, keys: MetricKeys = new MetricKeys()): ModelInfo[] {
  const known = new Map<string, MetricDef & { key: string }>();
  // The reply's own order first: a single reply keeps the server's keys.
  for (const [wireKey, d] of Object.entries(reply.metrics)) known.set(wireKey, { ...d, key: keys.key(d) });
  const def = (wireKey: string): MetricDef & { key: string } => {
    let d = known.get(wireKey);
    if (!d) {
      const bare = { name: wireKey, unit: '', higherIsBetter: true, headline: false };
      d = { ...bare, key: keys.key(bare) };
      known.set(wireKey, d);
    }
    return d;
  };
  return reply.models.map((m) => ({
    ...m,
    metrics: Object.entries(m.metrics).map(([wireKey, value]): MetricInfo => {
      const d = def(wireKey);
      const info: MetricInfo = { key: d.key, name: d.name, value, unit: d.unit, higherIsBetter: d.higherIsBetter, headline: d.headline };
      const s = m.spreads?.[wireKey];
      if (s) {
        info.spread = s.spread;
        info.noisy = s.noisy;
        if (s.note !== undefined) info.note = s.note;
      }
      return info;
    }),
  }));
}
export type RunParams = Infer<typeof Shapes.RunParams>;
export type RunResult = Infer<typeof Shapes.RunResult>;
export type JobInfo = Infer<typeof Shapes.JobInfo>;
export type JobsResult = Infer<typeof jobsResult>;
export type CancelParams = Infer<typeof Shapes.CancelParams>;
export type CancelResult = Infer<typeof Shapes.CancelResult>;
export type CompareParams = Infer<typeof Shapes.CompareParams>;
export type TilesParams = Infer<typeof Shapes.TilesParams>;
export type InstancesParams = Infer<typeof Shapes.InstancesParams>;
export type ResultPageParams = Infer<typeof Shapes.ResultPageParams>;
export type ResultRef = Infer<typeof Shapes.ResultRef>;
export type DeleteParams = Infer<typeof Shapes.DeleteParams>;
export type DeleteResult = Infer<typeof Shapes.DeleteResult>;
export type ExportParams = Infer<typeof Shapes.ExportParams>;
export type ReportParams = Infer<typeof Shapes.ReportParams>;
export type PathResult = Infer<typeof Shapes.PathResult>;
export type MeasureParams = Infer<typeof Shapes.MeasureParams>;
export type MetricSpread = Infer<typeof Shapes.MetricSpread>;
export type CreateExperimentParams = Infer<typeof Shapes.CreateExperimentParams>;
export type ModelFactoryInfo = Infer<typeof Shapes.ModelFactoryInfo>;
export type FactoriesResult = Infer<typeof factoriesResult>;
export type LineageChangedParams = Infer<typeof Shapes.LineageChangedParams>;
export type JobChangedParams = Infer<typeof jobChangedParams>;
export type ScanParams = Infer<typeof Shapes.ScanParams>;
export type ScansParams = Infer<typeof Shapes.ScansParams>;
export type ScanData = Infer<typeof Shapes.ScanData>;
export type ScansResult = Infer<typeof scansResult>;
export type ScanInfo = ScansResult['scans'][number];
export type ScanBudgetParams = Infer<typeof Shapes.ScanBudgetParams>;
export type ScanBudgetResult = Infer<typeof Shapes.ScanBudgetResult>;

export interface MethodDef {
  readonly name: string;
  readonly kind: 'request' | 'notification';
  readonly params: Shape;
  readonly result?: Shape;
  /** server -> client notification */
  readonly toClient?: boolean;
  readonly needsTrust?: boolean;
}

const defs: MethodDef[] = [
  { name: LINEAGE, kind: 'request', params: Shapes.LineageParams, result: lineageResult },
  { name: RUN, kind: 'request', params: Shapes.RunParams, result: Shapes.RunResult, needsTrust: true },
  { name: JOBS, kind: 'request', params: Shapes.Empty, result: jobsResult },
  { name: CANCEL, kind: 'request', params: Shapes.CancelParams, result: Shapes.CancelResult },
  { name: COMPARE_WEIGHTS, kind: 'request', params: Shapes.CompareParams, result: Shapes.ResultRef, needsTrust: true },
  { name: COMPARE_ACTIVATIONS, kind: 'request', params: Shapes.CompareParams, result: Shapes.ResultRef, needsTrust: true },
  { name: COMPARE_BEHAVIOR, kind: 'request', params: Shapes.CompareParams, result: Shapes.ResultRef, needsTrust: true },
  { name: TENSOR_TILES, kind: 'request', params: Shapes.TilesParams, result: Shapes.ResultRef, needsTrust: true },
  { name: INSTANCES, kind: 'request', params: Shapes.InstancesParams, result: Shapes.ResultRef, needsTrust: true },
  { name: RESULT_PAGE, kind: 'request', params: Shapes.ResultPageParams, result: Shapes.ResultRef },
  { name: MODEL_DELETE, kind: 'request', params: Shapes.DeleteParams, result: Shapes.DeleteResult },
  { name: MODEL_EXPORT, kind: 'request', params: Shapes.ExportParams, result: Shapes.PathResult, needsTrust: true },
  { name: EXPERIMENT_CREATE, kind: 'request', params: Shapes.CreateExperimentParams, result: Shapes.PathResult },
  { name: EXPERIMENT_FACTORIES, kind: 'request', params: Shapes.FactoriesParams, result: factoriesResult },
  { name: REPORT, kind: 'request', params: Shapes.ReportParams, result: Shapes.PathResult, needsTrust: true },
  { name: MODEL_MEASURE, kind: 'request', params: Shapes.MeasureParams, result: Shapes.RunResult, needsTrust: true },
  { name: SCAN, kind: 'request', params: Shapes.ScanParams, result: Shapes.RunResult, needsTrust: true },
  { name: SCANS, kind: 'request', params: Shapes.ScansParams, result: scansResult },
  { name: SCAN_BUDGET, kind: 'request', params: Shapes.ScanBudgetParams, result: Shapes.ScanBudgetResult },
  { name: LINEAGE_CHANGED, kind: 'notification', params: Shapes.LineageChangedParams, toClient: true },
  { name: JOB_CHANGED, kind: 'notification', params: jobChangedParams, toClient: true },
];

export const METHODS: ReadonlyMap<string, MethodDef> = new Map(defs.map((d) => [d.name, d]));

// ---------------------------------------------------------------------------------------------
// Validation (used on incoming notifications and by the fixture tests)
// ---------------------------------------------------------------------------------------------
/** LSP adds these to any request's params; they are never an error. */
const LSP_EXTRA_KEYS = new Set(['workDoneToken', 'partialResultToken']);

/** The first field of `value` that does not fit `shape`, described for a person; undefined if it fits. */
export function problem(value: unknown, shape: Shape | Optional, where = 'params'): string | undefined {
  switch (shape.t) {
    case 'optional':
      return problem(value, shape.inner, where);
    case 'any':
      return undefined;
    case 'string':
      return typeof value === 'string' ? undefined : `${where} must be a string, got ${show(value)}`;
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) ? undefined : `${where} must be a number, got ${show(value)}`;
    case 'integer':
      return Number.isInteger(value) ? undefined : `${where} must be an integer, got ${show(value)}`;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `${where} must be a boolean, got ${show(value)}`;
    case 'null':
      return value === null ? undefined : `${where} must be null, got ${show(value)}`;
    case 'literal':
      return typeof value === 'string' && shape.values.includes(value)
        ? undefined
        : `${where} must be ${shape.values.map((v) => `'${v}'`).join(' | ')}, got ${show(value)}`;
    case 'union':
      return shape.options.some((o) => problem(value, o, where) === undefined)
        ? undefined
        : `${where} does not match any allowed type, got ${show(value)}`;
    case 'array': {
      if (!Array.isArray(value)) return `${where} must be an array, got ${show(value)}`;
      for (let i = 0; i < value.length; i++) {
        const p = problem(value[i], shape.item, `${where}[${i}]`);
        if (p) return p;
      }
      return undefined;
    }
    case 'record':
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        return `${where} must be an object, got ${show(value)}`;
      }
      const obj = value as Record<string, unknown>;
      if (shape.t === 'record') {
        for (const [k, v] of Object.entries(obj)) {
          const p = problem(v, shape.item, `${where}.${k}`);
          if (p) return p;
        }
        return undefined;
      }
      for (const [k, f] of Object.entries(shape.fields)) {
        if (f.t !== 'optional' && !(k in obj)) return `${where}.${k} is missing`;
      }
      for (const [k, v] of Object.entries(obj)) {
        const f = shape.fields[k];
        if (!f) {
          if (LSP_EXTRA_KEYS.has(k)) continue;
          return `${where}.${k} is not a known field (known: ${Object.keys(shape.fields).sort().join(', ') || 'none'})`;
        }
        const p = problem(v, f, `${where}.${k}`);
        if (p) return p;
      }
      return undefined;
    }
  }
}

/** Narrowing check: `value` has the type `shape` describes. */
export function is<S extends Shape>(value: unknown, shape: S): value is Infer<S> {
  return problem(value, shape) === undefined;
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= 60 ? text : `${text.slice(0, 57)}...`;
}
