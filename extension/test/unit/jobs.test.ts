// Jobs: a progress notification per job from bonsai/jobChanged; Cancel sends bonsai/cancel.
import { describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';
import { JobTracker, jobMessage } from '../../src/jobs';
import type { JobInfo } from '../../shared/protocol';

const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn(), show: vi.fn() } as unknown as vscode.LogOutputChannel;

function setup() {
  const emitter = new vscode.EventEmitter<JobInfo>();
  const requests: [string, unknown][] = [];
  const server = {
    onJobChanged: emitter.event,
    request: async <R>(method: string, params: unknown) => {
      requests.push([method, params]);
      return (method === 'bonsai/cancel' ? { cancelled: true } : { jobs: [] }) as R;
    },
  };
  const reports: unknown[] = [];
  const cts = new vscode.CancellationTokenSource();
  let done: Promise<unknown> | undefined;
  (vscode.window.withProgress as ReturnType<typeof vi.fn>).mockImplementation((_o: unknown, task: (p: unknown, t: unknown) => Promise<unknown>) => {
    done = task({ report: (r: unknown) => reports.push(r) }, cts.token);
    return done;
  });
  const tracker = new JobTracker(server, log);
  return { emitter, requests, reports, cts, tracker, done: () => done };
}

describe('JobTracker', () => {
  it('reports progress increments and ends the notification when the job ends', async () => {
    const { emitter, reports, tracker, done } = setup();
    const job: JobInfo = { id: 'j1', kind: 'run', title: 'Run prune-50', state: 'queued', position: 2 };
    emitter.fire(job);
    expect(tracker.active.map((j) => j.id)).toEqual(['j1']);
    emitter.fire({ ...job, state: 'running', progress: 0.25, message: 'pruning' });
    emitter.fire({ ...job, state: 'running', progress: 0.75, message: 'evaluating' });
    emitter.fire({ ...job, state: 'done', progress: 1 });
    await done();
    expect(reports).toEqual([
      { message: 'queued (#2)' },
      { message: 'queued (#2)', increment: 0 },
      { message: '25% — pruning', increment: 25 },
      { message: '75% — evaluating', increment: 50 },
      { message: '100%', increment: 25 },
    ]);
    expect(tracker.active).toEqual([]);
  });

  it('Cancel sends bonsai/cancel for the job', async () => {
    const { emitter, requests, cts } = setup();
    emitter.fire({ id: 'j2', kind: 'compare', title: 'Compare', state: 'running', progress: 0.1 });
    cts.cancel();
    await new Promise((r) => setTimeout(r, 0));
    expect(requests).toContainEqual(['bonsai/cancel', { jobId: 'j2' }]);
  });

  it('a failed job shows its message', async () => {
    const { emitter } = setup();
    const shown = vscode.window.showErrorMessage as ReturnType<typeof vi.fn>;
    shown.mockClear();
    emitter.fire({ id: 'j3', kind: 'run', title: 'Run int8', state: 'running' });
    emitter.fire({ id: 'j3', kind: 'run', title: 'Run int8', state: 'failed', message: 'quantize.weights: bits must be 2..8' });
    expect(shown).toHaveBeenCalledWith('Run int8 failed: quantize.weights: bits must be 2..8', 'Show Logs');
  });

  it('words queued and running jobs', () => {
    expect(jobMessage({ id: 'j', kind: 'run', title: 't', state: 'queued' })).toBe('queued');
    expect(jobMessage({ id: 'j', kind: 'run', title: 't', state: 'running', progress: 0.5 })).toBe('50%');
  });
});
