/** Timing a layer forward: warm-up, then the median of timed runs over rotated inputs. */
import type { MoELayer } from '../layer/moe_layer';
import { synchronize } from '../sync';
import { Tensor } from '../tensor';

export interface TimingOptions {
  warmup: number;
  runs: number;
  /** Distinct inputs cycled through, so caches do not flatter repeated runs. */
  rotations: number;
}

export const DEFAULT_TIMING: TimingOptions = { warmup: 2, runs: 7, rotations: 4 };

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Median milliseconds of one forward of `tokens` tokens, each run awaited to completion. */
export async function timeForward(layer: MoELayer, tokens: number, options: TimingOptions = DEFAULT_TIMING): Promise<number> {
  const inputs = Array.from({ length: options.rotations }, (_, seed) =>
    Tensor.random([tokens, layer.config.hiddenSize], { dtype: layer.dtype, device: layer.device, seed: 7000 + seed }));
  try {
    const runOnce = async (index: number): Promise<number> => {
      const start = process.hrtime.bigint();
      using result = layer.forward(inputs[index % inputs.length]!);
      await synchronize(layer.device);
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    await synchronize(layer.device);
    for (let i = 0; i < options.warmup; i++) await runOnce(i);
    const times: number[] = [];
    for (let i = 0; i < options.runs; i++) times.push(await runOnce(i));
    return median(times);
  } finally {
    for (const input of inputs) input.dispose();
  }
}
