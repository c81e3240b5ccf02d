/**
 * The clocks a benchmark ran at. A long prefill forward can hold an H200 at its power limit, where
 * the driver lowers the SM clock well below the one a short burst runs at (bench/NOTES.md, v12:
 * 1.4-1.5 GHz under Mixtral's and DeepSeek-V3's 16384-token layers against 1.98 for the matmul
 * ceiling), and the same kernel's time follows the clock. So the benchmark samples the GPU through
 * NVML while it times and reports, per row and for its matmul ceiling, what the clocks and power
 * were. Where NVML cannot be read (the CPU, a build
 * without CUDA, no driver library) there is no summary and nothing else changes.
 */
import { deviceIndex, type Device } from '../device';
import { addon, type GpuReading } from '../native';
import { median } from './statistics';

/** Often enough for a few readings in a decode row's runs; each reading costs microseconds of host time. */
export const SAMPLE_INTERVAL_MS = 10;

/** NVML's clock event reasons (nvmlClocksEventReason*) the summary counts. */
export const CLOCK_EVENT_REASONS = {
  gpuIdle: 0x1,
  softwarePowerCap: 0x4,
  softwareThermalSlowdown: 0x20,
  hardwareThermalSlowdown: 0x40,
  hardwarePowerBrake: 0x80,
} as const;

const POWER_REASONS = CLOCK_EVENT_REASONS.softwarePowerCap | CLOCK_EVENT_REASONS.hardwarePowerBrake;
const THERMAL_REASONS = CLOCK_EVENT_REASONS.softwareThermalSlowdown | CLOCK_EVENT_REASONS.hardwareThermalSlowdown;

/** What the GPU did while a measurement ran. */
export interface ClockSummary {
  /** Readings taken, and of them those with work on the GPU (the statistics below use only those, if any). */
  samples: number;
  busySamples: number;
  /** SM clock, MHz: median and lowest. */
  smClockMHz: number;
  minSmClockMHz: number;
  /**
   * Board power, W: median and highest; and the limit the driver enforced. NVML averages power over
   * about a second, so a row shorter than that also shows the work before it.
   */
  powerW: number;
  maxPowerW: number;
  powerLimitW: number;
  /** Share of readings whose clocks the power limit held down, and temperature. */
  powerCappedShare: number;
  thermalShare: number;
}

/** In words, for a preamble: "SM 1455 MHz (1230 at the lowest), 690 W of 700 W, power-capped in 63% of readings". */
export function describeClocks(summary: ClockSummary): string {
  const capped = summary.powerCappedShare > 0 ? `, power-capped in ${(summary.powerCappedShare * 100).toFixed(0)}% of readings` : '';
  const thermal = summary.thermalShare > 0 ? `, thermally slowed in ${(summary.thermalShare * 100).toFixed(0)}%` : '';
  return `SM ${summary.smClockMHz.toFixed(0)} MHz (${summary.minSmClockMHz.toFixed(0)} at the lowest), ${summary.powerW.toFixed(0)} W of ${summary.powerLimitW.toFixed(0)} W${capped}${thermal}`;
}

function hasReason(reading: GpuReading, reasons: number): boolean {
  // The reasons used are low bits: a 32-bit AND sees them exactly.
  return (reading.clockEventReasons & reasons) !== 0;
}

/** The summary of `readings`; undefined when there are none. */
export function summarizeReadings(readings: readonly GpuReading[]): ClockSummary | undefined {
  if (readings.length === 0) return undefined;
  const busy = readings.filter((reading) => !hasReason(reading, CLOCK_EVENT_REASONS.gpuIdle));
  const used = busy.length > 0 ? busy : readings;
  const clocks = used.map((reading) => reading.smClockMHz);
  const power = used.map((reading) => reading.powerW);
  const share = (reasons: number): number => used.filter((reading) => hasReason(reading, reasons)).length / used.length;
  return {
    samples: readings.length,
    busySamples: busy.length,
    smClockMHz: median(clocks),
    minSmClockMHz: Math.min(...clocks),
    powerW: median(power),
    maxPowerW: Math.max(...power),
    powerLimitW: used[used.length - 1]!.powerLimitW,
    powerCappedShare: share(POWER_REASONS),
    thermalShare: share(THERMAL_REASONS),
  };
}

/** Reads a GPU every SAMPLE_INTERVAL_MS while the event loop waits on the device. */
export class ClockSampler {
  readonly #device: number;
  readonly #readings: GpuReading[] = [];
  #timer: NodeJS.Timeout | undefined;

  private constructor(device: number) {
    this.#device = device;
    this.#timer = setInterval(() => this.#read(), SAMPLE_INTERVAL_MS);
    this.#timer.unref();  // sampling never keeps the process alive
    this.#read();
  }

  /** A sampler of `device`, running; undefined where NVML cannot read it (the CPU, no CUDA, no NVML). */
  static start(device: Device): ClockSampler | undefined {
    if (!device.startsWith('cuda:') || !addon().nvmlInfo().available) return undefined;
    return new ClockSampler(deviceIndex(device));
  }

  /** Stops sampling (idempotent) and summarizes what was read. */
  stop(): ClockSummary | undefined {
    this.#halt();
    return summarizeReadings(this.#readings);
  }

  #halt(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #read(): void {
    try {
      this.#readings.push(addon().gpuReading(this.#device));
    } catch {
      // A driver that stops answering ends the sampling; the readings so far still count.
      this.#halt();
    }
  }
}
