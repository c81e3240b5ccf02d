import { parseDevice, type Device } from '../device';
import { parseFloatDType, type FloatDType } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import { loadMoECheckpoint, readMoEConfig, type LoadProgress } from '../checkpoint/load';
import { activation } from '../ops/activation';
import { combine, combineInto } from '../ops/combine';
import { fusedMoe, fusedMoeInto, type FusedMoeOptions, type FusedMoeResult, type FusedMoeWeights } from '../ops/fused_moe';
import { groupedGemm, linear } from '../ops/grouped_gemm';
import { ExpertSlotTable } from '../ops/expert_slots';
import { permute, permuteMaps, type PermuteMaps } from '../ops/permute';
import {
  Fp8Rows, isQuantization, logicalShape, MXFP4_GROUP_SIZE, partDTypes, QUANTIZATION_FORMATS, QUANTIZATIONS, QuantizedWeights, quantizeWeights, requireGroupSize,
  scaleShape, WEIGHT_FORMATS, type ExpertQuantization, type GroupSize, type Quantization, type QuantizedParts,
} from '../ops/quantized';
import { route, routeInto, type RoutingResult } from '../ops/routing';
import { requireFloat, requireShape, requireTensor } from '../ops/validate';
import { optionalOptions, requiredObject } from '../options';
import { Made, type Disposable } from '../made';
import { runBeside, type SideWork } from '../streams';
import { Tensor } from '../tensor';
import { checkShard, resolvePlan, shardForRank, type ParallelOptions, type RankShard } from '../parallel/plan';
import { autoParallel } from '../parallel/group_plan';
import { ProcessGroup } from '../parallel/process_group';
import { shardWeights } from '../parallel/shard_weights';
import { captureForward, type CapturedForward, type CapturedOutputs } from './captured_forward';
import { dispatchToExperts, type ExchangeGroup } from './wide_ep';
import type { ForwardOptions, ForwardStage, MoEForwardResult } from './forward';
import { isGated, type ActivationKind } from '../vocabulary';
import { isQuantized, type HostQuantized, type HostTensor, type MoEConfig, type MoEWeights } from '../model/config';
import { validateMoEConfig } from '../model/validate_config';

export interface MoELayerOptions {
  /** Where the weights live and the forward runs. Default 'cpu'. */
  device?: Device;
  /**
   * The compute dtype of weights and activations (accumulation is always float32). Default
   * float32. Quantized expert weights keep their own dtypes (lib/ops/quantized.ts).
   */
  dtype?: FloatDType;
  /**
   * Keep only one rank's part of the layer (lib/parallel/plan.ts: shardForRank). forward() then
   * returns this rank's partial output; the group's partial outputs sum to the full output.
   */
  shard?: RankShard;
  /**
   * Quantize the experts when the layer is built, on its device (routers stay as they are):
   * - 'fp8': FP8 e4m3 in 128×128 blocks (scale = block amax / 448), computed W8A8; the shared
   *   expert too.
   * - 'int8', 'int4': weight-only (the activations stay in the compute dtype), symmetric, in
   *   groups of `groupSize` K values per output row (int8 default 'channel', int4 128); the
   *   shared expert stays in the compute dtype.
   * Weights that are already quantized (an FP8 or MXFP4 checkpoint) are refused.
   */
  quantize?: Quantization;
  /** With quantize 'int8' / 'int4': K values per scale, a positive multiple of 32 or 'channel'. */
  groupSize?: GroupSize;
}

export interface ParallelLayerOptions extends MoELayerOptions {
  /**
   * Shard the layer over a process group (one process per GPU): it runs on group.device, keeps (and
   * from a checkpoint, reads) only this rank's part, and forward() sums the ranks' outputs with one
   * NCCL all-reduce. Inputs are expected replicated across the group.
   */
  group?: ProcessGroup;
  /** With `group`: TensorRT-LLM's moeTpSize / moeEpSize (default: Tensor Parallel over the group). */
  parallel?: ParallelOptions;
}

export interface FromPretrainedOptions extends Omit<ParallelLayerOptions, 'parallel'> {
  /**
   * With `group`: moeTpSize / moeEpSize, or 'auto' to have them chosen from the layer, the GPUs'
   * free memory and the link between them (lib/parallel/group_plan.ts: autoParallel).
   */
  parallel?: ParallelOptions | 'auto';
  /** Which decoder layer's MoE block to load. */
  layer: number;
  /** Told after each tensor is read: weight bytes read of the total (lib/checkpoint/load.ts, LoadProgress). */
  onProgress?: (progress: LoadProgress) => void;
}

export interface AllToAllForwardOptions {
  /** Stands in for the layer's group (by default the group it was built with). */
  group?: ExchangeGroup;
}

export interface RandomLayerOptions extends ParallelLayerOptions {
  /**
   * The first seed of the draws. Under a group (or with a shard) each rank draws only its own part,
   * from the same seeds: every rank's router is the whole layer's, and a rank's experts are
   * random, not the unsharded layer's slice (for benchmarks, not for checking results).
   */
  seed?: number;
}

/** A layer's weights on its device: the expert matrices dense, or quantized. */
type LayerWeights = MoEWeights<Tensor, QuantizedWeights>;

/** Weight shapes a config implies (for a shard: its experts and slices), for checking weights given by hand. */
function expectedShapes(config: MoEConfig, shard: RankShard | null): Record<string, number[]> {
  const { hiddenSize: H, numExperts: allExperts } = config;
  const I = shard ? shard.intermediate.count : config.intermediateSize;
  const E = shard ? shard.experts.count : allExperts;
  const width = isGated(config.activation) ? 2 * I : I;
  const shapes: Record<string, number[]> = { router: [allExperts, H], w13: [E, width, H], w2: [E, H, I] };
  if (config.routerBias) shapes.routerBias = [allExperts];
  if (config.expertBias) {
    shapes.w13Bias = [E, width];
    shapes.w2Bias = [E, H];
  }
  return shapes;
}

function resultOf(parts: Omit<MoEForwardResult, 'dispose' | typeof Symbol.dispose>): MoEForwardResult {
  const dispose = (): void => {
    for (const tensor of [parts.output, parts.topkIds, parts.topkWeights, parts.expertCounts]) tensor.dispose();
  };
  return { ...parts, dispose, [Symbol.dispose]: dispose };
}

/**
 * One Mixture-of-Experts block: router projection, top-k routing, permutation, two grouped GEMMs
 * around the gated activation, weighted combine, and shared experts where the family has them.
 */
export class MoELayer {
  readonly config: MoEConfig;
  readonly device: Device;
  readonly dtype: FloatDType;
  /** This rank's part when the layer is sharded, else null. */
  readonly shard: RankShard | null;
  /** Bytes read from the checkpoint to build this layer (0 when not loaded from one). */
  readonly checkpointBytesRead: number;
  #weights: LayerWeights | undefined;
  readonly #group: ProcessGroup | undefined;
  /** With a placement: each routed pair's replica slot (ops/expert_slots.ts). */
  readonly #slotTable: ExpertSlotTable | undefined;

  private constructor(config: MoEConfig, weights: LayerWeights, device: Device, dtype: FloatDType, parts: LayerParts = {}) {
    this.config = config;
    this.#weights = weights;
    this.device = device;
    this.dtype = dtype;
    this.shard = parts.shard ?? null;
    this.#group = parts.group;
    this.checkpointBytesRead = parts.bytesRead ?? 0;
    const placement = this.shard?.placement;
    this.#slotTable = placement && ExpertSlotTable.of(placement.slotExperts, config.numExperts, device);
  }

  /**
   * Loads layer `options.layer`'s MoE block from a Hugging Face checkpoint folder (with
   * options.shard, keeping that rank's part).
   */
  static async fromPretrained(dir: string, options: FromPretrainedOptions): Promise<MoELayer> {
    const settings = requiredObject(options, 'MoELayer.fromPretrained: options', ['layer']);
    const stored = readMoEConfig(dir, settings.layer);
    const quantize = quantizeOption(settings, stored, 'MoELayer.fromPretrained');
    const config = withQuantization(stored, quantize);
    const { group } = settings;
    const parallel = settings.parallel === 'auto' ? group && (await autoParallel(group, config, settings.dtype)) : settings.parallel;
    // The plan is checked against the config (quantized weights: whole blocks per rank) before any weight is read.
    const shard = MoELayer.#shardFor(config, { ...settings, parallel });
    // A placement's slots may hold any experts, replicas included: those ranks read every expert
    // and keep their slots' (shardWeights).
    const placed = shard?.placement !== undefined;
    const { weights, bytesRead } = await loadMoECheckpoint(dir, { layer: settings.layer, experts: placed ? undefined : shard?.experts, onProgress: settings.onProgress });
    // Otherwise the loader kept only this rank's experts: number them from 0 for the rest of the slicing.
    const local = shard ? shardWeights(stored, weights, placed ? shard : { ...shard, experts: { first: 0, count: shard.experts.count } }) : weights;
    return MoELayer.#upload(stored, local, { ...settings, device: group?.device ?? settings.device }, { shard, group, bytesRead });
  }

  /**
   * A layer from host weights in moekit's canonical layout (see MoEWeights). With options.shard or
   * options.group, `weights` are the full weights and the layer keeps this rank's part.
   */
  static fromWeights(config: MoEConfig, weights: MoEWeights<HostTensor>, options?: ParallelLayerOptions | null): MoELayer {
    validateMoEConfig(config);
    checkHostWeights(config, requiredObject(weights, 'MoELayer.fromWeights: weights'), null);
    const settings = optionalOptions(options, 'MoELayer.fromWeights: options');
    const quantize = quantizeOption(settings, config, 'MoELayer.fromWeights');
    const { group } = settings;
    const shard = MoELayer.#shardFor(withQuantization(config, quantize), settings);
    const device = group?.device ?? settings.device;
    return MoELayer.#upload(config, shard ? shardWeights(config, weights, shard) : weights, { ...settings, device }, { shard, group });
  }

  /**
   * This rank's part: options.shard, or the group's plan for its rank, checked against config (and
   * the group checked to be one, as the forward will call on it).
   */
  static #shardFor(config: MoEConfig, options: ParallelLayerOptions): RankShard | undefined {
    const { group, shard } = options;
    if (group !== undefined && !(group instanceof ProcessGroup)) {
      throw new MoekitError('E_INVALID_ARGUMENT', 'group must be a ProcessGroup (from ProcessGroup.init())');
    }
    if (shard !== undefined) return checkShard(shard, config);
    if (group === undefined) return undefined;
    if ((options.parallel as unknown) === 'auto') {
      throw new MoekitError('E_INVALID_ARGUMENT',
        "MoELayer.fromWeights: parallel 'auto' needs the group to agree on the split, which takes a collective: pass await autoParallel(group, config) instead");
    }
    return shardForRank(resolvePlan(group.worldSize, options.parallel, config), config, group.rank);
  }

  /**
   * Uploads weights already cut to the layer's part (all of it, or one rank's shard), quantizing
   * the expert matrices on the device when options.quantize asks (from their stored values, before
   * any conversion to the compute dtype).
   */
  static #upload(config: MoEConfig, weights: MoEWeights<HostTensor>, options: MoELayerOptions, parts: LayerParts): MoELayer {
    validateMoEConfig(config);
    const device = parseDevice(options.device ?? 'cpu');
    const dtype = parseFloatDType(options.dtype ?? 'float32');
    const quantize = quantizeOption(options, config, 'MoELayer');
    checkHostWeights(config, weights, parts.shard ?? null);
    const made = new Made();
    const keep = <T extends Disposable>(item: T): T => made.keep(item);
    const upload = (host: HostTensor, as: HostTensor['dtype']): Tensor => {
      const tensor = Tensor.fromArray(host.data, host.shape, { dtype: host.dtype, device });
      if (host.dtype === as) return tensor;
      try {
        return tensor.to(device, as);
      } finally {
        tensor.dispose();
      }
    };
    const uploadMatrix = (host: HostTensor | HostQuantized, routed: boolean): Tensor | QuantizedWeights => {
      if (isQuantized(host)) {
        const dtypes = partDTypes(host.format);
        const data = keep(upload(host.data, dtypes.data));
        return new QuantizedWeights({ format: host.format, data, scales: keep(upload(host.scales, dtypes.scales)), groupSize: host.groupSize });
      }
      if (!quantize || !quantizes(quantize.quantization, routed)) return keep(upload(host, dtype));
      using stored = upload(host, host.dtype);
      return keep(quantizeMatrix(stored, quantize));
    };
    try {
      const uploadedWeights = mapWeights<HostTensor, HostQuantized, Tensor, QuantizedWeights>(weights, {
        tensor: (host, as) => keep(upload(host, as ?? dtype)),
        matrix: uploadMatrix,
      });
      return new MoELayer(withQuantization(config, quantize), uploadedWeights, device, dtype, parts);
    } catch (error) {
      made.disposeAll();
      throw error;
    }
  }

  /**
   * A layer with uniform random weights (for benchmarks), generated on the device. A config whose
   * experts are MXFP4 (gpt-oss as published) gets random MXFP4 experts: random e2m1 bytes with
   * e8m0 scales near the dense weights' 1/sqrt(fan-in).
   */
  static random(config: MoEConfig, options?: RandomLayerOptions | null): MoELayer {
    validateMoEConfig(config);
    const settings = optionalOptions(options, 'MoELayer.random: options');
    const device = parseDevice(settings.group?.device ?? settings.device ?? 'cpu');
    const dtype = parseFloatDType(settings.dtype ?? 'float32');
    const quantize = quantizeOption(settings, config, 'MoELayer.random');
    if (!quantize && config.quantization && config.quantization !== 'mxfp4') {
      throw new MoekitError('E_INVALID_ARGUMENT', `MoELayer.random: config.quantization is ${config.quantization}: random weights are drawn dense, so ask for options.quantize '${config.quantization}' instead`);
    }
    const { group } = settings;
    const shard = MoELayer.#shardFor(withQuantization(config, quantize), settings);
    if (shard?.placement) {
      throw new MoekitError('E_INVALID_ARGUMENT', "MoELayer.random: a placement's replicas must hold the same weights, which random draws cannot give them: use MoELayer.fromWeights");
    }
    const dense = randomMoEWeights(config, { device, dtype, seed: settings.seed ?? 0, ...(shard && { shard }) });
    let weights: LayerWeights = dense;
    try {
      if (quantize) weights = quantizeExperts(dense, quantize);
      else if (config.quantization === 'mxfp4') weights = randomMxfp4Experts(dense);
      return new MoELayer(withQuantization(config, quantize), weights, device, dtype, { ...(shard && { shard }), ...(group && { group }) });
    } catch (error) {
      forEachWeight(weights, (tensor) => tensor.dispose());
      throw error;
    } finally {
      // The dense expert matrices that were quantized are no longer held (freed once the quantizing is done).
      if (weights !== dense) disposeReplaced(dense, weights);
    }
  }

  /** A copy of this layer on another device and/or in another compute dtype. */
  to(device: Device = this.device, dtype: FloatDType = this.dtype): MoELayer {
    const weights = this.#live();
    const target = parseDevice(device);
    const targetDType = parseFloatDType(dtype);
    const made = new Made();
    const keep = <T extends Disposable>(moved: T): T => made.keep(moved);
    try {
      const moved = mapWeights<Tensor, QuantizedWeights, Tensor, QuantizedWeights>(weights, {
        tensor: (weight, as) => keep(weight.to(target, as ?? targetDType)),
        matrix: (weight) => keep(weight instanceof QuantizedWeights ? weight.to(target) : weight.to(target, targetDType)),
      });
      return new MoELayer(this.config, moved, target, targetDType, { shard: this.shard ?? undefined, group: this.#group });
    } catch (error) {
      made.disposeAll();
      throw error;
    }
  }

  /** [T, E] float32 router logits for input x [T, H]. */
  routerLogits(x: Tensor): Tensor {
    const weights = this.#live();
    return linear(x, weights.router, { bias: weights.routerBias, outDtype: 'float32' });
  }

  /**
   * Runs the block on x [T, H]. Returns at once: the work is queued on the layer's device and the
   * results are read with `await result.output.toArray()`.
   */
  forward(x: Tensor, options?: ForwardOptions | null): MoEForwardResult {
    return this.#forward(x, options);
  }

  /**
   * forward(); with `into` (a captured forward's persistent outputs, made for this token count),
   * routing and combine write their results there, and the returned result holds those tensors.
   */
  #forward(x: Tensor, options?: ForwardOptions | null, into?: CapturedOutputs): MoEForwardResult {
    const weights = this.#live();
    if (this.shard?.dispatch === 'all_to_all') {
      throw new MoekitError('E_INVALID_ARGUMENT', "MoELayer.forward: this layer dispatches rows with all-to-all (parallel.dispatch 'all_to_all'): use await layer.forwardAllToAll(x)");
    }
    const { routerLogits, profiler } = optionalOptions(options, 'MoELayer.forward: options');
    if (profiler !== undefined && profiler !== null && typeof profiler.mark !== 'function') {
      throw new MoekitError('E_INVALID_ARGUMENT', 'MoELayer.forward: options.profiler must have a mark(stage) method');
    }
    const input = this.#checkInput(x);
    const temporaries = new Made();
    if (input !== x) temporaries.keep(input);
    const keep = <T extends Disposable>(tensor: T): T => temporaries.keep(tensor);
    let sharedWork: SideWork<SharedExpertOutput> | undefined;
    try {
      const mark = (stage: ForwardStage): void => profiler?.mark(stage);
      if (routerLogits !== undefined) this.#checkRouterLogits(routerLogits, input.shape[0]!);
      const routingOptions = { ...this.config.routing, correctionBias: weights.correctionBias };
      const fused = routerLogits === undefined ? this.#fusedWeights(weights, input.shape[0]!) : undefined;
      if (fused) return this.#fusedForward(input, fused, { routing: routingOptions, activation: this.#activationOptions() }, mark, into);
      // The shared expert reads only the input: it runs beside the routed path (a second stream on
      // a GPU) where the two take the same GEMM family (sharedExpertBeside).
      const sharedWeights = weights.shared;
      if (sharedWeights && sharedExpertBeside(input.shape[0]!, this.config)) {
        sharedWork = runBeside(this.device, () => this.#sharedExpert(input, sharedWeights, keep));
      }
      let logits = routerLogits;
      if (logits === undefined) {
        logits = keep(this.routerLogits(input));
        mark('router');
      }
      const { config } = this;
      let routed: RoutingResult;
      if (into) {
        const { topkIds, topkWeights, expertCounts } = into;
        routed = { topkIds, topkWeights, expertCounts };
        routeInto(logits, routingOptions, routed);
      } else {
        routed = route(logits, routingOptions);
      }
      mark('routing');
      try {
        const localExperts = this.shard?.experts ?? { first: 0, count: config.numExperts };
        // With a placement, pairs go to slots (one replica of their expert each); the routing
        // results (topkIds, expertCounts) stay in experts, for statistics and the balancer.
        const slotTable = this.#slotTable;
        const ids = slotTable ? keep(slotTable.map(routed.topkIds)) : routed.topkIds;
        const { sorted, rows } = this.#sortRows(input, ids, slotTable?.slots ?? config.numExperts, localExperts, keep);
        mark('permute');
        // A token visits an expert at most once, so no expert has more rows than there are tokens.
        const expertOutput = this.#runExperts(weights, rows, sorted.expertOffsets, input.shape[0]!, keep, mark);
        const shared = sharedWork?.join() ?? (sharedWeights && this.#sharedExpert(input, sharedWeights, keep));
        if (shared) mark('shared');
        let output: Tensor;
        if (into) {
          output = into.output;
          combineInto(expertOutput, routed.topkWeights, sorted.sourceToPermuted, shared, output);
        } else {
          output = combine(expertOutput, routed.topkWeights, sorted.sourceToPermuted, shared);
        }
        mark('combine');
        if (this.#group) {
          // Each rank holds a partial sum; one all-reduce, queued like the rest, completes it.
          this.#group.allReduce(output);
          mark('all_reduce');
        }
        return resultOf({ output, ...routed });
      } catch (error) {
        // The caller's outputs (into) stay the caller's.
        if (!into) for (const tensor of Object.values(routed)) tensor.dispose();
        throw error;
      }
    } finally {
      // Joined before anything is freed, so the side work's temporaries are freed after it too.
      sharedWork?.join();
      // Freed in stream order: the queued work that reads them finishes first.
      temporaries.disposeAll();
    }
  }

  /**
   * The weights fusedMoe takes when a forward of `tokens` tokens runs as that one op: a decode
   * step (up to FUSED_MAX_TOKENS tokens) of a whole layer (no shard, group or placement) in a
   * 16-bit dtype, with unquantized experts and no shared expert. Otherwise undefined.
   */
  #fusedWeights(weights: LayerWeights, tokens: number): FusedMoeWeights | undefined {
    if (tokens < 1 || tokens > FUSED_MAX_TOKENS) return undefined;
    if (this.shard || this.#group || this.#slotTable || weights.shared) return undefined;
    const { dtype } = this;
    const { router, routerBias, w13, w13Bias, w2, w2Bias } = weights;
    if (dtype !== 'bfloat16' && dtype !== 'float16') return undefined;
    if (!(w13 instanceof Tensor) || !(w2 instanceof Tensor) || router.dtype !== dtype) return undefined;
    return { router, w13, w2, ...(routerBias && { routerBias }), ...(w13Bias && { w13Bias }), ...(w2Bias && { w2Bias }) };
  }

  /** The routed path as one op (#fusedWeights), into a captured forward's outputs where given. */
  #fusedForward(input: Tensor, weights: FusedMoeWeights, options: FusedMoeOptions, mark: (stage: ForwardStage) => void, into?: CapturedOutputs): MoEForwardResult {
    let result: FusedMoeResult;
    if (into) {
      result = { topkIds: into.topkIds, topkWeights: into.topkWeights, expertCounts: into.expertCounts, output: into.output };
      fusedMoeInto(input, weights, options, result);
    } else {
      result = fusedMoe(input, weights, options);
    }
    mark('fused');
    return resultOf(result);
  }

  /**
   * Wide Expert Parallel (parallel.dispatch 'all_to_all', lib/layer/wide_ep.ts): runs the block on
   * this rank's own tokens x [T, H] (T may differ between ranks, 0 included), sending each routed
   * row to the rank that holds its expert and back; resolves to this rank's result once the row
   * counts have been exchanged and every step is queued (the output itself is read as usual).
   * Every rank of the group must call it, in the same order. options.group stands in for the
   * layer's group (anything with rank, worldSize and allToAll).
   */
  async forwardAllToAll(x: Tensor, options?: AllToAllForwardOptions | null): Promise<MoEForwardResult> {
    const weights = this.#live();
    const op = 'MoELayer.forwardAllToAll';
    const settings = optionalOptions(options, `${op}: options`);
    const { shard } = this;
    if (shard?.dispatch !== 'all_to_all') {
      throw new MoekitError('E_INVALID_ARGUMENT', `${op}: the layer was not built with parallel.dispatch 'all_to_all' (use forward)`);
    }
    const group = settings.group ?? this.#group;
    if (group === undefined) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: the layer has no group: pass options.group`);
    const { rank, worldSize } = group as Partial<ExchangeGroup>;
    if (!Number.isSafeInteger(worldSize) || worldSize! < 1 || !Number.isSafeInteger(rank) || rank! < 0 || rank! >= worldSize! ||
      typeof (group as Partial<ExchangeGroup>).allToAll !== 'function') {
      throw new MoekitError('E_INVALID_ARGUMENT', `${op}: options.group must have an integer rank in [0, worldSize) and an allToAll method, got ${describeValue(group)}`);
    }
    const input = this.#checkInput(x);
    const temporaries = new Made();
    if (input !== x) temporaries.keep(input);
    const keep = <T extends Disposable>(tensor: T): T => temporaries.keep(tensor);
    try {
      const { config } = this;
      const logits = keep(this.routerLogits(input));
      const routed = route(logits, { ...config.routing, correctionBias: weights.correctionBias });
      try {
        const output = await dispatchToExperts({
          group, input, routed, keep, experts: config.numExperts, localExperts: shard.experts, fp8: config.quantization === 'fp8',
          runExperts: (rows, offsets, maxRowsPerExpert) => this.#runExperts(weights, rows, offsets, maxRowsPerExpert, keep, () => {}),
          ...(weights.shared && { shared: this.#sharedExpert(input, weights.shared, keep) }),
        });
        return resultOf({ output, ...routed });
      } catch (error) {
        for (const tensor of Object.values(routed)) tensor.dispose();
        throw error;
      }
    } finally {
      temporaries.disposeAll();
    }
  }

  /**
   * Records a forward for `tokens` tokens as a CUDA graph (CUDA devices only): `replay(x)` then
   * reruns the whole layer with one launch, the way decode loops run.
   */
  capture(tokens: number): CapturedForward {
    this.#live();
    if (!Number.isSafeInteger(tokens) || tokens < 1) {
      throw new MoekitError('E_INVALID_ARGUMENT', `capture: tokens must be a positive integer, got ${describeValue(tokens)}`);
    }
    const input = Tensor.empty([tokens, this.config.hiddenSize], { dtype: this.dtype, device: this.device });
    try {
      // Defined values for the warm-up run; replays overwrite them.
      using initial = Tensor.random(input.shape, { dtype: this.dtype, device: this.device });
      input.copyFrom(initial);
      // Under a group the graph holds the all-reduce too; each replay is watched like a collective call.
      const group = this.#group;
      return captureForward(input, (x, into) => this.#forward(x, null, into), group && (() => group.watchQueued()));
    } catch (error) {
      input.dispose();
      throw error;
    }
  }

  /**
   * Bytes of weights this layer holds on its device: `experts` counts the routed experts' matrices
   * (for a shard, only its part: 1/N of the whole under any plan of N ranks), `total` everything
   * (expert biases, which TP ranks keep whole, the router and the shared expert too). Quantized
   * matrices count their values and their scales.
   */
  weightBytes(): { experts: number; total: number } {
    const weights = this.#live();
    let total = 0;
    forEachWeight(weights, (tensor) => {
      total += tensor.nbytes;
    });
    return { experts: weights.w13.nbytes + weights.w2.nbytes, total };
  }

  /** Frees the weights. The layer cannot run afterwards. */
  dispose(): void {
    const weights = this.#weights;
    this.#weights = undefined;
    if (weights) {
      forEachWeight(weights, (tensor) => tensor.dispose());
      this.#slotTable?.dispose();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(): LayerWeights {
    if (this.#weights === undefined) throw new MoekitError('E_DISPOSED', 'MoELayer was used after dispose()');
    return this.#weights;
  }

  #checkInput(x: Tensor): Tensor {
    const op = 'MoELayer.forward';
    requireTensor(x, op, 'x');
    requireFloat(x, op, 'x');
    if (x.shape.length !== 2 || x.shape[1] !== this.config.hiddenSize) {
      throw new MoekitError('E_SHAPE', `${op}: x must have shape [tokens, ${this.config.hiddenSize}] (the hidden size), got [${x.shape.join(', ')}]`);
    }
    if (x.device !== this.device) throw new MoekitError('E_DEVICE', `${op}: x is on ${x.device} but the layer is on ${this.device}`);
    return x.dtype === this.dtype ? x : x.to(this.device, this.dtype);
  }

  #checkRouterLogits(logits: Tensor, tokens: number): void {
    const op = 'MoELayer.forward';
    requireTensor(logits, op, 'routerLogits');
    requireFloat(logits, op, 'routerLogits');
    requireShape(logits, op, 'routerLogits', [tokens, this.config.numExperts]);
    if (logits.device !== this.device) throw new MoekitError('E_DEVICE', `${op}: routerLogits is on ${logits.device} but the layer is on ${this.device}`);
  }

  #activationOptions(): { kind: ActivationKind; alpha: number; limit: number } {
    const { activation: kind, activationAlpha: alpha, activationLimit: limit } = this.config;
    return { kind, alpha, limit };
  }

  #activate(hidden: Tensor): Tensor {
    const { kind, ...parameters } = this.#activationOptions();
    return activation(hidden, kind, parameters);
  }

  /**
   * The pairs in expert order. FP8 experts (W8A8): permute quantizes the rows as it gathers them,
   * and the first GEMM quantizes its activated output, so each GEMM reads FP8 rows with their
   * scales, exactly as if it quantized its own input. Otherwise permute only sorts: the first GEMM
   * reads each token's row where it is (the pair index t*K + j over K names token t), which saves
   * writing and re-reading T*K rows.
   */
  #sortRows(input: Tensor, ids: Tensor, slots: number, localExperts: { first: number; count: number }, keep: <T extends Disposable>(made: T) => T): { sorted: PermuteMaps; rows: ExpertRows } {
    if (this.config.quantization === 'fp8') {
      const sorted = permute(input, ids, slots, { localExperts, quantize: 'fp8' });
      for (const made of Object.values(sorted)) keep(made);
      return { sorted, rows: sorted.permuted };
    }
    const sorted = permuteMaps(ids, slots, { localExperts });
    for (const made of Object.values(sorted)) keep(made);
    return { sorted, rows: { input, gatherRows: sorted.permutedToSource, gatherDivisor: ids.shape[1]! } };
  }

  /**
   * The two grouped GEMMs over expert-sorted rows, permuted or gathered by the first (the
   * activation in its epilogue):
   * [rows, H] in the layer's dtype. `maxRowsPerExpert` bounds the rows of any one expert (small
   * batches take the decode kernels); it must be positive, and with no rows 1 bounds them as well.
   */
  #runExperts(weights: LayerWeights, rows: ExpertRows, offsets: Tensor, maxRowsPerExpert: number, keep: <T extends Disposable>(made: T) => T,
    mark: (stage: ForwardStage) => void): Tensor {
    const bound = Math.max(maxRowsPerExpert, 1);
    const fp8 = this.config.quantization === 'fp8';
    const gathered = 'gatherRows' in rows;
    const activated = keep(
      groupedGemm(gathered ? rows.input : rows, weights.w13, offsets, {
        ...(gathered && { gatherRows: rows.gatherRows, gatherDivisor: rows.gatherDivisor }),
        bias: weights.w13Bias,
        activation: this.#activationOptions(),
        maxRowsPerExpert: bound,
        ...(fp8 && { outDtype: 'float8_e4m3' as const }),
      }),
    );
    mark('expert_up');
    const expertOutput = keep(groupedGemm(activated, weights.w2, offsets, { bias: weights.w2Bias, maxRowsPerExpert: bound, outDtype: this.dtype }));
    mark('expert_down');
    return expertOutput;
  }

  /** The shared expert; with FP8 weights each linear quantizes its input by the W8A8 rule. */
  #sharedExpert(x: Tensor, shared: NonNullable<LayerWeights['shared']>, keep: <T extends Disposable>(made: T) => T): SharedExpertOutput {
    const hidden = keep(linear(x, shared.w13));
    const activated = keep(this.#activate(hidden));
    const output = keep(linear(activated, shared.w2));
    const gate = shared.gate ? keep(linear(x, shared.gate, { outDtype: 'float32' })) : undefined;
    return { shared: output, sharedGateLogits: gate };
  }
}

/**
 * Whether a forward of `tokens` tokens runs its shared expert beside the routed path. The CUDA
 * backend's GEMM families (native/cuda/grouped_gemm_paths.h) take a shared-expert linear of up to
 * 16 rows on small_m, and the routed GEMMs while the rows per expert are at most 32 (the bound, the
 * token count) or 16 on average; both families run persistent grids sized to fill the GPU. Measured
 * on an H200 (bench/NOTES.md, v7; graph replays): where both sides take the same family they share
 * the GPU well (DeepSeek-V3 and a top-1 layer 3-9% faster at one token, 1024 tokens up to 7%), but
 * a shared expert on sm90 beside routed GEMMs on small_m held SMs the small_m grid was sized for
 * (128 tokens: 1.2-1.5× slower), so there it runs in line after the routed experts.
 */
function sharedExpertBeside(tokens: number, config: MoEConfig): boolean {
  const sharedOnSmallM = tokens <= SMALL_M_MAX_MEAN_ROWS;
  const routedOnSmallM = tokens <= SMALL_M_MAX_ROWS || (tokens * config.routing.topK) / config.numExperts <= SMALL_M_MAX_MEAN_ROWS;
  return sharedOnSmallM === routedOnSmallM;
}
/**
 * The most tokens a forward runs as one fused op (fusedMoe): a decode step, whose separate ops'
 * launches cost more than their work (bench/NOTES.md, v8).
 */
const FUSED_MAX_TOKENS = 1;
/** small_m's reach (native/cuda/grouped_gemm_paths.h, kAutoMaxRowsPerExpert and kAutoMeanRowsPerExpert). */
const SMALL_M_MAX_ROWS = 32;
const SMALL_M_MAX_MEAN_ROWS = 16;

/** The shared expert's output and, where it has one, its gate's logits: combine's shared options. */
type SharedExpertOutput = { shared: Tensor; sharedGateLogits: Tensor | undefined };

/** The experts' rows in expert order: permuted (a copy), or read in place through a gather map (groupedGemm's gatherRows). */
type ExpertRows = Tensor | Fp8Rows | { input: Tensor; gatherRows: Tensor; gatherDivisor: number };

/** How a layer relates to a parallel group, if it does. */
interface LayerParts {
  shard?: RankShard;
  group?: ProcessGroup;
  bytesRead?: number;
}

/**
 * Uniform random weights for `config` on `device` (what MoELayer.random holds, and what every rank
 * of the parallel benchmark draws alike): seeds `seed`, `seed + 1`, ... in a fixed order, each
 * tensor scaled by 1/sqrt(fan-in) so activations stay of order one through the layer.
 */
export function randomMoEWeights(config: MoEConfig, options: { device: Device; dtype: FloatDType; seed: number; shard?: RankShard }): MoEWeights<Tensor, never> {
  const { device, dtype, shard } = options;
  let seed = options.seed;
  const made = new Made();
  const make = (shape: number[], fanIn: number, as: FloatDType = dtype, scale = 1 / Math.sqrt(fanIn)): Tensor =>
    made.keep(Tensor.random(shape, { dtype: as, device, seed: seed++, scale }));
  try {
    // A shard's own shapes (its experts, its slice of I): what that rank would hold.
    const { hiddenSize: H, numExperts: allExperts } = config;
    const I = shard?.intermediate.count ?? config.intermediateSize;
    const E = shard?.experts.count ?? allExperts;
    const width = isGated(config.activation) ? 2 * I : I;
    const weights: MoEWeights<Tensor, never> = {
      router: make([allExperts, H], H),
      w13: make([E, width, H], H),
      w2: make([E, H, I], I),
    };
    if (config.routerBias) weights.routerBias = make([allExperts], 1);
    // Kept well below the spread of the sigmoid scores (~0.05 here): a larger bias would pick the
    // same few experts for every token, and the benchmark would read a fraction of the weights
    // a load-balanced model reads.
    if (config.routing.method === 'sigmoid_group_topk') weights.correctionBias = make([allExperts], 1e5, 'float32');
    if (config.expertBias) {
      weights.w13Bias = make([E, width], H);
      // Added once over a TP group: the other ranks hold zeros (shardWeights).
      weights.w2Bias = make([E, H], I, dtype, shard && !shard.ownsOutputBias ? 0 : 1 / Math.sqrt(I));
    }
    if (config.sharedExpert) {
      const S = shard?.sharedIntermediate?.count ?? config.sharedExpert.intermediateSize;
      weights.shared = { w13: make([2 * S, H], H), w2: make([H, S], S) };
      if (config.sharedExpert.gated) weights.shared.gate = make([1, H], H);
    }
    return weights;
  } catch (error) {
    made.disposeAll();
    throw error;
  }
}

/** How mapWeights converts a layer's weights. */
export interface WeightMapping<A, QA extends QuantizedParts<A>, B, QB extends QuantizedParts<B>> {
  /** The router, biases and the shared expert's gate; `as` is set where a weight keeps a dtype of its own. */
  tensor(weight: A, as?: FloatDType): B;
  /** An expert matrix (w13, w2: `routed`; or the shared expert's), dense or quantized. */
  matrix(weight: A | QA, routed: boolean): B | QB;
}

export function mapWeights<A, QA extends QuantizedParts<A>, B, QB extends QuantizedParts<B>>(
  weights: MoEWeights<A, QA>, mapping: WeightMapping<A, QA, B, QB>,
): MoEWeights<B, QB> {
  const { tensor, matrix } = mapping;
  const mapped: MoEWeights<B, QB> = { router: tensor(weights.router), w13: matrix(weights.w13, true), w2: matrix(weights.w2, true) };
  if (weights.routerBias) mapped.routerBias = tensor(weights.routerBias);
  // The routing kernel reads the correction bias in float32 whatever the compute dtype.
  if (weights.correctionBias) mapped.correctionBias = tensor(weights.correctionBias, 'float32');
  if (weights.w13Bias) mapped.w13Bias = tensor(weights.w13Bias);
  if (weights.w2Bias) mapped.w2Bias = tensor(weights.w2Bias);
  if (weights.shared) {
    mapped.shared = { w13: matrix(weights.shared.w13, false), w2: matrix(weights.shared.w2, false) };
    if (weights.shared.gate) mapped.shared.gate = tensor(weights.shared.gate);
  }
  return mapped;
}

/** Visits every tensor of the weights, a quantized matrix's values and scales included. */
export function forEachWeight<T, Q extends QuantizedParts<T>>(weights: MoEWeights<T, Q>, visit: (weight: T) => void): void {
  mapWeights(weights, {
    tensor: visit,
    matrix: (weight) => {
      if (isQuantized<T, Q>(weight)) {
        visit(weight.data);
        visit(weight.scales);
      } else {
        visit(weight);
      }
    },
  });
}

/** The weights with their dense expert matrices quantized on their device (the dense ones are left to the caller). */
function quantizeExperts(weights: LayerWeights, quantize: Quantizing): LayerWeights {
  const made = new Made();
  try {
    return mapWeights<Tensor, QuantizedWeights, Tensor, QuantizedWeights>(weights, {
      tensor: (tensor) => tensor,
      matrix: (matrix, routed) => (isQuantized(matrix) || !quantizes(quantize.quantization, routed) ? matrix : made.keep(quantizeMatrix(matrix, quantize))),
    });
  } catch (error) {
    made.disposeAll();
    throw error;
  }
}

/**
 * The routed experts of random dense weights replaced by random MXFP4 ones: the bytes of their int4
 * quantization read as e2m1 pairs (every nibble is a valid e2m1 pattern), with one e8m0 scale per
 * 32 values of 2^-(ceil(log2 sqrt(K)) + 2), so that |w| stays near the dense 1/sqrt(K).
 */
function randomMxfp4Experts(weights: LayerWeights): LayerWeights {
  const made = new Made();
  try {
    return mapWeights<Tensor, QuantizedWeights, Tensor, QuantizedWeights>(weights, {
      tensor: (tensor) => tensor,
      matrix: (matrix, routed) => {
        if (isQuantized(matrix) || !routed) return matrix;
        const depth = matrix.shape.at(-1)!;
        using int4 = quantizeWeights(matrix, 'int4', { groupSize: MXFP4_GROUP_SIZE });
        const exponent = 127 - (Math.ceil(Math.log2(Math.sqrt(depth))) + 2);
        const shape = scaleShape('mxfp4', matrix.shape);
        const scales = made.keep(Tensor.fromArray(new Uint8Array(shape.reduce((a, b) => a * b, 1)).fill(exponent), shape, { dtype: 'uint8', device: matrix.device }));
        const data = made.keep(int4.data.to(matrix.device));
        return new QuantizedWeights({ format: 'mxfp4', data, scales });
      },
    });
  } catch (error) {
    made.disposeAll();
    throw error;
  }
}

/** Frees the tensors of `old` that `kept` does not hold. */
function disposeReplaced(old: LayerWeights, kept: LayerWeights): void {
  const held = new Set<Tensor>();
  forEachWeight(kept, (tensor) => held.add(tensor));
  forEachWeight(old, (tensor) => {
    if (!held.has(tensor)) tensor.dispose();
  });
}

/** What the layer quantizes its experts to when it is built, and in which groups. */
interface Quantizing {
  quantization: Quantization;
  groupSize: GroupSize;
}

/**
 * options.quantize (and options.groupSize) checked against the config: a known quantization, asked
 * of dense weights only, a group size only for int8 / int4. Returns them, or undefined when not asked.
 */
function quantizeOption(options: { quantize?: unknown; groupSize?: unknown }, config: MoEConfig, where: string): Quantizing | undefined {
  const { quantize: value, groupSize } = options;
  if (value === undefined || value === null) {
    if (groupSize !== undefined) throw new MoekitError('E_INVALID_ARGUMENT', `${where}: options.groupSize ${describeValue(groupSize)} goes with options.quantize 'int8' or 'int4'`);
    return undefined;
  }
  if (!isQuantization(value)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${where}: options.quantize must be one of ${QUANTIZATIONS.join(', ')}, got ${describeValue(value)}`);
  }
  if (config.quantization) {
    throw new MoekitError('E_INVALID_ARGUMENT',
      `${where}: options.quantize '${value}' asks to quantize weights that are already quantized (${config.quantization}); leave quantize out to use them as they are`);
  }
  if (value === 'fp8' && groupSize !== undefined) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${where}: options.groupSize goes with quantize 'int8' or 'int4' (fp8 has 128×128 blocks), got ${describeValue(groupSize)}`);
  }
  return { quantization: value, groupSize: requireGroupSize(groupSize, QUANTIZATION_FORMATS[value], where, { name: 'options.groupSize' }) };
}

/** The config of a layer whose experts are quantized as `quantize` says (unchanged without it). */
function withQuantization(config: MoEConfig, quantize: Quantizing | undefined): MoEConfig {
  if (!quantize) return config;
  const { quantization, groupSize } = quantize;
  return { ...config, quantization, ...((quantization === 'int8' || quantization === 'int4') && { quantizationGroupSize: groupSize }) };
}

/**
 * Whether a layer quantized to `quantization` holds a matrix quantized: always the routed experts';
 * the shared expert's only under FP8 (weight-only quantizations leave it in 16 bits).
 */
function quantizes(quantization: ExpertQuantization, routed: boolean): boolean {
  return routed || quantization === 'fp8';
}

function quantizeMatrix(weights: Tensor, quantize: Quantizing): QuantizedWeights {
  const format = QUANTIZATION_FORMATS[quantize.quantization];
  return quantizeWeights(weights, format, format === 'fp8_block128' ? undefined : { groupSize: quantize.groupSize });
}

function isHostTensor(value: unknown): value is HostTensor {
  return typeof value === 'object' && value !== null && Array.isArray((value as HostTensor).shape);
}

/** The expert matrices, which may come quantized. */
const EXPERT_MATRICES: ReadonlySet<string> = new Set(['w13', 'w2', 'shared.w13', 'shared.w2']);

/** The weights mapWeights uploads, by name, as given (JavaScript callers can give anything). */
function givenWeights(weights: MoEWeights<HostTensor>): [string, unknown][] {
  const { shared, ...own } = weights as unknown as Record<string, unknown> & { shared?: unknown };
  const given = (['router', 'routerBias', 'correctionBias', 'w13', 'w13Bias', 'w2', 'w2Bias'] as const).map((name): [string, unknown] => [name, own[name]]);
  if (!shared) return given;
  if (typeof shared !== 'object') throw new MoekitError('E_CHECKPOINT', `MoE weights: shared must be { w13, w2, gate? }, got ${describeValue(shared)}`);
  const sharedWeights = shared as Record<string, unknown>;
  return [...given, ...(['w13', 'w2', 'gate'] as const).map((name): [string, unknown] => [`shared.${name}`, sharedWeights[name]])];
}

/** A quantized expert matrix on the host: a known format, data and scales of the format's dtypes and shapes. */
function checkHostQuantized(name: string, weight: HostQuantized): void {
  const problem = (message: string): never => {
    throw new MoekitError('E_CHECKPOINT', `MoE weights: ${name} ${message}`);
  };
  if (!(WEIGHT_FORMATS as readonly string[]).includes(weight.format)) problem(`has format ${describeValue(weight.format)}, expected one of ${WEIGHT_FORMATS.join(', ')}`);
  const { data, scales } = weight;
  const dtypes = partDTypes(weight.format);
  if (!isHostTensor(data) || data.dtype !== dtypes.data || !(data.data instanceof Uint8Array)) {
    problem(`must hold its values as { dtype: '${dtypes.data}', shape, data: Uint8Array }, got ${describeValue(data)}`);
  }
  const scaleDTypes = dtypes.scales === 'uint8' ? ['uint8'] : ['float32', 'float16', 'bfloat16'];
  if (!isHostTensor(scales) || !scaleDTypes.includes(scales.dtype)) {
    problem(`must hold ${scaleDTypes.join(' or ')} scales as { dtype, shape, data }, got ${describeValue(scales)}`);
  }
  const groupSize = requireGroupSize(weight.groupSize, weight.format, `MoE weights: ${name}`);
  const expected = scaleShape(weight.format, shapeOf(weight), groupSize);
  if (scales.shape.join(',') !== expected.join(',')) {
    const per = weight.format === 'fp8_block128' ? 'one per 128×128 block' : `one per ${groupSize === 'channel' ? 'output row' : `${groupSize} K values of an output row`}`;
    problem(`has scales of shape [${scales.shape.join(', ')}], expected [${expected.join(', ')}] (${per} of its [${shapeOf(weight).join(', ')}] values)`);
  }
}

/** A weight's shape: a tensor's, or a quantized matrix's logical [.., N, K]. */
function shapeOf(weight: HostTensor | HostQuantized): number[] {
  return isQuantized(weight) ? logicalShape(weight.format, weight.data.shape) : weight.shape;
}

function checkHostWeights(config: MoEConfig, weights: MoEWeights<HostTensor>, shard: RankShard | null): void {
  // Every weight given is uploaded, whether or not the config uses it.
  for (const [name, weight] of givenWeights(weights)) {
    if (!weight) continue;
    if (EXPERT_MATRICES.has(name) && isQuantized(weight as HostTensor | HostQuantized)) {
      checkHostQuantized(name, weight as HostQuantized);
      if (!config.quantization) throw new MoekitError('E_CHECKPOINT', `MoE weights: ${name} is quantized (${(weight as HostQuantized).format}) but the config has no quantization`);
      continue;
    }
    if (!isHostTensor(weight)) throw new MoekitError('E_CHECKPOINT', `MoE weights: ${name} must be { dtype, shape, data }, got ${describeValue(weight)}`);
    if (EXPERT_MATRICES.has(name) && config.quantization && quantizes(config.quantization, !name.startsWith('shared.'))) {
      throw new MoekitError('E_CHECKPOINT', `MoE weights: ${name} is dense but config.quantization is ${config.quantization} (to quantize dense weights, leave config.quantization out and pass options.quantize)`);
    }
  }
  const expected = expectedShapes(config, shard);
  const named = weights as unknown as Record<string, HostTensor | HostQuantized | undefined>;
  for (const [name, shape] of Object.entries(expected)) {
    const weight = named[name];
    if (weight === undefined) throw new MoekitError('E_CHECKPOINT', `MoE weights: ${name} is missing`);
    const given = shapeOf(weight);
    if (given.length !== shape.length || given.some((extent, axis) => extent !== shape[axis])) {
      throw new MoekitError('E_CHECKPOINT', `MoE weights: ${name} has shape [${given.join(', ')}], expected [${shape.join(', ')}]`);
    }
  }
  if (config.routing.method === 'sigmoid_group_topk' && weights.correctionBias && weights.correctionBias.shape[0] !== config.numExperts) {
    throw new MoekitError('E_CHECKPOINT', `MoE weights: correctionBias must have shape [${config.numExperts}]`);
  }
  if (config.sharedExpert) {
    const S = shard?.sharedIntermediate?.count ?? config.sharedExpert.intermediateSize;
    const H = config.hiddenSize;
    const shared = weights.shared;
    if (!shared) throw new MoekitError('E_CHECKPOINT', 'MoE weights: the config has a shared expert but shared weights are missing');
    const checks: [string, HostTensor | HostQuantized | undefined, number[]][] = [
      ['shared.w13', shared.w13, [2 * S, H]],
      ['shared.w2', shared.w2, [H, S]],
    ];
    if (config.sharedExpert.gated) checks.push(['shared.gate', shared.gate, [1, H]]);
    for (const [name, weight, shape] of checks) {
      if (!weight) throw new MoekitError('E_CHECKPOINT', `MoE weights: ${name} is missing`);
      if (shapeOf(weight).join(',') !== shape.join(',')) {
        throw new MoekitError('E_CHECKPOINT', `MoE weights: ${name} has shape [${shapeOf(weight).join(', ')}], expected [${shape.join(', ')}]`);
      }
    }
  }
}
