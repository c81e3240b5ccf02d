/** Benchmark results: one row per (preset, tokens), the printed table and the JSON file. */
import * as fs from 'node:fs';

import type { Device } from '../device';
import { DTYPE_BYTES, type FloatDType } from '../dtype';
import { MoekitError } from '../errors';
import type { MoEConfig } from '../layer/config';
import type { BenchPreset } from './presets';

export interface BenchRow {
  preset: string;
  device: Device;
  dtype: FloatDType;
  tokens: number;
  experts: number;
  topK: number;
  hidden: number;
  intermediate: number;
  msPerForward: number;
  tokensPerSecond: number;
  tflops: number;
  /** Expert weights streamed per second (GB/s): what bounds small-batch forwards. */
  weightGBps: number;
}

/**
 * Floating-point operations of one forward of `tokens` tokens: each token's K routed experts
 * (three H×I projections, 2 FLOPs per multiply-add), the shared expert if any, and the router.
 */
export function forwardFlops(config: MoEConfig, tokens: number): number {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = config;
  const routed = 2 * tokens * config.routing.topK * 3 * H * I;
  const shared = config.sharedExpert === null ? 0 : 2 * tokens * 3 * H * config.sharedExpert.intermediateSize;
  const router = 2 * tokens * H * E;
  return routed + shared + router;
}

/**
 * Expected bytes of expert weights one forward reads: each expert that some token picks, once
 * (with uniform routing, E·(1 − (1 − K/E)^T) of them), plus the shared expert. The same estimate
 * as bench/torch_baseline.py's, so the two compare.
 */
export function activeWeightBytes(config: MoEConfig, tokens: number, dtype: FloatDType): number {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = config;
  const activeExperts = E * (1 - (1 - config.routing.topK / E) ** tokens);
  const shared = config.sharedExpert === null ? 0 : 3 * H * config.sharedExpert.intermediateSize;
  return (activeExperts * 3 * H * I + shared) * DTYPE_BYTES[dtype];
}

export function benchRow(preset: BenchPreset, device: Device, dtype: FloatDType, tokens: number, msPerForward: number): BenchRow {
  const { config } = preset;
  const seconds = msPerForward / 1e3;
  return {
    preset: preset.name,
    device,
    dtype,
    tokens,
    experts: config.numExperts,
    topK: config.routing.topK,
    hidden: config.hiddenSize,
    intermediate: config.intermediateSize,
    msPerForward,
    tokensPerSecond: tokens / seconds,
    tflops: forwardFlops(config, tokens) / seconds / 1e12,
    weightGBps: activeWeightBytes(config, tokens, dtype) / seconds / 1e9,
  };
}

interface Column {
  title: string;
  width: number;
  /** Text columns are left-aligned, numbers right-aligned. */
  text?: boolean;
  cell(row: BenchRow): string;
}

const COLUMNS: readonly Column[] = [
  { title: 'preset', width: 20, text: true, cell: (row) => row.preset },
  { title: 'device', width: 7, text: true, cell: (row) => row.device },
  { title: 'dtype', width: 8, text: true, cell: (row) => row.dtype },
  { title: 'E', width: 4, cell: (row) => String(row.experts) },
  { title: 'K', width: 2, cell: (row) => String(row.topK) },
  { title: 'H', width: 5, cell: (row) => String(row.hidden) },
  { title: 'I', width: 6, cell: (row) => String(row.intermediate) },
  { title: 'tokens', width: 6, cell: (row) => String(row.tokens) },
  { title: 'ms/forward', width: 11, cell: (row) => row.msPerForward.toFixed(3) },
  { title: 'tokens/s', width: 10, cell: (row) => row.tokensPerSecond.toFixed(0) },
  { title: 'TFLOP/s', width: 8, cell: (row) => row.tflops.toFixed(4) },
  { title: 'weights GB/s', width: 12, cell: (row) => row.weightGBps.toFixed(1) },
];

function formatLine(cells: readonly string[]): string {
  return COLUMNS.map((column, index) => {
    const cell = cells[index] ?? '';
    return column.text ? cell.padEnd(column.width) : cell.padStart(column.width);
  }).join('  ').trimEnd();
}

/** The table's header; rows follow one by one as they are measured. */
export function formatHeader(): string {
  return formatLine(COLUMNS.map((column) => column.title));
}

export function formatRow(row: BenchRow): string {
  return formatLine(COLUMNS.map((column) => column.cell(row)));
}

export function writeJsonReport(file: string, rows: readonly BenchRow[]): void {
  try {
    fs.writeFileSync(file, `${JSON.stringify(rows, null, 2)}\n`);
  } catch (error) {
    throw new MoekitError('E_NOT_FOUND', `${file}: cannot write (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
}
