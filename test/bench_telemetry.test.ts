import { describe, expect, it } from 'vitest';

import { ClockSampler, CLOCK_EVENT_REASONS, describeClocks, summarizeReadings } from '../lib/bench/telemetry';
import { gpuReading } from './helpers/gpu_readings';

describe('the benchmark\'s clock summaries', () => {
  it('has nothing to summarize without readings', () => {
    expect(summarizeReadings([])).toBeUndefined();
  });

  it('takes the median and the lowest SM clock, the median and the highest power, and the limit', () => {
    const summary = summarizeReadings([
      gpuReading(1980, { powerW: 300 }),
      gpuReading(1440, { powerW: 700 }),
      gpuReading(1455, { powerW: 690 }),
      gpuReading(1230, { powerW: 698 }),
    ]);
    expect(summary).toEqual({
      samples: 4,
      busySamples: 4,
      smClockMHz: 1447.5,
      minSmClockMHz: 1230,
      powerW: 694,
      maxPowerW: 700,
      powerLimitW: 700,
      powerCappedShare: 0,
      thermalShare: 0,
    });
  });

  it('leaves idle readings out of the statistics while the GPU had work, and counts the readings held down by power or heat', () => {
    const { softwarePowerCap, hardwarePowerBrake, softwareThermalSlowdown, gpuIdle } = CLOCK_EVENT_REASONS;
    const summary = summarizeReadings([
      gpuReading(345, { powerW: 80, clockEventReasons: gpuIdle }),
      gpuReading(1440, { clockEventReasons: softwarePowerCap }),
      gpuReading(1500, { clockEventReasons: hardwarePowerBrake | softwareThermalSlowdown }),
      gpuReading(1980),
      gpuReading(1965),
    ])!;
    expect(summary).toMatchObject({ samples: 5, busySamples: 4, smClockMHz: 1732.5, minSmClockMHz: 1440, powerCappedShare: 0.5, thermalShare: 0.25 });
  });

  it('summarizes an idle GPU from all its readings', () => {
    const summary = summarizeReadings([gpuReading(345, { clockEventReasons: CLOCK_EVENT_REASONS.gpuIdle }), gpuReading(1980, { clockEventReasons: CLOCK_EVENT_REASONS.gpuIdle })])!;
    expect(summary).toMatchObject({ samples: 2, busySamples: 0, smClockMHz: 1162.5, minSmClockMHz: 345 });
  });

  it('says in words what held the clocks down', () => {
    const { softwarePowerCap } = CLOCK_EVENT_REASONS;
    const capped = summarizeReadings([gpuReading(1440, { powerW: 699, clockEventReasons: softwarePowerCap }), gpuReading(1470, { powerW: 690 })])!;
    expect(describeClocks(capped)).toBe('SM 1455 MHz (1440 at the lowest), 695 W of 700 W, power-capped in 50% of readings');
    expect(describeClocks(summarizeReadings([gpuReading(1980, { powerW: 420 })])!)).toBe('SM 1980 MHz (1980 at the lowest), 420 W of 700 W');
  });

  it('does not sample the CPU', () => {
    expect(ClockSampler.start('cpu')).toBeUndefined();
  });
});
