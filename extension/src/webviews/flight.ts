/**
 * A webview request whose result the server is still computing, and how to stop it. Cancelling
 * sends `bonsai/cancel` for every job its result refs named (the server's worker stops at its
 * next step) and cancels the LSP requests still waiting ($/cancelRequest: a comparison that has
 * not answered yet is cancelled by the server through its request id). Webviews never talk to
 * the server: the panel's host does this for them.
 */
import * as vscode from 'vscode';
import * as P from '../../shared/protocol';
import { errorText } from '../../shared/errors';

export interface FlightServer {
  request<R>(method: string, params: unknown, token?: vscode.CancellationToken): Promise<R>;
}

export class Flight {
  private readonly source = new vscode.CancellationTokenSource();
  private readonly jobs = new Set<string>();
  private cancelledValue = false;

  constructor(
    private readonly server: FlightServer,
    private readonly log: Pick<vscode.LogOutputChannel, 'warn'>,
  ) {}

  get cancelled(): boolean {
    return this.cancelledValue;
  }

  /** A request to the server on behalf of this flight: cancelled with it, its ref's job noted. */
  async request<R>(method: string, params: unknown): Promise<R> {
    if (this.cancelledValue) throw cancelledError(method);
    const result = await this.server.request<R>(method, params, this.source.token);
    this.track(result as P.ResultRef);
    return result;
  }

  /** Notes the job a ref names; one learned after the cancel (a reply racing it) is cancelled too. */
  track(ref: Partial<P.ResultRef> | undefined): void {
    const jobId = ref?.jobId;
    if (typeof jobId !== 'string' || this.jobs.has(jobId)) return;
    this.jobs.add(jobId);
    if (this.cancelledValue) void this.cancelJob(jobId);
  }

  /** Stops the flight: its pending requests and every job it learned of. Idempotent. */
  async cancel(): Promise<void> {
    if (this.cancelledValue) return;
    this.cancelledValue = true;
    this.source.cancel();
    await Promise.all([...this.jobs].map((id) => this.cancelJob(id)));
  }

  private async cancelJob(jobId: string): Promise<void> {
    try {
      await this.server.request<P.CancelResult>(P.CANCEL, { jobId });
    } catch (e) {
      // The server may be gone or the job finished: nothing left to stop.
      this.log.warn(`Cancel ${jobId}: ${errorText(e)}`);
    }
  }
}

function cancelledError(method: string): Error {
  return Object.assign(new Error(`${method}: cancelled`), { code: P.ErrorCodes.requestCancelled });
}

/** True for the error of a request the server answered as cancelled (LSP's RequestCancelled). */
export function isCancelledError(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === P.ErrorCodes.requestCancelled;
}
