/**
 * The floor's two ceilings, measured in the benchmark's own run on its own device with the same
 * device-event timing as the forwards: a large device-to-device copy (bytes read + written) and a
 * dense matrix multiply — cuBLAS's where it can be loaded (a vendor GEMM is the fair yardstick),
 * otherwise moekit's own `linear`, labelled as such.
 */
import { deviceIndex, type Device } from '../device';
import type { FloatDType } from '../dtype';
import { addon, libraryVersionName } from '../native';
import { linear } from '../ops/grouped_gemm';
import { Tensor } from '../tensor';
import { timeOnDevice } from './events';
import type { Ceilings } from './roofline';
import { median } from './statistics';
import { ClockSampler } from './telemetry';

interface CeilingSizes {
  /** The matmul is n × n × n. */
  matmul: number;
  copyBytes: number;
  warmup: number;
  runs: number;
}

// A GPU needs large problems to reach its peak (8192³ is what torch_baseline.py times); two CPU
// cores would take seconds per run at that size.
const CUDA_SIZES: CeilingSizes = { matmul: 8192, copyBytes: 2 ** 30, warmup: 3, runs: 10 };
const CPU_SIZES: CeilingSizes = { matmul: 1024, copyBytes: 2 ** 28, warmup: 1, runs: 3 };

async function copyCeiling(device: Device, sizes: CeilingSizes): Promise<Pick<Ceilings, 'copyGBps' | 'copySource'>> {
  const shape = [sizes.copyBytes / 4];
  using source = Tensor.empty(shape, { dtype: 'int32', device });
  using target = Tensor.empty(shape, { dtype: 'int32', device });
  const ms = median(await timeOnDevice(device, () => target.copyFrom(source), sizes));
  const what = device === 'cpu' ? 'copy in host memory' : 'device-to-device copy';
  return { copyGBps: (2 * sizes.copyBytes) / (ms * 1e6), copySource: `${sizes.copyBytes / 2 ** 20} MiB ${what}, bytes read + written` };
}

/** cuBLAS's GEMM where it loads on a CUDA device; else moekit's linear and why. */
function matmulKernel(device: Device, dtype: FloatDType, n: number, a: Tensor, b: Tensor, c: Tensor): { enqueue: () => void; source: string } {
  const size = `${dtype} ${n}×${n}×${n}`;
  if (device !== 'cpu') {
    const cublas = addon().cublasInfo();
    if (cublas.available) {
      const enqueue = (): void => addon().cublasGemm(deviceIndex(device), { a: a.toNative(), b: b.toNative(), c: c.toNative() });
      return { enqueue, source: `cuBLAS ${libraryVersionName(cublas.version)} GEMM ${size} (${cublas.path})` };
    }
    return { enqueue: () => linear(a, b).dispose(), source: `moekit linear ${size}, NOT cuBLAS: ${cublas.problem}` };
  }
  return { enqueue: () => linear(a, b).dispose(), source: `moekit linear ${size} (the CPU has no vendor GEMM here)` };
}

async function matmulCeiling(device: Device, dtype: FloatDType, sizes: CeilingSizes): Promise<Pick<Ceilings, 'matmulTflops' | 'matmulSource' | 'matmulClocks'>> {
  const n = sizes.matmul;
  using a = Tensor.random([n, n], { dtype, device, seed: 1 });
  using b = Tensor.random([n, n], { dtype, device, seed: 2 });
  using c = Tensor.empty([n, n], { dtype, device });
  const { enqueue, source } = matmulKernel(device, dtype, n, a, b, c);
  const sampler = ClockSampler.start(device);
  try {
    const ms = median(await timeOnDevice(device, enqueue, sizes));
    const clocks = sampler?.stop();
    return { matmulTflops: (2 * n ** 3) / (ms * 1e9), matmulSource: source, ...(clocks && { matmulClocks: clocks }) };
  } finally {
    sampler?.stop();
  }
}

export async function measureCeilings(device: Device, dtype: FloatDType): Promise<Ceilings> {
  const sizes = device === 'cpu' ? CPU_SIZES : CUDA_SIZES;
  return { ...(await matmulCeiling(device, dtype, sizes)), ...(await copyCeiling(device, sizes)) };
}
