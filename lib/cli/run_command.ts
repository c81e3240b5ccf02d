/** `moekit run`: one layer's MoE block on an input tensor read from a safetensors file. */
import * as fs from 'node:fs';

import { SafetensorsFile, writeSafetensors, type SafetensorsDType } from '../checkpoint/safetensors';
import type { Device } from '../device';
import type { FloatDType } from '../dtype';
import { MoekitError } from '../errors';
import { regularWriteTarget } from '../files';
import type { HostTensor } from '../model/config';
import { MoELayer } from '../layer/moe_layer';
import type { GroupSize, Quantization } from '../ops/quantized';
import { Tensor } from '../tensor';
import {
  type CommandLine, deviceOption, dtypeOption, expectPositionals, groupSizeOption, integerOption, parseCommandLine, quantizeOption, requireOption, UsageError,
} from './args';
import { formatBytes, progressBar } from './progress';

const RUN_USAGE = `usage: moekit run <checkpoint-dir> --layer N --input <file.safetensors>[:<tensor>] --output <file.safetensors>
                 [--device cpu|cuda:N] [--dtype float32|bfloat16|float16] [--quantize fp8|int8|int4] [--group-size N|channel] [--quiet]

Runs decoder layer N's MoE block of a Hugging Face checkpoint on the input tensor [T, H]
(F32, F16 or BF16; default tensor name: input) and writes output [T, H] (float32),
topk_ids [T, K] (int32) and topk_weights [T, K] (float32). --output must be a new path or a
regular file (a symbolic link to a regular file writes that file); anything else is refused.
FP8 checkpoints (quantization_config quant_method fp8, as DeepSeek-V3 and Qwen3-FP8 publish
them) run as published: FP8 experts, computed W8A8.

  --device    where to run (default cpu)
  --dtype     compute dtype of activations and unquantized weights (default float32)
  --quantize  quantize a 16-bit checkpoint's experts at load: fp8 (e4m3, 128x128 block
              scales, computed W8A8), int8 or int4 (weight-only: activations stay in --dtype);
              routers (and, for int8/int4, shared experts) stay unquantized
  --group-size  with int8/int4: K values per scale, a multiple of 32, or channel (one scale per
              output row); default int8 channel, int4 128
  --quiet     no progress bar while the checkpoint is read (it is drawn on stderr only when
              stderr is a terminal)

On success it prints one line: the file written and the shapes of what it holds.`;

const DEFAULT_INPUT_TENSOR = 'input';

const INPUT_DTYPES: Partial<Record<SafetensorsDType, FloatDType>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

interface InputSpec {
  file: string;
  tensor: string;
}

/**
 * "file.safetensors:name" → file and tensor name. An argument naming an existing file is taken
 * whole, so file names that contain a colon still work.
 */
function parseInputSpec(argument: string): InputSpec {
  const colon = argument.lastIndexOf(':');
  if (colon < 0 || fs.existsSync(argument)) return { file: argument, tensor: DEFAULT_INPUT_TENSOR };
  const tensor = argument.slice(colon + 1);
  if (tensor === '') throw new UsageError(`--input ${JSON.stringify(argument)}: the tensor name after ':' is empty`);
  return { file: argument.slice(0, colon), tensor };
}

/** Reads the input as a host tensor; E_NOT_FOUND / E_DTYPE / E_SHAPE name the file and tensor. */
async function readInput({ file, tensor }: InputSpec): Promise<HostTensor> {
  const source = await SafetensorsFile.open(file);
  try {
    if (!source.has(tensor)) {
      throw new MoekitError('E_NOT_FOUND', `${file}: no tensor named ${tensor} (it has: ${source.names().join(', ') || 'none'})`);
    }
    const { dtype, shape } = source.info(tensor);
    const floatDType = INPUT_DTYPES[dtype];
    if (floatDType === undefined) throw new MoekitError('E_DTYPE', `${file}: tensor ${tensor} is ${dtype}; the input must be F32, F16 or BF16`);
    if (shape.length !== 2) throw new MoekitError('E_SHAPE', `${file}: tensor ${tensor} has shape [${shape.join(', ')}]; the input must be [tokens, hidden]`);
    const { data } = await source.read(tensor);
    return { dtype: floatDType, shape, data: data as Float32Array | Uint16Array };
  } finally {
    await source.close();
  }
}

function checkInputWidth(input: HostTensor, spec: InputSpec, hiddenSize: number): void {
  if (input.shape[1] !== hiddenSize) {
    throw new MoekitError('E_SHAPE', `${spec.file}: tensor ${spec.tensor} has shape [${input.shape.join(', ')}] but the checkpoint's hidden size is ${hiddenSize}`);
  }
}

interface RunOptions {
  checkpoint: string;
  layer: number;
  input: InputSpec;
  output: string;
  device: Device;
  dtype: FloatDType;
  quantize: Quantization | undefined;
  groupSize: GroupSize | undefined;
  quiet: boolean;
}

const RUN_OPTION_NAMES = ['layer', 'input', 'output', 'device', 'dtype', 'quantize', 'group-size'] as const;
const RUN_FLAG_NAMES = ['quiet'] as const;

function runOptions({ options, flags, positionals }: CommandLine<(typeof RUN_OPTION_NAMES)[number], (typeof RUN_FLAG_NAMES)[number]>): RunOptions {
  expectPositionals(positionals, ['<checkpoint-dir>']);
  return {
    checkpoint: positionals[0]!,
    layer: integerOption(requireOption(options.layer, 'layer'), 'layer', 0),
    input: parseInputSpec(requireOption(options.input, 'input')),
    output: requireOption(options.output, 'output'),
    device: deviceOption(options.device, 'cpu'),
    dtype: dtypeOption(options.dtype, 'float32'),
    quantize: quantizeOption(options.quantize),
    groupSize: groupSizeOption(options['group-size'], quantizeOption(options.quantize)),
    quiet: flags.has('quiet'),
  };
}

export async function runCommand(args: readonly string[]): Promise<void> {
  const commandLine = parseCommandLine(args, RUN_OPTION_NAMES, RUN_FLAG_NAMES);
  if (commandLine.help) {
    console.log(RUN_USAGE);
    return;
  }
  const run = runOptions(commandLine);
  // Refused before any work rather than after the forward: the writer renames a new file over its
  // target, which must not replace a FIFO or a device node with a regular file.
  const outputFile = regularWriteTarget(run.output);
  // The input is read first: it is cheap to check, the checkpoint may be large.
  const hostInput = await readInput(run.input);
  const progress = progressBar({ label: `reading layer ${run.layer}`, format: formatBytes, quiet: run.quiet });
  const loading = MoELayer.fromPretrained(run.checkpoint, {
    layer: run.layer, device: run.device, dtype: run.dtype, quantize: run.quantize, groupSize: run.groupSize,
    onProgress: ({ bytesRead, totalBytes }) => progress.update(bytesRead, totalBytes),
  });
  using layer = await loading.finally(() => progress.finish());
  checkInputWidth(hostInput, run.input, layer.config.hiddenSize);
  using x = Tensor.fromArray(hostInput.data, hostInput.shape, { dtype: hostInput.dtype, device: run.device });
  using result = layer.forward(x);
  const output = await result.output.toFloat32Array();
  const topkIds = (await result.topkIds.toArray()) as Int32Array;
  const topkWeights = (await result.topkWeights.toArray()) as Float32Array;
  // Written only now that the forward has succeeded; the writer is atomic, so a failure leaves no file.
  await writeSafetensors(outputFile, {
    output: { dtype: 'F32', shape: [...result.output.shape], data: output },
    topk_ids: { dtype: 'I32', shape: [...result.topkIds.shape], data: topkIds },
    topk_weights: { dtype: 'F32', shape: [...result.topkWeights.shape], data: topkWeights },
  });
  const shape = (tensor: Tensor): string => `[${tensor.shape.join(', ')}]`;
  console.log(`wrote ${run.output}: output ${shape(result.output)} float32, topk_ids ${shape(result.topkIds)} int32, topk_weights ${shape(result.topkWeights)} float32 ` +
    `(layer ${run.layer} on ${run.device})`);
}
