/**
 * What each supported Hugging Face `model_type` means for an MoE block: how to read its
 * config.json into an MoEConfig, which decoder layers are MoE layers, and its tensor names.
 */
import { MoekitError } from '../errors';
import { MODEL_FAMILIES, type ModelFamily, type MoEConfig } from '../layer/config';

type Json = Record<string, unknown>;

function configError(file: string, message: string): never {
  throw new MoekitError('E_CONFIG', `${file}: ${message}`);
}

/** The first of `fields` that is present, as a positive integer. */
function positiveInteger(config: Json, file: string, fields: readonly string[]): number {
  for (const field of fields) {
    const value = config[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      configError(file, `${field} must be a positive integer, got ${JSON.stringify(value)}`);
    }
    return value;
  }
  configError(file, `missing ${fields.length > 1 ? `one of ${fields.join(', ')}` : fields[0]}`);
}

function optionalNumber(config: Json, file: string, field: string, fallback: number): number {
  const value = config[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) configError(file, `${field} must be a number, got ${JSON.stringify(value)}`);
  return value;
}

function optionalBoolean(config: Json, field: string, fallback: boolean): boolean {
  const value = config[field];
  return typeof value === 'boolean' ? value : fallback;
}

export function parseFamily(config: Json, file: string): ModelFamily {
  const modelType = config.model_type;
  if (typeof modelType !== 'string' || !(MODEL_FAMILIES as readonly string[]).includes(modelType)) {
    throw new MoekitError('E_UNSUPPORTED_MODEL', `${file}: model_type ${JSON.stringify(modelType)} is not supported (supported: ${MODEL_FAMILIES.join(', ')})`);
  }
  return modelType as ModelFamily;
}

const EXPERT_COUNT_FIELDS: Readonly<Record<ModelFamily, readonly string[]>> = {
  mixtral: ['num_local_experts'],
  qwen2_moe: ['num_experts'],
  qwen3_moe: ['num_experts', 'num_local_experts'],
  deepseek_v3: ['n_routed_experts'],
  gpt_oss: ['num_local_experts', 'num_experts'],
};

/** Reads an MoE block's configuration from a parsed config.json. */
export function parseMoEConfig(config: Json, file: string): MoEConfig {
  const family = parseFamily(config, file);
  const hiddenSize = positiveInteger(config, file, ['hidden_size']);
  const numExperts = positiveInteger(config, file, EXPERT_COUNT_FIELDS[family]);
  const topK = positiveInteger(config, file, ['num_experts_per_tok']);
  if (topK > numExperts) configError(file, `num_experts_per_tok (${topK}) is larger than the expert count (${numExperts})`);
  const base: MoEConfig = {
    family,
    hiddenSize,
    intermediateSize: 0,
    numExperts,
    routing: { method: 'softmax_topk', topK, renormalize: true, numGroups: 1, topkGroups: 1, scalingFactor: 1 },
    activation: 'swiglu',
    activationAlpha: 1.702,
    activationLimit: 7,
    routerBias: false,
    expertBias: false,
    sharedExpert: null,
  };
  switch (family) {
    case 'mixtral':
      return { ...base, intermediateSize: positiveInteger(config, file, ['intermediate_size']) };
    case 'qwen3_moe':
      return {
        ...base,
        intermediateSize: positiveInteger(config, file, ['moe_intermediate_size']),
        routing: { ...base.routing, renormalize: optionalBoolean(config, 'norm_topk_prob', false) },
      };
    case 'qwen2_moe':
      return {
        ...base,
        intermediateSize: positiveInteger(config, file, ['moe_intermediate_size']),
        routing: { ...base.routing, renormalize: optionalBoolean(config, 'norm_topk_prob', false) },
        sharedExpert: { intermediateSize: positiveInteger(config, file, ['shared_expert_intermediate_size']), gated: true },
      };
    case 'deepseek_v3': {
      const intermediateSize = positiveInteger(config, file, ['moe_intermediate_size']);
      const numGroups = positiveInteger(config, file, ['n_group']);
      const topkGroups = positiveInteger(config, file, ['topk_group']);
      if (numExperts % numGroups !== 0) configError(file, `n_group (${numGroups}) must divide n_routed_experts (${numExperts})`);
      if (topkGroups > numGroups) configError(file, `topk_group (${topkGroups}) is larger than n_group (${numGroups})`);
      const sharedCount = config.n_shared_experts === undefined || config.n_shared_experts === null ? 0 : positiveInteger(config, file, ['n_shared_experts']);
      return {
        ...base,
        intermediateSize,
        routing: {
          method: 'sigmoid_group_topk',
          topK,
          renormalize: optionalBoolean(config, 'norm_topk_prob', true),
          numGroups,
          topkGroups,
          scalingFactor: optionalNumber(config, file, 'routed_scaling_factor', 1),
        },
        sharedExpert: sharedCount > 0 ? { intermediateSize: intermediateSize * sharedCount, gated: false } : null,
      };
    }
    case 'gpt_oss':
      return {
        ...base,
        intermediateSize: positiveInteger(config, file, ['intermediate_size']),
        routing: { ...base.routing, method: 'topk_softmax', renormalize: false },
        activation: 'gptoss_swiglu',
        activationLimit: optionalNumber(config, file, 'swiglu_limit', 7),
        routerBias: true,
        expertBias: true,
      };
  }
}

/**
 * Throws unless decoder layer `layer` has an MoE block: it must exist, and families with dense
 * layers (DeepSeek's first_k_dense_replace, Qwen's mlp_only_layers / decoder_sparse_step) must
 * not have made it a dense MLP.
 */
export function checkMoELayer(config: Json, family: ModelFamily, layer: number, file: string): void {
  const layers = positiveInteger(config, file, ['num_hidden_layers']);
  if (!Number.isSafeInteger(layer) || layer < 0 || layer >= layers) {
    throw new MoekitError('E_INVALID_ARGUMENT', `layer ${layer} does not exist: the model has ${layers} layer(s) (0 to ${layers - 1})`);
  }
  const dense = (reason: string): never => {
    throw new MoekitError('E_INVALID_ARGUMENT', `layer ${layer} is a dense MLP layer, not an MoE layer (${reason})`);
  };
  if (family === 'deepseek_v3') {
    const firstDense = optionalNumber(config, file, 'first_k_dense_replace', 0);
    const frequency = optionalNumber(config, file, 'moe_layer_freq', 1);
    if (layer < firstDense) dense(`first_k_dense_replace is ${firstDense}`);
    if (frequency > 1 && layer % frequency !== 0) dense(`moe_layer_freq is ${frequency}`);
  }
  if (family === 'qwen2_moe' || family === 'qwen3_moe') {
    const mlpOnly = Array.isArray(config.mlp_only_layers) ? (config.mlp_only_layers as unknown[]) : [];
    if (mlpOnly.includes(layer)) dense('listed in mlp_only_layers');
    const step = optionalNumber(config, file, 'decoder_sparse_step', 1);
    if (step > 1 && (layer + 1) % step !== 0) dense(`decoder_sparse_step is ${step}`);
  }
}

/** Tensor names of one MoE block. Per-expert names take the expert index. */
export interface BlockTensorNames {
  router: string;
  routerBias?: string;
  correctionBias?: string;
  /** Per-expert gate, up and down projections ([I, H], [I, H], [H, I]). */
  expert?: { gate(e: number): string; up(e: number): string; down(e: number): string };
  /** gpt-oss: all experts fused, gate/up interleaved ([E, H, 2I] and [E, I, H]) with biases. */
  fused?: { gateUp: string; gateUpBias: string; down: string; downBias: string };
  shared?: { gate: string; up: string; down: string; sharedGate?: string };
}

export function blockTensorNames(family: ModelFamily, layer: number): BlockTensorNames {
  const mlp = `model.layers.${layer}.mlp.`;
  const perExpert = (prefix: string, gate: string, up: string, down: string) => ({
    gate: (e: number) => `${prefix}experts.${e}.${gate}.weight`,
    up: (e: number) => `${prefix}experts.${e}.${up}.weight`,
    down: (e: number) => `${prefix}experts.${e}.${down}.weight`,
  });
  const projections = (prefix: string) => ({ gate: `${prefix}gate_proj.weight`, up: `${prefix}up_proj.weight`, down: `${prefix}down_proj.weight` });
  switch (family) {
    case 'mixtral': {
      const block = `model.layers.${layer}.block_sparse_moe.`;
      return { router: `${block}gate.weight`, expert: perExpert(block, 'w1', 'w3', 'w2') };
    }
    case 'qwen3_moe':
      return { router: `${mlp}gate.weight`, expert: perExpert(mlp, 'gate_proj', 'up_proj', 'down_proj') };
    case 'qwen2_moe':
      return {
        router: `${mlp}gate.weight`,
        expert: perExpert(mlp, 'gate_proj', 'up_proj', 'down_proj'),
        shared: { ...projections(`${mlp}shared_expert.`), sharedGate: `${mlp}shared_expert_gate.weight` },
      };
    case 'deepseek_v3':
      return {
        router: `${mlp}gate.weight`,
        correctionBias: `${mlp}gate.e_score_correction_bias`,
        expert: perExpert(mlp, 'gate_proj', 'up_proj', 'down_proj'),
        shared: projections(`${mlp}shared_experts.`),
      };
    case 'gpt_oss':
      return {
        router: `${mlp}router.weight`,
        routerBias: `${mlp}router.bias`,
        fused: {
          gateUp: `${mlp}experts.gate_up_proj`,
          gateUpBias: `${mlp}experts.gate_up_proj_bias`,
          down: `${mlp}experts.down_proj`,
          downBias: `${mlp}experts.down_proj_bias`,
        },
      };
  }
}
