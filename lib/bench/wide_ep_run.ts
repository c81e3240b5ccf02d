/**
 * `moekit bench --parallel --dispatch all_to_all`, run in every process of `moekit launch --nproc N`:
 * wide Expert Parallel (lib/layer/wide_ep.ts) against one GPU. Every rank draws only its own
 * experts (random weights on its device from the same seeds, so DeepSeek-V3-sized layers need no
 * host copy and every rank's router is the whole layer's) and times forwardAllToAll on its own
 * `tokens` tokens; then it times the whole layer alone on the same number of tokens. Both are wall-clock per forward up to the device being idle, since the
 * all-to-all design waits for the row counts on the host anyway. Rank 0 prints one row per point:
 * the slowest rank's time, tokens/s per GPU against the single GPU's, and the rows' bytes each
 * way over the forward (a lower bound on the all-to-all's achieved bandwidth: the forward's
 * compute is in the time too). With --quantize the experts are quantized; FP8 experts' rows go out
 * as FP8 with their scales and come back in the layer's dtype. Over a ProcessGroup it also times the all-reduce design at the same
 * world size and tokens per GPU: every rank runs all N · tokens tokens on its experts and one
 * all-reduce sums them.
 */
import type { Device } from '../device';
import { DTYPE_BYTES, type FloatDType } from '../dtype';
import { MoELayer } from '../layer/moe_layer';
import { fp8Blocks, type GroupSize, type Quantization } from '../ops/quantized';
import type { ExchangeGroup } from '../layer/wide_ep';
import { resolvePlan, shardForRank } from '../parallel/plan';
import { ProcessGroup } from '../parallel/process_group';
import { synchronize } from '../sync';
import { Tensor } from '../tensor';
import type { BenchPreset } from './presets';
import { writeJsonReport } from './report';
import { median } from './statistics';
import type { TimingOptions } from './timing';

export interface WideEpBenchOptions extends TimingOptions {
  presets: readonly BenchPreset[];
  /** Tokens each rank brings. */
  tokens: readonly number[];
  dtype: FloatDType;
  /** The experts quantized (as `moekit bench --quantize`), with their group size. */
  quantize?: Quantization | undefined;
  groupSize?: GroupSize | undefined;
  json: string | undefined;
}

/** What the bench needs of a group: ProcessGroup has it. */
export interface WideEpBenchGroup extends ExchangeGroup {
  readonly device: Device;
}

export interface WideEpRow {
  preset: string;
  worldSize: number;
  tokensPerRank: number;
  dtype: FloatDType;
  /** The slowest rank's median ms per forward. */
  wideMs: number;
  /** The median over ranks of one GPU's whole layer on the same tokens. */
  singleMs: number;
  /** Tokens/s per GPU of wide EP over one GPU's: singleMs / wideMs. */
  perGpuRatio: number;
  /** The experts' quantization, if any. */
  quantization?: Quantization;
  /** The most routed rows any rank sent away to other ranks per forward (and got back). */
  rowsSent: number;
  /** rowsSent's bytes both ways: out in the layer's dtype (FP8 experts: FP8 with their scales), back in the layer's dtype. */
  exchangeBytes: number;
  /** exchangeBytes over wideMs, GB/s: a lower bound on the exchange's bandwidth. */
  exchangeGBs: number;
  /**
   * Over a ProcessGroup: the slowest rank's ms per forward of the all-reduce design (EP over the
   * group, every rank running all worldSize × tokensPerRank tokens), and wide EP's tokens/s per
   * GPU over it (allReduceMs / wideMs, as both designs move worldSize × tokensPerRank tokens).
   */
  allReduceMs?: number;
  overAllReduce?: number;
}

/** Median wall-clock ms of `run` (each awaited, then the device idle), after `warmup` untimed runs. */
async function medianMs(device: Device, options: TimingOptions, run: () => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let index = 0; index < options.warmup + options.runs; index++) {
    const start = process.hrtime.bigint();
    await run();
    await synchronize(device);
    if (index >= options.warmup) times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return median(times);
}

/** Every rank's `values` on every rank, by an all-to-all of one row sent to all. */
async function gather(group: WideEpBenchGroup, values: readonly number[]): Promise<number[][]> {
  const width = values.length;
  const ranks = group.worldSize;
  using mine = Tensor.fromArray(Float32Array.from({ length: ranks * width }, (_, i) => values[i % width]!), [ranks, width], { device: group.device });
  using all = Tensor.empty([ranks, width], { device: group.device });
  await group.allToAll(mine, all);
  const data = (await all.toArray()) as Float32Array;
  return Array.from({ length: ranks }, (_, rank) => Array.from(data.subarray(rank * width, (rank + 1) * width)));
}

/** This rank's routed rows that leave it: pairs whose expert another rank holds. */
async function rowsLeaving(counts: Tensor, rank: number, ranks: number): Promise<number> {
  const perExpert = (await counts.toArray()) as Int32Array;
  const width = perExpert.length / ranks;
  return perExpert.reduce((total, count, expert) => total + (Math.floor(expert / width) === rank ? 0 : count), 0);
}

/** The command: in each process of `moekit launch`, over the launcher's group; rank 0 prints. */
export async function runWideEpCommand(options: WideEpBenchOptions): Promise<WideEpRow[]> {
  const group = await ProcessGroup.init();
  try {
    return await runWideEpBench(options, group, (line) => {
      if (group.rank === 0) console.log(line);
    });
  } finally {
    await group.synchronize().catch(() => {});
    group.destroy();
  }
}

/** Bytes one routed row moves out and back: out as the rows travel (FP8 experts: FP8 and a float32 scale per 128 values), back in the layer's dtype. */
export function exchangeBytesPerRow(hidden: number, dtype: FloatDType, quantize: Quantization | undefined): number {
  const out = quantize === 'fp8' ? hidden * DTYPE_BYTES.float8_e4m3 + fp8Blocks(hidden) * DTYPE_BYTES.float32 : hidden * DTYPE_BYTES[dtype];
  return out + hidden * DTYPE_BYTES[dtype];
}

export async function runWideEpBench(options: WideEpBenchOptions, group: WideEpBenchGroup, print: (line: string) => void): Promise<WideEpRow[]> {
  const { device } = group;
  const { dtype, quantize, groupSize } = options;
  // Every layer of the bench: its experts quantized as asked.
  const quantized = quantize === undefined ? {} : { quantize, ...(groupSize !== undefined && { groupSize }) };
  const rows: WideEpRow[] = [];
  print(`# wide EP (all-to-all dispatch) on ${group.worldSize} ranks, ${dtype}${quantize ? `, ${quantize} experts` : ''}; ms per forward, wall clock, slowest rank; one GPU: the whole layer on the same tokens`);
  print('preset                      tokens/rank   wide ms  1-GPU ms  per-GPU speed  rows sent  exchange GB/s  all-reduce ms  wide speed' +
    '  (GB/s: a lower bound; all-reduce: EP over the group on all ranks\' tokens, over a ProcessGroup only)');
  for (const preset of options.presets) {
    const { config } = preset;
    const plan = resolvePlan(group.worldSize, { moeEpSize: group.worldSize, dispatch: 'all_to_all' }, config);
    for (const tokens of options.tokens) {
      using x = Tensor.random([tokens, config.hiddenSize], { dtype, device, seed: 100 + group.rank });
      let sent: number;
      let wideMs: number;
      {
        using wide = MoELayer.random(config, { device, dtype, seed: 0, shard: shardForRank(plan, config, group.rank), ...quantized });
        {
          using first = await wide.forwardAllToAll(x, { group });
          sent = await rowsLeaving(first.expertCounts, group.rank, group.worldSize);
        }
        wideMs = await medianMs(device, options, async () => {
          using result = await wide.forwardAllToAll(x, { group });
          void result;
        });
      }
      let singleMs: number;
      {
        using whole = MoELayer.random(config, { device, dtype, seed: 0, ...quantized });
        singleMs = await medianMs(device, options, async () => {
          using result = whole.forward(x);
          void result;
        });
      }
      // The all-reduce design needs the group's allReduce: over a ProcessGroup only.
      let allReduceMs = Number.NaN;
      if (group instanceof ProcessGroup) {
        using everyone = Tensor.random([group.worldSize * tokens, config.hiddenSize], { dtype, device, seed: 99 });
        using reduced = MoELayer.random(config, { group, parallel: { moeEpSize: group.worldSize }, dtype, seed: 0, ...quantized });
        allReduceMs = await medianMs(device, options, async () => {
          using result = reduced.forward(everyone);
          void result;
        });
      }
      const all = await gather(group, [wideMs, singleMs, sent, allReduceMs]);
      const slowest = Math.max(...all.map(([ms]) => ms!));
      const single = median(all.map(([, ms]) => ms!));
      const rowsSent = Math.max(...all.map(([, , count]) => count!));
      const bytes = rowsSent * exchangeBytesPerRow(config.hiddenSize, dtype, quantize);
      const reducedMs = Math.max(...all.map(([, , , ms]) => ms!));
      const row: WideEpRow = {
        preset: preset.name, worldSize: group.worldSize, tokensPerRank: tokens, dtype, wideMs: slowest, singleMs: single,
        perGpuRatio: single / slowest, ...(quantize && { quantization: quantize }), rowsSent, exchangeBytes: bytes, exchangeGBs: bytes / (slowest * 1e6),
        ...(Number.isFinite(reducedMs) && { allReduceMs: reducedMs, overAllReduce: reducedMs / slowest }),
      };
      rows.push(row);
      const versus = row.allReduceMs === undefined ? '' : `${row.allReduceMs.toFixed(3).padStart(14)}${`${row.overAllReduce!.toFixed(2)}×`.padStart(12)}`;
      print(`${preset.name.padEnd(28)}${String(tokens).padStart(11)}${slowest.toFixed(3).padStart(10)}${single.toFixed(3).padStart(10)}` +
        `${`${row.perGpuRatio.toFixed(2)}×`.padStart(15)}${String(rowsSent).padStart(11)}${row.exchangeGBs.toFixed(1).padStart(15)}${versus}`);
    }
  }
  if (group.rank === 0 && options.json !== undefined) writeJsonReport(options.json, rows);
  return rows;
}
