/**
 * Starting one process per GPU, torchrun-style: each child gets RANK, LOCAL_RANK, WORLD_SIZE,
 * LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; its output lines are prefixed with its rank; when
 * one child fails, the others are stopped, so a failure never leaves ranks hanging.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as readline from 'node:readline';

export interface LaunchOptions {
  /** Processes on this node. */
  nproc: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  script: string;
  args: readonly string[];
}

/** How long a child may take to exit after SIGTERM before it gets SIGKILL. */
const KILL_GRACE_MS = 5000;

export function childEnvironment(options: LaunchOptions, localRank: number, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...base,
    RANK: String(options.nodeRank * options.nproc + localRank),
    LOCAL_RANK: String(localRank),
    WORLD_SIZE: String(options.nnodes * options.nproc),
    LOCAL_WORLD_SIZE: String(options.nproc),
    MASTER_ADDR: options.masterAddr,
    MASTER_PORT: String(options.masterPort),
    // NVLink multicast stays off on shared multi-GPU hosts unless the caller says otherwise.
    NCCL_NVLS_ENABLE: base.NCCL_NVLS_ENABLE ?? '0',
  };
}

function prefixLines(stream: NodeJS.ReadableStream, prefix: string, sink: NodeJS.WritableStream): void {
  readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => sink.write(`${prefix}${line}\n`));
}

/** Runs the children; resolves to 0 when all succeed, else the first failure's exit code. */
export function launch(options: LaunchOptions): Promise<number> {
  return new Promise((resolve) => {
    const children: ChildProcess[] = [];
    let running = options.nproc;
    let failure: number | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const stopOthers = (): void => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      killTimer = setTimeout(() => {
        for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }, KILL_GRACE_MS);
      killTimer.unref();
    };

    const onSignal = (signal: NodeJS.Signals): void => {
      failure ??= 128 + (signal === 'SIGINT' ? 2 : 15);
      stopOthers();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    for (let localRank = 0; localRank < options.nproc; localRank++) {
      const env = childEnvironment(options, localRank);
      const child = spawn(process.execPath, [options.script, ...options.args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      const prefix = `[rank ${env.RANK}] `;
      prefixLines(child.stdout!, prefix, process.stdout);
      prefixLines(child.stderr!, prefix, process.stderr);
      child.on('error', (error) => {
        process.stderr.write(`${prefix}could not start: ${error.message}\n`);
      });
      child.on('close', (code, signal) => {
        const status = code ?? (signal ? 128 + 15 : 1);
        if (status !== 0 && failure === undefined) {
          failure = status;
          process.stderr.write(`moekit launch: rank ${env.RANK} exited with ${signal ?? `code ${code}`}; stopping the other ranks\n`);
          stopOthers();
        }
        running -= 1;
        if (running === 0) {
          if (killTimer) clearTimeout(killTimer);
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          resolve(failure ?? 0);
        }
      });
      children.push(child);
    }
  });
}
