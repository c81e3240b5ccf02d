/**
 * Timing a layer forward: warm-up runs, then timed runs over rotated inputs, each timed on the
 * device (events at the start and after each stage, lib/bench/events.ts) and on the host.
 */
import type { ForwardStage } from '../layer/forward';
import type { MoELayer } from '../layer/moe_layer';
import { synchronize } from '../sync';
import { Tensor } from '../tensor';
import { StageTimer, timeOnDevice } from './events';
import { median, quantile } from './statistics';
import { ClockSampler, type ClockSummary } from './telemetry';

export interface TimingOptions {
  /** Untimed runs first: they pay for first-touch page faults, allocator growth and lazy init. */
  warmup: number;
  runs: number;
  /**
   * On a CUDA device, forwards of up to this many tokens are also timed as CUDA-graph replays
   * (how a decode loop runs them: one launch, no per-kernel launch gaps). 0: never.
   */
  graphMaxTokens?: number;
}

export interface ForwardTiming {
  /** Device time of one forward, median over the runs, and the 10th and 90th percentiles. */
  ms: number;
  p10Ms: number;
  p90Ms: number;
  /** Host time from the first enqueue to the results being ready, median: adds launch overhead. */
  hostMs: number;
  /** Each stage's median device time (the stages this layer's forward has). */
  stageMs: Partial<Record<ForwardStage, number>>;
  /** Tokens routed to each expert ([E]) in one forward of each rotated input. */
  expertCounts: Int32Array[];
  /** What the GPU's clocks and power were over the runs (lib/bench/telemetry.ts); absent where NVML cannot read it. */
  clocks?: ClockSummary;
  /** Device time of one CUDA-graph replay of the forward, median; absent when not measured. */
  graphMs?: number;
}

/**
 * Distinct inputs cycled through the runs, so that each run routes tokens to other experts and
 * caches hold no weights a repeated input would find there again.
 */
export const INPUT_ROTATION = 4;

/** Runs of `tokens` tokens, each awaited before the next; what ForwardTiming describes. */
export async function timeForward(layer: MoELayer, tokens: number, options: TimingOptions): Promise<ForwardTiming> {
  const { device, dtype } = layer;
  const inputs = Array.from({ length: INPUT_ROTATION }, (_, index) =>
    Tensor.random([tokens, layer.config.hiddenSize], { dtype, device, seed: 1000 + index }));
  let sampler: ClockSampler | undefined;
  try {
    // Weight and input generation are queued work too; they must not land in the first run.
    await synchronize(device);
    sampler = ClockSampler.start(device);
    const deviceMs: number[] = [];
    const hostMs: number[] = [];
    const stageRuns = new Map<ForwardStage, number[]>();
    const expertCounts: Int32Array[] = [];
    for (let run = 0; run < options.warmup + options.runs; run++) {
      const input = inputs[run % INPUT_ROTATION]!;
      const start = process.hrtime.bigint();
      const timer = new StageTimer(device);
      using result = layer.forward(input, { profiler: timer });
      const { totalMs, stages } = await timer.times();
      const host = Number(process.hrtime.bigint() - start) / 1e6;
      const timed = run - options.warmup;
      if (timed < 0) continue;
      deviceMs.push(totalMs);
      hostMs.push(host);
      for (const [stage, ms] of Object.entries(stages) as [ForwardStage, number][]) {
        if (!stageRuns.has(stage)) stageRuns.set(stage, []);
        stageRuns.get(stage)!.push(ms);
      }
      // Read after the clock stopped: a small download per rotated input.
      if (timed < INPUT_ROTATION) expertCounts.push((await result.expertCounts.toArray()) as Int32Array);
    }
    const graphMs = tokens <= (options.graphMaxTokens ?? 0) && device.startsWith('cuda:')
      ? await timeReplays(layer, tokens, inputs, options)
      : undefined;
    const clocks = sampler?.stop();
    return {
      ...(graphMs !== undefined && { graphMs }),
      ...(clocks && { clocks }),
      ms: median(deviceMs),
      p10Ms: quantile(deviceMs, 0.1),
      p90Ms: quantile(deviceMs, 0.9),
      hostMs: median(hostMs),
      stageMs: Object.fromEntries([...stageRuns].map(([stage, runs]) => [stage, median(runs)])),
      expertCounts,
    };
  } finally {
    sampler?.stop();
    for (const input of inputs) input.dispose();
  }
}

/**
 * Median device time of a captured forward's replay. Before the start event the graph is replayed
 * once on another of the rotated inputs (untimed), then the run's input is copied in: the device is
 * still busy with that replay while the host submits the timed one, so the time is the replay's own
 * and not the host's latency to submit it (a decode loop submits its steps ahead of the device).
 * The untimed replay's input is half the rotation away, so the timed replay's experts are not the
 * ones it just read.
 */
async function timeReplays(layer: MoELayer, tokens: number, inputs: readonly Tensor[], options: TimingOptions): Promise<number> {
  using captured = layer.capture(tokens);
  const prepare = (run: number): void => {
    captured.input.copyFrom(inputs[(run + Math.floor(inputs.length / 2)) % inputs.length]!);
    captured.replay();
    captured.input.copyFrom(inputs[run % inputs.length]!);
  };
  return median(await timeOnDevice(layer.device, () => captured.replay(), { warmup: options.warmup, runs: options.runs, prepare }));
}
