/**
 * The multi-GPU benchmark's plans and report: which (moeTp, moeEp) plans a run times, how evenly
 * each plan spreads the routed work over the ranks, and the rows rank 0 prints.
 */
import type { Device } from '../device';
import type { FloatDType } from '../dtype';
import { MoekitError } from '../errors';
import type { MoEConfig } from '../model/config';
import { FORWARD_STAGES, type ForwardStage } from '../layer/forward';
import { factorizations, resolvePlan, shardForRank, type ParallelOptions, type ParallelPlan } from '../parallel/plan';
import { formatLine, formatMs, PRESET_COLUMN_WIDTH, stageColumns, type Column } from './report';
import { forwardFlops } from './roofline';

/**
 * The plans to time: the one `sizes` names, or, when it names none, every factorization of the
 * group that the layer's shape allows (TP first). `skipped` says why the others were left out.
 */
export function benchPlans(worldSize: number, sizes: ParallelOptions, config: MoEConfig): { plans: ParallelPlan[]; skipped: string[] } {
  if (sizes.moeTpSize !== undefined || sizes.moeEpSize !== undefined) return { plans: [resolvePlan(worldSize, sizes, config)], skipped: [] };
  const plans: ParallelPlan[] = [];
  const skipped: string[] = [];
  for (const candidate of factorizations(worldSize)) {
    try {
      plans.push(resolvePlan(worldSize, { moeTpSize: candidate.moeTpSize, moeEpSize: candidate.moeEpSize }, config));
    } catch (error) {
      if (!(error instanceof MoekitError)) throw error;
      skipped.push(`${planName(candidate)}: ${error.message}`);
    }
  }
  return { plans, skipped };
}

/** 'tp2×ep4' */
export function planName(plan: Pick<ParallelPlan, 'moeTpSize' | 'moeEpSize'>): string {
  return `tp${plan.moeTpSize}×ep${plan.moeEpSize}`;
}

/**
 * The routed (token, expert) pairs each rank computes, from one forward's expert counts ([E]; the
 * same on every rank, which all route every token): under EP a rank computes the pairs of its own
 * experts; TP ranks split each pair's work evenly, so within an EP group they are equal.
 */
export function rankPairs(expertCounts: Int32Array, plan: ParallelPlan, config: MoEConfig): number[] {
  return Array.from({ length: plan.worldSize }, (_, rank) => {
    const { experts } = shardForRank(plan, config, rank);
    let pairs = 0;
    for (let expert = experts.first; expert < experts.first + experts.count; expert++) pairs += expertCounts[expert]!;
    return pairs;
  });
}

/** max / mean of the ranks' loads: 1 is perfectly even, N means one rank of N does all the work. */
export function loadImbalance(loads: readonly number[]): number {
  const mean = loads.reduce((sum, load) => sum + load, 0) / loads.length;
  return mean === 0 ? 1 : Math.max(...loads) / mean;
}

/** What each rank measured for one point, gathered onto every rank. */
export interface RankTiming {
  /** Median device time of the whole forward, all-reduce included. */
  ms: number;
  /** Median device time of the all_reduce stage (waiting for the slower ranks included). */
  allReduceMs: number;
}

export interface ParallelRow {
  preset: string;
  device: Device;
  deviceName: string;
  dtype: FloatDType;
  tokens: number;
  worldSize: number;
  moeTpSize: number;
  moeEpSize: number;
  /** The slowest rank's median forward: the time the plan takes per layer. */
  msPerForward: number;
  /** Each rank's median forward and all_reduce stage, by rank. */
  rankMs: number[];
  rankAllReduceMs: number[];
  /** Mean over ranks of all_reduce ÷ forward. */
  allReduceShare: number;
  /** (token, expert) pairs each rank computes, averaged over the rotated inputs. */
  rankPairs: number[];
  /** loadImbalance of the pairs, averaged over the rotated inputs. */
  loadImbalance: number;
  tflops: number;
  /** Rank 0's median stage times. */
  stageMs: Partial<Record<ForwardStage, number>>;
}

export interface ParallelPoint {
  preset: string;
  config: MoEConfig;
  plan: ParallelPlan;
  device: Device;
  deviceName: string;
  dtype: FloatDType;
  tokens: number;
  ranks: readonly RankTiming[];
  /** Rank 0's stage medians. */
  stageMs: Partial<Record<ForwardStage, number>>;
  /** Expert counts of one forward per rotated input. */
  expertCounts: readonly Int32Array[];
}

export function parallelRow(point: ParallelPoint): ParallelRow {
  const { plan, config, ranks } = point;
  const loads = point.expertCounts.map((counts) => rankPairs(counts, plan, config));
  const mean = (values: readonly number[]): number => values.reduce((sum, value) => sum + value, 0) / values.length;
  const msPerForward = Math.max(...ranks.map((rank) => rank.ms));
  return {
    preset: point.preset,
    device: point.device,
    deviceName: point.deviceName,
    dtype: point.dtype,
    tokens: point.tokens,
    worldSize: plan.worldSize,
    moeTpSize: plan.moeTpSize,
    moeEpSize: plan.moeEpSize,
    msPerForward,
    rankMs: ranks.map((rank) => rank.ms),
    rankAllReduceMs: ranks.map((rank) => rank.allReduceMs),
    allReduceShare: mean(ranks.map((rank) => rank.allReduceMs / rank.ms)),
    rankPairs: Array.from({ length: plan.worldSize }, (_, rank) => mean(loads.map((load) => load[rank]!))),
    loadImbalance: loads.length === 0 ? Number.NaN : mean(loads.map(loadImbalance)),
    tflops: forwardFlops(config, point.tokens) / (msPerForward / 1e3) / 1e12,
    stageMs: point.stageMs,
  };
}

const COLUMNS: readonly Column<ParallelRow>[] = [
  { title: 'preset', width: PRESET_COLUMN_WIDTH, text: true, cell: (row) => row.preset },
  { title: 'plan', width: 9, text: true, cell: (row) => planName(row) },
  { title: 'tokens', width: 6, cell: (row) => String(row.tokens) },
  { title: 'ms/forward', width: 10, cell: (row) => formatMs(row.msPerForward) },
  { title: 'all_reduce share', width: 16, cell: (row) => `${(row.allReduceShare * 100).toFixed(1)}%` },
  { title: 'load max/mean', width: 13, cell: (row) => row.loadImbalance.toFixed(2) },
  { title: 'TFLOP/s', width: 8, cell: (row) => row.tflops.toFixed(2) },
  // A sharded layer never runs the fused decode op.
  ...stageColumns<ParallelRow>(FORWARD_STAGES.filter((stage) => stage !== 'fused')),
];

export function formatParallelPreamble(worldSize: number, deviceName: string, dtype: FloatDType): string[] {
  return [
    `# ${worldSize} ranks (${deviceName}), ${dtype}; ms/forward: the slowest rank's median device time;`,
    '# all_reduce share: mean over ranks of the all_reduce stage / forward; load: max/mean over ranks of',
    "# routed (token, expert) pairs computed; stage columns: rank 0's medians",
  ];
}

export function formatParallelHeader(): string {
  return formatLine(COLUMNS, COLUMNS.map((column) => column.title));
}

export function formatParallelRow(row: ParallelRow): string {
  return formatLine(COLUMNS, COLUMNS.map((column) => column.cell(row)));
}
