// lib/runtime.ts: runtimeInfo() and the diagnoses behind `moekit info` and the first use of
// cuda:N. The failures a CPU machine cannot produce (no driver, an old driver, a GPU without
// code) are checked on the facts they are diagnosed from.
import { describe, expect, it } from 'vitest';

import { Tensor } from '../lib/index';
import { diagnoseCuda, diagnoseDevice, runtimeInfo } from '../lib/runtime';
import { expectThrows } from './helpers/errors';

const BUILT = { variant: 'cuda' as const, runtimeVersion: 12040, driverVersion: 12080, deviceCountError: '' };
const ARCHITECTURES = ['sm_80', 'sm_90a', 'compute_90'];

describe('diagnoseCuda', () => {
  it('finds nothing wrong when CUDA starts, or when there is simply no GPU', () => {
    expect(diagnoseCuda(BUILT)).toBeNull();
    expect(diagnoseCuda({ ...BUILT, deviceCountError: 'cudaErrorNoDevice: no CUDA-capable device is detected' })).toBeNull();
  });

  it('says when the build has no CUDA backend', () => {
    expect(diagnoseCuda({ ...BUILT, variant: 'cpu' })).toMatch(/built without the CUDA backend .*npm rebuild moekit/);
  });

  it('says when no driver loads, with the CUDA version needed', () => {
    expect(diagnoseCuda({ ...BUILT, driverVersion: 0, deviceCountError: 'cudaErrorInsufficientDriver: x' }))
      .toBe('no NVIDIA driver found (the addon is built with CUDA 12.4 and needs a driver for CUDA 12.4 or newer): install the NVIDIA driver (cudaErrorInsufficientDriver: x)');
  });

  it('says when the driver is older than the CUDA the addon was built with: both versions and what to do', () => {
    const problem = diagnoseCuda({ ...BUILT, runtimeVersion: 13000, driverVersion: 12020, deviceCountError: 'cudaErrorInsufficientDriver: driver too old' });
    expect(problem).toMatch(/^the NVIDIA driver supports CUDA 12\.2, older than the CUDA 13\.0 this addon was built with: update the driver to one for CUDA 13\.0 or newer, or build moekit from source/);
  });

  it('passes any other failure on', () => {
    expect(diagnoseCuda({ ...BUILT, deviceCountError: 'cudaErrorUnknown: boom' })).toBe('CUDA cannot start: cudaErrorUnknown: boom');
  });
});

describe('diagnoseDevice', () => {
  const gpu = (computeCapability: string) => ({ index: 0, name: 'GPU', computeCapability });

  it.each(['8.0', '8.6', '8.9', '9.0', '10.0', '12.0'])('runs on compute capability %s', (capability) => {
    expect(diagnoseDevice(gpu(capability), ARCHITECTURES)).toBeNull();
  });

  it('names a GPU without code for it, and the oldest it would need', () => {
    expect(diagnoseDevice(gpu('7.5'), ARCHITECTURES)).toBe(
      'cuda:0 (GPU) has compute capability 7.5, and this addon carries code for sm_80, sm_90a, compute_90 only: moekit needs compute capability 8.0 or newer');
    // sm_90a runs only on 9.0 itself: without PTX a 10.0 GPU has no code.
    expect(diagnoseDevice(gpu('10.0'), ['sm_80', 'sm_90a'])).toMatch(/has compute capability 10\.0/);
  });
});

describe('runtimeInfo and the first use of cuda:N', () => {
  it('carries the CUDA versions, the compiled architectures and the prebuild flag', () => {
    const info = runtimeInfo();
    expect(typeof info.prebuild).toBe('boolean');
    if (info.variant === 'cpu') {
      expect(info.cuda).toMatchObject({ runtimeVersion: null, driverVersion: null, architectures: [] });
      expect(info.cuda.problem).toMatch(/built without the CUDA backend/);
    } else {
      expect(info.cuda.runtimeVersion).toMatch(/^\d+\.\d+$/);
      expect(info.cuda.architectures).toEqual(ARCHITECTURES);
    }
  });

  it("says why cuda:N cannot be used, and that the CPU still works", () => {
    if (runtimeInfo().cudaDevices.length > 0) return;
    expectThrows(() => Tensor.empty([2], { device: 'cuda:0' }), 'E_DEVICE', /^cuda:0 (cannot be used: .+|does not exist: this machine has no CUDA GPU); the CPU \('cpu'\) works without it$/);
    using cpu = Tensor.empty([2]);
    expect(cpu.device).toBe('cpu');
  });
});

describe('loadFailureAdvice', () => {
  it('says what to do about an addon that cannot load', async () => {
    const { loadFailureAdvice } = await import('../lib/native');
    expect(loadFailureAdvice("/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by moekit.node)"))
      .toMatch(/needs a newer C library than this system's; build from source instead \(npm install --build-from-source\)$/);
    expect(loadFailureAdvice('moekit.node: invalid ELF header')).toMatch(/for another platform or is damaged; reinstall/);
    expect(loadFailureAdvice('something else\nstack')).toBe('something else; rebuild it (npm rebuild moekit, or npm install --build-from-source)');
  });
});
