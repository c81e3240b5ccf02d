/** Access to the shared Hugging Face fixtures (../shared/fixtures/hf-moe beside the repo), and writable copies of them. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadMoECheckpoint, type LoadedCheckpoint, type LoadOptions } from '../../lib/checkpoint/load';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../lib/checkpoint/safetensors';
import { type ModelFamily } from '../../lib/vocabulary';
import { isQuantized, type HostTensor, type MoEWeights } from '../../lib/model/config';

export const FIXTURES_DIR = path.resolve(__dirname, '../../../shared/fixtures/hf-moe');
export const FIXTURE_FAMILIES: readonly ModelFamily[] = ['mixtral', 'qwen2_moe', 'qwen3_moe', 'deepseek_v3', 'gpt_oss'];

export interface FixtureExpectation {
  input: Float32Array;
  routerLogits: Float32Array;
  topkIds: Int32Array;
  topkWeights: Float32Array;
  output: Float32Array;
  tokens: number;
  hidden: number;
  experts: number;
  topK: number;
}

export function fixtureDir(family: ModelFamily): string {
  return path.join(FIXTURES_DIR, family);
}

/** Reads expected.safetensors: what transformers computed in float32. */
export async function readExpectation(family: ModelFamily): Promise<FixtureExpectation> {
  const file = await SafetensorsFile.open(path.join(fixtureDir(family), 'expected.safetensors'));
  try {
    const read = async (name: string) => (await file.read(name)).data;
    const input = (await read('input')) as Float32Array;
    const ids = (await read('topk_ids')) as Int32Array;
    const [tokens, hidden] = file.info('input').shape as [number, number];
    const [, experts] = file.info('router_logits').shape as [number, number];
    return {
      input,
      routerLogits: (await read('router_logits')) as Float32Array,
      topkIds: ids,
      topkWeights: (await read('topk_weights')) as Float32Array,
      output: (await read('output')) as Float32Array,
      tokens,
      hidden,
      experts,
      topK: ids.length / tokens,
    };
  } finally {
    await file.close();
  }
}

/** The quantized fixtures (../shared/fixtures/hf-moe-quant; its README says what each holds). */
export const QUANT_FIXTURES_DIR = path.resolve(__dirname, '../../../shared/fixtures/hf-moe-quant');
export type QuantFixture = 'deepseek_v3_fp8' | 'qwen3_moe_fp8' | 'mixtral_bf16' | 'gpt_oss_mxfp4';

export function quantFixtureDir(name: QuantFixture): string {
  return path.join(QUANT_FIXTURES_DIR, name);
}

/** A quantized fixture's expected.safetensors: the input and every float32 tensor beside it, by name. */
export async function readQuantExpectation(name: QuantFixture): Promise<{ input: Float32Array; tokens: number; hidden: number; tensors: Record<string, Float32Array | Int32Array> }> {
  const file = await SafetensorsFile.open(path.join(quantFixtureDir(name), 'expected.safetensors'));
  try {
    const tensors: Record<string, Float32Array | Int32Array> = {};
    for (const tensor of file.names()) tensors[tensor] = (await file.read(tensor)).data as Float32Array | Int32Array;
    const [tokens, hidden] = file.info('input').shape as [number, number];
    return { input: tensors.input as Float32Array, tokens, hidden, tensors };
  } finally {
    await file.close();
  }
}

/** ‖actual − expected‖ / ‖expected‖ */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let difference = 0;
  let norm = 0;
  for (let i = 0; i < expected.length; i++) {
    difference += (actual[i]! - expected[i]!) ** 2;
    norm += expected[i]! ** 2;
  }
  return Math.sqrt(difference / norm);
}

/** Per token, the chosen expert ids as a sorted list (order among the k may differ on ties). */
export function idSets(ids: ArrayLike<number>, topK: number): number[][] {
  const sets: number[][] = [];
  for (let start = 0; start < ids.length; start += topK) {
    sets.push(Array.from({ length: topK }, (_, j) => ids[start + j]!).sort((a, b) => a - b));
  }
  return sets;
}

/** A fresh, empty temporary folder. */
export function scratchDir(prefix = 'moekit-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A writable copy of a folder (the fixtures themselves are read-only) under a scratch folder. */
function writableCopy(source: string, name: string): string {
  const target = path.join(scratchDir('moekit-fixture-'), name);
  fs.cpSync(source, target, { recursive: true });
  for (const file of fs.readdirSync(target)) fs.chmodSync(path.join(target, file), 0o644);
  return target;
}

/** A writable copy of a fixture. */
export function copyFixture(family: ModelFamily): string {
  return writableCopy(fixtureDir(family), family);
}

/** A writable copy of a quantized fixture. */
export function copyQuantFixture(name: QuantFixture): string {
  return writableCopy(quantFixtureDir(name), name);
}

/** The two shards every quantized fixture is written in. */
export const QUANT_FIXTURE_SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'] as const;

/**
 * Rewrites each shard of a copied quantized fixture, tensor by tensor, keeping dtypes;
 * `transform` returns null to drop one.
 */
export async function rewriteShards(dir: string, transform: (name: string, tensor: TensorToWrite) => TensorToWrite | null): Promise<void> {
  for (const shard of QUANT_FIXTURE_SHARDS) {
    const opened = await SafetensorsFile.open(path.join(dir, shard));
    const kept: Record<string, TensorToWrite> = {};
    try {
      for (const name of opened.names()) {
        const rewritten = transform(name, (await opened.read(name)) as TensorToWrite);
        if (rewritten) kept[name] = rewritten;
      }
    } finally {
      await opened.close();
    }
    await writeSafetensors(path.join(dir, shard), kept);
  }
}

/** Rewrites a JSON file through `edit`. */
export function editJson(file: string, edit: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(json);
  fs.writeFileSync(file, JSON.stringify(json));
}

/**
 * Makes a FIFO at `file`. Opening one for reading blocks until a writer comes: `release()` plays
 * that writer once, so that a reader stuck in open() (the hang these tests guard against) is let
 * go instead of holding a thread for ever.
 */
export function makeFifo(file: string): { release(): void } {
  execFileSync('mkfifo', [file]);
  return {
    release: () => {
      try {
        fs.closeSync(fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
      } catch {
        // ENXIO: no reader is waiting, so there is nothing to release.
      }
    },
  };
}

/** Settles as `promise` does, or rejects after `ms` milliseconds saying that `what` hung. */
export async function withinTime<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** loadMoECheckpoint of a checkpoint that is not quantized: its expert matrices are plain host tensors. */
export async function loadDense(dir: string, options: LoadOptions): Promise<LoadedCheckpoint & { weights: MoEWeights<HostTensor, never> }> {
  const loaded = await loadMoECheckpoint(dir, options);
  const { w13, w2, shared } = loaded.weights;
  for (const matrix of [w13, w2, shared?.w13, shared?.w2]) {
    if (matrix && isQuantized(matrix)) throw new Error(`${dir} loaded quantized weights where dense ones were expected`);
  }
  return loaded as LoadedCheckpoint & { weights: MoEWeights<HostTensor, never> };
}
