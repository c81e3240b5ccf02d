/** A lone forward's results read back to the host: what batched and served answers are checked against. */
import type { FloatDType, HostArray, MoELayer } from '../../lib/index';
import { Tensor } from '../../lib/index';

export interface HostForward {
  output: HostArray;
  topkIds: Int32Array;
  topkWeights: Float32Array;
}

/**
 * A forward of `rows` (float32 values, or float16/bfloat16 bits, as `dtype` holds them on the host)
 * computed in the layer's dtype, its output read back in `dtype`.
 */
export async function hostForward(layer: MoELayer, rows: Float32Array | Uint16Array, dtype: FloatDType = 'float32'): Promise<HostForward> {
  const hidden = layer.config.hiddenSize;
  using given = Tensor.fromArray(rows, [rows.length / hidden, hidden], { dtype });
  using x = given.to('cpu', layer.dtype);
  using result = layer.forward(x);
  using output = result.output.to('cpu', dtype);
  return {
    output: await output.toArray(),
    topkIds: (await result.topkIds.toArray()) as Int32Array,
    topkWeights: (await result.topkWeights.toArray()) as Float32Array,
  };
}
