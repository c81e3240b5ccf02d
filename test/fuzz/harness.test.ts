// The fuzz harness itself, on the selftest property: a failing case is shrunk and reported with
// its replay path; a child killed by a signal, hung (asynchronously or with its thread blocked)
// or gone without a summary is reported with the case that was running, never taken for a pass.
import { describe, expect, it } from 'vitest';

import { formatOutcome, runChild, runChildWithReplay, type ChildRunOptions } from './harness/run_child';

function selftest(mode: string, extra: Partial<ChildRunOptions> = {}): ChildRunOptions {
  return { property: 'selftest', runs: 200, seed: 7, params: { mode, at: '50' }, timeoutMs: 60_000, caseTimeoutMs: 1_500, ...extra };
}

/** The case the child was running when it stopped, as its log has it. */
function runningCaseValue(outcome: Awaited<ReturnType<typeof runChild>>): number {
  const last = outcome.lastCases.at(-1);
  expect(last?.finishedAt).toBeUndefined();
  return Number(/selftest case (\d+)/.exec(last?.text ?? '')?.[1]);
}

describe('fuzz harness', { timeout: 60_000 }, () => {
  it('passes a property that holds, counting its cases', async () => {
    const outcome = await runChild(selftest('pass'));
    expect(outcome.verdict).toBe('passed');
    expect(outcome.summary?.numRuns).toBe(200);
    expect(formatOutcome(outcome)).toMatch(/held for 200 cases/);
  });

  it('reports a failing property with its smallest case, the first failure and a replay command', async () => {
    const outcome = await runChild(selftest('fail'));
    expect(outcome.verdict).toBe('failed');
    expect(outcome.summary?.counterexample).toBe('selftest case 50');
    expect(outcome.summary?.error).toMatch(/selftest: this case fails/);
    const report = formatOutcome(outcome);
    expect(report).toMatch(/FAILED/);
    expect(report).toContain(`--seed 7 --path ${outcome.summary?.counterexamplePath}`);
  });

  it('replays a failing case from its seed and path alone', async () => {
    const first = await runChild(selftest('fail'));
    const replay = await runChild(selftest('fail', { path: first.summary!.counterexamplePath!, runs: 1 }));
    expect(replay.verdict).toBe('failed');
    expect(replay.summary?.counterexample).toBe('selftest case 50');
  });

  it.each([
    ['segfault', 'SIGSEGV'],
    ['abort', 'SIGABRT'],
  ])('reports a child killed by a signal (%s) with the case it was running, and replays that case alone', async (mode, signal) => {
    const outcome = await runChildWithReplay(selftest(mode));
    expect(outcome.verdict).toBe('crashed');
    expect(outcome.signal).toBe(signal);
    expect(runningCaseValue(outcome)).toBeGreaterThanOrEqual(50);
    expect(outcome.replay).toMatchObject({ verdict: 'crashed', signal });
    const report = formatOutcome(outcome);
    expect(report).toContain(`DIED by ${signal}`);
    expect(report).toMatch(/selftest case \d+/);
    expect(report).toMatch(/--seed 7 --path \d+/);
  });

  it.each(['hang-async', 'hang-sync'])('stops a case that hangs (%s) and names it', async (mode) => {
    const outcome = await runChild(selftest(mode));
    expect(outcome.verdict).toBe('hung');
    expect(runningCaseValue(outcome)).toBeGreaterThanOrEqual(50);
    expect(formatOutcome(outcome)).toMatch(/HUNG/);
  });

  it('reports a child that exits with a case still pending', async () => {
    const outcome = await runChild(selftest('unsettled'));
    expect(outcome.verdict).toBe('no-summary');
    expect(runningCaseValue(outcome)).toBeGreaterThanOrEqual(50);
  });

  it('stops a child that runs past its overall limit', async () => {
    const outcome = await runChild(selftest('hang-async', { timeoutMs: 2_000, caseTimeoutMs: 60_000 }));
    expect(outcome.verdict).toBe('timed-out');
  });
});
