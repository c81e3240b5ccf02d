// groupedGemm's gathered rows on cuda:0, on each kernel that reads them (sm90's producer copies
// them by index, small_m reads them through row pointers, every other path takes a gathered copy):
// the gathered product equals the product of the permuted copy, bit for bit, since the kernels see
// the same rows; a bad index is reported on each path and the device keeps working.
import { describe, expect, it } from 'vitest';

import { groupedGemm, linear, permute, permuteMaps, Tensor, type FloatDType } from '../../lib/index';
import { GPU, HAS_GPU } from './gpu';

/** Expert ids for `tokens` tokens with `topK` distinct experts each, spread over all experts. */
function spreadIds(tokens: number, topK: number, experts: number): Tensor {
  const ids = new Int32Array(tokens * topK);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < topK; j++) ids[t * topK + j] = (t * 5 + j * 3 + (t >> 3)) % experts;
  }
  // Distinct within a token: slot j shifts by 3j, and 3j < experts keeps them apart.
  return Tensor.fromArray(ids, [tokens, topK], { dtype: 'int32', device: GPU });
}

interface GatherCase {
  /** The kernel the rows per expert, K and pairing lead to (grouped_gemm.cu, grouped_gemm_sm90.cu). */
  path: string;
  tokens: number;
  topK: number;
  experts: number;
  hidden: number;
  cols: number;
  gated: boolean;
  dtype: FloatDType;
  /** Expert Parallel: only experts [0, local) are here, so rows past offsets[local] are unused. */
  local?: number;
}

const CASES: readonly GatherCase[] = [
  { path: 'sm90 wide, gated', tokens: 2048, topK: 2, experts: 8, hidden: 256, cols: 384, gated: true, dtype: 'bfloat16' },
  { path: 'sm90 ping-pong, plain K 2048', tokens: 1024, topK: 1, experts: 4, hidden: 2048, cols: 256, gated: false, dtype: 'bfloat16' },
  { path: 'sm90 ping-pong, gated', tokens: 400, topK: 2, experts: 8, hidden: 1024, cols: 256, gated: true, dtype: 'float16' },
  { path: 'sm90 narrow, K tail, EP', tokens: 300, topK: 2, experts: 16, hidden: 200, cols: 144, gated: false, dtype: 'bfloat16', local: 12 },
  { path: 'small_m', tokens: 5, topK: 2, experts: 8, hidden: 256, cols: 96, gated: true, dtype: 'bfloat16' },
  { path: 'the gathered copy (mma, float32)', tokens: 333, topK: 2, experts: 8, hidden: 72, cols: 48, gated: true, dtype: 'float32' },
];

describe.skipIf(!HAS_GPU)('groupedGemm gathers its rows on cuda:0', () => {
  for (const c of CASES) {
    it(`${c.path}: T=${c.tokens} K=${c.topK} E=${c.experts} H=${c.hidden} N=${c.cols} ${c.dtype}`, async () => {
      using x = Tensor.random([c.tokens, c.hidden], { dtype: c.dtype, seed: 1, device: GPU });
      using w = Tensor.random([c.experts, c.cols, c.hidden], { dtype: c.dtype, seed: 2, scale: 0.1, device: GPU });
      using bias = Tensor.random([c.experts, c.cols], { dtype: c.dtype, seed: 3, device: GPU });
      using ids = spreadIds(c.tokens, c.topK, c.experts);
      const localExperts = c.local === undefined ? undefined : { first: 0, count: c.local };
      const experts = localExperts?.count ?? c.experts;
      using localWeights = c.local === undefined ? null : Tensor.random([experts, c.cols, c.hidden], { dtype: c.dtype, seed: 2, scale: 0.1, device: GPU });
      using localBias = c.local === undefined ? null : Tensor.random([experts, c.cols], { dtype: c.dtype, seed: 3, device: GPU });
      const weights = localWeights ?? w;
      const options = { bias: localBias ?? bias, ...(c.gated && { activation: { kind: 'swiglu' as const } }) };

      const sorted = permute(x, ids, c.experts, { localExperts });
      const maps = permuteMaps(ids, c.experts, { localExperts });
      try {
        expect(Array.from(await maps.permutedToSource.toArray()).slice(0, (await sorted.expertOffsets.toArray())[experts]))
          .toEqual(Array.from(await sorted.permutedToSource.toArray()).slice(0, (await sorted.expertOffsets.toArray())[experts]));
        using copied = groupedGemm(sorted.permuted, weights, sorted.expertOffsets, options);
        using gathered = groupedGemm(x, weights, maps.expertOffsets, { ...options, gatherRows: maps.permutedToSource, gatherDivisor: c.topK });
        expect(gathered.shape).toEqual(copied.shape);
        const used = (await maps.expertOffsets.toArray())[experts]! * gathered.shape[1]!;
        const want = (await copied.toFloat32Array()).subarray(0, used);
        const got = (await gathered.toFloat32Array()).subarray(0, used);
        expect(got.some((value) => value !== 0)).toBe(true);
        expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true);
      } finally {
        for (const tensor of [...Object.values(sorted), ...Object.values(maps)]) tensor.dispose();
      }
    });
  }

  for (const c of [CASES[0]!, CASES[4]!]) {
    it(`${c.path}: a bad gather index poisons the output and nothing else`, async () => {
      using x = Tensor.random([c.tokens, c.hidden], { dtype: c.dtype, seed: 1, device: GPU });
      using w = Tensor.random([c.experts, c.cols, c.hidden], { dtype: c.dtype, seed: 2, scale: 0.1, device: GPU });
      const rows = c.tokens * c.topK;
      const perExpert = Math.floor(rows / c.experts);
      using offsets = Tensor.fromArray(Int32Array.from({ length: c.experts + 1 }, (_, e) => (e === c.experts ? rows : e * perExpert)), [c.experts + 1], { dtype: 'int32', device: GPU });
      const indices = Int32Array.from({ length: rows }, (_, r) => (r * 7) % rows);
      indices[rows - 1] = rows; // one past the input's rows × gatherDivisor
      using gatherRows = Tensor.fromArray(indices, [rows], { dtype: 'int32', device: GPU });
      using out = groupedGemm(x, w, offsets, { gatherRows, gatherDivisor: c.topK, ...(c.gated && { activation: { kind: 'swiglu' as const } }) });
      await expect(out.toArray()).rejects.toThrow(new RegExp(`gatherRows\\[${rows - 1}\\] is ${rows}, outside \\[0, ${rows}\\)`));
      // The device still computes correctly.
      using a = Tensor.fromArray(Float32Array.from([1, 2, 3, 4]), [2, 2], { device: GPU });
      using b = Tensor.fromArray(Float32Array.from([1, 0, 1, 1]), [2, 2], { device: GPU });
      using y = linear(a, b);
      expect(Array.from(await y.toArray())).toEqual([1, 3, 3, 7]);
    });
  }
});
