// A short run of every fuzz property (issue 11), each in a child process: a case that crashes or
// hangs the child fails the test with the case, the seed and a replay command, and leaves this
// runner alive. The long run is `npm run fuzz`; the GPU variant is test/gpu/fuzz_ops.test.ts.
// MOEKIT_FUZZ_SEED replays a run, MOEKIT_FUZZ_SHORT_RUNS changes its length, MOEKIT_FUZZ_DIST
// points the properties at another build's dist/.
import { describe, expect, it } from 'vitest';

import { baseSeed, batchSeed, shortRuns } from './harness/budget';
import { MOEKIT_PROPERTIES } from './harness/registry';
import { formatOutcome, runChildWithReplay } from './harness/run_child';

const seed = baseSeed();

describe(`fuzz properties, short run (MOEKIT_FUZZ_SEED=${seed})`, () => {
  for (const property of MOEKIT_PROPERTIES) {
    const runs = shortRuns(property);
    it(`${property}: ${runs} cases`, { timeout: 180_000 }, async () => {
      // Cases take milliseconds: 5 s is a hang even on a slow CI machine, and a hang costs that twice (run, replay).
      const outcome = await runChildWithReplay({ property, runs, seed: batchSeed(seed, property, 0), timeoutMs: 150_000, caseTimeoutMs: 5_000 });
      expect(outcome.verdict, formatOutcome(outcome)).toBe('passed');
      console.log(formatOutcome(outcome));
    });
  }
});
