// lib/cli/progress.ts: a bar with an ETA on a terminal, nothing when not a terminal or quiet.
import { describe, expect, it } from 'vitest';

import { formatBytes, formatDuration, progressBar, type ProgressStream } from '../lib/cli/progress';

function recorder(isTTY: boolean): ProgressStream & { text: string } {
  const stream = { isTTY, columns: 120, text: '', write: (chunk: string) => (stream.text += chunk) };
  return stream;
}

describe('progressBar', () => {
  it('draws a bar with percent, amounts and ETA on a terminal, and clears it at the end', () => {
    const stream = recorder(true);
    let clock = 0;
    const bar = progressBar({ label: 'bench', stream, now: () => clock });
    clock = 10_000;
    bar.update(1, 4);
    expect(stream.text).toContain('bench [######------------------] 25% 1/4 ETA 0:30');
    let printed = '';
    bar.around(() => (printed = 'row'));
    expect(printed).toBe('row');
    expect(stream.text.endsWith('ETA 0:30')).toBe(true); // redrawn after the row
    bar.update(4, 4);
    expect(stream.text).toContain('100% 4/4');
    bar.finish();
    expect(stream.text.endsWith('\r\u001b[K')).toBe(true);
  });

  it('draws nothing when the stream is not a terminal, or with quiet', () => {
    for (const [stream, quiet] of [[recorder(false), false], [recorder(true), true]] as const) {
      const bar = progressBar({ label: 'x', stream, quiet });
      bar.update(1, 2);
      bar.around(() => {});
      bar.finish();
      expect(stream.text).toBe('');
    }
  });

  it('formats durations and bytes', () => {
    expect([formatDuration(0), formatDuration(75_000), formatDuration(3_723_000)]).toEqual(['0:00', '1:15', '1:02:03']);
    expect([formatBytes(512), formatBytes(1536), formatBytes(3 * 2 ** 30)]).toEqual(['512 B', '1.5 KiB', '3.0 GiB']);
  });
});
