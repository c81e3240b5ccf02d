// lib/native.ts: every addon function throws or rejects with MoekitError, never the addon's plain
// coded Error, whichever way it fails (thrown, rejected, or from a method of an object it returned).
import { describe, expect, it } from 'vitest';

import { MoekitError } from '../lib/errors';
import { permute, Tensor } from '../lib/index';
import { addon } from '../lib/native';
import { expectRejects, expectThrows } from './helpers/errors';

describe('the addon wrapper', () => {
  it('turns a thrown native error into MoekitError with its code', () => {
    expectThrows(() => addon().allocate(-1, -5), 'E_INVALID_ARGUMENT', /.+/);
    expectThrows(() => addon().cudaDeviceInfo(4096), 'E_DEVICE', /cuda:4096|CUDA/);
  });

  it('reads a GPU\'s clocks only where NVML loads, and says why not elsewhere', () => {
    expectThrows(() => addon().gpuReading('0' as unknown as number), 'E_INVALID_ARGUMENT', /gpuReading: expected \(device\)/);
    const nvml = addon().nvmlInfo();
    if (nvml.available) return;  // a GPU machine: test/gpu/bench.test.ts reads it
    expect(nvml.problem).toMatch(/no CUDA backend|libnvidia-ml\.so\.1/);
    expectThrows(() => addon().gpuReading(0), addon().variant === 'cuda' ? 'E_CUDA' : 'E_DEVICE', /NVML is not available|no CUDA backend/);
  });

  it('turns a rejected native promise into MoekitError', async () => {
    using x = Tensor.random([1, 8]);
    using ids = Tensor.fromArray(Int32Array.from([9]), [1, 1]);
    const { permuted, expertOffsets, sourceToPermuted, permutedToSource } = permute(x, ids, 4);
    const host = new Float32Array(8);
    await expectRejects(addon().download(permuted.toNative().storage, host), 'E_INVALID_ARGUMENT', /expert id 9/);
    for (const tensor of [permuted, expertOffsets, sourceToPermuted, permutedToSource]) tensor.dispose();
  });

  it('reports NCCL on a CPU-only build as E_NCCL, not a plain Error', () => {
    if (addon().variant !== 'cpu') return;
    expectThrows(() => addon().ncclUniqueId(), 'E_NCCL', /CPU-only/);
  });

  it('passes values through', () => {
    expect(['cpu', 'cuda']).toContain(addon().variant);
    const storage = addon().allocate(-1, 16);
    expect(storage.nbytes).toBe(16);
    storage.release();
    expect(new MoekitError('E_NATIVE', 'x')).toBeInstanceOf(Error);
  });
});
