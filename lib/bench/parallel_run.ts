/**
 * `moekit bench --parallel`, run in every process of `moekit launch --nproc N`: each rank draws the
 * same random weights and inputs (same seeds), keeps its shard for each plan, times the forward
 * (the all-reduce included) and gathers the ranks' times; rank 0 prints and writes the rows.
 */
import type { FloatDType } from '../dtype';
import { MoekitError } from '../errors';
import type { HostTensor, MoEWeights } from '../layer/config';
import { MoELayer } from '../layer/moe_layer';
import type { ParallelOptions } from '../parallel/plan';
import { ProcessGroup } from '../parallel/process_group';
import { Tensor } from '../tensor';
import {
  benchPlans, formatParallelHeader, formatParallelPreamble, formatParallelRow, parallelRow, planName, type ParallelRow, type RankTiming,
} from './parallel';
import type { BenchPreset } from './presets';
import { deviceName, writeJsonReport } from './report';
import { timeForward, type TimingOptions } from './timing';

export interface ParallelBenchOptions extends TimingOptions {
  presets: readonly BenchPreset[];
  tokens: readonly number[];
  dtype: FloatDType;
  /** The plan to time; none given: every factorization of the group the layer allows. */
  sizes: ParallelOptions;
  json: string | undefined;
}

// A host typed array holds at most 2^32 elements; each rank cuts its shard from the full weights.
const MAX_HOST_ELEMENTS = 2 ** 32;

/** Random weights drawn on `group.device` and brought to the host: the same on every rank for a seed. */
async function randomHostWeights(preset: BenchPreset, dtype: FloatDType, group: ProcessGroup): Promise<MoEWeights<HostTensor>> {
  const { config } = preset;
  let seed = 0;
  const draw = async (shape: number[], fanIn: number, as: FloatDType = dtype): Promise<HostTensor> => {
    const elements = shape.reduce((product, extent) => product * extent, 1);
    if (elements >= MAX_HOST_ELEMENTS) {
      throw new MoekitError('E_INVALID_ARGUMENT',
        `bench --parallel: ${preset.name}'s [${shape.join(', ')}] weights exceed a host array (2^32 elements), and each rank cuts its shard from the full host weights; use a smaller preset`);
    }
    using tensor = Tensor.random(shape, { dtype: as, device: group.device, seed: seed++, scale: 1 / Math.sqrt(fanIn) });
    return { dtype: as, shape, data: (await tensor.toArray()) as Float32Array | Uint16Array };
  };
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = config;
  const weights: MoEWeights<HostTensor> = { router: await draw([E, H], H), w13: await draw([E, 2 * I, H], H), w2: await draw([E, H, I], I) };
  if (config.routing.method === 'sigmoid_group_topk') weights.correctionBias = await draw([E], 10, 'float32');
  if (config.sharedExpert) {
    const S = config.sharedExpert.intermediateSize;
    weights.shared = { w13: await draw([2 * S, H], H), w2: await draw([H, S], S) };
    if (config.sharedExpert.gated) weights.shared.gate = await draw([1, H], H);
  }
  return weights;
}

/** Every rank's timing of one point, on every rank: one all-reduce of a [worldSize, 2] tensor. */
async function gatherTimings(group: ProcessGroup, own: RankTiming): Promise<RankTiming[]> {
  const slots = new Float32Array(group.worldSize * 2);
  slots.set([own.ms, own.allReduceMs], group.rank * 2);
  using gathered = Tensor.fromArray(slots, [group.worldSize, 2], { device: group.device });
  group.allReduce(gathered);
  const values = (await gathered.toArray()) as Float32Array;
  return Array.from({ length: group.worldSize }, (_, rank) => ({ ms: values[2 * rank]!, allReduceMs: values[2 * rank + 1]! }));
}

export async function runParallelBench(options: ParallelBenchOptions): Promise<ParallelRow[]> {
  const group = await ProcessGroup.init();
  const print = (line: string): void => {
    if (group.rank === 0) console.log(line);
  };
  const rows: ParallelRow[] = [];
  try {
    const name = deviceName(group.device);
    for (const line of formatParallelPreamble(group.worldSize, name, options.dtype)) print(line);
    print(formatParallelHeader());
    for (const preset of options.presets) {
      const { plans, skipped } = benchPlans(group.worldSize, options.sizes, preset.config);
      for (const reason of skipped) print(`# ${preset.name}: skipped ${reason}`);
      const weights = await randomHostWeights(preset, options.dtype, group);
      for (const plan of plans) {
        const parallel = { moeTpSize: plan.moeTpSize, moeEpSize: plan.moeEpSize };
        using layer = MoELayer.fromWeights(preset.config, weights, { group, parallel, dtype: options.dtype });
        for (const tokens of options.tokens) {
          const timing = await timeForward(layer, tokens, options);
          const allReduceMs = timing.stageMs.all_reduce;
          if (allReduceMs === undefined) throw new MoekitError('E_NATIVE', `bench --parallel: ${planName(plan)} reported no all_reduce stage`);
          const ranks = await gatherTimings(group, { ms: timing.ms, allReduceMs });
          const row = parallelRow({
            preset: preset.name, config: preset.config, plan, device: group.device, deviceName: name, dtype: options.dtype, tokens,
            ranks, stageMs: timing.stageMs, expertCounts: timing.expertCounts,
          });
          print(formatParallelRow(row));
          rows.push(row);
        }
      }
    }
    if (group.rank === 0 && options.json !== undefined) writeJsonReport(options.json, rows);
  } finally {
    await group.synchronize().catch(() => {});
    group.destroy();
  }
  return rows;
}
