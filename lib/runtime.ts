/**
 * What this process's moekit is and whether CUDA can start here: the addon it loaded, the CUDA
 * runtime it was built with and the driver found, the GPU code it carries, and in words what
 * stops a GPU from being used and what to do about it. The CPU works whatever this says.
 */
import * as path from 'node:path';

import { deviceIndex, type Device } from './device';
import { MoekitError } from './errors';
import { addon, loadAddon, packageRoot, type CublasInfo, type CudaDeviceInfo, type NcclInfo, type NvmlInfo } from './native';

/** The CUDA side of runtimeInfo(). */
export interface CudaRuntime {
  /** The CUDA runtime linked into the addon ('12.4'; static cudart), null in a CPU-only build. */
  runtimeVersion: string | null;
  /** The newest CUDA the installed driver supports ('12.8'), null when no driver loads. */
  driverVersion: string | null;
  /** The GPU code the addon carries: machine code ('sm_80', 'sm_90a') and PTX ('compute_90'). */
  architectures: string[];
  /** Why no GPU can be used here and what to do; null when CUDA starts (or is simply absent: no GPU). */
  problem: string | null;
}

export interface CudaDeviceReport extends CudaDeviceInfo {
  /** Why moekit cannot run on this GPU (no code for its architecture); null when it can. */
  problem: string | null;
}

export interface RuntimeInfo {
  version: string;
  /** Which addon build was loaded: 'cuda' has the CUDA backend compiled in, 'cpu' does not. */
  variant: 'cpu' | 'cuda';
  /** The loaded addon file, relative to the package root. */
  addonPath: string;
  /** Whether the addon is a prebuild (prebuilds/) rather than built on this machine. */
  prebuild: boolean;
  cuda: CudaRuntime;
  cudaDevices: CudaDeviceReport[];
  /** Whether NCCL loads (needed only for multi-GPU groups). */
  nccl: NcclInfo;
  /** Whether cuBLAS loads (the benchmark's matmul ceiling) and NVML (the benchmark's clock readings). */
  cublas: CublasInfo;
  nvml: NvmlInfo;
}

/** The facts a diagnosis is made from (addon.cudaRuntimeInfo() and the device count). */
export interface CudaFacts {
  variant: 'cpu' | 'cuda';
  /** CUDA's version codes: 12040 for 12.4; 0 when unknown. */
  runtimeVersion: number;
  driverVersion: number;
  deviceCountError: string;
}

/** 12040 → '12.4'. */
export function cudaVersionName(code: number): string {
  return `${Math.floor(code / 1000)}.${Math.floor((code % 1000) / 10)}`;
}

/** Why CUDA cannot start, with versions found and required and what to do; null when it can. */
export function diagnoseCuda(facts: CudaFacts): string | null {
  if (facts.variant === 'cpu') {
    return 'this moekit addon was built without the CUDA backend (no nvcc at install time); install a prebuild with CUDA, ' +
      'or rebuild with nvcc on the PATH (npm rebuild moekit)';
  }
  if (facts.deviceCountError === '') return null;
  const runtime = cudaVersionName(facts.runtimeVersion);
  if (facts.driverVersion === 0) {
    return `no NVIDIA driver found (the addon is built with CUDA ${runtime} and needs a driver for CUDA ${runtime} or newer): ` +
      `install the NVIDIA driver (${facts.deviceCountError})`;
  }
  if (facts.driverVersion < facts.runtimeVersion) {
    return `the NVIDIA driver supports CUDA ${cudaVersionName(facts.driverVersion)}, older than the CUDA ${runtime} this addon was built with: ` +
      `update the driver to one for CUDA ${runtime} or newer, or build moekit from source with the CUDA your driver supports ` +
      `(npm install --build-from-source) (${facts.deviceCountError})`;
  }
  if (facts.deviceCountError.startsWith('cudaErrorNoDevice')) return null;
  return `CUDA cannot start: ${facts.deviceCountError}`;
}

/** Whether code built for `architecture` ('sm_80', 'sm_90a', 'compute_90') runs on compute capability `capability` ('8.6'). */
function runsOn(architecture: string, capability: string): boolean {
  const match = /^(sm|compute)_(\d+)(\d)(a?)$/.exec(architecture);
  const [major, minor] = capability.split('.').map(Number) as [number, number];
  if (match === null) return false;
  const [archMajor, archMinor, specific] = [Number(match[2]), Number(match[3]), match[4] === 'a'];
  // 'a' code runs only on its own architecture; other machine code on later minors of its major;
  // PTX on anything at least as new (the driver compiles it).
  if (specific) return archMajor === major && archMinor === minor;
  if (match[1] === 'sm') return archMajor === major && archMinor <= minor;
  return archMajor * 10 + archMinor <= major * 10 + minor;
}

/** Why a GPU of `device` cannot run this build's code (none of `architectures` runs on it); null when it can. */
export function diagnoseDevice(device: Pick<CudaDeviceInfo, 'index' | 'name' | 'computeCapability'>, architectures: readonly string[]): string | null {
  if (architectures.some((architecture) => runsOn(architecture, device.computeCapability))) return null;
  const oldest = architectures.map((architecture) => /(\d+)(\d)a?$/.exec(architecture)).filter((match) => match !== null)
    .map((match) => `${match[1]}.${match[2]}`).sort()[0];
  return `cuda:${device.index} (${device.name}) has compute capability ${device.computeCapability}, and this addon carries code for ` +
    `${architectures.join(', ')} only${oldest === undefined ? '' : `: moekit needs compute capability ${oldest} or newer`}`;
}

function cudaFacts(): CudaFacts & { architectures: string[] } {
  const native = addon();
  return { variant: native.variant, ...native.cudaRuntimeInfo() };
}

/** What this process's moekit is: version, the addon it loaded, CUDA and its problems, the GPUs it sees, NCCL. */
export function runtimeInfo(): RuntimeInfo {
  const { addon: native, path: addonPath } = loadAddon();
  const root = packageRoot();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const version = (require(path.join(root, 'package.json')) as { version: string }).version;
  const facts = cudaFacts();
  const count = native.cudaDeviceCount();
  const cudaDevices = Array.from({ length: count }, (_, index) => {
    const device = native.cudaDeviceInfo(index);
    return { ...device, problem: diagnoseDevice(device, facts.architectures) };
  });
  const relative = path.relative(root, addonPath);
  return {
    version,
    variant: native.variant,
    addonPath: relative,
    prebuild: relative.split(path.sep)[0] === 'prebuilds',
    cuda: {
      runtimeVersion: facts.runtimeVersion === 0 ? null : cudaVersionName(facts.runtimeVersion),
      driverVersion: facts.driverVersion === 0 ? null : cudaVersionName(facts.driverVersion),
      architectures: facts.architectures,
      problem: diagnoseCuda(facts),
    },
    cudaDevices,
    nccl: native.ncclInfo(),
    cublas: native.cublasInfo(),
    nvml: native.nvmlInfo(),
  };
}

const usableDevices = new Set<number>();

/**
 * Throws E_DEVICE saying why, with what to do, when `device` (cuda:N) cannot be used: no CUDA in
 * this build, no driver, a driver older than the CUDA the addon was built with, no such GPU, or a
 * GPU this build has no code for. Checked once per device: the first use of cuda:N.
 */
export function requireUsableDevice(device: Device): void {
  const index = deviceIndex(device);
  if (index < 0 || usableDevices.has(index)) return;
  const facts = cudaFacts();
  const problem = diagnoseCuda(facts);
  const fallback = "; the CPU ('cpu') works without it";
  if (problem !== null) throw new MoekitError('E_DEVICE', `${device} cannot be used: ${problem}${fallback}`);
  const count = addon().cudaDeviceCount();
  if (index >= count) throw new MoekitError('E_DEVICE', `${device} does not exist: this machine has ${count === 0 ? 'no CUDA GPU' : `${count} CUDA GPU${count === 1 ? '' : 's'}`}${fallback}`);
  const unsupported = diagnoseDevice(addon().cudaDeviceInfo(index), facts.architectures);
  if (unsupported !== null) throw new MoekitError('E_DEVICE', `${device} cannot be used: ${unsupported}${fallback}`);
  usableDevices.add(index);
}
