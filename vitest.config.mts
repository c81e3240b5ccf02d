import { existsSync } from 'node:fs';

import { defineConfig } from 'vitest/config';

// Test files run in parallel processes. On a machine with an NVIDIA GPU they would share it, each
// with its own memory pool holding freed memory, and real-sized GPU suites would run each other
// out of memory: there, files run one at a time.
const hasNvidiaGpu = existsSync('/dev/nvidiactl');

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // dist/ for the CLI tests and the fuzz properties; build-fuzz/ for the fuzz children.
    globalSetup: ['test/setup/build_dist.ts', 'test/setup/build_fuzz.ts'],
    // Native work and CLI subprocesses: give slow CI machines room.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // One native addon per worker process; tests within a file run in order.
    pool: 'forks',
    fileParallelism: !hasNvidiaGpu,
  },
});
