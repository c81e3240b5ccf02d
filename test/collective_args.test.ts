// The collectives' argument checks (lib/parallel/collective_args.ts), run on the CPU: every refusal
// a ProcessGroup makes before NCCL sees a call, with its code and message, and what the good calls
// resolve to (all-to-all's splits). Running the collectives needs GPUs: test/gpu/multi/collectives.js.
import { describe, expect, it } from 'vitest';

import { Tensor, type DType } from '../lib/index';
import {
  checkAllGather, checkAllReduce, checkAllToAll, checkBroadcast, checkPeerTransfer, checkReduceScatter, SUMMED_DTYPES, type GroupPlace,
} from '../lib/parallel/collective_args';
import { expectThrows } from './helpers/errors';

/** Rank 1 of 4, on the CPU so that its tensors can be made here. */
const group: GroupPlace = { rank: 1, worldSize: 4, device: 'cpu' };
const tensor = (shape: number[], dtype: DType = 'float32'): Tensor => Tensor.empty(shape, { dtype });

describe('every collective', () => {
  it('takes only live Tensors on the group\'s device', () => {
    expectThrows(() => checkAllReduce(group, [1, 2]), 'E_INVALID_ARGUMENT', /^allReduce: tensor must be a Tensor$/);
    expectThrows(() => checkAllGather(group, tensor([2]), 'out'), 'E_INVALID_ARGUMENT', /^allGather: output must be a Tensor$/);
    const gone = tensor([2]);
    gone.dispose();
    expectThrows(() => checkBroadcast(group, gone, 0), 'E_DISPOSED', /^broadcast: tensor was used after dispose\(\)$/);
    const elsewhere: GroupPlace = { ...group, device: 'cuda:1' };
    expectThrows(() => checkPeerTransfer(elsewhere, 'send', tensor([2]), 0), 'E_DEVICE', /^send: tensor is on cpu, the group on cuda:1$/);
    expectThrows(() => checkReduceScatter(elsewhere, tensor([8]), tensor([2])), 'E_DEVICE', /^reduceScatter: input is on cpu, the group on cuda:1$/);
  });
});

describe('allReduce', () => {
  it('sums float32, float16, bfloat16 and int32, and refuses the byte dtypes', () => {
    for (const dtype of SUMMED_DTYPES) expect(() => checkAllReduce(group, tensor([3], dtype))).not.toThrow();
    expectThrows(() => checkAllReduce(group, tensor([3], 'uint8')), 'E_DTYPE', /^allReduce: tensor must be float32 or float16 or bfloat16 or int32, got uint8$/);
    expectThrows(() => checkAllReduce(group, tensor([3], 'float8_e4m3')), 'E_DTYPE', /got float8_e4m3$/);
  });
});

describe('reduceScatter', () => {
  it('takes input [worldSize × rows, ...] into output [rows, ...]', () => {
    expect(() => checkReduceScatter(group, tensor([8, 3]), tensor([2, 3]))).not.toThrow();
    expect(() => checkReduceScatter(group, tensor([0, 3], 'int32'), tensor([0, 3], 'int32'))).not.toThrow();
    expectThrows(() => checkReduceScatter(group, tensor([6, 3]), tensor([2, 3])), 'E_SHAPE', /^reduceScatter: input must have shape \[8, 3\] \(4 ranks × output's \[2, 3\]\), got \[6, 3\]$/);
    expectThrows(() => checkReduceScatter(group, tensor([8, 2]), tensor([2, 3])), 'E_SHAPE', /input must have shape \[8, 3\]/);
  });

  it('sums only, in one dtype, from and into different tensors with rows', () => {
    expectThrows(() => checkReduceScatter(group, tensor([8], 'uint8'), tensor([2], 'uint8')), 'E_DTYPE', /^reduceScatter: input must be float32 or float16 or bfloat16 or int32, got uint8$/);
    expectThrows(() => checkReduceScatter(group, tensor([8]), tensor([2], 'bfloat16')), 'E_DTYPE', /^reduceScatter: output must be float32 like input, got bfloat16$/);
    const same = tensor([8]);
    expectThrows(() => checkReduceScatter(group, same, same), 'E_INVALID_ARGUMENT', /^reduceScatter: input and output must be different tensors$/);
    expectThrows(() => checkReduceScatter(group, tensor([]), tensor([2])), 'E_SHAPE', /^reduceScatter: input must have at least one dimension \(its rows\), got a scalar$/);
  });
});

describe('allGather', () => {
  it('takes input [rows, ...] into output [worldSize × rows, ...], in any dtype', () => {
    for (const dtype of ['float32', 'bfloat16', 'int32', 'float8_e4m3', 'uint8'] as const) {
      expect(() => checkAllGather(group, tensor([2, 5], dtype), tensor([8, 5], dtype))).not.toThrow();
    }
    expectThrows(() => checkAllGather(group, tensor([2, 5]), tensor([8, 4])), 'E_SHAPE', /^allGather: output must have shape \[8, 5\] \(4 ranks × input's \[2, 5\]\), got \[8, 4\]$/);
    expectThrows(() => checkAllGather(group, tensor([2, 5]), tensor([2, 5])), 'E_SHAPE', /output must have shape \[8, 5\]/);
    expectThrows(() => checkAllGather(group, tensor([2], 'uint8'), tensor([8], 'float8_e4m3')), 'E_DTYPE', /^allGather: output must be uint8 like input, got float8_e4m3$/);
    expectThrows(() => checkAllGather(group, tensor([2]), tensor([])), 'E_SHAPE', /^allGather: output must have at least one dimension/);
  });
});

describe('broadcast', () => {
  it('takes a root rank of the group', () => {
    expect(() => checkBroadcast(group, tensor([2, 2], 'uint8'), 3)).not.toThrow();
    expect(() => checkBroadcast(group, tensor([]), 1)).not.toThrow();
    expectThrows(() => checkBroadcast(group, tensor([2]), 4), 'E_INVALID_ARGUMENT', /^broadcast: root must be an integer in \[0, 3\], got 4$/);
    expectThrows(() => checkBroadcast(group, tensor([2]), -1), 'E_INVALID_ARGUMENT', /root must be an integer in \[0, 3\], got -1$/);
    expectThrows(() => checkBroadcast(group, tensor([2]), '0'), 'E_INVALID_ARGUMENT', /root must be an integer in \[0, 3\], got "0"$/);
  });
});

describe('send and recv', () => {
  it('take another rank of the group as the peer', () => {
    expect(() => checkPeerTransfer(group, 'send', tensor([4], 'float8_e4m3'), 0)).not.toThrow();
    expect(() => checkPeerTransfer(group, 'recv', tensor([4]), 3)).not.toThrow();
    expectThrows(() => checkPeerTransfer(group, 'recv', tensor([4]), 1), 'E_INVALID_ARGUMENT', /^recv: peer must be another rank than this one \(1\)$/);
    expectThrows(() => checkPeerTransfer(group, 'send', tensor([4]), 4), 'E_INVALID_ARGUMENT', /^send: peer must be an integer in \[0, 3\], got 4$/);
    expectThrows(() => checkPeerTransfer(group, 'send', tensor([4]), 1.5), 'E_INVALID_ARGUMENT', /^send: peer must be an integer in \[0, 3\], got 1\.5$/);
    expectThrows(() => checkPeerTransfer(group, 'recv', tensor([4]), undefined), 'E_INVALID_ARGUMENT', /^recv: peer must be an integer in \[0, 3\], got undefined$/);
  });

  it('have no peer in a group of one', () => {
    const alone: GroupPlace = { rank: 0, worldSize: 1, device: 'cpu' };
    expectThrows(() => checkPeerTransfer(alone, 'send', tensor([4]), 0), 'E_INVALID_ARGUMENT', /^send: peer must be another rank than this one \(0\)$/);
  });
});

describe('allToAll', () => {
  it('splits both sides equally when the splits are left out', () => {
    expect(checkAllToAll(group, tensor([8, 3]), tensor([4, 3]))).toEqual({ sendSplits: [2, 2, 2, 2], recvSplits: [1, 1, 1, 1] });
    expect(checkAllToAll(group, tensor([0, 3], 'uint8'), tensor([0, 3], 'uint8'), null)).toEqual({ sendSplits: [0, 0, 0, 0], recvSplits: [0, 0, 0, 0] });
    expectThrows(() => checkAllToAll(group, tensor([6, 3]), tensor([8, 3])), 'E_SHAPE', /^allToAll: input's 6 rows do not split equally over 4 ranks; give sendSplits$/);
    expectThrows(() => checkAllToAll(group, tensor([8, 3]), tensor([5, 3]), { sendSplits: [2, 2, 2, 2] }), 'E_SHAPE', /^allToAll: output's 5 rows do not split equally over 4 ranks; give recvSplits$/);
  });

  it('takes uneven splits, zeros included, that add up to each side\'s rows', () => {
    const splits = { sendSplits: [0, 7, 0, 1], recvSplits: [3, 0, 0, 9] };
    expect(checkAllToAll(group, tensor([8, 2]), tensor([12, 2]), splits)).toEqual(splits);
    expectThrows(() => checkAllToAll(group, tensor([8, 2]), tensor([12, 2]), { ...splits, sendSplits: [0, 7, 0, 2] }), 'E_SHAPE', /^allToAll: sendSplits add up to 9 rows, but input has 8$/);
    expectThrows(() => checkAllToAll(group, tensor([8, 2]), tensor([12, 2]), { ...splits, recvSplits: [3, 0, 0] }), 'E_INVALID_ARGUMENT', /^allToAll: recvSplits must be an array of 4 row counts \(one per rank\), got \[3, 0, 0\]$/);
    expectThrows(() => checkAllToAll(group, tensor([8, 2]), tensor([12, 2]), { ...splits, sendSplits: [0, 8, -1, 1] }), 'E_INVALID_ARGUMENT', /^allToAll: sendSplits\[2\] must be an integer >= 0, got -1$/);
    expectThrows(() => checkAllToAll(group, tensor([8, 2]), tensor([12, 2]), { ...splits, sendSplits: [0, 7, 0, 0.5, 0.5] as never }), 'E_INVALID_ARGUMENT', /must be an array of 4 row counts/);
    expectThrows(() => checkAllToAll(group, tensor([8, 2]), tensor([12, 2]), { ...splits, recvSplits: 12 as never }), 'E_INVALID_ARGUMENT', /^allToAll: recvSplits must be an array of 4 row counts \(one per rank\), got 12$/);
  });

  it('moves rows of one shape and dtype between different tensors', () => {
    expectThrows(() => checkAllToAll(group, tensor([4, 2, 3]), tensor([4, 3, 2])), 'E_SHAPE', /^allToAll: output's rows must be input's, \[\*, 2, 3\], got \[\*, 3, 2\]$/);
    expectThrows(() => checkAllToAll(group, tensor([4]), tensor([4, 1])), 'E_SHAPE', /output's rows must be input's, \[\*\], got \[\*, 1\]$/);
    expectThrows(() => checkAllToAll(group, tensor([4], 'int32'), tensor([4])), 'E_DTYPE', /^allToAll: output must be int32 like input, got float32$/);
    const same = tensor([4]);
    expectThrows(() => checkAllToAll(group, same, same), 'E_INVALID_ARGUMENT', /^allToAll: input and output must be different tensors$/);
    expectThrows(() => checkAllToAll(group, tensor([4]), tensor([4]), 'even' as never), 'E_INVALID_ARGUMENT', /^allToAll: options must be an object, got "even"$/);
  });
});
