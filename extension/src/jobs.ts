/**
 * Jobs the server runs: a progress notification per running job, fed by bonsai/jobChanged,
 * with a Cancel button that sends bonsai/cancel. Driving progress from the job notifications
 * (not from a request's work-done token) covers jobs started from anywhere: CodeLens, palette,
 * another window's CLI, a job that was queued before this window opened.
 */
import * as vscode from 'vscode';
import * as P from '../shared/protocol';
import { errorText } from '../shared/errors';

export interface JobServer {
  onJobChanged: vscode.Event<P.JobInfo>;
  request<R>(method: string, params: unknown): Promise<R>;
}

interface Tracked {
  job: P.JobInfo;
  progress?: vscode.Progress<{ message?: string; increment?: number }>;
  reported: number;
  finish?: () => void;
}

export class JobTracker implements vscode.Disposable {
  private readonly jobs = new Map<string, Tracked>();
  private readonly changed = new vscode.EventEmitter<void>();
  private readonly sub: vscode.Disposable;
  readonly onDidChange = this.changed.event;

  constructor(
    private readonly server: JobServer,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.sub = server.onJobChanged((job) => this.update(job));
  }

  get active(): P.JobInfo[] {
    return [...this.jobs.values()].map((t) => t.job).filter((j) => !P.JOB_FINAL_STATES.includes(j.state));
  }

  /** Seeds from bonsai/jobs (jobs that started before this client connected). */
  async refresh(): Promise<void> {
    const { jobs } = await this.server.request<P.JobsResult>(P.JOBS, {});
    for (const j of jobs) this.update(j);
  }

  update(job: P.JobInfo): void {
    let t = this.jobs.get(job.id);
    const final = P.JOB_FINAL_STATES.includes(job.state);
    if (!t) {
      if (final) {
        this.reportEnd(job);
        return;
      }
      t = { job, reported: 0 };
      this.jobs.set(job.id, t);
      this.show(t);
    }
    t.job = job;
    if (t.progress) {
      const fraction = Math.max(0, Math.min(1, job.progress ?? 0));
      const increment = Math.max(0, fraction * 100 - t.reported);
      t.reported += increment;
      t.progress.report({ message: jobMessage(job), increment });
    }
    if (final) {
      t.finish?.();
      this.jobs.delete(job.id);
      this.reportEnd(job);
    }
    this.changed.fire();
  }

  private show(t: Tracked): void {
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: t.job.title, cancellable: true },
      (progress, token) =>
        new Promise<void>((resolve) => {
          t.progress = progress;
          t.finish = resolve;
          progress.report({ message: jobMessage(t.job) });
          token.onCancellationRequested(() => {
            void this.cancel(t.job.id);
          });
        }),
    );
  }

  async cancel(jobId: string): Promise<boolean> {
    try {
      const r = await this.server.request<P.CancelResult>(P.CANCEL, { jobId });
      this.log.info(`Cancel ${jobId}: ${r.cancelled ? 'cancelled' : 'already finished'}`);
      return r.cancelled;
    } catch (e) {
      void vscode.window.showErrorMessage(`Could not cancel the job: ${errorText(e)}`);
      return false;
    }
  }

  private reportEnd(job: P.JobInfo): void {
    if (job.state === 'failed') {
      void vscode.window.showErrorMessage(`${job.title} failed${job.message ? `: ${job.message}` : ''}`, 'Show Logs').then((pick) => {
        if (pick) this.log.show();
      });
    } else if (job.state === 'cancelled') {
      void vscode.window.showInformationMessage(`${job.title}: cancelled.`);
    }
  }

  dispose(): void {
    for (const t of this.jobs.values()) t.finish?.();
    this.jobs.clear();
    this.sub.dispose();
    this.changed.dispose();
  }
}

export function jobMessage(job: P.JobInfo): string {
  if (job.state === 'queued') return job.position ? `queued (#${job.position})` : 'queued';
  const pct = job.progress !== undefined ? `${Math.round(job.progress * 100)}%` : '';
  return [pct, job.message].filter(Boolean).join(' — ');
}
