/** `moekit info`: version, the addon variant loaded, CUDA devices, NCCL. */
import { findNccl } from '../parallel/nccl_probe';
import { runtimeInfo } from '../runtime';
import { parseCommandLine, UsageError } from './args';

export const INFO_USAGE = 'usage: moekit info\n\nPrints the version, the native addon variant loaded (cpu or cuda), CUDA devices, and whether NCCL was found.';

const GIB = 1024 ** 3;

export async function infoCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(args, {});
  if (values.help) {
    console.log(INFO_USAGE);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  const info = runtimeInfo();
  const nccl = findNccl();
  console.log(`moekit ${info.version}`);
  console.log(`addon: ${info.variant} (${info.addonPath})`);
  if (info.cudaDevices.length === 0) {
    console.log('cuda devices: none');
  } else {
    console.log('cuda devices:');
    for (const gpu of info.cudaDevices) {
      console.log(`  cuda:${gpu.index} ${gpu.name}, ${(gpu.totalMemory / GIB).toFixed(1)} GiB, compute capability ${gpu.computeCapability}, ${gpu.multiprocessors} SMs`);
    }
  }
  console.log(`nccl: ${nccl ?? 'not found'}`);
}
