/** Benchmark results: one row per (preset, tokens), the printed table and the JSON file. */
import * as fs from 'node:fs';
import * as os from 'node:os';

import { deviceIndex, type Device } from '../device';
import type { FloatDType } from '../dtype';
import type { MoEConfig } from '../model/config';
import { MoekitError } from '../errors';
import { fileSystemError, readRegularTextFile } from '../files';
import { FORWARD_STAGES, type ForwardStage } from '../layer/forward';
import { addon } from '../native';
import type { ExpertQuantization, GroupSize, Quantization } from '../ops/quantized';
import type { RoutingConfig } from '../ops/routing';
import type { ActivationKind } from '../vocabulary';
import type { BenchPreset } from './presets';
import { activeWeightBytes, expectedTouchedExperts, forwardFloor, forwardFlops, type Ceilings } from './roofline';
import { describeClocks, type ClockSummary } from './telemetry';
import type { ForwardTiming } from './timing';

/** Where a run took place: the same for every row of it. */
export interface BenchContext {
  device: Device;
  /** The GPU's name, or the CPU's model. */
  deviceName: string;
  dtype: FloatDType;
  /** What --quantize asked the experts to be quantized to (null: as the preset has them). */
  quantization: Quantization | null;
  /** With int8 / int4: --group-size (null: the default). */
  groupSize: GroupSize | null;
  ceilings: Ceilings;
}

export interface BenchRow {
  preset: string;
  device: Device;
  deviceName: string;
  dtype: FloatDType;
  /** The experts' quantization (null: dense); absent in files from before it existed. */
  quantization?: ExpertQuantization | null;
  tokens: number;
  experts: number;
  topK: number;
  hidden: number;
  intermediate: number;
  /** The shared expert's intermediate size; 0 without one (as in `--shape E,K,H,I,S`). */
  sharedIntermediate: number;
  routing: RoutingConfig;
  activation: ActivationKind;
  /** Device time per forward (CUDA events; worker-thread timestamps on the CPU): median, p10, p90. */
  msPerForward: number;
  p10Ms: number;
  p90Ms: number;
  /** Host time from enqueue to results ready, median. */
  hostMsPerForward: number;
  /** Device time of one CUDA-graph replay of the forward, submitted ahead of the device, median (decode-sized points only). */
  graphMsPerForward?: number;
  /** Each stage's median device time (lib/layer/moe_layer.ts: ForwardStage). */
  stageMs: Partial<Record<ForwardStage, number>>;
  tokensPerSecond: number;
  tflops: number;
  /** Expected active-expert weight bytes per second (GB/s): what bounds small-batch forwards. */
  weightGBps: number;
  /** Experts at least one token was routed to: uniform routing's expectation, and the mean over the rotated inputs. */
  touchedExperts: { expected: number; measured: number };
  /** max(floorComputeMs, floorWeightsMs): see roofline.ts. */
  floorMs: number;
  floorComputeMs: number;
  floorWeightsMs: number;
  ceilings: Ceilings;
  /** The GPU's clocks and power over the row's runs (lib/bench/telemetry.ts); absent where NVML cannot read the device. */
  clocks?: ClockSummary;
}

/** The GPU's name, or the CPU's model. */
export function deviceName(device: Device): string {
  return device === 'cpu' ? (os.cpus()[0]?.model.trim() ?? 'cpu') : addon().cudaDeviceInfo(deviceIndex(device)).name;
}

/** Experts with at least one token, averaged over forwards. */
export function measuredTouchedExperts(expertCounts: readonly Int32Array[]): number {
  if (expertCounts.length === 0) return Number.NaN;
  const touched = expertCounts.map((counts) => counts.filter((count) => count > 0).length);
  return touched.reduce((sum, count) => sum + count, 0) / touched.length;
}

export function benchRow(preset: BenchPreset, context: BenchContext, tokens: number, timing: ForwardTiming): BenchRow {
  const config = benchConfig(preset.config, context);
  const seconds = timing.ms / 1e3;
  const floor = forwardFloor(config, tokens, context.dtype, context.ceilings);
  return {
    preset: preset.name,
    device: context.device,
    deviceName: context.deviceName,
    dtype: context.dtype,
    quantization: config.quantization ?? null,
    tokens,
    experts: config.numExperts,
    topK: config.routing.topK,
    hidden: config.hiddenSize,
    intermediate: config.intermediateSize,
    sharedIntermediate: config.sharedExpert?.intermediateSize ?? 0,
    routing: config.routing,
    activation: config.activation,
    msPerForward: timing.ms,
    p10Ms: timing.p10Ms,
    p90Ms: timing.p90Ms,
    hostMsPerForward: timing.hostMs,
    ...(timing.graphMs !== undefined && { graphMsPerForward: timing.graphMs }),
    stageMs: timing.stageMs,
    tokensPerSecond: tokens / seconds,
    tflops: forwardFlops(config, tokens) / seconds / 1e12,
    weightGBps: activeWeightBytes(config, tokens, context.dtype) / seconds / 1e9,
    touchedExperts: { expected: expectedTouchedExperts(config, tokens), measured: measuredTouchedExperts(timing.expertCounts) },
    floorMs: floor.ms,
    floorComputeMs: floor.computeMs,
    floorWeightsMs: floor.weightsMs,
    ceilings: context.ceilings,
    ...(timing.clocks && { clocks: timing.clocks }),
  };
}

export interface Column<Row> {
  title: string;
  width: number;
  /** Text columns are left-aligned, numbers right-aligned. */
  text?: boolean;
  cell(row: Row): string;
}

/** Milliseconds with three decimals; '-' for a stage the forward does not have. */
export function formatMs(ms: number | undefined): string {
  return ms === undefined ? '-' : ms.toFixed(3);
}

/** One column per stage a single-process forward can have (all_reduce needs a group). */
export function stageColumns<Row extends { stageMs: Partial<Record<ForwardStage, number>> }>(stages: readonly ForwardStage[]): Column<Row>[] {
  return stages.map((stage) => ({ title: stage, width: Math.max(stage.length, 8), cell: (row: Row) => formatMs(row.stageMs[stage]) }));
}

/**
 * FLOP rates in the unit that fits the device: a CPU does GFLOP/s (TFLOP/s would read 0.0), a GPU
 * TFLOP/s.
 */
export function flopRate(device: Device): { unit: string; fromTflops(tflops: number, decimals?: number): string } {
  return device === 'cpu'
    ? { unit: 'GFLOP/s', fromTflops: (tflops, decimals = 2) => (tflops * 1e3).toFixed(decimals) }
    : { unit: 'TFLOP/s', fromTflops: (tflops, decimals = 2) => tflops.toFixed(decimals) };
}

/** What says whether a floor is a bound: the run's ceilings and its experts' quantization. */
type FloorContext = Pick<BenchContext, 'ceilings'> & { quantization?: ExpertQuantization | null };

/**
 * Why the floor is an estimate rather than a bound, or null when it is a bound: its matmul ceiling
 * is moekit's own linear (no vendor GEMM: the CPU, or cuBLAS missing), which a forward's kernels
 * can outrun; or the experts compute in FP8 while the ceiling is a 16-bit GEMM's (FP8 tensor cores
 * are faster: `--compare` with `torch_baseline.py --quantize fp8` takes torch's FP8 floor).
 */
export function floorEstimateReason(context: FloorContext): string | null {
  if (!context.ceilings.matmulSource.startsWith('cuBLAS')) return 'its matmul ceiling is moekit\'s own linear, not a vendor GEMM';
  if (context.quantization === 'fp8') {
    return 'the experts compute in FP8 but the matmul ceiling is a 16-bit GEMM\'s (for the FP8 floor, --compare a torch_baseline.py --quantize fp8 run)';
  }
  return null;
}

export function floorIsEstimate(context: FloorContext): boolean {
  return floorEstimateReason(context) !== null;
}

/** Wide enough for a custom shape the size of DeepSeek-V3's (shape-E256-K8-H7168-I2048-S2048). */
export const PRESET_COLUMN_WIDTH = 31;

function columns(context: Pick<BenchContext, 'device'> & FloorContext): Column<BenchRow>[] {
  const rate = flopRate(context.device);
  return [
  { title: 'preset', width: PRESET_COLUMN_WIDTH, text: true, cell: (row) => row.preset },
  { title: 'tokens', width: 6, cell: (row) => String(row.tokens) },
  { title: 'ms/forward', width: 10, cell: (row) => formatMs(row.msPerForward) },
  { title: 'p10-p90', width: 15, cell: (row) => `${row.p10Ms.toFixed(3)}-${row.p90Ms.toFixed(3)}` },
  { title: 'graph ms', width: 8, cell: (row) => formatMs(row.graphMsPerForward) },
  { title: 'floor ms', width: 9, cell: (row) => formatMs(row.floorMs) },
  { ...(floorIsEstimate(context) ? { title: 'x est floor', width: 11 } : { title: 'x floor', width: 7 }), cell: (row) => (row.msPerForward / row.floorMs).toFixed(1) },
  { title: rate.unit, width: 8, cell: (row) => rate.fromTflops(row.tflops) },
  { title: 'weights GB/s', width: 12, cell: (row) => row.weightGBps.toFixed(1) },
  { title: 'SM MHz', width: 6, cell: (row) => (row.clocks ? row.clocks.smClockMHz.toFixed(0) : '-') },
  { title: 'experts', width: 11, cell: (row) => `${row.touchedExperts.measured.toFixed(0)}/${row.touchedExperts.expected.toFixed(0)}` },
  ...stageColumns<BenchRow>(FORWARD_STAGES.filter((stage) => stage !== 'all_reduce')),
  ];
}

export function formatLine<Row>(columns: readonly Column<Row>[], cells: readonly string[]): string {
  return columns
    .map((column, index) => {
      const cell = cells[index] ?? '';
      return column.text ? cell.padEnd(column.width) : cell.padStart(column.width);
    })
    .join('  ')
    .trimEnd();
}

/** What each --quantize means for the floor, in the preamble. */
const QUANTIZATION_PREAMBLES: Readonly<Record<Quantization, string>> = {
  fp8: 'e4m3, 128x128 block scales, W8A8; 1 byte per weight in the floor',
  int8: 'weight-only W8A16; 1 byte per weight and its scale in the floor',
  int4: 'weight-only W4A16; 0.5 byte per weight and its scale in the floor',
};

/**
 * A preset's config as the run times it: with its own quantization (gpt-oss-20b's MXFP4), else
 * with the experts quantized as the run asked (--quantize, --group-size).
 */
export function benchConfig(config: MoEConfig, context: Pick<BenchContext, 'quantization' | 'groupSize'>): MoEConfig {
  if (config.quantization) return config;
  return { ...config, quantization: context.quantization, ...(context.groupSize !== null && { quantizationGroupSize: context.groupSize }) };
}

/** What the run measured before any forward: the device and both ceilings, as '#' lines. */
export function formatPreamble(context: BenchContext): string[] {
  const { ceilings } = context;
  const experts = context.quantization === null ? '' : `, experts ${context.quantization} (${QUANTIZATION_PREAMBLES[context.quantization]}${context.groupSize === null ? '' : `, group size ${context.groupSize}`})`;
  const rate = flopRate(context.device);
  const reason = floorEstimateReason(context);
  const estimate = reason === null ? [] : [`# the floor is an ESTIMATE: ${reason}, and a forward may beat it (x est floor below 1)`];
  return [
    `# ${context.device} (${context.deviceName}), ${context.dtype}${experts}`,
    `# matmul ceiling ${rate.fromTflops(ceilings.matmulTflops, 1)} ${rate.unit}: ${ceilings.matmulSource}${ceilings.matmulClocks ? `; ${describeClocks(ceilings.matmulClocks)}` : ''}`,
    `# copy ceiling ${ceilings.copyGBps.toFixed(0)} GB/s: ${ceilings.copySource}`,
    '# floor = max(FLOPs / matmul ceiling, expected active-expert bytes / copy ceiling); experts: touched (measured/expected);',
    ...estimate,
    '# ms/forward, p10-p90 and the stage columns are device time (median of the runs); graph ms: one CUDA-graph replay of the forward',
    ...(ceilings.matmulClocks ? ['# SM MHz: the median SM clock over the row\'s runs (NVML); a GPU held at its power limit runs below the ceiling\'s clock'] : []),
  ];
}

/** The table's column titles; rows follow one by one as they are measured. */
export function formatHeader(context: Pick<BenchContext, 'device'> & FloorContext): string {
  return formatLine(columns(context), columns(context).map((column) => column.title));
}

/** A row, in the units of the device it ran on. */
export function formatRow(row: BenchRow): string {
  const rowColumns = columns(row);
  return formatLine(rowColumns, rowColumns.map((column) => column.cell(row)));
}

export function writeJsonReport(file: string, rows: readonly object[]): void {
  try {
    fs.writeFileSync(file, `${JSON.stringify(rows, null, 2)}\n`);
  } catch (error) {
    throw fileSystemError(file, 'write', error);
  }
}

/**
 * The rows of a JSON file, each checked to have `keys`; `what` names the file's kind in errors. Only
 * a regular file is read (lib/files.ts): a FIFO named by mistake is refused rather than waited on.
 */
export function readJsonRows<Row>(file: string, keys: readonly string[], what: string): Row[] {
  const text = readRegularTextFile(file);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${file}: cannot read ${what} (${(error as Error).message})`, { cause: error });
  }
  if (!Array.isArray(parsed)) throw new MoekitError('E_INVALID_ARGUMENT', `${file}: expected a JSON array of ${what} rows`);
  parsed.forEach((row: unknown, index) => {
    const missing = keys.filter((key) => typeof row !== 'object' || row === null || !(key in row));
    if (missing.length > 0) throw new MoekitError('E_INVALID_ARGUMENT', `${file}: row ${index} is not a ${what} row (no ${missing.join(', ')})`);
  });
  return parsed as Row[];
}
