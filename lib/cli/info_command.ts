/** `moekit info`: the version, the native addon this process loaded, CUDA devices and NCCL. */
import type { CudaDeviceInfo } from '../native';
import { locateNccl, NCCL_LIBRARY } from '../parallel/nccl_probe';
import { runtimeInfo } from '../runtime';
import { expectPositionals, parseCommandLine } from './args';

const INFO_USAGE = `usage: moekit info

Prints the moekit version, the native addon variant loaded (cpu or cuda) and its path, the CUDA
devices it sees, and where ${NCCL_LIBRARY} is (MOEKIT_NCCL_PATH, LD_LIBRARY_PATH, the loader cache
or the standard library folders).`;

const GIB = 1024 ** 3;

function describeDevice(device: CudaDeviceInfo): string {
  const memory = `${(device.totalMemory / GIB).toFixed(1)} GiB`;
  return `  cuda:${device.index}  ${device.name}, ${memory}, compute capability ${device.computeCapability}, ${device.multiprocessors} SMs`;
}

function describeNccl(): string {
  const found = locateNccl();
  if (found !== undefined) return found;
  const explicit = process.env.MOEKIT_NCCL_PATH;
  return explicit ? `not found (MOEKIT_NCCL_PATH=${explicit} holds no ${NCCL_LIBRARY})` : 'not found';
}

export async function infoCommand(args: readonly string[]): Promise<void> {
  const { positionals, help } = parseCommandLine(args, []);
  if (help) {
    console.log(INFO_USAGE);
    return;
  }
  expectPositionals(positionals, []);
  const info = runtimeInfo();
  const devices = info.cudaDevices;
  const lines = [
    `moekit ${info.version}`,
    `addon: ${info.variant} (${info.addonPath})`,
    devices.length === 0 ? 'cuda devices: none' : `cuda devices: ${devices.length}`,
    ...devices.map(describeDevice),
    `nccl: ${describeNccl()}`,
  ];
  console.log(lines.join('\n'));
}
