import { deviceIndex, parseDevice, type Device } from './device';
import { addon } from './native';

/** How much memory a device has and how much moekit holds of it, in bytes. */
export interface MemoryInfo {
  device: Device;
  /** Bytes handed out to tensors and ops' scratch space. */
  inUseBytes: number;
  /**
   * Bytes moekit holds for them: on CUDA the stream-ordered pool's reservation (freed memory is
   * kept for reuse, so this stays at the high-water mark); on the CPU, where tensors come from the
   * C heap, equal to inUseBytes.
   */
  reservedBytes: number;
  /** CUDA: the driver's free device memory. CPU: available physical memory, or what is left of MOEKIT_CPU_MEMORY_MB. */
  freeBytes: number;
  /** CUDA: the device's memory. CPU: physical memory, or MOEKIT_CPU_MEMORY_MB when set. */
  totalBytes: number;
}

/**
 * The memory counts of `device` now. It does not wait for queued work, so memory whose release
 * is still queued behind running ops may count as in use. Not callable while the device is
 * capturing a graph (E_DEVICE).
 */
export function memoryInfo(device: Device = 'cpu'): MemoryInfo {
  const target = parseDevice(device);
  const counts = addon().memoryInfo(deviceIndex(target));
  return { device: target, inUseBytes: counts.inUse, reservedBytes: counts.reserved, freeBytes: counts.free, totalBytes: counts.total };
}
