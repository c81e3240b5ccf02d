/**
 * Expert slots (native/core/op_args.h, "Expert slots"): a layer whose experts are placed on slots,
 * with replicas of the busy ones (lib/parallel/placement.ts), sends each routed pair to one
 * replica of its expert before permute sorts the pairs by slot. The table lives on the layer's
 * device for the layer's lifetime; mapping a forward's ids is one queued op.
 */
import { deviceIndex, type Device } from '../device';
import { describeValue, MoekitError } from '../errors';
import { addon } from '../native';
import { Tensor } from '../tensor';
import { requireDType, requireSameDevice, requireShape, requireTensor, withOutputs } from './validate';

export class ExpertSlotTable {
  /** Logical experts (the router's ids). */
  readonly experts: number;
  /** Physical slots: permute's totalExperts for the mapped ids. */
  readonly slots: number;
  readonly #offsets: Tensor;
  readonly #replicas: Tensor;

  private constructor(experts: number, slots: number, offsets: Tensor, replicas: Tensor) {
    this.experts = experts;
    this.slots = slots;
    this.#offsets = offsets;
    this.#replicas = replicas;
  }

  /**
   * The table of `slotExperts` (the logical expert of each slot) for `experts` experts, on
   * `device`. Every expert must have a slot.
   */
  static of(slotExperts: readonly number[], experts: number, device: Device): ExpertSlotTable {
    const op = 'ExpertSlotTable';
    const replicasOf: number[][] = Array.from({ length: experts }, () => []);
    slotExperts.forEach((expert, slot) => {
      if (!Number.isSafeInteger(expert) || expert < 0 || expert >= experts) {
        throw new MoekitError('E_INVALID_ARGUMENT', `${op}: slot ${slot} holds ${describeValue(expert)}, not one of the ${experts} experts`);
      }
      replicasOf[expert]!.push(slot);
    });
    const missing = replicasOf.findIndex((slots) => slots.length === 0);
    if (missing >= 0) throw new MoekitError('E_INVALID_ARGUMENT', `${op}: expert ${missing} has no slot`);
    const offsets = new Int32Array(experts + 1);
    replicasOf.forEach((slots, expert) => (offsets[expert + 1] = offsets[expert]! + slots.length));
    const offsetsTensor = Tensor.fromArray(offsets, [experts + 1], { dtype: 'int32', device });
    try {
      const replicas = Tensor.fromArray(Int32Array.from(replicasOf.flat()), [slotExperts.length], { dtype: 'int32', device });
      return new ExpertSlotTable(experts, slotExperts.length, offsetsTensor, replicas);
    } catch (error) {
      offsetsTensor.dispose();
      throw error;
    }
  }

  /** The slot of each pair of topkIds [T, K]: its expert's replicas taken in turn by token. */
  map(topkIds: Tensor): Tensor {
    const op = 'expertSlots';
    requireTensor(topkIds, op, 'topkIds');
    requireDType(topkIds, op, 'topkIds', ['int32']);
    const [tokens, topK] = requireShape(topkIds, op, 'topkIds', [null, null]) as [number, number];
    const device = requireSameDevice(op, { topkIds, table: this.#offsets });
    const { slotIds } = withOutputs(
      () => ({ slotIds: Tensor.empty([tokens, topK], { dtype: 'int32', device }) }),
      (out) =>
        addon().expertSlots(deviceIndex(device), {
          topkIds: topkIds.toNative(),
          replicaOffsets: this.#offsets.toNative(),
          replicaSlots: this.#replicas.toNative(),
          slotIds: out.slotIds.toNative(),
        }),
    );
    return slotIds;
  }

  dispose(): void {
    this.#offsets.dispose();
    this.#replicas.dispose();
  }
}
