/**
 * The body of POST /v1/forward and its answer: a safetensors image with `input` [T, H] (F32, F16
 * or BF16), answered with `output` (in the input's dtype), `topk_ids` (I32) and `topk_weights`
 * (F32); or JSON {"input": [[...], ...]}, answered with the same three names as nested arrays.
 * F16 and BF16 rows stay bits from request to response: the batcher converts them only when the
 * layer computes in another dtype.
 */
import { decodeSafetensors, encodeSafetensors } from '../checkpoint/safetensors';
import type { FloatDType, FloatHostArray } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import type { BatchedForwardResult } from './forward_batcher';

/** How a request was written, which is how it is answered. */
export type BodyFormat = 'json' | 'F32' | 'F16' | 'BF16';

export interface ForwardRequest {
  /** [tokens, H]: float32 values, or float16/bfloat16 bits as `dtype` says. */
  rows: FloatHostArray;
  dtype: FloatDType;
  tokens: number;
  format: BodyFormat;
}

const INPUT_NAME = 'input';

/** Whether a request with this Content-Type carries JSON (anything else is read as safetensors). */
export function isJsonContentType(contentType: string | undefined): boolean {
  return /^application\/json\b/i.test(contentType ?? '');
}

/** Reads the request body; E_SAFETENSORS / E_INVALID_ARGUMENT (malformed), E_DTYPE, E_SHAPE name the problem. */
export function parseForwardRequest(body: Uint8Array, json: boolean, hiddenSize: number): ForwardRequest {
  return json ? parseJsonRequest(body, hiddenSize) : parseSafetensorsRequest(body, hiddenSize);
}

function wrongHiddenSize(shape: string, hiddenSize: number): never {
  throw new MoekitError('E_SHAPE', `input has shape ${shape} but the layer's hidden size is ${hiddenSize}: send [tokens, ${hiddenSize}]`);
}

function parseSafetensorsRequest(body: Uint8Array, hiddenSize: number): ForwardRequest {
  // Views: the body is this request's alone, and its rows are read only until the answer is sent.
  const tensors = decodeSafetensors(body, 'request body', { view: true });
  const input = tensors.get(INPUT_NAME);
  if (input === undefined) {
    throw new MoekitError('E_INVALID_ARGUMENT', `request body: no tensor named ${INPUT_NAME} (it has: ${[...tensors.keys()].join(', ') || 'none'})`);
  }
  const { shape } = input;
  if (shape.length !== 2) throw new MoekitError('E_SHAPE', `input has shape [${shape.join(', ')}]; it must be [tokens, ${hiddenSize}]`);
  if (shape[1] !== hiddenSize) wrongHiddenSize(`[${shape.join(', ')}]`, hiddenSize);
  if (shape[0] === 0) throw new MoekitError('E_SHAPE', 'input has no tokens');
  switch (input.dtype) {
    case 'F32': return { rows: input.data, dtype: 'float32', tokens: shape[0]!, format: 'F32' };
    case 'F16': return { rows: input.data, dtype: 'float16', tokens: shape[0]!, format: 'F16' };
    case 'BF16': return { rows: input.data, dtype: 'bfloat16', tokens: shape[0]!, format: 'BF16' };
    default: throw new MoekitError('E_DTYPE', `input is ${input.dtype}; it must be F32, F16 or BF16`);
  }
}

function parseJsonRequest(body: Uint8Array, hiddenSize: number): ForwardRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8'));
  } catch (error) {
    throw new MoekitError('E_INVALID_ARGUMENT', `request body is not valid JSON: ${(error as Error).message}`);
  }
  const input = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>)[INPUT_NAME] : undefined;
  if (!Array.isArray(input) || input.length === 0) {
    throw new MoekitError('E_INVALID_ARGUMENT', `request body must be {"${INPUT_NAME}": [[...], ...]} with at least one row of ${hiddenSize} numbers`);
  }
  const rows = new Float32Array(input.length * hiddenSize);
  input.forEach((row: unknown, token) => {
    if (!Array.isArray(row)) throw new MoekitError('E_SHAPE', `input[${token}] must be an array of ${hiddenSize} numbers, got ${describeValue(row)}`);
    if (row.length !== hiddenSize) wrongHiddenSize(`[${input.length}, ${row.length}] (row ${token})`, hiddenSize);
    row.forEach((value: unknown, column) => {
      if (typeof value !== 'number') throw new MoekitError('E_DTYPE', `input[${token}][${column}] must be a number, got ${describeValue(value)}`);
      rows[token * hiddenSize + column] = value;
    });
  });
  return { rows, dtype: 'float32', tokens: input.length, format: 'json' };
}

/**
 * The answer to a request, in its format: the body and its Content-Type. The output goes out in
 * the result's dtype as it is (the request's, as the batcher answers it).
 */
export function encodeForwardResponse(result: BatchedForwardResult<FloatHostArray>, format: BodyFormat, hiddenSize: number): { body: Buffer; contentType: string } {
  const { tokens } = result;
  const topK = result.topkIds.length / tokens;
  if (format === 'json') {
    const rowsOf = (values: ArrayLike<number>, width: number): number[][] =>
      Array.from({ length: tokens }, (_, token) => Array.from({ length: width }, (__, column) => values[token * width + column]!));
    const body = JSON.stringify({ output: rowsOf(result.output, hiddenSize), topk_ids: rowsOf(result.topkIds, topK), topk_weights: rowsOf(result.topkWeights, topK) });
    return { body: Buffer.from(body, 'utf8'), contentType: 'application/json' };
  }
  const outputShape = [tokens, hiddenSize];
  const output = result.output instanceof Float32Array
    ? { dtype: 'F32' as const, shape: outputShape, data: result.output }
    : { dtype: result.dtype === 'float16' ? ('F16' as const) : ('BF16' as const), shape: outputShape, data: result.output };
  const body = encodeSafetensors({
    output,
    topk_ids: { dtype: 'I32', shape: [tokens, topK], data: result.topkIds },
    topk_weights: { dtype: 'F32', shape: [tokens, topK], data: result.topkWeights },
  });
  return { body, contentType: 'application/octet-stream' };
}
