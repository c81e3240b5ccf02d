/** Argument checks shared by the ops: each failure names the op and the argument. */
import type { Device } from '../device';
import { FLOAT32_MAX, type DType } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import { Tensor } from '../tensor';

/** The most experts an op takes (native/core/op_args.h: kMaxExperts). */
export const MAX_EXPERTS = 65536;

export function requireTensor(value: unknown, op: string, name: string): Tensor {
  if (!(value instanceof Tensor)) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: ${name} must be a Tensor`);
  if (value.disposed) throw new MoekitError('E_DISPOSED', `${op}: ${name} was used after dispose()`);
  return value;
}

/** Checks rank and extents; `null` matches any extent. Returns the shape. */
export function requireShape(tensor: Tensor, op: string, name: string, expected: readonly (number | null)[]): readonly number[] {
  const shape = tensor.shape;
  const matches = shape.length === expected.length && expected.every((extent, axis) => extent === null || shape[axis] === extent);
  if (!matches) {
    const wanted = `[${expected.map((extent) => (extent === null ? '*' : String(extent))).join(', ')}]`;
    throw new MoekitError('E_SHAPE', `${op}: ${name} must have shape ${wanted}, got [${shape.join(', ')}]`);
  }
  return shape;
}

export function requireDType(tensor: Tensor, op: string, name: string, allowed: readonly DType[]): void {
  if (!allowed.includes(tensor.dtype)) {
    throw new MoekitError('E_DTYPE', `${op}: ${name} must be ${allowed.join(' or ')}, got ${tensor.dtype}`);
  }
}

export function requireFloat(tensor: Tensor, op: string, name: string): void {
  requireDType(tensor, op, name, ['float32', 'float16', 'bfloat16']);
}

/** All tensors on one device; returns it. */
export function requireSameDevice(op: string, tensors: Record<string, Tensor | undefined>): Device {
  let device: Device | undefined;
  let first = '';
  for (const [name, tensor] of Object.entries(tensors)) {
    if (tensor === undefined) continue;
    if (device === undefined) {
      device = tensor.device;
      first = name;
    } else if (tensor.device !== device) {
      throw new MoekitError('E_DEVICE', `${op}: ${name} is on ${tensor.device} but ${first} is on ${device}`);
    }
  }
  if (device === undefined) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: no tensor given`);
  return device;
}

export function requireInteger(value: unknown, op: string, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: ${name} must be an integer ${range}, got ${describeValue(value)}`);
  }
  return value;
}

/** A number the kernels can take as a finite float32, at least `min` when given. */
export function requireFloat32(value: unknown, op: string, name: string, min = -FLOAT32_MAX): number {
  if (typeof value !== 'number' || !(Math.abs(value) <= FLOAT32_MAX)) {
    throw new MoekitError('E_INVALID_ARGUMENT', `${op}: ${name} must be a finite number within float32's range, got ${describeValue(value)}`);
  }
  if (value < min) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: ${name} must be at least ${min}, got ${describeValue(value)}`);
  return value;
}

/**
 * An output the caller made (an op's `…Into` form): a live tensor of exactly this shape and dtype
 * on `device`, named `name` in the error.
 */
export function requireOutput(tensor: Tensor, op: string, name: string, shape: readonly number[], dtype: DType, device: Device): void {
  requireTensor(tensor, op, name);
  requireShape(tensor, op, name, shape);
  requireDType(tensor, op, name, [dtype]);
  if (tensor.device !== device) throw new MoekitError('E_DEVICE', `${op}: ${name} is on ${tensor.device} but the op runs on ${device}`);
}

/**
 * Makes output tensors, runs a native call that fills them, and frees them if the call fails,
 * so a failed op never leaves half-made tensors behind.
 */
export function withOutputs<T extends Record<string, Tensor>>(outputs: () => T, fill: (outputs: T) => void): T {
  const made: Tensor[] = [];
  try {
    const created = outputs();
    made.push(...Object.values(created));
    fill(created);
    return created;
  } catch (error) {
    for (const tensor of made) tensor.dispose();
    throw error;
  }
}
