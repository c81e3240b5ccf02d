/**
 * Plain TypeScript references for the ops, written straight from native/core/op_args.h and
 * computed in float64 (JavaScript numbers); results are returned as float32 arrays. Slow and
 * obvious on purpose: the tests compare every backend against these.
 *
 * Layouts are row-major, as in op_args.h: a [rows, cols] matrix is a flat array of rows * cols.
 */

// The seeded inputs the op tests use; the generator lives in random.ts.
export { randomArray } from './random';

export type Method = 'softmax_topk' | 'topk_softmax' | 'sigmoid_group_topk';

export interface RoutingOptions {
  method: Method;
  topK: number;
  /** Divide the k weights by their sum (plus 1e-20 for sigmoid_group_topk). Ignored by topk_softmax. */
  renormalize: boolean;
  /** sigmoid_group_topk: experts fall into numGroups contiguous, equal groups (1 = no group limit). */
  numGroups: number;
  /** sigmoid_group_topk: how many groups, by the sum of their two best choice values, stay eligible. */
  topkGroups: number;
  /** Multiplies every final weight. */
  scalingFactor: number;
  /** sigmoid_group_topk: [E] added to the scores for choosing experts only (not to the weights). */
  correctionBias?: Float32Array;
}

export interface RoutingReference {
  /** [T, K] expert ids, best first. */
  ids: Int32Array;
  /** [T, K] routing weights. */
  weights: Float32Array;
  /** [E] how many (token, slot) pairs chose each expert. */
  counts: Int32Array;
}

/** The experts a method picks for one token, best first, and their weights before scaling. */
interface TokenChoice {
  chosen: number[];
  weights: number[];
}

/** How many of a group's best choice values make up its score (DeepSeek-V3). */
const EXPERTS_PER_GROUP_SCORE = 2;
/** Added to the sum of sigmoid weights before renormalizing (DeepSeek-V3). */
const SIGMOID_RENORMALIZE_EPSILON = 1e-20;

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
const sum = (values: readonly number[]): number => values.reduce((total, value) => total + value, 0);

/** Indices of the k largest values, best first; the lower index wins ties (a stable descending sort). */
export function topK(values: readonly number[], k: number): number[] {
  return values
    .map((value, index) => ({ value, index }))
    .sort((a, b) => b.value - a.value || a.index - b.index)
    .slice(0, k)
    .map((entry) => entry.index);
}

/** Numerically stable softmax (the maximum is subtracted first). */
function softmax(values: readonly number[]): number[] {
  const max = Math.max(...values);
  const exponentials = values.map((value) => Math.exp(value - max));
  const total = sum(exponentials);
  return exponentials.map((value) => value / total);
}

function softmaxTopK(logits: number[], options: RoutingOptions): TokenChoice {
  const probabilities = softmax(logits);
  const chosen = topK(probabilities, options.topK);
  const weights = chosen.map((e) => probabilities[e]!);
  if (!options.renormalize) return { chosen, weights };
  const total = sum(weights);
  return { chosen, weights: weights.map((w) => w / total) };
}

function topKSoftmax(logits: number[], options: RoutingOptions): TokenChoice {
  const chosen = topK(logits, options.topK);
  return { chosen, weights: softmax(chosen.map((e) => logits[e]!)) };
}

/**
 * DeepSeek-V3. Experts outside the chosen groups are ineligible (-Infinity), never chosen; the
 * Hugging Face code zeroes them instead, which picks the same experts whenever the top-k
 * eligible choice values are positive.
 */
function sigmoidGroupTopK(logits: number[], options: RoutingOptions): TokenChoice {
  const experts = logits.length;
  const scores = logits.map(sigmoid);
  const choice = scores.map((score, e) => score + (options.correctionBias?.[e] ?? 0));
  if (options.numGroups > 1) {
    const groupSize = experts / options.numGroups;
    const groupScores = Array.from({ length: options.numGroups }, (_, g) => {
      const members = choice.slice(g * groupSize, (g + 1) * groupSize);
      return sum(topK(members, EXPERTS_PER_GROUP_SCORE).map((i) => members[i]!));
    });
    const eligible = new Set(topK(groupScores, options.topkGroups));
    for (let e = 0; e < experts; e++) if (!eligible.has(Math.floor(e / groupSize))) choice[e] = -Infinity;
  }
  const chosen = topK(choice, options.topK);
  const weights = chosen.map((e) => scores[e]!);
  if (!options.renormalize) return { chosen, weights };
  const total = sum(weights) + SIGMOID_RENORMALIZE_EPSILON;
  return { chosen, weights: weights.map((w) => w / total) };
}

const ROUTING_METHODS: Record<Method, (logits: number[], options: RoutingOptions) => TokenChoice> = {
  softmax_topk: softmaxTopK,
  topk_softmax: topKSoftmax,
  sigmoid_group_topk: sigmoidGroupTopK,
};

/** Routing of logits [T, E]: the top-k experts of each token, their weights, and per-expert counts. */
export function referenceRouting(logits: Float32Array, tokens: number, experts: number, options: RoutingOptions): RoutingReference {
  const k = options.topK;
  const ids = new Int32Array(tokens * k);
  const weights = new Float32Array(tokens * k);
  const counts = new Int32Array(experts);
  for (let t = 0; t < tokens; t++) {
    const row = Array.from(logits.subarray(t * experts, (t + 1) * experts));
    const choice = ROUTING_METHODS[options.method](row, options);
    choice.chosen.forEach((expert, j) => {
      ids[t * k + j] = expert;
      weights[t * k + j] = choice.weights[j]! * options.scalingFactor;
      counts[expert]! += 1;
    });
  }
  return { ids, weights, counts };
}

export interface PermuteReference {
  /** [T*K, H] input rows in expert order; rows from offsets[count] on are unused (zero here). */
  permuted: Float32Array;
  /** [count + 1] local expert e owns rows [offsets[e], offsets[e+1]). */
  offsets: Int32Array;
  /** [T, K] row of pair (t, j) in `permuted`, or -1 when its expert is not local. */
  sourceToPermuted: Int32Array;
  /** [T*K] flat pair index t*K + j of each used row; -1 for unused rows (the op leaves those as they were). */
  permutedToSource: Int32Array;
}

/** Expert Parallel: the experts [first, first + count) that are local. */
export interface LocalExperts {
  first: number;
  count: number;
}

/**
 * Stable counting sort of (token, slot) pairs by expert: rows of one expert are contiguous and
 * ordered by the flat pair index t*K + j. `ids` is [T, K] with ids in [0, experts); with
 * `local`, pairs routed outside [first, first + count) are dropped.
 */
export function referencePermute(
  input: Float32Array, hidden: number, ids: Int32Array, topK: number, experts: number,
  local: LocalExperts = { first: 0, count: experts },
): PermuteReference {
  const pairs = ids.length;
  const bad = ids.find((id) => id < 0 || id >= experts);
  if (bad !== undefined) throw new RangeError(`expert id ${bad} outside [0, ${experts})`);
  const localExpert = (pair: number): number => {
    const e = ids[pair]! - local.first;
    return e >= 0 && e < local.count ? e : -1;
  };
  const order = Array.from({ length: pairs }, (_, pair) => pair)
    .filter((pair) => localExpert(pair) >= 0)
    .sort((a, b) => localExpert(a) - localExpert(b) || a - b);
  const offsets = new Int32Array(local.count + 1);
  for (const pair of order) offsets[localExpert(pair) + 1]! += 1;
  for (let e = 0; e < local.count; e++) offsets[e + 1]! += offsets[e]!;
  const permuted = new Float32Array(pairs * hidden);
  const sourceToPermuted = new Int32Array(pairs).fill(-1);
  const permutedToSource = new Int32Array(pairs).fill(-1);
  order.forEach((pair, row) => {
    sourceToPermuted[pair] = row;
    permutedToSource[row] = pair;
    const token = Math.floor(pair / topK);
    permuted.set(input.subarray(token * hidden, (token + 1) * hidden), row * hidden);
  });
  return { permuted, offsets, sourceToPermuted, permutedToSource };
}

/**
 * Grouped GEMM: for each expert e and row r in [offsets[e], offsets[e+1]),
 * output[r, n] = Σ_k input[r, k] · weights[e, n, k] (+ bias[e, n]).
 * input is [rows, depth], weights [E, outFeatures, depth] (PyTorch Linear layout), bias [E, outFeatures],
 * offsets [E + 1]. Rows outside [offsets[0], offsets[E]) are zero here (the op leaves them as they were).
 */
export function referenceGroupedGemm(
  input: Float32Array, rows: number, depth: number, weights: Float32Array, outFeatures: number, offsets: Int32Array, bias?: Float32Array,
): Float32Array {
  const output = new Float32Array(rows * outFeatures);
  for (let e = 0; e + 1 < offsets.length; e++) {
    for (let r = offsets[e]!; r < offsets[e + 1]!; r++) {
      for (let n = 0; n < outFeatures; n++) {
        let total = bias ? bias[e * outFeatures + n]! : 0;
        const weightRow = (e * outFeatures + n) * depth;
        for (let k = 0; k < depth; k++) total += input[r * depth + k]! * weights[weightRow + k]!;
        output[r * outFeatures + n] = total;
      }
    }
  }
  return output;
}

/** Dense projection: output[m, n] = Σ_k input[m, k] · weight[n, k] (+ bias[n]); weight is [outFeatures, depth]. */
export function referenceLinear(
  input: Float32Array, rows: number, depth: number, weight: Float32Array, outFeatures: number, bias?: Float32Array,
): Float32Array {
  return referenceGroupedGemm(input, rows, depth, weight, outFeatures, Int32Array.from([0, rows]), bias);
}

export type Kind = 'swiglu' | 'geglu' | 'gptoss_swiglu' | 'silu' | 'gelu' | 'relu';
export type GateLayout = 'halves' | 'interleaved';

const GATED_KINDS: ReadonlySet<Kind> = new Set<Kind>(['swiglu', 'geglu', 'gptoss_swiglu']);
const SQRT_TWO_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_TANH_CUBIC = 0.044715;
/** Beyond this |x|, erf(x) is ±1 to within 2e-8. */
const ERF_SATURATION = 4;
const ERF_SERIES_TERMS = 100;

/** erf by its Maclaurin series (exact to float64 noise for |x| < ERF_SATURATION). */
function erf(x: number): number {
  if (Math.abs(x) >= ERF_SATURATION) return Math.sign(x);
  let total = 0;
  let term = x;
  for (let n = 0; n < ERF_SERIES_TERMS; n++) {
    total += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * total;
}

const silu = (x: number): number => x * sigmoid(x);
const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(SQRT_TWO_OVER_PI * (x + GELU_TANH_CUBIC * x ** 3)));
const geluErf = (x: number): number => 0.5 * x * (1 + erf(x / Math.SQRT2));

function gatedValue(kind: Kind, gate: number, up: number, alpha: number, limit: number): number {
  if (kind === 'swiglu') return silu(gate) * up;
  if (kind === 'geglu') return geluTanh(gate) * up;
  const g = Math.min(gate, limit);
  const u = Math.min(Math.max(up, -limit), limit);
  return (u + 1) * g * sigmoid(alpha * g);
}

function plainValue(kind: Kind, x: number): number {
  if (kind === 'silu') return silu(x);
  if (kind === 'gelu') return geluErf(x);
  return Math.max(x, 0);
}

/**
 * Activation of input [rows, width]. Gated kinds read gate and up from a width = 2I row (halves:
 * gate = columns [0, I), up = [I, 2I); interleaved: gate = column 2i, up = 2i + 1) and return
 * [rows, I]; the others return [rows, width]. alpha and limit apply to gptoss_swiglu only.
 */
export function referenceActivation(
  input: Float32Array, rows: number, width: number, kind: Kind, layout: GateLayout = 'halves', alpha = 1.702, limit = 7,
): Float32Array {
  const gated = GATED_KINDS.has(kind);
  const outWidth = gated ? width / 2 : width;
  const output = new Float32Array(rows * outWidth);
  for (let r = 0; r < rows; r++) {
    const at = (column: number): number => input[r * width + column]!;
    for (let i = 0; i < outWidth; i++) {
      if (!gated) {
        output[r * outWidth + i] = plainValue(kind, at(i));
        continue;
      }
      const gate = layout === 'interleaved' ? at(2 * i) : at(i);
      const up = layout === 'interleaved' ? at(2 * i + 1) : at(outWidth + i);
      output[r * outWidth + i] = gatedValue(kind, gate, up, alpha, limit);
    }
  }
  return output;
}

/**
 * Combine: output[t, h] = Σ_j weights[t, j] · expertOutput[sourceToPermuted[t, j], h] (pairs
 * mapped to -1 skipped) + sigmoid(sharedGateLogits[t]) · shared[t, h] (scale 1 without gate
 * logits). expertOutput is [T*K, hidden], weights and sourceToPermuted [T, K], shared [T, hidden],
 * sharedGateLogits [T].
 */
export function referenceCombine(
  expertOutput: Float32Array, hidden: number, weights: Float32Array, sourceToPermuted: Int32Array, topK: number,
  shared?: Float32Array, sharedGateLogits?: Float32Array,
): Float32Array {
  const tokens = weights.length / topK;
  const output = new Float32Array(tokens * hidden);
  for (let t = 0; t < tokens; t++) {
    const sharedScale = sharedGateLogits ? sigmoid(sharedGateLogits[t]!) : 1;
    for (let h = 0; h < hidden; h++) {
      let total = 0;
      for (let j = 0; j < topK; j++) {
        const row = sourceToPermuted[t * topK + j]!;
        if (row >= 0) total += weights[t * topK + j]! * expertOutput[row * hidden + h]!;
      }
      if (shared) total += sharedScale * shared[t * hidden + h]!;
      output[t * hidden + h] = total;
    }
  }
  return output;
}
