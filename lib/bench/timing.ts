/** Timing a layer forward: warm-up runs, then the median wall time of timed runs. */
import type { MoELayer } from '../layer/moe_layer';
import { synchronize } from '../sync';
import { Tensor } from '../tensor';

export interface TimingOptions {
  /** Untimed runs first: they pay for first-touch page faults, allocator growth and lazy init. */
  warmup: number;
  runs: number;
}

/**
 * Distinct inputs cycled through the runs, so that each run routes tokens to other experts and
 * caches hold no weights a repeated input would find there again.
 */
const INPUT_ROTATION = 4;

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Median milliseconds of one forward of `tokens` tokens, each run awaited to completion. */
export async function timeForward(layer: MoELayer, tokens: number, options: TimingOptions): Promise<number> {
  const { device, dtype } = layer;
  const inputs = Array.from({ length: INPUT_ROTATION }, (_, index) =>
    Tensor.random([tokens, layer.config.hiddenSize], { dtype, device, seed: 1000 + index }));
  try {
    const timedRun = async (run: number): Promise<number> => {
      const start = process.hrtime.bigint();
      using result = layer.forward(inputs[run % INPUT_ROTATION]!);
      await synchronize(device);
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    // Weight and input generation are queued work too; they must not land in the first run.
    await synchronize(device);
    for (let run = 0; run < options.warmup; run++) await timedRun(run);
    const milliseconds: number[] = [];
    for (let run = 0; run < options.runs; run++) milliseconds.push(await timedRun(run));
    return median(milliseconds);
  } finally {
    for (const input of inputs) input.dispose();
  }
}
