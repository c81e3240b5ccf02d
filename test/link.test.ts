// How parallel: 'auto' reads the link between GPUs (lib/parallel/link.ts): the driver's P2P facts
// read as NVLink or PCIe, and 'unknown' without two visible GPUs (as on this CPU machine).
import { describe, expect, it } from 'vitest';

import { detectLink, slowestLink } from '../lib/parallel/link';
import type { NativePeerLink } from '../lib/native';

const NVLINK: NativePeerLink = { access: true, nativeAtomics: true, performanceRank: 0 };
const PCIE_P2P: NativePeerLink = { access: true, nativeAtomics: false, performanceRank: 0 };
const NO_P2P: NativePeerLink = { access: false, nativeAtomics: false, performanceRank: 0 };

describe('slowestLink', () => {
  it('reads P2P with native atomics between every pair as NVLink', () => {
    expect(slowestLink(4, () => NVLINK)).toEqual({ link: 'nvlink', source: 'P2P with native atomics between every pair, read as NVLink' });
  });

  it('reads P2P without native atomics, or no P2P, on any pair as PCIe, naming the pair', () => {
    expect(slowestLink(4, (from, to) => (from === 2 && to === 3 ? PCIE_P2P : NVLINK)))
      .toEqual({ link: 'pcie', source: 'P2P without native atomics cuda:2 → cuda:3, read as PCIe' });
    expect(slowestLink(2, () => NO_P2P)).toEqual({ link: 'pcie', source: 'no P2P cuda:0 → cuda:1, copies go through the host' });
  });

  it('is unknown when the build has no CUDA', () => {
    expect(slowestLink(2, () => null).link).toBe('unknown');
  });
});

describe('detectLink', () => {
  it('answers unknown, without throwing, for one GPU or more GPUs than are visible', () => {
    expect(detectLink(1)).toEqual({ link: 'unknown', source: 'one GPU, no link to read' });
    expect(detectLink(64)).toEqual({ link: 'unknown', source: expect.stringMatching(/^64 GPUs asked about, \d+ visible here$/) });
  });
});
