/**
 * Expert load balancing (the EPLB idea of DeepSeek-V3's deployment, TensorRT-LLM and vLLM): from
 * how many routed (token, expert) pairs each expert received in past forwards, a placement of the
 * experts on the ranks of an Expert Parallel group with more slots than experts, the extra slots
 * holding replicas of the hot experts, so that the busiest rank carries little more than the mean.
 *
 * A placement is a plan only: slot s (of ranks × slotsPerRank) holds logical expert
 * slotExperts[s], rank r holds slots [r·slotsPerRank, (r + 1)·slotsPerRank), and an expert's
 * pairs are shared equally by its replicas. Computing each pair on one of its expert's replicas
 * changes which rank does the work, not the result.
 */
import { describeValue, MoekitError } from '../errors';
import { MAX_EXPERTS } from '../ops/validate';

/**
 * Bounds that keep planning quick for any input: the slots of all ranks are the experts permute
 * sorts by (at most MAX_EXPERTS), and an EP group has at most MAX_EP_RANKS ranks (packing visits
 * every rank for every slot).
 */
export const MAX_EP_RANKS = 1024;

export interface ExpertPlacement {
  ranks: number;
  slotsPerRank: number;
  /** The logical expert held by each of the ranks × slotsPerRank slots, rank by rank. */
  slotExperts: number[];
}

export interface PlacementOptions {
  /** The ranks of the Expert Parallel group (moeEpSize). */
  ranks: number;
  /** Expert slots per rank; ranks × slotsPerRank must be at least the expert count. */
  slotsPerRank: number;
}

const OP = 'planPlacement';

function positiveInteger(value: unknown, name: string, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${OP}: ${name} must be an integer from 1 to ${max}, got ${describeValue(value)}`);
  }
  return value;
}

/** Per-expert loads as numbers, checked: finite and not negative (counts of routed pairs). */
function checkedLoads(loads: ArrayLike<number>, op: string): number[] {
  if (loads === null || typeof loads !== 'object' || !Number.isSafeInteger(loads.length) || loads.length < 1 || loads.length > MAX_EXPERTS) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: loads must be an array of 1 to ${MAX_EXPERTS} per-expert counts, got ${describeValue(loads)}`);
  }
  // Numbers only: coercing anything else (a string, an array nested deep) is not a count.
  const values = Array.from(loads, (load) => (typeof load === 'number' ? load : NaN));
  values.forEach((load, expert) => {
    if (!Number.isFinite(load) || load < 0) {
      throw new MoekitError('E_INVALID_ARGUMENT', `${op}: loads[${expert}] must be a finite count ≥ 0, got ${describeValue(loads[expert])}`);
    }
  });
  return values;
}

/**
 * How many slots each expert gets: one each, then every extra slot to the expert whose replicas
 * carry the most (load / replicas, the lower id on ties), never more replicas than ranks while an
 * expert with fewer can take one (a second replica on a rank that has one already splits nothing).
 * The candidates wait in a heap, best first: O(slots · log experts).
 */
function replicaCounts(loads: number[], slots: number, ranks: number): number[] {
  const counts = loads.map(() => 1);
  const share = (expert: number): number => loads[expert]! / counts[expert]!;
  const before = (a: number, b: number): boolean => share(a) > share(b) || (share(a) === share(b) && a < b);
  const heap: number[] = [];
  const swap = (i: number, j: number): void => {
    [heap[i], heap[j]] = [heap[j]!, heap[i]!];
  };
  const siftDown = (start: number): void => {
    for (let i = start; ;) {
      const [left, right] = [2 * i + 1, 2 * i + 2];
      let best = i;
      if (left < heap.length && before(heap[left]!, heap[best]!)) best = left;
      if (right < heap.length && before(heap[right]!, heap[best]!)) best = right;
      if (best === i) return;
      swap(i, best);
      i = best;
    }
  };
  if (ranks > 1) heap.push(...loads.keys());
  for (let i = Math.floor(heap.length / 2) - 1; i >= 0; i--) siftDown(i);
  for (let extra = slots - loads.length; extra > 0; extra--) {
    if (heap.length === 0) {
      counts[extra % loads.length]! += 1;  // every expert on every rank: spread the rest
      continue;
    }
    const expert = heap[0]!;
    counts[expert]! += 1;
    // Its share fell: sift it down, or take it out once it is on every rank.
    if (counts[expert]! >= ranks) {
      const last = heap.pop()!;
      if (heap.length > 0) heap[0] = last;
    }
    siftDown(0);
  }
  return counts;
}

/**
 * A placement for `loads` (routed pairs per expert, e.g. LayerStats.expertCounts totalled over
 * past forwards) on `ranks` ranks of `slotsPerRank` slots: replicas as replicaCounts() gives them,
 * then packed heaviest first, each onto the least-loaded rank that has a free slot and no replica
 * of that expert yet. Deterministic: the same loads give the same placement on every rank.
 */
export function planPlacement(loads: ArrayLike<number>, options: PlacementOptions): ExpertPlacement {
  const values = checkedLoads(loads, OP);
  if (options === null || typeof options !== 'object') {
    throw new MoekitError('E_INVALID_ARGUMENT', `${OP}: options must be { ranks, slotsPerRank }, got ${describeValue(options)}`);
  }
  const ranks = positiveInteger(options.ranks, 'options.ranks', MAX_EP_RANKS);
  const slotsPerRank = positiveInteger(options.slotsPerRank, 'options.slotsPerRank', MAX_EXPERTS);
  const slots = ranks * slotsPerRank;
  if (slots > MAX_EXPERTS) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${OP}: ${ranks} ranks × ${slotsPerRank} slots (${slots}) is more than the ${MAX_EXPERTS} slots a layer takes`);
  }
  if (slots < values.length) {
    throw new MoekitError('E_INVALID_ARGUMENT',
      `${OP}: ${ranks} ranks × ${slotsPerRank} slots (${slots}) cannot hold the ${values.length} experts`);
  }
  const counts = replicaCounts(values, slots, ranks);
  const replicas = counts.flatMap((count, expert) => Array.from({ length: count }, () => ({ expert, load: values[expert]! / count })));
  replicas.sort((a, b) => b.load - a.load || a.expert - b.expert);

  const rankLoad = new Array<number>(ranks).fill(0);
  const held = Array.from({ length: ranks }, () => [] as number[]);
  const holds = Array.from({ length: ranks }, () => new Set<number>());
  for (const { expert, load } of replicas) {
    let best = -1;
    for (const avoidDuplicates of [true, false]) {
      for (let rank = 0; rank < ranks; rank++) {
        const rankHeld = held[rank]!;
        if (rankHeld.length === slotsPerRank || (avoidDuplicates && holds[rank]!.has(expert))) continue;
        if (best < 0 || rankLoad[rank]! < rankLoad[best]!) best = rank;
      }
      if (best >= 0) break;
    }
    held[best]!.push(expert);
    holds[best]!.add(expert);
    rankLoad[best]! += load;
  }
  return { ranks, slotsPerRank, slotExperts: held.flatMap((experts) => experts.sort((a, b) => a - b)) };
}

/**
 * `placement` checked for a layer of `experts` experts: positive ranks and slotsPerRank,
 * ranks × slotsPerRank slot experts, each one of the experts, every expert held at least once.
 * Returns how many replicas each expert has.
 */
export function checkPlacement(placement: ExpertPlacement, experts: number, op: string): number[] {
  if (placement === null || typeof placement !== 'object') {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: the placement must be { ranks, slotsPerRank, slotExperts }, got ${describeValue(placement)}`);
  }
  const { ranks, slotsPerRank, slotExperts } = placement;
  if (!Number.isSafeInteger(ranks) || ranks < 1 || !Number.isSafeInteger(slotsPerRank) || slotsPerRank < 1 ||
    !Array.isArray(slotExperts) || slotExperts.length !== ranks * slotsPerRank) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: the placement must have positive ranks and slotsPerRank, and ranks × slotsPerRank slotExperts`);
  }
  const replicas = new Array<number>(experts).fill(0);
  for (const expert of slotExperts) {
    if (!Number.isSafeInteger(expert) || expert < 0 || expert >= experts) {
      throw new MoekitError('E_INVALID_ARGUMENT', `${op}: slot expert ${describeValue(expert)} is not one of the ${experts} experts`);
    }
    replicas[expert]! += 1;
  }
  const missing = replicas.indexOf(0);
  if (missing >= 0) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: expert ${missing} has no slot in the placement`);
  return replicas;
}

/**
 * The load each rank of `placement` would carry for `loads`: every expert's pairs shared equally
 * by its replicas. Checks that the placement holds every expert of `loads` at least once.
 */
export function rankLoads(placement: ExpertPlacement, loads: ArrayLike<number>): number[] {
  const op = 'rankLoads';
  const values = checkedLoads(loads, op);
  const replicas = checkPlacement(placement, values.length, op);
  const { ranks, slotsPerRank, slotExperts } = placement;
  const perRank = new Array<number>(ranks).fill(0);
  slotExperts.forEach((expert, slot) => {
    perRank[Math.floor(slot / slotsPerRank)]! += values[expert]! / replicas[expert]!;
  });
  return perRank;
}

/** The busiest rank's load over the mean (1 is perfect balance; 1 when nothing was routed). */
export function loadImbalance(placement: ExpertPlacement, loads: ArrayLike<number>): number {
  const perRank = rankLoads(placement, loads);
  const mean = perRank.reduce((total, load) => total + load, 0) / perRank.length;
  return mean === 0 ? 1 : Math.max(...perRank) / mean;
}
