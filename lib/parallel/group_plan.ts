/**
 * `parallel: 'auto'` across a ProcessGroup. Every rank must take the same split, so the plan is
 * made from the group's numbers, not one rank's: each rank's free memory and local rank are
 * all-gathered, the plan takes the smallest free memory, and the link is read when the group lies
 * on one node (its GPUs are cuda:0 … cuda:N-1, and every rank's driver answers alike). Across
 * nodes the network between them is not read: the link is 'unknown'.
 */
import type { FloatDType } from '../dtype';
import { MoekitError } from '../errors';
import { memoryInfo } from '../memory';
import type { MoEConfig } from '../model/config';
import { requiredObject } from '../options';
import { Tensor } from '../tensor';
import { autoPlan, type AutoPlan } from './auto_plan';
import { detectLink, type DetectedLink } from './link';
import { ProcessGroup } from './process_group';

const MIB = 2 ** 20;

/** Every rank's [free MiB, local rank], gathered in rank order. */
async function gatherPlaces(group: ProcessGroup): Promise<Int32Array> {
  const own = Int32Array.of(Math.floor(memoryInfo(group.device).freeBytes / MIB), group.localRank);
  using input = Tensor.fromArray(own, [1, 2], { dtype: 'int32', device: group.device });
  using output = Tensor.empty([group.worldSize, 2], { dtype: 'int32', device: group.device });
  group.allGather(input, output);
  await group.synchronize();
  return (await output.toArray()) as Int32Array;
}

/**
 * The split autoPlan picks for `config` on `group` (held in `dtype`, the layer's compute dtype),
 * the same on every rank; every rank must call it, as it runs a collective. Its result is
 * ParallelOptions for MoELayer.fromWeights or fromPretrained, with the one-line explanation.
 */
export async function autoParallel(group: ProcessGroup, config: MoEConfig, dtype: FloatDType = 'float32'): Promise<AutoPlan> {
  if (!(group instanceof ProcessGroup)) throw new MoekitError('E_INVALID_ARGUMENT', 'autoParallel: group must be a ProcessGroup (from ProcessGroup.init())');
  requiredObject(config, 'autoParallel: config');
  const places = await gatherPlaces(group);
  const freeMiB = Array.from({ length: group.worldSize }, (_, rank) => places[2 * rank]!);
  const nodes = Array.from({ length: group.worldSize }, (_, rank) => places[2 * rank + 1]!).filter((localRank) => localRank === 0).length;
  const { link, source }: DetectedLink = nodes === 1 ? detectLink(group.worldSize) : { link: 'unknown', source: `the group spans ${nodes} nodes` };
  return autoPlan({ worldSize: group.worldSize, config, dtype, bytesPerGpu: Math.min(...freeMiB) * MIB, link, linkSource: source });
}
