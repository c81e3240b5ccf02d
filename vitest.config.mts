import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/build_dist.ts'],
    // Native work and CLI subprocesses: give slow CI machines room.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // One native addon per worker process; tests within a file run in order.
    pool: 'forks',
  },
});
