// POST /v1/forward's bodies (lib/serve/forward_request.ts): float16/bfloat16 rows are handed on as
// the request's own bits, not converted, and answered with the result's bits as they are.
import { describe, expect, it } from 'vitest';

import { decodeSafetensors, encodeSafetensors } from '../lib/checkpoint/safetensors';
import { encodeHalf } from '../lib/dtype';
import { encodeForwardResponse, parseForwardRequest } from '../lib/serve/forward_request';

const HIDDEN = 4;

describe('parseForwardRequest and encodeForwardResponse', () => {
  it('pass BF16 and F16 rows through as bits, both ways', () => {
    for (const [format, dtype] of [['BF16', 'bfloat16'], ['F16', 'float16']] as const) {
      const bits = encodeHalf([0.5, -1.25, 3, 1e-3, 7, -0.125, 2, 0], dtype);
      const request = parseForwardRequest(encodeSafetensors({ input: { dtype: format, shape: [2, HIDDEN], data: bits } }), false, HIDDEN);
      expect(request).toMatchObject({ dtype, tokens: 2, format });
      expect(request.rows).toBeInstanceOf(Uint16Array);
      expect(request.rows).toEqual(bits);

      const answer = { tokens: 2, dtype, output: bits, topkIds: Int32Array.of(1, 0, 2, 3), topkWeights: Float32Array.of(0.75, 0.25, 0.5, 0.5) };
      const reply = decodeSafetensors(encodeForwardResponse(answer, request.format, HIDDEN).body, 'reply');
      expect(reply.get('output')).toEqual({ dtype: format, shape: [2, HIDDEN], data: bits });
      expect(reply.get('topk_ids')!.data).toEqual(answer.topkIds);
    }
  });

  it('reads F32 and JSON rows as float32', () => {
    const values = Float32Array.of(0.5, -1, 2, 4);
    expect(parseForwardRequest(encodeSafetensors({ input: { dtype: 'F32', shape: [1, HIDDEN], data: values } }), false, HIDDEN))
      .toMatchObject({ dtype: 'float32', tokens: 1, format: 'F32', rows: values });
    expect(parseForwardRequest(Buffer.from(JSON.stringify({ input: [[0.5, -1, 2, 4]] })), true, HIDDEN))
      .toMatchObject({ dtype: 'float32', tokens: 1, format: 'json', rows: values });
  });
});
