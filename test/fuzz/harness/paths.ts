/**
 * Where things are, found the same way whether this code runs as TypeScript under vitest
 * (test/fuzz/...) or transpiled in a child process (build-fuzz/...): from the package root.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The nearest folder above this file whose package.json is moekit's. */
export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'moekit') return dir;
    if (path.dirname(dir) === dir) throw new Error(`fuzz harness: no moekit package.json above ${__dirname}`);
  }
}

/** The transpiled harness (scripts/build_fuzz.js writes it). */
export function fuzzBuildDir(): string {
  return path.join(repoRoot(), 'build-fuzz');
}

export function childScript(): string {
  return path.join(fuzzBuildDir(), 'harness', 'child.js');
}

/**
 * The compiled moekit the properties exercise: this checkout's dist/, or MOEKIT_FUZZ_DIST (the
 * dist/ folder of another checkout or build, whose native addon it then loads).
 */
export function distDir(): string {
  return path.resolve(process.env.MOEKIT_FUZZ_DIST ?? path.join(repoRoot(), 'dist'));
}

/** The Hugging Face fixtures beside the checkout (../shared/fixtures/hf-moe), or MOEKIT_FUZZ_FIXTURES. */
export function fixturesDir(): string {
  return path.resolve(process.env.MOEKIT_FUZZ_FIXTURES ?? path.join(repoRoot(), '..', 'shared', 'fixtures', 'hf-moe'));
}

/** A fresh scratch folder, in memory (/dev/shm) where there is one: cases write files by the thousand. */
export function makeScratchDir(label: string): string {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, `moekit-fuzz-${label}-`));
}
