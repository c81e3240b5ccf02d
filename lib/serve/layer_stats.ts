/**
 * What a layer has done, counted without making its forwards wait: forwards and tokens on the
 * host (they are known when a forward is queued), routed (token, expert) pairs per expert on the
 * device, summed from each forward's expertCounts by a queued addInt32. Nothing is read back until
 * read() is called.
 */
import type { Device } from '../device';
import { MoekitError } from '../errors';
import { addInt32 } from '../ops/add_int32';
import { Tensor } from '../tensor';

/** What LayerStats needs of a layer: its expert count and device. */
export interface CountedLayer {
  readonly config: { readonly numExperts: number };
  readonly device: Device;
}

/** Counts over some span of forwards. */
export interface ForwardCounts {
  forwards: number;
  tokens: number;
  /** Routed (token, expert) pairs per expert, by expert id. */
  expertPairs: number[];
  /** Largest ÷ mean of expertPairs (1 is perfect balance); null when nothing was routed. */
  loadImbalance: number | null;
}

export interface LayerStatsSnapshot {
  /** Everything since the LayerStats was made. */
  total: ForwardCounts;
  /** Since the previous read() (or since the start, for the first). */
  window: ForwardCounts;
}

function counts(forwards: number, tokens: number, expertPairs: number[]): ForwardCounts {
  const routed = expertPairs.reduce((sum, pairs) => sum + pairs, 0);
  const loadImbalance = routed === 0 ? null : Math.max(...expertPairs) / (routed / expertPairs.length);
  return { forwards, tokens, expertPairs, loadImbalance };
}

export class LayerStats {
  readonly device: Device;
  readonly numExperts: number;
  #accumulator: Tensor;
  #windowForwards = 0;
  #windowTokens = 0;
  #totalForwards = 0;
  #totalTokens = 0;
  // float64 totals on the host: the device's int32 window sums are folded in at each read.
  readonly #totalPairs: number[];
  #disposed = false;

  constructor(layer: CountedLayer) {
    this.device = layer.device;
    this.numExperts = layer.config.numExperts;
    this.#totalPairs = new Array<number>(this.numExperts).fill(0);
    this.#accumulator = this.#zeros();
  }

  /** Counts one forward of `tokens` tokens whose routing chose `expertCounts` ([E] int32, on the layer's device). */
  record(expertCounts: Tensor, tokens: number): void {
    this.#live();
    if (!Number.isSafeInteger(tokens) || tokens < 0) throw new MoekitError('E_INVALID_ARGUMENT', `LayerStats.record: tokens must be a non-negative integer, got ${tokens}`);
    addInt32(this.#accumulator, expertCounts);
    this.#windowForwards += 1;
    this.#windowTokens += tokens;
  }

  /**
   * The counts so far, and those of the window since the previous read. The window's device sums
   * are swapped for fresh zeros at once, so forwards queued meanwhile count in the next window;
   * the read waits only for the work queued before it.
   */
  async read(): Promise<LayerStatsSnapshot> {
    this.#live();
    const finished = this.#accumulator;
    const forwards = this.#windowForwards;
    const tokens = this.#windowTokens;
    this.#accumulator = this.#zeros();
    this.#windowForwards = 0;
    this.#windowTokens = 0;
    this.#totalForwards += forwards;
    this.#totalTokens += tokens;
    let windowPairs: number[];
    try {
      windowPairs = Array.from(await finished.toArray());
    } finally {
      finished.dispose();
    }
    windowPairs.forEach((pairs, expert) => {
      this.#totalPairs[expert]! += pairs;
    });
    return { total: counts(this.#totalForwards, this.#totalTokens, [...this.#totalPairs]), window: counts(forwards, tokens, windowPairs) };
  }

  dispose(): void {
    this.#disposed = true;
    this.#accumulator.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #zeros(): Tensor {
    return Tensor.fromArray(new Int32Array(this.numExperts), [this.numExperts], { dtype: 'int32', device: this.device });
  }

  #live(): void {
    if (this.#disposed) throw new MoekitError('E_DISPOSED', 'LayerStats was used after dispose()');
  }
}

// ---- Gathering every rank's counts -----------------------------------------------------------------
/** What gatherLayerStats needs of a group: ProcessGroup (lib/parallel) has it. */
export interface StatsGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly device: Device;
  allReduce(tensor: Tensor): void;
  synchronize(): Promise<void>;
}

// Counts travel as int32 pairs (the high and the low 30 bits): a long-running server's token count
// outgrows int32, and the all-reduce has no 64-bit integers. Each rank fills only its own row of
// zeros, so the sum never adds two counts.
const DIGIT = 2 ** 30;
const MAX_COUNT = DIGIT * DIGIT - 1;

function countsNumbers(c: ForwardCounts): number[] {
  return [c.forwards, c.tokens, ...c.expertPairs];
}

/** A snapshot's numbers as int32 digit pairs: total (forwards, tokens, pairs per expert), then the window's. */
export function packSnapshot(snapshot: LayerStatsSnapshot): Int32Array {
  const numbers = [...countsNumbers(snapshot.total), ...countsNumbers(snapshot.window)];
  const packed = new Int32Array(2 * numbers.length);
  numbers.forEach((value, i) => {
    if (!Number.isSafeInteger(value) || value < 0 || value > MAX_COUNT) {
      throw new MoekitError('E_INVALID_ARGUMENT', `gatherLayerStats: count ${value} is not an integer in [0, 2^60)`);
    }
    packed[2 * i] = Math.floor(value / DIGIT);
    packed[2 * i + 1] = value % DIGIT;
  });
  return packed;
}

/** The inverse of packSnapshot for a layer of `numExperts` experts. */
export function unpackSnapshot(packed: ArrayLike<number>, numExperts: number): LayerStatsSnapshot {
  const perCounts = 2 + numExperts;
  const numbers = Array.from({ length: 2 * perCounts }, (_, i) => packed[2 * i]! * DIGIT + packed[2 * i + 1]!);
  const read = (first: number): ForwardCounts => counts(numbers[first]!, numbers[first + 1]!, numbers.slice(first + 2, first + perCounts));
  return { total: read(0), window: read(perCounts) };
}

/** All-reduces `rows` [worldSize, width] int32 (this rank's row filled) and reads the sum back. */
async function allGatherRows(group: StatsGroup, row: Int32Array): Promise<Int32Array> {
  const rows = new Int32Array(group.worldSize * row.length);
  rows.set(row, group.rank * row.length);
  const tensor = Tensor.fromArray(rows, [group.worldSize, row.length], { dtype: 'int32', device: group.device });
  try {
    group.allReduce(tensor);
    await group.synchronize(); // rejects, rather than hangs, if a peer died or stalled
    return Int32Array.from(await tensor.toArray());
  } finally {
    tensor.dispose();
  }
}

/**
 * Every rank's snapshot (LayerStats.read() on each), in rank order, on every rank: a collective,
 * to be called by all ranks of the group together, each with its own snapshot. Under TP/EP rank 0
 * typically renders them (toPrometheus with a `rank` label each). The ranks' layers must count the
 * same number of experts; that is checked first, so a mismatch rejects instead of hanging.
 */
export async function gatherLayerStats(group: StatsGroup, snapshot: LayerStatsSnapshot): Promise<LayerStatsSnapshot[]> {
  const numExperts = snapshot.total.expertPairs.length;
  if (snapshot.window.expertPairs.length !== numExperts) {
    throw new MoekitError('E_INVALID_ARGUMENT', `gatherLayerStats: the snapshot's total counts ${numExperts} experts, its window ${snapshot.window.expertPairs.length}`);
  }
  const packed = packSnapshot(snapshot);
  const experts = await allGatherRows(group, Int32Array.of(numExperts));
  const mismatch = Array.from(experts).findIndex((count) => count !== numExperts);
  if (mismatch >= 0) {
    throw new MoekitError('E_INVALID_ARGUMENT', `gatherLayerStats: rank ${mismatch} counts ${experts[mismatch]} experts, rank ${group.rank} ${numExperts}`);
  }
  const rows = await allGatherRows(group, packed);
  return Array.from({ length: group.worldSize }, (_, rank) => unpackSnapshot(rows.subarray(rank * packed.length, (rank + 1) * packed.length), numExperts));
}
