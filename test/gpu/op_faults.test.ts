// Hostile index values on cuda:0: kernels check every index they read through, report a fault
// instead of faulting the device, and the CUDA context keeps working (cases shared with the CPU).
import { describe } from 'vitest';

import { hostileArgumentCases, opFaultCases } from '../helpers/op_fault_cases';
import { GPU, HAS_GPU } from './gpu';

describe.skipIf(!HAS_GPU)('op faults on cuda:0', () => opFaultCases(GPU));
describe.skipIf(!HAS_GPU)('hostile arguments on cuda:0', () => hostileArgumentCases(GPU));
