/**
 * A group of processes, one per GPU, joined by NCCL. `ProcessGroup.init()` reads torchrun's
 * environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, as `moekit launch` sets),
 * exchanges the NCCL unique id through the TCP rendezvous, binds the process to cuda:LOCAL_RANK and
 * creates the communicator.
 *
 * Failures never hang: while collectives are outstanding a watchdog polls NCCL's asynchronous
 * error state and their progress; a failed peer or a collective stalled past the timeout aborts
 * the communicator (ncclCommAbort releases the stuck kernels), and synchronize() rejects.
 */
import { deviceIndex, type Device } from '../device';
import { describeValue, MoekitError } from '../errors';
import { addon, type NativeCommunicator } from '../native';
import { requireTensor } from '../ops/validate';
import { optionalOptions } from '../options';
import { synchronize } from '../sync';
import type { Tensor } from '../tensor';
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

  /** Sums `tensor` over the group in place, enqueued on its device with no host synchronization. */
  allReduce(tensor: Tensor): void {
    const communicator = this.#live();
    requireTensor(tensor, 'allReduce', 'tensor');
    if (tensor.device !== this.device) throw new MoekitError('E_DEVICE', `allReduce: the tensor is on ${tensor.device}, the group on ${this.device}`);
    communicator.allReduce(deviceIndex(this.device), { tensor: tensor.toNative() });
    this.#watchCollectives();
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
