/** The language status item: starting / ready / busy with N jobs / stopped; it opens the log. */
import * as vscode from 'vscode';
import * as P from '../shared/protocol';
import type { ServerState } from './server';

export interface StatusView {
  text: string;
  detail: string;
  busy: boolean;
  severity: 'information' | 'warning' | 'error';
}

/** Pure, so the wording is unit-tested. */
export function statusView(state: ServerState, activeJobs: number, trusted: boolean): StatusView {
  const restricted = trusted ? '' : ' (Restricted Mode: models are not loaded)';
  switch (state.kind) {
    case 'starting':
      return { text: 'Bonsai: starting', detail: 'Starting the language server…', busy: true, severity: 'information' };
    case 'ready':
      if (activeJobs > 0) {
        return {
          text: `Bonsai: busy, ${activeJobs} ${activeJobs === 1 ? 'job' : 'jobs'}`,
          detail: 'Running compression jobs',
          busy: true,
          severity: 'information',
        };
      }
      return { text: 'Bonsai: ready', detail: `Language server running${restricted}`, busy: false, severity: trusted ? 'information' : 'warning' };
    case 'stopped':
      return { text: 'Bonsai: stopped', detail: state.reason, busy: false, severity: 'error' };
  }
}

export class StatusItem implements vscode.Disposable {
  private readonly item: vscode.LanguageStatusItem;

  constructor() {
    this.item = vscode.languages.createLanguageStatusItem('bonsai.status', [
      { scheme: 'file', pattern: `**/*${P.EXPERIMENT_SUFFIX}` },
      { scheme: 'file', pattern: '**/config.json' },
    ]);
    this.item.name = 'Bonsai';
    this.item.command = { title: 'Show Logs', command: 'bonsai.showLogs' };
  }

  update(state: ServerState, activeJobs: number): void {
    const v = statusView(state, activeJobs, vscode.workspace.isTrusted);
    this.item.text = v.text;
    this.item.detail = v.detail;
    this.item.busy = v.busy;
    this.item.severity =
      v.severity === 'error'
        ? vscode.LanguageStatusSeverity.Error
        : v.severity === 'warning'
          ? vscode.LanguageStatusSeverity.Warning
          : vscode.LanguageStatusSeverity.Information;
  }

  dispose(): void {
    this.item.dispose();
  }
}
