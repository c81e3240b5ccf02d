/**
 * User streams. Each CUDA device runs its work in order on one stream, its own by default.
 * `useStream(device, stream)` moves that work onto another stream — one made here, or a handle
 * from another CUDA library as a bigint — so moekit's ops interleave with the caller's own GPU work
 * in stream order. Work enqueued before the switch still completes first.
 */
import { deviceIndex, parseDevice, type Device } from './device';
import { describeValue, MoekitError } from './errors';
import { addon } from './native';

function cudaIndex(device: Device, what: string): number {
  const index = deviceIndex(parseDevice(device));
  if (index < 0) throw new MoekitError('E_DEVICE', `${what} needs a CUDA device, got ${describeValue(device)}`);
  return index;
}

/** A CUDA stream created by moekit. Dispose it once no device uses it any more. */
export class CudaStream {
  readonly device: Device;
  /** The cudaStream_t, for other CUDA libraries. */
  readonly handle: bigint;
  #disposed = false;

  constructor(device: Device) {
    this.device = parseDevice(device);
    this.handle = addon().createStream(cudaIndex(this.device, 'CudaStream'));
  }

  dispose(): void {
    if (this.#disposed) return;
    addon().destroyStream(cudaIndex(this.device, 'CudaStream'), this.handle);
    this.#disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Moves `device`'s work onto `stream` (a CudaStream or a raw handle); `null` restores its own stream. */
export function useStream(device: Device, stream: CudaStream | bigint | null): void {
  const handle = stream instanceof CudaStream ? stream.handle : stream;
  if (handle !== null && typeof handle !== 'bigint') throw new MoekitError('E_INVALID_ARGUMENT', 'useStream: stream must be a CudaStream, a bigint handle or null');
  addon().setStream(cudaIndex(device, 'useStream'), handle);
}

/** The handle of the stream `device`'s work currently goes to. */
export function currentStream(device: Device): bigint {
  return addon().currentStream(cudaIndex(device, 'currentStream'));
}

/** Work enqueued beside a device's other work (runBeside); join() before using what it made. */
export interface SideWork<T> {
  /** Orders the device's later work after the side work, once (later calls only return); returns what the work returned. */
  join(): T;
}

/**
 * Enqueues `work` (a synchronous function that enqueues ops on `device`) so that it may run beside
 * what the caller enqueues next: on a CUDA device it goes to a second stream, forked from the
 * device's stream here; on the CPU it runs in order. Its results may be used only after join().
 * Internal: the layer runs its shared expert this way.
 */
export function runBeside<T>(device: Device, work: () => T): SideWork<T> {
  const index = deviceIndex(device);
  const native = addon();
  native.beginSideWork(index);
  let result: T;
  try {
    result = work();
  } catch (error) {
    native.endSideWork(index);
    native.joinSideWork(index);
    throw error;
  }
  native.endSideWork(index);
  let joined = false;
  return {
    join() {
      if (!joined) {
        joined = true;
        native.joinSideWork(index);
      }
      return result;
    },
  };
}
