import { describe, expect, it } from 'vitest';
import { ModuleTree, navigate, parseFilter, rollUp, visibleRows } from '../../../webview/layers/tree';

function tree(): ModuleTree {
  const t = new ModuleTree();
  for (const n of ['emb.weight', 'layers.0.q.weight', 'layers.0.q.bias', 'layers.0.norm.weight', 'layers.1.q.weight', 'head.weight']) t.addTensor(n);
  t.addModule('layers.1.act'); // a module without parameters (activations only)
  return t;
}

describe('ModuleTree', () => {
  it('has a version that moves with every node added, and only then', () => {
    const t = new ModuleTree();
    const v0 = t.version;
    t.addTensor('a.b.weight'); // a, a.b and the tensor
    expect(t.version).toBe(v0 + 3);
    t.addModule('a.b');
    t.addTensor('a.b.weight');
    expect(t.version).toBe(v0 + 3); // already there: nothing changed
  });

  it('builds modules and tensors in first-seen order', () => {
    const t = tree();
    expect(t.order()).toEqual([
      '', 'emb', 'emb.weight', 'layers', 'layers.0', 'layers.0.q', 'layers.0.q.weight', 'layers.0.q.bias',
      'layers.0.norm', 'layers.0.norm.weight', 'layers.1', 'layers.1.q', 'layers.1.q.weight', 'layers.1.act', 'head', 'head.weight',
    ]);
    expect(t.get('layers.0.q.bias')).toMatchObject({ label: 'bias', parent: 'layers.0.q', depth: 4, kind: 'tensor' });
    expect(t.isLeafModule('layers.0.q')).toBe(true);
    expect(t.isLeafModule('layers.0')).toBe(false);
  });

  it('rolls up: own values stay, containers without one show the worst child', () => {
    const t = tree();
    const own: Record<string, number> = { 'layers.0.q': 0.1, 'layers.0.norm': 0.9, 'layers.1.q': 0.3, emb: 0.05, 'layers.0.q.weight': 0.2 };
    const r = rollUp(t, (id) => own[id] ?? null, 'higher');
    expect(r.get('layers.0')).toEqual({ value: 0.9, rolled: true, worst: 0.9, worstId: 'layers.0.norm' });
    expect(r.get('layers')).toEqual({ value: 0.9, rolled: true, worst: 0.9, worstId: 'layers.0.norm' });
    expect(r.get('layers.0.q')).toEqual({ value: 0.1, rolled: false, worst: 0.2, worstId: 'layers.0.q.weight' });
    expect(r.get('layers.1.act')).toEqual({ value: null, rolled: false, worst: null, worstId: null });
    expect(r.get('')!.value).toBe(0.9);
    const low = rollUp(t, (id) => own[id] ?? null, 'lower');
    expect(low.get('')).toEqual({ value: 0.05, rolled: true, worst: 0.05, worstId: 'emb' });
  });

  it('shows expanded rows, and filter hits with their ancestors', () => {
    const t = tree();
    const ids = (rows: ReturnType<typeof visibleRows>) => rows.map((r) => r.node.id);
    expect(ids(visibleRows(t, new Set(['']), null))).toEqual(['', 'emb', 'layers', 'head']);
    expect(ids(visibleRows(t, new Set(['', 'layers']), null))).toEqual(['', 'emb', 'layers', 'layers.0', 'layers.1', 'head']);
    const f = parseFilter('norm');
    expect(ids(visibleRows(t, new Set(), f.match))).toEqual(['', 'layers', 'layers.0', 'layers.0.norm', 'layers.0.norm.weight']);
    const rx = parseFilter('/^layers\\.\\d+\\.q$/');
    const rows = visibleRows(t, new Set(), rx.match);
    expect(ids(rows)).toEqual(['', 'layers', 'layers.0', 'layers.0.q', 'layers.1', 'layers.1.q']);
    expect(rows.filter((r) => r.hit).map((r) => r.node.id)).toEqual(['layers.0.q', 'layers.1.q']);
    expect(parseFilter('/[/').error).toMatch(/invalid regular expression/);
  });

  it('navigates with the keyboard', () => {
    const t = tree();
    const rows = visibleRows(t, new Set(['', 'layers']), null);
    expect(navigate(rows, 0, 'ArrowDown')).toEqual({ index: 1 });
    expect(navigate(rows, 2, 'ArrowRight')).toEqual({ index: 3 }); // expanded: to first child
    expect(navigate(rows, 3, 'ArrowRight')).toEqual({ index: 3, expand: 'layers.0' });
    expect(navigate(rows, 3, 'ArrowLeft')).toEqual({ index: 2 }); // collapsed: to parent
    expect(navigate(rows, 2, 'ArrowLeft')).toEqual({ index: 2, collapse: 'layers' });
    expect(navigate(rows, 4, 'End')).toEqual({ index: 5 });
    expect(navigate(rows, 4, 'x')).toBeNull();
  });
});
