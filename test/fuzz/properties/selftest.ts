/**
 * A property for testing the harness itself (harness.test.ts): cases are integers 0..99, and
 * from `at` on (params.at) the case does what params.mode says: fail, kill the process, hang,
 * or leave a promise that never settles. Keyed on the case's value, not on a counter, so a
 * failing case fails again when replayed alone.
 */
import * as fc from 'fast-check';

import { defineProperty } from '../harness/property';

type Mode = 'pass' | 'fail' | 'segfault' | 'abort' | 'hang-async' | 'hang-sync' | 'unsettled';

async function misbehave(mode: Mode): Promise<void> {
  switch (mode) {
    case 'pass':
      return;
    case 'fail':
      throw new Error('selftest: this case fails');
    case 'segfault':
      process.kill(process.pid, 'SIGSEGV');
      return new Promise(() => undefined);
    case 'abort':
      process.abort();
    // eslint-disable-next-line no-fallthrough
    case 'hang-async':
      // A timer keeps the event loop alive: only the parent's watchdog ends this.
      return new Promise(() => setInterval(() => undefined, 1000));
    case 'hang-sync':
      for (;;);
    case 'unsettled':
      // Nothing left to run: the process exits with this case still pending.
      return new Promise(() => undefined);
  }
}

export const selftestProperty = defineProperty<number>(({ params }) => {
  const mode = (params.mode ?? 'pass') as Mode;
  const at = Number(params.at ?? 50);
  return {
    arbitrary: fc.integer({ min: 0, max: 99 }),
    describe: (value) => `selftest case ${value}`,
    check: async (value) => {
      if (value >= at) await misbehave(mode);
    },
  };
});
