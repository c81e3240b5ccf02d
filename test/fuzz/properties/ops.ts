/**
 * Property: every op and Tensor factory, called with any arguments on one device, either throws
 * a MoekitError at once, or returns tensors each of whose toArray() resolves or rejects with a
 * MoekitError. A call with out-of-range indices (expert ids, offsets, rows) must not resolve: each
 * of its outputs rejects ("poisoned"), and the failure reaches the end of a pipeline built on it.
 * Outputs that resolve hold what the contract says where the case determines it. The process
 * never dies, and after each case the device still computes a known small linear right.
 *
 * params: device (default cpu), otherDevice (one tensors may be moved to, for mismatches),
 * ops (a comma-separated subset of OP_NAMES, to look at some ops alone).
 */
import { defineProperty } from '../harness/property';
import type { MoekitApi } from '../harness/moekit';
import { errorText } from '../harness/protocol';
import { isQuantizedSpec, isTensorSpec, numel, OP_NAMES, opCases, wrapperBody, type OpCase, type OpName, type TensorSpecBody } from './ops_cases';
import {
  decodeE4m3, firstDifference, fp8RowsAsFloat, inputKey, needsInputs, outOfRangeReason, repeatValues, resolvedOutputsProblem, type HostTensor, type ResolvedCall,
} from './ops_oracle';
import { RENDER_PRELUDE, renderValue } from './render';

type Tensor = MoekitApi['Tensor']['prototype'];
type QuantizedWeights = MoekitApi['QuantizedWeights']['prototype'];
type Fp8Rows = MoekitApi['Fp8Rows']['prototype'];
type HostArray = Awaited<ReturnType<Tensor['toArray']>>;

/** The codes a bad argument may earn; anything else (E_NATIVE above all) means moekit did not recognise bad input. */
export const INPUT_ERROR_CODES: ReadonlySet<string> = new Set(['E_INVALID_ARGUMENT', 'E_SHAPE', 'E_DTYPE', 'E_DEVICE', 'E_DISPOSED', 'E_OOM']);

/** Helpers the reproducers call, after RENDER_PRELUDE's. */
export const OPS_PRELUDE = [
  "const { Tensor, route, permute, permuteMaps, groupedGemm, activation, combine, linear, quantizeWeights, QuantizedWeights, Fp8Rows } = require('moekit');",
  RENDER_PRELUDE,
  'const repeat = (Type, values, n) => Type.from({ length: n }, (_, i) => values[i % values.length] ?? 0);',
  'const disposed = (t) => (t.dispose(), t);',
  'const disposedPart = (pair, part) => (pair[part].dispose(), pair);',
].join('\n');

class PropertyViolation extends Error {}

// ---- Describing a case as code ------------------------------------------------------------

export function renderTensor({ dtype, shape, values, seed, device, disposed }: TensorSpecBody, caseDevice: string): string {
  const where = device ?? caseDevice;
  const shapeText = `[${shape.join(', ')}]`;
  let expression: string;
  if (values !== undefined) {
    const type = hostType(dtype);
    const count = numel(shape);
    const data = values.length === count ? `new ${type}([${values.map((value) => renderValue(value)).join(', ')}])` : `repeat(${type}, [${values.map((value) => renderValue(value)).join(', ')}], ${count})`;
    const options = [dtype === 'int32' || dtype === 'float32' ? '' : `dtype: '${dtype}'`, where === 'cpu' ? '' : `device: '${where}'`].filter(Boolean);
    expression = `Tensor.fromArray(${data}, ${shapeText}${options.length ? `, { ${options.join(', ')} }` : ''})`;
  } else if (dtype === 'float8_e4m3') {
    expression = `Tensor.random(${shapeText}, { seed: ${seed ?? 0}${where === 'cpu' ? '' : `, device: '${where}'`} }).to('${where}', 'float8_e4m3')`;
  } else {
    expression = `Tensor.random(${shapeText}, { dtype: '${dtype}', seed: ${seed ?? 0}${where === 'cpu' ? '' : `, device: '${where}'`} })`;
  }
  return disposed ? `disposed(${expression})` : expression;
}

/** The typed array a spec's values are given in. */
function hostType(dtype: TensorSpecBody['dtype']): string {
  if (dtype === 'int32') return 'Int32Array';
  return dtype === 'float8_e4m3' || dtype === 'uint8' ? 'Uint8Array' : 'Float32Array';
}

/** The object literal of a wrapper's parts: only the fields given. */
function partsObject(body: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((key) => Object.hasOwn(body, key)).map((key) => [key, body[key]]));
}

/** A case as one JavaScript expression (see OPS_PRELUDE). */
export function renderCall(call: OpCase, device: string): string {
  const render = (value: unknown): string =>
    renderValue(value, (item, inner) => {
      if (isTensorSpec(item)) return renderTensor(item.$tensor, device);
      const body = wrapperBody(item);
      if (body === undefined) return undefined;
      let made: string;
      if (isQuantizedSpec(item) && Object.hasOwn(body, 'from')) made = `quantizeWeights(${inner(body.from)}, ${inner(body.format)})`;
      else if (isQuantizedSpec(item)) made = `new QuantizedWeights(${inner(partsObject(body, ['format', 'data', 'scales']))})`;
      else made = `new Fp8Rows(${inner(partsObject(body, ['data', 'scales']))})`;
      return body.disposePart ? `disposedPart(${made}, '${String(body.disposePart)}')` : made;
    });
  const args = call.args.map(render);
  switch (call.op) {
    case 'tensor.to':
      return `${args[0]}.to(${args.slice(1).join(', ')})`;
    case 'QuantizedWeights':
    case 'Fp8Rows':
      return `new ${call.op}(${args.join(', ')})`;
    case 'pipelineFp8': {
      const [x, ids, experts, w13, w2, weights] = args;
      return (
        `(() => { const p = permute(${x}, ${ids}, ${experts}, { quantize: 'fp8' }); ` +
        `const h = groupedGemm(p.permuted, ${w13}, p.expertOffsets, { activation: { kind: 'swiglu' }, outDtype: 'float8_e4m3' }); ` +
        `const y = groupedGemm(h, ${w2}, p.expertOffsets); return combine(y, ${weights}, p.sourceToPermuted); })()`
      );
    }
    case 'pipeline': {
      const [x, ids, experts, w13, w2, weights] = args;
      return (
        `(() => { const p = permute(${x}, ${ids}, ${experts}); ` +
        `const h = groupedGemm(p.permuted, ${w13}, p.expertOffsets, { activation: { kind: 'swiglu' } }); ` +
        `const y = groupedGemm(h, ${w2}, p.expertOffsets); return combine(y, ${weights}, p.sourceToPermuted); })()`
      );
    }
    default:
      return `${call.op}(${args.join(', ')})`;
  }
}

// ---- Running a case -----------------------------------------------------------------------

/** Builds the tensor a spec describes (disposed afterwards when the spec says so). */
export function buildTensor(api: MoekitApi, body: TensorSpecBody, caseDevice: string): Tensor {
  const device = (body.device ?? caseDevice) as 'cpu';
  let tensor: Tensor;
  if (body.values === undefined && body.dtype === 'float8_e4m3') {
    const source = api.Tensor.random(body.shape, { seed: body.seed ?? 0, device });
    try {
      tensor = source.to(device, 'float8_e4m3');
    } finally {
      source.dispose();
    }
  } else if (body.values === undefined) {
    tensor = api.Tensor.random(body.shape, { dtype: body.dtype, seed: body.seed ?? 0, device });
  } else {
    const values = repeatValues(body.values, numel(body.shape));
    if (body.dtype === 'int32') tensor = api.Tensor.fromArray(Int32Array.from(values), body.shape, { device });
    else if (body.dtype === 'float8_e4m3' || body.dtype === 'uint8') tensor = api.Tensor.fromArray(Uint8Array.from(values), body.shape, { dtype: body.dtype, device });
    else tensor = api.Tensor.fromArray(Float32Array.from(values), body.shape, { dtype: body.dtype, device });
  }
  if (body.disposed) tensor.dispose();
  return tensor;
}

/** What building a call's inputs makes: every tensor (to dispose), and each by where its spec sits (inputKey). */
interface Built {
  made: Tensor[];
  inputs: Map<string, Tensor>;
}

/**
 * The call's arguments with tensor specs replaced by tensors and wrapper specs by QuantizedWeights
 * and Fp8Rows; every tensor made goes into `built`. Specs sit in arguments and in options objects
 * up to two levels down (groupedGemm's activation); deeper values, cycles and junk objects among
 * them, are passed as they are.
 */
function materialize(api: MoekitApi, value: unknown, caseDevice: string, built: Built, path: (number | string)[]): unknown {
  const keep = (tensor: Tensor, at: (number | string)[]): Tensor => {
    built.made.push(tensor);
    built.inputs.set(inputKey(at), tensor);
    return tensor;
  };
  if (isTensorSpec(value)) return keep(buildTensor(api, value.$tensor, caseDevice), path);
  const body = wrapperBody(value);
  if (body !== undefined) {
    const part = (key: string): unknown => materialize(api, body[key], caseDevice, built, [...path, key]);
    let pair: QuantizedWeights | Fp8Rows;
    if (isQuantizedSpec(value) && Object.hasOwn(body, 'from')) {
      pair = api.quantizeWeights(part('from') as Tensor, body.format as 'fp8_block128');
      keep(pair.data, [...path, 'data']);
      keep(pair.scales, [...path, 'scales']);
    } else {
      const keys = isQuantizedSpec(value) ? ['format', 'data', 'scales'] : ['data', 'scales'];
      const parts = Object.fromEntries(keys.filter((key) => Object.hasOwn(body, key)).map((key) => [key, key === 'format' ? body.format : part(key)]));
      pair = isQuantizedSpec(value) ? new api.QuantizedWeights(parts as never) : new api.Fp8Rows(parts as never);
    }
    if (body.disposePart === 'data' || body.disposePart === 'scales') pair[body.disposePart].dispose();
    return pair;
  }
  if (path.length < 3 && typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, materialize(api, item, caseDevice, built, [...path, key])]));
  }
  return value;
}

type AnyFunction = (...args: unknown[]) => unknown;

/** Makes the call; returns its output tensors by name, and tensors made along the way (the pipeline's) to dispose. */
function invoke(api: MoekitApi, op: OpName, args: unknown[], intermediates: Tensor[]): Record<string, unknown> {
  const call = (fn: unknown, ...callArgs: unknown[]): unknown => (fn as AnyFunction)(...callArgs);
  switch (op) {
    case 'route':
    case 'permute':
    case 'permuteMaps':
      return { ...(call(api[op], ...args) as object) };
    case 'groupedGemm':
    case 'activation':
    case 'combine':
    case 'linear':
      return { output: call(api[op], ...args) };
    case 'quantizeWeights':
      return { output: call(api.quantizeWeights, ...args) };
    case 'QuantizedWeights':
      return { output: Reflect.construct(api.QuantizedWeights, args) };
    case 'Fp8Rows':
      return { output: Reflect.construct(api.Fp8Rows, args) };
    case 'Tensor.fromArray':
      return { output: call(api.Tensor.fromArray.bind(api.Tensor), ...args) };
    case 'Tensor.empty':
      return { output: call(api.Tensor.empty.bind(api.Tensor), ...args) };
    case 'Tensor.random':
      return { output: call(api.Tensor.random.bind(api.Tensor), ...args) };
    case 'tensor.to': {
      const receiver = args[0] as Tensor;
      return { output: call(receiver.to.bind(receiver), ...args.slice(1)) };
    }
    case 'pipeline': {
      const [x, ids, experts, w13, w2, weights] = args as [Tensor, Tensor, number, Tensor, Tensor, Tensor];
      const p = api.permute(x, ids, experts);
      intermediates.push(p.permuted, p.expertOffsets, p.sourceToPermuted, p.permutedToSource);
      const h = api.groupedGemm(p.permuted, w13, p.expertOffsets, { activation: { kind: 'swiglu' } });
      intermediates.push(h);
      const y = api.groupedGemm(h, w2, p.expertOffsets);
      intermediates.push(y);
      return { output: api.combine(y, weights, p.sourceToPermuted) };
    }
    case 'pipelineFp8': {
      const [x, ids, experts, w13, w2, weights] = args as [Tensor, Tensor, number, QuantizedWeights, QuantizedWeights, Tensor];
      const p = api.permute(x, ids, experts, { quantize: 'fp8' });
      intermediates.push(p.permuted.data, p.permuted.scales, p.expertOffsets, p.sourceToPermuted, p.permutedToSource);
      const h = api.groupedGemm(p.permuted, w13, p.expertOffsets, { activation: { kind: 'swiglu' }, outDtype: 'float8_e4m3' });
      intermediates.push(h.data, h.scales);
      const y = api.groupedGemm(h, w2, p.expertOffsets);
      intermediates.push(y);
      // The final output first: it is awaited before the rest, which must then hold the same verdict.
      return { output: api.combine(y, weights, p.sourceToPermuted), h, y, permuted: p.permuted };
    }
  }
}

/** Throws unless `error` is a MoekitError with a code for bad input. */
function requireInputError(api: MoekitApi, error: unknown, where: string): void {
  if (!(error instanceof api.MoekitError)) {
    throw new PropertyViolation(`${where} with an error that is not a MoekitError: ${errorText(error)}`);
  }
  if (!INPUT_ERROR_CODES.has(error.code)) throw new PropertyViolation(`${where} with ${error.code}, not a code for bad input: ${error.message}`);
}

type Settled<T = HostArray> = { ok: true; values: T } | { ok: false; error: unknown };

async function settle(tensor: Tensor): Promise<Settled> {
  return settled(() => tensor.toArray());
}

async function settled<T>(read: () => Promise<T>): Promise<Settled<T>> {
  try {
    return { ok: true, values: await read() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** After each case: a small linear with a known answer still runs on the device and gets it. */
async function requireHealthyDevice(api: MoekitApi, device: string): Promise<void> {
  const where = { device: device as 'cpu' };
  const made: Tensor[] = [];
  try {
    const input = api.Tensor.fromArray(new Float32Array([1, 2, 3]), [1, 3], where);
    made.push(input);
    const weight = api.Tensor.fromArray(new Float32Array([1, 0, 0, 0, 1, -1]), [2, 3], where);
    made.push(weight);
    const output = api.linear(input, weight);
    made.push(output);
    const values = await output.toArray();
    if (values[0] !== 1 || values[1] !== -1) throw new Error(`a known linear gave [${Array.from(values).join(', ')}], expected [1, -1]`);
  } catch (error) {
    throw new PropertyViolation(`${device} is not usable after the case: ${errorText(error)}`);
  } finally {
    for (const tensor of made) tensor.dispose();
  }
}

/**
 * Outputs larger than this are not read back: copying and checking gigabytes in JavaScript takes
 * longer than a case may (a GPU run has no memory limit to turn them into E_OOM first).
 */
const MAX_READ_ELEMENTS = 1 << 24;

/** A call's outputs: its tensors by name (an Fp8Rows or QuantizedWeights `x` as `x.data` and `x.scales`), and its Fp8Rows. */
interface Outputs {
  tensors: Record<string, Tensor>;
  rows: Record<string, Fp8Rows>;
}

/** The input tensors the oracle compares outputs with, read back (undefined when one cannot be read). */
async function readInputs(inputs: Map<string, Tensor>): Promise<Record<string, HostTensor> | undefined> {
  const read: Record<string, HostTensor> = {};
  for (const [key, tensor] of inputs) {
    if (tensor.disposed) continue;
    const values = await settle(tensor);
    if (!values.ok) return undefined;
    read[key] = { values: values.values, dtype: tensor.dtype, shape: tensor.shape };
  }
  return read;
}

/**
 * The float views of the outputs, which must agree with their bits: a float8_e4m3 tensor's
 * toFloat32Array() (its patterns decoded), an Fp8Rows' toFloat32Array() (q · scale, which reads
 * its data through the former), each rejecting with an input error when the bits do; a uint8
 * tensor's toFloat32Array() rejects.
 */
async function checkFloatViews(api: MoekitApi, call: OpCase, outputs: Outputs, values: Record<string, HostArray>): Promise<void> {
  for (const [name, tensor] of Object.entries(outputs.tensors)) {
    if (tensor.dtype !== 'float8_e4m3' && tensor.dtype !== 'uint8') continue;
    if (name.endsWith('.data') && Object.hasOwn(outputs.rows, name.slice(0, -'.data'.length))) continue;
    const floats = await settled(() => tensor.toFloat32Array());
    const bits = values[name] as Uint8Array | undefined;
    if (tensor.dtype === 'uint8' || bits === undefined) {
      if (floats.ok) throw new PropertyViolation(`${call.op}: ${name}.toFloat32Array() resolved for a ${tensor.dtype} tensor${bits ? '' : ' whose toArray() rejected'}`);
      if (tensor.dtype === 'uint8' && !(floats.error instanceof api.MoekitError && floats.error.code === 'E_DTYPE')) {
        throw new PropertyViolation(`${call.op}: ${name}.toFloat32Array() of a uint8 tensor failed with ${errorText(floats.error)}, not E_DTYPE`);
      }
      if (tensor.dtype === 'float8_e4m3') requireInputError(api, floats.error, `${call.op}: ${name}.toFloat32Array() rejected`);
      continue;
    }
    if (!floats.ok) throw new PropertyViolation(`${call.op}: ${name}.toFloat32Array() rejected though toArray() resolved: ${errorText(floats.error)}`);
    const differs = firstDifference(floats.values, Float64Array.from(bits, decodeE4m3));
    if (differs) throw new PropertyViolation(`${call.op}: ${name}.toFloat32Array() is not its float8_e4m3 bits decoded: ${differs}`);
  }
  for (const [name, rows] of Object.entries(outputs.rows)) {
    const [q, scales] = [values[`${name}.data`] as Uint8Array | undefined, values[`${name}.scales`] as Float32Array | undefined];
    const floats = await settled(() => rows.toFloat32Array());
    if (q === undefined || scales === undefined) {
      if (floats.ok) throw new PropertyViolation(`${call.op}: ${name}.toFloat32Array() resolved, but its data or scales rejected`);
      requireInputError(api, floats.error, `${call.op}: ${name}.toFloat32Array() rejected`);
      continue;
    }
    if (!floats.ok) throw new PropertyViolation(`${call.op}: ${name}.toFloat32Array() rejected though its data and scales resolved: ${errorText(floats.error)}`);
    const differs = firstDifference(floats.values, fp8RowsAsFloat(q, scales, rows.shape[1] ?? 0));
    if (differs) throw new PropertyViolation(`${call.op}: ${name}.toFloat32Array() is not q · scale: ${differs}`);
  }
}

/** Reads what the case's outputs hold, or why they must not resolve, and checks it. */
async function checkOutputs(api: MoekitApi, call: OpCase, outputs: Outputs, built: Built, source: ResolvedCall['source']): Promise<void> {
  if (Object.values(outputs.tensors).some((tensor) => tensor.numel > MAX_READ_ELEMENTS)) return;
  const values: Record<string, HostArray> = {};
  const rejected: string[] = [];
  for (const [name, tensor] of Object.entries(outputs.tensors)) {
    const settledValues = await settle(tensor);
    if (settledValues.ok) {
      values[name] = settledValues.values;
    } else {
      requireInputError(api, settledValues.error, `${call.op}: output ${name} rejected`);
      rejected.push(name);
    }
  }
  await checkFloatViews(api, call, outputs, values);
  const outOfRange = outOfRangeReason(call);
  if (outOfRange !== undefined) {
    const resolved = Object.keys(values);
    if (resolved.length > 0) {
      throw new PropertyViolation(`${call.op} with ${outOfRange}: output(s) ${resolved.join(', ')} resolved; every output of such a call must reject (poisoned)`);
    }
    return;
  }
  if (rejected.length > 0) return;
  const dtypes = Object.fromEntries(Object.entries(outputs.tensors).map(([name, tensor]) => [name, tensor.dtype]));
  const inputs = needsInputs(call) ? await readInputs(built.inputs) : undefined;
  const problem = resolvedOutputsProblem({ call, outputs: values, dtypes, ...(source && { source }), ...(inputs && { inputs }) }, api);
  if (problem !== undefined) throw new PropertyViolation(`${call.op}: ${problem}`);
}

/** Builds the inputs, makes the call and checks what comes of it; every tensor made goes into `built.made`. */
async function runCall(api: MoekitApi, call: OpCase, device: string, built: Built): Promise<void> {
  let args: unknown[];
  try {
    args = call.args.map((arg, index) => materialize(api, arg, device, built, [index]));
  } catch (error) {
    // Inputs this machine cannot hold (a device it lacks), or parts QuantizedWeights and Fp8Rows
    // refuse, make the case moot; anything else is a finding.
    requireInputError(api, error, 'building the inputs failed');
    return;
  }
  // tensor.to: the source's values, read before the call, to compare with.
  const receiver = call.op === 'tensor.to' ? (args[0] as Tensor) : undefined;
  const sourceRead = receiver && !receiver.disposed ? await settle(receiver) : undefined;
  const source = sourceRead?.ok ? { values: sourceRead.values, dtype: receiver!.dtype } : undefined;
  let result: Record<string, unknown>;
  try {
    result = invoke(api, call.op, args, built.made);
  } catch (error) {
    requireInputError(api, error, `${call.op} threw`);
    return;
  }
  const outputs: Outputs = { tensors: {}, rows: {} };
  for (const [name, value] of Object.entries(result)) {
    if (value instanceof api.Fp8Rows || value instanceof api.QuantizedWeights) {
      if (value instanceof api.Fp8Rows) outputs.rows[name] = value;
      for (const part of ['data', 'scales'] as const) {
        if (!(value[part] instanceof api.Tensor)) throw new PropertyViolation(`${call.op} returned ${name}.${part} = ${String(value[part])}, not a Tensor`);
        outputs.tensors[`${name}.${part}`] = value[part];
        built.made.push(value[part]);
      }
      continue;
    }
    if (!(value instanceof api.Tensor)) throw new PropertyViolation(`${call.op} returned ${name} = ${String(value)}, not a Tensor`);
    outputs.tensors[name] = value;
    built.made.push(value);
  }
  await checkOutputs(api, call, outputs, built, source);
}

async function checkCase(api: MoekitApi, call: OpCase, device: string): Promise<void> {
  const built: Built = { made: [], inputs: new Map() };
  try {
    await runCall(api, call, device, built);
  } finally {
    for (const tensor of built.made) tensor.dispose();
  }
  await requireHealthyDevice(api, device);
}

export const opsProperty = defineProperty<OpCase>(({ moekit, params }) => {
  const device = params.device ?? 'cpu';
  const ops = params.ops?.split(',').filter(Boolean) as OpName[] | undefined;
  const unknown = ops?.filter((op) => !OP_NAMES.includes(op));
  if (unknown && unknown.length > 0) throw new Error(`ops property: unknown ops ${unknown.join(', ')} (known: ${OP_NAMES.join(', ')})`);
  return {
    arbitrary: opCases({ device, ...(params.otherDevice && { otherDevice: params.otherDevice }), ...(ops && { ops }) }),
    describe: (call) => renderCall(call, device),
    check: (call) => checkCase(moekit.api, call, device),
  };
});

