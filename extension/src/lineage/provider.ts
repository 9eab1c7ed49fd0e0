/** The Lineage TreeDataProvider: bonsai/lineage per workspace folder, refreshed live. */
import * as vscode from 'vscode';
import * as P from '../../shared/protocol';
import { buildForest, contextValue, describe, statusIcon, tooltipMarkdown, treeLabel, type LineageNode } from './model';
import { errorText } from '../../shared/errors';

export interface LineageSource {
  request<R>(method: string, params: unknown): Promise<R>;
}

export class LineageProvider implements vscode.TreeDataProvider<LineageNode>, vscode.Disposable {
  private roots: LineageNode[] = [];
  private byId = new Map<string, LineageNode>();
  private parents = new Map<string, LineageNode>();
  private readonly emitter = new vscode.EventEmitter<LineageNode | undefined>();
  private readonly loadedEmitter = new vscode.EventEmitter<P.ModelInfo[]>();
  readonly onDidChangeTreeData = this.emitter.event;
  /** Fires with every model after each successful load. */
  readonly onDidLoad = this.loadedEmitter.event;
  /** Kept for the session, so that a metric keeps its key (a view's chosen axis) across reloads. */
  private readonly metricKeys = new P.MetricKeys();
  private allMetrics: P.MetricInfo[] = [];
  /** Why the tree is empty or stale; shown as the view's message. */
  message: string | undefined;

  constructor(private readonly source: LineageSource) {}

  get models(): P.ModelInfo[] {
    return [...this.byId.values()].map((n) => n.model);
  }

  node(id: string): LineageNode | undefined {
    return this.byId.get(id);
  }

  model(id: string): P.ModelInfo | undefined {
    return this.byId.get(id)?.model;
  }

  /** Reloads every workspace folder's lineage (one request each). */
  async refresh(): Promise<void> {
    const folders = vscode.workspace.workspaceFolders ?? [];
    try {
      const results = await Promise.all(
        folders.length ? folders.map((f) => this.source.request<P.LineageResult>(P.LINEAGE, { folder: f.uri.fsPath })) : [this.source.request<P.LineageResult>(P.LINEAGE, {})],
      );
      this.setModels(results.flatMap((r) => P.lineageModels(r, this.metricKeys)));
      this.message = undefined;
    } catch (e) {
      this.message = `Could not read the lineage: ${errorText(e)}`;
    }
    this.emitter.fire(undefined);
  }

  setModels(models: P.ModelInfo[]): void {
    this.roots = buildForest(models);
    // one entry per metric definition in the lineage: the names a tree item is told apart among
    this.allMetrics = [...new Map(models.flatMap((m) => m.metrics).map((x) => [x.key, x] as const)).values()];
    this.byId.clear();
    this.parents.clear();
    const walk = (list: LineageNode[], parent?: LineageNode) => {
      for (const n of list) {
        this.byId.set(n.model.id, n);
        if (parent) this.parents.set(n.model.id, parent);
        walk(n.children, n);
      }
    };
    walk(this.roots);
    this.loadedEmitter.fire(models);
  }

  clear(message: string): void {
    this.roots = [];
    this.byId.clear();
    this.parents.clear();
    this.message = message;
    this.emitter.fire(undefined);
  }

  getChildren(element?: LineageNode): LineageNode[] {
    return element ? element.children : this.roots;
  }

  getParent(element: LineageNode): LineageNode | undefined {
    return this.parents.get(element.model.id);
  }

  getTreeItem(node: LineageNode): vscode.TreeItem {
    const m = node.model;
    const item = new vscode.TreeItem(
      treeLabel(m),
      node.children.length ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
    );
    item.id = m.id;
    item.description = describe(m, this.allMetrics);
    const parent = m.parent ? this.byId.get(m.parent)?.model : undefined;
    const md = new vscode.MarkdownString(tooltipMarkdown(m, parent, this.allMetrics));
    md.supportThemeIcons = true;
    item.tooltip = md;
    const icon = statusIcon(m);
    item.iconPath = new vscode.ThemeIcon(icon.id, icon.color ? new vscode.ThemeColor(icon.color) : undefined);
    item.contextValue = contextValue(m);
    item.accessibilityInformation = { label: `${treeLabel(m)}, ${item.description}` };
    return item;
  }

  dispose(): void {
    this.emitter.dispose();
    this.loadedEmitter.dispose();
  }
}
