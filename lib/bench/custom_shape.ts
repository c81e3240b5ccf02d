/**
 * Custom presets: an MoE layer in any shape, from `E,K,H,I[,S]` (moekit bench --shape), so users can
 * time their own model's. bench/torch_baseline.py reads the same text and names its rows the same
 * way (bench/baseline_shapes.py): `moekit bench --compare` pairs rows by that name.
 */
import { MoekitError, withContext } from '../errors';
import { validateMoEConfig } from '../model/validate_config';
import { MAX_EXPERTS } from '../ops/validate';
import { ACTIVATIONS, ROUTING_METHODS, type ActivationKind, type RoutingMethod } from '../vocabulary';
import { preset, type BenchPreset } from './presets';

/** What --routing and --activation choose for every custom shape of a run. */
export interface ShapeSettings {
  routing: ShapeRouting;
  activation: ActivationKind;
}

/** `METHOD[,GROUPS,KEPT]`; the top-k weights are always renormalized and never scaled (time does not depend on either). */
export interface ShapeRouting {
  method: RoutingMethod;
  /** sigmoid_group_topk: expert groups, and how many stay eligible (1 and 1: no group limit). */
  numGroups: number;
  topkGroups: number;
}

/** Mixtral's and Qwen's: softmax over all experts, top-k, renormalized; SwiGLU experts. */
export const DEFAULT_SHAPE_SETTINGS: ShapeSettings = { routing: { method: 'softmax_topk', numGroups: 1, topkGroups: 1 }, activation: 'swiglu' };

/** The most H, I and S may be: four times the widest expert published (Grok-1's I, 32768). */
export const MAX_SHAPE_WIDTH = 2 ** 17;

/**
 * The most expert weights (E·3·H·I + 3·H·S values) a shape may have: six times DeepSeek-V3's 11.3
 * billion, 137 GB in bfloat16, more than one GPU holds.
 */
export const MAX_SHAPE_WEIGHTS = 2 ** 36;

/** The fields of `E,K,H,I[,S]` in order, as errors name them (SHAPE_SYNTAX says what each means). */
const SHAPE_FIELDS = ['E', 'K', 'H', 'I', 'S'] as const;
/** E, K, H, I and S (0: no shared expert). */
type ShapeNumbers = readonly [number, number, number, number, number];
const SHAPE_SYNTAX = "E,K,H,I[,S] (experts, top-k, hidden size, expert intermediate size, and the shared expert's)";

function invalid(message: string): MoekitError {
  return new MoekitError('E_INVALID_ARGUMENT', message);
}

/** `text` as an integer of at least `min`; errors say `where` and `field`, and what `min` means. */
function integerField(text: string, field: string, where: string, min: 0 | 1): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    throw invalid(`${where}: ${field} must be ${min === 0 ? 'an integer >= 0 (0: no shared expert)' : 'a positive integer'}, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** `value` if it is one of `choices` (a list from lib/vocabulary.ts); errors name `option`. */
function oneOf<T extends string>(value: string, choices: readonly T[], option: string): T {
  if (!(choices as readonly string[]).includes(value)) throw invalid(`${option} must be one of ${choices.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

/** `--routing METHOD[,GROUPS,KEPT]`: the group counts only for sigmoid_group_topk (absent: no group limit). */
export function parseShapeRouting(text: string): ShapeRouting {
  const [name = '', ...groups] = text.split(',').map((part) => part.trim());
  const method = oneOf(name, ROUTING_METHODS, '--routing');
  if (groups.length === 0) return { method, numGroups: 1, topkGroups: 1 };
  const where = `--routing ${JSON.stringify(text)}`;
  if (method !== 'sigmoid_group_topk') throw invalid(`${where}: only sigmoid_group_topk takes group counts (,GROUPS,KEPT)`);
  if (groups.length !== 2) throw invalid(`${where}: expected two numbers after the method (sigmoid_group_topk,GROUPS,KEPT), got ${groups.length}`);
  return { method, numGroups: integerField(groups[0]!, 'GROUPS', where, 1), topkGroups: integerField(groups[1]!, 'KEPT', where, 1) };
}

/** `--activation KIND`: one of lib/vocabulary.ts's ACTIVATIONS. */
export function parseShapeActivation(text: string): ActivationKind {
  return oneOf(text.trim(), ACTIVATIONS, '--activation');
}

/** The numbers of `E,K,H,I[,S]` (S 0 when absent), each checked. */
function shapeNumbers(text: string, where: string): ShapeNumbers {
  const parts = text.split(',').map((part) => part.trim());
  if (parts.length !== 4 && parts.length !== 5) throw invalid(`${where}: expected ${SHAPE_SYNTAX}, got ${parts.length} field${parts.length === 1 ? '' : 's'}`);
  const [E, K, H, I, S = 0] = parts.map((part, index) => integerField(part, SHAPE_FIELDS[index]!, where, index === 4 ? 0 : 1));
  return [E!, K!, H!, I!, S];
}

/** Refuses sizes no layer has, before any weight is drawn for them. */
function checkLimits([E, , H, I, S]: ShapeNumbers, where: string): void {
  if (E > MAX_EXPERTS) throw invalid(`${where}: E (${E}) is more than the ${MAX_EXPERTS} experts moekit takes`);
  for (const [field, width] of [['H', H], ['I', I], ['S', S]] as const) {
    if (width > MAX_SHAPE_WIDTH) throw invalid(`${where}: ${field} (${width}) is more than ${MAX_SHAPE_WIDTH}, the widest a shape may be (four times the widest published expert)`);
  }
  const weights = E * 3 * H * I + 3 * H * S;
  if (weights > MAX_SHAPE_WEIGHTS) {
    throw invalid(`${where}: its expert weights (E·3·H·I + 3·H·S = ${weights} values) are more than ${MAX_SHAPE_WEIGHTS} (2^36, six times DeepSeek-V3's layer), the most a shape may have`);
  }
}

/** A custom shape's preset name: its numbers, e.g. shape-E64-K6-H2048-I1408-S2816 (no -S without a shared expert). */
function shapeName([E, K, H, I, S]: ShapeNumbers): string {
  return `shape-E${E}-K${K}-H${H}-I${I}${S ? `-S${S}` : ''}`;
}

/**
 * `E,K,H,I[,S]` as a preset named from its numbers (shapeName), with the routing and activation of
 * `settings`; a shared expert (S > 0) is DeepSeek-V3's kind, not gated. Throws MoekitError naming
 * the shape: E_INVALID_ARGUMENT for its text and sizes, E_CONFIG for a config moekit cannot run
 * (K above E, groups that do not divide E, a shared expert without a gated activation).
 */
export function shapePreset(text: string, settings: ShapeSettings = DEFAULT_SHAPE_SETTINGS): BenchPreset {
  const where = `--shape ${JSON.stringify(text)}`;
  const numbers = shapeNumbers(text, where);
  checkLimits(numbers, where);
  const [experts, topK, hidden, intermediate, shared] = numbers;
  const custom = preset(shapeName(numbers), `${where}, ${settings.routing.method}, ${settings.activation}`, {
    family: 'custom', experts, topK, hidden, intermediate,
    routing: settings.routing,
    ...(shared > 0 && { sharedIntermediate: shared }),
    config: { activation: settings.activation },
  });
  withContext(where, () => validateMoEConfig(custom.config));
  return custom;
}
