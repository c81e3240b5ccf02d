/** `moekit bench`: MoE layer forwards with random weights in real models' shapes, timed. */
import { ALL_PRESETS, findPreset, FULL_PRESETS, MINI_PRESETS, type BenchPreset } from '../bench/presets';
import { benchRow, formatHeader, formatRow, writeJsonReport, type BenchRow } from '../bench/report';
import { timeForward, type TimingOptions } from '../bench/timing';
import type { Device } from '../device';
import type { FloatDType } from '../dtype';
import { MoELayer } from '../layer/moe_layer';
import {
  deviceOption, dtypeOption, expectPositionals, integerListOption, integerOption, listOption, parseCommandLine, UsageError,
  type CommandLine,
} from './args';

interface BenchDefaults extends TimingOptions {
  presets: readonly BenchPreset[];
  tokens: readonly number[];
  dtype: FloatDType;
}

// A GPU forward takes microseconds to milliseconds and varies more from run to run: more runs.
const CPU_DEFAULTS: BenchDefaults = { presets: MINI_PRESETS, tokens: [1, 16, 128], dtype: 'float32', warmup: 1, runs: 5 };
const CUDA_DEFAULTS: BenchDefaults = { presets: FULL_PRESETS, tokens: [1, 16, 128, 1024, 4096, 16384], dtype: 'bfloat16', warmup: 3, runs: 20 };

const names = (presets: readonly BenchPreset[]): string => presets.map((preset) => preset.name).join(', ');

const BENCH_USAGE = `usage: moekit bench [--preset NAME[,NAME...]] [--tokens LIST] [--device cpu|cuda:N]
                   [--dtype float32|bfloat16|float16] [--json FILE] [--warmup N] [--runs N]

Times MoE layer forwards with random weights in the shapes of real models and prints the median
time per forward, tokens/s, TFLOP/s (routed experts + shared expert + router) and the expert
weights streamed per second (GB/s; what bounds forwards of few tokens).

  --preset   ${names(ALL_PRESETS)}
             (default on the CPU: ${names(MINI_PRESETS)};
              on CUDA: ${names(FULL_PRESETS)})
  --tokens   comma-separated token counts (default ${CPU_DEFAULTS.tokens.join(',')} on the CPU, ${CUDA_DEFAULTS.tokens.join(',')} on CUDA)
  --device   cpu or cuda:N (default cpu)
  --dtype    compute dtype (default ${CPU_DEFAULTS.dtype} on the CPU, ${CUDA_DEFAULTS.dtype} on CUDA)
  --json     also write the rows to FILE as a JSON array
  --warmup   untimed runs first (default ${CPU_DEFAULTS.warmup} on the CPU, ${CUDA_DEFAULTS.warmup} on CUDA)
  --runs     timed runs; the median is reported (default ${CPU_DEFAULTS.runs} on the CPU, ${CUDA_DEFAULTS.runs} on CUDA)`;

const BENCH_OPTION_NAMES = ['preset', 'tokens', 'device', 'dtype', 'json', 'warmup', 'runs'] as const;

interface BenchPlan extends BenchDefaults {
  device: Device;
  json: string | undefined;
}

function presetsOption(value: string | undefined, fallback: readonly BenchPreset[]): readonly BenchPreset[] {
  if (value === undefined) return fallback;
  return listOption(value).map((name) => {
    const preset = findPreset(name);
    if (preset === undefined) throw new UsageError(`unknown preset ${JSON.stringify(name)} (presets: ${names(ALL_PRESETS)})`);
    return preset;
  });
}

function benchPlan({ options, positionals }: CommandLine<(typeof BENCH_OPTION_NAMES)[number]>): BenchPlan {
  expectPositionals(positionals, []);
  const device = deviceOption(options.device, 'cpu');
  const defaults = device === 'cpu' ? CPU_DEFAULTS : CUDA_DEFAULTS;
  return {
    device,
    presets: presetsOption(options.preset, defaults.presets),
    tokens: options.tokens === undefined ? defaults.tokens : integerListOption(options.tokens, 'tokens', 1),
    dtype: dtypeOption(options.dtype, defaults.dtype),
    warmup: options.warmup === undefined ? defaults.warmup : integerOption(options.warmup, 'warmup', 0),
    runs: options.runs === undefined ? defaults.runs : integerOption(options.runs, 'runs', 1),
    json: options.json,
  };
}

/** Prints each row as soon as it is measured: a full run takes a while. */
async function benchPreset(preset: BenchPreset, plan: BenchPlan): Promise<BenchRow[]> {
  using layer = MoELayer.random(preset.config, { device: plan.device, dtype: plan.dtype });
  const rows: BenchRow[] = [];
  for (const tokens of plan.tokens) {
    const row = benchRow(preset, plan.device, plan.dtype, tokens, await timeForward(layer, tokens, plan));
    console.log(formatRow(row));
    rows.push(row);
  }
  return rows;
}

export async function benchCommand(args: readonly string[]): Promise<void> {
  const commandLine = parseCommandLine(args, BENCH_OPTION_NAMES);
  if (commandLine.help) {
    console.log(BENCH_USAGE);
    return;
  }
  const plan = benchPlan(commandLine);
  console.log(formatHeader());
  const rows: BenchRow[] = [];
  // One layer at a time: the full-size presets' weights would not all fit in memory together.
  for (const preset of plan.presets) rows.push(...(await benchPreset(preset, plan)));
  if (plan.json !== undefined) writeJsonReport(plan.json, rows);
}
