/**
 * How this node's GPUs reach each other, for `parallel: 'auto'`, from what the CUDA driver tells
 * without NVML. The driver does not name NVLink: it says whether two GPUs have peer access (P2P)
 * and whether atomics work natively over it. NVLink carries native atomics and PCIe peer access
 * does not, so P2P with native atomics between every pair reads as 'nvlink' and anything less as
 * 'pcie' (no P2P at all is slower still: copies go through the host). A heuristic, said so in the
 * explanation; NVML (nvmlDeviceGetNvLinkState) would make it exact.
 */
import { addon, type NativePeerLink } from '../native';
import type { GpuLink } from './auto_plan';

export interface DetectedLink {
  link: GpuLink;
  /** How it was known, in words, for the explanation. */
  source: string;
}

/** The slowest link among cuda:0 … cuda:count-1 of this node, as the driver tells it. */
export function detectLink(count: number): DetectedLink {
  const native = addon();
  const visible = native.cudaDeviceCount();
  if (count < 2) return { link: 'unknown', source: 'one GPU, no link to read' };
  if (visible < count) return { link: 'unknown', source: `${count} GPUs asked about, ${visible} visible here` };
  return slowestLink(count, (from, to) => native.gpuLink(from, to));
}

/** The slowest of the links `peerLink` reports between every ordered pair of `count` GPUs. */
export function slowestLink(count: number, peerLink: (from: number, to: number) => NativePeerLink | null): DetectedLink {
  for (let from = 0; from < count; from++) {
    for (let to = 0; to < count; to++) {
      if (from === to) continue;
      const peer = peerLink(from, to);
      if (peer === null) return { link: 'unknown', source: 'this build has no CUDA' };
      const pair = `cuda:${from} → cuda:${to}`;
      if (!peer.access) return { link: 'pcie', source: `no P2P ${pair}, copies go through the host` };
      if (!peer.nativeAtomics) return { link: 'pcie', source: `P2P without native atomics ${pair}, read as PCIe` };
    }
  }
  return { link: 'nvlink', source: 'P2P with native atomics between every pair, read as NVLink' };
}
