/**
 * The arguments of ProcessGroup's collectives, checked before anything reaches NCCL. Each check is
 * a pure function of the group's place (its rank, size and device) and the arguments, so every
 * refusal can be tested on the CPU (test/collective_args.test.ts); each throws a MoekitError naming
 * the collective and the argument at fault. Tensors are always dense and row-major, so any tensor
 * is contiguous and a tensor's rows are its first dimension.
 */
import type { Device } from '../device';
import type { DType } from '../dtype';
import { describeValue, MoekitError } from '../errors';
import { requireDType, requireInteger, requireTensor } from '../ops/validate';
import { optionalOptions } from '../options';
import type { Tensor } from '../tensor';

/** What the checks need of a group: ProcessGroup has it. */
export interface GroupPlace {
  readonly rank: number;
  readonly worldSize: number;
  readonly device: Device;
}

/**
 * The dtypes a sum adds (allReduce, reduceScatter). The collectives that only move data take every
 * dtype, float8_e4m3 and uint8 included: moving bytes adds nothing.
 */
export const SUMMED_DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'int32'];

export interface AllToAllOptions {
  /** sendSplits[p] of input's rows, in rank order, go to rank p. Default: input's rows split equally. */
  sendSplits?: readonly number[];
  /** recvSplits[p] of output's rows, in rank order, come from rank p. Default: output's rows split equally. */
  recvSplits?: readonly number[];
}

/** Row counts per rank, one list for each side of an all-to-all. */
export interface AllToAllSplits {
  sendSplits: number[];
  recvSplits: number[];
}

/** A tensor of a collective: a live Tensor on the group's device. */
function groupTensor(group: GroupPlace, value: unknown, op: string, name: string): Tensor {
  const tensor = requireTensor(value, op, name);
  if (tensor.device !== group.device) throw new MoekitError('E_DEVICE', `${op}: ${name} is on ${tensor.device}, the group on ${group.device}`);
  return tensor;
}

/** The input and output of a collective that sizes one by the other: two tensors of one dtype, with rows. */
function inputAndOutput(group: GroupPlace, input: unknown, output: unknown, op: string, dtypes?: readonly DType[]): [Tensor, Tensor] {
  const given = groupTensor(group, input, op, 'input');
  const result = groupTensor(group, output, op, 'output');
  if (given === result) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: input and output must be different tensors`);
  if (dtypes !== undefined) requireDType(given, op, 'input', dtypes);
  if (result.dtype !== given.dtype) throw new MoekitError('E_DTYPE', `${op}: output must be ${given.dtype} like input, got ${result.dtype}`);
  for (const [name, tensor] of [['input', given], ['output', result]] as const) {
    if (tensor.shape.length === 0) throw new MoekitError('E_SHAPE', `${op}: ${name} must have at least one dimension (its rows), got a scalar`);
  }
  return [given, result];
}

const showShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/** `tensor` must be `per`'s shape with worldSize times its rows. */
function requireWorldRows(group: GroupPlace, op: string, tensor: Tensor, name: string, per: Tensor, perName: string): void {
  const expected = [group.worldSize * per.shape[0]!, ...per.shape.slice(1)];
  if (showShape(tensor.shape) !== showShape(expected)) {
    throw new MoekitError('E_SHAPE', `${op}: ${name} must have shape ${showShape(expected)} (${group.worldSize} ranks × ${perName}'s ${showShape(per.shape)}), got ${showShape(tensor.shape)}`);
  }
}

export function checkAllReduce(group: GroupPlace, tensor: unknown): Tensor {
  const checked = groupTensor(group, tensor, 'allReduce', 'tensor');
  requireDType(checked, 'allReduce', 'tensor', SUMMED_DTYPES);
  return checked;
}

/** input [worldSize × rows, ...] → output [rows, ...]. */
export function checkReduceScatter(group: GroupPlace, input: unknown, output: unknown): void {
  const [given, result] = inputAndOutput(group, input, output, 'reduceScatter', SUMMED_DTYPES);
  requireWorldRows(group, 'reduceScatter', given, 'input', result, 'output');
}

/** input [rows, ...] → output [worldSize × rows, ...]. */
export function checkAllGather(group: GroupPlace, input: unknown, output: unknown): void {
  const [given, result] = inputAndOutput(group, input, output, 'allGather');
  requireWorldRows(group, 'allGather', result, 'output', given, 'input');
}

export function checkBroadcast(group: GroupPlace, tensor: unknown, root: unknown): void {
  groupTensor(group, tensor, 'broadcast', 'tensor');
  requireInteger(root, 'broadcast', 'root', 0, group.worldSize - 1);
}

/** send's and recv's: `peer` is another rank of the group. */
export function checkPeerTransfer(group: GroupPlace, op: 'send' | 'recv', tensor: unknown, peer: unknown): void {
  groupTensor(group, tensor, op, 'tensor');
  requireInteger(peer, op, 'peer', 0, group.worldSize - 1);
  if (peer === group.rank) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: peer must be another rank than this one (${group.rank})`);
}

/** The splits of each side, equal ones where left out; input and output rows of one shape and dtype. */
export function checkAllToAll(group: GroupPlace, input: unknown, output: unknown, options?: AllToAllOptions | null): AllToAllSplits {
  const settings = optionalOptions(options, 'allToAll: options');
  const [given, result] = inputAndOutput(group, input, output, 'allToAll');
  const rows = (tensor: Tensor): string => `[*${tensor.shape.slice(1).map((extent) => `, ${extent}`).join('')}]`;
  if (rows(given) !== rows(result)) throw new MoekitError('E_SHAPE', `allToAll: output's rows must be input's, ${rows(given)}, got ${rows(result)}`);
  return {
    sendSplits: resolveSplits(group, settings.sendSplits, 'sendSplits', given, 'input'),
    recvSplits: resolveSplits(group, settings.recvSplits, 'recvSplits', result, 'output'),
  };
}

/** One row count per rank that add up to `tensor`'s rows; equal counts when `splits` is left out. */
function resolveSplits(group: GroupPlace, splits: unknown, name: string, tensor: Tensor, tensorName: string): number[] {
  const rows = tensor.shape[0]!;
  const ranks = group.worldSize;
  if (splits === undefined) {
    if (rows % ranks !== 0) throw new MoekitError('E_SHAPE', `allToAll: ${tensorName}'s ${rows} rows do not split equally over ${ranks} ranks; give ${name}`);
    return new Array<number>(ranks).fill(rows / ranks);
  }
  if (!Array.isArray(splits) || splits.length !== ranks) {
    throw new MoekitError('E_INVALID_ARGUMENT', `allToAll: ${name} must be an array of ${ranks} row counts (one per rank), got ${describeValue(splits)}`);
  }
  const counts = splits.map((count: unknown, peer) => requireInteger(count, 'allToAll', `${name}[${peer}]`, 0));
  const total = counts.reduce((sum, count) => sum + count, 0);
  if (total !== rows) throw new MoekitError('E_SHAPE', `allToAll: ${name} add up to ${total} rows, but ${tensorName} has ${rows}`);
  return counts;
}
