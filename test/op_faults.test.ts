// Hostile index values on the CPU: bounds-checked reads and poisoned outputs (the cases live in
// test/helpers/op_fault_cases.ts; test/gpu/op_faults.test.ts runs them on a GPU).
import { describe } from 'vitest';

import { opFaultCases } from './helpers/op_fault_cases';

describe('op faults on the CPU', () => opFaultCases('cpu'));
