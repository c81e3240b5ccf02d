/**
 * Hostile index values on one device (issue 11): an op that reads through an index it was given
 * (permute's topkIds, combine's sourceToPermuted, groupedGemm's expertOffsets and gatherRows)
 * never reads outside its tensors; its outputs are poisoned instead, and so is whatever is
 * computed from them, while every other tensor is unaffected. The CPU suite
 * (test/op_faults.test.ts) and the GPU suite (test/gpu/op_faults.test.ts) run these same cases.
 */
import { expect, it } from 'vitest';

import { activation, combine, groupedGemm, linear, MoELayer, permute, permuteMaps, route, synchronize, Tensor, type Device } from '../../lib/index';
import { ExpertSlotTable } from '../../lib/ops/expert_slots';
import { swigluConfig } from './configs';
import { expectThrows } from './errors';

const HIDDEN = 8;

function rows(count: number, device: Device, seed = 1): Tensor {
  return Tensor.random([count, HIDDEN], { seed, device });
}

function ints(values: readonly number[], shape: readonly number[], device: Device): Tensor {
  return Tensor.fromArray(Int32Array.from(values), shape, { dtype: 'int32', device });
}

function weights(tokens: number, slots: number, device: Device): Tensor {
  return Tensor.fromArray(new Float32Array(tokens * slots).fill(0.5), [tokens, slots], { device });
}

const rejectsWith = (message: RegExp) => expect.objectContaining({ name: 'MoekitError', code: 'E_INVALID_ARGUMENT', message: expect.stringMatching(message) });

/** A small op whose answer is known: the device still computes correctly. */
async function expectDeviceWorks(device: Device): Promise<void> {
  using x = Tensor.fromArray(Float32Array.from([1, 2, 3, 4]), [2, 2], { device });
  using w = Tensor.fromArray(Float32Array.from([1, 0, 1, 1]), [2, 2], { device });
  using y = linear(x, w);
  expect(Array.from(await y.toArray())).toEqual([1, 3, 3, 7]);
}

export function opFaultCases(device: Device): void {
  it.each([5, 6, 1_000_000, 2_147_483_647])('combine refuses source row %i of 6 rows, reading nothing outside', async (bad) => {
    // 3 tokens × 2 slots: expertOutput has 6 rows.
    using expertOutput = rows(6, device);
    using topkWeights = weights(3, 2, device);
    using sourceToPermuted = ints([0, 1, 2, bad, 4, -1], [3, 2], device);
    using output = combine(expertOutput, topkWeights, sourceToPermuted);
    if (bad < 6) {
      await expect(output.toArray()).resolves.toHaveLength(3 * HIDDEN);
      return;
    }
    await expect(output.toArray()).rejects.toEqual(rejectsWith(new RegExp(`combine: sourceToPermuted holds row ${bad} at flat index 3, outside \\[-1, 6\\)`)));
    await expectDeviceWorks(device);
  });

  it('combine skips -1 (a dropped pair) but refuses any other negative row', async () => {
    using expertOutput = Tensor.fromArray(Float32Array.from({ length: 2 * HIDDEN }, (_, i) => i), [2, HIDDEN], { device });
    using topkWeights = weights(1, 2, device);
    using dropped = ints([-1, 1], [1, 2], device);
    using kept = combine(expertOutput, topkWeights, dropped);
    expect(Array.from(await kept.toArray())).toEqual(Array.from({ length: HIDDEN }, (_, h) => 0.5 * (HIDDEN + h)));
    using negative = ints([-2, 1], [1, 2], device);
    using refused = combine(expertOutput, topkWeights, negative);
    await expect(refused.toArray()).rejects.toEqual(rejectsWith(/sourceToPermuted holds row -2 at flat index 0/));
  });

  it.each([4, -1, 1_000_000])('permute poisons all its outputs for expert id %i of 4, and what is computed from them', async (bad) => {
    using x = rows(3, device);
    using ids = ints([0, 1, 2, 3, bad, 0], [3, 2], device);
    const permuted = permute(x, ids, 4);
    using _p = permuted.permuted;
    using _o = permuted.expertOffsets;
    using _s = permuted.sourceToPermuted;
    using _q = permuted.permutedToSource;
    const message = new RegExp(`permute: topkIds holds expert id ${bad} at flat index 4, outside \\[0, 4\\)`);
    for (const tensor of [permuted.permuted, permuted.expertOffsets, permuted.sourceToPermuted, permuted.permutedToSource]) {
      await expect(tensor.toArray()).rejects.toEqual(rejectsWith(message));
    }
    // Fed the poisoned outputs, later ops fail the same way (and read nothing out of bounds).
    using topkWeights = weights(3, 2, device);
    using combined = combine(permuted.permuted, topkWeights, permuted.sourceToPermuted);
    await expect(combined.toArray()).rejects.toEqual(rejectsWith(message));
    using w = Tensor.random([4, 6, HIDDEN], { device });
    using products = groupedGemm(permuted.permuted, w, permuted.expertOffsets);
    await expect(products.toArray()).rejects.toEqual(rejectsWith(message));
    const maps = permuteMaps(ids, 4);
    using gathered = groupedGemm(x, w, maps.expertOffsets, { gatherRows: maps.permutedToSource, gatherDivisor: 2 });
    await expect(gathered.toArray()).rejects.toEqual(rejectsWith(message));
    for (const tensor of Object.values(maps)) tensor.dispose();
    using moved = combined.to('cpu');
    await expect(moved.toArray()).rejects.toEqual(rejectsWith(message));
    await expectDeviceWorks(device);
  });

  it('permute of more pairs than one block sorts (chunks of 1024) reports a bad id in a later chunk', async () => {
    const ids = new Int32Array(1500).map((_, index) => index % 4);
    ids[1300] = 9;
    using topkIds = ints(Array.from(ids), [750, 2], device);
    const maps = permuteMaps(topkIds, 4);
    try {
      for (const tensor of Object.values(maps)) {
        await expect(tensor.toArray()).rejects.toEqual(rejectsWith(/permute: topkIds holds expert id 9 at flat index 1300, outside \[0, 4\)/));
      }
    } finally {
      for (const tensor of Object.values(maps)) tensor.dispose();
    }
    await expectDeviceWorks(device);
  });

  it('expertSlots maps each pair to its expert\'s replicas in turn by token, and refuses an id outside the experts', async () => {
    // Expert 0 has replicas in slots 0 and 2; experts 1 and 2 one each (slots 1 and 3).
    const table = ExpertSlotTable.of([0, 1, 0, 2], 3, device);
    try {
      using ids = ints([0, 1, 0, 2, 0, 0], [3, 2], device);
      using slots = table.map(ids);
      expect(Array.from(await slots.toArray())).toEqual([0, 1, 2, 3, 0, 0]);
      using bad = ints([0, 1, 3, 2], [2, 2], device);
      using refused = table.map(bad);
      await expect(refused.toArray()).rejects.toEqual(rejectsWith(/expertSlots: topkIds holds expert id 3 at flat index 2, outside \[0, 3\)/));
      // Fed the poisoned slots, permute fails too (on the GPU the bad pair's slot is -1, which
      // permute refuses in turn).
      using x = rows(2, device);
      const sorted = permute(x, refused, 4);
      for (const tensor of Object.values(sorted)) {
        await expect(tensor.toArray()).rejects.toEqual(rejectsWith(/topkIds holds expert id (3|-1) at flat index 2/));
        tensor.dispose();
      }
      await expectDeviceWorks(device);
    } finally {
      table.dispose();
    }
    expectThrows(() => ExpertSlotTable.of([0, 0], 2, device), 'E_INVALID_ARGUMENT', /expert 1 has no slot/);
    expectThrows(() => ExpertSlotTable.of([0, 5], 2, device), 'E_INVALID_ARGUMENT', /slot 1 holds 5, not one of the 2 experts/);
  });

  it('a failure lands only on the failed op\'s outputs, not on the next tensor awaited', async () => {
    using before = rows(2, device, 7);
    using x = rows(1, device);
    using ids = ints([9], [1, 1], device);
    const failed = permute(x, ids, 4);
    using after = rows(2, device, 8);
    // Neither a tensor made before the failed op nor one made after it is affected, whichever is
    // awaited first, and the device as a whole reports no failure.
    await expect(after.toArray()).resolves.toHaveLength(2 * HIDDEN);
    await expect(before.toArray()).resolves.toHaveLength(2 * HIDDEN);
    await expect(synchronize(device)).resolves.toBeUndefined();
    await expect(failed.permuted.toArray()).rejects.toEqual(rejectsWith(/expert id 9/));
    // Poisoned for good: a second read rejects again.
    await expect(failed.permuted.toArray()).rejects.toEqual(rejectsWith(/expert id 9/));
    // Whatever the failed op left in its outputs, an op fed them fails with the first error.
    using topkWeights = weights(1, 1, device);
    using combined = combine(failed.permuted, topkWeights, failed.sourceToPermuted);
    await expect(combined.toArray()).rejects.toEqual(rejectsWith(/permute: topkIds holds expert id 9/));
    for (const tensor of Object.values(failed)) tensor.dispose();
  });

  it('copying clean values over a poisoned tensor cures it; copying a poisoned one poisons the target', async () => {
    using x = rows(1, device);
    using ids = ints([9], [1, 1], device);
    const failed = permute(x, ids, 4);
    using target = Tensor.empty([1, HIDDEN], { device });
    target.copyFrom(failed.permuted);
    await expect(target.toArray()).rejects.toEqual(rejectsWith(/expert id 9/));
    target.copyFrom(x);
    expect(Array.from(await target.toArray())).toEqual(Array.from(await x.toArray()));
    for (const tensor of Object.values(failed)) tensor.dispose();
  });

  it.each([
    ['decreasing', [0, 3, 2, 4, 4], 2, 2],
    ['past the rows', [0, 1, 2, 3, 9], 4, 9],
    ['negative', [-3, 1, 2, 3, 4], 0, -3],
  ])('groupedGemm refuses %s expert offsets', async (_name, offsets, position, value) => {
    using x = rows(4, device);
    using w = Tensor.random([4, 6, HIDDEN], { device });
    using expertOffsets = ints(offsets, [5], device);
    const message = new RegExp(`groupedGemm: expertOffsets\\[${position}\\] is ${value}, but offsets must be non-decreasing`);
    using plain = groupedGemm(x, w, expertOffsets);
    await expect(plain.toArray()).rejects.toEqual(rejectsWith(message));
    using activated = groupedGemm(x, w, expertOffsets, { activation: { kind: 'swiglu' } });
    await expect(activated.toArray()).rejects.toEqual(rejectsWith(message));
    await expectDeviceWorks(device);
  });

  it.each([8, -1, 2_147_483_647])('groupedGemm refuses gathered row %i of 4 rows × gatherDivisor 2, and reads no row outside the experts\' range', async (bad) => {
    using x = rows(4, device);
    using w = Tensor.random([2, 6, HIDDEN], { device });
    using expertOffsets = ints([1, 4, 7], [3], device);
    // Rows 0 and 7 are no expert's: their values are never read, so never refused.
    using clean = ints([-5, 0, 1, 2, 3, 4, 7, 1_000_000], [8], device);
    using kept = groupedGemm(x, w, expertOffsets, { gatherRows: clean, gatherDivisor: 2 });
    await expect(kept.toArray()).resolves.toHaveLength(8 * 6);
    using hostile = ints([0, 0, 1, 2, 3, bad, 7, 0], [8], device);
    const message = new RegExp(`groupedGemm: gatherRows\\[5\\] is ${bad}, outside \\[0, 8\\)`);
    using plain = groupedGemm(x, w, expertOffsets, { gatherRows: hostile, gatherDivisor: 2 });
    await expect(plain.toArray()).rejects.toEqual(rejectsWith(message));
    using activated = groupedGemm(x, w, expertOffsets, { gatherRows: hostile, gatherDivisor: 2, activation: { kind: 'swiglu' } });
    await expect(activated.toArray()).rejects.toEqual(rejectsWith(message));
    await expectDeviceWorks(device);
  });

  it('many failing ops between two reads each poison their own outputs', async () => {
    using expertOutput = rows(2, device);
    using topkWeights = weights(1, 2, device);
    const good: Tensor[] = [];
    const bad: Tensor[] = [];
    try {
      // More failing ops than a device keeps slots for between two reads (32 on CUDA).
      for (let i = 0; i < 40; i++) {
        using goodSources = ints([0, 1], [1, 2], device);
        using badSources = ints([0, 2 + i], [1, 2], device);
        good.push(combine(expertOutput, topkWeights, goodSources));
        bad.push(combine(expertOutput, topkWeights, badSources));
      }
      for (const tensor of bad) await expect(tensor.toArray()).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
      const expected = await good[0]!.toArray();
      for (const tensor of good.slice(0, 8)) expect(await tensor.toArray()).toEqual(expected);
    } finally {
      for (const tensor of [...good, ...bad]) tensor.dispose();
    }
  });

  it('a long run of ops that is never awaited leaves reads working', async () => {
    using x = rows(4, device);
    using w = Tensor.random([3, HIDDEN], { device });
    for (let i = 0; i < 5000; i++) linear(x, w).dispose();
    await expectDeviceWorks(device);
  });

  it('a forward on NaN inputs routes to real experts (ids in range) and flags nothing else', async () => {
    using layer = MoELayer.random(swigluConfig({ hidden: 16, intermediate: 8, experts: 4, topK: 2 }), { seed: 3, device });
    using x = Tensor.fromArray(new Float32Array(3 * 16).fill(Number.NaN), [3, 16], { device });
    using result = layer.forward(x);
    for (const id of await result.topkIds.toArray()) expect(id >= 0 && id < 4).toBe(true);
    await expect(result.output.toArray()).resolves.toHaveLength(3 * 16);
    await expectDeviceWorks(device);
  });
}

/** Hostile arguments refused or handled at the call, on one device (issue 11's items 4, 8 and 9). */
export function hostileArgumentCases(device: Device): void {
  it('route refuses a topK the group limit cannot fill', () => {
    // 16 experts in 4 groups; 2 groups stay eligible: 8 experts.
    using logits = Tensor.random([2, 16], { device });
    expectThrows(() => route(logits, { topK: 9, method: 'sigmoid_group_topk', numGroups: 4, topkGroups: 2 }), 'E_INVALID_ARGUMENT', /topK 9 is larger than the 8 experts/);
    const fits = route(logits, { topK: 8, method: 'sigmoid_group_topk', numGroups: 4, topkGroups: 2 });
    for (const tensor of Object.values(fits)) tensor.dispose();
  });

  it('ops refuse more experts than moekit takes (65536), before allocating anything for them', () => {
    using x = Tensor.random([2, 4], { device });
    using ids = Tensor.fromArray(Int32Array.from([0, 1]), [2, 1], { device });
    expectThrows(() => permute(x, ids, 2_147_483_647), 'E_INVALID_ARGUMENT', /numExperts must be an integer in \[1, 65536\]/);
    using offsets = Tensor.fromArray(new Int32Array(65538), [65538], { device });
    using w = Tensor.empty([65537, 0, 4], { device });
    expectThrows(() => groupedGemm(x, w, offsets), 'E_SHAPE', /weights hold 65537 experts, more than the 65536/);
  });

  it('a forward on 0 tokens returns empty results', async () => {
    using layer = MoELayer.random(swigluConfig({ hidden: 16, intermediate: 8, experts: 4, topK: 2 }), { seed: 2, device, dtype: 'bfloat16' });
    using x = Tensor.empty([0, 16], { device, dtype: 'bfloat16' });
    using result = layer.forward(x, null as never);
    expect([result.output.shape, result.topkIds.shape]).toEqual([[0, 16], [0, 2]]);
    expect(await result.output.toArray()).toHaveLength(0);
    expect(Array.from(await result.expertCounts.toArray())).toEqual([0, 0, 0, 0]);
  });

  it('ops take null options as defaults and refuse options that are not objects', async () => {
    using x = Tensor.random([3, 4], { device });
    using y = activation(x, 'silu', null as never);
    expect(await y.toArray()).toHaveLength(12);
    using w = Tensor.random([2, 6, 4], { device });
    using offsets = Tensor.fromArray(Int32Array.from([0, 1, 3]), [3], { device });
    using products = groupedGemm(x, w, offsets, null as never);
    expect(await products.toArray()).toHaveLength(18);
    expectThrows(() => groupedGemm(x, w, offsets, 5 as never), 'E_INVALID_ARGUMENT', /^groupedGemm: options must be an object, got 5$/);
    using logits = Tensor.random([3, 4], { device });
    expectThrows(() => route(logits, undefined as never), 'E_INVALID_ARGUMENT', /^route: options must be given/);
  });
}
