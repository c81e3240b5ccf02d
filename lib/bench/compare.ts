/**
 * moekit next to PyTorch: the rows of `moekit bench --json` joined with those of
 * bench/torch_baseline.py --json on (preset, tokens), printed as a Markdown table (the form
 * bench/NOTES.md keeps).
 */
import { FORWARD_STAGES } from '../layer/forward';
import { readJsonRows, type BenchRow } from './report';

/** One row of bench/torch_baseline.py's JSON (its own key names). */
export interface TorchRow {
  preset: string;
  /**
   * 'grouped_mm' (the layer through torch._grouped_mm), 'gemms' (its two grouped GEMMs and SwiGLU
   * alone, on rows already sorted) or 'hf_loop' (a per-expert Python loop).
   */
  pipeline: string;
  tokens: number;
  ms: number;
  floor_ms: number;
  tflops: number;
  matmul_ceiling_tflops: number;
  copy_ceiling_tbps: number;
  gpu: string;
  /** 'fp8' for a `--quantize fp8` run: its floor takes the FP8 matmul ceiling and 1 byte per weight. */
  quantize?: string;
}

/** The moekit fields the comparison reads; older result files lack the rest (floor, stages). */
export type ComparedBenchRow = Pick<BenchRow, 'preset' | 'tokens' | 'msPerForward' | 'tflops'> & Partial<BenchRow>;

export interface ComparedRow {
  preset: string;
  tokens: number;
  moekitMs: number;
  /** A CUDA-graph replay of the same forward, where the run measured one. */
  graphMs: number | undefined;
  /** The better of moekitMs and graphMs: what the speed-up and the floor ratio are taken on. */
  bestMs: number;
  /** torch._grouped_mm's time for the same point; undefined when the baseline lacks it. */
  torchMs: number | undefined;
  /** torchMs / bestMs: above 1, moekit is faster. */
  speedup: number | undefined;
  /**
   * moekit's own floor (its ceilings), else the baseline's; for FP8 experts the FP8 baseline's
   * (moekit's own run has no FP8 GEMM yardstick: floorOf).
   */
  floorMs: number | undefined;
  overFloor: number | undefined;
  tflops: number;
  /** The median SM clock over moekit's runs of the point (NVML), where the run read it. */
  smClockMHz: number | undefined;
  /** moekit's two grouped GEMMs (expert_up + expert_down stages, eager), where the row has stages. */
  gemmMs: number | undefined;
  /** torch._grouped_mm's two GEMMs and SwiGLU on the same shapes ('gemms' pipeline). */
  torchGemmMs: number | undefined;
  /** torchGemmMs / gemmMs. */
  gemmSpeedup: number | undefined;
  stageMs: BenchRow['stageMs'];
}

const TORCH_KEYS = ['preset', 'pipeline', 'tokens', 'ms', 'floor_ms'] as const;
const MOEKIT_KEYS = ['preset', 'tokens', 'msPerForward', 'tflops'] as const;

export function readTorchRows(file: string): TorchRow[] {
  return readJsonRows<TorchRow>(file, TORCH_KEYS, 'bench/torch_baseline.py');
}

export function readBenchRows(file: string): ComparedBenchRow[] {
  return readJsonRows<ComparedBenchRow>(file, MOEKIT_KEYS, 'moekit bench');
}

/**
 * The floor a row is measured against: moekit's own, except for FP8 experts beside an FP8
 * baseline, whose floor takes torch._scaled_mm's FP8 ceiling where moekit's takes a 16-bit GEMM's.
 */
function floorOf(row: ComparedBenchRow, baseline: TorchRow | undefined): number | undefined {
  if (row.quantization === 'fp8' && baseline?.quantize === 'fp8') return baseline.floor_ms;
  return row.floorMs ?? baseline?.floor_ms;
}

export function compareRows(moekit: readonly ComparedBenchRow[], torch: readonly TorchRow[]): ComparedRow[] {
  return moekit.map((row) => {
    const find = (pipeline: string): TorchRow | undefined =>
      torch.find((candidate) => candidate.pipeline === pipeline && candidate.preset === row.preset && candidate.tokens === row.tokens);
    const baseline = find('grouped_mm');
    const torchGemmMs = find('gemms')?.ms;
    const up = row.stageMs?.expert_up;
    const down = row.stageMs?.expert_down;
    const gemmMs = up === undefined || down === undefined ? undefined : up + down;
    const floorMs = floorOf(row, baseline);
    const graphMs = row.graphMsPerForward;
    const bestMs = Math.min(row.msPerForward, graphMs ?? Infinity);
    return {
      preset: row.preset,
      tokens: row.tokens,
      moekitMs: row.msPerForward,
      graphMs,
      bestMs,
      torchMs: baseline?.ms,
      speedup: baseline === undefined ? undefined : baseline.ms / bestMs,
      floorMs,
      overFloor: floorMs === undefined ? undefined : bestMs / floorMs,
      tflops: row.tflops,
      smClockMHz: row.clocks?.smClockMHz,
      gemmMs,
      torchGemmMs,
      gemmSpeedup: gemmMs === undefined || torchGemmMs === undefined ? undefined : torchGemmMs / gemmMs,
      stageMs: row.stageMs ?? {},
    };
  });
}

const STAGES = FORWARD_STAGES.filter((stage) => stage !== 'all_reduce');

const fixed = (value: number | undefined, digits: number, suffix = ''): string => (value === undefined ? '—' : `${value.toFixed(digits)}${suffix}`);

/** '# ' lines naming each side's GPU and ceilings (a join across different GPUs says so). */
export function formatComparisonPreamble(moekit: readonly ComparedBenchRow[], torch: readonly TorchRow[]): string[] {
  const ours = moekit[0];
  const theirs = torch[0];
  const lines: string[] = [];
  if (ours?.ceilings) {
    const clocks = ours.ceilings.matmulClocks ? ` (at ${ours.ceilings.matmulClocks.smClockMHz.toFixed(0)} MHz)` : '';
    lines.push(`# moekit: ${ours.deviceName ?? ours.device ?? '?'}, matmul ${ours.ceilings.matmulTflops.toFixed(0)} TFLOP/s${clocks}, copy ${(ours.ceilings.copyGBps / 1e3).toFixed(2)} TB/s`);
  }
  if (theirs) {
    lines.push(`# torch:  ${theirs.gpu}, matmul ${theirs.matmul_ceiling_tflops.toFixed(0)} TFLOP/s, copy ${theirs.copy_ceiling_tbps.toFixed(2)} TB/s`);
  }
  if (ours?.deviceName !== undefined && theirs !== undefined && ours.deviceName !== theirs.gpu) {
    lines.push(`# WARNING: different devices (${ours.deviceName} vs ${theirs.gpu}): the times do not compare`);
  }
  return lines;
}

/**
 * The joined table in Markdown: times in ms, the speed-up over torch._grouped_mm and the ratio to
 * the floor, both on the better of the eager forward and its CUDA-graph replay; then the grouped
 * GEMMs alone next to torch's.
 */
export function formatComparison(rows: readonly ComparedRow[]): string[] {
  const header = ['preset', 'tokens', 'moekit ms', 'graph ms', 'torch _grouped_mm ms', 'speed-up', 'floor ms', 'moekit / floor', 'TFLOP/s', 'SM MHz', 'GEMMs ms', 'torch GEMMs ms', 'GEMM speed-up', ...STAGES.map((stage) => `${stage} ms`)];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const row of rows) {
    const cells = [
      row.preset,
      String(row.tokens),
      fixed(row.moekitMs, 3),
      fixed(row.graphMs, 3),
      fixed(row.torchMs, 3),
      fixed(row.speedup, 2, '×'),
      fixed(row.floorMs, 3),
      fixed(row.overFloor, 1, '×'),
      fixed(row.tflops, 1),
      fixed(row.smClockMHz, 0),
      fixed(row.gemmMs, 3),
      fixed(row.torchGemmMs, 3),
      fixed(row.gemmSpeedup, 2, '×'),
      ...STAGES.map((stage) => fixed(row.stageMs[stage], 3)),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines;
}

/** One point of this run beside the same point of an earlier moekit run (`--against`). */
export interface EarlierRow {
  preset: string;
  tokens: number;
  /** The better of the eager forward and its graph replay, in each run. */
  bestMs: number;
  earlierMs: number | undefined;
  /** earlierMs / bestMs: above 1, this run is faster. */
  speedup: number | undefined;
}

const bestOf = (row: ComparedBenchRow): number => Math.min(row.msPerForward, row.graphMsPerForward ?? Infinity);

/** Each row of this run with the earlier run's row of the same preset and token count, if any. */
export function againstEarlier(rows: readonly ComparedBenchRow[], earlier: readonly ComparedBenchRow[]): EarlierRow[] {
  return rows.map((row) => {
    const before = earlier.find((candidate) => candidate.preset === row.preset && candidate.tokens === row.tokens);
    const bestMs = bestOf(row);
    const earlierMs = before === undefined ? undefined : bestOf(before);
    return { preset: row.preset, tokens: row.tokens, bestMs, earlierMs, speedup: earlierMs === undefined ? undefined : earlierMs / bestMs };
  });
}

/**
 * The Markdown table of this run beside an earlier one (a kernel version's results beside the
 * version before, say), and a last line naming the points that got slower.
 */
export function formatAgainstEarlier(rows: readonly EarlierRow[]): string[] {
  const lines = ['| preset | tokens | ms | earlier ms | speed-up |', '|---|---|---|---|---|'];
  for (const row of rows) lines.push(`| ${row.preset} | ${row.tokens} | ${fixed(row.bestMs, 3)} | ${fixed(row.earlierMs, 3)} | ${fixed(row.speedup, 2, '×')} |`);
  const slower = rows.filter((row) => row.speedup !== undefined && row.speedup < 1);
  lines.push(slower.length === 0 ? '# no point slower than the earlier run' : `# slower than the earlier run: ${slower.map((row) => `${row.preset} at ${row.tokens} tokens`).join(', ')}`);
  return lines;
}
