/**
 * What a multi-step build has made so far (tensors, quantized weights), so that a failure part-way
 * frees all of it, or, for a forward's temporaries, everything is freed once the work is queued.
 */
export interface Disposable {
  dispose(): void;
}

export class Made {
  readonly #items: Disposable[] = [];

  /** Remembers `item` and returns it. */
  keep<T extends Disposable>(item: T): T {
    this.#items.push(item);
    return item;
  }

  /** Frees everything kept (in stream order on a device: queued work that reads it finishes first). */
  disposeAll(): void {
    for (const item of this.#items.splice(0)) item.dispose();
  }
}
