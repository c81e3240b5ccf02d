import * as path from 'node:path';

import { loadAddon, packageRoot, type CudaDeviceInfo, type NcclInfo } from './native';

export interface RuntimeInfo {
  version: string;
  /** Which addon build was loaded: 'cuda' has the CUDA backend compiled in, 'cpu' does not. */
  variant: 'cpu' | 'cuda';
  /** The loaded addon file, relative to the package root. */
  addonPath: string;
  cudaDevices: CudaDeviceInfo[];
  /** Whether NCCL loads (needed only for multi-GPU groups). */
  nccl: NcclInfo;
}

/** What this process's moekit is: version, the addon variant it loaded, the GPUs it sees, NCCL. */
export function runtimeInfo(): RuntimeInfo {
  const { addon, path: addonPath } = loadAddon();
  const root = packageRoot();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const version = (require(path.join(root, 'package.json')) as { version: string }).version;
  const count = addon.cudaDeviceCount();
  const cudaDevices = Array.from({ length: count }, (_, index) => addon.cudaDeviceInfo(index));
  return { version, variant: addon.variant, addonPath: path.relative(root, addonPath), cudaDevices, nccl: addon.ncclInfo() };
}
