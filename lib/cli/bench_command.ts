/** `moekit bench`: the main job — MoE layer forwards with random weights, timed. */
import { activeWeightBytes, ALL_PRESETS, CPU_PRESETS, CPU_TOKENS, findPreset, forwardFlops, FULL_PRESETS, GPU_TOKENS, type BenchPreset } from '../bench/presets';
import { formatHeader, formatRow, writeJson, type BenchRow } from '../bench/report';
import { DEFAULT_TIMING, timeForward } from '../bench/timing';
import { DTYPE_BYTES } from '../dtype';
import { MoELayer } from '../layer/moe_layer';
import { deviceOption, dtypeOption, integerListOption, integerOption, parseCommandLine, UsageError } from './args';

export const BENCH_USAGE = `usage: moekit bench [--preset NAME] [--tokens LIST] [--device cpu|cuda:N] [--dtype D] [--json FILE] [--runs N] [--warmup N]

Times MoE layer forwards with random weights and prints time per forward, tokens/s and TFLOP/s.
Presets: ${ALL_PRESETS.map((preset) => preset.name).join(', ')}
Defaults: on the CPU the -mini presets (hidden and intermediate sizes / 4) at ${CPU_TOKENS.join(',')} tokens in float32;
on a GPU the full-size presets at ${GPU_TOKENS.join(',')} tokens in bfloat16.`;

export async function benchCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(args, {
    preset: { type: 'string' },
    tokens: { type: 'string' },
    device: { type: 'string' },
    dtype: { type: 'string' },
    json: { type: 'string' },
    runs: { type: 'string' },
    warmup: { type: 'string' },
  });
  if (values.help) {
    console.log(BENCH_USAGE);
    return;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  const device = deviceOption(values.device, 'cpu');
  const onCpu = device === 'cpu';
  const dtype = dtypeOption(values.dtype, onCpu ? 'float32' : 'bfloat16');
  const presets = choosePresets(values.preset, onCpu);
  const tokenCounts = values.tokens === undefined ? (onCpu ? CPU_TOKENS : GPU_TOKENS) : integerListOption(values.tokens, 'tokens');
  const timing = {
    ...DEFAULT_TIMING,
    runs: values.runs === undefined ? DEFAULT_TIMING.runs : integerOption(values.runs, 'runs', 1),
    warmup: values.warmup === undefined ? DEFAULT_TIMING.warmup : integerOption(values.warmup, 'warmup', 0),
  };

  console.log(formatHeader());
  const rows: BenchRow[] = [];
  for (const preset of presets) {
    using layer = MoELayer.random(preset.config, { device, dtype, seed: 1 });
    for (const tokens of tokenCounts) {
      const ms = await timeForward(layer, tokens, timing);
      const row = rowOf(preset, device, dtype, tokens, ms);
      rows.push(row);
      console.log(formatRow(row));
    }
  }
  if (values.json !== undefined) writeJson(values.json, rows);
}

function choosePresets(name: string | undefined, onCpu: boolean): readonly BenchPreset[] {
  if (name === undefined) return onCpu ? CPU_PRESETS : FULL_PRESETS;
  const preset = findPreset(name);
  if (!preset) throw new UsageError(`unknown preset ${JSON.stringify(name)} (presets: ${ALL_PRESETS.map((p) => p.name).join(', ')})`);
  return [preset];
}

function rowOf(preset: BenchPreset, device: string, dtype: keyof typeof DTYPE_BYTES, tokens: number, ms: number): BenchRow {
  const { config } = preset;
  const seconds = ms / 1e3;
  return {
    preset: preset.name,
    device,
    dtype,
    tokens,
    experts: config.numExperts,
    topK: config.routing.topK,
    hidden: config.hiddenSize,
    intermediate: config.intermediateSize,
    msPerForward: ms,
    tokensPerSecond: tokens / seconds,
    tflops: forwardFlops(config, tokens) / seconds / 1e12,
    weightGBps: activeWeightBytes(config, tokens, DTYPE_BYTES[dtype]) / seconds / 1e9,
  };
}
