// The moekit command line, run as a user runs it (node dist/cli/main.js; test/setup/build_dist.ts
// compiles dist first): the five fixture families through `moekit run`, every bad-input case (exit
// 1, one line naming the culprit, no output file), usage errors (exit 2), info and bench.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

import { SafetensorsFile, writeSafetensors } from '../lib/checkpoint/safetensors';
import { encodeHalf } from '../lib/dtype';
import type { ModelFamily } from '../lib/vocabulary';
import {
  FIXTURE_FAMILIES, copyFixture, editJson, fixtureDir, idSets, makeFifo, quantFixtureDir, readExpectation, readQuantExpectation, relativeError,
} from './helpers/fixtures';

const MAIN = path.resolve(__dirname, '../dist/cli/main.js');
const PACKAGE_VERSION = (JSON.parse(fs.readFileSync(path.resolve(__dirname, '../package.json'), 'utf8')) as { version: string }).version;

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; with `timeoutMs`, a run that takes longer is killed (its code is then null). */
function moekit(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs?: number): Outcome {
  const result = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: timeoutMs });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Bad input is refused at once: a run that takes longer has hung (on a FIFO, say). */
const BAD_INPUT_TIMEOUT_MS = 30_000;

function scratchDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-cli-'));
}

function expectedFile(family: ModelFamily): string {
  return path.join(fixtureDir(family), 'expected.safetensors');
}

async function readOutputs(file: string) {
  const opened = await SafetensorsFile.open(file);
  try {
    return { output: await opened.read('output'), topkIds: await opened.read('topk_ids'), topkWeights: await opened.read('topk_weights') };
  } finally {
    await opened.close();
  }
}

describe.each(FIXTURE_FAMILIES)('moekit run on the %s fixture', (family) => {
  it('writes output, topk_ids and topk_weights that match transformers', async () => {
    const output = path.join(scratchDir(), 'out.safetensors');
    // No ':tensor' suffix: the default tensor name is input.
    const result = moekit(['run', fixtureDir(family), '--layer', '0', '--input', expectedFile(family), '--output', output]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const expected = await readExpectation(family);
    // One line says what was written; no progress bar (stderr is not a terminal here).
    expect(result.stdout).toBe(`wrote ${output}: output [${expected.tokens}, ${expected.hidden}] float32, topk_ids [${expected.tokens}, ${expected.topK}] int32, ` +
      `topk_weights [${expected.tokens}, ${expected.topK}] float32 (layer 0 on cpu)\n`);
    const { output: y, topkIds, topkWeights } = await readOutputs(output);
    expect(y).toMatchObject({ dtype: 'F32', shape: [expected.tokens, expected.hidden] });
    expect(topkIds).toMatchObject({ dtype: 'I32', shape: [expected.tokens, expected.topK] });
    expect(topkWeights).toMatchObject({ dtype: 'F32', shape: [expected.tokens, expected.topK] });
    expect(relativeError(y.data as Float32Array, expected.output)).toBeLessThanOrEqual(1e-5);
    expect(idSets(topkIds.data as Int32Array, expected.topK)).toEqual(idSets(expected.topkIds, expected.topK));
  });
});

describe('moekit run with FP8 experts', () => {
  it.each(['deepseek_v3_fp8', 'qwen3_moe_fp8'] as const)('runs the published FP8 checkpoint %s as W8A8: within 2e-3 of output, clearly apart from output_w8a16', async (name) => {
    const output = path.join(scratchDir(), 'out.safetensors');
    const input = path.join(quantFixtureDir(name), 'expected.safetensors');
    const result = moekit(['run', quantFixtureDir(name), '--layer', '0', '--input', input, '--output', output]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const expected = await readQuantExpectation(name);
    const y = (await readOutputs(output)).output.data as Float32Array;
    const w8a8 = relativeError(y, expected.tensors.output!);
    expect(w8a8).toBeLessThanOrEqual(2e-3);
    expect(relativeError(y, expected.tensors.output_w8a16!)).toBeGreaterThan(Math.max(1e-2, 20 * w8a8));
  });

  it('--quantize fp8 quantizes a BF16 checkpoint at load: output_fp8, not the unquantized output', async () => {
    const output = path.join(scratchDir(), 'out.safetensors');
    const input = path.join(quantFixtureDir('mixtral_bf16'), 'expected.safetensors');
    const result = moekit(['run', quantFixtureDir('mixtral_bf16'), '--layer', '0', '--input', input, '--output', output, '--quantize', 'fp8']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const expected = await readQuantExpectation('mixtral_bf16');
    const y = (await readOutputs(output)).output.data as Float32Array;
    expect(relativeError(y, expected.tensors.output_fp8!)).toBeLessThanOrEqual(2e-3);
    expect(relativeError(y, expected.tensors.output!)).toBeGreaterThan(1e-2);
  });

  it('--quantize int4 and int8 (with --group-size) quantize a BF16 checkpoint at load, weight-only', async () => {
    const dir = scratchDir();
    const input = path.join(quantFixtureDir('mixtral_bf16'), 'expected.safetensors');
    const expected = await readQuantExpectation('mixtral_bf16');
    for (const [args, reference] of [[['--quantize', 'int4'], 'output_int4_g128'], [['--quantize', 'int8', '--group-size', 'channel'], 'output_int8']] as const) {
      const output = path.join(dir, `${reference}.safetensors`);
      const result = moekit(['run', quantFixtureDir('mixtral_bf16'), '--layer', '0', '--input', input, '--output', output, ...args]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(relativeError((await readOutputs(output)).output.data as Float32Array, expected.tensors[reference]!)).toBeLessThanOrEqual(1e-4);
    }
  });

  it('runs a gpt-oss MXFP4 folder as published', async () => {
    const output = path.join(scratchDir(), 'out.safetensors');
    const input = path.join(quantFixtureDir('gpt_oss_mxfp4'), 'expected.safetensors');
    const result = moekit(['run', quantFixtureDir('gpt_oss_mxfp4'), '--layer', '0', '--input', input, '--output', output]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const expected = await readQuantExpectation('gpt_oss_mxfp4');
    expect(relativeError((await readOutputs(output)).output.data as Float32Array, expected.tensors.output!)).toBeLessThanOrEqual(1e-4);
  });

  it('--quantize fp8 of a checkpoint already in FP8 fails with one line and writes nothing', () => {
    const output = path.join(scratchDir(), 'out.safetensors');
    const input = path.join(quantFixtureDir('qwen3_moe_fp8'), 'expected.safetensors');
    const result = moekit(['run', quantFixtureDir('qwen3_moe_fp8'), '--layer', '0', '--input', input, '--output', output, '--quantize', 'fp8']);
    expectOneLineError(result, 1, /options\.quantize 'fp8' asks to quantize weights that are already quantized \(fp8\)/);
    expect(fs.existsSync(output)).toBe(false);
  });
});

describe('moekit run with half-precision input', () => {
  it.each([
    ['F16', 'float16', 'float32', 5e-3],
    ['BF16', 'bfloat16', 'bfloat16', 2e-2],
  ] as const)('reads a named %s tensor and computes in %s', async (stored, halfType, computeDType, tolerance) => {
    const expected = await readExpectation('mixtral');
    const dir = scratchDir();
    const input = path.join(dir, 'x.safetensors');
    const data = encodeHalf(expected.input, halfType);
    await writeSafetensors(input, { hidden_states: { dtype: stored, shape: [expected.tokens, expected.hidden], data } });
    const output = path.join(dir, 'y.safetensors');
    const result = moekit(['run', fixtureDir('mixtral'), '--layer', '0', '--input', `${input}:hidden_states`, '--output', output, '--dtype', computeDType]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const { output: y } = await readOutputs(output);
    expect(y.dtype).toBe('F32');
    expect(relativeError(y.data as Float32Array, expected.output)).toBeLessThanOrEqual(tolerance);
  });
});

// ---- Broken copies of the fixtures (the fixture folders themselves are read-only) ----

interface HeaderEntry {
  dtype?: string;
  shape?: number[];
  data_offsets?: number[];
}

/** Rewrites a safetensors file's JSON header through `edit`, keeping its data section. */
function editSafetensorsHeader(file: string, tensor: string, edit: (entry: HeaderEntry) => void): void {
  const bytes = fs.readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Record<string, HeaderEntry>;
  edit(header[tensor]!);
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([prefix, json, bytes.subarray(8 + length)]));
}

function shardOf(dir: string, tensor: string): string {
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
  return path.join(dir, index.weight_map[tensor]!);
}

interface BadInput {
  name: string;
  /** The checkpoint folder and, where it is the broken part, the --input and --layer values. */
  prepare(): { checkpoint: string; input?: string; layer?: string };
  /** What stderr must say: the culprit file, tensor, field or layer. */
  message: RegExp;
}

const W1 = 'model.layers.0.block_sparse_moe.experts.3.w1.weight';

function brokenMixtral(breakIt: (dir: string) => void): () => { checkpoint: string } {
  return () => {
    const dir = copyFixture('mixtral');
    breakIt(dir);
    return { checkpoint: dir };
  };
}

function replaceWithFifo(file: string): void {
  fs.rmSync(file);
  makeFifo(file);
}

function overwriteBytes(file: string, at: number, write: (bytes: Buffer) => void): void {
  const bytes = fs.readFileSync(file);
  write(bytes.subarray(at));
  fs.writeFileSync(file, bytes);
}

const BAD_INPUTS: BadInput[] = [
  {
    name: 'a truncated shard',
    prepare: brokenMixtral((dir) => {
      const shard = shardOf(dir, W1);
      fs.truncateSync(shard, fs.statSync(shard).size - 1000);
    }),
    message: /model-0000\d-of-00002\.safetensors: tensor \S+: data_offsets .* past the end of the data .*truncated/,
  },
  {
    name: 'an absurd header length',
    prepare: brokenMixtral((dir) => overwriteBytes(shardOf(dir, W1), 0, (bytes) => bytes.writeBigUInt64LE(1n << 60n))),
    message: /model-0000\d-of-00002\.safetensors: absurd header length 1152921504606846976/,
  },
  {
    name: 'a header that is not JSON',
    prepare: brokenMixtral((dir) => overwriteBytes(shardOf(dir, W1), 8, (bytes) => bytes.write('{not json'))),
    message: /model-0000\d-of-00002\.safetensors: header is not valid JSON/,
  },
  {
    name: 'offsets past the end',
    prepare: brokenMixtral((dir) => editSafetensorsHeader(shardOf(dir, W1), W1, (entry) => {
      entry.data_offsets = [10_000_000, 10_000_000 + 96 * 64 * 4];
    })),
    message: /tensor model\.layers\.0\.block_sparse_moe\.experts\.3\.w1\.weight: data_offsets \[10000000, 10024576\] run past the end/,
  },
  {
    name: 'an unknown dtype',
    prepare: brokenMixtral((dir) => editSafetensorsHeader(shardOf(dir, W1), W1, (entry) => {
      entry.dtype = 'F31';
    })),
    message: /experts\.3\.w1\.weight: unknown dtype "F31"/,
  },
  {
    name: 'a shape/size mismatch in a shard',
    prepare: brokenMixtral((dir) => editSafetensorsHeader(shardOf(dir, W1), W1, (entry) => {
      entry.shape = [96, 65];
    })),
    message: /experts\.3\.w1\.weight: shape \[96, 65\] of F32 needs 24960 bytes but data_offsets hold 24576/,
  },
  {
    name: 'a weight whose shape disagrees with config.json',
    prepare: brokenMixtral((dir) => editJson(path.join(dir, 'config.json'), (config) => {
      config.intermediate_size = 100;
    })),
    message: /tensor model\.layers\.0\.block_sparse_moe\.experts\.0\.w1\.weight has shape \[96, 64\], expected \[100, 64\]/,
  },
  {
    name: 'a config without expert count',
    prepare: () => {
      const dir = copyFixture('qwen3_moe');
      editJson(path.join(dir, 'config.json'), (config) => {
        delete config.num_experts;
        delete config.num_local_experts;
      });
      return { checkpoint: dir, input: expectedFile('qwen3_moe') };
    },
    message: /config\.json: missing one of num_experts, num_local_experts/,
  },
  {
    name: 'an unknown model_type',
    prepare: brokenMixtral((dir) => editJson(path.join(dir, 'config.json'), (config) => {
      config.model_type = 'llama';
    })),
    message: /config\.json: model_type "llama" is not supported \(supported: mixtral, qwen2_moe, qwen3_moe, deepseek_v3, gpt_oss\)/,
  },
  {
    name: 'top-k larger than the expert count',
    prepare: brokenMixtral((dir) => editJson(path.join(dir, 'config.json'), (config) => {
      config.num_experts_per_tok = 9;
    })),
    message: /config\.json: num_experts_per_tok \(9\) is larger than the expert count \(8\)/,
  },
  {
    name: 'a missing shard file',
    prepare: brokenMixtral((dir) => fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'))),
    message: /model-00002-of-00002\.safetensors: shard listed in model\.safetensors\.index\.json is missing/,
  },
  {
    name: 'a missing expert weight',
    prepare: brokenMixtral((dir) => editJson(path.join(dir, 'model.safetensors.index.json'), (index) => {
      delete (index.weight_map as Record<string, string>)[W1];
    })),
    message: /missing tensor model\.layers\.0\.block_sparse_moe\.experts\.3\.w1\.weight/,
  },
  {
    name: 'an input of the wrong width',
    prepare: () => ({ checkpoint: fixtureDir('mixtral'), input: `${expectedFile('mixtral')}:router_logits` }),
    message: /expected\.safetensors: tensor router_logits has shape \[33, 8\] but the checkpoint's hidden size is 64/,
  },
  {
    name: 'a missing folder',
    prepare: () => ({ checkpoint: path.join(scratchDir(), 'no-such-checkpoint') }),
    message: /checkpoint folder \S*no-such-checkpoint does not exist/,
  },
  {
    name: 'a missing layer',
    prepare: () => ({ checkpoint: fixtureDir('mixtral'), layer: '3' }),
    message: /layer 3 does not exist: the model has 1 layer\(s\)/,
  },
  {
    name: 'a missing input tensor',
    prepare: () => ({ checkpoint: fixtureDir('mixtral'), input: `${expectedFile('mixtral')}:hidden` }),
    message: /expected\.safetensors: no tensor named hidden/,
  },
  {
    name: 'a config.json that is a FIFO',
    prepare: brokenMixtral((dir) => replaceWithFifo(path.join(dir, 'config.json'))),
    message: /config\.json: is a FIFO, not a regular file/,
  },
  {
    name: 'an index that is a FIFO',
    prepare: brokenMixtral((dir) => replaceWithFifo(path.join(dir, 'model.safetensors.index.json'))),
    message: /model\.safetensors\.index\.json: is a FIFO, not a regular file/,
  },
  {
    name: 'a shard that is a FIFO',
    prepare: brokenMixtral((dir) => replaceWithFifo(shardOf(dir, W1))),
    message: /model-0000\d-of-00002\.safetensors: is a FIFO, not a regular file/,
  },
  {
    name: 'an input that is a FIFO',
    prepare: () => {
      const input = path.join(scratchDir(), 'in.safetensors');
      makeFifo(input);
      return { checkpoint: fixtureDir('mixtral'), input };
    },
    message: /in\.safetensors: is a FIFO, not a regular file/,
  },
  {
    name: 'a checkpoint folder that is a symbolic link loop',
    prepare: () => {
      const checkpoint = path.join(scratchDir(), 'loop');
      fs.symlinkSync('loop', checkpoint);
      return { checkpoint };
    },
    message: /loop: cannot read \(ELOOP\)/,
  },
  {
    name: 'a missing input file',
    prepare: () => ({ checkpoint: fixtureDir('mixtral'), input: path.join(scratchDir(), 'absent.safetensors') }),
    message: /absent\.safetensors: cannot open \(ENOENT\)/,
  },
];

function expectOneLineError(result: Outcome, code: number, message: RegExp): void {
  expect(result.code).toBe(code);
  expect(result.stderr.endsWith('\n')).toBe(true);
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(/^moekit: /);
  expect(result.stderr).toMatch(message);
}

describe('moekit run rejects bad input: exit code 1, one line on stderr, no output file', () => {
  it.each(BAD_INPUTS)('$name', ({ prepare, message }) => {
    const { checkpoint, input, layer } = prepare();
    const outputDir = scratchDir();
    const output = path.join(outputDir, 'out.safetensors');
    const result = moekit(['run', checkpoint, '--layer', layer ?? '0', '--input', input ?? expectedFile('mixtral'), '--output', output], {}, BAD_INPUT_TIMEOUT_MS);
    expectOneLineError(result, 1, message);
    expect(result.stdout).toBe('');
    // Neither the output nor the writer's temporary file.
    expect(fs.readdirSync(outputDir)).toEqual([]);
  });
});

describe('moekit run --output writes only to a new path or a regular file', () => {
  const runTo = (output: string): Outcome =>
    moekit(['run', fixtureDir('mixtral'), '--layer', '0', '--input', expectedFile('mixtral'), '--output', output], {}, BAD_INPUT_TIMEOUT_MS);

  it.each<[string, (file: string) => void, RegExp]>([
    ['a FIFO', (file) => makeFifo(file), /out: is a FIFO; moekit writes only to a regular file or a new path/],
    ['a directory', (file) => fs.mkdirSync(file), /out: is a directory; moekit writes only to a regular file or a new path/],
    ['a symbolic link to a FIFO', (file) => {
      makeFifo(`${file}.fifo`);
      fs.symlinkSync(`${file}.fifo`, file);
    }, /out: is a symbolic link to a FIFO; moekit writes only/],
    ['a symbolic link to nothing', (file) => fs.symlinkSync(`${file}.absent`, file), /out: is a symbolic link that leads to no file \(ENOENT\); moekit writes only/],
  ])('refuses %s: exit code 1, one line, the path left as it was, nothing written', (_, make, message) => {
    const dir = scratchDir();
    const output = path.join(dir, 'out');
    make(output);
    const before = fs.readdirSync(dir).sort();
    const kind = fs.lstatSync(output);
    expectOneLineError(runTo(output), 1, message);
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    const after = fs.lstatSync(output);
    expect([after.isFIFO(), after.isDirectory(), after.isSymbolicLink(), after.ino]).toEqual([kind.isFIFO(), kind.isDirectory(), kind.isSymbolicLink(), kind.ino]);
  });

  it('writes through a symbolic link to a regular file: the link stays, its target gets the outputs', async () => {
    const dir = scratchDir();
    const target = path.join(dir, 'results.safetensors');
    fs.writeFileSync(target, 'old contents');
    const link = path.join(dir, 'latest.safetensors');
    fs.symlinkSync('results.safetensors', link);
    const result = runTo(link);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readdirSync(dir).sort()).toEqual(['latest.safetensors', 'results.safetensors']);
    const expected = await readExpectation('mixtral');
    expect(relativeError((await readOutputs(target)).output.data as Float32Array, expected.output)).toBeLessThanOrEqual(1e-5);
  });

  it('replaces an existing regular file', async () => {
    const output = path.join(scratchDir(), 'out.safetensors');
    fs.writeFileSync(output, 'old contents');
    const result = runTo(output);
    expect(result.code).toBe(0);
    expect((await readOutputs(output)).topkIds.shape).toEqual([33, 2]);
  });
});

describe('moekit usage errors: exit code 2 and one line on stderr', () => {
  const mixtral = fixtureDir('mixtral');
  const runArgs = ['run', mixtral, '--layer', '0', '--input', 'x.safetensors', '--output', 'y.safetensors'];
  it.each([
    [[], /missing command \(commands: run, bench, info, launch, serve\)/],
    [['frobnicate'], /unknown command "frobnicate" \(commands: run, bench, info, launch, serve\)/],
    [['run', mixtral, '--input', 'x.safetensors', '--output', 'y.safetensors'], /missing required option --layer/],
    [['run', mixtral, '--layer', '0', '--output', 'y.safetensors'], /missing required option --input/],
    [['run', mixtral, '--layer', '0', '--input', 'x.safetensors'], /missing required option --output/],
    [['run', '--layer', '0', '--input', 'x.safetensors', '--output', 'y.safetensors'], /missing argument <checkpoint-dir>/],
    [[...runArgs, 'extra'], /unexpected argument "extra"/],
    [['run', mixtral, '--layer'], /Option '--layer <value>' argument missing/],
    [[...runArgs, '--layer', 'two'], /--layer must be an integer >= 0, got "two"/],
    [[...runArgs, '--input', 'x.safetensors:'], /--input "x\.safetensors:": the tensor name after ':' is empty/],
    [[...runArgs, '--dtype', 'float64'], /--dtype: expected a float dtype .* got "float64"/],
    [[...runArgs, '--device', 'tpu'], /--device: expected 'cpu' or 'cuda:N', got "tpu"/],
    [[...runArgs, '--quantize', 'nf4'], /--quantize must be one of fp8, int8, int4, got "nf4"/],
    [['bench', '--quantize', 'fp16'], /--quantize must be one of fp8, int8, int4, got "fp16"/],
    [[...runArgs, '--quantize', 'int4', '--group-size', '48'], /--group-size: the group size must be a positive multiple of 32 or 'channel', got "48"|got 48/],
    [[...runArgs, '--group-size', '64'], /--group-size goes with --quantize int8 or int4/],
    [['bench', '--quantize', 'fp8', '--group-size', '64'], /--group-size goes with --quantize int8 or int4/],
    [[...runArgs, '--verbose'], /Unknown option '--verbose'/],
    [['bench', '--preset', 'gpt-5'], /unknown preset "gpt-5" \(presets: mixtral-8x7b, .*qwen3-30b-a3b-mini/],
    [['bench', '--tokens', '1,x'], /--tokens must be an integer >= 1, got "x"/],
    [['bench', '--runs', '0'], /--runs must be an integer >= 1, got "0"/],
    [['bench', '--from', 'moekit.json'], /--from needs --compare/],
    [['bench', '--moe-tp', '2'], /--moe-tp and --moe-ep need --parallel/],
    [['bench', '--parallel', '--moe-ep', 'x'], /--moe-ep must be an integer >= 1, got "x"/],
    [['bench', '--parallel', '--device', 'cpu'], /--parallel runs on CUDA devices/],
    [['bench', '--parallel', '--compare', 'torch.json'], /--compare does not go with --parallel/],
    [['bench', '--parallel', '--against', 'v1.json'], /--against does not go with --parallel/],
    [['bench', '--dispatch', 'all_to_all'], /--dispatch needs --parallel/],
    [['bench', '--device', 'cpu', '--graph-tokens', '1024'], /--graph-tokens needs a CUDA device/],
    [['bench', '--parallel', '--graph-tokens', '1024'], /--graph-tokens does not go with --parallel/],
    [['bench', '--device', 'cuda:0', '--graph-tokens', 'x'], /--graph-tokens must be an integer >= 0, got "x"/],
    [['bench', '--parallel', '--dispatch', 'scatter'], /--dispatch must be all_reduce or all_to_all, got "scatter"/],
    [['bench', '--parallel', '--dispatch', 'all_to_all', '--moe-ep', '2'], /--dispatch all_to_all is Expert Parallel over the whole group: leave out --moe-tp and --moe-ep/],
    [['bench', '--parallel=yes'], /--parallel/],
    [['bench', '--shape'], /Option '--shape <value>' argument missing/],
    [['bench', '--shape', '8,2,64'], /--shape "8,2,64": expected E,K,H,I\[,S\] \(experts, top-k, hidden size, expert intermediate size, and the shared expert's\), got 3 fields/],
    [['bench', '--shape', '8,2,64,32', '--shape', '8,2,x,32'], /--shape "8,2,x,32": H must be a positive integer, got "x"/],
    [['bench', '--shape', '8,9,64,32'], /--shape "8,9,64,32": MoE config: routing\.topK \(9\) is larger than numExperts \(8\)/],
    [['bench', '--shape', '70000,2,64,32'], /--shape "70000,2,64,32": E \(70000\) is more than the 65536 experts moekit takes/],
    [['bench', '--routing', 'topk_softmax'], /--routing goes with --shape \(presets have their own routing\)/],
    [['bench', '--preset', 'mixtral-8x7b-mini', '--activation', 'relu'], /--activation goes with --shape \(presets have their own activation\)/],
    [['bench', '--shape', '8,2,64,32', '--routing', 'top1'], /--routing must be one of softmax_topk, topk_softmax, sigmoid_group_topk, got "top1"/],
    [['bench', '--shape', '8,2,64,32', '--routing', 'sigmoid_group_topk,3,2'], /--shape "8,2,64,32": MoE config: routing\.numGroups \(3\) must divide numExperts \(8\)/],
    [['bench', '--shape', '8,2,64,32', '--activation', 'mish'], /--activation must be one of swiglu, geglu, gptoss_swiglu, silu, gelu, relu, got "mish"/],
    [['bench', '--shape', '8,2,64,32,64', '--activation', 'relu'], /--shape "8,2,64,32,64": MoE config: shared experts need a gated activation \(swiglu, geglu, gptoss_swiglu\), got relu/],
    // Refused before the ceilings are timed or any layer runs, naming the shape.
    [['bench', '--shape', '8,2,64,32', '--shape', '8,2,33,32', '--quantize', 'int4'],
      /shape-E8-K2-H33-I32 with --quantize int4: MoE config: hiddenSize \(33\) is the K of the int4 experts' w13: int4 weights need an even K, got 33/],
    [['info', '--verbose'], /Unknown option '--verbose'/],
    [['info', 'extra'], /unexpected argument "extra"/],
  ])('%j', (args, message) => {
    expectOneLineError(moekit(args), 2, message);
  });

  it.each([
    [['--help'], /^usage: moekit <command>/],
    [['run', '--help'], /^usage: moekit run <checkpoint-dir> --layer N --input <file\.safetensors>\[:<tensor>\] --output/],
    [['bench', '-h'], /^usage: moekit bench \[--preset NAME/],
    [['info', '--help'], /^usage: moekit info/],
  ])('%j prints usage and exits 0', (args, usage) => {
    const result = moekit(args);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(usage);
  });
});

describe('moekit info', () => {
  it('names the version, the addon variant and path, CUDA devices and NCCL', () => {
    const result = moekit(['info']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^moekit ${PACKAGE_VERSION.replace(/\./g, '\\.')}\n`));
    expect(result.stdout).toMatch(/\naddon: (cpu|cuda) \(\S+\.node, (prebuild|built here)\)\n/);
    // CUDA's state in one line: what the addon carries and the driver found, or why it is absent.
    expect(result.stdout).toMatch(/\ncuda: (not in this build \(.+\); the CPU works|runtime \d+\.\d+ \(built in\), driver (none found|for CUDA \d+\.\d+), code for sm_80, sm_90a, compute_90)\n/);
    expect(result.stdout).toMatch(/\nquantization: fp8 \(e4m3 experts with 128x128 block scales, computed W8A8; FP8 checkpoints as published, or --quantize fp8\)\n/);
    expect(result.stdout).toMatch(/\nquantization: int4 \(int4 experts, weight-only \(W4A16\), .*--quantize int4\)\n/);
    expect(result.stdout).toMatch(/\nquantization: mxfp4 \(e2m1 experts with e8m0 scales per 32 K values, weight-only \(W4A16\); gpt-oss checkpoints as published\)\n/);
    expect(result.stdout).toMatch(/\ncuda devices: (none|\d+(\n {2}cuda:\d+ {2}.+, [\d.]+ GiB, compute capability \d+\.\d+, \d+ SMs)+)\n/);
    // The libraries loaded at run time, last: a version and file, or why each does not load.
    expect(result.stdout).toMatch(/\nnccl: .+\ncublas: (\d+\.\d+\.\d+ \(.+\)|not available \(.+\))\nnvml: (\S+|not available \(.+\))\n$/);
    if (!/\naddon: cuda /.test(result.stdout)) expect(result.stdout).toMatch(/\nnvml: not available \(this build of moekit has no CUDA backend\)\n$/);
  });

  it('loads NCCL from where MOEKIT_NCCL_PATH points, as a file or a folder, and says why it cannot', () => {
    const dir = scratchDir();
    const library = path.join(dir, 'libnccl.so.2');
    fs.writeFileSync(library, 'not a shared library');
    for (const location of [library, dir]) {
      const { stdout } = moekit(['info'], { MOEKIT_NCCL_PATH: location });
      expect(stdout).toMatch(new RegExp(`\nnccl: not available \\(cannot load ${library.replace(/[.]/g, '\\.')} \\(.+\\); install NCCL or set MOEKIT_NCCL_PATH\\)\n`));
    }
  });
});

describe('moekit bench', () => {
  it('prints both ceilings, then a row per point with its floor and stages, and writes the JSON rows', () => {
    const json = path.join(scratchDir(), 'bench.json');
    const result = moekit(['bench', '--preset', 'qwen3-30b-a3b-mini', '--tokens', '1', '--warmup', '1', '--runs', '2', '--json', json]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    // The first line says which device and why (this machine: no GPU, or a CPU-only build).
    expect(lines[0]).toMatch(/^# benchmarking on cpu \(no --device; (no CUDA device found|this moekit build has no CUDA backend) \(see moekit info\)\)$/);
    const preamble = lines.filter((line) => line.startsWith('#')).slice(1);
    expect(preamble[0]).toMatch(/^# cpu \(.+\), float32$/);
    // A CPU's rates in GFLOP/s; its floor is labelled an estimate (no vendor GEMM to bound it).
    expect(preamble[1]).toMatch(/^# matmul ceiling [\d.]+ GFLOP\/s: moekit linear float32 1024×1024×1024 \(the CPU has no vendor GEMM here\)$/);
    expect(preamble[2]).toMatch(/^# copy ceiling \d+ GB\/s: 256 MiB copy in host memory, bytes read \+ written$/);
    expect(preamble).toContain("# the floor is an ESTIMATE: its matmul ceiling is moekit's own linear, not a vendor GEMM, and a forward may beat it (x est floor below 1)");
    expect(preamble).toContain('# qwen3-30b-a3b-mini: E 128, top-8, H 1024, I 384, softmax_topk, swiglu');
    const [header, row, ...rest] = lines.filter((line) => !line.startsWith('#'));
    expect(header).toMatch(/^preset +tokens +ms\/forward +p10-p90 +graph ms +floor ms +x est floor +GFLOP\/s +weights GB\/s +SM MHz +experts +router +routing +permute +expert_up +expert_down +shared +combine +fused$/);
    // One token picks its 8 experts; no shared expert.
    // No graph replay on the CPU, and no clocks read there.
    expect(row).toMatch(/^qwen3-30b-a3b-mini +1 +[\d.]+ +[\d.]+-[\d.]+ +- +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +- +8\/8( +[\d.]+){5} +- +[\d.]+ +-$/);
    expect(rest).toEqual([]);
    const rows = JSON.parse(fs.readFileSync(json, 'utf8')) as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    const measured = rows[0]!;
    expect(Object.keys(measured).sort()).toEqual(
      ['preset', 'device', 'deviceName', 'dtype', 'quantization', 'tokens', 'experts', 'topK', 'hidden', 'intermediate', 'sharedIntermediate', 'routing', 'activation',
        'msPerForward', 'p10Ms', 'p90Ms',
        'hostMsPerForward', 'stageMs', 'tokensPerSecond', 'tflops', 'weightGBps', 'touchedExperts', 'floorMs', 'floorComputeMs',
        'floorWeightsMs', 'ceilings'].sort(),
    );
    expect(measured).toMatchObject({
      preset: 'qwen3-30b-a3b-mini', device: 'cpu', dtype: 'float32', quantization: null, tokens: 1, experts: 128, topK: 8, hidden: 1024, intermediate: 384, sharedIntermediate: 0,
      routing: { method: 'softmax_topk', topK: 8, renormalize: true, numGroups: 1, topkGroups: 1, scalingFactor: 1 }, activation: 'swiglu',
    });
    expect(Object.keys(measured.stageMs as object)).toEqual(['router', 'routing', 'permute', 'expert_up', 'expert_down', 'combine']);
    expect(measured.touchedExperts).toEqual({ expected: expect.closeTo(8, 9), measured: 8 });
    const seconds = (measured.msPerForward as number) / 1e3;
    expect(seconds).toBeGreaterThan(0);
    expect(measured.p10Ms as number).toBeLessThanOrEqual(measured.msPerForward as number);
    expect(measured.p90Ms as number).toBeGreaterThanOrEqual(measured.msPerForward as number);
    expect(measured.tokensPerSecond as number).toBeCloseTo(1 / seconds, 6);
    // 2·T·K·3·H·I for the routed experts + 2·T·H·E for the router, over the median time.
    const flops = 2 * 8 * 3 * 1024 * 384 + 2 * 1024 * 128;
    expect(measured.tflops as number).toBeCloseTo(flops / seconds / 1e12, 9);
    // One token reads its 8 experts' three H×I float32 matrices.
    const weightBytes = 8 * 3 * 1024 * 384 * 4;
    expect(measured.weightGBps as number).toBeCloseTo(weightBytes / seconds / 1e9, 6);
    // The floor: the slower of the FLOPs at the matmul ceiling and the weights at the copy ceiling.
    const ceilings = measured.ceilings as { matmulTflops: number; copyGBps: number };
    expect(measured.floorComputeMs as number).toBeCloseTo((flops / (ceilings.matmulTflops * 1e12)) * 1e3, 9);
    expect(measured.floorWeightsMs as number).toBeCloseTo((weightBytes / (ceilings.copyGBps * 1e9)) * 1e3, 9);
    expect(measured.floorMs).toBe(Math.max(measured.floorComputeMs as number, measured.floorWeightsMs as number));
  });

  it('--quantize fp8 times FP8 experts: the preamble says so, the rows carry it and the floor counts a byte per expert weight', () => {
    const json = path.join(scratchDir(), 'bench.json');
    const result = moekit(['bench', '--preset', 'qwen3-30b-a3b-mini', '--tokens', '1', '--warmup', '0', '--runs', '1', '--json', json, '--quantize', 'fp8']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')[1]).toMatch(/^# cpu \(.+\), float32, experts fp8 \(e4m3, 128x128 block scales, W8A8; 1 byte per weight in the floor\)$/);
    const [row] = JSON.parse(fs.readFileSync(json, 'utf8')) as Record<string, number | string>[];
    expect(row).toMatchObject({ preset: 'qwen3-30b-a3b-mini', quantization: 'fp8', dtype: 'float32' });
    // One token reads its 8 experts' three H×I FP8 matrices: a byte per weight and 4 bytes per 128×128 block.
    const weightBytes = 8 * 3 * 1024 * 384 * (1 + 4 / (128 * 128));
    expect(row!.weightGBps as number).toBeCloseTo(weightBytes / ((row!.msPerForward as number) / 1e3) / 1e9, 6);
    const ceilings = row!.ceilings as unknown as { copyGBps: number };
    expect(row!.floorWeightsMs as number).toBeCloseTo((weightBytes / (ceilings.copyGBps * 1e9)) * 1e3, 9);
  });

  it('--quantize int4 times weight-only experts: the floor counts half a byte per expert weight and its group scales', () => {
    const json = path.join(scratchDir(), 'bench.json');
    const result = moekit(['bench', '--preset', 'qwen3-30b-a3b-mini', '--tokens', '1', '--warmup', '0', '--runs', '1', '--json', json, '--quantize', 'int4', '--group-size', '64']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')[1]).toMatch(/^# cpu \(.+\), float32, experts int4 \(weight-only W4A16; 0\.5 byte per weight and its scale in the floor, group size 64\)$/);
    const [row] = JSON.parse(fs.readFileSync(json, 'utf8')) as Record<string, number | string>[];
    expect(row).toMatchObject({ preset: 'qwen3-30b-a3b-mini', quantization: 'int4', dtype: 'float32' });
    const weightBytes = 8 * 3 * 1024 * 384 * (0.5 + 4 / 64);
    expect(row!.weightGBps as number).toBeCloseTo(weightBytes / ((row!.msPerForward as number) / 1e3) / 1e9, 6);
  });

  it('--from with --compare joins earlier rows with bench/torch_baseline.py\'s, as a Markdown table', () => {
    const dir = scratchDir();
    const moekitJson = path.join(dir, 'moekit.json');
    const torchJson = path.join(dir, 'torch.json');
    fs.writeFileSync(moekitJson, JSON.stringify([{ preset: 'mixtral-8x7b', tokens: 16, msPerForward: 2, tflops: 6.1, floorMs: 1, stageMs: { expert_up: 1.2 } }]));
    const torchRow = { preset: 'mixtral-8x7b', tokens: 16, ms: 1.5, floor_ms: 0.958, tflops: 6.6, matmul_ceiling_tflops: 751, copy_ceiling_tbps: 2.91, gpu: 'NVIDIA H100 80GB HBM3' };
    fs.writeFileSync(torchJson, JSON.stringify([{ ...torchRow, pipeline: 'grouped_mm' }, { ...torchRow, pipeline: 'hf_loop', ms: 2.7 }]));
    const result = moekit(['bench', '--from', moekitJson, '--compare', torchJson]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const table = result.stdout.split('\n').filter((line) => line.startsWith('|'));
    expect(table[0]).toMatch(/^\| preset \| tokens \| moekit ms \| graph ms \| torch _grouped_mm ms \| speed-up \| floor ms \| moekit \/ floor \| TFLOP\/s \| SM MHz \| GEMMs ms \| torch GEMMs ms \| GEMM speed-up \| router ms/);
    expect(table[2]).toBe('| mixtral-8x7b | 16 | 2.000 | — | 1.500 | 0.75× | 1.000 | 2.0× | 6.1 | — | — | — | — | — | — | — | 1.200 | — | — | — | — |');
    expect(table).toHaveLength(3);
  });

  it('--against prints this run beside an earlier one, on the better of eager and graph replay, and names the points that got slower', () => {
    const dir = scratchDir();
    const now = path.join(dir, 'v2.json');
    const before = path.join(dir, 'v1.json');
    const row = (tokens: number, msPerForward: number, graphMsPerForward?: number) => ({ preset: 'mixtral-8x7b', tokens, msPerForward, tflops: 1, ...(graphMsPerForward && { graphMsPerForward }) });
    fs.writeFileSync(now, JSON.stringify([row(1, 0.2, 0.1), row(16, 2), row(128, 5)]));
    fs.writeFileSync(before, JSON.stringify([row(1, 0.3), row(16, 1.6)]));
    const result = moekit(['bench', '--from', now, '--against', before]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const table = result.stdout.split('\n').filter((line) => line.startsWith('|'));
    expect(table).toEqual([
      '| preset | tokens | ms | earlier ms | speed-up |',
      '|---|---|---|---|---|',
      '| mixtral-8x7b | 1 | 0.100 | 0.300 | 3.00× |',
      '| mixtral-8x7b | 16 | 2.000 | 1.600 | 0.80× |',
      '| mixtral-8x7b | 128 | 5.000 | — | — |',
    ]);
    expect(result.stdout).toMatch(/^# slower than the earlier run: mixtral-8x7b at 16 tokens$/m);
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '[1]');
    expectOneLineError(moekit(['bench', '--from', now, '--against', bad]), 1, /bad\.json/);
  });

  it('--compare naming a FIFO is refused at once rather than waited on', () => {
    const fifo = path.join(scratchDir(), 'torch.json');
    makeFifo(fifo);
    expectOneLineError(moekit(['bench', '--compare', fifo], {}, BAD_INPUT_TIMEOUT_MS), 1, /torch\.json: is a FIFO, not a regular file/);
  });

  it('--compare with a file that is not the baseline\'s fails before running, naming it', () => {
    const bad = path.join(scratchDir(), 'bad.json');
    fs.writeFileSync(bad, '{"not": "rows"}');
    expectOneLineError(moekit(['bench', '--compare', bad]), 1, /bad\.json: expected a JSON array of bench\/torch_baseline\.py rows/);
  });
});

describe('moekit bench --shape', () => {
  // Tiny layers: each point is a fraction of a millisecond on the CPU.
  const quick = ['--tokens', '1,4', '--warmup', '0', '--runs', '1'];
  const readRows = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>[];

  it('times each shape after the --preset ones, as preset rows named from its numbers, in the table and the JSON', () => {
    const json = path.join(scratchDir(), 'bench.json');
    const result = moekit(['bench', '--shape', '8,2,64,32,64', '--preset', 'mixtral-8x7b-host', '--shape', '16,4,64,32', '--routing', 'sigmoid_group_topk,4,2', ...quick, '--json', json]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines.filter((line) => /^# (mixtral|shape)/.test(line))).toEqual([
      '# mixtral-8x7b-host: E 8, top-2, H 4096, I 4, softmax_topk, swiglu',
      '# shape-E8-K2-H64-I32-S64: E 8, top-2, H 64, I 32, shared I 64, sigmoid_group_topk (2 of 4 groups), swiglu',
      '# shape-E16-K4-H64-I32: E 16, top-4, H 64, I 32, sigmoid_group_topk (2 of 4 groups), swiglu',
    ]);
    const table = lines.filter((line) => !line.startsWith('#'));
    expect(table.map((line) => line.split(/\s+/).slice(0, 2).join(' '))).toEqual([
      'preset tokens', 'mixtral-8x7b-host 1', 'mixtral-8x7b-host 4', 'shape-E8-K2-H64-I32-S64 1', 'shape-E8-K2-H64-I32-S64 4', 'shape-E16-K4-H64-I32 1', 'shape-E16-K4-H64-I32 4',
    ]);
    // The preset column is wide enough that a shape's row lines up with the header.
    expect(table[3]!.indexOf(' 1 ') + 2).toBe(table[0]!.indexOf('tokens') + 'tokens'.length);
    // The shared expert's stage is timed; the shape without one has none (float32: no fused stage).
    expect(table[3]).toMatch(/ [\d.]+ +[\d.]+ +-$/);
    expect(table[5]).toMatch(/ - +[\d.]+ +-$/);
    const rows = readRows(json);
    expect(rows.map((row) => [row.preset, row.tokens])).toEqual([
      ['mixtral-8x7b-host', 1], ['mixtral-8x7b-host', 4], ['shape-E8-K2-H64-I32-S64', 1], ['shape-E8-K2-H64-I32-S64', 4], ['shape-E16-K4-H64-I32', 1], ['shape-E16-K4-H64-I32', 4],
    ]);
    expect(rows[2]).toMatchObject({
      preset: 'shape-E8-K2-H64-I32-S64', device: 'cpu', dtype: 'float32', quantization: null, experts: 8, topK: 2, hidden: 64, intermediate: 32, sharedIntermediate: 64,
      routing: { method: 'sigmoid_group_topk', topK: 2, renormalize: true, numGroups: 4, topkGroups: 2, scalingFactor: 1 }, activation: 'swiglu',
    });
    expect(rows[4]).toMatchObject({ experts: 16, topK: 4, sharedIntermediate: 0 });
    // 2·T·K·3·H·I routed + 2·T·3·H·S shared + 2·T·H·E router, at one token.
    const flops = 2 * 2 * 3 * 64 * 32 + 2 * 3 * 64 * 64 + 2 * 64 * 8;
    expect(rows[2]!.tflops as number).toBeCloseTo(flops / ((rows[2]!.msPerForward as number) / 1e3) / 1e12, 9);
  });

  it('--activation relu: two H×I matrices per expert in the FLOPs', () => {
    const json = path.join(scratchDir(), 'bench.json');
    const result = moekit(['bench', '--shape', '8,2,64,32', '--activation', 'relu', ...quick, '--json', json]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('# shape-E8-K2-H64-I32: E 8, top-2, H 64, I 32, softmax_topk, relu\n');
    const [row] = readRows(json);
    expect(row).toMatchObject({ preset: 'shape-E8-K2-H64-I32', activation: 'relu' });
    expect(row!.tflops as number).toBeCloseTo((2 * 2 * 2 * 64 * 32 + 2 * 64 * 8) / ((row!.msPerForward as number) / 1e3) / 1e12, 9);
  });

  it.each([
    [['--quantize', 'int8'], 'int8', 1 + (4 * (2 * 32 + 64)) / (3 * 64 * 32)],
    [['--quantize', 'int4', '--group-size', '32'], 'int4', 0.5 + 4 / 32],
  ])('%j quantizes the shapes\' experts as the presets\'', (flags, quantization, bytesPerWeight) => {
    const json = path.join(scratchDir(), 'bench.json');
    const result = moekit(['bench', '--preset', 'mixtral-8x7b-host', '--shape', '8,2,64,32,64', ...quick, ...flags, '--json', json]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const rows = readRows(json);
    expect(rows.map((row) => [row.preset, row.quantization])).toEqual([
      ['mixtral-8x7b-host', quantization], ['mixtral-8x7b-host', quantization], ['shape-E8-K2-H64-I32-S64', quantization], ['shape-E8-K2-H64-I32-S64', quantization],
    ]);
    // One token reads its 2 experts' three H×I matrices at the quantized bytes; the shared
    // expert stays in float32 (weight-only quantization leaves it dense).
    const shape = rows[2]!;
    const weightBytes = (2 * 3 * 64 * 32 + 3 * 64 * 64) * bytesPerWeight;
    expect(shape.weightGBps as number).toBeCloseTo(weightBytes / ((shape.msPerForward as number) / 1e3) / 1e9, 6);
  });

  it('--compare pairs a shape\'s rows with bench/torch_baseline.py --shape rows by name; --html charts it as a preset', () => {
    const dir = scratchDir();
    const moekitJson = path.join(dir, 'moekit.json');
    const torchJson = path.join(dir, 'torch.json');
    const html = path.join(dir, 'bench.html');
    expect(moekit(['bench', '--shape', '8,2,64,32', '--tokens', '1', '--warmup', '0', '--runs', '1', '--json', moekitJson]).code).toBe(0);
    const torchRow = { preset: 'shape-E8-K2-H64-I32', pipeline: 'grouped_mm', tokens: 1, ms: 0.25, floor_ms: 0.001, tflops: 0.1, matmul_ceiling_tflops: 751, copy_ceiling_tbps: 2.91, gpu: 'NVIDIA H100 80GB HBM3' };
    fs.writeFileSync(torchJson, JSON.stringify([torchRow]));
    const result = moekit(['bench', '--from', moekitJson, '--compare', torchJson, '--html', html]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const [row] = readRows(moekitJson);
    const table = result.stdout.split('\n').filter((line) => line.startsWith('| shape-'));
    expect(table).toHaveLength(1);
    expect(table[0]).toMatch(new RegExp(`^\\| shape-E8-K2-H64-I32 \\| 1 \\| ${(row!.msPerForward as number).toFixed(3)} \\| — \\| 0\\.250 \\| [\\d.]+× \\|`));
    expect(fs.readFileSync(html, 'utf8')).toContain('<h2>shape-E8-K2-H64-I32</h2>');
  });
});

describe('moekit bench --html', () => {
  it('writes a page holding every row and says so', () => {
    const html = path.join(scratchDir(), 'bench.html');
    const result = moekit(['bench', '--preset', 'qwen3-30b-a3b-mini', '--tokens', '1,2', '--warmup', '0', '--runs', '1', '--html', html]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe(`# wrote ${html}`);
    const page = fs.readFileSync(html, 'utf8');
    expect(page.match(/<tr class="row">/g)).toHaveLength(2);
    expect(page).toContain('<h2>qwen3-30b-a3b-mini</h2>');
  });
});
