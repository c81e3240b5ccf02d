// Every op on cuda:0 against the CPU backend, on random inputs with awkward sizes, per dtype.
import { describe, expect, it } from 'vitest';

import { activation, combine, groupedGemm, linear, permute, route, Tensor, type FloatDType } from '../../lib/index';
import { relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

const DTYPES: readonly FloatDType[] = ['float32', 'float16', 'bfloat16'];
/** Relative error allowed against the CPU result, per input dtype (float32 accumulation both sides). */
const TOLERANCE: Readonly<Record<FloatDType, number>> = { float32: 1e-5, float16: 2e-3, bfloat16: 1e-2 };

async function values(tensor: Tensor): Promise<Float32Array> {
  return tensor.dtype === 'int32' ? Float32Array.from(await tensor.toArray()) : tensor.toFloat32Array();
}

/** Runs `op` on the CPU and on the GPU with the same inputs; returns both outputs as float32. */
async function onBoth(inputs: Tensor[], op: (...args: Tensor[]) => Tensor): Promise<{ cpu: Float32Array; gpu: Float32Array }> {
  const onGpu = inputs.map((tensor) => tensor.to(GPU));
  try {
    const cpu = await values(op(...inputs));
    const gpu = await values(op(...onGpu));
    return { cpu, gpu };
  } finally {
    for (const tensor of onGpu) tensor.dispose();
  }
}

/** Expert ids for `tokens` tokens with K distinct experts each; expert `empty` never chosen. */
function distinctIds(tokens: number, topK: number, experts: number, empty: number): Int32Array {
  const ids = new Int32Array(tokens * topK);
  for (let t = 0; t < tokens; t++) {
    const choices = Array.from({ length: experts }, (_, e) => e).filter((e) => e !== empty);
    for (let j = 0; j < topK; j++) {
      const pick = (t * 7 + j * 13) % choices.length;
      ids[t * topK + j] = choices.splice(pick, 1)[0]!;
    }
  }
  return ids;
}

describe.skipIf(!HAS_GPU)('CUDA ops match the CPU backend', () => {
  for (const dtype of DTYPES) {
    describe(dtype, () => {
      for (const [rows, inFeatures, outFeatures] of [[1, 100, 36], [257, 64, 511], [20000, 36, 100]] as const) {
        it(`linear ${rows}x${inFeatures} → ${outFeatures}`, async () => {
          const x = Tensor.random([rows, inFeatures], { dtype, seed: 1 });
          const w = Tensor.random([outFeatures, inFeatures], { dtype, seed: 2, scale: 0.1 });
          const b = Tensor.random([outFeatures], { dtype, seed: 3 });
          const { cpu, gpu } = await onBoth([x, w, b], (x, w, b) => linear(x!, w!, { bias: b, outDtype: 'float32' }));
          expect(relativeError(gpu, cpu)).toBeLessThanOrEqual(TOLERANCE[dtype]);
        });
      }

      for (const [tokens, hidden, inter, experts, topK] of [[1, 100, 36, 8, 2], [257, 64, 511, 16, 4], [4096, 128, 96, 64, 8]] as const) {
        it(`routing + permute + grouped GEMM + activation + combine: T=${tokens} H=${hidden} I=${inter} E=${experts} K=${topK}`, async () => {
          const ids = Tensor.fromArray(distinctIds(tokens, topK, experts, experts - 1), [tokens, topK]);
          const x = Tensor.random([tokens, hidden], { dtype, seed: 4 });
          const w13 = Tensor.random([experts, 2 * inter, hidden], { dtype, seed: 5, scale: 0.1 });
          const w2 = Tensor.random([experts, hidden, inter], { dtype, seed: 6, scale: 0.1 });
          const logits = Tensor.random([tokens, experts], { seed: 7, scale: 4 });
          const bias = Tensor.random([experts], { seed: 8, scale: 0.5 });

          for (const method of ['softmax_topk', 'topk_softmax', 'sigmoid_group_topk'] as const) {
            const options = { topK, method, renormalize: true, numGroups: method === 'sigmoid_group_topk' ? 4 : 1, topkGroups: method === 'sigmoid_group_topk' ? 2 : 1, scalingFactor: 2.5 };
            const idsOf = (l: Tensor, c?: Tensor) => route(l, { ...options, correctionBias: method === 'sigmoid_group_topk' ? c : undefined });
            const ids = await onBoth([logits, bias], (l, c) => idsOf(l!, c).topkIds);
            expect(Array.from(ids.gpu)).toEqual(Array.from(ids.cpu));
            const weights = await onBoth([logits, bias], (l, c) => idsOf(l!, c).topkWeights);
            expect(relativeError(weights.gpu, weights.cpu)).toBeLessThanOrEqual(1e-6);
            const counts = await onBoth([logits, bias], (l, c) => idsOf(l!, c).expertCounts);
            expect(Array.from(counts.gpu)).toEqual(Array.from(counts.cpu));
          }

          const sorted = await onBoth([x, ids], (x, i) => permute(x!, i!, experts).permuted);
          expect(Array.from(sorted.gpu)).toEqual(Array.from(sorted.cpu));
          const offsets = await onBoth([x, ids], (x, i) => permute(x!, i!, experts).expertOffsets);
          expect(Array.from(offsets.gpu)).toEqual(Array.from(offsets.cpu));
          expect(offsets.cpu[experts]! - offsets.cpu[experts - 1]!).toBe(0); // the empty expert

          const layer = (x: Tensor, i: Tensor, w13: Tensor, w2: Tensor, kind: 'swiglu' | 'geglu' | 'gptoss_swiglu') => {
            const p = permute(x, i, experts);
            const h = groupedGemm(p.permuted, w13, p.expertOffsets);
            const a = activation(h, kind, { layout: kind === 'gptoss_swiglu' ? 'interleaved' : 'halves' });
            const y = groupedGemm(a, w2, p.expertOffsets);
            const weights = Tensor.fromArray(new Float32Array(tokens * topK).fill(0.5), [tokens, topK], { device: x.device });
            return combine(y, weights, p.sourceToPermuted, { outDtype: 'float32' });
          };
          for (const kind of ['swiglu', 'geglu', 'gptoss_swiglu'] as const) {
            const out = await onBoth([x, ids, w13, w2], (x, i, a, b) => layer(x!, i!, a!, b!, kind));
            expect(relativeError(out.gpu, out.cpu)).toBeLessThanOrEqual(TOLERANCE[dtype]);
          }
        });
      }

      // Plain products with K 2048 and a mean of 273 rows per expert: on Hopper the 16-bit ones run
      // sm90's ping-pong schedule by its rule (grouped_gemm_sm90.cu), with an empty expert, a
      // column tail and row tiles that end inside an expert.
      it('grouped GEMM of the ping-pong schedule\'s shapes (K 2048, 273 rows per expert)', async () => {
        const offsets = Tensor.fromArray(Int32Array.from([0, 300, 300, 820]), [4]);
        const rows = Tensor.random([820, 2048], { dtype, seed: 10 });
        const weights = Tensor.random([3, 272, 2048], { dtype, seed: 11, scale: 0.05 });
        const bias = Tensor.random([3, 272], { dtype, seed: 12 });
        for (const outDtype of ['float32', dtype] as const) {
          const out = await onBoth([rows, weights, offsets, bias], (x, w, o, b) => groupedGemm(x!, w!, o!, { bias: b, outDtype }));
          expect(relativeError(out.gpu, out.cpu)).toBeLessThanOrEqual(TOLERANCE[dtype]);
        }
      });

      // Gated products (SwiGLU fused, gate and up halves) of up to 128 rows per expert and K up to
      // 2048: the rule's other ping-pong case on Hopper, with an empty expert and a partial row tile.
      it('grouped GEMM with SwiGLU fused in the ping-pong rule\'s gated shapes (K 512, 100 rows per expert)', async () => {
        const offsets = Tensor.fromArray(Int32Array.from([0, 128, 128, 300]), [4]);
        const rows = Tensor.random([300, 512], { dtype, seed: 13 });
        const weights = Tensor.random([3, 2 * 136, 512], { dtype, seed: 14, scale: 0.05 });
        for (const outDtype of ['float32', dtype] as const) {
          const out = await onBoth([rows, weights, offsets], (x, w, o) => groupedGemm(x!, w!, o!, { outDtype, activation: { kind: 'swiglu' } }));
          expect(relativeError(out.gpu, out.cpu)).toBeLessThanOrEqual(TOLERANCE[dtype]);
        }
      });

      it('non-gated activations and casts', async () => {
        const x = Tensor.random([33, 70], { dtype, seed: 9, scale: 3 });
        for (const kind of ['silu', 'gelu', 'relu'] as const) {
          const out = await onBoth([x], (x) => activation(x!, kind, { outDtype: 'float32' }));
          expect(relativeError(out.gpu, out.cpu)).toBeLessThanOrEqual(1e-6);
        }
        for (const target of DTYPES) {
          const out = await onBoth([x], (x) => x!.to(x!.device, target));
          expect(Array.from(out.gpu)).toEqual(Array.from(out.cpu));
        }
      });

      it('random fill matches the CPU bit for bit', async () => {
        const cpu = await Tensor.random([1001], { dtype, seed: 42 }).toArray();
        const gpu = await Tensor.random([1001], { dtype, seed: 42, device: GPU }).toArray();
        expect(Array.from(gpu)).toEqual(Array.from(cpu));
      });
    });
  }
});
