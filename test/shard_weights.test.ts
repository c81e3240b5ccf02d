// shardWeights (lib/parallel/shard_weights.ts): one rank's part of host weights, checked value by
// value against the rule: its experts; of each expert, gate rows [i0, i0+n) and up rows
// [I+i0, I+i0+n) of w13 when gated, rows [i0, i0+n) when not; columns [i0, i0+n) of w2.
import { describe, expect, it } from 'vitest';

import type { HostTensor, MoEWeights } from '../lib/model/config';
import { resolvePlan, shardForRank } from '../lib/parallel/plan';
import { shardWeights } from '../lib/parallel/shard_weights';
import type { ActivationKind } from '../lib/vocabulary';
import { swigluConfig } from './helpers/configs';

const [H, I, E] = [2, 4, 2];

/** A tensor whose element at flat index f is `base + f`, so every value says where it came from. */
function numbered(shape: number[], base: number): HostTensor {
  const count = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'float32', shape, data: Float32Array.from({ length: count }, (_, f) => base + f) };
}

function weightsFor(gated: boolean): MoEWeights<HostTensor> {
  const width = gated ? 2 * I : I;
  return {
    router: numbered([E, H], 0),
    w13: numbered([E, width, H], 1000),
    w13Bias: numbered([E, width], 2000),
    w2: numbered([E, H, I], 3000),
    w2Bias: numbered([E, H], 4000),
  };
}

/** Rows `rows` of expert e's [R, C] matrix in a numbered [E, R, C] stack starting at base. */
function rowsOf(base: number, e: number, R: number, C: number, rows: number[]): number[] {
  return rows.flatMap((r) => Array.from({ length: C }, (_, c) => base + (e * R + r) * C + c));
}

function shardOf(activation: ActivationKind, rank: number) {
  const config = swigluConfig({ hidden: H, intermediate: I, experts: E, topK: 1 }, { activation, expertBias: true });
  const plan = resolvePlan(2, { moeTpSize: 2, moeEpSize: 1 }, config);
  const shard = shardForRank(plan, config, rank);
  return { shard, sharded: shardWeights(config, weightsFor(activation === 'swiglu'), shard) };
}

describe('shardWeights under TP2', () => {
  it.each([0, 1])('gated (swiglu), rank %i: its gate rows, then its up rows', (rank) => {
    const { shard, sharded } = shardOf('swiglu', rank);
    const mine = [2 * rank, 2 * rank + 1];
    expect(shard.intermediate).toEqual({ first: 2 * rank, count: 2 });
    expect(sharded.w13).toMatchObject({ shape: [E, 4, H] });
    const expected = [0, 1].flatMap((e) => rowsOf(1000, e, 2 * I, H, [...mine, ...mine.map((r) => I + r)]));
    expect([...(sharded.w13 as HostTensor).data]).toEqual(expected);
    expect([...sharded.w13Bias!.data]).toEqual([0, 1].flatMap((e) => [...mine, ...mine.map((r) => I + r)].map((i) => 2000 + e * 2 * I + i)));
  });

  it.each([0, 1])('not gated (silu), rank %i: only its rows, no zero padding', (rank) => {
    const { sharded } = shardOf('silu', rank);
    const mine = [2 * rank, 2 * rank + 1];
    expect(sharded.w13).toMatchObject({ shape: [E, 2, H] });
    expect([...(sharded.w13 as HostTensor).data]).toEqual([0, 1].flatMap((e) => rowsOf(1000, e, I, H, mine)));
    expect([...sharded.w13Bias!.data]).toEqual([0, 1].flatMap((e) => mine.map((i) => 2000 + e * I + i)));
    expect(sharded.w2).toMatchObject({ shape: [E, H, 2] });
    const w2 = [0, 1].flatMap((e) => [0, 1].flatMap((h) => mine.map((i) => 3000 + (e * H + h) * I + i)));
    expect([...(sharded.w2 as HostTensor).data]).toEqual(w2);
    // The output bias is added once over the group: rank 0 keeps it, the others hold zeros.
    expect([...sharded.w2Bias!.data]).toEqual(rank === 0 ? [4000, 4001, 4002, 4003] : [0, 0, 0, 0]);
  });
});
