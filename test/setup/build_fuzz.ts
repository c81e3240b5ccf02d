// Transpiles the fuzz harness (test/fuzz) into build-fuzz/ once before the suites: the fuzz tests
// run their properties in child processes, which run plain JavaScript.
import * as path from 'node:path';

export default function buildFuzzHarness(): void {
  // scripts/build_fuzz.js is plain CommonJS, shared with `npm run fuzz`.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { buildFuzz } = require(path.resolve(__dirname, '../../scripts/build_fuzz.js')) as { buildFuzz(): string };
  buildFuzz();
}
