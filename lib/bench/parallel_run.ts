/**
 * `moekit bench --parallel`, run in every process of `moekit launch --nproc N`: each rank draws the
 * same random weights and inputs (same seeds), keeps its shard for each plan, times the forward
 * (the all-reduce included) and gathers the ranks' times; rank 0 prints and writes the rows.
 */
import type { Device } from '../device';
import type { FloatDType } from '../dtype';
import { MoekitError } from '../errors';
import type { HostQuantized, HostTensor, MoEWeights } from '../model/config';
import { forEachWeight, mapWeights, MoELayer, randomMoEWeights } from '../layer/moe_layer';
import type { Quantization } from '../ops/quantized';
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
  /** Quantize the experts of each rank's shard at load. */
  quantize: Quantization | undefined;
  /** The plan to time; none given: every factorization of the group the layer allows. */
  sizes: ParallelOptions;
  json: string | undefined;
}

// A host typed array holds at most 2^32 elements; each rank cuts its shard from the full weights.
const MAX_HOST_ELEMENTS = 2 ** 32;

/**
 * The layer's random weights (randomMoEWeights, the same on every rank for the same seeds), drawn
 * on `device` and brought to the host, where each rank cuts its shard from them.
 */
export async function randomHostWeights(preset: BenchPreset, dtype: FloatDType, device: Device): Promise<MoEWeights<HostTensor>> {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = preset.config;
  for (const shape of [[E, 2 * I, H], [E, H, I]]) {
    if (shape.reduce((product, extent) => product * extent, 1) >= MAX_HOST_ELEMENTS) {
      throw new MoekitError('E_INVALID_ARGUMENT',
        `bench --parallel: ${preset.name}'s [${shape.join(', ')}] weights exceed a host array (2^32 elements), and each rank cuts its shard from the full host weights; use a smaller preset`);
    }
  }
  const drawn = randomMoEWeights(preset.config, { device, dtype, seed: 0 });
  try {
    const downloads: Promise<void>[] = [];
    const download = (tensor: Tensor): HostTensor => {
      const copy: HostTensor = { dtype: tensor.dtype as FloatDType, shape: [...tensor.shape], data: new Float32Array(0) };
      downloads.push(tensor.toArray().then((data) => {
        copy.data = data as Float32Array | Uint16Array;
      }));
      return copy;
    };
    // Random weights are drawn dense: every matrix is a Tensor.
    const host = mapWeights<Tensor, never, HostTensor, HostQuantized>(drawn, { tensor: download, matrix: download });
    await Promise.all(downloads);
    return host;
  } finally {
    forEachWeight(drawn, (tensor) => tensor.dispose());
  }
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
      // Quantized layers also need plans that keep 128-blocks whole.
      const { plans, skipped } = benchPlans(group.worldSize, options.sizes, { ...preset.config, quantization: options.quantize ?? null });
      for (const reason of skipped) print(`# ${preset.name}: skipped ${reason}`);
      const weights = await randomHostWeights(preset, options.dtype, group.device);
      for (const plan of plans) {
        const parallel = { moeTpSize: plan.moeTpSize, moeEpSize: plan.moeEpSize };
        using layer = MoELayer.fromWeights(preset.config, weights, { group, parallel, dtype: options.dtype, quantize: options.quantize });
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
