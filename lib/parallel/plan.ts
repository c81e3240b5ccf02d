/**
 * How an MoE layer is split over a group of N GPUs, with TensorRT-LLM's semantics:
 * N = moeTpSize × moeEpSize. Tensor Parallel (TP) slices every expert's intermediate dimension
 * moeTpSize ways; Expert Parallel (EP) gives each of moeEpSize groups E / moeEpSize whole experts;
 * both at once is the hybrid. Rank r has tpRank = r mod moeTpSize and epRank = ⌊r / moeTpSize⌋.
 */
import { describeValue, MoekitError } from '../errors';
import type { MoEConfig } from '../model/config';
import { DEFAULT_GROUP_SIZES, FP8_BLOCK_SIZE, MXFP4_GROUP_SIZE, QUANTIZATION_FORMATS } from '../ops/quantized';
import { optionalOptions, requiredObject } from '../options';
import { checkPlacement, type ExpertPlacement } from './placement';

export interface ParallelOptions {
  moeTpSize?: number;
  moeEpSize?: number;
  /**
   * Balanced Expert Parallel (planPlacement): EP rank r holds the experts of slots
   * [r·slotsPerRank, (r + 1)·slotsPerRank), replicas included; placement.ranks must be moeEpSize.
   */
  placement?: ExpertPlacement;
  /**
   * How routed rows reach their experts (DISPATCH_MODES): 'all_reduce' (the default) gives every
   * rank every token and sums the ranks' partial outputs; 'all_to_all' (wide EP, as DeepSeek-V3 is
   * deployed) has each rank bring its own tokens, send each routed row to the rank that owns its
   * expert and get the results back (MoELayer.forwardAllToAll). EP only: moeTpSize 1, no placement.
   */
  dispatch?: DispatchMode;
}

/** How routed rows reach the ranks that hold their experts (ParallelOptions.dispatch). */
export const DISPATCH_MODES = ['all_reduce', 'all_to_all'] as const;
export type DispatchMode = (typeof DISPATCH_MODES)[number];

export interface ParallelPlan {
  worldSize: number;
  moeTpSize: number;
  moeEpSize: number;
  placement?: ExpertPlacement;
  dispatch?: DispatchMode;
}

/** A half-open range [first, first + count). */
export interface Slice {
  first: number;
  count: number;
}

/** What one rank holds and computes. */
export interface RankShard {
  rank: number;
  tpRank: number;
  epRank: number;
  /**
   * The experts whose weights this rank holds (global ids); with a placement, its slots (slot ids
   * of placement.slotExperts).
   */
  experts: Slice;
  /** The placement the slots belong to, when experts are placed with replicas (ParallelOptions.placement). */
  placement?: ExpertPlacement;
  /** The slice of each expert's intermediate dimension this rank holds. */
  intermediate: Slice;
  /** The slice of the shared expert's intermediate dimension (TP-wise), if any. */
  sharedIntermediate: Slice | null;
  /** Whether this rank adds the biases of the output projections (exactly one TP rank does). */
  ownsOutputBias: boolean;
  /** 'all_to_all': the rank computes its own tokens with rows dispatched to other ranks (wide EP). */
  dispatch?: DispatchMode;
}

function sizeOption(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new MoekitError('E_INVALID_ARGUMENT', `parallel.${name} must be a positive integer, got ${describeValue(value)}`);
  }
  return value;
}

/**
 * The plan for a group of worldSize ranks: TP by default; only moeTpSize → TP; only moeEpSize → EP;
 * both → hybrid. Checks, before any weight is read, that the sizes multiply to worldSize and divide
 * the experts and the intermediate sizes.
 */
export function resolvePlan(worldSize: number, options: ParallelOptions | null | undefined, config: MoEConfig): ParallelPlan {
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) {
    throw new MoekitError('E_INVALID_ARGUMENT', `the group size must be a positive integer, got ${describeValue(worldSize)}`);
  }
  const { moeTpSize: tpOption, moeEpSize: epOption, placement, dispatch } = optionalOptions(options, 'parallel');
  requiredObject(config, 'resolvePlan: config');
  const tp = sizeOption(tpOption, 'moeTpSize');
  const ep = sizeOption(epOption, 'moeEpSize');
  const moeTpSize = tp ?? (ep === undefined ? worldSize : worldSize / ep);
  const moeEpSize = ep ?? worldSize / moeTpSize;
  if (!Number.isInteger(moeTpSize) || !Number.isInteger(moeEpSize) || moeTpSize * moeEpSize !== worldSize) {
    throw new MoekitError('E_INVALID_ARGUMENT',
      `moeTpSize (${tp ?? 'unset'}) × moeEpSize (${ep ?? 'unset'}) must equal the group size ${worldSize}`);
  }
  const plan: ParallelPlan = { worldSize, moeTpSize, moeEpSize };
  if (placement !== undefined) {
    checkPlacement(placement, config.numExperts, 'parallel.placement');
    if (placement.ranks !== moeEpSize) {
      throw new MoekitError('E_INVALID_ARGUMENT', `parallel.placement is for ${placement.ranks} ranks, but moeEpSize is ${moeEpSize}`);
    }
    plan.placement = placement;
  }
  if (dispatch !== undefined) {
    if (!(DISPATCH_MODES as readonly unknown[]).includes(dispatch)) {
      throw new MoekitError('E_INVALID_ARGUMENT', `parallel.dispatch must be ${DISPATCH_MODES.map((mode) => `'${mode}'`).join(' or ')}, got ${describeValue(dispatch)}`);
    }
    if (dispatch === 'all_to_all' && (moeTpSize !== 1 || placement !== undefined)) {
      throw new MoekitError('E_INVALID_ARGUMENT', `parallel.dispatch 'all_to_all' is Expert Parallel alone: moeTpSize must be 1 (got ${moeTpSize}) and no placement given`);
    }
    if (dispatch === 'all_to_all') plan.dispatch = dispatch;
  }
  const problem = planProblem(plan, config);
  if (problem !== null) throw new MoekitError('E_INVALID_ARGUMENT', problem);
  return plan;
}

/**
 * Why the layer cannot be split by `plan` (sizes that multiply to its group size), or null when it
 * can: moeEpSize must divide the experts, moeTpSize the intermediate size, the group size the
 * shared expert's, and quantized weights must keep their blocks or groups whole.
 */
export function planProblem(plan: ParallelPlan, config: MoEConfig): string | null {
  const { worldSize, moeTpSize, moeEpSize } = plan;
  if (!plan.placement && config.numExperts % moeEpSize !== 0) return `moeEpSize ${moeEpSize} does not divide the expert count ${config.numExperts}`;
  if (config.intermediateSize % moeTpSize !== 0) return `moeTpSize ${moeTpSize} does not divide the intermediate size ${config.intermediateSize}`;
  const shared = config.sharedExpert;
  // Under all-to-all dispatch each rank computes the whole shared expert on its own tokens.
  if (shared && plan.dispatch !== 'all_to_all' && shared.intermediateSize % worldSize !== 0) {
    return `the group size ${worldSize} does not divide the shared expert's intermediate size ${shared.intermediateSize}`;
  }
  const routed = splitQuantum(config, config.intermediateSize, true);
  const routedProblem = routed ? alignedSplitProblem(routed, 'moeTpSize', moeTpSize, config.intermediateSize, 'the intermediate size') : null;
  if (routedProblem !== null || !shared || plan.dispatch === 'all_to_all') return routedProblem;
  const sharedQuantum = splitQuantum(config, shared.intermediateSize, false);
  return sharedQuantum ? alignedSplitProblem(sharedQuantum, 'the group size', worldSize, shared.intermediateSize, "the shared expert's intermediate size") : null;
}

/** The slices of an intermediate dimension that keep quantization groups whole: multiples of `size`. */
interface SplitQuantum {
  size: number;
  /** What a cut would break, for messages. */
  what: string;
}

/**
 * What a TP slice of an intermediate dimension of `extent` must keep whole so that each rank's
 * slice of quantized weights comes with its own scales (undefined: dense, any slice will do):
 * - fp8: 128×128 blocks (w13's rows and w2's columns; gate and up are sliced alike, so the up
 *   half must begin on a block too);
 * - int8 / int4: the groups along w2's K (its columns); per output channel, the whole of K;
 * - mxfp4: the groups of 32 along w2's K.
 * w13's scales are per row for the weight-only formats, so slicing its rows is free. The shared
 * expert (`routed` false) is quantized only under fp8.
 */
function splitQuantum(config: MoEConfig, extent: number, routed: boolean): SplitQuantum | undefined {
  const { quantization } = config;
  if (!quantization || (!routed && quantization !== 'fp8')) return undefined;
  switch (quantization) {
    case 'fp8': return { size: FP8_BLOCK_SIZE, what: "fp8 weights' 128×128 blocks" };
    case 'mxfp4': return { size: MXFP4_GROUP_SIZE, what: `mxfp4 weights' groups of ${MXFP4_GROUP_SIZE} along the down projection's K` };
    default: {
      const groupSize = config.quantizationGroupSize ?? DEFAULT_GROUP_SIZES[QUANTIZATION_FORMATS[quantization]];
      return groupSize === 'channel'
        ? { size: extent, what: `${quantization} weights' per-channel scales (one per output row of the down projection, over all of its K: give a groupSize to split it)` }
        : { size: groupSize, what: `${quantization} weights' groups of ${groupSize} along the down projection's K` };
    }
  }
}

/** Why a TP split `ways` ways of `extent` would not give each rank whole quantization groups; null when it does. */
function alignedSplitProblem(quantum: SplitQuantum, what: string, ways: number, extent: number, name: string): string | null {
  if (ways === 1 || (extent / ways) % quantum.size === 0) return null;
  return `${what} ${ways} would cut the ${quantum.what}: each rank's share of ${name} (${extent} / ${ways} = ${extent / ways}) must be a multiple of ${quantum.size}`;
}

/** A hand-made slice of a quantized layer's intermediate dimension: the whole of it, or whole groups. */
function requireAlignedSlice(quantum: SplitQuantum, slice: Slice, name: string, extent: number): void {
  const whole = slice.first === 0 && slice.count === extent;
  const { size } = quantum;
  if (!whole && (slice.first % size !== 0 || slice.count % size !== 0 || extent % size !== 0)) {
    throw new MoekitError('E_INVALID_ARGUMENT',
      `${name} [${slice.first}, ${slice.first + slice.count}) of ${extent} cuts the ${quantum.what}: a slice must be whole, or begin and end on multiples of ${size} of an extent that is one`);
  }
}

/**
 * Rank `rank`'s part of the layer. Shared experts are sliced over the whole group (every rank
 * computes all tokens on its slice), as TP-wise slicing of a dense MLP.
 */
export function shardForRank(plan: ParallelPlan, config: MoEConfig, rank: number): RankShard {
  requiredObject(plan, 'shardForRank: plan', ['worldSize', 'moeTpSize', 'moeEpSize']);
  requiredObject(config, 'shardForRank: config');
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= plan.worldSize) {
    throw new MoekitError('E_INVALID_ARGUMENT', `rank ${rank} is outside the group of ${plan.worldSize}`);
  }
  const tpRank = rank % plan.moeTpSize;
  const epRank = Math.floor(rank / plan.moeTpSize);
  const { placement } = plan;
  const expertsPerRank = placement ? placement.slotsPerRank : config.numExperts / plan.moeEpSize;
  const intermediatePerRank = config.intermediateSize / plan.moeTpSize;
  const shared = config.sharedExpert;
  const dispatched = plan.dispatch === 'all_to_all';
  const sharedPerRank = shared ? shared.intermediateSize / (dispatched ? 1 : plan.worldSize) : 0;
  return {
    rank,
    tpRank,
    epRank,
    experts: { first: epRank * expertsPerRank, count: expertsPerRank },
    intermediate: { first: tpRank * intermediatePerRank, count: intermediatePerRank },
    sharedIntermediate: shared ? { first: dispatched ? 0 : rank * sharedPerRank, count: sharedPerRank } : null,
    ownsOutputBias: tpRank === 0,
    ...(placement && { placement }),
    ...(dispatched && { dispatch: plan.dispatch }),
  };
}

function requireSlice(value: unknown, name: string, extent: number): void {
  const { first, count } = requiredObject(value as Slice | null | undefined, name, ['first', 'count']);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || first < 0 || count < 1 || first + count > extent) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${name} [${first}, ${first + count}) is not a non-empty range of [0, ${extent})`);
  }
}

/**
 * A shard given by hand (MoELayerOptions.shard, usually made by shardForRank), checked against the
 * config: every slice inside its dimension, so that cutting the weights cannot read past them.
 */
export function checkShard(shard: RankShard, config: MoEConfig): RankShard {
  requiredObject(shard, 'shard', ['experts', 'intermediate', 'ownsOutputBias']);
  if (shard.placement !== undefined) {
    checkPlacement(shard.placement, config.numExperts, 'shard.placement');
    requireSlice(shard.experts, 'shard.experts', shard.placement.slotExperts.length);
  } else {
    requireSlice(shard.experts, 'shard.experts', config.numExperts);
  }
  requireSlice(shard.intermediate, 'shard.intermediate', config.intermediateSize);
  if (config.sharedExpert) requireSlice(shard.sharedIntermediate, 'shard.sharedIntermediate', config.sharedExpert.intermediateSize);
  const routed = splitQuantum(config, config.intermediateSize, true);
  if (routed) requireAlignedSlice(routed, shard.intermediate, 'shard.intermediate', config.intermediateSize);
  const shared = config.sharedExpert && splitQuantum(config, config.sharedExpert.intermediateSize, false);
  if (shared) requireAlignedSlice(shared, shard.sharedIntermediate!, 'shard.sharedIntermediate', config.sharedExpert!.intermediateSize);
  if (typeof shard.ownsOutputBias !== 'boolean') {
    throw new MoekitError('E_INVALID_ARGUMENT', `shard.ownsOutputBias must be true or false, got ${describeValue(shard.ownsOutputBias)}`);
  }
  return shard;
}

/** Every (moeTpSize, moeEpSize) factorization of n, TP-only first. */
export function factorizations(n: number): ParallelPlan[] {
  const plans: ParallelPlan[] = [];
  for (let tp = n; tp >= 1; tp--) {
    if (n % tp === 0) plans.push({ worldSize: n, moeTpSize: tp, moeEpSize: n / tp });
  }
  return plans;
}
