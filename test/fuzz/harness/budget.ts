/**
 * How many cases each property runs: a short run in `npm test` (CI: a 2-core machine, all three
 * together well under a minute) and its share of the long run (`npm run fuzz`). Measured on the
 * 2-core development machine, in cases per second of one core with generation and the case log
 * included: ops ~3400 (~5300 before its FP8 cases, which make and read more tensors), safetensors
 * ~2200, config ~540, weightOnly ~2800, decodeSafetensors ~7000, interop ~5000 (the last three
 * take a second or two of the short run and under a minute of the long one). The short run is then about 19 s of one core, and the long run's 10^6 cases
 * about 410 s (about 3.5 minutes on 2 cores).
 */
import type { MoekitPropertyName } from './registry';

/** Cases per property in `npm test`; MOEKIT_FUZZ_SHORT_RUNS sets one count for all. */
export function shortRuns(property: MoekitPropertyName): number {
  const override = process.env.MOEKIT_FUZZ_SHORT_RUNS;
  if (override) return Number(override);
  const runs: Record<MoekitPropertyName, number> = { ops: 30_000, safetensors: 12_000, config: 2_500, weightOnly: 3_000, decodeSafetensors: 3_000, interop: 2_000, placement: 2_000 };
  return runs[property];
}

/** Each property's share of the long run's cases: about a third of its time each, at the rates above. */
export const LONG_RUN_SHARES: Readonly<Record<MoekitPropertyName, number>> = { ops: 0.7, safetensors: 0.25, config: 0.05, weightOnly: 0.1, decodeSafetensors: 0.05, interop: 0.02, placement: 0.02 };

/** Cases in the long run, all properties together (MOEKIT_FUZZ_RUNS). */
export const LONG_RUN_CASES = 1_000_000;

/** Cases per child in the long run (MOEKIT_FUZZ_BATCH): a crash costs at most one batch, and each batch has its own seed. */
export const LONG_RUN_BATCH = 25_000;

/** The seed for a run: MOEKIT_FUZZ_SEED, or a fresh one (printed with every result, so a failure can be replayed). */
export function baseSeed(): number {
  const fixed = process.env.MOEKIT_FUZZ_SEED;
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
}

/** A seed of its own for batch `index` of `property`, derived from the run's seed. */
export function batchSeed(seed: number, property: string, index: number): number {
  let hash = seed >>> 0;
  for (const char of `${property}#${index}`) hash = Math.imul(hash ^ char.charCodeAt(0), 0x9e3779b1) >>> 0;
  return hash >>> 1;
}
