import { describeValue, MoekitError } from './errors';

/** Where a tensor lives: host memory, or the memory of CUDA device N. */
export type Device = 'cpu' | `cuda:${number}`;

/** The native code of a device: -1 for the CPU, N for cuda:N. */
export function deviceIndex(device: Device): number {
  return device === 'cpu' ? -1 : Number(device.slice(5));
}

export function deviceFromIndex(index: number): Device {
  return index < 0 ? 'cpu' : `cuda:${index}`;
}

/** Parses 'cpu', 'cuda' (= cuda:0) or 'cuda:N'. Does not check that the GPU exists. */
export function parseDevice(value: unknown, what = 'device'): Device {
  if (value === 'cpu') return 'cpu';
  if (value === 'cuda') return 'cuda:0';
  if (typeof value === 'string') {
    const match = /^cuda:(\d{1,3})$/.exec(value);
    if (match) return `cuda:${Number(match[1])}`;
  }
  throw new MoekitError('E_DEVICE', `${what}: expected 'cpu' or 'cuda:N', got ${describeValue(value)}`);
}
