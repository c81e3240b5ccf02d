/**
 * ProcessGroup's allToAll among ranks simulated in one process (any device the tensors are on): a
 * rank's call waits until every rank has made its call of the same round, then every output is
 * filled from the inputs by the splits, as NCCL would. For testing wide EP (lib/layer/wide_ep.ts)
 * without GPUs.
 */
import { Tensor, type AllToAllOptions, type ExchangeGroup } from '../../lib/index';

interface Call {
  input: Tensor;
  output: Tensor;
  options: AllToAllOptions | null | undefined;
}

interface Round {
  calls: (Call | undefined)[];
  done: Promise<void>;
  settle: (error?: unknown) => void;
}

const rowSize = (tensor: Tensor): number => tensor.shape.slice(1).reduce((a, b) => a * b, 1);

/** Rows per rank: the splits given, or the rows split equally. */
const splitsOf = (given: readonly number[] | undefined, rows: number, ranks: number): number[] => (given ? [...given] : new Array<number>(ranks).fill(rows / ranks));

export class LoopbackHub {
  readonly groups: ExchangeGroup[];
  /** Every rank's input of every call so far: what a real exchange would have moved. */
  readonly sent: { rank: number; dtype: string; shape: readonly number[] }[] = [];
  readonly #rounds = new Map<number, Round>();

  constructor(readonly worldSize: number) {
    this.groups = Array.from({ length: worldSize }, (_, rank) => {
      let round = 0;
      return { rank, worldSize, allToAll: (input: Tensor, output: Tensor, options?: AllToAllOptions | null) => this.#call(round++, rank, { input, output, options }) };
    });
  }

  #call(index: number, rank: number, call: Call): Promise<void> {
    let round = this.#rounds.get(index);
    if (round === undefined) {
      let settle!: (error?: unknown) => void;
      const done = new Promise<void>((resolve, reject) => (settle = (error) => (error === undefined ? resolve() : reject(error))));
      round = { calls: new Array(this.worldSize).fill(undefined), done, settle };
      this.#rounds.set(index, round);
    }
    round.calls[rank] = call;
    this.sent.push({ rank, dtype: call.input.dtype, shape: [...call.input.shape] });
    if (round.calls.every((made) => made !== undefined)) {
      this.#rounds.delete(index);
      const { settle } = round;
      this.#exchange(round.calls as Call[]).then(() => settle(), settle);
    }
    return round.done;
  }

  async #exchange(calls: Call[]): Promise<void> {
    const ranks = this.worldSize;
    const inputs = await Promise.all(calls.map((call) => call.input.toArray()));
    const sends = calls.map((call) => splitsOf(call.options?.sendSplits, call.input.shape[0]!, ranks));
    calls.forEach((call, to) => {
      const recv = splitsOf(call.options?.recvSplits, call.output.shape[0]!, ranks);
      const size = rowSize(call.output);
      const data = new (inputs[to]!.constructor as new (length: number) => typeof inputs[number])(call.output.shape[0]! * size);
      let at = 0;
      for (let from = 0; from < ranks; from++) {
        const count = sends[from]![to]!;
        if (count !== recv[from]) throw new Error(`loopback allToAll: rank ${from} sends ${count} rows to rank ${to}, which expects ${recv[from]}`);
        const first = sends[from]!.slice(0, to).reduce((a, b) => a + b, 0);
        data.set(inputs[from]!.subarray(first * size, (first + count) * size) as never, at * size);
        at += count;
      }
      if (data.length > 0) {
        using filled = Tensor.fromArray(data, call.output.shape, { dtype: call.output.dtype, device: call.output.device });
        call.output.copyFrom(filled);
      }
    });
  }
}
