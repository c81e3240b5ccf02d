/**
 * Plain TypeScript references for the ops, written straight from native/core/op_args.h, in
 * float64. Slow and obvious on purpose: the tests compare every backend against these.
 */

export type Method = 'softmax_topk' | 'topk_softmax' | 'sigmoid_group_topk';

export interface RoutingReference {
  ids: Int32Array;
  weights: Float32Array;
  counts: Int32Array;
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** Indices of the k largest values, best first; the lower index wins ties. */
export function topK(values: readonly number[], k: number): number[] {
  return values.map((value, index) => ({ value, index }))
    .sort((a, b) => b.value - a.value || a.index - b.index)
    .slice(0, k)
    .map((entry) => entry.index);
}

export function referenceRouting(
  logits: Float32Array, tokens: number, experts: number,
  options: { method: Method; topK: number; renormalize: boolean; numGroups: number; topkGroups: number; scalingFactor: number; correctionBias?: Float32Array },
): RoutingReference {
  const { topK: k } = options;
  const ids = new Int32Array(tokens * k);
  const weights = new Float32Array(tokens * k);
  const counts = new Int32Array(experts);
  for (let t = 0; t < tokens; t++) {
    const row = Array.from(logits.subarray(t * experts, (t + 1) * experts));
    let chosen: number[];
    let chosenWeights: number[];
    if (options.method === 'softmax_topk') {
      const max = Math.max(...row);
      const exps = row.map((x) => Math.exp(x - max));
      const sum = exps.reduce((a, b) => a + b, 0);
      const probabilities = exps.map((x) => x / sum);
      chosen = topK(probabilities, k);
      chosenWeights = chosen.map((e) => probabilities[e]!);
      if (options.renormalize) {
        const total = chosenWeights.reduce((a, b) => a + b, 0);
        chosenWeights = chosenWeights.map((w) => w / total);
      }
    } else if (options.method === 'topk_softmax') {
      chosen = topK(row, k);
      const max = row[chosen[0]!]!;
      const exps = chosen.map((e) => Math.exp(row[e]! - max));
      const sum = exps.reduce((a, b) => a + b, 0);
      chosenWeights = exps.map((x) => x / sum);
    } else {
      const scores = row.map(sigmoid);
      const choice = scores.map((s, e) => s + (options.correctionBias?.[e] ?? 0));
      const groupSize = experts / options.numGroups;
      if (options.numGroups > 1) {
        const groupScores = Array.from({ length: options.numGroups }, (_, g) =>
          topK(choice.slice(g * groupSize, (g + 1) * groupSize), Math.min(2, groupSize))
            .reduce((sum, i) => sum + choice[g * groupSize + i]!, 0));
        const keep = new Set(topK(groupScores, options.topkGroups));
        for (let e = 0; e < experts; e++) if (!keep.has(Math.floor(e / groupSize))) choice[e] = -Infinity;
      }
      chosen = topK(choice, k);
      chosenWeights = chosen.map((e) => scores[e]!);
      if (options.renormalize) {
        const total = chosenWeights.reduce((a, b) => a + b, 0) + 1e-20;
        chosenWeights = chosenWeights.map((w) => w / total);
      }
    }
    for (let j = 0; j < k; j++) {
      ids[t * k + j] = chosen[j]!;
      weights[t * k + j] = chosenWeights[j]! * options.scalingFactor;
      counts[chosen[j]!]! += 1;
    }
  }
  return { ids, weights, counts };
}

export interface PermuteReference {
  permuted: Float32Array;
  offsets: Int32Array;
  sourceToPermuted: Int32Array;
  permutedToSource: Int32Array;
}

/** Stable counting sort of (token, slot) pairs by expert. */
export function referencePermute(input: Float32Array, hidden: number, ids: Int32Array, topK: number, experts: number): PermuteReference {
  const pairs = ids.length;
  const order = Array.from({ length: pairs }, (_, i) => i).sort((a, b) => ids[a]! - ids[b]! || a - b);
  const offsets = new Int32Array(experts + 1);
  for (const id of ids) offsets[id + 1]! += 1;
  for (let e = 0; e < experts; e++) offsets[e + 1]! += offsets[e]!;
  const permuted = new Float32Array(pairs * hidden);
  const sourceToPermuted = new Int32Array(pairs);
  const permutedToSource = Int32Array.from(order);
  order.forEach((pair, row) => {
    sourceToPermuted[pair] = row;
    const token = Math.floor(pair / topK);
    permuted.set(input.subarray(token * hidden, (token + 1) * hidden), row * hidden);
  });
  return { permuted, offsets, sourceToPermuted, permutedToSource };
}

/** output[r] = input[r] · weights[e]ᵀ + bias[e] for rows r of expert e. */
export function referenceGroupedGemm(
  input: Float32Array, rows: number, depth: number, weights: Float32Array, outFeatures: number, offsets: Int32Array, bias?: Float32Array,
): Float32Array {
  const output = new Float32Array(rows * outFeatures);
  for (let e = 0; e + 1 < offsets.length; e++) {
    for (let r = offsets[e]!; r < offsets[e + 1]!; r++) {
      for (let n = 0; n < outFeatures; n++) {
        let sum = bias ? bias[e * outFeatures + n]! : 0;
        const w = (e * outFeatures + n) * depth;
        for (let k = 0; k < depth; k++) sum += input[r * depth + k]! * weights[w + k]!;
        output[r * outFeatures + n] = sum;
      }
    }
  }
  return output;
}

export type Kind = 'swiglu' | 'geglu' | 'gptoss_swiglu' | 'silu' | 'gelu' | 'relu';

/** erf by its Taylor series; beyond |x| = 4, erf is ±1 to within 2e-8. */
function erf(x: number): number {
  if (Math.abs(x) >= 4) return Math.sign(x);
  let sum = 0;
  let term = x;
  for (let n = 0; n < 100; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

export function referenceActivation(
  input: Float32Array, rows: number, width: number, kind: Kind, layout: 'halves' | 'interleaved' = 'halves', alpha = 1.702, limit = 7,
): Float32Array {
  const gated = kind === 'swiglu' || kind === 'geglu' || kind === 'gptoss_swiglu';
  const outWidth = gated ? width / 2 : width;
  const output = new Float32Array(rows * outWidth);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < outWidth; i++) {
      const at = (column: number) => input[r * width + column]!;
      let value: number;
      if (!gated) {
        const x = at(i);
        value = kind === 'silu' ? x * sigmoid(x) : kind === 'gelu' ? 0.5 * x * (1 + erf(x / Math.SQRT2)) : Math.max(x, 0);
      } else {
        const gate = layout === 'interleaved' ? at(2 * i) : at(i);
        const up = layout === 'interleaved' ? at(2 * i + 1) : at(outWidth + i);
        if (kind === 'swiglu') value = gate * sigmoid(gate) * up;
        else if (kind === 'geglu') value = 0.5 * gate * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (gate + 0.044715 * gate ** 3))) * up;
        else {
          const g = Math.min(gate, limit);
          const u = Math.min(Math.max(up, -limit), limit);
          value = (u + 1) * g * sigmoid(alpha * g);
        }
      }
      output[r * outWidth + i] = value;
    }
  }
  return output;
}

export function referenceCombine(
  expertOutput: Float32Array, hidden: number, weights: Float32Array, sourceToPermuted: Int32Array, topK: number,
  shared?: Float32Array, sharedGateLogits?: Float32Array,
): Float32Array {
  const tokens = weights.length / topK;
  const output = new Float32Array(tokens * hidden);
  for (let t = 0; t < tokens; t++) {
    const scale = sharedGateLogits ? sigmoid(sharedGateLogits[t]!) : 1;
    for (let h = 0; h < hidden; h++) {
      let sum = 0;
      for (let j = 0; j < topK; j++) sum += weights[t * topK + j]! * expertOutput[sourceToPermuted[t * topK + j]! * hidden + h]!;
      if (shared) sum += scale * shared[t * hidden + h]!;
      output[t * hidden + h] = sum;
    }
  }
  return output;
}

/** A seeded uniform generator (mulberry32) for reproducible test inputs in [-scale, scale). */
export function randomArray(length: number, seed: number, scale = 1): Float32Array {
  let state = seed >>> 0;
  const values = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    values[i] = scale * (2 * (((z ^ (z >>> 14)) >>> 0) / 4294967296) - 1);
  }
  return values;
}
