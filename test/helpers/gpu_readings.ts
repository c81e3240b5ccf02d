/** NVML readings for tests of the benchmark's clock summaries. */
import type { GpuReading } from '../../lib/native';

/** A busy H200-like reading at `smClockMHz`; override any field. */
export function gpuReading(smClockMHz: number, overrides: Partial<GpuReading> = {}): GpuReading {
  return { smClockMHz, memoryClockMHz: 3201, powerW: 650, powerLimitW: 700, temperatureC: 50, clockEventReasons: 0, ...overrides };
}
