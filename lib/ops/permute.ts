import { deviceIndex } from '../device';
import { MoekitError } from '../errors';
import { addon } from '../native';
import { optionalOptions } from '../options';
import { Tensor } from '../tensor';
import { MAX_EXPERTS, requireDType, requireFloat, requireInteger, requireSameDevice, requireShape, requireTensor, withOutputs } from './validate';

export interface PermuteOptions {
  /**
   * Expert Parallel: only experts [first, first + count) are on this rank. Pairs routed elsewhere
   * are dropped (sourceToPermuted = -1), expertOffsets has count + 1 entries, and rows from
   * expertOffsets[count] on are unused.
   */
  localExperts?: { first: number; count: number };
}

export interface PermuteResult {
  /** [T*K, H] the input rows in expert order (stable within an expert: by token, then slot). */
  permuted: Tensor;
  /** [E+1] int32: expert e's rows are [offsets[e], offsets[e+1]). Stays on the device. */
  expertOffsets: Tensor;
  /** [T, K] int32: the row of (token t, slot j) in `permuted` — the inverse map for combine(); -1 when dropped. */
  sourceToPermuted: Tensor;
  /** [T*K] int32: the flat index t*K + j of each permuted row. */
  permutedToSource: Tensor;
}

/** Gathers each token's row once per chosen expert into expert-sorted order. */
export function permute(input: Tensor, topkIds: Tensor, numExperts: number, options?: PermuteOptions | null): PermuteResult {
  const op = 'permute';
  requireTensor(input, op, 'input');
  requireTensor(topkIds, op, 'topkIds');
  requireFloat(input, op, 'input');
  requireDType(topkIds, op, 'topkIds', ['int32']);
  const [tokens, hidden] = requireShape(input, op, 'input', [null, null]) as [number, number];
  const [, topK] = requireShape(topkIds, op, 'topkIds', [tokens, null]) as [number, number];
  if (topK < 1) throw new MoekitError('E_SHAPE', `${op}: topkIds needs at least one slot per token`);
  requireInteger(numExperts, op, 'numExperts', 1, MAX_EXPERTS);
  const local = optionalOptions(options, `${op}: options`).localExperts ?? { first: 0, count: numExperts };
  requireInteger(local.first, op, 'localExperts.first', 0, numExperts - 1);
  requireInteger(local.count, op, 'localExperts.count', 1, numExperts - local.first);
  const device = requireSameDevice(op, { input, topkIds });
  const pairs = tokens * topK;
  return withOutputs(
    () => ({
      permuted: Tensor.empty([pairs, hidden], { dtype: input.dtype, device }),
      expertOffsets: Tensor.empty([local.count + 1], { dtype: 'int32', device }),
      sourceToPermuted: Tensor.empty([tokens, topK], { dtype: 'int32', device }),
      permutedToSource: Tensor.empty([pairs], { dtype: 'int32', device }),
    }),
    (out) =>
      addon().permute(deviceIndex(device), {
        input: input.toNative(),
        topkIds: topkIds.toNative(),
        permuted: out.permuted.toNative(),
        expertOffsets: out.expertOffsets.toNative(),
        sourceToPermuted: out.sourceToPermuted.toNative(),
        permutedToSource: out.permutedToSource.toNative(),
        numExperts: local.count,
        firstExpert: local.first,
        totalExperts: numExperts,
      }),
  );
}
