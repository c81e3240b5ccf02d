/**
 * Property: a checkpoint whose config.json is mutated (fields of the wrong type, negative, zero or
 * huge sizes, missing fields, strings that look like numbers, nested junk, text that is not JSON,
 * files that are not files) either loads, through readMoEConfig (dist/checkpoint/load.js) and
 * MoELayer.fromPretrained, or fails with a MoekitError of a config/checkpoint code; never another
 * error, never a hang. A layer that loads runs a 1-token forward on the CPU with finite output and
 * k distinct expert ids in range.
 *
 * The checkpoints are scratch copies of the fixtures in ../shared/fixtures/hf-moe (one per model
 * family); each case rewrites one copy's config.json.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as fc from 'fast-check';

import type { MoekitApi, MoekitBuild } from '../harness/moekit';
import { fixturesDir } from '../harness/paths';
import { defineProperty } from '../harness/property';
import { errorText } from '../harness/protocol';
import { renderValue } from './render';
import { JSON_JUNK_VALUES, JUNK_VALUES, toJsonText } from './values';

const FAMILIES = ['mixtral', 'qwen2_moe', 'qwen3_moe', 'deepseek_v3', 'gpt_oss'] as const;
type Family = (typeof FAMILIES)[number];

/** Every config.json field some family reads, and a few none does. */
const FIELDS = [
  'model_type', 'hidden_size', 'intermediate_size', 'moe_intermediate_size', 'shared_expert_intermediate_size',
  'num_local_experts', 'num_experts', 'n_routed_experts', 'num_experts_per_tok', 'experts_per_token', 'norm_topk_prob',
  'hidden_act', 'n_group', 'topk_group', 'n_shared_experts', 'routed_scaling_factor', 'swiglu_limit',
  'num_hidden_layers', 'first_k_dense_replace', 'moe_layer_freq', 'mlp_only_layers', 'decoder_sparse_step',
  '__proto__', 'constructor', '',
];

/** A field set to a value, or removed. */
type ConfigEdit = { field: string; value: unknown } | { field: string; remove: true };

type ConfigSource =
  /** The fixture's config with edits. */
  | { kind: 'edited'; edits: ConfigEdit[] }
  /** config.json replaced by this text. */
  | { kind: 'text'; text: string }
  /** Something that is no readable config.json, or no checkpoint folder. */
  | { kind: 'special'; what: 'no-config' | 'config-is-folder' | 'config-is-fifo' | 'config-loop' | 'folder-loop' | 'folder-is-file' | 'no-folder' }
  /** No path at all: this value is passed as the folder. */
  | { kind: 'not-a-path'; value: unknown };

export interface ConfigCase {
  family: Family;
  config: ConfigSource;
  /** fromPretrained's `layer` and `dtype` options (undefined: left out). */
  layer: unknown;
  dtype: unknown;
  /** When present, fromPretrained's whole options argument is this value instead (null, a number, left out...). */
  options?: { value: unknown };
}

/** Values a field may take: plausible ones (small integers, edges, the names moekit knows) and junk. */
const fieldValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom(64, 96, 192, 80, 8, 16, 2, 4, 1, -1, 0, 2.5, 1e30, 1e38, -1e30) },
  { weight: 1, arbitrary: fc.constantFrom('silu', 'swish', 'gelu_pytorch_tanh', 'gelu_new', 'relu', 'mixtral', 'qwen2_moe', 'qwen3_moe', 'deepseek_v3', 'gpt_oss', 'llama') },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 3, arbitrary: fc.constantFrom(...JSON_JUNK_VALUES) },
);

const configEdit: fc.Arbitrary<ConfigEdit> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ field: fc.constantFrom(...FIELDS), value: fieldValue }) },
  { weight: 1, arbitrary: fc.record({ field: fc.constantFrom(...FIELDS), remove: fc.constant(true as const) }) },
);

const CONFIG_TEXTS = ['', ' ', '{', '}', 'null', '[]', '42', '"mixtral"', 'NaN', '{"model_type": "mixtral",}', '\uFEFF{"model_type": "mixtral"}', '{"model_type": "mixtral"} trailing'];

const configSource: fc.Arbitrary<ConfigSource> = fc.oneof(
  { weight: 16, arbitrary: fc.record({ kind: fc.constant('edited' as const), edits: fc.array(configEdit, { maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('text' as const), text: fc.oneof(fc.constantFrom(...CONFIG_TEXTS), fc.string({ maxLength: 12 })) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('special' as const),
      what: fc.constantFrom('no-config' as const, 'config-is-folder' as const, 'config-is-fifo' as const, 'config-loop' as const, 'folder-loop' as const, 'folder-is-file' as const, 'no-folder' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('not-a-path' as const), value: fc.constantFrom(...JUNK_VALUES) }) },
);

const configCases: fc.Arbitrary<ConfigCase> = fc.record({
  family: fc.constantFrom(...FAMILIES),
  config: configSource,
  layer: fc.oneof({ weight: 10, arbitrary: fc.constant<unknown>(0) }, { weight: 1, arbitrary: fc.constantFrom(1, -1, 0.5, '0', ...JUNK_VALUES) }),
  dtype: fc.oneof(
    { weight: 6, arbitrary: fc.constant<unknown>(undefined) },
    { weight: 3, arbitrary: fc.constantFrom('float32', 'bfloat16', 'float16') },
    { weight: 1, arbitrary: fc.constantFrom('int32', 'f32', ...JUNK_VALUES) },
  ),
  options: fc.option(fc.record({ value: fc.constantFrom(...JUNK_VALUES) }), { nil: undefined, freq: 20 }),
});

// ---- Checking -------------------------------------------------------------------------------

class PropertyViolation extends Error {}

/** Codes a bad config or checkpoint (or bad options) may earn. */
const LOAD_ERROR_CODES: readonly string[] = ['E_CONFIG', 'E_UNSUPPORTED_MODEL', 'E_INVALID_ARGUMENT', 'E_NOT_FOUND', 'E_CHECKPOINT', 'E_SAFETENSORS', 'E_DTYPE'];

function requireLoadError(api: MoekitApi, error: unknown, what: string): void {
  if (!(error instanceof api.MoekitError)) throw new PropertyViolation(`${what} failed with an error that is not a MoekitError: ${errorText(error)}`);
  if (!LOAD_ERROR_CODES.includes(error.code)) throw new PropertyViolation(`${what} failed with ${error.code}, not a config/checkpoint code: ${error.message}`);
}

/** The edited config.json text: the fixture's fields in order, edits applied (an edited field moves last). */
export function editedConfigText(base: Record<string, unknown>, edits: readonly ConfigEdit[]): string {
  let entries = Object.entries(base);
  for (const edit of edits) {
    entries = entries.filter(([field]) => field !== edit.field);
    if (!('remove' in edit)) entries.push([edit.field, edit.value]);
  }
  return `{${entries.map(([field, value]) => `${JSON.stringify(field)}:${toJsonText(value)}`).join(',')}}`;
}

/** A 1-token forward on the CPU: finite output, and k distinct expert ids that are experts. */
async function checkForward(api: MoekitApi, layer: MoekitApi['MoELayer']['prototype']): Promise<void> {
  const { hiddenSize, numExperts } = layer.config;
  const x = api.Tensor.random([1, hiddenSize], { dtype: layer.dtype, seed: 1 });
  try {
    const result = layer.forward(x);
    try {
      const output = await result.output.toFloat32Array();
      // A 16-bit layer may overflow to ±Infinity when the config's numbers are huge (a scaling
      // factor of 1e15 is within float32's range): flagged, not garbage. NaN never is allowed.
      const overflowAllowed = layer.dtype !== 'float32';
      const bad = output.findIndex((value) => Number.isNaN(value) || (!overflowAllowed && !Number.isFinite(value)));
      if (bad >= 0) throw new PropertyViolation(`the loaded layer's forward gave output[${bad}] = ${output[bad]} (config ${JSON.stringify(layer.config)})`);
      const ids = Array.from(await result.topkIds.toArray());
      const badId = ids.find((id) => id < 0 || id >= numExperts);
      if (badId !== undefined) throw new PropertyViolation(`the loaded layer routed to expert ${badId} of ${numExperts}`);
      // One token: its k experts must be k different ones.
      if (new Set(ids).size !== ids.length) throw new PropertyViolation(`the loaded layer routed the token to the same expert twice: [${ids.join(', ')}]`);
    } finally {
      result.dispose();
    }
  } finally {
    x.dispose();
  }
}

interface Checkpoints {
  /** One writable copy per family. */
  folders: Record<Family, string>;
  /** The fixtures' config.json, parsed. */
  configs: Record<Family, Record<string, unknown>>;
  scratchDir: string;
}

/** Copies each fixture's files into the scratch folder (config.json is rewritten per case). */
function copyFixtures(scratchDir: string): Checkpoints {
  const folders = {} as Record<Family, string>;
  const configs = {} as Record<Family, Record<string, unknown>>;
  for (const family of FAMILIES) {
    const source = path.join(fixturesDir(), family);
    if (!fs.existsSync(source)) throw new Error(`config property: no fixture at ${source} (set MOEKIT_FUZZ_FIXTURES)`);
    const folder = path.join(scratchDir, family);
    fs.mkdirSync(folder);
    for (const file of fs.readdirSync(source)) fs.copyFileSync(path.join(source, file), path.join(folder, file));
    fs.chmodSync(path.join(folder, 'config.json'), 0o644);
    folders[family] = folder;
    configs[family] = JSON.parse(fs.readFileSync(path.join(source, 'config.json'), 'utf8')) as Record<string, unknown>;
  }
  return { folders, configs, scratchDir };
}

/** Puts the case's config.json in place; returns the folder to load from (a path, or junk for one). */
function prepareFolder(checkpoints: Checkpoints, testCase: ConfigCase): unknown {
  const folder = checkpoints.folders[testCase.family];
  const configFile = path.join(folder, 'config.json');
  fs.rmSync(configFile, { recursive: true, force: true });
  const { config } = testCase;
  switch (config.kind) {
    case 'edited':
      fs.writeFileSync(configFile, editedConfigText(checkpoints.configs[testCase.family], config.edits));
      return folder;
    case 'text':
      fs.writeFileSync(configFile, config.text);
      return folder;
    case 'special':
      return prepareSpecial(checkpoints, folder, configFile, config.what);
    case 'not-a-path':
      return config.value;
  }
}

function prepareSpecial(checkpoints: Checkpoints, folder: string, configFile: string, what: Extract<ConfigSource, { kind: 'special' }>['what']): string {
  const elsewhere = path.join(checkpoints.scratchDir, 'special');
  fs.rmSync(elsewhere, { recursive: true, force: true });
  switch (what) {
    case 'no-config':
      return folder;
    case 'config-is-folder':
      fs.mkdirSync(configFile);
      return folder;
    case 'config-is-fifo':
      // No writer ever opens it: reading it waits forever unless the loader checks what it is first.
      execFileSync('mkfifo', [configFile]);
      return folder;
    case 'config-loop':
      fs.symlinkSync(configFile, configFile);
      return folder;
    case 'folder-loop':
      fs.symlinkSync(elsewhere, elsewhere);
      return elsewhere;
    case 'folder-is-file':
      fs.writeFileSync(elsewhere, '{}');
      return elsewhere;
    case 'no-folder':
      return elsewhere;
  }
}

async function checkCase(build: MoekitBuild, checkpoints: Checkpoints, testCase: ConfigCase): Promise<void> {
  const { api, checkpoint } = build;
  const folder = prepareFolder(checkpoints, testCase) as string;
  try {
    checkpoint.readMoEConfig(folder, testCase.layer as number);
  } catch (error) {
    requireLoadError(api, error, 'readMoEConfig');
  }
  let layer: MoekitApi['MoELayer']['prototype'];
  try {
    const options = testCase.options ? testCase.options.value : { layer: testCase.layer, device: 'cpu', ...(testCase.dtype !== undefined && { dtype: testCase.dtype }) };
    layer = await api.MoELayer.fromPretrained(folder, options as Parameters<MoekitApi['MoELayer']['fromPretrained']>[1]);
  } catch (error) {
    requireLoadError(api, error, 'MoELayer.fromPretrained');
    return;
  }
  try {
    await checkForward(api, layer);
  } finally {
    layer.dispose();
  }
}

function describeCase(testCase: ConfigCase): string {
  const { config } = testCase;
  let what: string;
  if (config.kind === 'edited') {
    const edits = config.edits.map((edit) => ('remove' in edit ? `delete ${JSON.stringify(edit.field)}` : `${JSON.stringify(edit.field)}: ${renderValue(edit.value)}`));
    what = `config.json of the ${testCase.family} fixture with ${edits.length === 0 ? 'no edits' : edits.join(', ')}`;
  } else if (config.kind === 'text') {
    what = `config.json = ${JSON.stringify(config.text)} in the ${testCase.family} fixture`;
  } else if (config.kind === 'special') {
    what = `${config.what} (${testCase.family} fixture)`;
  } else {
    what = `not a path: ${renderValue(config.value)}`;
  }
  const options = testCase.options
    ? renderValue(testCase.options.value)
    : `{ layer: ${renderValue(testCase.layer)}${testCase.dtype === undefined ? '' : `, dtype: ${renderValue(testCase.dtype)}`} }`;
  return `MoELayer.fromPretrained(<${what}>, ${options})`;
}

export const configProperty = defineProperty<ConfigCase>(({ moekit, scratchDir }) => {
  const checkpoints = copyFixtures(scratchDir);
  return {
    arbitrary: configCases,
    describe: describeCase,
    check: (testCase) => checkCase(moekit, checkpoints, testCase),
  };
});
