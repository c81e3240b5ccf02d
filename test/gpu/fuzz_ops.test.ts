// The ops fuzz property (test/fuzz/properties/ops.ts) on cuda:0, in a child process: every op and
// Tensor factory with any arguments throws a MoekitError or gives outputs that resolve or reject
// with one, out-of-range indices poison their outputs (on a GPU an unchecked index is an illegal
// address that breaks the context), tensors may sit on the CPU beside the GPU ones (E_DEVICE), and
// after each case a known linear still runs right on cuda:0. MOEKIT_FUZZ_GPU_RUNS sets the number
// of cases, MOEKIT_FUZZ_SEED the seed; `MOEKIT_FUZZ_DEVICE=cuda:0 npm run fuzz -- --property ops`
// is the long run.
import { describe, expect, it } from 'vitest';

import { baseSeed, batchSeed } from '../fuzz/harness/budget';
import { formatOutcome, runChildWithReplay } from '../fuzz/harness/run_child';
import { GPU, HAS_GPU } from './gpu';

const seed = baseSeed();
const runs = Number(process.env.MOEKIT_FUZZ_GPU_RUNS ?? 5_000);

describe.skipIf(!HAS_GPU)(`fuzz ops on ${GPU} (MOEKIT_FUZZ_SEED=${seed})`, () => {
  it(`${runs} cases, the device checked after each`, { timeout: 600_000 }, async () => {
    const outcome = await runChildWithReplay({
      property: 'ops',
      runs,
      seed: batchSeed(seed, 'ops', 0),
      params: { device: GPU, otherDevice: 'cpu' },
      timeoutMs: 540_000,
      // A case may wait on the GPU, and a first kernel launch on JIT-compiled PTX takes seconds.
      caseTimeoutMs: 60_000,
      // CUDA maps far more address space than it uses: no ulimit -v.
      memoryMb: 0,
    });
    expect(outcome.verdict, formatOutcome(outcome)).toBe('passed');
    console.log(formatOutcome(outcome));
  });
});
