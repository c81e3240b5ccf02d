/**
 * Cutting a layer's host weights down to one rank's shard (lib/parallel/plan.ts): its experts,
 * and its slice of every expert's intermediate dimension. Used when the full weights are already
 * in memory; the checkpoint loader reads a shard's bytes directly instead. Quantized expert
 * matrices are cut alike, their scales along with their values (the plan has checked that slices
 * fall on block or group boundaries).
 */
import { allocateHostArray } from '../dtype';
import { isQuantized, type HostQuantized, type HostTensor, type MoEConfig, type MoEWeights } from '../model/config';
import { FP8_BLOCK_SIZE, logicalShape, MXFP4_GROUP_SIZE, requireGroupSize } from '../ops/quantized';
import { isGated } from '../vocabulary';
import type { RankShard, Slice } from './plan';

function allocateLike(tensor: HostTensor, shape: number[]): HostTensor {
  return { dtype: tensor.dtype, shape, data: allocateHostArray(tensor.dtype, shape.reduce((total, extent) => total * extent, 1)) };
}

/** How many values of a matrix's rows and columns one element of a stored tensor stands for. */
interface Units {
  rows: number;
  cols: number;
}

/** The units of a quantized matrix's data and scales (values along rows; along K, bytes or groups). */
function quantizedUnits(matrix: HostQuantized): { data: Units; scales: Units } {
  const depth = logicalShape(matrix.format, matrix.data.shape).at(-1)!;
  const perByte = depth / matrix.data.shape.at(-1)!;
  switch (matrix.format) {
    case 'fp8_block128': return { data: { rows: 1, cols: 1 }, scales: { rows: FP8_BLOCK_SIZE, cols: FP8_BLOCK_SIZE } };
    case 'mxfp4': return { data: { rows: 1, cols: perByte }, scales: { rows: 1, cols: MXFP4_GROUP_SIZE } };
    default: {
      const groupSize = requireGroupSize(matrix.groupSize, matrix.format, 'shardWeights');
      return { data: { rows: 1, cols: perByte }, scales: { rows: 1, cols: groupSize === 'channel' ? depth : groupSize } };
    }
  }
}

/**
 * An expert matrix cut by `cut`: its values, and for quantized weights its data and scales, each
 * in its own units.
 */
function cutMatrix(matrix: HostTensor | HostQuantized, cut: (tensor: HostTensor, units: Units) => HostTensor): HostTensor | HostQuantized {
  if (!isQuantized(matrix)) return cut(matrix, { rows: 1, cols: 1 });
  const units = quantizedUnits(matrix);
  return { ...matrix, data: cut(matrix.data, units.data), scales: cut(matrix.scales, units.scales) };
}

/** A slice of values as a slice of `unit`-wide blocks. */
function inUnits(slice: Slice, unit: number): Slice {
  return { first: slice.first / unit, count: slice.count / unit };
}

/** The whole of axis `axis` of `tensor`. */
function whole(tensor: HostTensor, axis: number): Slice {
  return { first: 0, count: tensor.shape[axis]! };
}

/**
 * One rank's part of a stack of up [E, 2X, H] (gated: gate rows then up rows) or [E, X, H] and
 * down [E, H, X] matrices: its experts, and its slice of X. A slice that is all of X takes whole
 * matrices (a quantized one's blocks may then straddle gate and up rows, which a slice would have
 * to cut).
 */
function shardExpertPair(w13: HostTensor | HostQuantized, w2: HostTensor | HostQuantized, experts: Slice, inter: Slice, extent: number, gated: boolean) {
  const all = inter.first === 0 && inter.count === extent;
  const sliceUp = (tensor: HostTensor, units: Units): HostTensor => {
    if (all) return sliceExperts(tensor, experts, whole(tensor, 1), whole(tensor, 2));
    if (!gated) return sliceExperts(tensor, experts, inUnits(inter, units.rows), whole(tensor, 2));
    return sliceGateUp(tensor, experts, inUnits(inter, units.rows), extent / units.rows);
  };
  return {
    w13: cutMatrix(w13, sliceUp),
    w2: cutMatrix(w2, (tensor, units) => sliceExperts(tensor, experts, whole(tensor, 1), all ? whole(tensor, 2) : inUnits(inter, units.cols))),
  };
}

/**
 * Rows [rows.first, +count) and columns [cols.first, +count) of each matrix in `experts` of a
 * [E, R, C] tensor → [experts.count, rows.count, cols.count].
 */
export function sliceExperts(tensor: HostTensor, experts: Slice, rows: Slice, cols: Slice): HostTensor {
  const [, R, C] = tensor.shape as [number, number, number];
  const out = allocateLike(tensor, [experts.count, rows.count, cols.count]);
  let at = 0;
  for (let e = experts.first; e < experts.first + experts.count; e++) {
    for (let r = rows.first; r < rows.first + rows.count; r++) {
      const start = (e * R + r) * C + cols.first;
      out.data.set(tensor.data.subarray(start, start + cols.count), at);
      at += cols.count;
    }
  }
  return out;
}

/** Gate rows then up rows of a gated [E, 2I, H] stack, each sliced to `inter`. */
function sliceGateUp(w13: HostTensor, experts: Slice, inter: Slice, intermediateSize: number): HostTensor {
  const [, , H] = w13.shape as [number, number, number];
  const gate = sliceExperts(w13, experts, inter, { first: 0, count: H });
  const up = sliceExperts(w13, experts, { first: intermediateSize + inter.first, count: inter.count }, { first: 0, count: H });
  return interleaveHalves(gate, up);
}

/** [E, n, X] gate and up halves → [E, 2n, X] (gate rows first, per expert). */
function interleaveHalves(gate: HostTensor, up: HostTensor): HostTensor {
  const [E, n, X] = gate.shape as [number, number, number];
  const out = allocateLike(gate, [E, 2 * n, X]);
  const block = n * X;
  for (let e = 0; e < E; e++) {
    out.data.set(gate.data.subarray(e * block, (e + 1) * block), 2 * e * block);
    out.data.set(up.data.subarray(e * block, (e + 1) * block), (2 * e + 1) * block);
  }
  return out;
}

/** A [1, ...] view as a one-expert stack, and back (quantized matrices: values and scales alike). */
const asStack = (tensor: HostTensor): HostTensor => ({ ...tensor, shape: [1, ...tensor.shape] });
const unstack = (tensor: HostTensor): HostTensor => ({ ...tensor, shape: tensor.shape.slice(1) });
const matrixAsStack = (matrix: HostTensor | HostQuantized) => cutMatrix(matrix, asStack);
const matrixUnstack = (matrix: HostTensor | HostQuantized) => cutMatrix(matrix, unstack);

function zerosLike(tensor: HostTensor): HostTensor {
  return allocateLike(tensor, [...tensor.shape]);
}

/** Experts `ids` of a [E, ...] stack, in that order (an id may repeat: replicas). */
function gatherExperts(tensor: HostTensor, ids: readonly number[]): HostTensor {
  const [E, ...rest] = tensor.shape as [number, ...number[]];
  const size = tensor.data.length / E;
  const out = allocateLike(tensor, [ids.length, ...rest]);
  ids.forEach((expert, i) => out.data.set(tensor.data.subarray(expert * size, (expert + 1) * size), i * size));
  return out;
}

/**
 * The routed experts' weights stacked in slot order for slots `slots` of a placement: the expert
 * matrices (quantized ones with their scales) and their biases. Router and shared expert as given.
 */
function placeExperts(weights: MoEWeights<HostTensor>, slotExperts: readonly number[], slots: Slice): MoEWeights<HostTensor> {
  const ids = slotExperts.slice(slots.first, slots.first + slots.count);
  const gather = (tensor: HostTensor): HostTensor => gatherExperts(tensor, ids);
  return {
    ...weights,
    w13: cutMatrix(weights.w13, gather),
    w2: cutMatrix(weights.w2, gather),
    ...(weights.w13Bias && { w13Bias: gather(weights.w13Bias) }),
    ...(weights.w2Bias && { w2Bias: gather(weights.w2Bias) }),
  };
}

/**
 * One rank's weights. Output-projection biases go to the rank that owns them; others get zeros.
 * With a placement, the rank's slots' experts (replicas repeated) in slot order.
 */
export function shardWeights(config: MoEConfig, weights: MoEWeights<HostTensor>, shard: RankShard): MoEWeights<HostTensor> {
  if (shard.placement) {
    const placed = placeExperts(weights, shard.placement.slotExperts, shard.experts);
    return shardWeights(config, placed, { ...shard, experts: { first: 0, count: shard.experts.count }, placement: undefined });
  }
  const { hiddenSize: H, intermediateSize: I } = config;
  const all: Slice = { first: 0, count: H };
  const sharded: MoEWeights<HostTensor> = {
    router: weights.router,
    ...shardExpertPair(weights.w13, weights.w2, shard.experts, shard.intermediate, I, isGated(config.activation)),
  };
  if (weights.routerBias) sharded.routerBias = weights.routerBias;
  if (weights.correctionBias) sharded.correctionBias = weights.correctionBias;
  if (weights.w13Bias) {
    const bias = asStack(weights.w13Bias); // [1, E, 2I] gated, [1, E, I] otherwise
    const gate = sliceExperts(bias, { first: 0, count: 1 }, shard.experts, shard.intermediate);
    if (isGated(config.activation)) {
      const up = sliceExperts(bias, { first: 0, count: 1 }, shard.experts, { first: I + shard.intermediate.first, count: shard.intermediate.count });
      sharded.w13Bias = concatLastAxis(unstack(gate), unstack(up));
    } else {
      sharded.w13Bias = unstack(gate);
    }
  }
  if (weights.w2Bias) {
    const bias = unstack(sliceExperts(asStack(weights.w2Bias), { first: 0, count: 1 }, shard.experts, all));
    sharded.w2Bias = shard.ownsOutputBias ? bias : zerosLike(bias);
  }
  if (weights.shared && config.sharedExpert && shard.sharedIntermediate) {
    const S = config.sharedExpert.intermediateSize;
    // Shared experts are always gated (validateMoEConfig).
    const one = shardExpertPair(matrixAsStack(weights.shared.w13), matrixAsStack(weights.shared.w2), { first: 0, count: 1 }, shard.sharedIntermediate, S, true);
    sharded.shared = { w13: matrixUnstack(one.w13), w2: matrixUnstack(one.w2) };
    if (weights.shared.gate) sharded.shared.gate = weights.shared.gate;
  }
  return sharded;
}

/** [n, a] and [n, b] → [n, a + b] */
function concatLastAxis(left: HostTensor, right: HostTensor): HostTensor {
  const [n, a] = left.shape as [number, number];
  const b = right.shape[1]!;
  const out = allocateLike(left, [n, a + b]);
  for (let i = 0; i < n; i++) {
    out.data.set(left.data.subarray(i * a, (i + 1) * a), i * (a + b));
    out.data.set(right.data.subarray(i * b, (i + 1) * b), i * (a + b) + a);
  }
  return out;
}
