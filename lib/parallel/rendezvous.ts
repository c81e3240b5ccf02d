/**
 * The rendezvous that gives every rank of a group the same NCCL unique id, with torchrun's
 * conventions: rank 0 makes the id and serves it over TCP on MASTER_ADDR:MASTER_PORT; the other
 * ranks connect (retrying while the master starts) and read it. Works the same on one node or many.
 *
 * Protocol, per connection: the client sends its rank (4 bytes, little-endian); the master
 * answers with the id's length (4 bytes) and the id.
 */
import * as net from 'node:net';

import { describeValue, MoekitError } from '../errors';

export interface RendezvousOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  /** Give up after this long (ms). */
  timeoutMs: number;
}

const RETRY_INTERVAL_MS = 100;
const HEADER_BYTES = 4;

function timeoutError(options: RendezvousOptions, what: string): MoekitError {
  return new MoekitError('E_NCCL', `rendezvous at ${options.masterAddr}:${options.masterPort} timed out after ${options.timeoutMs} ms: ${what}`);
}

/** Rank 0: serves `id` to the other worldSize − 1 ranks, resolving once all have it. */
function serveId(options: RendezvousOptions, id: Uint8Array): Promise<void> {
  const waiting = new Set(Array.from({ length: options.worldSize - 1 }, (_, i) => i + 1));
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.once('data', (chunk) => {
        const rank = chunk.length >= HEADER_BYTES ? chunk.readUInt32LE(0) : -1;
        if (!waiting.delete(rank)) {
          socket.destroy();
          return;
        }
        const length = Buffer.alloc(HEADER_BYTES);
        length.writeUInt32LE(id.length);
        socket.end(Buffer.concat([length, id]));
        if (waiting.size === 0) finish();
      });
      socket.on('error', () => socket.destroy());
    });
    const timer = setTimeout(() => {
      finish(timeoutError(options, `rank(s) ${[...waiting].join(', ')} never connected`));
    }, options.timeoutMs);
    function finish(error?: Error): void {
      clearTimeout(timer);
      server.close();
      if (error) reject(error);
      else resolve();
    }
    server.on('error', (error) => finish(new MoekitError('E_NCCL', `rendezvous: cannot listen on ${options.masterAddr}:${options.masterPort}: ${error.message}`)));
    server.listen(options.masterPort, options.masterAddr);
    if (waiting.size === 0) finish();
  });
}

/** Ranks 1..N−1: connects to the master (retrying until the deadline) and reads the id. */
function fetchId(options: RendezvousOptions): Promise<Uint8Array> {
  const deadline = Date.now() + options.timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const socket = net.connect(options.masterPort, options.masterAddr);
      const chunks: Buffer[] = [];
      socket.on('connect', () => {
        const rank = Buffer.alloc(HEADER_BYTES);
        rank.writeUInt32LE(options.rank);
        socket.write(rank);
      });
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('end', () => {
        const reply = Buffer.concat(chunks);
        const length = reply.length >= HEADER_BYTES ? reply.readUInt32LE(0) : -1;
        if (length < 0 || reply.length !== HEADER_BYTES + length) {
          reject(new MoekitError('E_NCCL', `rendezvous: malformed reply from ${options.masterAddr}:${options.masterPort}`));
          return;
        }
        resolve(new Uint8Array(reply.subarray(HEADER_BYTES)));
      });
      socket.on('error', () => {
        socket.destroy();
        if (Date.now() + RETRY_INTERVAL_MS > deadline) reject(timeoutError(options, 'the master never answered'));
        else setTimeout(attempt, RETRY_INTERVAL_MS);
      });
    };
    attempt();
  });
}

/**
 * Every rank calls this; rank 0 passes `makeId` (called once). Resolves to the same bytes on
 * every rank, or rejects (never hangs) once timeoutMs has passed.
 */
export async function exchangeId(options: RendezvousOptions, makeId: () => Uint8Array): Promise<Uint8Array> {
  if (options.rank === 0) {
    const id = makeId();
    await serveId(options, id);
    return id;
  }
  return fetchId(options);
}

/** torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. */
export interface LaunchEnvironment {
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
}

export function readLaunchEnvironment(env: NodeJS.ProcessEnv = process.env): LaunchEnvironment {
  const integer = (name: string, fallback?: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') {
      if (fallback !== undefined) return fallback;
      throw new MoekitError('E_INVALID_ARGUMENT', `${name} is not set (start the process with 'moekit launch' or torchrun conventions)`);
    }
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < 0) throw new MoekitError('E_INVALID_ARGUMENT', `${name} must be a non-negative integer, got ${describeValue(raw)}`);
    return value;
  };
  const worldSize = integer('WORLD_SIZE', 1);
  const rank = integer('RANK', 0);
  if (worldSize < 1 || rank >= worldSize) throw new MoekitError('E_INVALID_ARGUMENT', `RANK ${rank} is outside WORLD_SIZE ${worldSize}`);
  return {
    rank,
    worldSize,
    localRank: integer('LOCAL_RANK', rank),
    masterAddr: env.MASTER_ADDR || '127.0.0.1',
    masterPort: integer('MASTER_PORT', 29500),
  };
}
