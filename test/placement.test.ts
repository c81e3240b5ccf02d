// The expert load balancer (lib/parallel/placement.ts): placements for skewed routing, measured
// with the same load model the balancer plans with, and its checks.
import { describe, expect, it } from 'vitest';

import { loadImbalance, planPlacement, rankLoads, route, Tensor, type ExpertPlacement } from '../lib/index';
import { expectThrows } from './helpers/errors';
import { randomArray } from './reference/ops';

/** Plain Expert Parallel: E / ranks consecutive experts per rank, no replicas. */
function contiguous(experts: number, ranks: number): ExpertPlacement {
  return { ranks, slotsPerRank: experts / ranks, slotExperts: Array.from({ length: experts }, (_, expert) => expert) };
}

/** Routed pairs per expert from the CPU backend's routing of `tokens` random tokens whose logits favour the first `hot` experts by `bias`. */
async function skewedLoads(experts: number, topK: number, tokens: number, hot: number, bias: number): Promise<number[]> {
  const logits = randomArray(tokens * experts, 11);
  for (let t = 0; t < tokens; t++) {
    for (let e = 0; e < hot; e++) logits[t * experts + e]! += bias * (1 - e / hot);
  }
  using input = Tensor.fromArray(logits, [tokens, experts]);
  const routed = route(input, { topK });
  const counts = Array.from(await routed.expertCounts.toArray(), Number);
  for (const tensor of Object.values(routed)) tensor.dispose();
  return counts;
}

/** Every slot filled, every expert held, no rank holding one expert twice while avoidable. */
function expectWellFormed(placement: ExpertPlacement, experts: number): void {
  expect(placement.slotExperts).toHaveLength(placement.ranks * placement.slotsPerRank);
  for (let expert = 0; expert < experts; expert++) expect(placement.slotExperts).toContain(expert);
  if (placement.slotsPerRank <= experts) {
    for (let rank = 0; rank < placement.ranks; rank++) {
      const held = placement.slotExperts.slice(rank * placement.slotsPerRank, (rank + 1) * placement.slotsPerRank);
      expect(new Set(held).size).toBe(held.length);
    }
  }
}

describe('planPlacement', () => {
  it('brings a skewed routing to within 1.15× of the mean load (64 experts, top-6, 4 ranks, 20 slots each)', async () => {
    const loads = await skewedLoads(64, 6, 2048, 6, 3);
    const before = loadImbalance(contiguous(64, 4), loads);
    const placement = planPlacement(loads, { ranks: 4, slotsPerRank: 20 });
    expectWellFormed(placement, 64);
    expect(before).toBeGreaterThan(1.5);  // the skew is real: plain EP leaves one rank far busier
    expect(loadImbalance(placement, loads)).toBeLessThanOrEqual(1.15);
  });

  it('balances DeepSeek-V3-sized routing on 8 ranks with 32 redundant slots', async () => {
    const loads = await skewedLoads(256, 8, 1024, 16, 2.5);
    const placement = planPlacement(loads, { ranks: 8, slotsPerRank: 36 });
    expectWellFormed(placement, 256);
    expect(loadImbalance(contiguous(256, 8), loads)).toBeGreaterThan(1.3);
    expect(loadImbalance(placement, loads)).toBeLessThanOrEqual(1.15);
  });

  it('replicates an expert that takes most of the traffic onto every rank', () => {
    const loads = [1000, 10, 10, 10, 10, 10, 10, 10];
    const placement = planPlacement(loads, { ranks: 2, slotsPerRank: 5 });
    expectWellFormed(placement, 8);
    expect(placement.slotExperts.filter((expert) => expert === 0)).toHaveLength(2);
    const perRank = rankLoads(placement, loads);
    expect(perRank.reduce((a, b) => a + b, 0)).toBeCloseTo(1070, 9);  // nothing lost, nothing counted twice
    expect(loadImbalance(placement, loads)).toBeLessThanOrEqual(1.15);
  });

  it('keeps even loads even without extra slots, and is deterministic', () => {
    const loads = new Array<number>(16).fill(7);
    const placement = planPlacement(loads, { ranks: 4, slotsPerRank: 4 });
    expectWellFormed(placement, 16);
    expect(loadImbalance(placement, loads)).toBe(1);
    expect(planPlacement(loads, { ranks: 4, slotsPerRank: 4 })).toEqual(placement);
    expect(loadImbalance(placement, new Array<number>(16).fill(0))).toBe(1);  // nothing routed yet
  });

  it('names what is wrong with its input', () => {
    expectThrows(() => planPlacement([1, 2, 3], { ranks: 2, slotsPerRank: 1 }), 'E_INVALID_ARGUMENT', /2 ranks × 1 slots \(2\) cannot hold the 3 experts/);
    expectThrows(() => planPlacement([1, Number.NaN], { ranks: 1, slotsPerRank: 2 }), 'E_INVALID_ARGUMENT', /loads\[1\] must be a finite count/);
    expectThrows(() => planPlacement([1, -2], { ranks: 1, slotsPerRank: 2 }), 'E_INVALID_ARGUMENT', /loads\[1\]/);
    expectThrows(() => planPlacement([], { ranks: 1, slotsPerRank: 2 }), 'E_INVALID_ARGUMENT', /loads must be an array of 1 to 65536 per-expert counts/);
    expectThrows(() => planPlacement({ length: 2 ** 40 } as never, { ranks: 1, slotsPerRank: 2 }), 'E_INVALID_ARGUMENT', /loads must be an array of 1 to 65536/);
    expectThrows(() => planPlacement([1], { ranks: 0, slotsPerRank: 2 }), 'E_INVALID_ARGUMENT', /options\.ranks must be an integer from 1 to 1024, got 0/);
    expectThrows(() => planPlacement([1], { ranks: 2 ** 40, slotsPerRank: 2 }), 'E_INVALID_ARGUMENT', /options\.ranks must be an integer from 1 to 1024/);
    expectThrows(() => planPlacement([1], { ranks: 1024, slotsPerRank: 65 }), 'E_INVALID_ARGUMENT', /1024 ranks × 65 slots \(66560\) is more than the 65536 slots a layer takes/);
    expectThrows(() => planPlacement([1], { ranks: 1, slotsPerRank: 1.5 }), 'E_INVALID_ARGUMENT', /options\.slotsPerRank/);
    expectThrows(() => rankLoads({ ranks: 1, slotsPerRank: 2, slotExperts: [0, 0] }, [1, 1]), 'E_INVALID_ARGUMENT', /expert 1 has no slot/);
    expectThrows(() => rankLoads({ ranks: 1, slotsPerRank: 2, slotExperts: [0, 5] }, [1, 1]), 'E_INVALID_ARGUMENT', /slot expert 5 is not one of the 2 experts/);
    expectThrows(() => rankLoads({ ranks: 2, slotsPerRank: 2, slotExperts: [0, 1] }, [1, 1]), 'E_INVALID_ARGUMENT', /ranks × slotsPerRank/);
  });
});
