/** `moekit bench`: MoE layer forwards with random weights in real models' shapes, or the user's own (--shape), timed. */
import { measureCeilings } from '../bench/ceilings';
import { againstEarlier, compareRows, formatAgainstEarlier, formatComparison, formatComparisonPreamble, readBenchRows, readTorchRows, type ComparedBenchRow, type TorchRow } from '../bench/compare';
import { DEFAULT_SHAPE_SETTINGS, parseShapeActivation, parseShapeRouting, shapePreset, type ShapeSettings } from '../bench/custom_shape';
import { runParallelBench } from '../bench/parallel_run';
import { runWideEpCommand } from '../bench/wide_ep_run';
import { ALL_PRESETS, findPreset, FULL_PRESETS, MINI_PRESETS, type BenchPreset } from '../bench/presets';
import { benchConfig, benchRow, deviceName, formatHeader, formatPreamble, formatRow, writeJsonReport, type BenchContext, type BenchRow } from '../bench/report';
import { writeHtmlReport } from '../bench/html_report';
import { timeForward, type TimingOptions } from '../bench/timing';
import type { Device } from '../device';
import type { FloatDType } from '../dtype';
import { withContext } from '../errors';
import { MoELayer } from '../layer/moe_layer';
import type { MoEConfig } from '../model/config';
import { validateMoEConfig } from '../model/validate_config';
import { addon } from '../native';
import type { GroupSize, Quantization } from '../ops/quantized';
import { DISPATCH_MODES, type ParallelOptions } from '../parallel/plan';
import { ACTIVATIONS, ROUTING_METHODS } from '../vocabulary';
import {
  asUsageError, deviceOption, dtypeOption, expectPositionals, groupSizeOption, integerListOption, integerOption, listOption, parseCommandLine, quantizeOption, UsageError,
  type CommandLine,
} from './args';
import { progressBar, type Progress } from './progress';

interface BenchDefaults extends TimingOptions {
  presets: readonly BenchPreset[];
  tokens: readonly number[];
  dtype: FloatDType;
}

// A GPU forward takes microseconds to milliseconds and varies more from run to run: more runs.
const CPU_DEFAULTS: BenchDefaults = { presets: MINI_PRESETS, tokens: [1, 16, 128], dtype: 'float32', warmup: 1, runs: 5 };
// Decode-sized points are also timed as CUDA-graph replays, the way a decode loop runs them.
const CUDA_DEFAULTS: BenchDefaults = {
  presets: FULL_PRESETS, tokens: [1, 16, 128, 1024, 4096, 16384], dtype: 'bfloat16', warmup: 3, runs: 20, graphMaxTokens: 128,
};
// Each rank cuts its shard from the full weights on the host, which DeepSeek-V3's do not fit. The
// all-reduce is not captured into graphs: eager forwards only.
const PARALLEL_DEFAULTS: BenchDefaults = {
  ...CUDA_DEFAULTS, presets: FULL_PRESETS.filter((preset) => preset.name !== 'deepseek-v3'), graphMaxTokens: 0,
};

// Wide EP draws each rank's experts on its GPU, so the largest preset runs too.
const WIDE_EP_PRESETS: readonly BenchPreset[] = FULL_PRESETS.filter((preset) => preset.name === 'deepseek-v3' || preset.name === 'qwen3-30b-a3b');

const names = (presets: readonly BenchPreset[]): string => presets.map((preset) => preset.name).join(', ');

const BENCH_USAGE = `usage: moekit bench [--preset NAME[,NAME...]] [--shape E,K,H,I[,S] ...] [--routing METHOD] [--activation KIND]
                   [--tokens LIST] [--device cpu|cuda:N] [--dtype float32|bfloat16|float16]
                   [--quantize fp8|int8|int4] [--group-size N|channel] [--json FILE] [--html FILE]
                   [--warmup N] [--runs N] [--graph-tokens N] [--compare TORCH_JSON [--from MOEKIT_JSON]] [--quiet]
       moekit launch --nproc N moekit bench --parallel [--moe-tp N] [--moe-ep M] [options above]

Times MoE layer forwards with random weights in the shapes of real models, or of your own. Before
the forwards it measures the device's two ceilings in the same run: a dense matmul (cuBLAS where
it loads, else moekit's own linear, labelled) and a device-to-device copy. Each row gives the
median device time per forward (CUDA events; worker-thread timestamps on the CPU) with p10-p90,
the floor max(FLOPs / matmul ceiling, expected active-expert bytes / copy ceiling) and the time
over it, TFLOP/s, the expert weights streamed per second, the experts touched, and each stage's
time.

  --preset    ${names(ALL_PRESETS)}
              (default, without --shape, on the CPU: ${names(MINI_PRESETS)};
               on CUDA: ${names(FULL_PRESETS)})
  --shape     E,K,H,I[,S]: a layer in your own model's shape (repeat the option for several): E
              experts, top-K, hidden size H, expert intermediate size I, and S the shared expert's
              intermediate size (absent or 0: none; ungated, as DeepSeek-V3's). Each runs after
              the --preset ones as a preset named from its numbers in every output, --compare
              included: --shape 64,6,2048,1408,2816 (DeepSeek-V2-Lite) is shape-E64-K6-H2048-I1408-S2816
  --routing   with --shape: ${ROUTING_METHODS.join(', ')} (default ${DEFAULT_SHAPE_SETTINGS.routing.method}),
              top-k weights renormalized; sigmoid_group_topk,GROUPS,KEPT keeps the KEPT best of
              GROUPS expert groups (DeepSeek-V3: 8,4; without them, no group limit)
  --activation  with --shape: ${ACTIVATIONS.join(', ')} (default ${DEFAULT_SHAPE_SETTINGS.activation})
  --tokens    comma-separated token counts (default ${CPU_DEFAULTS.tokens.join(',')} on the CPU, ${CUDA_DEFAULTS.tokens.join(',')} on CUDA)
  --device    cpu or cuda:N (default cuda:0 where a CUDA device is found, else cpu; the first
              line says which and why)
  --dtype     compute dtype (default ${CPU_DEFAULTS.dtype} on the CPU, ${CUDA_DEFAULTS.dtype} on CUDA)
  --quantize  quantize the experts: fp8 (e4m3, 128x128 block scales, computed W8A8), int8 or
              int4 (weight-only); the floor then counts the real bytes per expert weight (1 for
              fp8 and int8, 0.5 for int4, and its share of the scales). A preset that is
              quantized as published (gpt-oss-20b: MXFP4, random 4-bit weights) keeps its own
  --group-size  with int8/int4: K values per scale, a multiple of 32, or channel
  --json      also write the rows to FILE as a JSON array
  --html      also write FILE: one self-contained page with charts (ms per forward and x floor
              against tokens per preset, moekit beside PyTorch with --compare, stage breakdown)
  --quiet     no progress bar (it is drawn on stderr only when stderr is a terminal)
  --warmup    untimed runs first (default ${CPU_DEFAULTS.warmup} on the CPU, ${CUDA_DEFAULTS.warmup} on CUDA)
  --runs      timed runs; the median is reported (default ${CPU_DEFAULTS.runs} on the CPU, ${CUDA_DEFAULTS.runs} on CUDA)
  --graph-tokens  on CUDA, also time forwards of up to N tokens as CUDA-graph replays (layer.capture:
              one launch, no host gaps between kernels; default ${CUDA_DEFAULTS.graphMaxTokens}, 0: never); the
              graph ms column, and the better of the two in --compare and --against
  --compare   then print a Markdown table of moekit next to torch._grouped_mm from the JSON of
              bench/torch_baseline.py (same presets, --shape and --routing, and token counts)
  --from      with --compare or --against: take moekit's rows from an earlier --json file instead
              of running
  --against   then print a Markdown table of this run beside an earlier moekit --json file (a
              kernel version beside the one before: ms, earlier ms, speed-up) and name the
              points that got slower
  --parallel  in each process of 'moekit launch': shard the layer over the group and time the
              forward with its all-reduce; rank 0 prints the all-reduce's share of the forward
              and the expert-load imbalance (max/mean of routed pairs over ranks). Without
              --moe-tp/--moe-ep, every tp×ep factorization of the group the layer allows.
              Default presets: ${names(PARALLEL_DEFAULTS.presets)}
  --moe-tp    with --parallel: Tensor Parallel size (TensorRT-LLM's moeTpSize)
  --moe-ep    with --parallel: Expert Parallel size (moeEpSize)
  --dispatch  with --parallel: all_reduce (the default: the sweep above) or all_to_all: wide EP
              over the whole group (every rank its own --tokens, rows sent to their experts'
              ranks and back) against one GPU running the whole layer on as many tokens; each
              rank draws only its experts, so DeepSeek-V3 runs too. Default presets: ${names(WIDE_EP_PRESETS)}

cuBLAS is loaded at run time: libcublas.so.13, then .12, or the file or folder MOEKIT_CUBLAS_PATH names.
On CUDA the GPU's clocks and power are read through NVML (libnvidia-ml.so.1, or MOEKIT_NVML_PATH)
while each row and the matmul ceiling run: the SM MHz column and the rows' "clocks" in --json. A
long forward can hold the GPU at its power limit, below the clock the short ceiling runs at.`;

const BENCH_OPTION_NAMES = [
  'preset', 'routing', 'activation', 'tokens', 'device', 'dtype', 'quantize', 'group-size', 'json', 'html', 'warmup', 'runs', 'graph-tokens', 'compare', 'from',
  'against', 'moe-tp', 'moe-ep', 'dispatch',
] as const;
const BENCH_FLAG_NAMES = ['parallel', 'quiet'] as const;
const BENCH_REPEATABLE_NAMES = ['shape'] as const;

type BenchCommandLine = CommandLine<(typeof BENCH_OPTION_NAMES)[number], (typeof BENCH_FLAG_NAMES)[number], (typeof BENCH_REPEATABLE_NAMES)[number]>;

interface BenchPlan extends BenchDefaults {
  device: Device;
  quantize: Quantization | undefined;
  groupSize: GroupSize | undefined;
  /** Why the device is the one it is (the first line of the output). */
  deviceReason: string;
  json: string | undefined;
  html: string | undefined;
  quiet: boolean;
  /** bench/torch_baseline.py's JSON to compare with. */
  compare: string | undefined;
  /** Earlier moekit rows to compare instead of running. */
  from: string | undefined;
  /** An earlier moekit run to print beside this one (--against). */
  against: string | undefined;
  /** Set for --parallel. */
  parallel: ParallelOptions | undefined;
}

/** --routing and --activation: the config of every --shape, which they go with. */
function shapeSettings({ options, repeated }: BenchCommandLine): ShapeSettings {
  const { routing, activation } = options;
  if (repeated.shape === undefined) {
    if (routing !== undefined) throw new UsageError('--routing goes with --shape (presets have their own routing)');
    if (activation !== undefined) throw new UsageError('--activation goes with --shape (presets have their own activation)');
  }
  return {
    routing: routing === undefined ? DEFAULT_SHAPE_SETTINGS.routing : asUsageError(() => parseShapeRouting(routing)),
    activation: activation === undefined ? DEFAULT_SHAPE_SETTINGS.activation : asUsageError(() => parseShapeActivation(activation)),
  };
}

function namedPresets(value: string): BenchPreset[] {
  return listOption(value).map((name) => {
    const preset = findPreset(name);
    if (preset === undefined) throw new UsageError(`unknown preset ${JSON.stringify(name)} (presets: ${names(ALL_PRESETS)})`);
    return preset;
  });
}

/** --preset's presets (neither it nor --shape given: `fallback`), then one per --shape. */
function presetsOption(commandLine: BenchCommandLine, fallback: readonly BenchPreset[]): readonly BenchPreset[] {
  const { options, repeated: { shape: shapes = [] } } = commandLine;
  const settings = shapeSettings(commandLine);
  const named = options.preset !== undefined ? namedPresets(options.preset) : shapes.length === 0 ? fallback : [];
  return [...named, ...shapes.map((text) => asUsageError(() => shapePreset(text, settings)))];
}

/**
 * Refuses at once a layer the run's quantization cannot make (int4 needs H and I even), naming it:
 * the run would otherwise fail only when its turn came, after the layers before it.
 */
function checkQuantizable(presets: readonly BenchPreset[], quantization: Quantization | undefined, groupSize: GroupSize | undefined): void {
  if (quantization === undefined) return;
  for (const { name, config } of presets) {
    asUsageError(() => withContext(`${name} with --quantize ${quantization}`, () => validateMoEConfig(benchConfig(config, { quantization, groupSize: groupSize ?? null }))));
  }
}

function parallelOption({ options, flags }: BenchCommandLine): ParallelOptions | undefined {
  const sizes: ParallelOptions = {
    moeTpSize: options['moe-tp'] === undefined ? undefined : integerOption(options['moe-tp'], 'moe-tp', 1),
    moeEpSize: options['moe-ep'] === undefined ? undefined : integerOption(options['moe-ep'], 'moe-ep', 1),
  };
  const dispatch = options.dispatch;
  if (!flags.has('parallel')) {
    if (sizes.moeTpSize !== undefined || sizes.moeEpSize !== undefined) throw new UsageError('--moe-tp and --moe-ep need --parallel');
    if (dispatch !== undefined) throw new UsageError('--dispatch needs --parallel');
    return undefined;
  }
  if (dispatch !== undefined) {
    if (!(DISPATCH_MODES as readonly string[]).includes(dispatch)) {
      throw new UsageError(`--dispatch must be ${DISPATCH_MODES.join(' or ')}, got ${JSON.stringify(dispatch)}`);
    }
    if (dispatch === 'all_to_all' && (sizes.moeTpSize !== undefined || sizes.moeEpSize !== undefined)) {
      throw new UsageError('--dispatch all_to_all is Expert Parallel over the whole group: leave out --moe-tp and --moe-ep');
    }
    if (dispatch === 'all_to_all') sizes.dispatch = 'all_to_all';
  }
  for (const name of ['compare', 'from', 'html', 'against'] as const) {
    if (options[name] !== undefined) throw new UsageError(`--${name} does not go with --parallel`);
  }
  // Each rank runs on its group's GPU (cuda:LOCAL_RANK); --device may only say CUDA.
  if (options.device !== undefined && deviceOption(options.device, 'cpu') === 'cpu') {
    throw new UsageError('--parallel runs on CUDA devices (one per rank, over NCCL), not on the CPU');
  }
  return sizes;
}

/** --device, or without it cuda:0 where the addon finds a CUDA device, else the CPU; and why. */
function chooseDevice(given: string | undefined): { device: Device; reason: string } {
  if (given !== undefined) return { device: deviceOption(given, 'cpu'), reason: '--device' };
  const native = addon();
  if (native.variant !== 'cuda') return { device: 'cpu', reason: 'no --device; this moekit build has no CUDA backend (see moekit info)' };
  const count = native.cudaDeviceCount();
  if (count === 0) return { device: 'cpu', reason: 'no --device; no CUDA device found (see moekit info)' };
  return { device: 'cuda:0', reason: `no --device; ${count} CUDA device${count === 1 ? '' : 's'} found, using the first` };
}

/** --graph-tokens: CUDA only, and not under --parallel (the all-reduce is not captured). */
function graphTokensOption(given: string | undefined, device: Device, parallel: ParallelOptions | undefined, defaults: BenchDefaults): Pick<BenchDefaults, 'graphMaxTokens'> {
  if (given === undefined) return defaults.graphMaxTokens === undefined ? {} : { graphMaxTokens: defaults.graphMaxTokens };
  if (parallel) throw new UsageError('--graph-tokens does not go with --parallel (the all-reduce is not captured into graphs)');
  if (device === 'cpu') throw new UsageError('--graph-tokens needs a CUDA device: CUDA graphs time the replays');
  return { graphMaxTokens: integerOption(given, 'graph-tokens', 0) };
}

function benchPlan(commandLine: BenchCommandLine): BenchPlan {
  const { options, positionals } = commandLine;
  expectPositionals(positionals, []);
  const parallel = parallelOption(commandLine);
  if (options.from !== undefined && options.compare === undefined && options.against === undefined) throw new UsageError('--from needs --compare or --against');
  // Under --parallel the device is the group's; 'cuda:0' only picks the CUDA defaults.
  const { device, reason } = parallel ? { device: 'cuda:0' as Device, reason: 'the group\'s GPUs' } : chooseDevice(options.device);
  const defaults = parallel ? PARALLEL_DEFAULTS : device === 'cpu' ? CPU_DEFAULTS : CUDA_DEFAULTS;
  const presets = presetsOption(commandLine, defaults.presets);
  const quantize = quantizeOption(options.quantize);
  const groupSize = groupSizeOption(options['group-size'], quantize);
  checkQuantizable(presets, quantize, groupSize);
  return {
    device,
    presets,
    tokens: options.tokens === undefined ? defaults.tokens : integerListOption(options.tokens, 'tokens', 1),
    dtype: dtypeOption(options.dtype, defaults.dtype),
    quantize,
    groupSize,
    warmup: options.warmup === undefined ? defaults.warmup : integerOption(options.warmup, 'warmup', 0),
    runs: options.runs === undefined ? defaults.runs : integerOption(options.runs, 'runs', 1),
    ...graphTokensOption(options['graph-tokens'], device, parallel, defaults),
    deviceReason: reason,
    json: options.json,
    html: options.html,
    quiet: commandLine.flags.has('quiet'),
    compare: options.compare,
    against: options.against,
    from: options.from,
    parallel,
  };
}

/** A sweep's output lines and its progress bar (points timed of all points). */
class Sweep {
  readonly #progress: Progress;
  readonly #points: number;
  #done = 0;

  constructor(progress: Progress, points: number) {
    this.#progress = progress;
    this.#points = points;
    progress.update(0, points);
  }

  print(line: string): void {
    this.#progress.around(() => console.log(line));
  }

  pointDone(): void {
    this.#progress.update(++this.#done, this.#points);
  }

  finish(): void {
    this.#progress.finish();
  }
}

/** A layer's shape, routing and activation in words: E 8, top-2, H 64, I 32, shared I 64, softmax_topk, swiglu. */
function describeLayer(config: MoEConfig): string {
  const { routing, sharedExpert } = config;
  const groups = routing.numGroups > 1 ? ` (${routing.topkGroups} of ${routing.numGroups} groups)` : '';
  return `E ${config.numExperts}, top-${routing.topK}, H ${config.hiddenSize}, I ${config.intermediateSize}` +
    `${sharedExpert ? `, shared I ${sharedExpert.intermediateSize}` : ''}, ${routing.method}${groups}, ${config.activation}`;
}

/** Prints each row as soon as it is measured: a full run takes a while. */
async function benchPreset(preset: BenchPreset, plan: BenchPlan, context: BenchContext, sweep: Sweep): Promise<BenchRow[]> {
  sweep.print(`# ${preset.name}: ${describeLayer(preset.config)}`);
  // A preset quantized as published (gpt-oss-20b) draws its own random quantized weights.
  const quantize = preset.config.quantization ? {} : { quantize: plan.quantize, groupSize: plan.groupSize };
  using layer = MoELayer.random(preset.config, { device: plan.device, dtype: plan.dtype, ...quantize });
  const rows: BenchRow[] = [];
  for (const tokens of plan.tokens) {
    const row = benchRow({ ...preset, config: layer.config }, context, tokens, await timeForward(layer, tokens, plan));
    rows.push(row);
    sweep.print(formatRow(row));
    sweep.pointDone();
  }
  return rows;
}

/** Ceilings first, then one layer at a time: the full-size presets' weights would not all fit in memory together. */
async function runBench(plan: BenchPlan): Promise<BenchRow[]> {
  console.log(`# benchmarking on ${plan.device} (${plan.deviceReason})`);
  const context: BenchContext = {
    device: plan.device,
    deviceName: deviceName(plan.device),
    dtype: plan.dtype,
    quantization: plan.quantize ?? null,
    groupSize: plan.groupSize ?? null,
    ceilings: await measureCeilings(plan.device, plan.dtype),
  };
  for (const line of formatPreamble(context)) console.log(line);
  console.log(formatHeader(context));
  const sweep = new Sweep(progressBar({ label: 'bench', quiet: plan.quiet }), plan.presets.length * plan.tokens.length);
  const rows: BenchRow[] = [];
  try {
    for (const preset of plan.presets) rows.push(...(await benchPreset(preset, plan, context, sweep)));
  } finally {
    sweep.finish();
  }
  if (plan.json !== undefined) writeJsonReport(plan.json, rows);
  return rows;
}

function printComparison(moekit: readonly ComparedBenchRow[], torch: readonly TorchRow[]): void {
  console.log('');
  for (const line of [...formatComparisonPreamble(moekit, torch), ...formatComparison(compareRows(moekit, torch))]) console.log(line);
}

export async function benchCommand(args: readonly string[]): Promise<void> {
  const commandLine = parseCommandLine(args, BENCH_OPTION_NAMES, BENCH_FLAG_NAMES, BENCH_REPEATABLE_NAMES);
  if (commandLine.help) {
    console.log(BENCH_USAGE);
    return;
  }
  const plan = benchPlan(commandLine);
  if (plan.parallel?.dispatch === 'all_to_all') {
    await runWideEpCommand({ ...plan, presets: commandLine.options.preset === undefined ? WIDE_EP_PRESETS : plan.presets });
    return;
  }
  if (plan.parallel !== undefined) {
    await runParallelBench({ ...plan, sizes: plan.parallel });
    return;
  }
  // The baseline is read first: a bad file fails before a long run rather than after it.
  if (plan.compare !== undefined) readTorchRows(plan.compare);
  if (plan.against !== undefined) readBenchRows(plan.against);
  const rows = plan.from !== undefined ? readBenchRows(plan.from) : await runBench(plan);
  const torch = plan.compare !== undefined ? readTorchRows(plan.compare) : undefined;
  if (torch !== undefined) printComparison(rows, torch);
  if (plan.against !== undefined) {
    console.log('');
    console.log(`# against ${plan.against} (the better of eager and graph replay in each run)`);
    for (const line of formatAgainstEarlier(againstEarlier(rows, readBenchRows(plan.against)))) console.log(line);
  }
  if (plan.html !== undefined) {
    writeHtmlReport(plan.html, rows, torch);
    console.log(`# wrote ${plan.html}`);
  }
}
