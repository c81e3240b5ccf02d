/**
 * Where libnccl.so.2 is, if anywhere. moekit never links NCCL: it is absent on CI and on most build
 * machines, so it is looked up at run time, the way the dynamic loader would find it.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const NCCL_LIBRARY = 'libnccl.so.2';

/** Folders the loader's default search covers on common distributions and CUDA installs. */
const STANDARD_DIRS = [
  '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu',
  '/usr/lib64', '/usr/lib', '/usr/local/lib', '/usr/local/cuda/lib64',
];

function isFile(file: string): boolean {
  return fs.statSync(file, { throwIfNoEntry: false })?.isFile() ?? false;
}

/** MOEKIT_NCCL_PATH may name the library itself or the folder holding it. */
function libraryAt(location: string): string | undefined {
  if (isFile(location)) return location;
  const inside = path.join(location, NCCL_LIBRARY);
  return isFile(inside) ? inside : undefined;
}

function firstInDirs(dirs: readonly string[]): string | undefined {
  return dirs.map((dir) => path.join(dir, NCCL_LIBRARY)).find(isFile);
}

/** The loader cache's entry (`ldconfig -p`); ldconfig is often outside a user's PATH, in /sbin. */
function fromLoaderCache(): string | undefined {
  for (const ldconfig of ['ldconfig', '/sbin/ldconfig']) {
    let listing: string;
    try {
      listing = execFileSync(ldconfig, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      continue;
    }
    const entries = listing.split('\n').filter((line) => line.trim().startsWith(`${NCCL_LIBRARY} `));
    return entries.map((line) => line.split('=>')[1]?.trim() ?? '').find(isFile);
  }
  return undefined;
}

/**
 * The path of libnccl.so.2: MOEKIT_NCCL_PATH when set (and then only there, so a wrong setting is
 * not hidden by another copy), else LD_LIBRARY_PATH, the loader cache and the standard folders.
 */
export function locateNccl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env.MOEKIT_NCCL_PATH;
  if (explicit) return libraryAt(explicit);
  const libraryPath = (env.LD_LIBRARY_PATH ?? '').split(':').filter((dir) => dir !== '');
  return firstInDirs(libraryPath) ?? fromLoaderCache() ?? firstInDirs(STANDARD_DIRS);
}
