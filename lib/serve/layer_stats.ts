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
