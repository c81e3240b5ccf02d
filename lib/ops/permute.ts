import { deviceIndex, type Device } from '../device';
import { describeValue, MoekitError } from '../errors';
import { addon, type NativePermuteMaps } from '../native';
import { optionalOptions } from '../options';
import { Tensor } from '../tensor';
import { fp8Blocks, Fp8Rows, requireRows, type Quantization } from './quantized';
import { MAX_EXPERTS, requireDType, requireFloat, requireInteger, requireSameDevice, requireShape, requireTensor, withOutputs } from './validate';

export interface PermuteMapsOptions {
  /**
   * Expert Parallel: only experts [first, first + count) are on this rank. Pairs routed elsewhere
   * are dropped (sourceToPermuted = -1), expertOffsets has count + 1 entries, and rows from
   * expertOffsets[count] on are unused.
   */
  localExperts?: { first: number; count: number };
}

export interface PermuteOptions extends PermuteMapsOptions {
  /**
   * 'fp8': write the rows quantized by the W8A8 rule (lib/ops/quantized.ts), as Fp8Rows, for
   * GEMMs with FP8 weights: each token's row is quantized once and the same everywhere it goes.
   */
  quantize?: Quantization;
}

/**
 * Where each (token, slot) pair goes in expert-sorted order, and back. (A type rather than an
 * interface: withOutputs takes it as a record of tensors.)
 */
export type PermuteMaps = {
  /** [E+1] int32: expert e's rows are [offsets[e], offsets[e+1]). Stays on the device. */
  expertOffsets: Tensor;
  /** [T, K] int32: the row of (token t, slot j) in expert order — the inverse map for combine(); -1 when dropped. */
  sourceToPermuted: Tensor;
  /** [T*K] int32: the flat index t*K + j of each row in expert order (t = index / K). */
  permutedToSource: Tensor;
};

export interface PermuteResult<Rows extends Tensor | Fp8Rows = Tensor> extends PermuteMaps {
  /** [T*K, H] the input rows in expert order (stable within an expert: by token, then slot). */
  permuted: Rows;
}

/** The experts this rank holds: options.localExperts, or all numExperts of them. */
type LocalExperts = NonNullable<PermuteMapsOptions['localExperts']>;

/** topkIds checked: int32 [T, K] with K >= 1, T = `tokens` when the input rows give it. Returns [T, K]. */
function requireTopkIds(op: string, topkIds: Tensor, tokens: number | null): [number, number] {
  requireTensor(topkIds, op, 'topkIds');
  requireDType(topkIds, op, 'topkIds', ['int32']);
  const [rows, topK] = requireShape(topkIds, op, 'topkIds', [tokens, null]) as [number, number];
  if (topK < 1) throw new MoekitError('E_SHAPE', `${op}: topkIds needs at least one slot per token`);
  return [rows, topK];
}

/** numExperts and options.localExperts checked. */
function requireLocalExperts(op: string, numExperts: number, localExperts: LocalExperts | undefined | null): LocalExperts {
  requireInteger(numExperts, op, 'numExperts', 1, MAX_EXPERTS);
  const local = localExperts ?? { first: 0, count: numExperts };
  requireInteger(local.first, op, 'localExperts.first', 0, numExperts - 1);
  requireInteger(local.count, op, 'localExperts.count', 1, numExperts - local.first);
  return local;
}

/** The maps' tensors for `tokens` × `topK` pairs sorted among `experts` local experts. */
function emptyMaps(tokens: number, topK: number, experts: number, device: Device): PermuteMaps {
  return {
    expertOffsets: Tensor.empty([experts + 1], { dtype: 'int32', device }),
    sourceToPermuted: Tensor.empty([tokens, topK], { dtype: 'int32', device }),
    permutedToSource: Tensor.empty([tokens * topK], { dtype: 'int32', device }),
  };
}

/** The native permute arguments that say which experts are local and where the maps go. */
function nativeMaps(maps: PermuteMaps, local: LocalExperts, numExperts: number): NativePermuteMaps {
  return {
    expertOffsets: maps.expertOffsets.toNative(),
    sourceToPermuted: maps.sourceToPermuted.toNative(),
    permutedToSource: maps.permutedToSource.toNative(),
    localExpertCount: local.count,
    firstExpert: local.first,
    totalExperts: numExperts,
  };
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
  const [tokens, hidden] = requireShape(rows, op, 'input', [null, null]) as [number, number];
  const [, topK] = requireTopkIds(op, topkIds, tokens);
  const given = optionalOptions(options, `${op}: options`);
  const local = requireLocalExperts(op, numExperts, given.localExperts);
  const quantize = given.quantize ?? undefined;
  if (quantize !== undefined && quantize !== 'fp8') {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: options.quantize must be 'fp8' or left out, got ${describeValue(quantize)}`);
  }
  const device = requireSameDevice(op, { input: rows, topkIds });
  const pairs = tokens * topK;
  const fp8Output = fp8Input || quantize !== undefined;
  const { permuted, permutedScales, ...maps } = withOutputs(
    () => ({
      permuted: Tensor.empty([pairs, hidden], { dtype: fp8Output ? 'float8_e4m3' : rows.dtype, device }),
      ...(fp8Output && { permutedScales: Tensor.empty([pairs, fp8Blocks(hidden)], { dtype: 'float32', device }) }),
      ...emptyMaps(tokens, topK, local.count, device),
    }),
    (out) =>
      addon().permute(deviceIndex(device), {
        input: rows.toNative(),
        inputScales: fp8Input ? input.scales.toNative() : undefined,
        topkIds: topkIds.toNative(),
        permuted: out.permuted.toNative(),
        permutedScales: out.permutedScales?.toNative(),
        ...nativeMaps(out, local, numExperts),
      }),
  );
  return { permuted: permutedScales ? new Fp8Rows({ data: permuted, scales: permutedScales }) : permuted, ...maps };
}

/**
 * permute()'s maps alone, with no row copied: for a grouped GEMM that reads the token rows where
 * they are, `groupedGemm(x, w, expertOffsets, { gatherRows: permutedToSource, gatherDivisor: K })`
 * (K: topkIds' slots per token), which equals groupedGemm(permute(x, topkIds, E).permuted, w,
 * expertOffsets). The maps are those permute() returns for the same ids and options (entries of
 * permutedToSource past expertOffsets' last are left as they were, as there).
 */
export function permuteMaps(topkIds: Tensor, numExperts: number, options?: PermuteMapsOptions | null): PermuteMaps {
  const op = 'permuteMaps';
  const [tokens, topK] = requireTopkIds(op, topkIds, null);
  const given = optionalOptions(options, `${op}: options`);
  const local = requireLocalExperts(op, numExperts, given.localExperts);
  const device = topkIds.device;
  return withOutputs(
    () => emptyMaps(tokens, topK, local.count, device),
    (maps) => addon().permute(deviceIndex(device), { topkIds: topkIds.toNative(), ...nativeMaps(maps, local, numExperts) }),
  );
}
