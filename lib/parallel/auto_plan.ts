/**
 * `parallel: 'auto'`: moeTpSize × moeEpSize chosen from the layer, a GPU's free memory and the link
 * between the GPUs, after TensorRT-LLM's deployment guidance, with one line that says why.
 *
 * The rule, in order:
 * 1. Only splits the layer allows (planProblem: EP divides the experts, TP the intermediate size,
 *    quantized blocks and groups stay whole).
 * 2. Only splits whose rank's weights fit in FIT_FRACTION of a GPU's free memory (the rest is left
 *    to activations, scratch and the communicator); none fits → E_OOM with bytes needed and free.
 * 3. On NVLink, Tensor Parallel: the largest moeTpSize whose slice I / moeTpSize is still at least
 *    MIN_TP_SLICE, the rest Expert Parallel. TP gives every rank the same work whatever the routing,
 *    and a fast link makes its exchange cheap.
 * 4. Otherwise (PCIe, a link not known, or no TP that keeps MIN_TP_SLICE): Expert Parallel, the
 *    smallest moeTpSize the layer allows (pure EP when the experts divide among the ranks). EP
 *    keeps whole experts, so the GEMMs keep the full I, and the guide prefers it where the link is
 *    slow because an expert dispatch moves only routed tokens. moekit's forward today replicates
 *    the input and ends with one all-reduce under every split, so on today's layer the link
 *    chooses between equal load (TP) and whole-width GEMMs (EP), not bytes moved.
 *
 * Each rank holds 1/N of the expert weights under every split of N, so memory (step 2) says
 * whether N GPUs suffice far more than which split to take: only the replicated router and the
 * per-expert output biases differ between splits.
 */
import { DTYPE_BYTES, parseFloatDType, type FloatDType } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import type { MoEConfig } from '../model/config';
import { expertWeightBytes, projections } from '../model/weight_bytes';
import { requiredObject } from '../options';
import { isGated } from '../vocabulary';
import { factorizations, planProblem, type ParallelPlan } from './plan';

/** How the GPUs of a group reach each other, as far as it is known (lib/parallel/link.ts). */
export type GpuLink = 'nvlink' | 'pcie' | 'unknown';
export const GPU_LINKS: readonly GpuLink[] = ['nvlink', 'pcie', 'unknown'];

export interface AutoPlanInput {
  /** Ranks in the group (GPUs). */
  worldSize: number;
  config: MoEConfig;
  /** The compute dtype the dense weights are held in (quantized experts count their own bytes). */
  dtype: FloatDType;
  /** Free memory of one GPU (the smallest of the group's), in bytes. */
  bytesPerGpu: number;
  link: GpuLink;
  /** How the link was known, for the explanation ('given', 'P2P with native atomics'); optional. */
  linkSource?: string;
}

export interface AutoPlan {
  moeTpSize: number;
  moeEpSize: number;
  /** One line: the inputs and the reason for the choice. */
  explanation: string;
}

/** Of a GPU's free memory, the share the weights may take. */
export const FIT_FRACTION = 0.8;

/**
 * The narrowest per-rank slice of I that TP may leave. A chosen threshold, not a measurement here:
 * below it each expert's GEMMs are a few tiles wide and the ranks spend their time on launches and
 * the all-reduce rather than on math.
 */
export const MIN_TP_SLICE = 256;

/**
 * Bytes one rank of `plan` holds: its 1/N of the routed and shared experts, plus what every rank
 * keeps whole (the router, its biases) and the expert biases of its experts (w13's sliced by TP,
 * w2's whole on every TP rank).
 */
export function rankWeightBytes(config: MoEConfig, dtype: FloatDType, plan: ParallelPlan): number {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = config;
  const element = DTYPE_BYTES[dtype];
  const experts = E / plan.moeEpSize;
  const routed = experts * projections(config) * H * (I / plan.moeTpSize) * expertWeightBytes(config, dtype);
  const router = (E * H + (config.routerBias ? E : 0)) * element;
  const width = isGated(config.activation) ? 2 * I : I;
  const biases = config.expertBias ? experts * (width / plan.moeTpSize + H) * element : 0;
  const shared = config.sharedExpert;
  // Only fp8 quantizes the shared expert; the weight-only formats leave it in the compute dtype.
  const sharedElement = config.quantization === 'fp8' ? expertWeightBytes(config, dtype) : element;
  const sharedBytes = shared ? (projections(config) * H * shared.intermediateSize * sharedElement) / plan.worldSize : 0;
  return routed + router + biases + sharedBytes;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function checkInput(input: AutoPlanInput): AutoPlanInput {
  const { worldSize, config, dtype, bytesPerGpu, link, linkSource } = requiredObject(input, 'autoPlan: input', ['worldSize', 'config', 'dtype', 'bytesPerGpu', 'link']);
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) {
    throw new MoekitError('E_INVALID_ARGUMENT', `autoPlan: worldSize must be a positive integer, got ${describeValue(worldSize)}`);
  }
  requiredObject(config, 'autoPlan: config');
  if (typeof bytesPerGpu !== 'number' || !Number.isFinite(bytesPerGpu) || bytesPerGpu <= 0) {
    throw new MoekitError('E_INVALID_ARGUMENT', `autoPlan: bytesPerGpu must be a positive number of bytes, got ${describeValue(bytesPerGpu)}`);
  }
  if (!GPU_LINKS.includes(link)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `autoPlan: link must be one of ${GPU_LINKS.join(', ')}, got ${describeValue(link)}`);
  }
  if (linkSource !== undefined && typeof linkSource !== 'string') {
    throw new MoekitError('E_INVALID_ARGUMENT', `autoPlan: linkSource must be a string, got ${describeValue(linkSource)}`);
  }
  return { worldSize, config, dtype: parseFloatDType(dtype, 'autoPlan: dtype'), bytesPerGpu, link, linkSource };
}

/** The splits the layer allows whose rank's weights fit; E_INVALID_ARGUMENT or E_OOM when there are none. */
function fittingPlans(input: AutoPlanInput): ParallelPlan[] {
  const { worldSize, config, dtype, bytesPerGpu } = input;
  const allowed = factorizations(worldSize).filter((plan) => planProblem(plan, config) === null);
  if (allowed.length === 0) {
    // TP over the whole group is the last resort; its problem says what no split escapes.
    const problem = planProblem({ worldSize, moeTpSize: worldSize, moeEpSize: 1 }, config);
    throw new MoekitError('E_INVALID_ARGUMENT', `autoPlan: no moeTpSize × moeEpSize of ${worldSize} fits the layer (e.g. ${problem})`);
  }
  const budget = FIT_FRACTION * bytesPerGpu;
  const fitting = allowed.filter((plan) => rankWeightBytes(config, dtype, plan) <= budget);
  if (fitting.length === 0) {
    const needed = Math.min(...allowed.map((plan) => rankWeightBytes(config, dtype, plan)));
    throw new MoekitError('E_OOM',
      `autoPlan: the layer's weights need ${gib(needed)} per GPU on ${worldSize} GPU${worldSize === 1 ? '' : 's'}, ` +
      `more than ${FIT_FRACTION * 100}% of the ${gib(bytesPerGpu)} free (${gib(budget)}): use more GPUs, a quantization, or free memory`);
  }
  return fitting;
}

/** The choice among fitting splits (listed TP-largest first) and its reason (rules 3 and 4 above). */
function choose(fitting: readonly ParallelPlan[], input: AutoPlanInput): { plan: ParallelPlan; reason: string } {
  const I = input.config.intermediateSize;
  const smallestTp = fitting[fitting.length - 1]!;
  if (input.worldSize === 1) return { plan: smallestTp, reason: 'one GPU holds the whole layer' };
  const widestTp = fitting.find((plan) => plan.moeTpSize > 1 && I / plan.moeTpSize >= MIN_TP_SLICE);
  const epReason = `Expert Parallel over as many ranks as the layer allows (${input.config.numExperts} experts)`;
  if (input.link !== 'nvlink') return { plan: smallestTp, reason: `the link is ${input.link}, not NVLink: ${epReason}` };
  if (widestTp === undefined) {
    return { plan: smallestTp, reason: `NVLink, but any TP would leave each rank less than ${MIN_TP_SLICE} of I ${I}: ${epReason}` };
  }
  const slice = I / widestTp.moeTpSize;
  return { plan: widestTp, reason: `NVLink: the most Tensor Parallel that leaves each rank I / ${widestTp.moeTpSize} = ${slice} >= ${MIN_TP_SLICE} (equal work on every rank)` };
}

/**
 * moeTpSize × moeEpSize for `input.worldSize` GPUs by the rule above, and one line naming the
 * inputs and the reason. Pure: the same input gives the same plan on every rank.
 */
export function autoPlan(input: AutoPlanInput): AutoPlan {
  const checked = checkInput(input);
  const { plan, reason } = choose(fittingPlans(checked), checked);
  const { config, dtype, bytesPerGpu, link, linkSource, worldSize } = checked;
  const held = rankWeightBytes(config, dtype, plan);
  const layer = `${config.numExperts} experts, I ${config.intermediateSize}, ${config.quantization ?? dtype}`;
  const memory = `${gib(held)} of weights per GPU of ${gib(bytesPerGpu)} free`;
  const linkWords = `link ${link}${linkSource === undefined ? '' : ` (${linkSource})`}`;
  return {
    moeTpSize: plan.moeTpSize,
    moeEpSize: plan.moeEpSize,
    explanation: `moeTpSize ${plan.moeTpSize} × moeEpSize ${plan.moeEpSize} on ${worldSize} GPU${worldSize === 1 ? '' : 's'} ` +
      `(${layer}; ${memory}; ${linkWords}): ${reason}`,
  };
}
