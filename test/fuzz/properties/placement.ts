/**
 * Property: the expert load balancer (planPlacement, rankLoads, loadImbalance) on any input.
 * - planPlacement(loads, { ranks, slotsPerRank }) refuses with an input MoekitError exactly when
 *   the input is bad (loads not 1 to 65536 finite counts ≥ 0; ranks not 1 to 1024; slotsPerRank
 *   not 1 to 65536; more slots than 65536 or fewer than experts), and otherwise returns, the same
 *   for the same input, a placement of ranks × slotsPerRank slots holding every expert;
 * - the ranks' loads of that placement add up to the total load, and loadImbalance is finite and
 *   at least 1;
 * - rankLoads refuses a placement that misses an expert or names one out of range;
 * - resolvePlan(worldSize, { moeTpSize, moeEpSize, placement, dispatch }, config), with any of
 *   them junk or a placement planned for some other size, throws an input MoekitError or returns
 *   a plan that keeps its promises (sizes multiply to the group, a placement for moeEpSize ranks
 *   holding every expert, all-to-all dispatch only without TP and placement).
 */
import * as fc from 'fast-check';

import type { MoekitApi } from '../harness/moekit';
import { defineProperty } from '../harness/property';
import { errorText } from '../harness/protocol';
import { INPUT_ERROR_CODES } from './ops';
import { renderValue } from './render';
import { junkValue } from './values';

const MAX_SLOTS = 65536;
const MAX_RANKS = 1024;

export interface PlanCase {
  kind: 'plan';
  worldSize: unknown;
  tp?: unknown;
  ep?: unknown;
  /** A placement planned for `placementRanks` ranks (a number), or junk. */
  placement?: unknown;
  dispatch?: unknown;
}

export interface PlacementCase {
  loads: unknown;
  ranks: unknown;
  slotsPerRank: unknown;
  /** Break the returned placement this way before rankLoads: a slot out of range, or an expert dropped. */
  tamper?: 'outOfRange' | 'dropExpert';
}

const count = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 1_000_000 }) }, { weight: 1, arbitrary: fc.double({ min: 0, max: 1e12, noNaN: true }) });
const loads = fc.oneof(
  { weight: 8, arbitrary: fc.array(count, { minLength: 1, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.array(fc.oneof(count, fc.constantFrom(NaN, -1, Infinity, -0)), { minLength: 1, maxLength: 8 }) },
  { weight: 1, arbitrary: fc.oneof(junkValue, fc.constantFrom([], { length: 2 ** 40 }, new Int32Array([3, 1]))) },
);
const size = (max: number) => fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 1, arbitrary: fc.constantFrom(0, max, max + 1, 2 ** 40, 1.5, -3) }, { weight: 1, arbitrary: junkValue });

const planSize = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 8 }) }, { weight: 1, arbitrary: junkValue });
export const planCases: fc.Arbitrary<PlanCase> = fc.record({
  kind: fc.constant('plan' as const),
  worldSize: planSize,
  tp: planSize,
  ep: planSize,
  placement: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 8 }) }, { weight: 1, arbitrary: junkValue }),
  dispatch: fc.oneof({ weight: 4, arbitrary: fc.constantFrom('all_reduce', 'all_to_all') }, { weight: 1, arbitrary: junkValue }),
}, { requiredKeys: ['kind', 'worldSize'] });

export const placementCases: fc.Arbitrary<PlacementCase> = fc.record({
  loads,
  ranks: size(MAX_RANKS),
  slotsPerRank: size(MAX_SLOTS),
  tamper: fc.constantFrom('outOfRange' as const, 'dropExpert' as const),
}, { requiredKeys: ['loads', 'ranks', 'slotsPerRank'] });

class PropertyViolation extends Error {}

/** Whether the case's input is one planPlacement must take. */
function isValid(testCase: PlacementCase): boolean {
  const { loads: given, ranks, slotsPerRank } = testCase;
  const list = given as ArrayLike<unknown> | null;
  if (list === null || typeof list !== 'object' || !Number.isSafeInteger(list.length) || list.length < 1 || list.length > MAX_SLOTS) return false;
  if (!Array.from(list).every((load) => typeof load === 'number' && Number.isFinite(load) && load >= 0)) return false;
  const integer = (value: unknown, max: number): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= max;
  if (!integer(ranks, MAX_RANKS) || !integer(slotsPerRank, MAX_SLOTS)) return false;
  return ranks * slotsPerRank <= MAX_SLOTS && ranks * slotsPerRank >= list.length;
}

function expectInputError(api: MoekitApi, where: string, error: unknown): void {
  if (!(error instanceof api.MoekitError)) throw new PropertyViolation(`${where} threw an error that is not a MoekitError: ${errorText(error)}`);
  if (!INPUT_ERROR_CODES.has(error.code)) throw new PropertyViolation(`${where} threw ${error.code}, not a code for bad input: ${error.message}`);
}

function check(api: MoekitApi, testCase: PlacementCase): void {
  const valid = isValid(testCase);
  let placement: ReturnType<MoekitApi['planPlacement']> | undefined;
  try {
    placement = api.planPlacement(testCase.loads as number[], { ranks: testCase.ranks as number, slotsPerRank: testCase.slotsPerRank as number });
  } catch (error) {
    expectInputError(api, 'planPlacement', error);
    if (valid) throw new PropertyViolation(`planPlacement refused a valid input: ${errorText(error)}`);
    return;
  }
  if (!valid) throw new PropertyViolation('planPlacement accepted an input it must refuse');
  const values = Array.from(testCase.loads as ArrayLike<number>);
  const { ranks, slotsPerRank, slotExperts } = placement;
  if (ranks !== testCase.ranks || slotsPerRank !== testCase.slotsPerRank || slotExperts.length !== ranks * slotsPerRank) {
    throw new PropertyViolation(`the placement has ${slotExperts.length} slots for ${String(testCase.ranks)} × ${String(testCase.slotsPerRank)}`);
  }
  const held = new Set(slotExperts);
  for (const expert of slotExperts) {
    if (!Number.isSafeInteger(expert) || expert < 0 || expert >= values.length) throw new PropertyViolation(`a slot holds ${expert}, not one of the ${values.length} experts`);
  }
  if (held.size !== values.length) throw new PropertyViolation(`${values.length - held.size} experts have no slot`);
  const again = api.planPlacement(values, { ranks, slotsPerRank });
  if (again.slotExperts.join() !== slotExperts.join()) throw new PropertyViolation('the same loads gave another placement');
  const perRank = api.rankLoads(placement, values);
  const total = values.reduce((a, b) => a + b, 0);
  const sum = perRank.reduce((a, b) => a + b, 0);
  if (Math.abs(sum - total) > 1e-9 * Math.max(total, 1)) throw new PropertyViolation(`the ranks carry ${sum}, the loads add up to ${total}`);
  const imbalance = api.loadImbalance(placement, values);
  if (!Number.isFinite(imbalance) || imbalance < 1 - 1e-12) throw new PropertyViolation(`loadImbalance is ${imbalance}`);
  if (testCase.tamper === undefined) return;
  const broken = [...slotExperts];
  if (testCase.tamper === 'outOfRange') broken[broken.length - 1] = values.length;
  else for (let slot = 0; slot < broken.length; slot++) if (broken[slot] === values.length - 1) broken[slot] = 0;
  const mustRefuse = testCase.tamper === 'outOfRange' || values.length > 1;
  try {
    api.rankLoads({ ranks, slotsPerRank, slotExperts: broken }, values);
  } catch (error) {
    expectInputError(api, 'rankLoads', error);
    return;
  }
  if (mustRefuse) throw new PropertyViolation(`rankLoads took a placement with ${testCase.tamper === 'outOfRange' ? 'a slot out of range' : 'an expert missing'}`);
}

/** An 8-expert layer (the Mixtral fixture's numbers) for resolvePlan. */
const PLAN_CONFIG = {
  family: 'custom', hiddenSize: 64, intermediateSize: 96, numExperts: 8,
  routing: { method: 'softmax_topk', topK: 2, renormalize: true, numGroups: 1, topkGroups: 1, scalingFactor: 1 },
  activation: 'swiglu', activationAlpha: 1.702, activationLimit: 7, routerBias: false, expertBias: false, sharedExpert: null,
} as const;

function checkPlan(api: MoekitApi, testCase: PlanCase): void {
  const experts = PLAN_CONFIG.numExperts;
  const planned = typeof testCase.placement === 'number' && Number.isInteger(testCase.placement) && testCase.placement >= 1 && testCase.placement <= 8;
  const placement = planned
    ? api.planPlacement(Array.from({ length: experts }, (_, expert) => expert + 1), { ranks: testCase.placement as number, slotsPerRank: Math.ceil(experts / (testCase.placement as number)) + 1 })
    : testCase.placement;
  const options: Record<string, unknown> = {};
  if (Object.hasOwn(testCase, 'tp')) options.moeTpSize = testCase.tp;
  if (Object.hasOwn(testCase, 'ep')) options.moeEpSize = testCase.ep;
  if (Object.hasOwn(testCase, 'placement')) options.placement = placement;
  if (Object.hasOwn(testCase, 'dispatch')) options.dispatch = testCase.dispatch;
  let plan: ReturnType<MoekitApi['resolvePlan']>;
  try {
    plan = api.resolvePlan(testCase.worldSize as number, options, PLAN_CONFIG as never);
  } catch (error) {
    expectInputError(api, 'resolvePlan', error);
    return;
  }
  if (plan.moeTpSize * plan.moeEpSize !== testCase.worldSize) throw new PropertyViolation(`the plan's ${plan.moeTpSize} × ${plan.moeEpSize} is not the group's ${String(testCase.worldSize)}`);
  if (plan.placement !== undefined) {
    if (plan.placement.ranks !== plan.moeEpSize) throw new PropertyViolation('the plan took a placement for another number of ranks');
    if (new Set(plan.placement.slotExperts).size !== experts) throw new PropertyViolation('the plan took a placement that misses experts');
  }
  if (plan.dispatch === 'all_to_all' && (plan.moeTpSize !== 1 || plan.placement !== undefined)) throw new PropertyViolation('all-to-all dispatch with TP or a placement');
  for (let rank = 0; rank < plan.worldSize; rank++) api.shardForRank(plan, PLAN_CONFIG as never, rank);
}

export const placementProperty = defineProperty<PlacementCase | PlanCase>(({ moekit }) => ({
  arbitrary: fc.oneof({ weight: 3, arbitrary: placementCases }, { weight: 1, arbitrary: planCases }),
  describe: (testCase) => renderValue(testCase),
  check: async (testCase) => ('kind' in testCase ? checkPlan(moekit.api, testCase) : check(moekit.api, testCase)),
}));
