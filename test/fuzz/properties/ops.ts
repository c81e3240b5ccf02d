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
import { isTensorSpec, numel, OP_NAMES, opCases, type OpCase, type OpName, type TensorSpecBody } from './ops_cases';
import { outOfRangeReason, repeatValues, resolvedOutputsProblem, type ResolvedCall } from './ops_oracle';
import { RENDER_PRELUDE, renderValue } from './render';

type Tensor = MoekitApi['Tensor']['prototype'];
type HostArray = Awaited<ReturnType<Tensor['toArray']>>;

/** The codes a bad argument may earn; anything else (E_NATIVE above all) means moekit did not recognise bad input. */
const INPUT_ERROR_CODES: ReadonlySet<string> = new Set(['E_INVALID_ARGUMENT', 'E_SHAPE', 'E_DTYPE', 'E_DEVICE', 'E_DISPOSED', 'E_OOM']);

/** Helpers the reproducers call, after RENDER_PRELUDE's. */
export const OPS_PRELUDE = [
  "const { Tensor, route, permute, groupedGemm, activation, combine, linear } = require('moekit');",
  RENDER_PRELUDE,
  'const repeat = (Type, values, n) => Type.from({ length: n }, (_, i) => values[i % values.length] ?? 0);',
  'const disposed = (t) => (t.dispose(), t);',
].join('\n');

class PropertyViolation extends Error {}

// ---- Describing a case as code ------------------------------------------------------------

function renderTensor({ dtype, shape, values, seed, device, disposed }: TensorSpecBody, caseDevice: string): string {
  const where = device ?? caseDevice;
  const shapeText = `[${shape.join(', ')}]`;
  let expression: string;
  if (values !== undefined) {
    const type = dtype === 'int32' ? 'Int32Array' : 'Float32Array';
    const count = numel(shape);
    const data = values.length === count ? `new ${type}([${values.map((value) => renderValue(value)).join(', ')}])` : `repeat(${type}, [${values.map((value) => renderValue(value)).join(', ')}], ${count})`;
    const options = [dtype === 'int32' || dtype === 'float32' ? '' : `dtype: '${dtype}'`, where === 'cpu' ? '' : `device: '${where}'`].filter(Boolean);
    expression = `Tensor.fromArray(${data}, ${shapeText}${options.length ? `, { ${options.join(', ')} }` : ''})`;
  } else {
    expression = `Tensor.random(${shapeText}, { dtype: '${dtype}', seed: ${seed ?? 0}${where === 'cpu' ? '' : `, device: '${where}'`} })`;
  }
  return disposed ? `disposed(${expression})` : expression;
}

/** A case as one JavaScript expression (see OPS_PRELUDE). */
export function renderCall(call: OpCase, device: string): string {
  const render = (value: unknown): string => renderValue(value, (item) => (isTensorSpec(item) ? renderTensor(item.$tensor, device) : undefined));
  const args = call.args.map(render);
  switch (call.op) {
    case 'tensor.to':
      return `${args[0]}.to(${args.slice(1).join(', ')})`;
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
function buildTensor(api: MoekitApi, body: TensorSpecBody, caseDevice: string): Tensor {
  const device = (body.device ?? caseDevice) as 'cpu';
  let tensor: Tensor;
  if (body.values === undefined) {
    tensor = api.Tensor.random(body.shape, { dtype: body.dtype, seed: body.seed ?? 0, device });
  } else {
    const values = repeatValues(body.values, numel(body.shape));
    tensor =
      body.dtype === 'int32'
        ? api.Tensor.fromArray(Int32Array.from(values), body.shape, { device })
        : api.Tensor.fromArray(Float32Array.from(values), body.shape, { dtype: body.dtype, device });
  }
  if (body.disposed) tensor.dispose();
  return tensor;
}

/**
 * The call's arguments with tensor specs replaced by tensors; every tensor made goes into `made`.
 * Specs sit in arguments and in options objects up to two levels down (groupedGemm's activation);
 * deeper values, cycles and junk objects among them, are passed as they are.
 */
function materialize(api: MoekitApi, value: unknown, caseDevice: string, made: Tensor[], depth = 0): unknown {
  if (isTensorSpec(value)) {
    const tensor = buildTensor(api, value.$tensor, caseDevice);
    made.push(tensor);
    return tensor;
  }
  if (depth < 2 && typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, materialize(api, item, caseDevice, made, depth + 1)]));
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
      return { ...(call(api[op], ...args) as object) };
    case 'groupedGemm':
    case 'activation':
    case 'combine':
    case 'linear':
      return { output: call(api[op], ...args) };
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
  }
}

/** Throws unless `error` is a MoekitError with a code for bad input. */
function requireInputError(api: MoekitApi, error: unknown, where: string): void {
  if (!(error instanceof api.MoekitError)) {
    throw new PropertyViolation(`${where} with an error that is not a MoekitError: ${errorText(error)}`);
  }
  if (!INPUT_ERROR_CODES.has(error.code)) throw new PropertyViolation(`${where} with ${error.code}, not a code for bad input: ${error.message}`);
}

type Settled = { ok: true; values: HostArray } | { ok: false; error: unknown };

async function settle(tensor: Tensor): Promise<Settled> {
  try {
    return { ok: true, values: await tensor.toArray() };
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

/** Reads what the case's outputs hold, or why they must not resolve, and checks it. */
async function checkOutputs(api: MoekitApi, call: OpCase, outputs: Record<string, Tensor>, source: ResolvedCall['source']): Promise<void> {
  if (Object.values(outputs).some((tensor) => tensor.numel > MAX_READ_ELEMENTS)) return;
  const values: Record<string, HostArray> = {};
  const rejected: string[] = [];
  for (const [name, tensor] of Object.entries(outputs)) {
    const settled = await settle(tensor);
    if (settled.ok) {
      values[name] = settled.values;
    } else {
      requireInputError(api, settled.error, `${call.op}: output ${name} rejected`);
      rejected.push(name);
    }
  }
  const outOfRange = outOfRangeReason(call);
  if (outOfRange !== undefined) {
    const resolved = Object.keys(values);
    if (resolved.length > 0) {
      throw new PropertyViolation(`${call.op} with ${outOfRange}: output(s) ${resolved.join(', ')} resolved; every output of such a call must reject (poisoned)`);
    }
    return;
  }
  if (rejected.length > 0) return;
  const dtypes = Object.fromEntries(Object.entries(outputs).map(([name, tensor]) => [name, tensor.dtype]));
  const problem = resolvedOutputsProblem({ call, outputs: values, dtypes, ...(source && { source }) }, api);
  if (problem !== undefined) throw new PropertyViolation(`${call.op}: ${problem}`);
}

/** Builds the inputs, makes the call and checks what comes of it; every tensor made goes into `made`. */
async function runCall(api: MoekitApi, call: OpCase, device: string, made: Tensor[]): Promise<void> {
  let args: unknown[];
  try {
    args = call.args.map((arg) => materialize(api, arg, device, made));
  } catch (error) {
    // Inputs this machine cannot hold (a device it lacks) make the case moot; anything else is a finding.
    requireInputError(api, error, 'building the inputs failed');
    return;
  }
  // tensor.to: the source's values, read before the call, to compare with.
  const receiver = call.op === 'tensor.to' ? (args[0] as Tensor) : undefined;
  const sourceRead = receiver && !receiver.disposed ? await settle(receiver) : undefined;
  const source = sourceRead?.ok ? { values: sourceRead.values, dtype: receiver!.dtype } : undefined;
  let result: Record<string, unknown>;
  try {
    result = invoke(api, call.op, args, made);
  } catch (error) {
    requireInputError(api, error, `${call.op} threw`);
    return;
  }
  const outputs: Record<string, Tensor> = {};
  for (const [name, value] of Object.entries(result)) {
    if (!(value instanceof api.Tensor)) throw new PropertyViolation(`${call.op} returned ${name} = ${String(value)}, not a Tensor`);
    outputs[name] = value;
    made.push(value);
  }
  await checkOutputs(api, call, outputs, source);
}

async function checkCase(api: MoekitApi, call: OpCase, device: string): Promise<void> {
  const made: Tensor[] = [];
  try {
    await runCall(api, call, device, made);
  } finally {
    for (const tensor of made) tensor.dispose();
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

