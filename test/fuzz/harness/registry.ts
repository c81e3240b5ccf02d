/** Every fuzz property by name: what a child can run (`--property NAME`). */
import { configProperty } from '../properties/config';
import { decodeSafetensorsProperty } from '../properties/decode_safetensors';
import { interopProperty } from '../properties/interop';
import { opsProperty } from '../properties/ops';
import { placementProperty } from '../properties/placement';
import { safetensorsProperty } from '../properties/safetensors';
import { selftestProperty } from '../properties/selftest';
import { weightOnlyProperty } from '../properties/weight_only';
import type { PropertyFactory } from './property';

export const PROPERTIES: Readonly<Record<string, PropertyFactory>> = {
  safetensors: safetensorsProperty,
  config: configProperty,
  ops: opsProperty,
  weightOnly: weightOnlyProperty,
  decodeSafetensors: decodeSafetensorsProperty,
  interop: interopProperty,
  placement: placementProperty,
  selftest: selftestProperty,
};

/** The properties of moekit (selftest only tests the harness). */
export const MOEKIT_PROPERTIES = ['safetensors', 'config', 'ops', 'weightOnly', 'decodeSafetensors', 'interop', 'placement'] as const;
export type MoekitPropertyName = (typeof MOEKIT_PROPERTIES)[number];
