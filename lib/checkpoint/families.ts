/**
 * What each supported Hugging Face `model_type` means for an MoE block: how its config.json reads
 * as an MoEConfig, which decoder layers are MoE layers, and the block's tensor names.
 *
 * A field that config.json leaves out means what transformers' config class takes it to mean, so
 * moekit computes what transformers would; sizes and counts have no sensible default and are
 * required.
 */
import { describeValue, MoekitError } from '../errors';
import { MODEL_FAMILIES, type ActivationKind, type ModelFamily } from '../vocabulary';
import { groupLimitedExperts } from '../ops/routing';
import { type MoEConfig } from '../model/config';
import { FLOAT32_MAX } from '../dtype';
import type { ExpertQuantization } from '../ops/quantized';

/** A parsed config.json. */
export type ConfigJson = Readonly<Record<string, unknown>>;

/** An MoEConfig read from a checkpoint, so its family is a real one. */
export type CheckpointMoEConfig = MoEConfig & { family: ModelFamily };

function configError(file: string, message: string): never {
  throw new MoekitError('E_CONFIG', `${file}: ${message}`);
}

function isAbsent(value: unknown): boolean {
  return value === undefined || value === null;
}

function checkInteger(file: string, field: string, value: unknown, minimum: 0 | 1): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < minimum) {
    configError(file, `${field} must be ${minimum === 1 ? 'a positive' : 'a non-negative'} integer, got ${describeValue(value)}`);
  }
  return value;
}

/** The first of `fields` that is present, as a positive integer; sizes and counts are required. */
function positiveInteger(config: ConfigJson, file: string, fields: readonly string[]): number {
  const field = fields.find((name) => !isAbsent(config[name]));
  if (field === undefined) configError(file, `missing ${fields.length > 1 ? `one of ${fields.join(', ')}` : fields[0]}`);
  return checkInteger(file, field, config[field], 1);
}

function optionalInteger(config: ConfigJson, file: string, field: string, minimum: 0 | 1, fallback: number): number {
  const value = config[field];
  return isAbsent(value) ? fallback : checkInteger(file, field, value, minimum);
}

// A float the kernels take as float32, at least `min`.
function optionalNumber(config: ConfigJson, file: string, field: string, fallback: number, min = -FLOAT32_MAX): number {
  const value = config[field];
  if (isAbsent(value)) return fallback;
  if (typeof value !== 'number' || !(Math.abs(value) <= FLOAT32_MAX)) {
    configError(file, `${field} must be a finite number within float32's range, got ${describeValue(value)}`);
  }
  if (value < min) configError(file, `${field} must be at least ${min}, got ${describeValue(value)}`);
  return value;
}

function optionalBoolean(config: ConfigJson, file: string, field: string, fallback: boolean): boolean {
  const value = config[field];
  if (isAbsent(value)) return fallback;
  if (typeof value !== 'boolean') configError(file, `${field} must be true or false, got ${describeValue(value)}`);
  return value;
}

export function parseFamily(config: ConfigJson, file: string): ModelFamily {
  const modelType = config.model_type;
  if (typeof modelType !== 'string' || !(MODEL_FAMILIES as readonly string[]).includes(modelType)) {
    throw new MoekitError('E_UNSUPPORTED_MODEL', `${file}: model_type ${describeValue(modelType)} is not supported (supported: ${MODEL_FAMILIES.join(', ')})`);
  }
  return modelType as ModelFamily;
}

/** Where each family keeps its expert count; checkpoints in the wild use either name for some. */
const EXPERT_COUNT_FIELDS: Readonly<Record<ModelFamily, readonly string[]>> = {
  mixtral: ['num_local_experts'],
  qwen2_moe: ['num_experts'],
  qwen3_moe: ['num_experts', 'num_local_experts'],
  deepseek_v3: ['n_routed_experts'],
  gpt_oss: ['num_local_experts', 'num_experts'],
};

/** gpt-oss's original config calls top-k experts_per_token. */
const TOP_K_FIELDS: Readonly<Record<ModelFamily, readonly string[]>> = {
  mixtral: ['num_experts_per_tok'],
  qwen2_moe: ['num_experts_per_tok'],
  qwen3_moe: ['num_experts_per_tok'],
  deepseek_v3: ['num_experts_per_tok'],
  gpt_oss: ['num_experts_per_tok', 'experts_per_token'],
};

/** hidden_act values of the gated families and the activation moekit computes for each. */
const GATED_ACTIVATIONS_BY_NAME: Readonly<Record<string, ActivationKind>> = {
  silu: 'swiglu',
  swish: 'swiglu',
  gelu_pytorch_tanh: 'geglu',
  gelu_new: 'geglu',
};

function gatedActivation(config: ConfigJson, file: string): ActivationKind {
  const name = config.hidden_act ?? 'silu';
  if (typeof name !== 'string' || !Object.hasOwn(GATED_ACTIVATIONS_BY_NAME, name)) {
    configError(file, `hidden_act ${describeValue(name)} is not supported (supported: ${Object.keys(GATED_ACTIVATIONS_BY_NAME).join(', ')})`);
  }
  return GATED_ACTIVATIONS_BY_NAME[name]!;
}

function unsupportedQuantization(file: string, message: string): never {
  throw new MoekitError('E_UNSUPPORTED_MODEL', `${file}: ${message}`);
}

/**
 * quantization_config: absent for a 16-bit checkpoint; moekit reads the FP8 block-scale layout of
 * DeepSeek-V3 and Qwen3-FP8 (quant_method fp8, e4m3, weight_block_size [128, 128], dynamic
 * activation scales) and gpt-oss's MXFP4 experts (quant_method mxfp4). Anything else is
 * E_UNSUPPORTED_MODEL, saying what is supported.
 */
export function parseQuantization(config: ConfigJson, file: string): ExpertQuantization | null {
  const raw = config.quantization_config;
  if (isAbsent(raw)) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) configError(file, `quantization_config must be an object, got ${describeValue(raw)}`);
  const { quant_method: method, weight_block_size: block, activation_scheme: scheme, fmt } = raw as Record<string, unknown>;
  if (method === 'mxfp4') return 'mxfp4';
  if (method !== 'fp8') {
    unsupportedQuantization(file, `quantization_config.quant_method ${describeValue(method)} is not supported (supported: fp8, the FP8 block-scale layout of DeepSeek-V3 and Qwen3-FP8; mxfp4, gpt-oss's experts as published)`);
  }
  if (!Array.isArray(block) || block.length !== 2 || block[0] !== 128 || block[1] !== 128) {
    const shortNumbers = Array.isArray(block) && block.length <= 4 && block.every((extent) => typeof extent === 'number');
    const given = isAbsent(block) ? 'is missing, which' : shortNumbers ? `[${block.join(', ')}]` : describeValue(block);
    unsupportedQuantization(file, `quantization_config.weight_block_size ${given} is not supported (FP8 weights are read with one scale per 128×128 block: [128, 128])`);
  }
  if (!isAbsent(scheme) && scheme !== 'dynamic') {
    unsupportedQuantization(file, `quantization_config.activation_scheme ${describeValue(scheme)} is not supported (activations are quantized dynamically, per token per 128 channels: "dynamic")`);
  }
  if (!isAbsent(fmt) && fmt !== 'e4m3') unsupportedQuantization(file, `quantization_config.fmt ${describeValue(fmt)} is not supported (supported: e4m3)`);
  return 'fp8';
}

/** What all families share; each family's parser overrides the rest. */
function commonConfig(config: ConfigJson, file: string, family: ModelFamily): CheckpointMoEConfig {
  const numExperts = positiveInteger(config, file, EXPERT_COUNT_FIELDS[family]);
  const topK = positiveInteger(config, file, TOP_K_FIELDS[family]);
  if (topK > numExperts) configError(file, `num_experts_per_tok (${topK}) is larger than the expert count (${numExperts})`);
  return {
    family,
    hiddenSize: positiveInteger(config, file, ['hidden_size']),
    intermediateSize: 0,
    numExperts,
    routing: { method: 'softmax_topk', topK, renormalize: true, numGroups: 1, topkGroups: 1, scalingFactor: 1 },
    activation: 'swiglu',
    activationAlpha: 1.702,
    activationLimit: 7,
    routerBias: false,
    expertBias: false,
    sharedExpert: null,
    quantization: parseQuantization(config, file),
  };
}

/** Mixtral: softmax over all experts, top-k, always renormalized. */
function mixtralConfig(config: ConfigJson, file: string, base: CheckpointMoEConfig): CheckpointMoEConfig {
  return { ...base, intermediateSize: positiveInteger(config, file, ['intermediate_size']), activation: gatedActivation(config, file) };
}

/** Qwen2/3-MoE: like Mixtral, renormalized only with norm_topk_prob; Qwen2 adds a gated shared expert. */
function qwenConfig(config: ConfigJson, file: string, base: CheckpointMoEConfig): CheckpointMoEConfig {
  const qwen: CheckpointMoEConfig = {
    ...base,
    intermediateSize: positiveInteger(config, file, ['moe_intermediate_size']),
    routing: { ...base.routing, renormalize: optionalBoolean(config, file, 'norm_topk_prob', false) },
    activation: gatedActivation(config, file),
  };
  if (base.family !== 'qwen2_moe') return qwen;
  return { ...qwen, sharedExpert: { intermediateSize: positiveInteger(config, file, ['shared_expert_intermediate_size']), gated: true } };
}

/** DeepSeek-V3: sigmoid scores, group-limited top-k, scaled weights; n_shared_experts ungated shared experts fused into one. */
function deepseekConfig(config: ConfigJson, file: string, base: CheckpointMoEConfig): CheckpointMoEConfig {
  const intermediateSize = positiveInteger(config, file, ['moe_intermediate_size']);
  const numGroups = positiveInteger(config, file, ['n_group']);
  const topkGroups = positiveInteger(config, file, ['topk_group']);
  if (base.numExperts % numGroups !== 0) configError(file, `n_group (${numGroups}) must divide n_routed_experts (${base.numExperts})`);
  if (topkGroups > numGroups) configError(file, `topk_group (${topkGroups}) is larger than n_group (${numGroups})`);
  const eligible = groupLimitedExperts(base.numExperts, numGroups, topkGroups);
  if (base.routing.topK > eligible) {
    configError(file, `num_experts_per_tok (${base.routing.topK}) is larger than the ${eligible} experts that topk_group (${topkGroups}) of n_group (${numGroups}) leave eligible (topk_group × n_routed_experts / n_group = ${topkGroups} × ${base.numExperts} / ${numGroups})`);
  }
  const sharedCount = optionalInteger(config, file, 'n_shared_experts', 0, 1);
  return {
    ...base,
    intermediateSize,
    routing: {
      method: 'sigmoid_group_topk',
      topK: base.routing.topK,
      renormalize: optionalBoolean(config, file, 'norm_topk_prob', true),
      numGroups,
      topkGroups,
      scalingFactor: optionalNumber(config, file, 'routed_scaling_factor', 2.5),
    },
    activation: gatedActivation(config, file),
    sharedExpert: sharedCount > 0 ? { intermediateSize: intermediateSize * sharedCount, gated: false } : null,
  };
}

/** gpt-oss: top-k on logits then softmax over the k; clamped SwiGLU; biases on router and experts. */
function gptOssConfig(config: ConfigJson, file: string, base: CheckpointMoEConfig): CheckpointMoEConfig {
  return {
    ...base,
    intermediateSize: positiveInteger(config, file, ['intermediate_size']),
    routing: { ...base.routing, method: 'topk_softmax', renormalize: false },
    activation: 'gptoss_swiglu',
    activationLimit: optionalNumber(config, file, 'swiglu_limit', 7, 0),
    routerBias: true,
    expertBias: true,
  };
}

const FAMILY_CONFIGS: Readonly<Record<ModelFamily, (config: ConfigJson, file: string, base: CheckpointMoEConfig) => CheckpointMoEConfig>> = {
  mixtral: mixtralConfig,
  qwen2_moe: qwenConfig,
  qwen3_moe: qwenConfig,
  deepseek_v3: deepseekConfig,
  gpt_oss: gptOssConfig,
};

/** Reads an MoE block's configuration from a parsed config.json (`file` names it in errors). */
export function parseMoEConfig(config: ConfigJson, file: string): CheckpointMoEConfig {
  const family = parseFamily(config, file);
  return FAMILY_CONFIGS[family](config, file, commonConfig(config, file, family));
}

function layerList(config: ConfigJson, file: string, field: string): number[] {
  const value = config[field];
  if (isAbsent(value)) return [];
  if (!Array.isArray(value) || !value.every((layer) => Number.isSafeInteger(layer))) {
    configError(file, `${field} must be a list of layer numbers, got ${describeValue(value)}`);
  }
  return value as number[];
}

/** Why decoder layer `layer` is a dense MLP rather than an MoE block, or null when it is an MoE block. */
function denseLayerReason(config: ConfigJson, file: string, family: ModelFamily, layer: number): string | null {
  if (family === 'deepseek_v3') {
    // transformers' DeepseekV3Config defaults to three dense layers.
    const firstDense = optionalInteger(config, file, 'first_k_dense_replace', 0, 3);
    const frequency = optionalInteger(config, file, 'moe_layer_freq', 1, 1);
    if (layer < firstDense) return `first_k_dense_replace is ${firstDense}`;
    if (layer % frequency !== 0) return `moe_layer_freq is ${frequency}`;
  }
  if (family === 'qwen2_moe' || family === 'qwen3_moe') {
    if (layerList(config, file, 'mlp_only_layers').includes(layer)) return 'listed in mlp_only_layers';
    const step = optionalInteger(config, file, 'decoder_sparse_step', 1, 1);
    if ((layer + 1) % step !== 0) return `decoder_sparse_step is ${step}`;
  }
  return null;
}

/**
 * Throws E_INVALID_ARGUMENT unless decoder layer `layer` exists and has an MoE block (families with
 * dense layers: DeepSeek's first_k_dense_replace / moe_layer_freq, Qwen's mlp_only_layers /
 * decoder_sparse_step).
 */
export function checkMoELayer(config: ConfigJson, family: ModelFamily, layer: number, file: string): void {
  const layers = positiveInteger(config, file, ['num_hidden_layers']);
  if (!Number.isSafeInteger(layer) || layer < 0 || layer >= layers) {
    throw new MoekitError('E_INVALID_ARGUMENT', `layer ${describeValue(layer)} does not exist: the model has ${layers} layer(s) (0 to ${layers - 1})`);
  }
  const reason = denseLayerReason(config, file, family, layer);
  if (reason !== null) {
    throw new MoekitError('E_INVALID_ARGUMENT', `layer ${layer} is a dense MLP layer, not an MoE layer (${reason})`);
  }
}

/** Where a block keeps its experts' weights. */
export type ExpertTensorNames =
  /** One tensor per expert and projection: gate [I, H], up [I, H], down [H, I]. */
  | { layout: 'per_expert'; gate(expert: number): string; up(expert: number): string; down(expert: number): string }
  /**
   * gpt-oss: all experts in one tensor per projection, stored for x · W: gateUp [E, H, 2I] with gate
   * and up interleaved (even and odd columns), gateUpBias [E, 2I] likewise, down [E, I, H], downBias [E, H].
   */
  | { layout: 'fused_interleaved'; gateUp: string; gateUpBias: string; down: string; downBias: string };

/** Tensor names of one MoE block. */
export interface BlockTensorNames {
  /** [E, H] */
  router: string;
  /** [E] (gpt-oss) */
  routerBias?: string;
  /** [E] (DeepSeek-V3) */
  correctionBias?: string;
  experts: ExpertTensorNames;
  /** [Is, H], [Is, H], [H, Is], and Qwen2's sigmoid gate [1, H]. */
  shared?: { gate: string; up: string; down: string; sharedGate?: string };
}

function perExpertNames(prefix: string, gate: string, up: string, down: string): ExpertTensorNames {
  return {
    layout: 'per_expert',
    gate: (expert) => `${prefix}experts.${expert}.${gate}.weight`,
    up: (expert) => `${prefix}experts.${expert}.${up}.weight`,
    down: (expert) => `${prefix}experts.${expert}.${down}.weight`,
  };
}

function projectionNames(prefix: string): { gate: string; up: string; down: string } {
  return { gate: `${prefix}gate_proj.weight`, up: `${prefix}up_proj.weight`, down: `${prefix}down_proj.weight` };
}

export function blockTensorNames(family: ModelFamily, layer: number): BlockTensorNames {
  const mlp = `model.layers.${layer}.mlp.`;
  switch (family) {
    case 'mixtral': {
      const block = `model.layers.${layer}.block_sparse_moe.`;
      return { router: `${block}gate.weight`, experts: perExpertNames(block, 'w1', 'w3', 'w2') };
    }
    case 'qwen3_moe':
      return { router: `${mlp}gate.weight`, experts: perExpertNames(mlp, 'gate_proj', 'up_proj', 'down_proj') };
    case 'qwen2_moe':
      return {
        router: `${mlp}gate.weight`,
        experts: perExpertNames(mlp, 'gate_proj', 'up_proj', 'down_proj'),
        shared: { ...projectionNames(`${mlp}shared_expert.`), sharedGate: `${mlp}shared_expert_gate.weight` },
      };
    case 'deepseek_v3':
      return {
        router: `${mlp}gate.weight`,
        correctionBias: `${mlp}gate.e_score_correction_bias`,
        experts: perExpertNames(mlp, 'gate_proj', 'up_proj', 'down_proj'),
        shared: projectionNames(`${mlp}shared_experts.`),
      };
    case 'gpt_oss':
      return {
        router: `${mlp}router.weight`,
        routerBias: `${mlp}router.bias`,
        experts: {
          layout: 'fused_interleaved',
          gateUp: `${mlp}experts.gate_up_proj`,
          gateUpBias: `${mlp}experts.gate_up_proj_bias`,
          down: `${mlp}experts.down_proj`,
          downBias: `${mlp}experts.down_proj_bias`,
        },
      };
  }
}
