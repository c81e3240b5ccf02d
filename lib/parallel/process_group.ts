/**
 * A group of processes, one per GPU, joined by NCCL. `ProcessGroup.init()` reads torchrun's
 * environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, as `moekit launch` sets),
 * exchanges the NCCL unique id through the TCP rendezvous, binds the process to cuda:LOCAL_RANK and
 * creates the communicator.
 *
 * The collectives write into tensors the caller gives (an all-reduce in place, the others into an
 * output) and are enqueued on the device's stream without host synchronization: they return at
 * once, order with the device's other work, and can be recorded in a CUDA graph (they allocate
 * nothing). Their arguments are checked first (collective_args.ts).
 *
 * Failures never hang: while collectives are outstanding a watchdog polls NCCL's asynchronous
 * error state and their progress; a failed peer or a collective stalled past the timeout aborts
 * the communicator (ncclCommAbort releases the stuck kernels), and synchronize() rejects.
 */
import { deviceIndex, type Device } from '../device';
import { describeValue, MoekitError } from '../errors';
import { addon, type NativeCommunicator } from '../native';
import { optionalOptions } from '../options';
import { synchronize } from '../sync';
import { Tensor } from '../tensor';
import {
  checkAllGather, checkAllReduce, checkAllToAll, checkBroadcast, checkPeerTransfer, checkReduceScatter, type AllToAllOptions,
} from './collective_args';
import { exchangeId, readLaunchEnvironment, type LaunchEnvironment } from './rendezvous';

export interface ProcessGroupOptions {
  /** Rendezvous and communicator set-up, and any collective, give up after this long. Default 120 s. */
  timeoutMs?: number;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const WATCHDOG_INTERVAL_MS = 100;

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new MoekitError('E_NCCL', `${what} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  /** This rank's GPU: cuda:LOCAL_RANK. */
  readonly device: Device;
  readonly timeoutMs: number;
  #communicator: NativeCommunicator | undefined;
  #failure: MoekitError | undefined;
  /** A watchdog runs over the queued collectives; `#rewatch`: more were queued since it began. */
  #watching = false;
  #rewatch = false;
  /** barrier()'s one int32, made on first use. */
  #barrierToken: Tensor | undefined;

  private constructor(env: LaunchEnvironment, communicator: NativeCommunicator, timeoutMs: number) {
    this.rank = env.rank;
    this.worldSize = env.worldSize;
    this.localRank = env.localRank;
    this.device = `cuda:${env.localRank}`;
    this.timeoutMs = timeoutMs;
    this.#communicator = communicator;
  }

  static async init(options?: ProcessGroupOptions | null): Promise<ProcessGroup> {
    const settings = optionalOptions(options, 'ProcessGroup.init: options');
    const env = readLaunchEnvironment(settings.env ?? process.env);
    const timeoutMs = settings.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new MoekitError('E_INVALID_ARGUMENT', `ProcessGroup.init: timeoutMs must be a positive number of milliseconds, got ${describeValue(timeoutMs)}`);
    }
    const native = addon();
    const nccl = native.ncclInfo();
    if (!nccl.available) throw new MoekitError('E_NCCL', `NCCL is not available: ${nccl.problem}`);
    if (env.localRank >= native.cudaDeviceCount()) {
      throw new MoekitError('E_DEVICE', `LOCAL_RANK ${env.localRank} has no GPU: this machine has ${native.cudaDeviceCount()}`);
    }
    const id = await exchangeId({ ...env, timeoutMs }, () => native.ncclUniqueId());
    const communicator = await withTimeout(native.ncclInit(env.localRank, id, env.worldSize, env.rank), timeoutMs, 'ncclCommInitRank', () => {});
    return new ProcessGroup(env, communicator, timeoutMs);
  }

  /** In place: every rank's `tensor` becomes the sum of all ranks' (float32, float16, bfloat16 or int32). */
  allReduce(tensor: Tensor): void {
    checkAllReduce(this, tensor);
    this.#enqueue((communicator, device) => communicator.allReduce(device, { tensor: tensor.toNative() }));
  }

  /**
   * `output` [rows, ...] becomes the sum over the group of each rank's `input` rows
   * [rank × rows, (rank + 1) × rows): `input` is [worldSize × rows, ...] of the same dtype (one
   * that allReduce sums).
   */
  reduceScatter(input: Tensor, output: Tensor): void {
    checkReduceScatter(this, input, output);
    this.#enqueue((communicator, device) => communicator.reduceScatter(device, { input: input.toNative(), output: output.toNative() }));
  }

  /** `output` [worldSize × rows, ...] becomes every rank's `input` [rows, ...], in rank order (any dtype). */
  allGather(input: Tensor, output: Tensor): void {
    checkAllGather(this, input, output);
    this.#enqueue((communicator, device) => communicator.allGather(device, { input: input.toNative(), output: output.toNative() }));
  }

  /** In place: every rank's `tensor` becomes rank `root`'s (same shape on every rank, any dtype). */
  broadcast(tensor: Tensor, root: number): void {
    checkBroadcast(this, tensor, root);
    this.#enqueue((communicator, device) => communicator.broadcast(device, { tensor: tensor.toNative(), root }));
  }

  /**
   * Sends `tensor` to rank `peer`, which must recv() a tensor of the same size from this rank. Each
   * of the pair waits on the device (never on the JS thread) until the other runs, so order the
   * pairs to meet, or use allToAll for an exchange in every direction at once.
   */
  send(tensor: Tensor, peer: number): void {
    checkPeerTransfer(this, 'send', tensor, peer);
    this.#enqueue((communicator, device) => communicator.send(device, { tensor: tensor.toNative(), peer }));
  }

  /** Overwrites `tensor` with what rank `peer` send()s to this rank (see send). */
  recv(tensor: Tensor, peer: number): void {
    checkPeerTransfer(this, 'recv', tensor, peer);
    this.#enqueue((communicator, device) => communicator.recv(device, { tensor: tensor.toNative(), peer }));
  }

  /**
   * Every rank sends a part of `input`'s rows to every rank (itself included) and receives one
   * part from each into `output`: sendSplits[p] rows, in rank order, go to rank p, and recvSplits[p]
   * rows of `output`, in rank order, come from rank p. Left out, a side's rows split equally. The
   * counts must agree across the group (rank r's sendSplits[p] is rank p's recvSplits[r]), as the
   * sizes of a send and its recv must: no rank can check another's, and NCCL does not either (a
   * mismatch may stall, which the watchdog turns into E_NCCL, or deliver wrong rows). `input` and
   * `output` have rows of one shape and dtype (any dtype). A captured allToAll replays with the
   * splits it was captured with.
   */
  allToAll(input: Tensor, output: Tensor, options?: AllToAllOptions | null): void {
    const { sendSplits, recvSplits } = checkAllToAll(this, input, output, options);
    this.#enqueue((communicator, device) => communicator.allToAll(device, { input: input.toNative(), output: output.toNative(), sendSplits, recvSplits }));
  }

  /**
   * Resolves once every rank has called barrier() and this rank's earlier work is done; rejects
   * as synchronize() does when a rank never arrives. (An all-reduce of one int32, then synchronize().)
   */
  async barrier(): Promise<void> {
    this.#live();
    this.#barrierToken ??= Tensor.fromArray(Int32Array.of(0), [1], { device: this.device });
    this.allReduce(this.#barrierToken);
    await this.synchronize();
  }

  /**
   * Waits for this rank's queued work, collectives included. Rejects (after aborting the
   * communicator) when NCCL reports a failure or the work stalls past the timeout.
   */
  async synchronize(): Promise<void> {
    const communicator = this.#live();
    let watchdog: NodeJS.Timeout | undefined;
    const failed = new Promise<never>((_, reject) => {
      const started = Date.now();
      watchdog = setInterval(() => {
        const problem = communicator.asyncError();
        const stalled = Date.now() - started > this.timeoutMs;
        if (problem === '' && !stalled) return;
        this.#fail(problem !== '' ? `NCCL failed: ${problem}` : `a collective stalled for more than ${this.timeoutMs} ms`);
        reject(this.#failure);
      }, WATCHDOG_INTERVAL_MS);
    });
    try {
      await Promise.race([synchronize(this.device), failed]);
    } finally {
      clearInterval(watchdog);
    }
    if (this.#failure) throw this.#failure;
  }

  /** Frees the communicator. */
  destroy(): void {
    this.#communicator?.destroy();
    this.#communicator = undefined;
    this.#barrierToken?.dispose();
    this.#barrierToken = undefined;
  }

  /**
   * Watches the collectives queued so far until they complete, as each collective call does by
   * itself: for collectives queued another way (a replayed CUDA graph's; CapturedForward calls it).
   */
  watchQueued(): void {
    this.#live();
    this.#watchCollectives();
  }

  /** Enqueues one collective whose arguments were checked, and watches it (see #watchCollectives). */
  #enqueue(collective: (communicator: NativeCommunicator, device: number) => void): void {
    collective(this.#live(), deviceIndex(this.device));
    this.#watchCollectives();
  }

  /**
   * Watches every queued collective until it completes, whether or not the caller ever awaits
   * synchronize(): a stalled or failed collective is aborted (which releases the device work, so
   * awaiting an output never hangs) and the failure sticks: every later call on the group throws it.
   */
  #watchCollectives(): void {
    if (this.#watching) {
      this.#rewatch = true;
      return;
    }
    this.#watching = true;
    this.#rewatch = false;
    this.synchronize()
      .catch(() => {}) // kept in #failure and thrown by the next call
      .finally(() => {
        this.#watching = false;
        if (this.#rewatch && this.#communicator !== undefined) this.#watchCollectives();
      });
  }

  #live(): NativeCommunicator {
    if (this.#failure) throw this.#failure;
    if (!this.#communicator) throw new MoekitError('E_NCCL', 'the process group was destroyed');
    return this.#communicator;
  }

  #fail(message: string): void {
    this.#failure ??= new MoekitError('E_NCCL', `rank ${this.rank}: ${message}; the communicator was aborted`);
    this.#communicator?.abort();
    this.#communicator = undefined;
  }
}
