/** `moekit run`: one layer's MoE block on an input tensor from a safetensors file. */
import * as fs from 'node:fs';

import { SafetensorsFile, writeSafetensors } from '../checkpoint/safetensors';
import { MoekitError } from '../errors';
import { MoELayer } from '../layer/moe_layer';
import { Tensor } from '../tensor';
import { deviceOption, dtypeOption, integerOption, parseCommandLine, requireOption, UsageError } from './args';

export const RUN_USAGE = `usage: moekit run <checkpoint-dir> --layer N --input <file.safetensors>[:<tensor>] --output <file.safetensors>
                  [--device cpu|cuda:N] [--dtype float32|bfloat16|float16]

Runs layer N's MoE block on the input tensor [T, H] (default tensor name: input) and writes
output [T, H] (float32), topk_ids [T, K] (int32) and topk_weights [T, K] (float32).`;

const DEFAULT_INPUT_TENSOR = 'input';

/** "file.safetensors:name" → file and tensor name; a suffix with a path separator is part of the file. */
export function splitTensorPath(argument: string): { file: string; tensor: string } {
  const colon = argument.lastIndexOf(':');
  if (colon > 0 && !argument.slice(colon + 1).includes('/') && !fs.existsSync(argument)) {
    return { file: argument.slice(0, colon), tensor: argument.slice(colon + 1) || DEFAULT_INPUT_TENSOR };
  }
  return { file: argument, tensor: DEFAULT_INPUT_TENSOR };
}

async function readInput(argument: string, device: ReturnType<typeof deviceOption>): Promise<Tensor> {
  const { file, tensor } = splitTensorPath(argument);
  const input = await SafetensorsFile.open(file);
  try {
    if (!input.has(tensor)) {
      throw new MoekitError('E_NOT_FOUND', `${file}: no tensor named ${tensor} (it has: ${input.names().join(', ') || 'none'})`);
    }
    const { dtype, shape, data } = await input.read(tensor);
    if (dtype === 'I32' || dtype === 'I64') throw new MoekitError('E_DTYPE', `${file}: tensor ${tensor} is ${dtype}; the input must be F32, F16 or BF16`);
    if (shape.length !== 2) throw new MoekitError('E_SHAPE', `${file}: tensor ${tensor} has shape [${shape.join(', ')}]; the input must be [tokens, hidden]`);
    const tensorDType = dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16';
    return Tensor.fromArray(data as Float32Array | Uint16Array, shape, { dtype: tensorDType, device });
  } finally {
    await input.close();
  }
}

export async function runCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(args, {
    layer: { type: 'string' },
    input: { type: 'string' },
    output: { type: 'string' },
    device: { type: 'string' },
    dtype: { type: 'string' },
  });
  if (values.help) {
    console.log(RUN_USAGE);
    return;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one checkpoint folder, got ${positionals.length} arguments`);
  const layerIndex = integerOption(requireOption(values.layer, 'layer'), 'layer', 0);
  const inputArgument = requireOption(values.input, 'input');
  const outputFile = requireOption(values.output, 'output');
  const device = deviceOption(values.device, 'cpu');
  const dtype = dtypeOption(values.dtype, 'float32');

  using layer = await MoELayer.fromPretrained(positionals[0]!, { layer: layerIndex, device, dtype });
  using x = await readInput(inputArgument, device);
  using result = layer.forward(x);
  const output = await result.output.toFloat32Array();
  const topkIds = (await result.topkIds.toArray()) as Int32Array;
  const topkWeights = (await result.topkWeights.toArray()) as Float32Array;
  // Written only now that the forward has succeeded; the writer is atomic.
  await writeSafetensors(outputFile, {
    output: { dtype: 'F32', shape: [...result.output.shape], data: output },
    topk_ids: { dtype: 'I32', shape: [...result.topkIds.shape], data: topkIds },
    topk_weights: { dtype: 'F32', shape: [...result.topkWeights.shape], data: topkWeights },
  });
}
