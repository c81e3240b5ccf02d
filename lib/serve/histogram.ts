/** A Prometheus-style histogram: counts of observations at or below each bucket's upper bound. */
export class Histogram {
  /** Upper bounds, increasing; +Inf is implied after the last. */
  readonly bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = Object.freeze([...bounds]);
    this.#counts = new Array<number>(bounds.length).fill(0);
  }

  observe(value: number): void {
    const bucket = this.bounds.findIndex((bound) => value <= bound);
    if (bucket >= 0) this.#counts[bucket]! += 1;
    this.#sum += value;
    this.#count += 1;
  }

  /** Cumulative counts per bound (observations ≤ bound), then the total for +Inf. */
  snapshot(): HistogramSnapshot {
    let running = 0;
    const cumulative = this.#counts.map((count) => (running += count));
    return { bounds: this.bounds, cumulative, count: this.#count, sum: this.#sum };
  }
}

export interface HistogramSnapshot {
  bounds: readonly number[];
  /** cumulative[i]: observations ≤ bounds[i]. */
  cumulative: number[];
  count: number;
  sum: number;
}

/** Bounds start, start·factor, … (count of them): latency and size buckets. */
export function exponentialBounds(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, index) => start * factor ** index);
}
