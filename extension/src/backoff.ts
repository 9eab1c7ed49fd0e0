/**
 * When to restart a crashed server. Pure (no vscode import) so it is unit-tested directly.
 *
 * Crashes close together mean something is wrong that a restart will not fix (a broken install,
 * a bad interpreter): after `maxRestarts` crashes inside `windowMs` we stop and say why, instead
 * of flapping forever. Each restart waits longer than the one before.
 */
export interface BackoffOptions {
  maxRestarts: number;
  windowMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  maxRestarts: 4,
  windowMs: 3 * 60_000,
  baseDelayMs: 500,
  maxDelayMs: 8_000,
};

export type CrashDecision = { restart: true; delayMs: number; attempt: number } | { restart: false; crashes: number };

export class RestartPolicy {
  private crashes: number[] = [];

  constructor(
    private readonly options: BackoffOptions = DEFAULT_BACKOFF,
    private readonly now: () => number = Date.now,
  ) {}

  /** Record a crash and decide what to do about it. */
  onCrash(): CrashDecision {
    const t = this.now();
    this.crashes = this.crashes.filter((c) => t - c < this.options.windowMs);
    this.crashes.push(t);
    const attempt = this.crashes.length;
    if (attempt > this.options.maxRestarts) return { restart: false, crashes: attempt };
    const delayMs = Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** (attempt - 1));
    return { restart: true, delayMs, attempt };
  }

  /** A deliberate (re)start — settings change, the Restart command — forgets past crashes. */
  reset(): void {
    this.crashes = [];
  }
}
