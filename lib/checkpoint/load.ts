/**
 * Loading one MoE block from a Hugging Face checkpoint folder: config.json, then the block's
 * tensors from model.safetensors or the shards named by model.safetensors.index.json, assembled
 * into moekit's canonical layout (lib/layer/config.ts, MoEWeights). Only the block's bytes are read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { decodeHalf, type FloatDType } from '../dtype';
import { MoekitError } from '../errors';
import type { HostTensor, MoEConfig, MoEWeights } from '../layer/config';
import { blockTensorNames, checkMoELayer, parseMoEConfig } from './families';
import type { Slice } from '../parallel/plan';
import { sliceExperts } from '../parallel/shard_weights';
import { SafetensorsFile, type SafetensorsTensor } from './safetensors';

export interface LoadedCheckpoint {
  config: MoEConfig;
  weights: MoEWeights<HostTensor>;
  /** Bytes read from safetensors files (headers included). */
  bytesRead: number;
  /** The safetensors files that were opened. */
  files: string[];
}

const SAFETENSORS_DTYPES: Readonly<Record<string, FloatDType>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

function readJson(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new MoekitError('E_NOT_FOUND', `${file}: cannot read ${what} (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch {
    throw new MoekitError('E_CONFIG', `${file}: ${what} is not a JSON object`);
  }
}

/** Finds each tensor's file, opens files on first use, and reads tensors with shape checks. */
class TensorSource {
  readonly #dir: string;
  readonly #fileOf: (name: string) => string | undefined;
  readonly #open = new Map<string, Promise<SafetensorsFile>>();

  private constructor(dir: string, fileOf: (name: string) => string | undefined) {
    this.#dir = dir;
    this.#fileOf = fileOf;
  }

  static async create(dir: string): Promise<TensorSource> {
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    if (fs.existsSync(indexFile)) {
      const index = readJson(indexFile, 'the shard index');
      const weightMap = index.weight_map;
      if (typeof weightMap !== 'object' || weightMap === null) {
        throw new MoekitError('E_CHECKPOINT', `${indexFile}: weight_map is missing`);
      }
      const map = weightMap as Record<string, unknown>;
      return new TensorSource(dir, (name) => (typeof map[name] === 'string' ? (map[name] as string) : undefined));
    }
    const single = path.join(dir, 'model.safetensors');
    if (!fs.existsSync(single)) {
      throw new MoekitError('E_NOT_FOUND', `${dir}: no model.safetensors or model.safetensors.index.json`);
    }
    const file = await SafetensorsFile.open(single);
    const source = new TensorSource(dir, (name) => (file.has(name) ? 'model.safetensors' : undefined));
    source.#open.set('model.safetensors', Promise.resolve(file));
    return source;
  }

  has(name: string): boolean {
    return this.#fileOf(name) !== undefined;
  }

  /** Reads a float tensor of the expected shape; E_CHECKPOINT names a missing or misshapen one. */
  async read(name: string, shape: readonly number[]): Promise<HostTensor> {
    const fileName = this.#fileOf(name);
    if (fileName === undefined) {
      const hint = this.has(`${name}_blocks`) ? ' (this checkpoint stores it MXFP4-quantized, which moekit does not read)' : '';
      throw new MoekitError('E_CHECKPOINT', `${this.#dir}: missing tensor ${name}${hint}`);
    }
    const file = await this.#file(fileName);
    if (!file.has(name)) throw new MoekitError('E_CHECKPOINT', `${file.path}: missing tensor ${name} (the index places it in this shard)`);
    const info = file.info(name);
    if (info.shape.length !== shape.length || info.shape.some((extent, axis) => extent !== shape[axis])) {
      throw new MoekitError('E_CHECKPOINT', `${file.path}: tensor ${name} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    const dtype = SAFETENSORS_DTYPES[info.dtype];
    if (dtype === undefined) throw new MoekitError('E_CHECKPOINT', `${file.path}: tensor ${name} is ${info.dtype}; weights must be F32, F16 or BF16`);
    const tensor: SafetensorsTensor = await file.read(name);
    return { dtype, shape: tensor.shape, data: tensor.data as Float32Array | Uint16Array };
  }

  async close(): Promise<{ bytesRead: number; files: string[] }> {
    let bytesRead = 0;
    const files: string[] = [];
    for (const opening of this.#open.values()) {
      const file = await opening.catch(() => undefined);
      if (!file) continue;
      bytesRead += file.bytesRead;
      files.push(file.path);
      await file.close();
    }
    return { bytesRead, files };
  }

  #file(fileName: string): Promise<SafetensorsFile> {
    let opening = this.#open.get(fileName);
    if (!opening) {
      const file = path.join(this.#dir, fileName);
      opening = fs.existsSync(file)
        ? SafetensorsFile.open(file)
        : Promise.reject(new MoekitError('E_NOT_FOUND', `${file}: shard listed in model.safetensors.index.json is missing`));
      opening.catch(() => undefined); // reported to the reader that awaits it
      this.#open.set(fileName, opening);
    }
    return opening;
  }
}

/** One dtype for parts of one logical weight: theirs if they agree, else float32. */
function commonDType(parts: readonly HostTensor[]): FloatDType {
  const first = parts[0]!.dtype;
  return parts.every((part) => part.dtype === first) ? first : 'float32';
}

function asDType(tensor: HostTensor, dtype: FloatDType): Float32Array | Uint16Array {
  if (tensor.dtype === dtype) return tensor.data;
  if (dtype !== 'float32') throw new MoekitError('E_NATIVE', 'only conversion to float32 is needed here');
  return tensor.dtype === 'float32' ? tensor.data : decodeHalf(tensor.data as Uint16Array, tensor.dtype);
}

function allocate(dtype: FloatDType, length: number): Float32Array | Uint16Array {
  return dtype === 'float32' ? new Float32Array(length) : new Uint16Array(length);
}

/** Concatenates tensors' elements in order into one tensor of `shape`. */
function stack(parts: readonly HostTensor[], shape: number[]): HostTensor {
  const dtype = commonDType(parts);
  const data = allocate(dtype, shape.reduce((total, extent) => total * extent, 1));
  let offset = 0;
  for (const part of parts) {
    const values = asDType(part, dtype);
    data.set(values, offset);
    offset += values.length;
  }
  return { dtype, shape, data };
}

/** gpt-oss stores gate/up interleaved along the last axis of [E, H, 2I]; moekit wants [E, 2I, H] halves. */
function deinterleaveGateUp(gateUp: HostTensor, experts: number, hidden: number, inter: number): HostTensor {
  const source = gateUp.data;
  const data = allocate(gateUp.dtype, experts * 2 * inter * hidden);
  for (let e = 0; e < experts; e++) {
    for (let h = 0; h < hidden; h++) {
      const row = (e * hidden + h) * 2 * inter;
      for (let i = 0; i < inter; i++) {
        data[(e * 2 * inter + i) * hidden + h] = source[row + 2 * i]!;
        data[(e * 2 * inter + inter + i) * hidden + h] = source[row + 2 * i + 1]!;
      }
    }
  }
  return { dtype: gateUp.dtype, shape: [experts, 2 * inter, hidden], data };
}

function deinterleaveBias(bias: HostTensor, experts: number, inter: number): HostTensor {
  const data = allocate(bias.dtype, experts * 2 * inter);
  for (let e = 0; e < experts; e++) {
    for (let i = 0; i < inter; i++) {
      data[e * 2 * inter + i] = bias.data[e * 2 * inter + 2 * i]!;
      data[e * 2 * inter + inter + i] = bias.data[e * 2 * inter + 2 * i + 1]!;
    }
  }
  return { dtype: bias.dtype, shape: [experts, 2 * inter], data };
}

/** [E, rows, cols] → [E, cols, rows] */
function transposeExperts(tensor: HostTensor, experts: number, rows: number, cols: number): HostTensor {
  const data = allocate(tensor.dtype, experts * rows * cols);
  for (let e = 0; e < experts; e++) {
    const base = e * rows * cols;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) data[base + c * rows + r] = tensor.data[base + r * cols + c]!;
    }
  }
  return { dtype: tensor.dtype, shape: [experts, cols, rows], data };
}

/** Reads experts [experts.first, +count): per-expert tensors only for those; fused ones whole. */
async function readExperts(source: TensorSource, config: MoEConfig, layer: number, experts: Slice): Promise<Pick<MoEWeights, 'w13' | 'w13Bias' | 'w2' | 'w2Bias'>> {
  const names = blockTensorNames(config.family as Exclude<MoEConfig['family'], 'custom'>, layer);
  const { numExperts: E, hiddenSize: H, intermediateSize: I } = config;
  if (names.fused) {
    // All experts live in one tensor each: read them whole, keep the wanted experts.
    const gateUp = await source.read(names.fused.gateUp, [E, H, 2 * I]);
    const gateUpBias = await source.read(names.fused.gateUpBias, [E, 2 * I]);
    const down = await source.read(names.fused.down, [E, I, H]);
    const downBias = await source.read(names.fused.downBias, [E, H]);
    const keep = (tensor: HostTensor): HostTensor => {
      const [, rows, cols] = tensor.shape.length === 3 ? (tensor.shape as [number, number, number]) : [E, 1, tensor.shape[1]!];
      const sliced = sliceExperts({ ...tensor, shape: [E, rows, cols] }, experts, { first: 0, count: rows }, { first: 0, count: cols });
      return { ...sliced, shape: tensor.shape.length === 3 ? sliced.shape : [experts.count, cols] };
    };
    return {
      w13: keep(deinterleaveGateUp(gateUp, E, H, I)),
      w13Bias: keep(deinterleaveBias(gateUpBias, E, I)),
      w2: keep(transposeExperts(down, E, I, H)),
      w2Bias: keep(downBias),
    };
  }
  const expert = names.expert!;
  const gateUpParts: HostTensor[] = [];
  const downParts: HostTensor[] = [];
  for (let e = experts.first; e < experts.first + experts.count; e++) {
    gateUpParts.push(await source.read(expert.gate(e), [I, H]), await source.read(expert.up(e), [I, H]));
    downParts.push(await source.read(expert.down(e), [H, I]));
  }
  return { w13: stack(gateUpParts, [experts.count, 2 * I, H]), w2: stack(downParts, [experts.count, H, I]) };
}

async function readSharedExpert(source: TensorSource, config: MoEConfig, layer: number): Promise<MoEWeights['shared']> {
  if (!config.sharedExpert) return undefined;
  const names = blockTensorNames(config.family as Exclude<MoEConfig['family'], 'custom'>, layer).shared!;
  const { hiddenSize: H } = config;
  const S = config.sharedExpert.intermediateSize;
  const gate = await source.read(names.gate, [S, H]);
  const up = await source.read(names.up, [S, H]);
  const shared: NonNullable<MoEWeights['shared']> = { w13: stack([gate, up], [2 * S, H]), w2: await source.read(names.down, [H, S]) };
  if (config.sharedExpert.gated && names.sharedGate) shared.gate = await source.read(names.sharedGate, [1, H]);
  return shared;
}

/** Reads and checks a checkpoint's config.json for layer `layer`'s MoE block, reading no weights. */
export function readMoEConfig(dir: string, layer: number): MoEConfig {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new MoekitError('E_NOT_FOUND', `checkpoint folder ${dir} does not exist`);
  }
  const configFile = path.join(dir, 'config.json');
  const raw = readJson(configFile, 'config.json');
  const config = parseMoEConfig(raw, configFile);
  checkMoELayer(raw, config.family as Exclude<MoEConfig['family'], 'custom'>, layer, configFile);
  return config;
}

export interface LoadOptions {
  layer: number;
  /** Read only these experts (Expert Parallel); the returned w13/w2 hold just them. Default: all. */
  experts?: Slice;
}

/** Reads layer `layer`'s MoE block from a Hugging Face checkpoint folder. */
export async function loadMoECheckpoint(dir: string, options: LoadOptions): Promise<LoadedCheckpoint> {
  const config = readMoEConfig(dir, options.layer);
  const names = blockTensorNames(config.family as Exclude<MoEConfig['family'], 'custom'>, options.layer);
  const source = await TensorSource.create(dir);
  try {
    const { numExperts: E, hiddenSize: H } = config;
    const weights: MoEWeights<HostTensor> = {
      router: await source.read(names.router, [E, H]),
      ...(await readExperts(source, config, options.layer, options.experts ?? { first: 0, count: E })),
    };
    if (names.routerBias) weights.routerBias = await source.read(names.routerBias, [E]);
    if (names.correctionBias) weights.correctionBias = await source.read(names.correctionBias, [E]);
    const shared = await readSharedExpert(source, config, options.layer);
    if (shared) weights.shared = shared;
    const { bytesRead, files } = await source.close();
    return { config, weights, bytesRead, files };
  } catch (error) {
    await source.close();
    throw error;
  }
}
