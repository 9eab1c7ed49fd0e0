import { describe, expect, it } from 'vitest';
import { RestartPolicy } from '../../src/backoff';

describe('RestartPolicy', () => {
  const opts = { maxRestarts: 3, windowMs: 60_000, baseDelayMs: 500, maxDelayMs: 1500 };

  it('restarts with growing, capped delays, then gives up', () => {
    let t = 0;
    const p = new RestartPolicy(opts, () => t);
    expect(p.onCrash()).toEqual({ restart: true, delayMs: 500, attempt: 1 });
    t += 1000;
    expect(p.onCrash()).toEqual({ restart: true, delayMs: 1000, attempt: 2 });
    t += 1000;
    expect(p.onCrash()).toEqual({ restart: true, delayMs: 1500, attempt: 3 });
    t += 1000;
    expect(p.onCrash()).toEqual({ restart: false, crashes: 4 });
  });

  it('forgets crashes older than the window', () => {
    let t = 0;
    const p = new RestartPolicy(opts, () => t);
    p.onCrash();
    p.onCrash();
    p.onCrash();
    t += 61_000;
    expect(p.onCrash()).toEqual({ restart: true, delayMs: 500, attempt: 1 });
  });

  it('a deliberate restart resets the count', () => {
    const p = new RestartPolicy(opts, () => 0);
    for (let i = 0; i < 4; i++) p.onCrash();
    p.reset();
    expect(p.onCrash()).toMatchObject({ restart: true, attempt: 1 });
  });
});
