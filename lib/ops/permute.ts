import { deviceIndex } from '../device';
import { describeValue, MoekitError } from '../errors';
import { addon } from '../native';
import { optionalOptions } from '../options';
import { Tensor } from '../tensor';
import { fp8Blocks, Fp8Rows, requireRows, type Quantization } from './quantized';
import { MAX_EXPERTS, requireDType, requireFloat, requireInteger, requireSameDevice, requireShape, requireTensor, withOutputs } from './validate';

export interface PermuteOptions {
  /**
   * Expert Parallel: only experts [first, first + count) are on this rank. Pairs routed elsewhere
   * are dropped (sourceToPermuted = -1), expertOffsets has count + 1 entries, and rows from
   * expertOffsets[count] on are unused.
   */
  localExperts?: { first: number; count: number };
  /**
   * 'fp8': write the rows quantized by the W8A8 rule (lib/ops/quantized.ts), as Fp8Rows, for
   * GEMMs with FP8 weights: each token's row is quantized once and the same everywhere it goes.
   */
  quantize?: Quantization;
}

export interface PermuteResult<Rows extends Tensor | Fp8Rows = Tensor> {
  /** [T*K, H] the input rows in expert order (stable within an expert: by token, then slot). */
  permuted: Rows;
  /** [E+1] int32: expert e's rows are [offsets[e], offsets[e+1]). Stays on the device. */
  expertOffsets: Tensor;
  /** [T, K] int32: the row of (token t, slot j) in `permuted` — the inverse map for combine(); -1 when dropped. */
  sourceToPermuted: Tensor;
  /** [T*K] int32: the flat index t*K + j of each permuted row. */
  permutedToSource: Tensor;
}

/**
 * Gathers each token's row once per chosen expert into expert-sorted order. FP8 rows that already
 * carry their scales (an Fp8Rows input, as wide EP receives them) are copied with their scales.
 */
export function permute(input: Tensor, topkIds: Tensor, numExperts: number, options?: (PermuteOptions & { quantize?: undefined }) | null): PermuteResult;
export function permute(input: Tensor | Fp8Rows, topkIds: Tensor, numExperts: number, options: PermuteOptions & { quantize: Quantization }): PermuteResult<Fp8Rows>;
export function permute(input: Fp8Rows, topkIds: Tensor, numExperts: number, options?: PermuteOptions | null): PermuteResult<Fp8Rows>;
export function permute(input: Tensor | Fp8Rows, topkIds: Tensor, numExperts: number, options?: PermuteOptions | null): PermuteResult<Tensor | Fp8Rows>;
export function permute(input: Tensor | Fp8Rows, topkIds: Tensor, numExperts: number, options?: PermuteOptions | null): PermuteResult<Tensor | Fp8Rows> {
  const op = 'permute';
  requireRows(input, op);
  const fp8Input = input instanceof Fp8Rows;
  if (!fp8Input) requireFloat(input, op, 'input');
  const rows = fp8Input ? input.data : input;
  requireTensor(topkIds, op, 'topkIds');
  requireDType(topkIds, op, 'topkIds', ['int32']);
  const [tokens, hidden] = requireShape(rows, op, 'input', [null, null]) as [number, number];
  const [, topK] = requireShape(topkIds, op, 'topkIds', [tokens, null]) as [number, number];
  if (topK < 1) throw new MoekitError('E_SHAPE', `${op}: topkIds needs at least one slot per token`);
  requireInteger(numExperts, op, 'numExperts', 1, MAX_EXPERTS);
  const given = optionalOptions(options, `${op}: options`);
  const local = given.localExperts ?? { first: 0, count: numExperts };
  const quantize = given.quantize ?? undefined;
  if (quantize !== undefined && quantize !== 'fp8') {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: options.quantize must be 'fp8' or left out, got ${describeValue(quantize)}`);
  }
  requireInteger(local.first, op, 'localExperts.first', 0, numExperts - 1);
  requireInteger(local.count, op, 'localExperts.count', 1, numExperts - local.first);
  const device = requireSameDevice(op, { input: rows, topkIds });
  const pairs = tokens * topK;
  const fp8Output = fp8Input || quantize !== undefined;
  const { permuted, permutedScales, ...maps } = withOutputs(
    () => ({
      permuted: Tensor.empty([pairs, hidden], { dtype: fp8Output ? 'float8_e4m3' : rows.dtype, device }),
      ...(fp8Output && { permutedScales: Tensor.empty([pairs, fp8Blocks(hidden)], { dtype: 'float32', device }) }),
      expertOffsets: Tensor.empty([local.count + 1], { dtype: 'int32', device }),
      sourceToPermuted: Tensor.empty([tokens, topK], { dtype: 'int32', device }),
      permutedToSource: Tensor.empty([pairs], { dtype: 'int32', device }),
    }),
    (out) =>
      addon().permute(deviceIndex(device), {
        input: rows.toNative(),
        inputScales: fp8Input ? input.scales.toNative() : undefined,
        topkIds: topkIds.toNative(),
        permuted: out.permuted.toNative(),
        permutedScales: out.permutedScales?.toNative(),
        expertOffsets: out.expertOffsets.toNative(),
        sourceToPermuted: out.sourceToPermuted.toNative(),
        permutedToSource: out.permutedToSource.toNative(),
        localExpertCount: local.count,
        firstExpert: local.first,
        totalExperts: numExperts,
      }),
  );
  return { permuted: permutedScales ? new Fp8Rows({ data: permuted, scales: permutedScales }) : permuted, ...maps };
}
