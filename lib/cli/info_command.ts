/** `moekit info`: the version, the native addon this process loaded, CUDA devices, and the libraries loaded at run time. */
import { libraryVersionName } from '../native';
import { EXPERT_QUANTIZATIONS, type ExpertQuantization } from '../ops/quantized';
import { runtimeInfo, type CudaDeviceReport, type RuntimeInfo } from '../runtime';
import { expectPositionals, parseCommandLine } from './args';

const INFO_USAGE = `usage: moekit info

Prints the moekit version, the native addon variant loaded (cpu or cuda) and its path, the
quantizations it computes, the CUDA devices it sees, and whether the libraries it loads at run time
load: NCCL for multi-GPU groups (libnccl.so.2, or the file or folder MOEKIT_NCCL_PATH names), cuBLAS
for the benchmark's matmul ceiling (libcublas.so.13 or .12, or MOEKIT_CUBLAS_PATH) and NVML for its
clock readings (libnvidia-ml.so.1, or MOEKIT_NVML_PATH).`;

/** What each quantization is, in words. */
const QUANTIZATION_NOTES: Readonly<Record<ExpertQuantization, string>> = {
  fp8: 'e4m3 experts with 128x128 block scales, computed W8A8; FP8 checkpoints as published, or --quantize fp8',
  int8: 'int8 experts, weight-only (W8A16), one scale per output channel or per --group-size K values; --quantize int8',
  int4: 'int4 experts, weight-only (W4A16), one scale per 128 K values or per --group-size; --quantize int4',
  mxfp4: 'e2m1 experts with e8m0 scales per 32 K values, weight-only (W4A16); gpt-oss checkpoints as published',
};

const GIB = 1024 ** 3;

function describeDevice(device: CudaDeviceReport): string {
  const memory = `${(device.totalMemory / GIB).toFixed(1)} GiB`;
  const line = `  cuda:${device.index}  ${device.name}, ${memory}, compute capability ${device.computeCapability}, ${device.multiprocessors} SMs`;
  return device.problem === null ? line : `${line}\n    cannot be used: ${device.problem}`;
}

/** The CUDA runtime built in, the driver found, the code carried; or why CUDA cannot start and what to do. */
function describeCuda({ cuda, variant }: RuntimeInfo): string {
  if (variant === 'cpu') return `not in this build (${cuda.problem ?? ''}); the CPU works`;
  const facts = `runtime ${cuda.runtimeVersion ?? '?'} (built in), driver ${cuda.driverVersion === null ? 'none found' : `for CUDA ${cuda.driverVersion}`}, ` +
    `code for ${cuda.architectures.join(', ')}`;
  return cuda.problem === null ? facts : `${facts}\ncuda problem: ${cuda.problem}; the CPU works`;
}

/** A run-time library's version (major · 10000 + minor · 100 + patch, where it has one) and file, or why it does not load. */
function describeLibrary(library: RuntimeInfo['nccl']): string {
  if (!library.available) return `not available (${library.problem})`;
  return library.version === 0 ? library.path : `${libraryVersionName(library.version)} (${library.path})`;
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
    `addon: ${info.variant} (${info.addonPath}${info.prebuild ? ', prebuild' : ', built here'})`,
    ...EXPERT_QUANTIZATIONS.map((quantization) => `quantization: ${quantization} (${QUANTIZATION_NOTES[quantization]})`),
    `cuda: ${describeCuda(info)}`,
    devices.length === 0 ? 'cuda devices: none' : `cuda devices: ${devices.length}`,
    ...devices.map(describeDevice),
    `nccl: ${describeLibrary(info.nccl)}`,
    `cublas: ${describeLibrary(info.cublas)}`,
    `nvml: ${describeLibrary(info.nvml)}`,
  ];
  console.log(lines.join('\n'));
}
