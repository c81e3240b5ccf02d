/**
 * Wide Expert Parallel (ParallelOptions.dispatch 'all_to_all'), as DeepSeek-V3 is deployed: every
 * rank brings its own tokens (data-parallel attention upstream), holds E / N experts, and sends
 * each routed row to the rank that owns its expert; the owner runs its experts on what it received
 * and sends the results back, where the weighted combine makes each token's output. Each rank's
 * output equals the unsharded layer's on that rank's tokens.
 *
 * One forward, on rank r with T tokens and top-k routing:
 *   1. permute the T·k pairs by expert (global ids): rows for rank d are contiguous, since rank d
 *      holds experts [d·E/N, (d + 1)·E/N);
 *   2. all-to-all of the per-expert counts, which the host reads (the only wait: NCCL needs the
 *      row counts of an uneven all-to-all when it is enqueued; awaited, never blocking);
 *   3. all-to-all of the rows; the received rows (by source rank, then expert) are sorted by local
 *      expert with a second permute and run through the two grouped GEMMs;
 *   4. the results put back in received order (a combine with weight 1), and all-to-all back;
 *   5. the weighted combine of the returned rows (and the shared expert, computed whole on every
 *      rank) into the output.
 * Rows travel in the layer's 16- or 32-bit dtype, or, for FP8 experts, as FP8 rows with their
 * 128-value block scales (step 1 quantizes them by the W8A8 rule, which op_args.h makes the same as
 * the owner's permute quantizing them; about half the bytes of bf16): the rows and the scales go
 * in two all-to-alls with the same splits, and the owner's permute copies both as they are.
 */
import { MoekitError } from '../errors';
import { combine, type CombineOptions } from '../ops/combine';
import { permute } from '../ops/permute';
import { Fp8Rows } from '../ops/quantized';
import type { RoutingResult } from '../ops/routing';
import type { AllToAllOptions } from '../parallel/collective_args';
import type { Slice } from '../parallel/plan';
import { Tensor } from '../tensor';

/** What wide EP needs of a group: ProcessGroup has it (an all-to-all that may also return a promise). */
export interface ExchangeGroup {
  readonly rank: number;
  readonly worldSize: number;
  allToAll(input: Tensor, output: Tensor, options?: AllToAllOptions | null): void | Promise<void>;
}

export interface DispatchStep {
  group: ExchangeGroup;
  /** This rank's tokens [T, H]. */
  input: Tensor;
  /** Their routing, in global expert ids. */
  routed: RoutingResult;
  experts: number;
  /** This rank's experts (global ids). */
  localExperts: Slice;
  /** FP8 experts: rows travel as FP8 with their scales (quantized once, by this rank). */
  fp8?: boolean;
  /** The local experts' output [rows, H] (the input's dtype) for expert-sorted rows (local ids) and their offsets. */
  runExperts(rows: Tensor | Fp8Rows, offsets: Tensor, maxRowsPerExpert: number): Tensor;
  /** The shared expert's part of the combine, computed on this rank's tokens. */
  shared?: Pick<CombineOptions, 'shared' | 'sharedGateLogits'>;
  keep: <T extends { dispose(): void }>(made: T) => T;
}

/** Sums of consecutive runs of `width` counts: rows per rank from rows per expert. */
function perRank(counts: Int32Array, ranks: number, width: number): number[] {
  return Array.from({ length: ranks }, (_, rank) => counts.subarray(rank * width, (rank + 1) * width).reduce((total, count) => total + count, 0));
}

/** Each received row's local expert: received rows come by source rank, then by local expert. */
function receivedExperts(received: Int32Array, ranks: number, width: number): Int32Array {
  const total = received.reduce((sum, count) => sum + count, 0);
  const ids = new Int32Array(total);
  let at = 0;
  for (let source = 0; source < ranks; source++) {
    for (let expert = 0; expert < width; expert++) {
      const count = received[source * width + expert]!;
      ids.fill(expert, at, at + count);
      at += count;
    }
  }
  return ids;
}

/** Step 3's exchange: the rows (FP8: and their scales, with the same splits) into new tensors of the received rows. */
async function exchangeRows(group: ExchangeGroup, rows: Tensor | Fp8Rows, receivedRows: number, splits: AllToAllOptions,
  keep: DispatchStep['keep']): Promise<Tensor | Fp8Rows> {
  const { device } = rows;
  const hidden = rows.shape[1]!;
  if (!(rows instanceof Fp8Rows)) {
    const received = keep(Tensor.empty([receivedRows, hidden], { dtype: rows.dtype, device }));
    await group.allToAll(rows, received, splits);
    return received;
  }
  const data = keep(Tensor.empty([receivedRows, hidden], { dtype: 'float8_e4m3', device }));
  const scales = keep(Tensor.empty([receivedRows, rows.scales.shape[1]!], { dtype: 'float32', device }));
  // One after the other: every rank must enqueue a group's collectives in the same order.
  await group.allToAll(rows.data, data, splits);
  await group.allToAll(rows.scales, scales, splits);
  return new Fp8Rows({ data, scales });
}

/** The output [T, H] of this rank's tokens (steps 1–5 above). */
export async function dispatchToExperts(step: DispatchStep): Promise<Tensor> {
  const { group, input, routed, experts, localExperts, keep } = step;
  const ranks = group.worldSize;
  const width = localExperts.count;
  if (width * ranks !== experts || localExperts.first !== group.rank * width) {
    throw new MoekitError('E_INVALID_ARGUMENT',
      `all-to-all dispatch: rank ${group.rank} of ${ranks} must hold experts [${group.rank * (experts / ranks)}, ${(group.rank + 1) * (experts / ranks)}), but holds [${localExperts.first}, ${localExperts.first + width})`);
  }
  const { device } = input;
  const hidden = input.shape[1]!;
  // 1. Pairs by expert, so each rank's rows are contiguous (FP8 experts: quantized on the way).
  const sent = permute(input, routed.topkIds, experts, step.fp8 ? { quantize: 'fp8' } : undefined);
  for (const made of Object.values(sent)) keep(made);
  const rows = sent.permuted;
  // 2. Counts: entry (source, local expert) of what this rank will receive.
  const incoming = keep(Tensor.empty([experts], { dtype: 'int32', device }));
  await group.allToAll(routed.expertCounts, incoming);
  const [mine, theirs] = (await Promise.all([routed.expertCounts.toArray(), incoming.toArray()])) as [Int32Array, Int32Array];
  const sendSplits = perRank(mine, ranks, width);
  const recvSplits = perRank(theirs, ranks, width);
  // 3. Rows out; the received ones sorted by local expert and computed.
  const receivedRows = recvSplits.reduce((total, count) => total + count, 0);
  const received = await exchangeRows(group, rows, receivedRows, { sendSplits, recvSplits }, keep);
  let results: Tensor;
  if (receivedRows > 0) {
    const ids = keep(Tensor.fromArray(receivedExperts(theirs, ranks, width), [receivedRows, 1], { dtype: 'int32', device }));
    const sorted = permute(received, ids, width);
    for (const made of Object.values(sorted)) keep(made);
    const computed = step.runExperts(sorted.permuted, sorted.expertOffsets, receivedRows);
    // 4. Back in received order (one row per pair, weight 1: exact), then back to their ranks.
    const ones = keep(Tensor.fromArray(new Float32Array(receivedRows).fill(1), [receivedRows, 1], { device }));
    results = keep(combine(computed, ones, sorted.sourceToPermuted));
  } else {
    results = keep(Tensor.empty([0, hidden], { dtype: input.dtype, device }));
  }
  const returned = keep(Tensor.empty(rows.shape, { dtype: input.dtype, device }));
  await group.allToAll(results, returned, { sendSplits: recvSplits, recvSplits: sendSplits });
  // 5. The weighted combine of this rank's pairs.
  return combine(returned, routed.topkWeights, sent.sourceToPermuted, step.shared);
}
