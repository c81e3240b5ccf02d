// Compiles lib/ into dist/ once before the suites, so the CLI tests spawn the current code.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

export default function buildDist(): void {
  const root = path.resolve(__dirname, '../..');
  // The project's own TypeScript, run by this node (what `npx tsc -p tsconfig.json` would run).
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
}
