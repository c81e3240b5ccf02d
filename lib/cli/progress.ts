/**
 * A progress bar for long command-line work (a bench sweep, a checkpoint read), drawn on stderr
 * only when stderr is a terminal: piped or logged output stays clean, and --quiet turns it off.
 * No dependency: the bar is one line redrawn in place.
 */

/** Where the bar is drawn: process.stderr, or a stand-in in tests. */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

export interface ProgressOptions {
  /** What the work is, shown before the bar ("bench", "reading layer 3"). */
  label: string;
  /** Formats an amount of work done or to do (default: as a plain count). */
  format?: (amount: number) => string;
  stream?: ProgressStream;
  quiet?: boolean;
  /** The clock, in milliseconds (tests pass their own). */
  now?: () => number;
}

export interface Progress {
  /** Sets how much of `total` is done and redraws the bar. */
  update(done: number, total: number): void;
  /** Runs `print` (which writes whole lines to the terminal) with the bar lifted out of the way. */
  around(print: () => void): void;
  /** Removes the bar. */
  finish(): void;
}

const BAR_WIDTH = 24;
const CLEAR_LINE = '\r\u001b[K';

const SILENT: Progress = { update: () => {}, around: (print) => print(), finish: () => {} };

/** A bar on `stream` (default stderr) when it is a terminal and not quiet; else one that draws nothing. */
export function progressBar(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  if (options.quiet === true || stream.isTTY !== true) return SILENT;
  const now = options.now ?? Date.now;
  const format = options.format ?? String;
  const started = now();
  let line = '';
  const draw = (text: string): void => {
    line = text;
    stream.write(`${CLEAR_LINE}${text}`);
  };
  return {
    update(done, total) {
      const fraction = total > 0 ? Math.min(1, done / total) : 0;
      const filled = Math.round(fraction * BAR_WIDTH);
      const elapsed = now() - started;
      const eta = fraction > 0 && fraction < 1 ? ` ETA ${formatDuration((elapsed * (1 - fraction)) / fraction)}` : '';
      const text = `${options.label} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${(fraction * 100).toFixed(0)}% ${format(done)}/${format(total)}${eta}`;
      draw(text.slice(0, Math.max(20, (stream.columns ?? 80) - 1)));
    },
    around(print) {
      stream.write(CLEAR_LINE);
      print();
      if (line !== '') draw(line);
    },
    finish() {
      if (line !== '') stream.write(CLEAR_LINE);
      line = '';
    },
  };
}

/** 75 000 ms → "1:15"; an hour or more → "1:02:03". */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  const [h, m, s] = [Math.floor(seconds / 3600), Math.floor(seconds / 60) % 60, seconds % 60];
  const mmss = `${h > 0 ? String(m).padStart(2, '0') : m}:${String(s).padStart(2, '0')}`;
  return h > 0 ? `${h}:${mmss}` : mmss;
}

/** 1536 → "1.5 KiB", in binary units up to GiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
