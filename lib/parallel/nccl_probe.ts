/**
 * Where libnccl.so.2 is, if anywhere. NCCL is loaded at run time (never linked): it is absent on
 * CI and on most build machines. MOEKIT_NCCL_PATH names the library explicitly.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const NCCL_LIBRARY = 'libnccl.so.2';
const STANDARD_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib', '/usr/local/cuda/lib64'];

export function findNccl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env.MOEKIT_NCCL_PATH;
  if (explicit) return fs.existsSync(explicit) ? explicit : undefined;
  const searchPath = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  for (const dir of [...searchPath, ...STANDARD_DIRS]) {
    const candidate = path.join(dir, NCCL_LIBRARY);
    if (fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}
