// The fused MoE op on the CPU, where it runs the separate ops: the same results, bit for bit.
import { describe } from 'vitest';

import { fusedMoeCases } from './helpers/fused_moe_cases';

describe('the fused MoE op on the CPU', () => {
  fusedMoeCases('cpu', { exact: true });
});
