/**
 * Loading one MoE block from a Hugging Face checkpoint folder: config.json, then the block's
 * tensors from model.safetensors or the shards named by model.safetensors.index.json, assembled
 * into moekit's canonical layout (lib/model/config.ts, MoEWeights). Only the block's bytes are
 * read, and only once every one of its tensors has been found and shape-checked.
 *
 * FP8 checkpoints (quantization_config quant_method fp8, as DeepSeek-V3 and Qwen3-FP8 publish
 * them) store each expert projection as `….weight` F8_E4M3 [N, K] beside `….weight_scale_inv`
 * [ceil(N/128), ceil(K/128)] (F32 or BF16), one scale per 128×128 block: they load as quantized
 * weights (lib/ops/quantized.ts, 'fp8_block128') with float32 scales. gpt-oss's MXFP4 checkpoints
 * (quant_method mxfp4) store its fused expert projections as `…_blocks` U8 [E, N, K/32, 16] (two
 * e2m1 values a byte) beside `…_scales` U8 [E, N, K/32] (e8m0): they load as 'mxfp4' weights,
 * the blocks' bytes as [E, N, K/2]. Routers and biases stay 16-bit.
 */
import * as path from 'node:path';

import { allocateHostArray, decodeFloat8, decodeHalf, type FloatDType } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import { fileKind, readRegularTextFile, statIfPresent } from '../files';
import type { HostQuantized, HostTensor, MoEConfig, MoEWeights } from '../model/config';
import { FP8_BLOCK_SIZE, MXFP4_GROUP_SIZE, scaleShape } from '../ops/quantized';
import type { Slice } from '../parallel/plan';
import { blockTensorNames, checkMoELayer, parseMoEConfig, type BlockTensorNames, type CheckpointMoEConfig, type ExpertTensorNames } from './families';
import { SafetensorsFile, type SafetensorsDType } from './safetensors';

const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';

export interface LoadOptions {
  layer: number;
  /** Read only these experts (Expert Parallel); w13, w2 and their biases hold just them. Default: all. */
  experts?: Slice;
  /** Told after each tensor read (see LoadProgress). */
  onProgress?: (progress: LoadProgress) => void;
}

/**
 * How far a load has got: the weight bytes read, of the weight bytes the load will read.
 * `totalBytes` is exact for a whole layer; when only some experts are read (Expert Parallel) it
 * counts the located tensors whole, an upper bound, and the last report sets it to `bytesRead`.
 */
export interface LoadProgress {
  bytesRead: number;
  totalBytes: number;
}

export interface LoadedCheckpoint {
  config: CheckpointMoEConfig;
  weights: MoEWeights<HostTensor>;
  /** Bytes read from safetensors files, headers included. */
  bytesRead: number;
  /** The safetensors files that were opened. */
  files: string[];
}

const WEIGHT_DTYPES: Partial<Record<SafetensorsDType, FloatDType>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** What a tensor may be stored as: float values, FP8 values (an FP8 checkpoint's expert weights), or bytes (MXFP4's). */
type StoredAs = 'float' | 'fp8' | 'bytes';

/** The suffix FP8 checkpoints give a weight's block scales. */
const SCALE_SUFFIX = '_scale_inv';

/**
 * A JSON object from `file`; E_NOT_FOUND when it cannot be read or is not a regular file,
 * `malformedCode` when it is not a JSON object.
 */
function readJsonObject(file: string, malformedCode: 'E_CONFIG' | 'E_CHECKPOINT'): Record<string, unknown> {
  const text = readRegularTextFile(file);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new MoekitError(malformedCode, `${file}: not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new MoekitError(malformedCode, `${file}: not a JSON object`);
  return parsed as Record<string, unknown>;
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** A weight found in the checkpoint, its shape and dtype checked, its bytes not read yet. */
interface LocatedTensor {
  name: string;
  file: SafetensorsFile;
  dtype: FloatDType | 'float8_e4m3' | 'uint8';
  shape: number[];
}

/** An expert matrix as stored: float values, or FP8 values with their block scales. */
interface LocatedMatrix {
  values: LocatedTensor;
  scales?: LocatedTensor;
}

/** Which file holds each tensor: the index's weight_map, or the single model.safetensors. */
type ShardLookup = (name: string) => string | undefined;

/** Shard names are plain file names inside the folder; anything else would read files outside it. */
function shardLookupFromIndex(indexFile: string): ShardLookup {
  const weightMap = readJsonObject(indexFile, 'E_CHECKPOINT').weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new MoekitError('E_CHECKPOINT', `${indexFile}: weight_map is missing or not an object`);
  }
  const shardOf = weightMap as Record<string, unknown>;
  return (name) => {
    if (!Object.hasOwn(shardOf, name)) return undefined;
    const shard = shardOf[name];
    if (typeof shard !== 'string' || shard === '' || path.basename(shard) !== shard) {
      throw new MoekitError('E_CHECKPOINT', `${indexFile}: weight_map places ${name} in ${describeValue(shard)}, which is not a file name in the folder`);
    }
    return shard;
  };
}

/** The checkpoint's safetensors files, opened on first use; reads tensors by name with checks. */
class CheckpointFiles {
  readonly #dir: string;
  readonly #shardOf: ShardLookup;
  readonly #opening = new Map<string, Promise<SafetensorsFile>>();
  readonly #opened: SafetensorsFile[] = [];
  /** Weight bytes of the tensors located, and of those read so far (for LoadProgress). */
  #locatedBytes = 0;
  #weightBytesRead = 0;
  #onProgress: ((progress: LoadProgress) => void) | undefined;

  private constructor(dir: string, shardOf: ShardLookup) {
    this.#dir = dir;
    this.#shardOf = shardOf;
  }

  static async open(dir: string): Promise<CheckpointFiles> {
    const indexFile = path.join(dir, INDEX_FILE);
    if (statIfPresent(indexFile)) return new CheckpointFiles(dir, shardLookupFromIndex(indexFile));
    const singleFile = path.join(dir, SINGLE_FILE);
    if (!statIfPresent(singleFile)) throw new MoekitError('E_NOT_FOUND', `${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`);
    const single = await SafetensorsFile.open(singleFile);
    const files = new CheckpointFiles(dir, (name) => (single.has(name) ? SINGLE_FILE : undefined));
    files.#opening.set(SINGLE_FILE, Promise.resolve(single));
    files.#opened.push(single);
    return files;
  }

  /**
   * Finds `name` and checks it has `shape` and a float dtype (or, `as` 'fp8', F8_E4M3); E_CHECKPOINT
   * names what is wrong. `why` says what the tensor is for, where that helps a message.
   */
  async locate(name: string, shape: readonly number[], as: StoredAs = 'float', why = ''): Promise<LocatedTensor> {
    const located = await this.#locate(name, shape, as, why);
    this.#locatedBytes += located.file.info(name).byteLength;
    return located;
  }

  async #locate(name: string, shape: readonly number[], as: StoredAs, why: string): Promise<LocatedTensor> {
    const shard = this.#shardOf(name);
    if (shard === undefined) throw new MoekitError('E_CHECKPOINT', `${this.#dir}: missing tensor ${name}${why}${this.#missingHint(name)}`);
    const file = await this.#file(shard);
    if (!file.has(name)) throw new MoekitError('E_CHECKPOINT', `${file.path}: missing tensor ${name} (${INDEX_FILE} places it in this shard)`);
    const info = file.info(name);
    if (info.shape.length !== shape.length || info.shape.some((extent, axis) => extent !== shape[axis])) {
      throw new MoekitError('E_CHECKPOINT', `${file.path}: tensor ${name} has shape ${formatShape(info.shape)}, expected ${formatShape(shape)}${why}`);
    }
    if (as === 'fp8') {
      if (info.dtype !== 'F8_E4M3') {
        throw new MoekitError('E_CHECKPOINT', `${file.path}: tensor ${name} is ${info.dtype}; config.json's quantization_config says fp8, so expert weights must be F8_E4M3`);
      }
      return { name, file, dtype: 'float8_e4m3', shape: info.shape };
    }
    if (as === 'bytes') {
      if (info.dtype !== 'U8') {
        throw new MoekitError('E_CHECKPOINT', `${file.path}: tensor ${name} is ${info.dtype}; config.json's quantization_config says mxfp4, so its blocks and scales must be U8`);
      }
      return { name, file, dtype: 'uint8', shape: info.shape };
    }
    const dtype = WEIGHT_DTYPES[info.dtype];
    if (dtype === undefined) {
      const hint = info.dtype === 'F8_E4M3' ? ' (an FP8 checkpoint says so in config.json: quantization_config with quant_method fp8)' : '';
      throw new MoekitError('E_CHECKPOINT', `${file.path}: tensor ${name} is ${info.dtype}; weights must be F32, F16 or BF16${hint}`);
    }
    return { name, file, dtype, shape: info.shape };
  }

  /** Reads a located tensor whole, or only `rows` along its first axis. */
  async read(tensor: LocatedTensor, rows?: Slice): Promise<HostTensor> {
    const { file, name } = tensor;
    const read = rows ? await file.readRows(name, rows.first, rows.count) : await file.read(name);
    this.#weightBytesRead += read.data.byteLength;
    this.#onProgress?.({ bytesRead: this.#weightBytesRead, totalBytes: Math.max(this.#locatedBytes, this.#weightBytesRead) });
    // locate() admitted only F32, F16, BF16, F8_E4M3 and U8, whose data are Float32Array, Uint16Array or Uint8Array.
    return { dtype: tensor.dtype, shape: read.shape, data: read.data as HostTensor['data'] };
  }

  /** Reports each read to `onProgress` from now on. */
  reportProgress(onProgress: ((progress: LoadProgress) => void) | undefined): void {
    this.#onProgress = onProgress;
  }

  /** Tells `onProgress` the load is complete: what was read is the total. */
  finishProgress(): void {
    this.#onProgress?.({ bytesRead: this.#weightBytesRead, totalBytes: this.#weightBytesRead });
  }

  /** Bytes read so far and the files opened, for the caller's accounting. */
  usage(): { bytesRead: number; files: string[] } {
    return {
      bytesRead: this.#opened.reduce((total, file) => total + file.bytesRead, 0),
      files: this.#opened.map((file) => file.path),
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#opening.values());
    await Promise.all(this.#opened.map((file) => file.close()));
  }

  /** gpt-oss as released stores its experts MXFP4-quantized, under other names. */
  #missingHint(name: string): string {
    return this.#shardOf(`${name}_blocks`) === undefined ? '' : ' (this checkpoint stores it MXFP4-quantized, but config.json has no quantization_config with quant_method mxfp4)';
  }

  #file(shard: string): Promise<SafetensorsFile> {
    let opening = this.#opening.get(shard);
    if (!opening) {
      opening = this.#openShard(path.join(this.#dir, shard));
      this.#opening.set(shard, opening);
    }
    return opening;
  }

  async #openShard(file: string): Promise<SafetensorsFile> {
    if (!statIfPresent(file)) throw new MoekitError('E_NOT_FOUND', `${file}: shard listed in ${INDEX_FILE} is missing`);
    const opened = await SafetensorsFile.open(file);
    this.#opened.push(opened);
    return opened;
  }
}

/** Every tensor of one MoE block, found and checked, none read yet. */
interface LocatedBlock {
  router: LocatedTensor;
  routerBias?: LocatedTensor;
  correctionBias?: LocatedTensor;
  experts: LocatedExperts;
  shared?: LocatedSharedExpert;
}

type LocatedExperts =
  /** Each expert's gate then up ([I, H] each), and each expert's down [H, I]. */
  | { layout: 'per_expert'; gateUp: LocatedMatrix[]; down: LocatedMatrix[] }
  /** gpt-oss's fused tensors, all experts in each (see ExpertTensorNames). */
  | { layout: 'fused_interleaved'; gateUp: LocatedTensor; gateUpBias: LocatedTensor; down: LocatedTensor; downBias: LocatedTensor }
  /** gpt-oss's MXFP4 experts: blocks [E, N, K/32, 16] and scales [E, N, K/32] per projection, gate/up rows interleaved. */
  | { layout: 'fused_mxfp4'; gateUp: LocatedMxfp4; gateUpBias: LocatedTensor; down: LocatedMxfp4; downBias: LocatedTensor };

interface LocatedMxfp4 {
  blocks: LocatedTensor;
  scales: LocatedTensor;
}

interface LocatedSharedExpert {
  gateUp: LocatedMatrix[];
  down: LocatedMatrix;
  gate?: LocatedTensor;
}

function expertIds(experts: Slice): number[] {
  return Array.from({ length: experts.count }, (_, index) => experts.first + index);
}

/** An expert projection [N, K]: float, or in an FP8 checkpoint F8_E4M3 with its `_scale_inv` block scales beside it. */
async function locateMatrix(files: CheckpointFiles, name: string, shape: [number, number], config: MoEConfig): Promise<LocatedMatrix> {
  if (config.quantization !== 'fp8') return { values: await files.locate(name, shape) };
  const values = await files.locate(name, shape, 'fp8');
  const why = ` (one scale per 128×128 block of the FP8 weight ${name} ${formatShape(shape)})`;
  return { values, scales: await files.locate(`${name}${SCALE_SUFFIX}`, scaleShape('fp8_block128', shape), 'float', why) };
}

/**
 * FP8 gate and up projections [I', H] stack into one w13 [2I', H] whose 128-row blocks are theirs
 * only when I' is a multiple of 128; otherwise a block of w13 would straddle the two, and no
 * scale of theirs fits it.
 */
function checkFp8GateUp(config: MoEConfig, intermediate: number, field: string): void {
  if (config.quantization === 'fp8' && intermediate % FP8_BLOCK_SIZE !== 0) {
    throw new MoekitError('E_UNSUPPORTED_MODEL',
      `FP8 experts need ${field} to be a multiple of 128 (gate and up are stacked into one matrix whose 128-row blocks may not straddle them), got ${intermediate}`);
  }
}

/** An MXFP4 projection [E, N, K] as gpt-oss publishes it: `name`_blocks and `name`_scales. */
async function locateMxfp4(files: CheckpointFiles, name: string, [E, N, K]: [number, number, number]): Promise<LocatedMxfp4> {
  const groups = K / MXFP4_GROUP_SIZE;
  const why = ` (e8m0 scales, one per 32 values of the MXFP4 blocks ${name}_blocks [${E}, ${N}, ${groups}, 16])`;
  return {
    blocks: await files.locate(`${name}_blocks`, [E, N, groups, MXFP4_GROUP_SIZE / 2], 'bytes', ` (MXFP4 blocks of the [${E}, ${N}, ${K}] weights: 16 bytes per 32 values)`),
    scales: await files.locate(`${name}_scales`, [E, N, groups], 'bytes', why),
  };
}

async function locateExperts(files: CheckpointFiles, names: ExpertTensorNames, config: MoEConfig, experts: Slice): Promise<LocatedExperts> {
  const { numExperts: E, hiddenSize: H, intermediateSize: I } = config;
  if (config.quantization === 'mxfp4') {
    if (names.layout !== 'fused_interleaved') {
      throw new MoekitError('E_UNSUPPORTED_MODEL', `MXFP4 checkpoints of ${config.family} are not supported (MXFP4 is read in gpt-oss's layout)`);
    }
    return {
      layout: 'fused_mxfp4',
      gateUp: await locateMxfp4(files, names.gateUp, [E, 2 * I, H]),
      gateUpBias: await files.locate(names.gateUpBias, [E, 2 * I]),
      down: await locateMxfp4(files, names.down, [E, H, I]),
      downBias: await files.locate(names.downBias, [E, H]),
    };
  }
  if (names.layout === 'fused_interleaved') {
    if (config.quantization === 'fp8') throw new MoekitError('E_UNSUPPORTED_MODEL', `FP8 checkpoints of ${config.family} are not supported (FP8 is read for per-expert layouts)`);
    return {
      layout: names.layout,
      gateUp: await files.locate(names.gateUp, [E, H, 2 * I]),
      gateUpBias: await files.locate(names.gateUpBias, [E, 2 * I]),
      down: await files.locate(names.down, [E, I, H]),
      downBias: await files.locate(names.downBias, [E, H]),
    };
  }
  checkFp8GateUp(config, I, 'moe_intermediate_size');
  const gateUp: LocatedMatrix[] = [];
  const down: LocatedMatrix[] = [];
  for (const expert of expertIds(experts)) {
    gateUp.push(await locateMatrix(files, names.gate(expert), [I, H], config), await locateMatrix(files, names.up(expert), [I, H], config));
    down.push(await locateMatrix(files, names.down(expert), [H, I], config));
  }
  return { layout: names.layout, gateUp, down };
}

async function locateSharedExpert(files: CheckpointFiles, names: BlockTensorNames['shared'], config: MoEConfig): Promise<LocatedSharedExpert | undefined> {
  if (!config.sharedExpert || !names) return undefined;
  const { hiddenSize: H } = config;
  const { intermediateSize: S, gated } = config.sharedExpert;
  checkFp8GateUp(config, S, "the shared expert's intermediate size");
  const shared: LocatedSharedExpert = {
    gateUp: [await locateMatrix(files, names.gate, [S, H], config), await locateMatrix(files, names.up, [S, H], config)],
    down: await locateMatrix(files, names.down, [H, S], config),
  };
  if (gated && names.sharedGate) shared.gate = await files.locate(names.sharedGate, [1, H]);
  return shared;
}

/** Finds and checks every tensor of the block first, so a broken checkpoint fails before gigabytes are read. */
async function locateBlock(files: CheckpointFiles, config: CheckpointMoEConfig, layer: number, experts: Slice): Promise<LocatedBlock> {
  const names = blockTensorNames(config.family, layer);
  const { numExperts: E, hiddenSize: H } = config;
  // Before any tensor is looked at: a config like this has no MXFP4 blocks to find.
  if (config.quantization === 'mxfp4' && (H % MXFP4_GROUP_SIZE !== 0 || config.intermediateSize % MXFP4_GROUP_SIZE !== 0)) {
    throw new MoekitError('E_UNSUPPORTED_MODEL', `MXFP4 experts need hidden_size and intermediate_size to be multiples of 32, got ${H} and ${config.intermediateSize}`);
  }
  const block: LocatedBlock = {
    router: await files.locate(names.router, [E, H]),
    experts: await locateExperts(files, names.experts, config, experts),
  };
  if (names.routerBias) block.routerBias = await files.locate(names.routerBias, [E]);
  if (names.correctionBias) block.correctionBias = await files.locate(names.correctionBias, [E]);
  const shared = await locateSharedExpert(files, names.shared, config);
  if (shared) block.shared = shared;
  return block;
}

function allocateHostTensor(dtype: HostTensor['dtype'], shape: number[]): HostTensor {
  return { dtype, shape, data: allocateHostArray(dtype, shape.reduce((total, extent) => total * extent, 1)) };
}

function asFloat32(tensor: HostTensor): Float32Array {
  switch (tensor.dtype) {
    case 'float32': return tensor.data as Float32Array;
    case 'float8_e4m3': return decodeFloat8(tensor.data as Uint8Array);
    case 'uint8': throw new MoekitError('E_DTYPE', 'packed uint8 weights have no float values of their own (they are read beside their scales)');
    default: return decodeHalf(tensor.data as Uint16Array, tensor.dtype);
  }
}

/** The values of `tensor` as `dtype`: its own, or float32 where the parts of a weight disagree. */
function valuesAs(tensor: HostTensor, dtype: HostTensor['dtype']): HostTensor['data'] {
  return tensor.dtype === dtype ? tensor.data : asFloat32(tensor);
}

/** One dtype for the parts of one logical weight: theirs when they agree, else float32. */
function commonDType(parts: readonly LocatedTensor[]): HostTensor['dtype'] {
  const first = parts[0]?.dtype ?? 'float32';
  return parts.every((part) => part.dtype === first) ? first : 'float32';
}

/**
 * Concatenates the parts' elements, in order, into one tensor of `shape` (of `dtype`, by default
 * the parts' common one). Parts are read one at a time, so memory peaks at the result plus one part.
 */
async function concatenate(files: CheckpointFiles, parts: readonly LocatedTensor[], shape: number[], dtype = commonDType(parts)): Promise<HostTensor> {
  const result = allocateHostTensor(dtype, shape);
  let offset = 0;
  for (const part of parts) {
    const values = valuesAs(await files.read(part), result.dtype);
    result.data.set(values, offset);
    offset += values.length;
  }
  return result;
}

/**
 * Expert matrices stacked along their rows into one of `shape`: float values, or FP8 values with
 * their scales stacked the same way (as float32, whatever the checkpoint stored them in).
 */
async function stackMatrices(files: CheckpointFiles, parts: readonly LocatedMatrix[], shape: number[]): Promise<HostTensor | HostQuantized> {
  const values = await concatenate(files, parts.map((part) => part.values), shape);
  const scales = parts.flatMap((part) => (part.scales ? [part.scales] : []));
  if (scales.length === 0) return values;
  return { format: 'fp8_block128', data: values, scales: await concatenate(files, scales, scaleShape('fp8_block128', shape), 'float32') };
}

type Elements = Float32Array | Uint16Array;

/**
 * One gpt-oss expert's gate_up_proj [H, 2I] (x · W, gate and up in even and odd columns) written
 * as Linear rows [2I, H] at `offset`: gate rows 0..I-1, then up rows I..2I-1.
 */
function writeGateUpAsHalves(source: Elements, target: Elements, offset: number, hidden: number, inter: number): void {
  for (let h = 0; h < hidden; h++) {
    for (let i = 0; i < inter; i++) {
      target[offset + i * hidden + h] = source[h * 2 * inter + 2 * i]!;
      target[offset + (inter + i) * hidden + h] = source[h * 2 * inter + 2 * i + 1]!;
    }
  }
}

/** [rows, cols] written transposed, as [cols, rows], at `offset`. */
function writeTransposed(source: Elements, target: Elements, offset: number, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) target[offset + c * rows + r] = source[r * cols + c]!;
  }
}

/** Each row [g0, u0, g1, u1, …] of an [n, 2I] bias as [g0, g1, …, u0, u1, …]. */
function deinterleaveRows(bias: HostTensor): HostTensor {
  const [rows, width] = bias.shape as [number, number];
  const inter = width / 2;
  const result = allocateHostTensor(bias.dtype, [rows, width]);
  for (let row = 0; row < rows; row++) {
    for (let i = 0; i < inter; i++) {
      result.data[row * width + i] = bias.data[row * width + 2 * i]!;
      result.data[row * width + inter + i] = bias.data[row * width + 2 * i + 1]!;
    }
  }
  return result;
}

type ExpertWeights = Pick<MoEWeights<HostTensor>, 'w13' | 'w13Bias' | 'w2' | 'w2Bias'>;

/**
 * gpt-oss keeps all experts in one tensor per projection: reads only the wanted experts' rows, one
 * expert at a time (memory peaks at the result plus one expert), into the canonical layout.
 */
async function readFusedExperts(
  files: CheckpointFiles,
  located: Extract<LocatedExperts, { layout: 'fused_interleaved' }>,
  config: MoEConfig,
  experts: Slice,
): Promise<ExpertWeights> {
  const { hiddenSize: H, intermediateSize: I } = config;
  const w13 = allocateHostTensor(located.gateUp.dtype, [experts.count, 2 * I, H]);
  const w2 = allocateHostTensor(located.down.dtype, [experts.count, H, I]);
  for (const [index, expert] of expertIds(experts).entries()) {
    const one = { first: expert, count: 1 };
    // Fused experts are float (locateExperts refuses FP8 ones): Float32Array or Uint16Array data.
    writeGateUpAsHalves((await files.read(located.gateUp, one)).data as Elements, w13.data as Elements, index * 2 * I * H, H, I);
    writeTransposed((await files.read(located.down, one)).data as Elements, w2.data as Elements, index * H * I, I, H);
  }
  return { w13, w13Bias: deinterleaveRows(await files.read(located.gateUpBias, experts)), w2, w2Bias: await files.read(located.downBias, experts) };
}

/** Rows [r0, r1, …] of a [rows, width] matrix, interleaved gate/up, reordered as gate rows then up rows. */
function deinterleaveMatrixRows(source: Uint8Array, target: Uint8Array, offset: number, rows: number, width: number): void {
  const half = rows / 2;
  for (let i = 0; i < half; i++) {
    target.set(source.subarray(2 * i * width, (2 * i + 1) * width), offset + i * width);
    target.set(source.subarray((2 * i + 1) * width, (2 * i + 2) * width), offset + (half + i) * width);
  }
}

/**
 * gpt-oss's MXFP4 experts: the wanted experts' blocks and scales, one expert at a time; gate_up's
 * interleaved rows (with their scales) reordered as gate rows then up rows, blocks [N, K/32, 16]
 * read as the bytes [N, K/2] of 'mxfp4' weights.
 */
async function readMxfp4Experts(
  files: CheckpointFiles,
  located: Extract<LocatedExperts, { layout: 'fused_mxfp4' }>,
  config: MoEConfig,
  experts: Slice,
): Promise<ExpertWeights> {
  const { hiddenSize: H, intermediateSize: I } = config;
  const w13Data = allocateHostTensor('uint8', [experts.count, 2 * I, H / 2]);
  const w13Scales = allocateHostTensor('uint8', [experts.count, 2 * I, H / MXFP4_GROUP_SIZE]);
  for (const [index, expert] of expertIds(experts).entries()) {
    const one = { first: expert, count: 1 };
    deinterleaveMatrixRows((await files.read(located.gateUp.blocks, one)).data as Uint8Array, w13Data.data as Uint8Array, index * 2 * I * (H / 2), 2 * I, H / 2);
    deinterleaveMatrixRows((await files.read(located.gateUp.scales, one)).data as Uint8Array, w13Scales.data as Uint8Array,
      index * 2 * I * (H / MXFP4_GROUP_SIZE), 2 * I, H / MXFP4_GROUP_SIZE);
  }
  const downBlocks = await files.read(located.down.blocks, experts);
  return {
    w13: { format: 'mxfp4', data: w13Data, scales: w13Scales },
    w13Bias: deinterleaveRows(await files.read(located.gateUpBias, experts)),
    w2: { format: 'mxfp4', data: { ...downBlocks, shape: [experts.count, H, I / 2] }, scales: await files.read(located.down.scales, experts) },
    w2Bias: await files.read(located.downBias, experts),
  };
}

/** w13 [n, 2I, H] (per expert: gate rows, then up rows) and w2 [n, H, I] for the n experts asked for. */
async function readExperts(files: CheckpointFiles, located: LocatedExperts, config: MoEConfig, experts: Slice): Promise<ExpertWeights> {
  if (located.layout === 'fused_interleaved') return readFusedExperts(files, located, config, experts);
  if (located.layout === 'fused_mxfp4') return readMxfp4Experts(files, located, config, experts);
  const { hiddenSize: H, intermediateSize: I } = config;
  return { w13: await stackMatrices(files, located.gateUp, [experts.count, 2 * I, H]), w2: await stackMatrices(files, located.down, [experts.count, H, I]) };
}

/** The shared expert as w13 [2Is, H] (gate rows then up rows), w2 [H, Is] and, when gated, gate [1, H]. */
async function readSharedExpert(files: CheckpointFiles, located: LocatedSharedExpert): Promise<NonNullable<MoEWeights['shared']>> {
  const [H, S] = located.down.values.shape as [number, number];
  const shared: NonNullable<MoEWeights['shared']> = {
    w13: await stackMatrices(files, located.gateUp, [2 * S, H]),
    w2: await stackMatrices(files, [located.down], [H, S]),
  };
  if (located.gate) shared.gate = await files.read(located.gate);
  return shared;
}

async function readBlock(files: CheckpointFiles, block: LocatedBlock, config: MoEConfig, experts: Slice): Promise<MoEWeights<HostTensor>> {
  const weights: MoEWeights<HostTensor> = {
    router: await files.read(block.router),
    ...(await readExperts(files, block.experts, config, experts)),
  };
  if (block.routerBias) weights.routerBias = await files.read(block.routerBias);
  if (block.correctionBias) weights.correctionBias = await files.read(block.correctionBias);
  if (block.shared) weights.shared = await readSharedExpert(files, block.shared);
  return weights;
}

function checkExpertSlice(experts: Slice, numExperts: number): void {
  const { first, count } = experts;
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || first < 0 || count < 1 || first + count > numExperts) {
    throw new MoekitError('E_INVALID_ARGUMENT', `experts [${first}, ${first + count}) is not a non-empty range of the checkpoint's ${numExperts} experts`);
  }
}

/** E_NOT_FOUND unless `dir` is a folder (a symbolic link loop, say, names the reason). */
function requireFolder(dir: string): void {
  if (typeof dir !== 'string' || dir === '') {
    throw new MoekitError('E_INVALID_ARGUMENT', `the checkpoint folder must be a path, got ${describeValue(dir)}`);
  }
  const stats = statIfPresent(dir);
  if (stats === undefined) throw new MoekitError('E_NOT_FOUND', `checkpoint folder ${dir} does not exist`);
  if (!stats.isDirectory()) throw new MoekitError('E_NOT_FOUND', `checkpoint folder ${dir} is ${fileKind(stats)}, not a folder`);
}

/** Reads and checks a checkpoint's config.json for layer `layer`'s MoE block, reading no weights. */
export function readMoEConfig(dir: string, layer: number): CheckpointMoEConfig {
  requireFolder(dir);
  const configFile = path.join(dir, 'config.json');
  const raw = readJsonObject(configFile, 'E_CONFIG');
  const config = parseMoEConfig(raw, configFile);
  checkMoELayer(raw, config.family, layer, configFile);
  return config;
}

/** Reads layer `options.layer`'s MoE block from a Hugging Face checkpoint folder. */
export async function loadMoECheckpoint(dir: string, options: LoadOptions): Promise<LoadedCheckpoint> {
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new MoekitError('E_INVALID_ARGUMENT', `onProgress must be a function, got ${describeValue(options.onProgress)}`);
  }
  const config = readMoEConfig(dir, options.layer);
  const experts = options.experts ?? { first: 0, count: config.numExperts };
  checkExpertSlice(experts, config.numExperts);
  const files = await CheckpointFiles.open(dir);
  try {
    const block = await locateBlock(files, config, options.layer, experts);
    files.reportProgress(options.onProgress);
    const weights = await readBlock(files, block, config, experts);
    files.finishProgress();
    return { config, weights, ...files.usage() };
  } finally {
    await files.close();
  }
}
