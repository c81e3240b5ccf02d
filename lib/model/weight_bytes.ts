/**
 * What an MoE block's expert weights take in memory, counted as the layer stores them: the compute
 * dtype's bytes, or for quantized experts their values and their share of the scales. Used by the
 * benchmark's roofline (bytes a forward reads) and the parallel plan (bytes a rank holds).
 */
import { DTYPE_BYTES, type FloatDType } from '../dtype';
import { DEFAULT_GROUP_SIZES, FP8_BLOCK_SIZE, MXFP4_GROUP_SIZE, QUANTIZATION_FORMATS } from '../ops/quantized';
import { isGated } from '../vocabulary';
import type { MoEConfig } from './config';

/**
 * H×I projections per expert: gate, up and down under a gated activation; up and down otherwise
 * (a non-gated w13 is [E, I, H]).
 */
export function projections(config: MoEConfig): number {
  return isGated(config.activation) ? 3 : 2;
}

/**
 * Bytes an expert weight takes: the compute dtype's, or for quantized experts their real bytes:
 * fp8 one byte and its share of its 128×128 block's float32 scale; int8 one byte, int4 half a byte,
 * each with its share of its group's float32 scale (per channel: one per row of w13 and w2);
 * mxfp4 half a byte and a byte of e8m0 scale per 32 values.
 */
export function expertWeightBytes(config: MoEConfig, dtype: FloatDType): number {
  const { quantization } = config;
  switch (quantization) {
    case undefined:
    case null: return DTYPE_BYTES[dtype];
    case 'fp8': return 1 + DTYPE_BYTES.float32 / (FP8_BLOCK_SIZE * FP8_BLOCK_SIZE);
    case 'mxfp4': return 0.5 + 1 / MXFP4_GROUP_SIZE;
    default: {
      const values = quantization === 'int8' ? 1 : 0.5;
      const groupSize = config.quantizationGroupSize ?? DEFAULT_GROUP_SIZES[QUANTIZATION_FORMATS[quantization]];
      if (groupSize !== 'channel') return values + DTYPE_BYTES.float32 / groupSize;
      // One scale per row: w13's (projections − 1)·I rows of H values and w2's H rows of I.
      const { hiddenSize: H, intermediateSize: I } = config;
      const p = projections(config);
      return values + (DTYPE_BYTES.float32 * ((p - 1) * I + H)) / (p * H * I);
    }
  }
}
