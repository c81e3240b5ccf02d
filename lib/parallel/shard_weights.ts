/**
 * Cutting a layer's host weights down to one rank's shard (lib/parallel/plan.ts): its experts,
 * and its slice of every expert's intermediate dimension. Used when the full weights are already
 * in memory; the checkpoint loader reads a shard's bytes directly instead.
 */
import type { HostTensor, MoEConfig, MoEWeights } from '../layer/config';
import type { RankShard, Slice } from './plan';

function allocateLike(tensor: HostTensor, shape: number[]): HostTensor {
  const length = shape.reduce((total, extent) => total * extent, 1);
  const data = tensor.data instanceof Float32Array ? new Float32Array(length) : new Uint16Array(length);
  return { dtype: tensor.dtype, shape, data };
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

/** A [1, ...] view as a one-expert stack, and back. */
const asStack = (tensor: HostTensor): HostTensor => ({ ...tensor, shape: [1, ...tensor.shape] });
const unstack = (tensor: HostTensor): HostTensor => ({ ...tensor, shape: tensor.shape.slice(1) });

function zerosLike(tensor: HostTensor): HostTensor {
  return allocateLike(tensor, [...tensor.shape]);
}

/** One rank's weights. Output-projection biases go to the rank that owns them; others get zeros. */
export function shardWeights(config: MoEConfig, weights: MoEWeights<HostTensor>, shard: RankShard): MoEWeights<HostTensor> {
  const { hiddenSize: H, intermediateSize: I } = config;
  const all: Slice = { first: 0, count: H };
  const sharded: MoEWeights<HostTensor> = {
    router: weights.router,
    w13: sliceGateUp(weights.w13, shard.experts, shard.intermediate, I),
    w2: sliceExperts(weights.w2, shard.experts, all, shard.intermediate),
  };
  if (weights.routerBias) sharded.routerBias = weights.routerBias;
  if (weights.correctionBias) sharded.correctionBias = weights.correctionBias;
  if (weights.w13Bias) {
    const bias = asStack(weights.w13Bias); // [1, E, 2I]
    const gate = sliceExperts(bias, { first: 0, count: 1 }, shard.experts, shard.intermediate);
    const up = sliceExperts(bias, { first: 0, count: 1 }, shard.experts, { first: I + shard.intermediate.first, count: shard.intermediate.count });
    sharded.w13Bias = concatLastAxis(unstack(gate), unstack(up));
  }
  if (weights.w2Bias) {
    const bias = unstack(sliceExperts(asStack(weights.w2Bias), { first: 0, count: 1 }, shard.experts, all));
    sharded.w2Bias = shard.ownsOutputBias ? bias : zerosLike(bias);
  }
  if (weights.shared && config.sharedExpert && shard.sharedIntermediate) {
    const S = config.sharedExpert.intermediateSize;
    const one: Slice = { first: 0, count: 1 };
    sharded.shared = {
      w13: unstack(sliceGateUp(asStack(weights.shared.w13), one, shard.sharedIntermediate, S)),
      w2: unstack(sliceExperts(asStack(weights.shared.w2), one, all, shard.sharedIntermediate)),
    };
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
