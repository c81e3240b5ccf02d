/**
 * The moekit build under test, loaded from a compiled dist/ folder at run time. The types come
 * from lib/ (type-only imports, erased when transpiled), the code from `dist`: so the same
 * properties run against this checkout's build or, through MOEKIT_FUZZ_DIST, any other.
 */
import * as path from 'node:path';

import type * as CheckpointLoadModule from '../../../lib/checkpoint/load';
import type * as SafetensorsModule from '../../../lib/checkpoint/safetensors';
import type * as MoekitModule from '../../../lib/index';
import { distDir } from './paths';

export type MoekitApi = typeof MoekitModule;
export type SafetensorsApi = typeof SafetensorsModule;
export type CheckpointLoadApi = typeof CheckpointLoadModule;

export interface MoekitBuild {
  /** The dist/ folder it was loaded from. */
  dist: string;
  /** The package's public API (dist/index.js). */
  api: MoekitApi;
  /** The safetensors reader and writer (dist/checkpoint/safetensors.js). */
  safetensors: SafetensorsApi;
  /** config.json and checkpoint loading (dist/checkpoint/load.js). */
  checkpoint: CheckpointLoadApi;
}

export function loadBuild(dist: string = distDir()): MoekitBuild {
  // Plain require of absolute paths: one module instance per file, so MoekitError is one class
  // across api, safetensors and checkpoint.
  const load = <T>(file: string): T => require(path.join(dist, file)) as T;
  return {
    dist,
    api: load<MoekitApi>('index.js'),
    safetensors: load<SafetensorsApi>('checkpoint/safetensors.js'),
    checkpoint: load<CheckpointLoadApi>('checkpoint/load.js'),
  };
}
