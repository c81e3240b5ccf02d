// Hostile index values on the CPU: bounds-checked reads and poisoned outputs (the cases live in
// test/helpers/op_fault_cases.ts; test/gpu/op_faults.test.ts runs them on a GPU).
import { describe, expect, it } from 'vitest';

import { hostileArgumentCases, opFaultCases } from './helpers/op_fault_cases';

describe('op faults on the CPU', () => opFaultCases('cpu'));
describe('hostile arguments on the CPU', () => hostileArgumentCases('cpu'));

describe("README's example of a poisoned tensor", () => {
  it('runs as written', async () => {
    const { combine, permute, Tensor } = await import('../lib/index');
    const x = Tensor.random([1, 8]);
    const ids = Tensor.fromArray(Int32Array.from([9]), [1, 1]);
    const { permuted, sourceToPermuted } = permute(x, ids, 4);
    const y = combine(permuted, Tensor.fromArray([1], [1, 1]), sourceToPermuted);
    await expect(y.toArray()).rejects.toThrow('permute: topkIds holds expert id 9 at flat index 0, outside [0, 4)');
    await expect(x.toArray()).resolves.toHaveLength(8);
  });
});
