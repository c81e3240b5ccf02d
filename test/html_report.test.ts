// lib/bench/html_report.ts: `moekit bench --html` writes one self-contained page that parses
// (every element closed, in order), charts every preset and holds every row, as a table and as JSON.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import type { ComparedBenchRow, TorchRow } from '../lib/bench/compare';
import { htmlReport } from '../lib/bench/html_report';

const STAGES = { router: 0.1, routing: 0.05, permute: 0.05, expert_up: 1.2, expert_down: 0.5, combine: 0.1 };
const ROWS: ComparedBenchRow[] = ['mixtral-8x7b', 'qwen3-30b-a3b'].flatMap((preset) =>
  [1, 16, 128].map((tokens) => ({ preset, tokens, device: 'cuda:0' as const, deviceName: 'GPU <0> & "co"', msPerForward: 1 + tokens / 100, floorMs: 0.5, tflops: 10, stageMs: STAGES })));
const TORCH: TorchRow[] = [1, 16, 128].map((tokens) => ({
  preset: 'mixtral-8x7b', pipeline: 'grouped_mm', tokens, ms: 2 + tokens / 50, floor_ms: 0.5, tflops: 5, matmul_ceiling_tflops: 700, copy_ceiling_tbps: 3, gpu: 'H100',
}));

/** Checks the markup is well formed: every element closed in order, attributes quoted; returns the elements seen. */
function parseMarkup(html: string): string[] {
  const withoutDoctype = html.replace(/^<!DOCTYPE html>\s*/, '');
  const opened: string[] = [];
  const seen: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let at = 0;
  for (let match = tag.exec(withoutDoctype); match !== null; match = tag.exec(withoutDoctype)) {
    const between = withoutDoctype.slice(at, match.index);
    if (between.includes('<')) throw new Error(`malformed markup near ${JSON.stringify(between.slice(between.indexOf('<'), between.indexOf('<') + 40))}`);
    at = tag.lastIndex;
    const [, closing, name, , selfClosing] = match as unknown as [string, string, string, string, string];
    if (closing) {
      if (opened.pop() !== name) throw new Error(`</${name}> closes ${opened.at(-1) ?? 'nothing'}`);
      if (name === 'script') continue;
    } else if (!selfClosing) {
      opened.push(name);
      seen.push(name);
      if (name === 'script') {
        // Its content is JSON, not markup: skip to its end.
        const end = withoutDoctype.indexOf('</script>', at);
        at = end;
        tag.lastIndex = end;
      }
    } else {
      seen.push(name);
    }
  }
  if (opened.length > 0) throw new Error(`unclosed: ${opened.join(', ')}`);
  if (withoutDoctype.slice(at).trim() !== '') throw new Error('text after </html>');
  return seen;
}

describe('htmlReport', () => {
  const html = htmlReport(ROWS, TORCH);

  it('parses, and fetches nothing', () => {
    const elements = parseMarkup(html);
    expect(elements[0]).toBe('html');
    expect(html).not.toMatch(/\b(src|href)=/);
  });

  it('holds every row, in the table and as JSON', () => {
    expect(html.match(/<tr class="row">/g)).toHaveLength(ROWS.length);
    const json = /<script type="application\/json" id="moekit-bench-rows">(.*?)<\/script>/s.exec(html)![1]!;
    expect(JSON.parse(json)).toEqual({ rows: ROWS, torch: TORCH });
    expect(json).not.toContain('<');
  });

  it('charts each preset: ms and x floor per token count, PyTorch beside moekit where compared, the stages', () => {
    for (const preset of ['mixtral-8x7b', 'qwen3-30b-a3b']) expect(html).toContain(`<h2>${preset}</h2>`);
    const sections = html.split('<section>').slice(1);
    // mixtral: 2 line charts × (moekit + torch) × 3 points; qwen: 2 × 3 moekit points.
    expect(sections[0]!.match(/class="point"/g)).toHaveLength(12);
    expect(sections[1]!.match(/class="point"/g)).toHaveLength(6);
    expect(sections[0]).toContain('PyTorch grouped_mm');
    expect(sections[1]).not.toContain('PyTorch');
    // A stage bar per token count, six stages each.
    expect(sections[0]!.match(/tokens, expert_up:/g)).toHaveLength(3);
    expect(html).toContain('GPU &lt;0&gt; &amp; &quot;co&quot;');
  });

  it('takes the comparison\'s times and floors: a graph replay where it is faster, an FP8 baseline\'s floor for FP8 experts', () => {
    const rows: ComparedBenchRow[] = [{ ...ROWS[0]!, msPerForward: 1, graphMsPerForward: 0.5, floorMs: 0.5, quantization: 'fp8' }];
    const fp8Torch = [{ ...TORCH[0]!, quantize: 'fp8', floor_ms: 0.25 }];
    const row = /<tr class="row">(.*?)<\/tr>/.exec(htmlReport(rows, fp8Torch))![1]!;
    const cells = [...row.matchAll(/<td>(.*?)<\/td>/g)].map((match) => match[1]);
    // preset, device, dtype, experts, tokens, ms/forward, graph ms, floor ms, × floor (on the graph replay), TFLOP/s
    expect(cells.slice(3, 9)).toEqual(['fp8', '1', '1', '0.5', '0.25', '2']);
  });

  const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find((name) => spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0);
  it.skipIf(chromium === undefined)('renders in a headless browser (chromium, google-chrome; skipped where none is on PATH: apt-get install chromium)', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-html-')), 'bench.html');
    fs.writeFileSync(file, html);
    const result = spawnSync(chromium!, ['--headless', '--no-sandbox', '--disable-gpu', '--dump-dom', `file://${file}`], { encoding: 'utf8', timeout: 60_000 });
    expect(result.status).toBe(0);
    expect(result.stdout.match(/<tr class="row">/g)).toHaveLength(ROWS.length);
    expect(result.stdout.match(/<svg/g)!.length).toBeGreaterThanOrEqual(6);
  });
});
