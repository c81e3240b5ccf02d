/** Benchmark rows, the printed table and the JSON file. */
import * as fs from 'node:fs';

export interface BenchRow {
  preset: string;
  device: string;
  dtype: string;
  tokens: number;
  experts: number;
  topK: number;
  hidden: number;
  intermediate: number;
  msPerForward: number;
  tokensPerSecond: number;
  tflops: number;
  /** Expert weights streamed per second (expected active experts), GB/s. */
  weightGBps: number;
}

const COLUMNS: readonly [string, (row: BenchRow) => string][] = [
  ['preset', (row) => row.preset],
  ['device', (row) => row.device],
  ['dtype', (row) => row.dtype],
  ['tokens', (row) => String(row.tokens)],
  ['ms/forward', (row) => row.msPerForward.toFixed(3)],
  ['tokens/s', (row) => row.tokensPerSecond.toFixed(0)],
  ['TFLOP/s', (row) => row.tflops.toFixed(3)],
  ['weights GB/s', (row) => row.weightGBps.toFixed(1)],
];

export function formatHeader(): string {
  return formatLine(COLUMNS.map(([title]) => title));
}

export function formatRow(row: BenchRow): string {
  return formatLine(COLUMNS.map(([, value]) => value(row)));
}

function formatLine(cells: string[]): string {
  const widths = [20, 8, 9, 7, 12, 12, 9, 13];
  return cells.map((cell, index) => (index < 3 ? cell.padEnd(widths[index]!) : cell.padStart(widths[index]!))).join(' ');
}

export function writeJson(file: string, rows: readonly BenchRow[]): void {
  fs.writeFileSync(file, `${JSON.stringify(rows, null, 2)}\n`);
}
