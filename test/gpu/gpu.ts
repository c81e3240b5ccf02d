/**
 * GPU test gating: the suites in test/gpu run where a CUDA device exists and are skipped, saying
 * so, where none does (CI has none).
 */
import { runtimeInfo } from '../../lib/runtime';

const info = runtimeInfo();

export const GPU_COUNT = info.cudaDevices.length;
export const HAS_GPU = GPU_COUNT > 0;
export const GPU = 'cuda:0' as const;

if (!HAS_GPU) {
  console.log(`GPU tests skipped: no CUDA device (addon variant ${info.variant})`);
}
