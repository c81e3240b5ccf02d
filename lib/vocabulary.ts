/**
 * The words every layer of moekit uses, each defined once, below everything that uses them (ops,
 * model configs, checkpoints, layers, the CLI). Where native code has the same word, the table
 * gives its code (native/core/op_args.h); test/vocabulary.test.ts checks those against the codes
 * the addon exports.
 */

/** The checkpoint families moekit reads (Hugging Face `model_type`). */
export type ModelFamily = 'mixtral' | 'qwen2_moe' | 'qwen3_moe' | 'deepseek_v3' | 'gpt_oss';
export const MODEL_FAMILIES: readonly ModelFamily[] = ['mixtral', 'qwen2_moe', 'qwen3_moe', 'deepseek_v3', 'gpt_oss'];

/** Each routing method's code (native RoutingMethod). */
export const ROUTING_METHOD_CODES = { softmax_topk: 0, topk_softmax: 1, sigmoid_group_topk: 2 } as const;

/**
 * How router logits become top-k experts and weights (semantics in native/core/op_args.h):
 * - 'softmax_topk': softmax over all experts, top-k, optionally renormalized (Mixtral, Qwen).
 * - 'topk_softmax': top-k logits, softmax over the k (gpt-oss; TensorRT-LLM's RENORM).
 * - 'sigmoid_group_topk': sigmoid scores + correction bias, group-limited top-k (DeepSeek-V3).
 */
export type RoutingMethod = keyof typeof ROUTING_METHOD_CODES;
export const ROUTING_METHODS = Object.keys(ROUTING_METHOD_CODES) as readonly RoutingMethod[];

/** Each activation's code (native ActivationKind) and whether it is gated. */
const ACTIVATIONS_TABLE = {
  swiglu: { code: 0, gated: true },
  geglu: { code: 1, gated: true },
  gptoss_swiglu: { code: 2, gated: true },
  silu: { code: 3, gated: false },
  gelu: { code: 4, gated: false },
  relu: { code: 5, gated: false },
} as const;

/**
 * The expert MLP's activation. Gated kinds read a [rows, 2I] input (gate and up halves):
 * 'swiglu' = silu(gate)·up, 'geglu' = gelu_tanh(gate)·up, 'gptoss_swiglu' = gpt-oss's clamped form.
 * Non-gated kinds ('silu', 'gelu', 'relu') read [rows, I].
 */
export type ActivationKind = keyof typeof ACTIVATIONS_TABLE;
export const ACTIVATIONS = Object.keys(ACTIVATIONS_TABLE) as readonly ActivationKind[];
export const ACTIVATION_CODES = Object.fromEntries(ACTIVATIONS.map((kind) => [kind, ACTIVATIONS_TABLE[kind].code])) as Readonly<Record<ActivationKind, number>>;
export const GATED_ACTIVATIONS = ACTIVATIONS.filter((kind) => ACTIVATIONS_TABLE[kind].gated);

export function isGated(kind: ActivationKind): boolean {
  return ACTIVATIONS_TABLE[kind].gated;
}

/** Where gate and up columns sit in a gated input [M, 2I]; codes of native GateLayout. */
export const GATE_LAYOUT_CODES = { halves: 0, interleaved: 1 } as const;
export type GateLayout = keyof typeof GATE_LAYOUT_CODES;
