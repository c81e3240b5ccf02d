/**
 * `moekit bench --html FILE`: one self-contained page (inline SVG and CSS, no script, nothing
 * fetched) with, for each preset, ms per forward and × floor against tokens (moekit beside
 * PyTorch's torch._grouped_mm when compared) and each forward's stage breakdown; then a table of
 * every row, and the rows as JSON in a <script type="application/json"> for tools. The markup is
 * well-formed XML as well as HTML, so any parser reads it. moekit's times and floors are the
 * comparison's (compare.ts): the better of eager and graph replay, and for FP8 experts beside an
 * FP8 baseline, the baseline's FP8 floor.
 */
import * as fs from 'node:fs';

import { fileSystemError } from '../files';
import { FORWARD_STAGES, type ForwardStage } from '../layer/forward';
import { compareRows, type ComparedBenchRow, type ComparedRow, type TorchRow } from './compare';

const WIDTH = 560;
const HEIGHT = 300;
const MARGIN = { left: 64, right: 16, top: 28, bottom: 44 };
const MOEKIT_COLOR = '#2563eb';
const TORCH_COLOR = '#ea580c';
const STAGE_COLORS: Readonly<Record<ForwardStage, string>> = {
  router: '#64748b', routing: '#a855f7', permute: '#14b8a6', expert_up: '#2563eb', expert_down: '#1e40af',
  shared: '#f59e0b', combine: '#10b981', fused: '#0ea5e9', all_reduce: '#ef4444',
};

interface Series {
  name: string;
  color: string;
  points: readonly (readonly [number, number])[];
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A number with about three significant digits. */
function short(value: number): string {
  return Number(value.toPrecision(3)).toString();
}

/** A line chart with a log₂ token axis (the sweeps double) and a linear value axis from 0. */
function lineChart(title: string, yLabel: string, series: readonly Series[]): string {
  const xs = [...new Set(series.flatMap((line) => line.points.map(([x]) => x)))].sort((a, b) => a - b);
  const yMax = Math.max(...series.flatMap((line) => line.points.map(([, y]) => y)), 0) * 1.1 || 1;
  const [x0, x1] = [Math.log2(xs[0] ?? 1), Math.log2(xs.at(-1) ?? 1)];
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const px = (x: number): number => MARGIN.left + (x1 === x0 ? plotWidth / 2 : ((Math.log2(x) - x0) / (x1 - x0)) * plotWidth);
  const py = (y: number): number => MARGIN.top + plotHeight - (y / yMax) * plotHeight;
  const parts: string[] = [
    `<text x="${WIDTH / 2}" y="18" text-anchor="middle" class="title">${escapeHtml(title)}</text>`,
    `<line x1="${MARGIN.left}" y1="${py(0)}" x2="${WIDTH - MARGIN.right}" y2="${py(0)}" class="axis"/>`,
    `<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${py(0)}" class="axis"/>`,
    `<text x="${WIDTH / 2}" y="${HEIGHT - 6}" text-anchor="middle">tokens</text>`,
    `<text x="14" y="${MARGIN.top + plotHeight / 2}" text-anchor="middle" transform="rotate(-90 14 ${MARGIN.top + plotHeight / 2})">${escapeHtml(yLabel)}</text>`,
  ];
  for (const x of xs) parts.push(`<text x="${px(x)}" y="${py(0) + 16}" text-anchor="middle">${x}</text>`);
  for (let tick = 0; tick <= 4; tick++) {
    const y = (yMax * tick) / 4;
    parts.push(`<text x="${MARGIN.left - 6}" y="${py(y) + 4}" text-anchor="end">${short(y)}</text>`);
    if (tick > 0) parts.push(`<line x1="${MARGIN.left}" y1="${py(y)}" x2="${WIDTH - MARGIN.right}" y2="${py(y)}" class="grid"/>`);
  }
  series.forEach((line, index) => {
    const points = [...line.points].sort(([a], [b]) => a - b);
    parts.push(`<polyline fill="none" stroke="${line.color}" stroke-width="2" points="${points.map(([x, y]) => `${px(x)},${py(y)}`).join(' ')}"/>`);
    for (const [x, y] of points) {
      parts.push(`<circle cx="${px(x)}" cy="${py(y)}" r="3.5" fill="${line.color}" class="point"><title>${escapeHtml(`${line.name}: ${x} tokens, ${short(y)} ${yLabel}`)}</title></circle>`);
    }
    const legendY = MARGIN.top + 4 + index * 16;
    parts.push(`<rect x="${MARGIN.left + 10}" y="${legendY - 8}" width="10" height="10" fill="${line.color}"/>`,
      `<text x="${MARGIN.left + 26}" y="${legendY + 1}">${escapeHtml(line.name)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img">${parts.join('')}</svg>`;
}

/** One horizontal bar per token count, split into the forward's stages. */
function stageChart(title: string, rows: readonly ComparedBenchRow[]): string {
  const withStages = rows.filter((row) => row.stageMs !== undefined);
  if (withStages.length === 0) return '';
  const barHeight = 18;
  const height = MARGIN.top + withStages.length * (barHeight + 8) + 56;  // two legend lines below the bars
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const parts = [`<text x="${WIDTH / 2}" y="18" text-anchor="middle" class="title">${escapeHtml(title)}</text>`];
  withStages.forEach((row, index) => {
    const stages = FORWARD_STAGES.filter((stage) => row.stageMs![stage] !== undefined);
    const total = stages.reduce((sum, stage) => sum + row.stageMs![stage]!, 0) || 1;
    const y = MARGIN.top + index * (barHeight + 8);
    parts.push(`<text x="${MARGIN.left - 6}" y="${y + 13}" text-anchor="end">${row.tokens}</text>`);
    let x = MARGIN.left;
    for (const stage of stages) {
      const ms = row.stageMs![stage]!;
      const width = (ms / total) * plotWidth;
      parts.push(`<rect x="${x}" y="${y}" width="${width}" height="${barHeight}" fill="${STAGE_COLORS[stage]}"><title>${escapeHtml(`${row.tokens} tokens, ${stage}: ${short(ms)} ms (${((100 * ms) / total).toFixed(0)}%)`)}</title></rect>`);
      x += width;
    }
  });
  // A legend entry per stage some row has, each as wide as its label (11px text: about 6.5px a
  // character), wrapping to a second line where the chart's width runs out.
  const present = FORWARD_STAGES.filter((stage) => withStages.some((row) => row.stageMs![stage] !== undefined));
  const swatch = 13;
  const characterWidth = 6.5;
  const gap = 12;
  const lineHeight = 16;
  const legendLeft = MARGIN.right;
  let legendX = legendLeft;
  let legendY = height - 14 - lineHeight;
  for (const stage of present) {
    const entryWidth = swatch + stage.length * characterWidth + gap;
    if (legendX + entryWidth > WIDTH - MARGIN.right) {
      legendX = legendLeft;
      legendY += lineHeight;
    }
    parts.push(`<rect x="${legendX}" y="${legendY - 9}" width="10" height="10" fill="${STAGE_COLORS[stage]}"/>`, `<text x="${legendX + swatch}" y="${legendY}">${stage}</text>`);
    legendX += entryWidth;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img">${parts.join('')}</svg>`;
}

function presetSection(preset: string, rows: readonly ComparedBenchRow[], compared: readonly ComparedRow[], torch: readonly TorchRow[]): string {
  const torchRows = torch.filter((row) => row.preset === preset && row.pipeline === 'grouped_mm');
  const ms: Series[] = [{ name: 'moekit', color: MOEKIT_COLOR, points: compared.map((row) => [row.tokens, row.bestMs]) }];
  if (torchRows.length > 0) ms.push({ name: 'PyTorch grouped_mm', color: TORCH_COLOR, points: torchRows.map((row) => [row.tokens, row.ms]) });
  const floored = compared.filter((row) => row.overFloor !== undefined);
  const overFloor: Series[] = [{ name: 'moekit', color: MOEKIT_COLOR, points: floored.map((row) => [row.tokens, row.overFloor!]) }];
  const torchFloored = torchRows.filter((row) => row.floor_ms > 0);
  if (torchFloored.length > 0) overFloor.push({ name: 'PyTorch grouped_mm', color: TORCH_COLOR, points: torchFloored.map((row) => [row.tokens, row.ms / row.floor_ms]) });
  return [
    `<section><h2>${escapeHtml(preset)}</h2><div class="charts">`,
    lineChart('ms per forward', 'ms', ms),
    floored.length > 0 ? lineChart('× floor (time over the roofline floor)', '× floor', overFloor) : '',
    stageChart('stages of a forward (share of its time)', rows),
    '</div></section>',
  ].join('');
}

function rowTable(rows: readonly ComparedBenchRow[], compared: readonly ComparedRow[]): string {
  const head = ['preset', 'device', 'dtype', 'experts', 'tokens', 'ms/forward', 'graph ms', 'floor ms', '× floor', 'TFLOP/s'];
  const cells = (row: ComparedBenchRow, index: number): string[] => {
    const { floorMs, overFloor } = compared[index]!;
    return [
      row.preset, row.device ?? '', row.dtype ?? '', row.quantization ?? 'dense', String(row.tokens), short(row.msPerForward),
      row.graphMsPerForward === undefined ? '' : short(row.graphMsPerForward),
      floorMs === undefined ? '' : short(floorMs), overFloor === undefined ? '' : short(overFloor), short(row.tflops),
    ];
  };
  return [
    '<table><thead><tr>', ...head.map((title) => `<th>${escapeHtml(title)}</th>`), '</tr></thead><tbody>',
    ...rows.map((row, index) => `<tr class="row">${cells(row, index).map((cell) => `<td>${escapeHtml(cell)}</td>`).join('')}</tr>`),
    '</tbody></table>',
  ].join('');
}

/** The page for `rows` (and the PyTorch baseline's, when compared). */
export function htmlReport(rows: readonly ComparedBenchRow[], torch: readonly TorchRow[] = []): string {
  const presets = [...new Set(rows.map((row) => row.preset))];
  const compared = compareRows(rows, torch);  // row by row: moekit's times and floors as the comparison takes them
  const device = rows[0] === undefined ? '' : `${rows[0].device ?? ''} ${rows[0].deviceName ?? ''}`.trim();
  // JSON inside a script element: '<' escaped so no value can close the element.
  const json = JSON.stringify({ rows, torch }).replace(/</g, '\\u003c');
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8"/><title>moekit bench</title>',
    '<style>body{font:14px system-ui,sans-serif;margin:24px;color:#111}svg{background:#fff;border:1px solid #ddd;margin:6px}',
    'svg text{font-size:11px;fill:#333}svg .title{font-size:13px;font-weight:600}.axis{stroke:#333}.grid{stroke:#eee}',
    '.charts{display:flex;flex-wrap:wrap}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}</style></head><body>',
    `<h1>moekit bench${device === '' ? '' : `: ${escapeHtml(device)}`}</h1>`,
    ...presets.map((preset) => {
      const mine = (_: unknown, index: number): boolean => rows[index]!.preset === preset;
      return presetSection(preset, rows.filter(mine), compared.filter(mine), torch);
    }),
    '<h2>Every row</h2>', rowTable(rows, compared),
    `<script type="application/json" id="moekit-bench-rows">${json}</script>`,
    '</body></html>',
    '',
  ].join('\n');
}

export function writeHtmlReport(file: string, rows: readonly ComparedBenchRow[], torch?: readonly TorchRow[]): void {
  try {
    fs.writeFileSync(file, htmlReport(rows, torch));
  } catch (error) {
    throw fileSystemError(file, 'write', error);
  }
}
